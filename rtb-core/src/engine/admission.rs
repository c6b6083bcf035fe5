//! Owns admission: whether a worker takes a new auction or sheds it at once (204), given what
//! the worker measures of itself. Shedding early keeps the auctions it does take within their
//! deadline; queueing them all would make every one of them late.
//!
//! The rules: the deadline's own "too late to start" ([`crate::deadline`]), two fixed
//! thresholds (event-loop lag, auctions in flight) as backstops, then the adaptive share
//! ([`super::shed_rate`]).

use std::time::Duration;

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
}

/// Default event-loop lag above which new auctions are shed.
pub const DEFAULT_EVENT_LOOP_LAG_MAX: Duration = Duration::from_millis(10);
/// Default cap on auctions in flight on one worker.
pub const DEFAULT_AUCTIONS_IN_FLIGHT_MAX: u32 = 512;
/// Default wait (kernel and worker queues) above which a request is shed before it is decoded.
///
/// A fixed threshold per request, not CoDel's minimum wait over an interval. The minimum would
/// spare requests delayed by a passing burst (a half-load run on 2026-12-07 shed 25 of 22,843,
/// each with about 70 ms of its deadline left), but CoDel takes it over a FIFO queue, and
/// rtb-io's turn queue serves newest first once it stands. Taken over the requests served, the
/// minimum would fall under the target on each fresh one while the queue stands, and the stale
/// requests the queue hands over first, to be shed, would run. An interval rule needs a FIFO
/// signal: the kernel's wait alone, or the age of the turn queue's oldest request. One on the
/// kernel's wait was tried and not kept: it spared no more than chance at half load, and a
/// form that also spared requests held by the turn queue made answers late at 3x (BENCHMARKS.md,
/// "A standing test on the queue wait").
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
}

impl Default for OverloadPolicy {
    fn default() -> Self {
        Self {
            event_loop_lag_max: DEFAULT_EVENT_LOOP_LAG_MAX,
            auctions_in_flight_max: DEFAULT_AUCTIONS_IN_FLIGHT_MAX,
            queue_wait_max: DEFAULT_QUEUE_WAIT_MAX,
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
        }
    }

    #[test]
    fn overload_sheds_on_lag_or_in_flight() {
        let policy = OverloadPolicy {
            event_loop_lag_max: 10 * MS,
            auctions_in_flight_max: 4,
            queue_wait_max: 5 * MS,
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
}
