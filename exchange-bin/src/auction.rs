//! Owns the auction route's shell: it lends the engine a workspace, performs the engine's
//! decisions (one fan-out over this worker's pools, the answer, the notices) and counts them.
//! The auction's rules and lifecycle live in `rtb_core::engine`.

use std::{cell::Cell, time::Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use rtb_core::engine::{
    Answer, AuctionRun, CallFailure, Finished, Plan, Start, WorkerLoad, Workspace,
};
use rtb_io::{
    client::OPENRTB_JSON_HEADERS, fan_out, CallError, FanOutCall, Request, RequestParts, Response,
};
use smallvec::SmallVec;

use crate::{
    dsps::DspSet,
    handler::ExchangeHandler,
    json_error,
    metrics::{Outcome, WorkerMetrics},
    record::record_outcomes,
};

/// Idle workspaces kept per worker (one per concurrently running auction is needed).
pub const WORKSPACES_IDLE_MAX: usize = 64;
/// The OpenRTB version the exchange speaks.
pub const OPENRTB_VERSION: &str = "2.6";
/// The header that says so, pre-encoded.
const OPENRTB_VERSION_HEADER: &[u8] = b"x-openrtb-version: 2.6\r\n";
/// Fan-out calls kept on the stack before the list spills to the heap.
const CALLS_INLINE: usize = 8;

impl ExchangeHandler {
    /// `POST /openrtb2/auction`.
    pub(crate) async fn auction(&self, req: &Request) -> Response {
        let idle = self.workspaces.borrow_mut().pop();
        let mut workspace = idle.unwrap_or_else(|| self.engine.borrow().workspace());
        let response = self.run_auction(req, &mut workspace).await;
        let mut idle = self.workspaces.borrow_mut();
        if idle.len() < WORKSPACES_IDLE_MAX {
            idle.push(workspace);
        }
        response
    }

    async fn run_auction(&self, req: &Request, workspace: &mut Workspace) -> Response {
        let metrics = self.metrics();
        let load = WorkerLoad {
            event_loop_lag: self.lag.get(),
            auctions_in_flight: self.in_flight.get(),
        };
        // The slots and the engine's table change together, between requests: this set is the
        // one the plan's DSP indexes refer to.
        let set = self.dsps.borrow().clone();
        let start =
            self.engine
                .borrow_mut()
                .start(workspace, &req.body, req.arrival, Instant::now(), load);
        let (run, plan) = match start {
            Start::Call(run, plan) => (run, plan),
            Start::Invalid { error, body } => {
                metrics.outcome(Outcome::Invalid);
                tracing::debug!(%error, "invalid bid request");
                self.ledger.invalid(body, req.arrival);
                return Response::json(StatusCode::BAD_REQUEST, Bytes::copy_from_slice(body));
            }
            Start::NoDsp => {
                metrics.outcome(Outcome::NoDsp);
                return json_error(StatusCode::NOT_FOUND, "no DSP registered", "");
            }
            Start::Shed(reason) => {
                metrics.shed(reason);
                self.ledger.shed(reason, req.arrival);
                return Response::new(StatusCode::NO_CONTENT);
            }
        };
        let _in_flight = InFlight::enter(&self.in_flight);
        let finished = self.call_dsps(run, plan, &set).await;
        record_outcomes(&finished, &set);
        self.ledger.auction(&finished, &set, req.arrival);
        for (_notice, url) in finished.notices().iter() {
            self.notices.enqueue(url, metrics);
        }
        metrics
            .auction_latency
            .observe(Instant::now().saturating_duration_since(req.arrival));
        self.answer(&finished, metrics)
    }

    /// One fan-out over the plan's DSPs, each result reported to the run as it arrives.
    async fn call_dsps<'w>(
        &self,
        mut run: AuctionRun<'w>,
        plan: Plan<'w>,
        set: &DspSet,
    ) -> Finished<'w> {
        let calls: SmallVec<[FanOutCall<'_>; CALLS_INLINE]> = plan
            .calls
            .iter()
            .map(|call| {
                // Indexes come from the engine's table, built with this very set.
                let slot = &set.slots[usize::from(call.dsp)];
                FanOutCall {
                    upstream: &slot.upstream,
                    request: RequestParts {
                        method: &Method::POST,
                        path: slot.path.as_str(),
                        header_lines: OPENRTB_JSON_HEADERS,
                        body: plan.body,
                    },
                }
            })
            .collect();
        fan_out(&calls, plan.deadline, |call, result, at| {
            let mut engine = self.engine.borrow_mut();
            match result {
                Ok(a) => run.on_answer(&mut engine, call, a.status.as_u16(), a.body, at),
                Err(e) => run.on_failure(&mut engine, call, call_failure(e), at),
            }
        })
        .await;
        run.finish(&mut self.engine.borrow_mut(), Instant::now())
    }
}

impl ExchangeHandler {
    /// 200 with the bid response, or 204. The body goes out through the worker's body pool
    /// (reused buffers), so steady state allocates nothing.
    fn answer(&self, finished: &Finished<'_>, metrics: &WorkerMetrics) -> Response {
        match finished.answer() {
            Answer::Bid(body) => {
                metrics.outcome(Outcome::Won);
                let body = self.answers.borrow_mut().bytes(body);
                Response::json(StatusCode::OK, body).with_static_headers(OPENRTB_VERSION_HEADER)
            }
            Answer::NoBid => {
                metrics.outcome(Outcome::NoBid);
                Response::new(StatusCode::NO_CONTENT)
            }
        }
    }
}

/// The engine's name for an IO failure.
fn call_failure(error: CallError) -> CallFailure {
    match error {
        CallError::Timeout => CallFailure::Timeout,
        CallError::ConnectError => CallFailure::Connect,
        CallError::ProtocolError => CallFailure::Protocol,
        CallError::TooLarge => CallFailure::TooLarge,
        CallError::Closed => CallFailure::Closed,
        CallError::Overloaded => CallFailure::Overloaded,
        CallError::ConnectPaced => CallFailure::ConnectPaced,
        CallError::Tls => CallFailure::Tls,
    }
}

/// Counts an auction as in flight for as long as it lives (also when its future is dropped).
struct InFlight<'c>(&'c Cell<u32>);

impl<'c> InFlight<'c> {
    fn enter(count: &'c Cell<u32>) -> Self {
        count.set(count.get() + 1);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
