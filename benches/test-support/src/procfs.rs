//! Owns what tests read about a process from `/proc`: memory figures from
//! `/proc/<pid>/status`, the effective user id, the count of open file descriptors, whether
//! every thread is stopped, and how long threads waited for a CPU (`schedstat`), which tells a
//! late answer caused by an overloaded machine from one the process caused.

use std::time::Duration;

/// A `kB` figure of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`, ...), in KiB; `None` when the
/// process or the line is gone.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// This process's effective user id, from `/proc/self/status` (no `unsafe` for `geteuid`);
/// `u32::MAX` when it cannot be read.
pub fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("Uid:"));
    let euid = line.and_then(|l| l.split_whitespace().nth(2));
    euid.and_then(|v| v.parse().ok()).unwrap_or(u32::MAX)
}

/// Whether a `stat` file's state (the field after the command name's closing parenthesis)
/// is `T`, stopped.
fn stat_says_stopped(stat: &str) -> bool {
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('T'))
}

/// Whether every thread of process `pid` is stopped (SIGSTOP taken effect); false when the
/// process is gone.
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.into_iter().all(|t| {
        let stat = t.map(|t| std::fs::read_to_string(t.path().join("stat")));
        matches!(stat, Ok(Ok(text)) if stat_says_stopped(&text))
    })
}

/// Open file descriptors of process `pid` (0 when it is gone).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    fd_count(std::process::id())
}

/// The second field of a `schedstat` file: time spent runnable but waiting for a CPU.
fn parse_run_delay(schedstat: &str) -> Option<Duration> {
    let ns = schedstat.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Run-queue wait of every thread of process `pid` so far, by thread id (empty when the
/// process is gone or the kernel keeps no schedstat).
pub fn thread_run_delays(pid: u32) -> Vec<(u32, Duration)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let tid = t.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            Some((tid, parse_run_delay(&text)?))
        })
        .collect()
}

/// Run-queue wait of the calling thread so far (zero when the kernel keeps no schedstat).
pub fn this_thread_run_delay() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .as_deref()
        .and_then(parse_run_delay)
        .unwrap_or_default()
}

/// The most any one thread of `pid` waited for a CPU between two [`thread_run_delays`]
/// snapshots (threads that appeared in between count from zero).
pub fn most_run_delay_between(before: &[(u32, Duration)], after: &[(u32, Duration)]) -> Duration {
    after
        .iter()
        .map(|(tid, now)| {
            let then = before
                .iter()
                .find(|(t, _)| t == tid)
                .map_or(Duration::ZERO, |b| b.1);
            now.saturating_sub(then)
        })
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(status_kib(me, "VmRSS:").unwrap() > 0);
        assert!(status_kib(me, "VmHWM:").unwrap() > 0);
        assert_eq!(status_kib(me, "NoSuchKey:"), None);
        // Other tests of this binary open and close sockets meanwhile, so open many files and
        // allow a few fds of difference rather than expect an exact count.
        let before = open_fds();
        let files: Vec<_> = (0..200)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let during = open_fds();
        assert!(during.abs_diff(before + 200) <= 10, "{before} -> {during}");
        drop(files);
        assert_eq!(
            parse_run_delay("1018321 1978303 2\n"),
            Some(Duration::from_nanos(1_978_303))
        );
        assert!(!thread_run_delays(me).is_empty());
        assert!(stat_says_stopped("4242 (rtb worker) T 1 4242"));
        assert!(!stat_says_stopped("4242 (a) T) S 1 4242"));
        assert!(!all_threads_stopped(me));
        assert_ne!(effective_uid(), u32::MAX);
        let before = [(1, Duration::from_millis(5)), (2, Duration::from_millis(1))];
        let after = [(1, Duration::from_millis(7)), (3, Duration::from_millis(4))];
        assert_eq!(
            most_run_delay_between(&before, &after),
            Duration::from_millis(4)
        );
    }
}
