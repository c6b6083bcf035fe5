//! Owns the Go-style flag spelling the original fleet's scripts use: `-dsp-name x`,
//! `-port=5000`. Go's `flag` package accepts one or two dashes for a long flag; clap only two,
//! so both binaries rewrite `-name` to `--name` before clap sees the arguments, and those
//! scripts run unchanged.
//!
//! Rewritten: an argument of one dash, a letter and at least one more flag character
//! (`-port`, `-base-url=http://h`). Left alone: `--flag`, `-h` (one letter), negative numbers
//! (`-1.5`), a lone `-`, and everything after `--`. A value that itself looks like a Go-style
//! flag (`--seat -abc`) is rewritten too; pass it as `--seat=-abc`.
//!
//! Also owns [`with_env_hint`]: a bad value's error names the environment variable it may
//! have come from, not only the flag.

use std::ffi::OsString;

/// The process's arguments (program name first) with Go-style `-flag` spelled `--flag`.
pub fn go_style<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut after_separator = false;
    let mut out = Vec::new();
    for (index, arg) in args.into_iter().enumerate() {
        let arg: OsString = arg.into();
        if index == 0 || after_separator {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            after_separator = true;
            out.push(arg);
            continue;
        }
        out.push(match arg.to_str().filter(|a| is_go_long_flag(a)) {
            Some(flag) => OsString::from(format!("-{flag}")),
            None => arg,
        });
    }
    out
}

/// `-` then a letter then at least one more name character (before any `=`).
fn is_go_long_flag(arg: &str) -> bool {
    let Some(rest) = arg.strip_prefix('-') else {
        return false;
    };
    let name = rest.split_once('=').map_or(rest, |(name, _)| name);
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    starts_with_letter
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Adds the environment variable of the offending argument to a clap value error, since clap
/// names only the flag even when the value came from the environment. `command` is the parser
/// that made the error (its arguments' `env` names are looked up).
pub fn with_env_hint(error: clap::Error, command: &clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let env = command.get_arguments().find_map(|a| {
        let long = a.get_long()?;
        let matches = arg.starts_with(&format!("--{long} ")) || arg == &format!("--{long}");
        matches.then(|| a.get_env().map(|e| e.to_string_lossy().into_owned()))?
    });
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let reason = error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    match env {
        Some(env) => command.clone().error(
            ErrorKind::ValueValidation,
            format!("{reason} (flag {arg}, env {env}, value '{value}')"),
        ),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        go_style(args.iter().copied())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        let args = [
            "rtb-dsp",
            "-dsp-name",
            "braid",
            "-base-url=http://braid:5000",
            "-port",
            "5000",
            "-onboard-endpoints",
            "http://x:8080/dsp,http://y:8080/dsp",
        ];
        let expected = [
            "rtb-dsp",
            "--dsp-name",
            "braid",
            "--base-url=http://braid:5000",
            "--port",
            "5000",
            "--onboard-endpoints",
            "http://x:8080/dsp,http://y:8080/dsp",
        ];
        assert_eq!(rewrite(&args), expected);
    }

    #[test]
    fn double_dash_short_negative_and_separated_arguments_are_left_alone() {
        let args = [
            "-prog",
            "--port",
            "0",
            "-h",
            "-",
            "-1.5",
            "--price=-2",
            "--",
            "-x-y",
        ];
        assert_eq!(rewrite(&args), args);
    }

    #[test]
    fn a_bad_value_error_names_the_flag_env_and_value() {
        let command = clap::Command::new("x").arg(
            clap::Arg::new("port")
                .long("port")
                .env("THIN2_TEST_PORT")
                .value_parser(clap::value_parser!(u16)),
        );
        let error = command
            .clone()
            .try_get_matches_from(["x", "--port", "high"])
            .unwrap_err();
        let text = with_env_hint(error, &command).to_string();
        assert!(
            text.contains("(flag --port <port>, env THIN2_TEST_PORT, value 'high')"),
            "{text}"
        );
        let unknown = command
            .clone()
            .try_get_matches_from(["x", "--nope"])
            .unwrap_err();
        let kind = unknown.kind();
        assert_eq!(with_env_hint(unknown, &command).kind(), kind);
    }
}
