//! Owns the per-worker request handler: routing, the auction path (decode, plan, fan out,
//! decide, encode) and the worker's DSP slots (one keep-alive pool per DSP).
//!
//! Per-worker scratch (decoder, documents, auction, output buffers) lives in a small free list:
//! several connections on one worker run auctions concurrently (each awaits its fan-out), so a
//! request takes a [`Scratch`] for its whole life and gives it back; steady state allocates no
//! new scratch. DSP slots are swapped in between requests by the broadcast applier.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{uri::PathAndQuery, HeaderValue, Method, StatusCode};
use rtb_core::{
    auction::{Auction, AuctionConfig},
    deadline::{DspBudget, ShedReason},
    encode::{encode_bid_response, win_notice_url},
    json::{Decoder, Document, ReleasedTape},
    request::BidRequest,
    response::BidResponse,
    splice::splice_tmax,
};
use rtb_io::{
    broadcast::APPLY_PERIOD_DEFAULT, BroadcastReceiver, CallError, ClientConfig, ClientRequest,
    ClientResponse, Handler, Request, Response, Upstream, WorkerCtx,
};

use crate::{
    breaker::{Admit, Breaker, BreakerConfig, Transition},
    control::Resolved,
    json_error,
    metrics::{DspMetrics, Outcome, Route, WorkerMetrics},
    onboard, win, Shared,
};

/// Connections opened ahead of traffic to a new or changed DSP, per worker.
pub const PREWARM_CONNECTIONS: usize = 2;
/// Idle scratch sets kept per worker (one per concurrently running auction is needed).
pub const SCRATCH_IDLE_MAX: usize = 64;
/// Time kept between the end of the DSP wait and `answer_by` for timer lateness (two ticks).
pub const DEADLINE_SLACK: Duration = Duration::from_millis(2);

/// Most event-loop lag subtracted from the DSP wait (beyond it the worker sheds instead).
const LAG_COMPENSATION_MAX: Duration = Duration::from_millis(10);
/// The OpenRTB version the exchange speaks.
pub const OPENRTB_VERSION: &str = "2.6";

/// One DSP as a worker calls it.
#[derive(Debug)]
pub struct DspSlot {
    /// Registry name.
    pub name: String,
    /// Host as registered (name or IP literal), for matching win-notice URLs.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Bid path.
    pub path: PathAndQuery,
    /// This worker's pool.
    pub upstream: Rc<Upstream>,
    /// This worker's counters for the DSP.
    pub metrics: Arc<DspMetrics>,
    /// This worker's circuit breaker for the DSP (kept, like the pool, across registry
    /// versions while name and authority stay the same).
    pub breaker: Rc<RefCell<Breaker>>,
    /// The pool's (connects, reuses) already added to the `_total` counters. A re-onboarded
    /// DSP gets a new pool counting from zero; counting deltas keeps the totals monotonic.
    pub pool_counted: Rc<Cell<(u64, u64)>>,
}

/// The DSPs a worker calls, as of one registry version.
#[derive(Debug, Default)]
pub struct DspSet {
    /// Registry version applied.
    pub version: u64,
    /// Slots in registration order.
    pub slots: Vec<DspSlot>,
}

/// Reused per-auction buffers.
#[derive(Debug)]
struct Scratch {
    decoder: Decoder,
    request_doc: Document,
    response_docs: Vec<Document>,
    auction: Auction,
    out: Vec<u8>,
    spliced: Vec<u8>,
    nurl: Vec<u8>,
}

impl Scratch {
    fn new() -> Self {
        Self {
            decoder: Decoder::new(),
            request_doc: Document::default(),
            response_docs: Vec::new(),
            auction: Auction::new(AuctionConfig::default()),
            out: Vec::with_capacity(4096),
            spliced: Vec::with_capacity(4096),
            nurl: Vec::with_capacity(512),
        }
    }
}

