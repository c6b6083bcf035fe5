//! Owns one auction between its start and its finish: the decoded request, the answers as they
//! arrive (decoded at once into the workspace's documents), each call's outcome and breaker
//! bookkeeping.

use std::time::Instant;

use crate::auction::Auction;
use crate::json::{Decoder, Document};
use crate::request::BidRequest;
use crate::response::BidResponse;

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
    pub(crate) auction: &'w mut Auction,
    pub(crate) answer: &'w mut Vec<u8>,
    pub(crate) notices: &'w mut Notices,
    pub(crate) started: Instant,
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
        let (transition, breaker) = engine.dsps.record(
            usize::from(planned.dsp),
            planned.dsp_id,
            planned.admit,
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
