//! Owns the size of one upstream's pool on one worker: how many connections (busy and idle
//! together) it should hold, from what the worker measured, so a pool follows its DSP's
//! traffic instead of keeping whatever its busiest second opened.
//!
//! Little's law gives the mean number of calls in flight: `L = λ·W` (calls per second times
//! the mean call duration), measured here as the busy time of all calls that ended in a window
//! divided by the window's length (the same quantity, without dividing and multiplying back).
//! Arrivals are bursty, so the pool keeps headroom over the mean: `L + 3·√L + 1`, the
//! square-root staffing rule for Poisson arrivals (a wait for a connection about one call in
//! a thousand). An exchange's arrivals come in batches (one event-loop turn reads many
//! requests), so the pool also keeps the peak of calls in flight it saw recently, decaying with
//! [`super::ClientConfig::pool_peak_half_life`]: it shrinks after the traffic falls, not at
//! each dip (a pool that closes connections at every dip reopens them at the next peak; see
//! [`super::IDLE_CONNECTIONS_MAX_DEFAULT`]). The target is clamped between the pool's floor
//! ([`super::ClientConfig::connections_min`], the pre-warm count) and its ceiling
//! ([`super::ClientConfig::idle_connections_max`]).
//!
//! The clock is never read here: the caller passes the times it already has (the fan-out's
//! start and each completion).

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

/// How long the sizer measures before it re-sizes the pool.
pub const SIZING_WINDOW: Duration = Duration::from_secs(1);
/// Standard deviations of headroom over the mean calls in flight (square-root staffing).
const HEADROOM_SIGMAS: f64 = 3.0;

/// The sizing state of one upstream's pool. Single-threaded (plain cells).
#[derive(Debug)]
pub(crate) struct PoolSizer {
    floor: usize,
    ceiling: usize,
    peak_half_life: Duration,
    window_start: Cell<Option<Instant>>,
    busy: Cell<Duration>,
    window_peak: Cell<usize>,
    held_peak: Cell<f64>,
    concurrency: Cell<f64>,
    target: Cell<usize>,
}