/// The main port's handler; one per worker.
#[derive(Debug)]
pub struct ExchangeHandler {
    shared: Arc<Shared>,
    index: usize,
    dsps: Rc<RefCell<Rc<DspSet>>>,
    scratch: RefCell<Vec<Scratch>>,
    wins: win::WinSender,
    /// How late this worker's event loop runs (smoothed), kept by [`spawn_lag_monitor`].
    lag: Rc<Cell<Duration>>,
    /// Auctions on this worker waiting for DSPs.
    in_flight: Cell<u32>,
}

/// How often the lag monitor wakes. monoio's timer has millisecond resolution, so an idle
/// worker reads ~1 ms of "lag"; the default shed threshold is 10 ms.
const LAG_PROBE_PERIOD: Duration = Duration::from_millis(1);

/// Measures how late the worker's timers fire: a task that sleeps a millisecond at a time and
/// records how much longer it took, smoothed (EWMA, 1/4 weight on the newest sample). One
/// wake-up per millisecond per worker; no cross-core traffic.
fn spawn_lag_monitor(shutdown: rtb_io::ShutdownHandle) -> Rc<Cell<Duration>> {
    let lag = Rc::new(Cell::new(Duration::ZERO));
    let out = lag.clone();
    monoio::spawn(async move {
        while !shutdown.is_triggered() {
            let started = Instant::now();
            monoio::time::sleep(LAG_PROBE_PERIOD).await;
            let late = started.elapsed().saturating_sub(LAG_PROBE_PERIOD);
            lag.set((lag.get() * 3 + late) / 4);
        }
    });
    out
}

/// Builds `set` from a new snapshot, keeping pools of DSPs whose name and authority did not
/// change (re-pointing them if only the address moved) and pre-warming new ones.
fn apply_snapshot(
    old: &DspSet,
    snapshot: &Resolved,
    metrics: &WorkerMetrics,
    breaker: BreakerConfig,
) -> DspSet {
    let mut slots = Vec::with_capacity(snapshot.dsps.len());
    for dsp in snapshot.dsps.iter() {
        let url = &dsp.entry.url;
        let Ok(path) = PathAndQuery::try_from(url.path.as_str()) else {
            tracing::warn!(dsp = %dsp.entry.name, "bid path is not a valid request target");
            continue;
        };
        let kept = old
            .slots
            .iter()
            .find(|s| s.name == dsp.entry.name && s.host == url.host && s.port == url.port);
        let (upstream, breaker, pool_counted) = match kept {
            Some(s) => {
                s.upstream.set_addr(dsp.addr);
                (
                    s.upstream.clone(),
                    s.breaker.clone(),
                    s.pool_counted.clone(),
                )
            }
            None => {
                let up = Upstream::new(dsp.addr, &url.authority(), ClientConfig::default());
                let warm = up.clone();
                monoio::spawn(async move {
                    warm.prewarm(PREWARM_CONNECTIONS).await;
                });
                (
                    up,
                    Rc::new(RefCell::new(Breaker::new(breaker))),
                    Rc::default(),
                )
            }
        };
        let metrics = metrics.dsp(&dsp.entry.name);
        metrics
            .breaker_state
            .store(breaker.borrow().state().gauge(), Ordering::Relaxed);
        slots.push(DspSlot {
            name: dsp.entry.name.clone(),
            host: url.host.clone(),
            port: url.port,
            addr: dsp.addr,
            path,
            upstream,
            metrics,
            breaker,
            pool_counted,
        });
    }
    DspSet {
        version: snapshot.version,
        slots,
    }
}

