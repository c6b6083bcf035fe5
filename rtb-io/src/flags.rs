//! Owns the Go-style flag spelling the original fleet's scripts use: `-dsp-name x`,
//! `-port=5000`. Go's `flag` package accepts one or two dashes for a long flag; clap only two,
//! so both binaries rewrite `-name` to `--name` before clap sees the arguments, and those
//! scripts run unchanged.
//!
//! Rewritten: an argument of one dash, a letter and at least one more flag character
//! (`-port`, `-base-url=http://h`). Left alone: `--flag`, `-h` (one letter), negative numbers
//! (`-1.5`), a lone `-`, and everything after `--`. A value that itself looks like a Go-style
//! flag (`--seat -abc`) is rewritten too; pass it as `--seat=-abc`.

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
}
