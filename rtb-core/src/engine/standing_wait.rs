//! Owns the standing test of the queue-wait rule (issue 14): whether the requests a worker reads
//! have all waited over the limit in the kernel for a whole interval (a standing backlog: shed
//! them) or only for part of one (a passing burst: their deadline is mostly left, run them).
//!
//! CoDel's test (RFC 8289: the minimum sojourn over an interval stays above target), on the
//! requests the worker's turn queue did not hold, whose wait is the kernel's: they leave the
//! kernel's socket buffers in about the order they came, which the test needs. The turn queue
//! serves newest first once it stands, so a minimum over its waits would fall under the limit
//! on each fresh request and stop every shed: a request that waited a turn is shed on its
//! whole wait, as without an interval
//! ([`super::admission::OverloadPolicy::shed_unless_passing`]). Sans-IO: the wait and the time
//! are passed in.

use std::time::{Duration, Instant};

/// Whether the kernel's wait has stood over a limit for an interval, from the requests read.
#[derive(Clone, Copy, Debug, Default)]
pub struct StandingWait {
    /// Since when every request read waited over the limit in the kernel; `None` once one
    /// did not.
    over_since: Option<Instant>,
}

impl StandingWait {
    /// Notes a request read at `now` that waited `kernel_wait` unread; says whether every
    /// request read for at least `interval` up to it waited over `max`.
    pub fn observe(
        &mut self,
        kernel_wait: Duration,
        max: Duration,
        interval: Duration,
        now: Instant,
    ) -> bool {
        if kernel_wait <= max {
            self.over_since = None;
            return false;
        }
        let since = *self.over_since.get_or_insert(now);
        now.saturating_duration_since(since) >= interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn a_burst_shorter_than_the_interval_is_spared_a_standing_wait_is_not() {
        let t0 = Instant::now();
        let mut standing = StandingWait::default();
        let mut at = |ms: u64, wait_ms: u64| {
            standing.observe(
                Duration::from_millis(wait_ms),
                10 * MS,
                20 * MS,
                t0 + Duration::from_millis(ms),
            )
        };
        // A burst: over the limit for 15 ms, then a request under it ends it.
        assert!(!at(0, 12));
        assert!(!at(15, 30));
        assert!(!at(16, 3));
        // A new stretch over the limit is timed from its own start.
        assert!(!at(17, 11));
        assert!(!at(36, 11));
        assert!(at(37, 11), "20 ms over the limit: standing");
        assert!(at(60, 40));
        // One request under the limit ends the standing wait.
        assert!(!at(61, 10));
        assert!(!at(62, 50));
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn with_no_interval_every_wait_over_the_limit_stands() {
        let t0 = Instant::now();
        let mut standing = StandingWait::default();
        assert!(standing.observe(11 * MS, 10 * MS, Duration::ZERO, t0));
        assert!(!standing.observe(10 * MS, 10 * MS, Duration::ZERO, t0));
    }
}