impl ExchangeHandler {
    /// Builds a worker's handler; runs inside the worker's runtime (spawns the registry applier
    /// and the win-notice task).
    pub fn new(
        ctx: &WorkerCtx,
        shared: Arc<Shared>,
        updates: Option<BroadcastReceiver<Resolved>>,
    ) -> Self {
        let index = ctx.info.index;
        if let Some(m) = shared.metrics.get(index) {
            let _ = m.driver.set(ctx.info.driver.as_str());
        }
        if let Ok(mut stats) = shared.server_stats.lock() {
            stats.push(ctx.stats.clone());
        }
        let dsps: Rc<RefCell<Rc<DspSet>>> = Rc::default();
        if let Some(updates) = updates {
            let dsps = dsps.clone();
            let shared = shared.clone();
            updates.spawn_applier(
                APPLY_PERIOD_DEFAULT,
                ctx.shutdown.clone(),
                move |snapshot| {
                    let Some(metrics) = shared.metrics.get(index) else {
                        return;
                    };
                    let next = apply_snapshot(&dsps.borrow(), &snapshot, metrics, shared.breaker);
                    tracing::debug!(
                        worker = index,
                        version = next.version,
                        dsps = next.slots.len(),
                        "registry applied"
                    );
                    metrics
                        .applied_version
                        .store(next.version, Ordering::Release);
                    *dsps.borrow_mut() = Rc::new(next);
                },
            );
        }
        let wins = win::spawn(shared.clone(), index, dsps.clone());
        let lag = spawn_lag_monitor(ctx.shutdown.clone());
        Self {
            lag,
            in_flight: Cell::new(0),
            shared,
            index,
            dsps,
            scratch: RefCell::new(Vec::new()),
            wins,
        }
    }

    fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.index]
    }

    async fn auction(&self, req: &Request) -> Response {
        let mut scratch = self.scratch.borrow_mut().pop().unwrap_or_else(Scratch::new);
        let response = self.run_auction(req, &mut scratch).await;
        let mut idle = self.scratch.borrow_mut();
        if idle.len() < SCRATCH_IDLE_MAX {
            idle.push(scratch);
        }
        response
    }

    async fn run_auction(&self, req: &Request, s: &mut Scratch) -> Response {
        let metrics = self.metrics();
        let Scratch {
            decoder,
            request_doc,
            response_docs,
            auction,
            out,
            spliced,
            nurl,
        } = s;
        let request = match BidRequest::decode_with(
            &req.body,
            request_doc,
            decoder,
            self.shared.validation,
        ) {
            Ok(r) => r,
            Err(e) => {
                metrics.outcome(Outcome::Invalid);
                tracing::debug!(error = %e, "invalid bid request");
                let mut body = serde_json::json!({
                    "error": e.to_string(),
                    "field": e.field.to_string(),
                    "rule": e.rule.message(),
                });
                if let rtb_core::error::Rule::MalformedJson { offset } = e.rule {
                    body["offset"] = offset.into();
                }
                return Response::json(StatusCode::BAD_REQUEST, body.to_string());
            }
        };
        let set = self.dsps.borrow().clone();
        if set.slots.is_empty() {
            metrics.outcome(Outcome::NoDsp);
            let tape = request.release();
            request_doc.reuse(tape);
            return json_error(StatusCode::NOT_FOUND, "no DSP registered", "");
        }
        let policy = &self.shared.policy;
        let timing = policy.timing(req.arrival, request.tmax_ms);
        let now = Instant::now();
        // Every DSP is called at this one instant, so they share one budget, one spliced body.
        // Calls return up to two timer ticks after their deadline (rtb-io measured 1.3 to
        // 2.0 ms), and later still when this worker's event loop runs late (its timers fire
        // that much late): plan as if it were that much later, so the tmax sent and the wait
        // both end early enough for the answer to leave by `answer_by`.
        let slack = DEADLINE_SLACK + self.lag.get().min(LAG_COMPENSATION_MAX);
        let (tmax_ms, deadline) = match policy.dsp_budget(&timing, now + slack) {
            DspBudget::Call {
                tmax_ms,
                call_deadline,
            } => (tmax_ms, call_deadline - slack),
            DspBudget::TooLate => {
                metrics.shed(ShedReason::TooLate);
                let tape = request.release();
                request_doc.reuse(tape);
                return Response::new(StatusCode::NO_CONTENT);
            }
        };
        if let Some(reason) = self
            .shared
            .overload
            .shed(self.lag.get(), self.in_flight.get())
        {
            metrics.shed(reason);
            let tape = request.release();
            request_doc.reuse(tape);
            return Response::new(StatusCode::NO_CONTENT);
        }
        let _in_flight = InFlight::enter(&self.in_flight);
        let body = if request.tmax_ms == Some(tmax_ms) {
            req.body.clone()
        } else {
            match splice_tmax(&req.body, request.tmax_site, tmax_ms, spliced) {
                Ok(()) => Bytes::copy_from_slice(spliced),
                Err(e) => {
                    tracing::debug!(error = ?e, "tmax splice failed, forwarding the body as sent");
                    req.body.clone()
                }
            }
        };

        // Fan out. Like rtb_io::fan_out (one task per call, each bounded by the deadline), but
        // each task also records when it completed, so the auction sees responses in arrival
        // order and every DSP gets a latency sample. DSPs whose breaker is open are skipped.
        let started = Instant::now();
        let admits: Vec<Admit> = set
            .slots
            .iter()
            .map(|slot| {
                let mut breaker = slot.breaker.borrow_mut();
                let admit = breaker.admit(started);
                slot.metrics
                    .breaker_state
                    .store(breaker.state().gauge(), Ordering::Relaxed);
                admit
            })
            .collect();
        let handles: Vec<_> = set
            .slots
            .iter()
            .zip(&admits)
            .map(|(slot, &admit)| {
                if admit == Admit::Skip {
                    slot.metrics.skipped.incr();
                    return None;
                }
                slot.metrics.calls.incr();
                let upstream = slot.upstream.clone();
                let call = ClientRequest::openrtb_post(slot.path.clone(), body.clone());
                Some(monoio::spawn(async move {
                    let result = upstream.call(&call, deadline).await;
                    (result, Instant::now())
                }))
            })
            .collect();
        let mut results: Vec<Option<(Result<ClientResponse, CallError>, Instant)>> =
            Vec::with_capacity(handles.len());
        for h in handles {
            results.push(match h {
                Some(h) => Some(h.await),
                None => None,
            });
        }
        let mut order: Vec<(usize, Instant)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|(_, done)| (i, *done)))
            .collect();
        order.sort_by_key(|&(_, done)| done);

        if response_docs.len() < results.len() {
            response_docs.resize_with(results.len(), Document::default);
        }
        let mut docs = response_docs.iter_mut();
        let mut views: Vec<BidResponse<'_>> = Vec::with_capacity(results.len());
        let mut view_slot: Vec<usize> = Vec::with_capacity(results.len());
        for &(i, done) in &order {
            let Some((result, _)) = &results[i] else {
                continue;
            };
            let slot = &set.slots[i];
            let m = &slot.metrics;
            m.latency.observe(done.saturating_duration_since(started));
            // Whether the DSP answered usably, for its breaker (rejected bids still count as
            // answers: the breaker guards availability, rejections are counted apart).
            let answered_ok;
            let stats = &slot.upstream.stats;
            let (connects, reuses) = (stats.connects.get(), stats.reuses.get());
            let (counted_connects, counted_reuses) = slot.pool_counted.get();
            // Single writer (this worker): load + store, no read-modify-write needed.
            let add = |total: &std::sync::atomic::AtomicU64, delta: u64| {
                total.store(total.load(Ordering::Relaxed) + delta, Ordering::Relaxed)
            };
            add(&m.pool_connects, connects.saturating_sub(counted_connects));
            add(&m.pool_reuses, reuses.saturating_sub(counted_reuses));
            slot.pool_counted.set((connects, reuses));
            m.pool_idle
                .store(slot.upstream.idle_count() as u64, Ordering::Relaxed);
            match result {
                Ok(r) if r.status == StatusCode::OK && !r.body.is_empty() => {
                    let Some(doc) = docs.next() else { break };
                    match BidResponse::decode(&r.body, doc, decoder) {
                        Ok(view) => {
                            answered_ok = true;
                            m.bids.add(view.bids.len() as u64);
                            if view.bids.is_empty() {
                                m.no_bids.incr();
                            }
                            views.push(view);
                            view_slot.push(i);
                        }
                        Err(e) => {
                            answered_ok = false;
                            m.decode_errors.incr();
                            tracing::debug!(dsp = %slot.name, error = %e, "undecodable bid response");
                        }
                    }
                }
                Ok(r) if r.status == StatusCode::OK || r.status == StatusCode::NO_CONTENT => {
                    answered_ok = true;
                    m.no_bids.incr();
                }
                Ok(r) => {
                    answered_ok = false;
                    m.bad_status.incr();
                    tracing::debug!(dsp = %slot.name, status = r.status.as_u16(), "unexpected DSP status");
                }
                Err(e) => {
                    answered_ok = false;
                    m.call_error(*e);
                    tracing::debug!(dsp = %slot.name, error = e.as_str(), "DSP call failed");
                }
            }
            let mut breaker = slot.breaker.borrow_mut();
            match breaker.record(admits[i], answered_ok, done) {
                Transition::Tripped => {
                    m.breaker_trips.incr();
                    tracing::debug!(dsp = %slot.name, "circuit breaker opened");
                }
                Transition::Reopened | Transition::Closed | Transition::None => {}
            }
            m.breaker_state
                .store(breaker.state().gauge(), Ordering::Relaxed);
        }

        let refs: Vec<&BidResponse<'_>> = views.iter().collect();
        let outcome = auction.run(&request, &refs);
        for w in &outcome.winners {
            if let Some(&i) = view_slot.get(w.response as usize) {
                set.slots[i].metrics.wins.incr();
            }
        }
        for r in &outcome.rejections {
            if let Some(&i) = view_slot.get(r.response as usize) {
                set.slots[i].metrics.rejection(r.reason);
            }
        }
        let won = encode_bid_response(&request, &refs, outcome, None, out);
        if won {
            for w in &outcome.winners {
                let Some(resp) = refs.get(w.response as usize) else {
                    continue;
                };
                if win_notice_url(&request, resp, w, nurl) {
                    self.wins.enqueue(nurl, metrics);
                }
            }
        }
        drop(refs);
        let tapes: Vec<ReleasedTape> = views.into_iter().map(BidResponse::release).collect();
        for (doc, tape) in response_docs.iter_mut().zip(tapes) {
            doc.reuse(tape);
        }
        let tape = request.release();
        request_doc.reuse(tape);

        metrics
            .auction_latency
            .observe(Instant::now().saturating_duration_since(req.arrival));
        if won {
            metrics.outcome(Outcome::Won);
            let mut r = Response::json(StatusCode::OK, Bytes::copy_from_slice(out));
            r.headers.insert(
                http::header::HeaderName::from_static("x-openrtb-version"),
                HeaderValue::from_static(OPENRTB_VERSION),
            );
            r
        } else {
            metrics.outcome(Outcome::NoBid);
            Response::new(StatusCode::NO_CONTENT)
        }
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

