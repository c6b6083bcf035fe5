//! Owns one auction between its start and its finish: the decoded request, the answers as they
//! arrive (decoded at once into the workspace's documents), each call's outcome and breaker
//! bookkeeping.

use std::time::Instant;

use crate::auction::Auction;
use crate::json::{Decoder, Document};
use crate::request::BidRequest;
use crate::response::BidResponse;
use crate::version::OpenRtbVersion;

use super::breaker::Admit;
use super::notices::Notices;
use super::outcome::{CallFailure, CallStatus, DspOutcome};
use super::views::Views;
use super::{Engine, PlannedCall};

/// HTTP 200.
const OK: u16 = 200;
/// HTTP 204.
const NO_CONTENT: u16 = 204;

/// An auction waiting for its DSPs. Report every planned call's result exactly once
/// ([`AuctionRun::on_answer`] or [`AuctionRun::on_failure`]), then [`AuctionRun::finish`].
/// Dropped unfinished (the client went away), it gives its buffers back all the same.
pub struct AuctionRun<'w> {
    pub(crate) request: BidRequest<'w>,
    pub(crate) decoder: &'w mut Decoder,
    pub(crate) docs: std::slice::IterMut<'w, Document>,
    pub(crate) views: Views<'w>,
    pub(crate) calls: &'w [PlannedCall],
    pub(crate) outcomes: &'w mut Vec<DspOutcome>,
    /// Each outcome's bid adjustment, as planned.
    pub(crate) adjustments: &'w mut Vec<f64>,
    /// Each answer's (view's), for the auction.
    pub(crate) view_adjustments: &'w mut Vec<f64>,
    pub(crate) auction: &'w mut Auction,
    pub(crate) answer: &'w mut Vec<u8>,
    pub(crate) notices: &'w mut Notices,
    pub(crate) started: Instant,
    pub(crate) version: OpenRtbVersion,
}

impl std::fmt::Debug for AuctionRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuctionRun")
            .field("request", &self.request.id)
            .field("calls", &self.calls.len())
            .field("answers", &self.views.list().len())
            .finish_non_exhaustive()
    }
}

impl<'w> AuctionRun<'w> {
    /// The request being auctioned.
    pub fn request(&self) -> &BidRequest<'w> {
        &self.request
    }

    /// Call `call` (its index in the plan) was answered with `status` and `body` at `at`.
    /// The body is decoded now (copied into the workspace), so the caller's buffer can be
    /// reused as soon as this returns.
    pub fn on_answer(
        &mut self,
        engine: &mut Engine,
        call: usize,
        status: u16,
        body: &[u8],
        at: Instant,
    ) {
        let Some(outcome) = self.pending_outcome(call) else {
            return;
        };
        let status = match status {
            OK if !body.is_empty() => self.decode(body, outcome),
            OK | NO_CONTENT => CallStatus::NoBid,
            other => CallStatus::BadStatus(other),
        };
        self.record(engine, call, status, at);
    }

    /// Call `call` ended without an answer at `at`.
    pub fn on_failure(
        &mut self,
        engine: &mut Engine,
        call: usize,
        failure: CallFailure,
        at: Instant,
    ) {
        if self.pending_outcome(call).is_some() {
            self.record(engine, call, CallStatus::Failed(failure), at);
        }
    }

    /// The outcome index of `call` if its result is still awaited.
    fn pending_outcome(&self, call: usize) -> Option<u16> {
        let outcome = self.calls.get(call)?.outcome;
        let pending = self.outcomes.get(usize::from(outcome))?.status == CallStatus::Pending;
        debug_assert!(pending, "call {call} reported twice");
        pending.then_some(outcome)
    }

    fn decode(&mut self, body: &[u8], outcome: u16) -> CallStatus {
        let Some(doc) = self.docs.next() else {
            return CallStatus::Undecodable;
        };
        match BidResponse::decode(body, doc, self.decoder) {
            Ok(view) => {
                if let Some(o) = self.outcomes.get_mut(usize::from(outcome)) {
                    o.bids = u16::try_from(view.bids.len()).unwrap_or(u16::MAX);
                    o.bids_dropped = u16::try_from(view.bids_dropped).unwrap_or(u16::MAX);
                }
                self.views.push(view, outcome);
                CallStatus::Answered
            }
            Err(_) => CallStatus::Undecodable,
        }
    }

    fn record(&mut self, engine: &mut Engine, call: usize, status: CallStatus, at: Instant) {
        let Some(&planned) = self.calls.get(call) else {
            return;
        };
        // A call refused by the worker's own connect pacing was never sent: it says nothing
        // of the DSP, so it does not count toward tripping the breaker (a probe still counts,
        // so a half-open breaker is not left waiting).
        let local = matches!(status, CallStatus::Failed(f) if f.is_local());
        let admitted = if local && planned.admit == Admit::Call {
            Admit::Skip
        } else {
            planned.admit
        };
        let (transition, breaker) = engine.dsps.record(
            usize::from(planned.dsp),
            planned.dsp_id,
            admitted,
            status.answered_ok(),
            at,
        );
        if let Some(o) = self.outcomes.get_mut(usize::from(planned.outcome)) {
            o.status = status;
            o.latency = Some(at.saturating_duration_since(self.started));
            o.transition = transition;
            o.breaker = breaker;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::engine::breaker::{BreakerConfig, State, Transition};
    use crate::engine::{CallFailure, DspSpec, Engine, EngineConfig, Start, WorkerLoad};

    /// Runs one auction against the single DSP, failing its call with `failure`; returns what
    /// the breaker did.
    fn fail_once(engine: &mut Engine, failure: CallFailure, at: Instant) -> (Transition, State) {
        let mut workspace = engine.workspace();
        let raw = br#"{"id":"a","tmax":120,"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#;
        let Start::Call(mut run, _plan) =
            engine.start(&mut workspace, raw, None, at, at, WorkerLoad::default())
        else {
            panic!("a valid request with one DSP is called");
        };
        run.on_failure(engine, 0, failure, at + Duration::from_millis(1));
        let finished = run.finish(engine, at + Duration::from_millis(2));
        let outcome = finished.outcomes()[0];
        (
            outcome.transition,
            outcome.breaker.expect("the DSP is in the table"),
        )
    }

    #[test]
    fn a_call_refused_by_connect_pacing_does_not_trip_the_breaker() {
        let mut engine = Engine::new(EngineConfig {
            breaker: BreakerConfig {
                failures_to_trip: 2,
                ..BreakerConfig::default()
            },
            ..EngineConfig::default()
        });
        engine.set_dsps([DspSpec {
            name: "slow".into(),
            endpoint: "slow:80".into(),
        }]);
        #[allow(clippy::disallowed_methods)] // a test needs some instant
        let t0 = Instant::now();
        for i in 0..5 {
            let at = t0 + Duration::from_millis(10 * i);
            let (transition, state) = fail_once(&mut engine, CallFailure::ConnectPaced, at);
            assert_eq!(transition, Transition::None);
            assert_eq!(state, State::Closed { failures: 0 });
        }
        let at = t0 + Duration::from_millis(100);
        assert_eq!(
            fail_once(&mut engine, CallFailure::Timeout, at).1,
            State::Closed { failures: 1 }
        );
        let (transition, _) = fail_once(&mut engine, CallFailure::Timeout, at);
        assert_eq!(transition, Transition::Tripped);
    }
}
