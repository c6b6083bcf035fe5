//! Owns the per-DSP circuit breaker: a pure state machine with time as a parameter. The engine
//! keeps one per DSP per worker.
//!
//! A DSP that fails (transport error, timeout, non-200/204 status, undecodable body)
//! [`BreakerConfig::failures_to_trip`] times in a row is *opened*: the worker skips it for a
//! cool-down. When the cool-down ends, one call goes through as a *probe* (half-open) while the
//! others keep skipping; a probe that succeeds closes the breaker and resets the cool-down, a
//! probe that fails re-opens it with the cool-down doubled (capped at
//! [`BreakerConfig::cooldown_max`]). Bids that the auction rejects are not failures: the DSP
//! answered in time, and rejections are counted on their own.
//!
//! Each worker owns its breakers (no cross-core state): with W workers a failing DSP gets up to
//! W probes per cool-down, and a DSP failing on one worker's connections only is throttled there
//! only. Calls already in flight when the breaker opens finish normally; their results are
//! ignored (only the probe's result decides a half-open breaker). A probe whose result never
//! comes back (its auction was dropped) is given up after [`BreakerConfig::probe_timeout`], so a
//! breaker cannot stick half-open.

use std::time::{Duration, Instant};

/// Default consecutive failures that open a breaker.
pub const FAILURES_TO_TRIP_DEFAULT: u32 = 5;
/// Default first cool-down.
pub const COOLDOWN_DEFAULT: Duration = Duration::from_millis(500);
/// Default longest cool-down.
pub const COOLDOWN_MAX_DEFAULT: Duration = Duration::from_secs(30);
/// Time after which an unanswered probe is forgotten and another one allowed.
pub const PROBE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Breaker settings (shared by every DSP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 disables it (never opens).
    pub failures_to_trip: u32,
    /// First cool-down after a trip.
    pub cooldown: Duration,
    /// Cap on the doubled cool-down.
    pub cooldown_max: Duration,
    /// A probe not resolved within this time is given up.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_trip: FAILURES_TO_TRIP_DEFAULT,
            cooldown: COOLDOWN_DEFAULT,
            cooldown_max: COOLDOWN_MAX_DEFAULT,
            probe_timeout: PROBE_TIMEOUT_DEFAULT,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through; counts consecutive failures.
    Closed {
        /// Failures in a row so far.
        failures: u32,
    },
    /// Calls are skipped until `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
    },
    /// One probe is out (sent at `probe_sent`); other calls are skipped.
    HalfOpen {
        /// When the probe was admitted.
        probe_sent: Instant,
    },
}

impl State {
    /// Every state's name, in a fixed order (for metrics: one series per state).
    pub const NAMES: [&'static str; 3] = ["closed", "open", "half_open"];

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> u64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// What to do with the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Call normally.
    Call,
    /// Call; its result decides whether the breaker closes.
    Probe,
    /// Do not call.
    Skip,
}

/// A state change worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed state.
    None,
    /// Closed → open (a trip).
    Tripped,
    /// A probe failed: open again with a longer cool-down.
    Reopened,
    /// A probe succeeded: closed.
    Closed,
}

