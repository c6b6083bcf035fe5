//! Owns admission: whether a worker takes a new auction or sheds it at once (204), given what
//! the worker measures of itself. Shedding early keeps the auctions it does take within their
//! deadline; queueing them all would make every one of them late.
//!
//! The rules: the deadline's own "too late to start" ([`crate::deadline`]), two fixed
//! thresholds (event-loop lag, auctions in flight) as backstops, the request's own wait
//! (with an optional standing test, [`super::standing_wait`]), then the adaptive share
//! ([`super::shed_rate`]).

use std::time::{Duration, Instant};

use super::standing_wait::StandingWait;

/// What a worker measures of itself when an auction arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerLoad {
    /// How late the worker's timers fire (smoothed): its DSP deadlines will fire that late too,
    /// and requests wait that long in socket buffers before they are read.
    pub event_loop_lag: Duration,
    /// Auctions on this worker waiting for DSPs.
    pub auctions_in_flight: u32,
    /// How long this request waited before the worker started on it: unread in the kernel's
    /// socket buffer (when the server stamps arrivals) and in the worker's own queue after it
    /// was read (the server's turn budget). Time the request's DSPs will not get.
    pub queue_wait: Duration,
    /// The part of `queue_wait` spent unread in the kernel (zero when the server does not
    /// stamp arrivals): the queue-wait rule's standing test reads it ([`StandingWait`]).
    pub kernel_wait: Duration,
}

/// Default event-loop lag above which new auctions are shed.
pub const DEFAULT_EVENT_LOOP_LAG_MAX: Duration = Duration::from_millis(10);
/// Default cap on auctions in flight on one worker.
pub const DEFAULT_AUCTIONS_IN_FLIGHT_MAX: u32 = 512;
/// Default wait (kernel and worker queues) above which a request is shed before it is decoded.
///
/// A fixed threshold per request unless [`OverloadPolicy::queue_wait_interval`] is set; then
/// CoDel's standing test on the kernel's wait only ([`StandingWait`] says why not on the
/// turn queue's).
pub const DEFAULT_QUEUE_WAIT_MAX: Duration = Duration::from_millis(10);

/// Why an auction was answered 204 at once instead of being run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedReason {
    /// Less than the smallest DSP budget is left before the deadline.
    TooLate,
    /// The worker's event loop runs late: its timers (the DSP deadlines among them) would fire
    /// late too, and requests wait in socket buffers before they are even read.
    EventLoopLag,
    /// The worker already has its maximum of auctions waiting for DSPs.
    InFlight,
    /// No DSP's policy (channel, media, country filters, QPS cap) admits the request.
    NoDspMatched,
    /// The adaptive controllers: the worker's loop runs later than its target (a share shed),
    /// or the request waited longer than allowed in the worker's own queue.
    Overload,
}

impl ShedReason {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [ShedReason; 5] = [
        ShedReason::TooLate,
        ShedReason::EventLoopLag,
        ShedReason::InFlight,
        ShedReason::NoDspMatched,
        ShedReason::Overload,
    ];

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::TooLate => "too_late",
            ShedReason::EventLoopLag => "event_loop_lag",
            ShedReason::InFlight => "in_flight",
            ShedReason::NoDspMatched => "no_dsp_matched",
            ShedReason::Overload => "overload",
        }
    }
}

/// When a worker is overloaded: answering some requests at once with 204 keeps the others
/// within their deadline, where queueing them all would make every one of them late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverloadPolicy {
    /// Shed new auctions while the worker's event loop lags more than this.
    pub event_loop_lag_max: Duration,
    /// Shed new auctions while this many are already waiting for DSPs on the worker.
    pub auctions_in_flight_max: u32,
    /// Shed a request that waited longer than this before the worker started on it.
    pub queue_wait_max: Duration,
    /// Zero: every request over `queue_wait_max` is shed. Otherwise a request the worker's
    /// turn queue did not hold is shed only once the kernel's wait has stood over
    /// `queue_wait_max` for this long ([`StandingWait`]): a passing burst is run. One that
    /// waited a turn is shed on its whole wait, as with zero.
    pub queue_wait_interval: Duration,
}

impl Default for OverloadPolicy {
    fn default() -> Self {
        Self {
            event_loop_lag_max: DEFAULT_EVENT_LOOP_LAG_MAX,
            auctions_in_flight_max: DEFAULT_AUCTIONS_IN_FLIGHT_MAX,
            queue_wait_max: DEFAULT_QUEUE_WAIT_MAX,
            queue_wait_interval: Duration::ZERO,
        }
    }
}

impl OverloadPolicy {
    /// Whether to shed an auction given what the worker measured of itself.
    pub fn shed(&self, load: WorkerLoad) -> Option<ShedReason> {
        if load.event_loop_lag > self.event_loop_lag_max {
            Some(ShedReason::EventLoopLag)
        } else if load.auctions_in_flight >= self.auctions_in_flight_max {
            Some(ShedReason::InFlight)
        } else if load.queue_wait > self.queue_wait_max {
            Some(ShedReason::Overload)
        } else {
            None
        }
    }

