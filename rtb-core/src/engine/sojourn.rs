//! Owns the adaptive half of admission: a CoDel-style controller on the queue sojourn time of
//! accepted work (from when the shell read the request to when the engine starts it).
//!
//! It is the server-queue variant of CoDel (as in Facebook's Wangle): the controller watches the
//! smallest sojourn seen in each interval. A standing queue (even the luckiest request waited
//! more than `target`) marks the worker overloaded for the next interval, and then any request
//! that waited more than `target` is shed; otherwise only requests that waited more than
//! `interval` are. Bursts that drain within an interval pass; a queue that stands is cut to
//! `target` within about one interval, and admission recovers one interval after the queue is
//! gone. Sans-IO: the shell passes the sojourn and the time.
//!
//! Not yet wired into `Engine::start` (the fixed thresholds in `admission.rs` still decide).

use std::time::{Duration, Instant};

/// Default sojourn a worker tolerates as a standing queue.
pub const DEFAULT_SOJOURN_TARGET: Duration = Duration::from_millis(5);
/// Default window over which the smallest sojourn is judged; also the cap on one request's
/// sojourn while the worker is not overloaded.
pub const DEFAULT_SOJOURN_INTERVAL: Duration = Duration::from_millis(20);

/// The controller's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SojournPolicy {
    /// A standing queue longer than this means overload.
    pub target: Duration,
    /// The window of the smallest-sojourn measure.
    pub interval: Duration,
}

impl Default for SojournPolicy {
    fn default() -> Self {
        Self {
            target: DEFAULT_SOJOURN_TARGET,
            interval: DEFAULT_SOJOURN_INTERVAL,
        }
    }
}

/// One worker's controller state.
#[derive(Clone, Debug)]
pub struct SojournController {
    policy: SojournPolicy,
    interval_start: Option<Instant>,
    smallest_in_interval: Duration,
    overloaded: bool,
}

impl SojournController {
    /// A controller that starts not overloaded.
    pub fn new(policy: SojournPolicy) -> Self {
        Self {
            policy,
            interval_start: None,
            smallest_in_interval: Duration::MAX,
            overloaded: false,
        }
    }

    /// Whether the last full interval showed a standing queue.
    pub fn overloaded(&self) -> bool {
        self.overloaded
    }

    /// Whether to start a request that waited `sojourn` before the engine saw it, at `now`.
    /// Every request is fed in, shed or not: shed ones still measure the queue.
    pub fn admit(&mut self, sojourn: Duration, now: Instant) -> bool {
        let start = *self.interval_start.get_or_insert(now);
        self.smallest_in_interval = self.smallest_in_interval.min(sojourn);
        if now.saturating_duration_since(start) >= self.policy.interval {
            self.overloaded = self.smallest_in_interval > self.policy.target;
            self.interval_start = Some(now);
            self.smallest_in_interval = Duration::MAX;
        }
        let limit = if self.overloaded {
            self.policy.target
        } else {
            self.policy.interval
        };
        sojourn <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn t0() -> Instant {
        Instant::now()
    }

    /// Feeds one request per millisecond with the given sojourn from `from` for `ms`
    /// milliseconds; returns how many were admitted and the time of the first shed.
    fn feed(
        controller: &mut SojournController,
        from: Instant,
        ms: u32,
        sojourn: Duration,
    ) -> (u32, Option<Duration>) {
        let mut admitted = 0;
        let mut first_shed = None;
        for i in 0..ms {
            let at = i * MS;
            if controller.admit(sojourn, from + at) {
                admitted += 1;
            } else if first_shed.is_none() {
                first_shed = Some(at);
            }
        }
        (admitted, first_shed)
    }

    #[test]
    fn short_queue_is_admitted() {
        let mut controller = SojournController::new(SojournPolicy::default());
        let t0 = t0();
        assert_eq!(feed(&mut controller, t0, 200, 2 * MS), (200, None));
        assert!(!controller.overloaded());
    }

    #[test]
    fn standing_queue_sheds_within_two_intervals_then_recovers() {
        let policy = SojournPolicy::default();
        let mut controller = SojournController::new(policy);
        let t0 = t0();
        // A standing 8 ms queue: above target, below interval, so only the controller sheds it.
        let (_, first_shed) = feed(&mut controller, t0, 100, 8 * MS);
        let first_shed = first_shed.expect("a standing queue is shed");
        assert!(
            first_shed <= 2 * policy.interval,
            "shed after {first_shed:?}"
        );
        assert!(controller.overloaded());
        // The queue is gone: admission comes back within two intervals.
        let t1 = t0 + 100 * MS;
        let (admitted, _) = feed(&mut controller, t1, 100, MS);
        assert!(!controller.overloaded());
        assert!(admitted >= 100 - 2 * 20, "admitted {admitted}");
        let (admitted, first_shed) = feed(&mut controller, t1 + 100 * MS, 50, MS);
        assert_eq!((admitted, first_shed), (50, None));
    }

    #[test]
    fn burst_shorter_than_interval_passes() {
        let mut controller = SojournController::new(SojournPolicy::default());
        let t0 = t0();
        feed(&mut controller, t0, 30, MS);
        // 10 ms of 15 ms sojourns after a calm interval: a burst, not a standing queue.
        assert_eq!(feed(&mut controller, t0 + 30 * MS, 10, 15 * MS), (10, None));
    }

    #[test]
    fn sojourn_beyond_interval_is_always_shed() {
        let mut controller = SojournController::new(SojournPolicy::default());
        assert!(!controller.admit(21 * MS, t0()));
    }
}
