//! Owns the exchange's roster file (issue 15): `--roster PATH` is read at start (a file
//! that does not load stops the start, with the entry and field at fault), then watched from
//! the control thread every `--roster-poll-ms`; a change reloads it, and a file that does not
//! read or parse keeps the last good roster ([`crate::watched_file`], which also counts). The
//! parsing and validation are `rtb_core::roster`'s, applying it is `rtb_core::directory`'s.

use std::{path::PathBuf, time::Duration};

use crate::watched_file::{WatchSeries, WatchStatus, WatchedFile};
use rtb_core::roster::{self, Roster, ROSTER_BYTES_MAX};

/// Default `--roster-poll-ms`: a change reaches every worker within about this much (plus
/// the workers' own apply period).
pub const ROSTER_POLL_MS_DEFAULT: u64 = 250;

/// The roster file and what was last loaded from it.
pub type RosterFile = WatchedFile<Roster>;

/// What the debug port shows about the roster; written by the control thread only.
pub type RosterStatus = WatchStatus;

/// `rtb_roster_reloads_total{result}`, `rtb_roster_dsps` and `rtb_roster_file_failing`.
pub const ROSTER_SERIES: WatchSeries = WatchSeries {
    reloads: ("rtb_roster_reloads_total", "Roster file loads by result."),
    entries: ("rtb_roster_dsps", "DSPs in the roster last loaded."),
    failing: (
        "rtb_roster_file_failing",
        "1 while the roster file does not load (the last good roster stays in force).",
    ),
};

/// The roster at `path`, checked every `poll`.
pub fn roster_file(path: PathBuf, poll: Duration, allow_loopback: bool) -> RosterFile {
    let parse = move |bytes: &[u8]| {
        let parsed = roster::parse(bytes, allow_loopback).map_err(|e| e.to_string())?;
        let dsps = parsed.dsps.len();
        Ok((parsed, dsps))
    };
    WatchedFile::new("roster", path, ROSTER_BYTES_MAX, Box::new(parse), poll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_roster_and_renders_its_series() {
        let dir = std::env::temp_dir().join(format!("rtb-roster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("roster.json");
        let entry = |name: &str| format!(r#"{{"name":"{name}","url":"http://127.0.0.1:9/bid"}}"#);
        let two = format!(r#"{{"dsps":[{},{}]}}"#, entry("a"), entry("b"));
        std::fs::write(&path, two).unwrap();
        let mut file = roster_file(path.clone(), Duration::from_millis(1), true);
        assert_eq!(file.load().unwrap().dsps.len(), 2);
        let next = dir.join("next.json");
        std::fs::write(&next, r#"{"dsps":[{"name":"c"}]}"#).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(file.poll().is_none(), "invalid: the last good roster stays");
        let mut no_loopback = roster_file(path.clone(), Duration::from_millis(1), false);
        std::fs::write(&path, format!(r#"{{"dsps":[{}]}}"#, entry("a"))).unwrap();
        let e = no_loopback.load().unwrap_err();
        assert!(e.starts_with("roster "), "{e}");
        let mut text = String::new();
        file.status.render(&ROSTER_SERIES, &mut text);
        for line in [
            "rtb_roster_reloads_total{result=\"loaded\"} 1\n",
            "rtb_roster_reloads_total{result=\"invalid\"} 1\n",
            "rtb_roster_dsps 2\n",
            "rtb_roster_file_failing 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