/// One DSP's breaker on one worker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// The cool-down the next (re)opening uses.
    next_cooldown: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        debug_assert!(config.cooldown <= config.cooldown_max);
        Self {
            config,
            state: State::Closed { failures: 0 },
            next_cooldown: config.cooldown,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Decides whether a call made at `now` goes through.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::Call,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probe_sent: now };
                Admit::Probe
            }
            State::Open { .. } => Admit::Skip,
            State::HalfOpen { probe_sent }
                if now.saturating_duration_since(probe_sent) >= self.config.probe_timeout =>
            {
                self.state = State::HalfOpen { probe_sent: now };
                Admit::Probe
            }
            State::HalfOpen { .. } => Admit::Skip,
        }
    }

    /// Records the result of a call admitted as `admitted`, finished at `now`.
    pub fn record(&mut self, admitted: Admit, ok: bool, now: Instant) -> Transition {
        match (self.state, admitted) {
            (State::Closed { failures }, Admit::Call) => {
                if ok {
                    self.state = State::Closed { failures: 0 };
                    return Transition::None;
                }
                let failures = failures.saturating_add(1);
                if self.config.failures_to_trip > 0 && failures >= self.config.failures_to_trip {
                    self.open(now);
                    Transition::Tripped
                } else {
                    self.state = State::Closed { failures };
                    Transition::None
                }
            }
            (State::HalfOpen { .. }, Admit::Probe) => {
                if ok {
                    self.state = State::Closed { failures: 0 };
                    self.next_cooldown = self.config.cooldown;
                    Transition::Closed
                } else {
                    self.open(now);
                    Transition::Reopened
                }
            }
            // Results of calls admitted before the last change (late, concurrent, or a probe
            // already given up) say nothing about the current state.
            _ => Transition::None,
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = State::Open {
            until: now + self.next_cooldown,
        };
        self.next_cooldown = self
            .next_cooldown
            .saturating_mul(2)
            .min(self.config.cooldown_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn now() -> Instant {
        Instant::now()
    }

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures_to_trip: 3,
            cooldown: 100 * MS,
            cooldown_max: 350 * MS,
            probe_timeout: 1000 * MS,
        }
    }

    fn fail(b: &mut Breaker, now: Instant) -> Transition {
        let a = b.admit(now);
        assert_ne!(a, Admit::Skip);
        b.record(a, false, now)
    }

    #[test]
    fn trips_after_consecutive_failures_only() {
        let t0 = now();
        let mut b = Breaker::new(cfg());
        assert_eq!(fail(&mut b, t0), Transition::None);
        assert_eq!(fail(&mut b, t0), Transition::None);
        // A success resets the streak.
        let a = b.admit(t0);
        assert_eq!(b.record(a, true, t0), Transition::None);
        assert_eq!(fail(&mut b, t0), Transition::None);
        assert_eq!(fail(&mut b, t0), Transition::None);
        assert_eq!(b.state(), State::Closed { failures: 2 });
        assert_eq!(fail(&mut b, t0), Transition::Tripped);
        assert_eq!(b.state().gauge(), 1);
        assert_eq!(b.admit(t0 + 99 * MS), Admit::Skip);
    }

    #[test]
    fn half_open_probe_closes_or_reopens_with_backoff() {
        let t0 = now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        // Cool-down 100 ms, then exactly one probe.
        assert_eq!(b.admit(t0 + 100 * MS), Admit::Probe);
        assert_eq!(b.state().gauge(), 2);
        assert_eq!(b.admit(t0 + 101 * MS), Admit::Skip);
        // Probe fails: open for 200 ms.
        let t1 = t0 + 110 * MS;
        assert_eq!(b.record(Admit::Probe, false, t1), Transition::Reopened);
        assert_eq!(b.admit(t1 + 199 * MS), Admit::Skip);
        assert_eq!(b.admit(t1 + 200 * MS), Admit::Probe);
        // Fails again: 350 ms (capped from 400).
        let t2 = t1 + 210 * MS;
        assert_eq!(b.record(Admit::Probe, false, t2), Transition::Reopened);
        assert_eq!(b.admit(t2 + 349 * MS), Admit::Skip);
        assert_eq!(b.admit(t2 + 350 * MS), Admit::Probe);
        let t3 = t2 + 360 * MS;
        assert_eq!(b.record(Admit::Probe, true, t3), Transition::Closed);
        assert_eq!(b.state(), State::Closed { failures: 0 });
        // The cool-down was reset: the next trip opens for 100 ms again.
        for _ in 0..3 {
            fail(&mut b, t3);
        }
        assert_eq!(b.admit(t3 + 99 * MS), Admit::Skip);
        assert_eq!(b.admit(t3 + 100 * MS), Admit::Probe);
    }

    #[test]
    fn late_results_do_not_decide() {
        let t0 = now();
        let mut b = Breaker::new(cfg());
        // Two calls admitted while closed, the breaker trips meanwhile.
        let early = b.admit(t0);
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        assert_eq!(b.record(early, true, t0), Transition::None);
        assert_eq!(b.state().gauge(), 1);
        // Half-open: a late non-probe success does not close it.
        assert_eq!(b.admit(t0 + 100 * MS), Admit::Probe);
        assert_eq!(b.record(Admit::Call, true, t0 + 101 * MS), Transition::None);
        assert_eq!(b.state().gauge(), 2);
    }

    #[test]
    fn lost_probe_is_given_up() {
        let t0 = now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        assert_eq!(b.admit(t0 + 100 * MS), Admit::Probe);
        assert_eq!(b.admit(t0 + 1099 * MS), Admit::Skip);
        assert_eq!(b.admit(t0 + 1100 * MS), Admit::Probe);
    }

    #[test]
    fn zero_threshold_never_trips() {
        let t0 = now();
        let mut b = Breaker::new(BreakerConfig {
            failures_to_trip: 0,
            ..cfg()
        });
        for _ in 0..100 {
            assert_eq!(fail(&mut b, t0), Transition::None);
        }
        assert_eq!(b.admit(t0), Admit::Call);
    }
}
