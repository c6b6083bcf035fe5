//! Owns the auction route's shell: it lends the engine a workspace, performs the engine's
//! decisions (one fan-out over this worker's pools, the answer, the notices) and counts them.
//! [`AuctionShell::start`] builds a worker's shell inside its runtime (the engine, the DSP
//! slots, the notice tasks, the lag probe, and the tasks that apply registry snapshots and
//! currency rates, see [`super::apply`]). The auction's rules and lifecycle live in
//! `rtb_core::engine`.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use rtb_core::directory::Resolved;
use rtb_core::engine::{
    Answer, AuctionRun, CallFailure, Engine, Finished, Plan, PlannedCall, ShedReason, Start,
    WorkerLoad, Workspace,
};
use rtb_core::version::{OpenRtbVersion, OPENRTB_VERSION_HEADER};
use smallvec::SmallVec;

use super::{
    apply::{spawn_applier, spawn_rates_applier},
    dsp_gzip::{gzip_call_headers, RequestGzip},
    dsps::DspSet,
    ledger::worker::WorkerLedger,
    metrics::{Outcome, WorkerMetrics},
    notices::{self, NoticeQueue},
    qps_shares::{self, ShareRefresh},
    record::{mirror_policy_skips, record_outcomes},
    Shared,
};
use crate::{
    client::{OPENRTB_2_5_JSON_HEADERS, OPENRTB_2_6_JSON_HEADERS},
    fan_out, BodyPool, BroadcastReceiver, CallError, FanOutCall, Request, RequestParts, Response,
    WorkerCtx,
};

/// Idle workspaces kept per worker (one per concurrently running auction is needed).
pub const WORKSPACES_IDLE_MAX: usize = 64;
/// The header lines a DSP call states its version with, pre-encoded per version (chosen per
/// auction, nothing built per request).
fn dsp_call_headers(version: OpenRtbVersion) -> &'static [u8] {
    match version {
        OpenRtbVersion::V2_5 => OPENRTB_2_5_JSON_HEADERS,
        OpenRtbVersion::V2_6 => OPENRTB_2_6_JSON_HEADERS,
    }
}

/// The header line an answer states its version with, pre-encoded per version.
fn answer_version_header(version: OpenRtbVersion) -> &'static [u8] {
    match version {
        OpenRtbVersion::V2_5 => b"x-openrtb-version: 2.5\r\n",
        OpenRtbVersion::V2_6 => b"x-openrtb-version: 2.6\r\n",
    }
}
/// Fan-out calls kept on the stack before the list spills to the heap.
const CALLS_INLINE: usize = 8;

/// The auction route's shell on one worker, and the state it owns.
#[derive(Debug)]
pub struct AuctionShell {
    shared: Arc<Shared>,
    index: usize,
    /// The auction engine of this worker (touched between awaits only).
    engine: Rc<RefCell<Engine>>,
    /// The DSP slots, in the engine's table order.
    dsps: Rc<RefCell<Rc<DspSet>>>,
    workspaces: RefCell<Vec<Workspace>>,
    /// Where answers are copied for rtb-io to write (see `AuctionShell::answer`).
    answers: RefCell<BodyPool>,
    /// Compresses the request once per auction for DSPs that asked for gzip.
    request_gzip: RefCell<RequestGzip>,
    notices: NoticeQueue,
    /// How late this worker's event loop runs (smoothed).
    lag: Rc<Cell<Duration>>,
    /// Auctions on this worker waiting for DSPs.
    in_flight: Cell<u32>,
    /// This worker's end of the auction ledger.
    ledger: WorkerLedger,
    /// When this worker next reads its parts of the DSPs' QPS caps.
    qps_shares: ShareRefresh,
}

impl AuctionShell {
    /// Builds a worker's shell; runs inside the worker's runtime (spawns the registry applier
    /// when `updates` is given, the rates applier, the notice tasks and the lag probe).
    pub fn start(
        ctx: &WorkerCtx,
        shared: Arc<Shared>,
        updates: Option<BroadcastReceiver<Resolved>>,
    ) -> Self {
        let index = ctx.info.index;
        if let Some(m) = shared.metrics.get(index) {
            let _ = m.driver.set(ctx.info.driver.as_str());
        }
        let engine = Rc::new(RefCell::new(Engine::new(shared.engine)));
        let dsps: Rc<RefCell<Rc<DspSet>>> = Rc::default();
        if let Some(updates) = updates {
            spawn_applier(ctx, &shared, updates, engine.clone(), dsps.clone());
        }
        if let Some(currency) = &shared.currency {
            spawn_rates_applier(ctx, currency, engine.clone());
        }
        AuctionShell {
            lag: crate::lag::spawn_lag_monitor(ctx.shutdown.clone()),
            in_flight: Cell::new(0),
            ledger: WorkerLedger::new(shared.ledger.as_ref(), index),
            qps_shares: ShareRefresh::default(),
            notices: notices::spawn(shared.clone(), index, dsps.clone()),
            shared,
            index,
            engine,
            dsps,
            workspaces: RefCell::new(Vec::new()),
            answers: RefCell::new(BodyPool::default()),
            request_gzip: RefCell::default(),
        }
    }
}

