//! Owns the adaptive half of admission (issue 14): the share of new auctions a worker sheds,
//! steered by how late its event loop runs, so the auctions it does take keep their deadline.
//!
//! The controller is PIE's (RFC 8033, "Proportional Integral controller Enhanced"), with the
//! event-loop lag as its queue delay: every `update_period` the shed probability moves by
//! `alpha` times the lag's excess over `target` plus `beta` times the lag's change since the
//! last update (rising only while the lag is over the target), and decays by 10% an update
//! while both are under half the target. Why the lag:
//! a request's own wait, between the kernel receiving it and the worker reading it, is not
//! visible to the worker, but it is at most one turn of the event loop, and the lag probe
//! measures those turns (a timer due in 1 ms fires one turn late). Why PIE rather than CoDel's
//! on/off state: shedding a steady share keeps the worker busy with real auctions at close to
//! its capacity (goodput), where dropping everything for an interval and then nothing makes the
//! lag swing. Decisions are deterministic (an accumulator sheds one request each time the
//! shares add up to one), so a simulation replays exactly. Sans-IO: the lag and the time are
//! passed in.

use std::time::{Duration, Instant};

/// Default lag above which a share of new auctions is shed.
pub const DEFAULT_SHED_TARGET_LAG: Duration = Duration::from_millis(4);
/// Default time between updates of the shed probability.
pub const DEFAULT_SHED_UPDATE_PERIOD: Duration = Duration::from_millis(15);
/// Default gain on the lag's excess over the target, per second of excess.
pub const DEFAULT_SHED_ALPHA: f64 = 2.0;
/// Default gain on the lag's change between updates, per second of change.
pub const DEFAULT_SHED_BETA: f64 = 20.0;
/// Share of the probability kept per update while the lag stays under half the target.
const DECAY: f64 = 0.9;

/// The controller's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShedRatePolicy {
    /// Off: only the fixed thresholds shed (the behaviour before issue 14).
    pub enabled: bool,
    /// The lag the controller steers towards.
    pub target: Duration,
    /// How often the probability moves.
    pub update_period: Duration,
    /// See [`DEFAULT_SHED_ALPHA`].
    pub alpha: f64,
    /// See [`DEFAULT_SHED_BETA`].
    pub beta: f64,
}

impl Default for ShedRatePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            target: DEFAULT_SHED_TARGET_LAG,
            update_period: DEFAULT_SHED_UPDATE_PERIOD,
            alpha: DEFAULT_SHED_ALPHA,
            beta: DEFAULT_SHED_BETA,
        }
    }
}

/// One worker's controller state.
#[derive(Clone, Debug)]
pub struct ShedRate {
    policy: ShedRatePolicy,
    probability: f64,
    last_lag: Duration,
    next_update: Option<Instant>,
    credit: f64,
}

impl ShedRate {
    /// A controller that sheds nothing yet.
    pub fn new(policy: ShedRatePolicy) -> Self {
        Self {
            policy,
            probability: 0.0,
            last_lag: Duration::ZERO,
            next_update: None,
            credit: 0.0,
        }
    }

    /// The share of new auctions shed now, 0 to 1.
    pub fn probability(&self) -> f64 {
        self.probability
    }

    /// Whether to start an auction arriving at `now` while the worker's loop lags `lag`
    /// (the probability first moves if an update is due).
    pub fn admit(&mut self, lag: Duration, now: Instant) -> bool {
        if !self.policy.enabled {
            return true;
        }
        self.update(lag, now);
        if self.probability <= 0.0 {
            self.credit = 0.0;
            return true;
        }
        self.credit += self.probability;
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            return false;
        }
        true
    }

    fn update(&mut self, lag: Duration, now: Instant) {
        let Some(due) = self.next_update else {
            // The first sample: no change to measure yet.
            self.next_update = Some(now + self.policy.update_period);
            self.last_lag = lag;
            return;
        };
        if now < due {
            return;
        }
        self.next_update = Some(now + self.policy.update_period);
        let target = self.policy.target.as_secs_f64();
        let (current, last) = (lag.as_secs_f64(), self.last_lag.as_secs_f64());
        self.last_lag = lag;
        let mut p = self.probability
            + self.policy.alpha * (current - target)
            + self.policy.beta * (current - last);
        // The lag moves in millisecond steps (the timer's resolution): below the target a
        // rising lag is noise, not a queue, so the share may only fall there.
        if current <= target {
            p = p.min(self.probability);
        }
        if current < target / 2.0 && last < target / 2.0 {
            p *= DECAY;
        }
        self.probability = if p < 1e-4 { 0.0 } else { p.min(1.0) };
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

    /// Feeds one request per 100 us for `ms` ms with the lag `lag(ms elapsed)`; how many
    /// were admitted.
    fn feed(c: &mut ShedRate, from: Instant, ms: u64, lag: impl Fn(u64) -> Duration) -> u64 {
        (0..ms * 10)
            .filter(|i| c.admit(lag(i / 10), from + Duration::from_micros(i * 100)))
            .count() as u64
    }

    #[test]
    fn a_worker_on_time_sheds_nothing() {
        let mut c = ShedRate::new(ShedRatePolicy::default());
        assert_eq!(feed(&mut c, t0(), 1000, |_| MS), 10_000);
        assert_eq!(c.probability(), 0.0);
    }

    #[test]
    fn a_standing_lag_raises_the_share_and_its_end_brings_it_back() {
        let mut c = ShedRate::new(ShedRatePolicy::default());
        let t = t0();
        // 20 ms of lag for 300 ms: the share climbs steeply.
        let admitted = feed(&mut c, t, 300, |_| 20 * MS);
        assert!(c.probability() > 0.5, "{}", c.probability());
        assert!(admitted < 3000, "{admitted}");
        // The lag is gone: within a second nearly everything is admitted again.
        feed(&mut c, t + 300 * MS, 1000, |_| MS);
        assert!(c.probability() < 0.01, "{}", c.probability());
        assert!(feed(&mut c, t + 1300 * MS, 100, |_| MS) >= 990);
    }

    #[test]
    fn the_decisions_spread_the_share_evenly() {
        let mut c = ShedRate::new(ShedRatePolicy::default());
        c.probability = 0.25;
        c.next_update = Some(t0() + Duration::from_secs(3600));
        let decisions: Vec<bool> = (0..8).map(|_| c.admit(4 * MS, t0())).collect();
        assert_eq!(
            decisions,
            [true, true, true, false, true, true, true, false]
        );
    }

    #[test]
    fn disabled_it_admits_everything() {
        let policy = ShedRatePolicy {
            enabled: false,
            ..ShedRatePolicy::default()
        };
        let mut c = ShedRate::new(policy);
        assert_eq!(feed(&mut c, t0(), 100, |_| 50 * MS), 1000);
    }
}