/// 405 with the allowed methods.
fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", "");
    r.headers
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

impl Handler for ExchangeHandler {
    async fn handle(&self, req: Request, _ctx: &WorkerCtx) -> Response {
        let path = req.path();
        let (route, response) = match path {
            "/openrtb2/auction" => (
                Route::Auction,
                if req.method == Method::POST {
                    self.auction(&req).await
                } else {
                    method_not_allowed("POST")
                },
            ),
            "/dsp" => match req.method {
                Method::POST => (
                    Route::DspOnboard,
                    onboard::post_dsp(&self.shared, &req).await,
                ),
                Method::GET => (Route::DspList, onboard::list(&self.shared).await),
                _ => (Route::Other, method_not_allowed("GET, POST")),
            },
            p if p.starts_with("/dsp/") => match req.method {
                Method::DELETE => (
                    Route::DspDelete,
                    onboard::delete_dsp(&self.shared, &req, &p["/dsp/".len()..]).await,
                ),
                _ => (Route::Other, method_not_allowed("DELETE")),
            },
            "/healthz" | "/readyz" => (Route::Health, onboard::health(&self.shared, path)),
            _ => (
                Route::Other,
                json_error(StatusCode::NOT_FOUND, "no such route", ""),
            ),
        };
        self.metrics().request(route, response.status.as_u16());
        response
    }
}

/// How long onboarding waits for every worker to apply a new registry version.
pub const APPLY_WAIT_MAX: Duration = Duration::from_millis(200);