    /// [`OverloadPolicy::shed`] with the queue-wait rule's standing test: notes the request
    /// read at `now` in `standing`, and spares it when it is over the queue-wait limit only
    /// for a passing burst (see `queue_wait_interval`).
    pub fn shed_unless_passing(
        &self,
        load: WorkerLoad,
        standing: &mut StandingWait,
        now: Instant,
    ) -> Option<ShedReason> {
        let interval = self.queue_wait_interval;
        // Only a request the turn queue did not hold was started in about the order it came:
        // only it is noted, and only it may be spared. One that waited a turn is judged on its
        // whole wait: under overload the wait splits between the two queues, and sparing
        // those with neither part over the limit made answers late (BENCHMARKS.md, "A
        // standing test on the queue wait").
        let read_in_order = load.queue_wait <= load.kernel_wait;
        let stood =
            read_in_order && standing.observe(load.kernel_wait, self.queue_wait_max, interval, now);
        let reason = self.shed(load)?;
        let passing =
            reason == ShedReason::Overload && !interval.is_zero() && read_in_order && !stood;
        (!passing).then_some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn load(event_loop_lag: Duration, auctions_in_flight: u32) -> WorkerLoad {
        WorkerLoad {
            event_loop_lag,
            auctions_in_flight,
            queue_wait: Duration::ZERO,
            kernel_wait: Duration::ZERO,
        }
    }

    #[test]
    fn overload_sheds_on_lag_or_in_flight() {
        let policy = OverloadPolicy {
            event_loop_lag_max: 10 * MS,
            auctions_in_flight_max: 4,
            queue_wait_max: 5 * MS,
            queue_wait_interval: Duration::ZERO,
        };
        assert_eq!(policy.shed(load(2 * MS, 0)), None);
        assert_eq!(policy.shed(load(10 * MS, 3)), None);
        assert_eq!(
            policy.shed(load(11 * MS, 0)),
            Some(ShedReason::EventLoopLag)
        );
        assert_eq!(
            policy.shed(load(Duration::ZERO, 4)),
            Some(ShedReason::InFlight)
        );
        assert_eq!(
            policy.shed(load(20 * MS, 9)),
            Some(ShedReason::EventLoopLag)
        );
    }

    #[test]
    fn a_request_that_waited_too_long_in_the_workers_queue_is_shed() {
        let policy = OverloadPolicy {
            queue_wait_max: 5 * MS,
            ..OverloadPolicy::default()
        };
        let waited = |queue_wait| WorkerLoad {
            queue_wait,
            ..WorkerLoad::default()
        };
        assert_eq!(policy.shed(waited(5 * MS)), None);
        assert_eq!(policy.shed(waited(6 * MS)), Some(ShedReason::Overload));
    }

    /// With an interval, a request over the limit for a passing burst in the kernel is run,
    /// one in a standing wait or stale in the turn queue is shed; the other rules are not
    /// changed. Without one, every request over the limit is shed.
    #[test]
    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn a_passing_burst_is_spared_only_with_an_interval() {
        let t0 = Instant::now();
        let waited = |kernel_ms: u64, turn_ms: u64| WorkerLoad {
            kernel_wait: Duration::from_millis(kernel_ms),
            queue_wait: Duration::from_millis(kernel_ms + turn_ms),
            ..WorkerLoad::default()
        };
        let strict = OverloadPolicy::default();
        let mut standing = StandingWait::default();
        let overload = Some(ShedReason::Overload);
        assert_eq!(
            strict.shed_unless_passing(waited(12, 0), &mut standing, t0),
            overload
        );

        let policy = OverloadPolicy {
            queue_wait_interval: 20 * MS,
            ..OverloadPolicy::default()
        };
        let mut standing = StandingWait::default();
        let mut at = |ms: u64, load: WorkerLoad| {
            policy.shed_unless_passing(load, &mut standing, t0 + Duration::from_millis(ms))
        };
        assert_eq!(at(0, waited(12, 0)), None, "a burst begins");
        assert_eq!(at(5, waited(1, 11)), overload, "stale in the turn queue");
        assert_eq!(
            at(6, waited(6, 6)),
            overload,
            "waited a turn: its whole wait counts"
        );
        assert_eq!(
            at(7, waited(3, 0)),
            None,
            "under the limit: the burst is over"
        );
        assert_eq!(at(8, waited(30, 0)), None, "a new stretch over the limit");
        assert_eq!(at(27, waited(30, 0)), None);
        assert_eq!(at(28, waited(30, 0)), overload, "it stood for the interval");
        let in_flight_max = WorkerLoad {
            auctions_in_flight: policy.auctions_in_flight_max,
            ..waited(0, 0)
        };
        assert_eq!(at(32, in_flight_max), Some(ShedReason::InFlight));
    }
}
