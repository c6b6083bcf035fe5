//! Owns the roster file in the exchange (issue 15): `--roster PATH` is read at start (a file
//! that does not load stops the start, with the entry and field at fault), then watched from
//! the control thread every `--roster-poll-ms`. The path is looked up anew each time (a
//! Kubernetes ConfigMap update swaps a symlink, so the file behind the path changes inode), and
//! a change of inode, size or modification time (`rtb_io::file_stamp`) reloads it. A file that does not read or parse
//! keeps the last good roster and is counted and logged; the parsing and validation are
//! `rtb_core::roster`'s, applying it is `rtb_core::directory`'s.

use std::{
    fmt::Write as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use rtb_core::roster::{self, Roster, ROSTER_BYTES_MAX};
use rtb_io::file_stamp::FileStamp;

use rtb_io::metrics_text::header;

/// Default `--roster-poll-ms`: a change reaches every worker within about this much (plus
/// the workers' own apply period).
pub const ROSTER_POLL_MS_DEFAULT: u64 = 250;

/// What the debug port shows about the roster; written by the control thread only.
#[derive(Debug, Default)]
pub struct RosterStatus {
    loaded: AtomicU64,
    invalid: AtomicU64,
    unreadable: AtomicU64,
    dsps: AtomicU64,
    /// 1 while the file behind the path does not load: the last good roster is in force, and
    /// a restart would not start. Counters alone would not say it: a failed version is
    /// counted once, not retried until the file changes again.
    failing: AtomicU64,
}

impl RosterStatus {
    /// `rtb_roster_reloads_total{result}`, `rtb_roster_dsps` and `rtb_roster_file_failing`.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let name = "rtb_roster_reloads_total";
        header(out, name, "counter", "Roster file loads by result.");
        for (result, n) in [
            ("loaded", get(&self.loaded)),
            ("invalid", get(&self.invalid)),
            ("unreadable", get(&self.unreadable)),
        ] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        let name = "rtb_roster_dsps";
        header(out, name, "gauge", "DSPs in the roster last loaded.");
        let _ = writeln!(out, "{name} {}", get(&self.dsps));
        let name = "rtb_roster_file_failing";
        let help = "1 while the roster file does not load (the last good roster stays in force).";
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {}", get(&self.failing));
    }
}

/// The roster file and what was last loaded from it.
#[derive(Debug)]
pub struct RosterFile {
    path: PathBuf,
    allow_loopback: bool,
    last: Option<FileStamp>,
    /// How often the control thread looks at the file.
    pub poll: Duration,
    /// Reload counters, shared with the debug port.
    pub status: Arc<RosterStatus>,
}

impl RosterFile {
    /// The roster at `path`, checked every `poll`.
    pub fn new(path: PathBuf, poll: Duration, allow_loopback: bool) -> Self {
        Self {
            path,
            allow_loopback,
            last: None,
            poll,
            status: Arc::default(),
        }
    }

    /// The path the roster is read from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads and parses the file now (at start: the caller refuses to start on an error).
    pub fn load(&mut self) -> Result<Roster, String> {
        let stamp = self.stamp();
        let bytes = rtb_io::fetch::read_file(&self.path, ROSTER_BYTES_MAX).map_err(|e| {
            self.status.unreadable.fetch_add(1, Ordering::Relaxed);
            format!("roster {}: {e}", self.path.display())
        })?;
        let roster = roster::parse(&bytes, self.allow_loopback).map_err(|e| {
            self.status.invalid.fetch_add(1, Ordering::Relaxed);
            format!("roster {}: {e}", self.path.display())
        })?;
        self.last = stamp;
        self.status.loaded.fetch_add(1, Ordering::Relaxed);
        self.status.failing.store(0, Ordering::Relaxed);
        let dsps = u64::try_from(roster.dsps.len()).unwrap_or(u64::MAX);
        self.status.dsps.store(dsps, Ordering::Relaxed);
        Ok(roster)
    }

    /// The new roster when the file changed since the last load; `None` when it did not, or
    /// when it no longer loads (logged and counted; the last good roster stays). A failed
    /// version is not retried until the file changes again.
    pub fn poll(&mut self) -> Option<Roster> {
        let stamp = self.stamp();
        if stamp.is_none() || stamp == self.last {
            return None;
        }
        match self.load() {
            Ok(roster) => Some(roster),
            Err(error) => {
                tracing::warn!(%error, "roster not reloaded; the last good one stays");
                self.status.failing.store(1, Ordering::Relaxed);
                self.last = stamp;
                None
            }
        }
    }

    fn stamp(&self) -> Option<FileStamp> {
        FileStamp::of(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_reloads_on_change_and_keeps_the_last_good() {
        let dir = std::env::temp_dir().join(format!("rtb-roster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("roster.json");
        let entry = |name: &str| format!(r#"{{"name":"{name}","url":"http://127.0.0.1:9/bid"}}"#);
        std::fs::write(&path, format!(r#"{{"dsps":[{}]}}"#, entry("a"))).unwrap();
        let mut file = RosterFile::new(path.clone(), Duration::from_millis(1), true);
        assert_eq!(file.load().unwrap().dsps.len(), 1);
        assert!(file.poll().is_none(), "unchanged");
        // Replaced the way a ConfigMap is: a new file renamed over the path.
        let next = dir.join("next.json");
        let two = format!(r#"{{"dsps":[{},{}]}}"#, entry("a"), entry("b"));
        std::fs::write(&next, two).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.poll().unwrap().dsps.len(), 2);
        std::fs::write(&next, r#"{"dsps":[{"name":"c"}]}"#).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(file.poll().is_none(), "invalid: the last good roster stays");
        assert!(file.poll().is_none(), "not retried until it changes");
        let mut text = String::new();
        file.status.render(&mut text);
        assert!(
            text.contains("rtb_roster_reloads_total{result=\"loaded\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("rtb_roster_reloads_total{result=\"invalid\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("rtb_roster_dsps 2\n"), "{text}");
        assert!(text.contains("rtb_roster_file_failing 1\n"), "{text}");
        // Fixed: loads again, and no longer failing.
        std::fs::write(&next, r#"{"dsps":[]}"#).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.poll().unwrap().dsps.len(), 0);
        let mut text = String::new();
        file.status.render(&mut text);
        assert!(text.contains("rtb_roster_file_failing 0\n"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
