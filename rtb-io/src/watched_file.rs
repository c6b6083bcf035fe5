//! Owns a configuration file watched from a control thread: read and parsed at start (the
//! caller decides whether an error stops it), then looked at on a period. The path is looked
//! up anew each time ([`FileStamp`]: inode, size, modification time), so a Kubernetes
//! ConfigMap update, which swaps a symlink to a new file, reloads it. A file that does not
//! read or parse keeps the last good copy in force; every load is counted by result
//! ([`WatchStatus`]), with whether the file fails now and how many entries the last good copy
//! holds. The exchange's roster file is watched this way.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{fetch, file_stamp::FileStamp, metrics_text::header};

/// A watched file's load counters; written by the control thread only, read on scrape.
#[derive(Debug, Default)]
pub struct WatchStatus {
    loaded: AtomicU64,
    invalid: AtomicU64,
    unreadable: AtomicU64,
    entries: AtomicU64,
    /// 1 while the file behind the path does not load: the last good copy is in force, and a
    /// restart would not start. Counters alone would not say it: a failed version is counted
    /// once, not retried until the file changes again.
    failing: AtomicU64,
}

/// The names and help texts of a [`WatchStatus`]'s three families.
#[derive(Debug, Clone, Copy)]
pub struct WatchSeries {
    /// Loads by result (`loaded`, `invalid`, `unreadable`): name and help.
    pub reloads: (&'static str, &'static str),
    /// Entries in the copy last loaded: name and help.
    pub entries: (&'static str, &'static str),
    /// 1 while the file does not load: name and help.
    pub failing: (&'static str, &'static str),
}

impl WatchStatus {
    /// The three families named by `series`, in the Prometheus text format.
    pub fn render(&self, series: &WatchSeries, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (name, help) = series.reloads;
        header(out, name, "counter", help);
        for (result, n) in [
            ("loaded", get(&self.loaded)),
            ("invalid", get(&self.invalid)),
            ("unreadable", get(&self.unreadable)),
        ] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        for ((name, help), value) in [
            (series.entries, &self.entries),
            (series.failing, &self.failing),
        ] {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", get(value));
        }
    }
}

/// How a watched file's bytes become a `T`: the parsed copy and its entry count, or why not.
pub type Parse<T> = Box<dyn Fn(&[u8]) -> Result<(T, usize), String> + Send>;

/// A file at a path, the parser of its content, and what was last loaded from it.
pub struct WatchedFile<T> {
    path: PathBuf,
    what: &'static str,
    bytes_max: usize,
    parse: Parse<T>,
    last: Option<FileStamp>,
    /// How often the control thread looks at the file.
    pub poll: Duration,
    /// Load counters, shared with the metrics.
    pub status: Arc<WatchStatus>,
}

impl<T> std::fmt::Debug for WatchedFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (f.debug_struct("WatchedFile").field("path", &self.path))
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl<T> WatchedFile<T> {
    /// The file at `path` (`what` names it in errors and logs), read up to `bytes_max` and
    /// parsed by `parse`, looked at every `poll`.
    pub fn new(
        what: &'static str,
        path: PathBuf,
        bytes_max: usize,
        parse: Parse<T>,
        poll: Duration,
    ) -> Self {
        Self {
            path,
            what,
            bytes_max,
            parse,
            last: None,
            poll,
            status: Arc::default(),
        }
    }

    /// The path the file is read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file now (at start: the caller may refuse to start on an error).
    pub fn load(&mut self) -> Result<T, String> {
        let stamp = FileStamp::of(&self.path);
        let failed = |counter: &AtomicU64, e: String| {
            counter.fetch_add(1, Ordering::Relaxed);
            format!("{} {}: {e}", self.what, self.path.display())
        };
        let status = &self.status;
        let bytes = fetch::read_file(&self.path, self.bytes_max)
            .map_err(|e| failed(&status.unreadable, e))?;
        let (parsed, entries) = (self.parse)(&bytes).map_err(|e| failed(&status.invalid, e))?;
        self.last = stamp;
        status.loaded.fetch_add(1, Ordering::Relaxed);
        status.failing.store(0, Ordering::Relaxed);
        let entries = u64::try_from(entries).unwrap_or(u64::MAX);
        status.entries.store(entries, Ordering::Relaxed);
        Ok(parsed)
    }

    /// The new copy when the file changed since the last load; `None` when it did not, or
    /// when it no longer loads (logged and counted; the last good copy stays). A failed
    /// version is not retried until the file changes again.
    pub fn poll(&mut self) -> Option<T> {
        let stamp = FileStamp::of(&self.path);
        if stamp.is_none() || stamp == self.last {
            return None;
        }
        match self.load() {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let what = self.what;
                tracing::warn!(%error, "{what} not reloaded; the last good one stays");
                self.status.failing.store(1, Ordering::Relaxed);
                self.last = stamp;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIES: WatchSeries = WatchSeries {
        reloads: ("x_reloads_total", "Loads."),
        entries: ("x_entries", "Entries."),
        failing: ("x_failing", "Failing."),
    };

    /// A file of comma-separated numbers; anything else is invalid.
    fn numbers(bytes: &[u8]) -> Result<(Vec<u32>, usize), String> {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let parsed: Result<Vec<u32>, _> = text.split(',').map(str::parse).collect();
        let parsed = parsed.map_err(|e| e.to_string())?;
        let n = parsed.len();
        Ok((parsed, n))
    }

    #[test]
    fn loads_reloads_on_change_and_keeps_the_last_good() {
        let dir = std::env::temp_dir().join(format!("rtb-watched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("list");
        std::fs::write(&path, "1").unwrap();
        let poll = Duration::from_millis(1);
        let mut file = WatchedFile::new("list", path.clone(), 1024, Box::new(numbers), poll);
        assert_eq!(file.load().unwrap(), [1]);
        assert!(file.poll().is_none(), "unchanged");
        // Replaced the way a ConfigMap is: a new file renamed over the path.
        let next = dir.join("next");
        std::fs::write(&next, "1,2").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.poll().unwrap(), [1, 2]);
        std::fs::write(&next, "1,x").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(file.poll().is_none(), "invalid: the last good copy stays");
        assert!(file.poll().is_none(), "not retried until it changes");
        let mut text = String::new();
        file.status.render(&SERIES, &mut text);
        for line in [
            "# HELP x_reloads_total Loads.\n# TYPE x_reloads_total counter\n",
            "x_reloads_total{result=\"loaded\"} 2\n",
            "x_reloads_total{result=\"invalid\"} 1\n",
            "# TYPE x_entries gauge\nx_entries 2\n",
            "# HELP x_failing Failing.\n# TYPE x_failing gauge\nx_failing 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Fixed: loads again, and no longer failing.
        std::fs::write(&next, "7").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.poll().unwrap(), [7]);
        let mut text = String::new();
        file.status.render(&SERIES, &mut text);
        assert!(text.contains("x_failing 0\n"), "{text}");
        std::fs::remove_file(&path).unwrap();
        let e = file.load().unwrap_err();
        assert!(e.starts_with("list ") && e.contains("list"), "{e}");
        let mut text = String::new();
        file.status.render(&SERIES, &mut text);
        assert!(text.contains("x_reloads_total{result=\"unreadable\"} 1\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
