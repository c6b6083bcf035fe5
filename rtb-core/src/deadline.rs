//! Deadline arithmetic with time as a parameter: when the exchange must answer, how much time
//! each DSP gets (the `tmax` it is sent), and whether an auction is too late to start.
//! Whether the worker can take the auction at all is [`crate::engine::admission`]'s.
//!
//! ```text
//! arrival                                   deadline        arrival + min(tmax, cap)
//!    |----- DSP budget (tmax sent) -----|net|   margin    |
//! ```
//! The margin is the time reserved after the DSPs' deadline to run the auction and write the
//! answer; the network allowance is what a DSP's answer needs to travel back.

use std::time::{Duration, Instant};

/// Default cap on the time an auction may take, whatever the request's `tmax` says.
pub const DEFAULT_DEADLINE_CAP: Duration = Duration::from_millis(80);
/// Default time kept after the DSP deadline to decide and answer.
pub const DEFAULT_RESPONSE_MARGIN: Duration = Duration::from_millis(3);
/// Default time a DSP's answer is assumed to need on the wire.
pub const DEFAULT_NETWORK_ALLOWANCE: Duration = Duration::from_millis(1);
/// Default smallest `tmax` worth sending: below it no DSP can answer, so the auction is shed.
pub const DEFAULT_DSP_BUDGET_MIN: Duration = Duration::from_millis(5);

/// The exchange's timing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlinePolicy {
    /// No auction takes longer than this, whatever `tmax` says.
    pub cap: Duration,
    /// Reserved after the DSP deadline to run the auction and write the answer.
    pub response_margin: Duration,
    /// Subtracted from a DSP's budget for the answer's trip back.
    pub network_allowance: Duration,
    /// A DSP call with less time than this is not started.
    pub dsp_budget_min: Duration,
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        Self {
            cap: DEFAULT_DEADLINE_CAP,
            response_margin: DEFAULT_RESPONSE_MARGIN,
            network_allowance: DEFAULT_NETWORK_ALLOWANCE,
            dsp_budget_min: DEFAULT_DSP_BUDGET_MIN,
        }
    }
}

/// The timing of one auction, decided when its request has been decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuctionTiming {
    /// The answer must be written by then.
    pub answer_by: Instant,
    /// DSP answers arriving after this are not waited for.
    pub dsps_by: Instant,
}

/// What to do with a DSP call planned at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DspBudget {
    /// Call it with this `tmax` (ms), and stop waiting at `call_deadline`.
    Call {
        /// `tmax` to write into the DSP's copy of the request.
        tmax_ms: u32,
        /// When the exchange stops waiting for this DSP.
        call_deadline: Instant,
    },
    /// Too little time left for a DSP to answer: do not call.
    TooLate,
}

impl DeadlinePolicy {
    /// The timing of a request that arrived at `arrival` with the given `tmax`.
    pub fn timing(&self, arrival: Instant, tmax_ms: Option<u32>) -> AuctionTiming {
        let allowed = tmax_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(self.cap))
            .unwrap_or(self.cap);
        let answer_by = arrival + allowed.saturating_sub(self.response_margin);
        AuctionTiming {
            answer_by,
            dsps_by: answer_by,
        }
    }

    /// The budget of a DSP call started at `now`.
    pub fn dsp_budget(&self, timing: &AuctionTiming, now: Instant) -> DspBudget {
        let remaining = timing.dsps_by.saturating_duration_since(now);
        let tmax = remaining.saturating_sub(self.network_allowance);
        if tmax < self.dsp_budget_min {
            return DspBudget::TooLate;
        }
        DspBudget::Call {
            tmax_ms: u32::try_from(tmax.as_millis()).unwrap_or(u32::MAX),
            call_deadline: timing.dsps_by,
        }
    }

    /// Whether an auction that starts at `now` can no longer finish in time: shed it at once
    /// (answer 204/503) instead of queueing it past its deadline.
    pub fn too_late_to_start(&self, timing: &AuctionTiming, now: Instant) -> bool {
        matches!(self.dsp_budget(timing, now), DspBudget::TooLate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn t0() -> Instant {
        Instant::now()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn deadline_is_arrival_plus_min_tmax_cap_minus_margin() {
        let policy = DeadlinePolicy::default();
        let arrival = t0();
        assert_eq!(policy.timing(arrival, None).answer_by, arrival + 77 * MS);
        assert_eq!(
            policy.timing(arrival, Some(500)).answer_by,
            arrival + 77 * MS
        );
        assert_eq!(
            policy.timing(arrival, Some(50)).answer_by,
            arrival + 47 * MS
        );
        assert_eq!(policy.timing(arrival, Some(2)).answer_by, arrival);
    }

    #[test]
    fn dsp_budget_is_what_remains_minus_the_network_allowance() {
        let policy = DeadlinePolicy::default();
        let arrival = t0();
        let timing = policy.timing(arrival, Some(100));
        assert_eq!(
            policy.dsp_budget(&timing, arrival + 2 * MS),
            DspBudget::Call {
                tmax_ms: 74,
                call_deadline: arrival + 77 * MS
            }
        );
        assert_eq!(
            policy.dsp_budget(&timing, arrival + 71 * MS),
            DspBudget::Call {
                tmax_ms: 5,
                call_deadline: arrival + 77 * MS
            }
        );
        assert_eq!(
            policy.dsp_budget(&timing, arrival + 72 * MS),
            DspBudget::TooLate
        );
        assert!(policy.too_late_to_start(&timing, arrival + 80 * MS));
        assert!(!policy.too_late_to_start(&timing, arrival));
    }

    #[test]
    fn a_tiny_tmax_is_shed_at_once() {
        let policy = DeadlinePolicy::default();
        let arrival = t0();
        let timing = policy.timing(arrival, Some(6));
        assert!(policy.too_late_to_start(&timing, arrival));
    }
}
