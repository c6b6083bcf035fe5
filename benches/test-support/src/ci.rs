//! Owns the rule for a missing prerequisite: under `CI=true` it fails the test (CI must never
//! pass by skipping), elsewhere the test skips with a message saying what is missing and how to
//! get it. The prerequisites are the shared test data beside the checkout (`../shared/
//! openrtb-samples` and `openrtb-schema`, never copied into the repository) and binaries built
//! by other workspace crates (`rtb-dsp`).

use std::path::{Path, PathBuf};

/// Whether the tests run in CI (`CI=true`, as CI services set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A prerequisite is missing: panics under CI, otherwise prints `SKIP <test>: <why>` and
/// returns `None` so the caller can return early.
#[track_caller]
pub fn missing<T>(test: &str, why: &str) -> Option<T> {
    assert!(
        !in_ci(),
        "{test}: {why}; CI=true, so this is a failure, not a skip"
    );
    eprintln!("SKIP {test}: {why}");
    None
}

/// The workspace root (this crate sits at `benches/test-support`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("test-support sits at benches/test-support inside the workspace")
        .to_path_buf()
}

/// A folder of the shared test data beside the checkout: `<checkout>/../shared/<name>`
/// (`openrtb-samples`, `openrtb-schema`).
pub fn shared_dir(name: &str) -> PathBuf {
    workspace_root().join("../shared").join(name)
}

/// Where the shared OpenRTB samples are: `<checkout>/../shared/openrtb-samples`.
pub fn samples_dir() -> PathBuf {
    shared_dir("openrtb-samples")
}

/// `../shared/<name>`, or a skip (a failure under CI) naming `test`.
#[track_caller]
pub fn shared_or_skip(test: &str, name: &str) -> Option<PathBuf> {
    let dir = shared_dir(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        missing(
            test,
            &format!(
                "{} is absent (the shared test data lives beside the checkout)",
                dir.display()
            ),
        )
    }
}

/// The samples folder, or a skip (a failure under CI) naming `test`.
#[track_caller]
pub fn samples_or_skip(test: &str) -> Option<PathBuf> {
    shared_or_skip(test, "openrtb-samples")
}

/// For tests that have a built-in fallback: under CI, fails when the samples are absent (the
/// fallback would test less than CI promises); elsewhere does nothing.
#[track_caller]
pub fn require_samples_in_ci(test: &str) {
    if in_ci() {
        let _ = samples_or_skip(test);
    }
}

/// The file names in the samples folder whose name contains `needle`, sorted, with their bytes;
/// `None` (a failure under CI) when the folder is absent.
#[track_caller]
pub fn samples_named(test: &str, needle: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let dir = samples_or_skip(test)?;
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().unwrap().to_string_lossy().contains(needle)
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    Some(out)
}

/// A binary of another workspace crate: `$env_var` if set, else the one cargo built next to
/// this test's binary (`target/<profile>/<name>`: `cargo test --workspace` builds it, as does
/// `cargo build -p <crate>`). `None` (a failure under CI) when that file is absent.
#[track_caller]
pub fn workspace_binary(test: &str, name: &str, env_var: &str) -> Option<PathBuf> {
    // target/<profile>/deps/<test binary> -> target/<profile>/<name>
    let found = match std::env::var_os(env_var) {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join(name))),
    }
    .filter(|p| p.is_file());
    match found {
        Some(p) => Some(p),
        None => missing(
            test,
            &format!(
                "{name} is not built ({env_var} unset or not a file, nothing next to the test \
                 binary: cargo build --workspace)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test of this crate that touches the environment (the others do not read it).
    #[test]
    fn a_missing_prerequisite_fails_under_ci_and_skips_elsewhere() {
        let original = std::env::var_os("CI");
        std::env::set_var("CI", "true");
        let under_ci = std::panic::catch_unwind(|| missing::<()>("t", "no samples"));
        let binary =
            std::panic::catch_unwind(|| workspace_binary("t", "no-such-bin", "NO_SUCH_VAR"));
        std::env::set_var("CI", "false");
        let elsewhere = missing::<()>("t", "no samples");
        let binary_elsewhere = workspace_binary("t", "no-such-bin", "NO_SUCH_VAR");
        match original {
            Some(v) => std::env::set_var("CI", v),
            None => std::env::remove_var("CI"),
        }
        let message = under_ci.unwrap_err();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("CI=true, so this is a failure"),
            "{message}"
        );
        assert!(binary.is_err());
        assert_eq!(elsewhere, None);
        assert_eq!(binary_elsewhere, None);
        assert!(samples_dir().ends_with("shared/openrtb-samples"));
    }
}