impl AuctionShell {
    fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.index]
    }
    /// `POST /openrtb2/auction`: the answer (200, 204, 400 or 404).
    pub async fn serve(&self, req: &Request) -> Response {
        let idle = self.workspaces.borrow_mut().pop();
        let mut workspace = idle.unwrap_or_else(|| self.engine.borrow().workspace());
        let response = self.run_auction(req, &mut workspace).await;
        (self.metrics().request_latency)
            .observe(Instant::now().saturating_duration_since(req.arrival));
        let mut idle = self.workspaces.borrow_mut();
        if idle.len() < WORKSPACES_IDLE_MAX {
            idle.push(workspace);
        }
        response
    }

    /// A `POST /openrtb2/auction` this worker sheds at once under its load (the engine's
    /// rule before decoding), answered 204 and counted like any shed; `None` when the auction
    /// is admitted (then [`AuctionShell::serve`] runs it). Called before the auction's
    /// future is built, so a shed does not pay for it (`Handler::answer_now`).
    pub fn shed_now(&self, req: &Request) -> Option<Response> {
        let reason = self.engine.borrow().shed_before_decoding(self.load(req))?;
        let metrics = self.metrics();
        metrics.kernel_wait.observe(req.kernel_wait);
        metrics.shed(reason);
        self.ledger.shed(reason, None, req.arrival);
        (metrics.request_latency).observe(Instant::now().saturating_duration_since(req.arrival));
        Some(Response::new(StatusCode::NO_CONTENT))
    }

    /// What this worker's admission rules look at for `req`.
    fn load(&self, req: &Request) -> WorkerLoad {
        WorkerLoad {
            event_loop_lag: self.lag.get(),
            auctions_in_flight: self.in_flight.get(),
            queue_wait: req.kernel_wait + req.queue_wait,
        }
    }

    async fn run_auction(&self, req: &Request, workspace: &mut Workspace) -> Response {
        let metrics = self.metrics();
        metrics.kernel_wait.observe(req.kernel_wait);
        let load = self.load(req);
        // The slots and the engine's table change together, between requests: this set is the
        // one the plan's DSP indexes refer to.
        let set = self.dsps.borrow().clone();
        let version = req.header(OPENRTB_VERSION_HEADER);
        let now = Instant::now();
        if self.qps_shares.due(now) {
            qps_shares::apply(&mut self.engine.borrow_mut(), &set);
        }
        let start =
            (self.engine.borrow_mut()).start(workspace, &req.body, version, req.arrival, now, load);
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
                return Response::json_error(StatusCode::NOT_FOUND, "no DSP registered", "");
            }
            Start::Shed { reason, request } => {
                if reason == ShedReason::NoDspMatched {
                    mirror_policy_skips(&self.engine.borrow(), &set);
                }
                metrics.shed(reason);
                self.ledger.shed(reason, request.as_ref(), req.arrival);
                return Response::new(StatusCode::NO_CONTENT);
            }
        };
        let _in_flight = InFlight::enter(&self.in_flight);
        // Some DSP not called (its policy, or its breaker): the policy counts may have moved.
        let skipped_some = plan.calls.len() < set.slots.len();
        let finished = self.call_dsps(run, plan, &set).await;
        record_outcomes(&finished, &set);
        if skipped_some {
            mirror_policy_skips(&self.engine.borrow(), &set);
        }
        self.ledger.auction(&finished, &set, req.arrival);
        for (notice, url) in finished.notices().iter() {
            self.notices.enqueue(notice.kind, url, metrics);
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
        // Indexes come from the engine's table, built with this very set.
        let slot_of = |call: &PlannedCall| &set.slots[usize::from(call.dsp)];
        // Compressed once, only when a gzip DSP sends the plan's body (one with its own `tmax`
        // sends its own body, uncompressed).
        let wants_gzip = (plan.calls.iter())
            .any(|call| slot_of(call).gzip && std::ptr::eq(plan.body_of(call), plan.body));
        let gzipped = if wants_gzip {
            self.request_gzip.borrow_mut().compress(plan.body)
        } else {
            None
        };
        let calls: SmallVec<[FanOutCall<'_>; CALLS_INLINE]> = plan
            .calls
            .iter()
            .map(|call| {
                let slot = slot_of(call);
                let body = plan.body_of(call);
                // The shared gzip copy is of the plan's body: a DSP sent its own capped `tmax`
                // gets that body uncompressed (still welcoming a gzip answer).
                let shares_plan_body = std::ptr::eq(body, plan.body);
                let (header_lines, body) = match (&gzipped, slot.gzip) {
                    (Some(gz), true) if shares_plan_body => {
                        (gzip_call_headers(plan.version, true), &gz[..])
                    }
                    (_, true) => (gzip_call_headers(plan.version, false), body),
                    (_, false) => (dsp_call_headers(plan.version), body),
                };
                FanOutCall {
                    upstream: &slot.upstream,
                    request: RequestParts {
                        method: &Method::POST,
                        path: slot.path.as_str(),
                        header_lines,
                        body,
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

impl AuctionShell {
    /// 200 with the bid response, or 204. The body goes out through the worker's body pool
    /// (reused buffers), so steady state allocates nothing.
    /// Both state the request's OpenRTB version; a test auction is counted apart too.
    fn answer(&self, finished: &Finished<'_>, metrics: &WorkerMetrics) -> Response {
        let version = answer_version_header(finished.version());
        let won = matches!(finished.answer(), Answer::Bid(_));
        if finished.request().test {
            metrics.test_auctions[usize::from(!won)].incr();
        }
        match finished.answer() {
            Answer::Bid(body) => {
                metrics.outcome(Outcome::Won);
                let body = self.answers.borrow_mut().bytes(body);
                Response::json(StatusCode::OK, body).with_static_headers(version)
            }
            Answer::NoBid => {
                metrics.outcome(Outcome::NoBid);
                Response::new(StatusCode::NO_CONTENT).with_static_headers(version)
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
