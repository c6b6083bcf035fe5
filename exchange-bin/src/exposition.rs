//! Owns the Prometheus text format's metric family header, shared by every module that
//! renders metrics (so each family is introduced the same way).

use std::fmt::Write as _;

/// `# HELP` and `# TYPE` lines of one metric family.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