impl PoolSizer {
    /// A sizer that keeps every connection (the ceiling) until it has measured a window.
    pub(crate) fn new(floor: usize, ceiling: usize, peak_half_life: Duration) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            floor: floor.min(ceiling),
            ceiling,
            peak_half_life,
            window_start: Cell::new(None),
            busy: Cell::new(Duration::ZERO),
            window_peak: Cell::new(0),
            held_peak: Cell::new(0.0),
            concurrency: Cell::new(0.0),
            target: Cell::new(ceiling),
        }
    }

    /// Connections (busy and idle) the pool should hold now.
    pub(crate) fn target(&self) -> usize {
        self.target.get()
    }

    /// Connections the pool keeps when one is released: the target, or the peak of calls in
    /// flight in the window being measured if that is higher, so a connection opened for a
    /// new peak is kept until the window ends and the target takes the peak in (closing it
    /// at once would reopen it at the next call of the same peak).
    pub(crate) fn keep_limit(&self) -> usize {
        self.target
            .get()
            .max(self.window_peak.get().min(self.ceiling))
    }

    /// Mean calls in flight in the last measured window (Little's `L`).
    pub(crate) fn concurrency(&self) -> f64 {
        self.concurrency.get()
    }

    /// A call started; `in_flight` counts it.
    pub(crate) fn call_started(&self, in_flight: usize) {
        if in_flight > self.window_peak.get() {
            self.window_peak.set(in_flight);
        }
    }

    /// A call that started at `started` ended at `ended` (answered, failed or timed out), with
    /// `in_flight` calls still running. Returns true when this closed a window and re-sized the
    /// pool (the caller then trims its idle connections).
    pub(crate) fn call_ended(&self, started: Instant, ended: Instant, in_flight: usize) -> bool {
        let busy = ended.saturating_duration_since(started);
        self.busy.set(self.busy.get() + busy);
        let window_start = match self.window_start.get() {
            Some(at) => at,
            None => {
                self.window_start.set(Some(started));
                started
            }
        };
        let elapsed = ended.saturating_duration_since(window_start);
        if elapsed < SIZING_WINDOW {
            return false;
        }
        self.resize(elapsed);
        self.window_start.set(Some(ended));
        self.busy.set(Duration::ZERO);
        self.window_peak.set(in_flight);
        true
    }

    fn resize(&self, elapsed: Duration) {
        let mean = self.busy.get().as_secs_f64() / elapsed.as_secs_f64();
        self.concurrency.set(mean);
        let decay = 0.5_f64.powf(elapsed.as_secs_f64() / self.peak_half_life.as_secs_f64());
        let held = (self.held_peak.get() * decay).max(self.window_peak.get() as f64);
        self.held_peak.set(held);
        let littles = mean + HEADROOM_SIGMAS * mean.sqrt() + 1.0;
        let wanted = littles.max(held).ceil() as usize;
        self.target.set(wanted.clamp(self.floor, self.ceiling));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `calls` calls of `each` evenly spread over one window from `t0`, `at_once` at a time.
    fn run_window(sizer: &PoolSizer, t0: Instant, calls: u32, each: Duration, at_once: usize) {
        for i in 0..calls {
            let started = t0 + SIZING_WINDOW * i / calls;
            sizer.call_started(at_once);
            sizer.call_ended(started, started + each, at_once - 1);
        }
    }

    #[test]
    fn keeps_everything_until_a_window_is_measured() {
        let sizer = PoolSizer::new(2, 512, Duration::from_secs(10));
        let t0 = Instant::now();
        sizer.call_started(1);
        assert!(!sizer.call_ended(t0, t0 + MS, 0));
        assert_eq!(sizer.target(), 512);
    }

    #[test]
    fn sizes_by_littles_law_with_square_root_headroom() {
        // 4,000 calls/s of 2 ms: L = 8, target = 8 + 3·√8 + 1 = 17.5 → 18.
        let sizer = PoolSizer::new(0, 512, Duration::from_secs(10));
        let t0 = Instant::now();
        run_window(&sizer, t0, 4_000, 2 * MS, 1);
        sizer.call_ended(t0 + SIZING_WINDOW, t0 + SIZING_WINDOW + 2 * MS, 0);
        assert!(
            (sizer.concurrency() - 8.0).abs() < 0.1,
            "{}",
            sizer.concurrency()
        );
        assert_eq!(sizer.target(), 18);
    }

    #[test]
    fn keeps_a_recent_peak_and_lets_it_decay() {
        let sizer = PoolSizer::new(0, 512, Duration::from_secs(10));
        let t0 = Instant::now();
        // A burst of 100 calls in flight at once, then a quiet second per window.
        sizer.call_started(100);
        run_window(&sizer, t0, 10, MS, 1);
        let end = t0 + SIZING_WINDOW;
        assert!(sizer.call_ended(end, end + MS, 0));
        assert_eq!(sizer.target(), 100);
        // 20 s of one call at a time: two half-lives, a quarter of the peak left.
        let mut at = end + MS;
        for _ in 0..20 {
            run_window(&sizer, at, 10, MS, 1);
            at += SIZING_WINDOW;
            sizer.call_ended(at, at + MS, 0);
            at += MS;
        }
        let target = sizer.target();
        assert!((24..=27).contains(&target), "target {target}");
    }

    #[test]
    fn keeps_connections_for_a_new_peak_until_the_window_ends() {
        let sizer = PoolSizer::new(0, 512, Duration::from_secs(10));
        let t0 = Instant::now();
        run_window(&sizer, t0, 10, MS, 1);
        let end = t0 + SIZING_WINDOW;
        sizer.call_ended(end, end + MS, 0);
        assert_eq!(sizer.target(), 2);
        // A burst of eight in the next window: released connections are kept for it.
        sizer.call_started(8);
        assert_eq!(sizer.keep_limit(), 8);
        assert_eq!(sizer.target(), 2);
    }

    #[test]
    fn stays_between_floor_and_ceiling() {
        let t0 = Instant::now();
        let idle = PoolSizer::new(4, 512, Duration::from_secs(10));
        run_window(&idle, t0, 1, MS, 1);
        idle.call_ended(t0 + SIZING_WINDOW, t0 + SIZING_WINDOW + MS, 0);
        assert_eq!(idle.target(), 4);
        let busy = PoolSizer::new(4, 16, Duration::from_secs(10));
        busy.call_started(300);
        run_window(&busy, t0, 1_000, 100 * MS, 1);
        busy.call_ended(t0 + SIZING_WINDOW, t0 + SIZING_WINDOW + MS, 0);
        assert_eq!(busy.target(), 16);
    }
}
