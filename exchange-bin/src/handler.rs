//! Owns the main port's per-worker handler: building its state (the engine, the DSP slots,
//! reused workspaces, the notice queue, the lag probe; the auction route's shell in
//! `auction.rs` keeps them), how registry snapshots and currency rates reach it, and routing.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use http::{HeaderValue, Method, StatusCode};
use rtb_core::engine::Engine;
use rtb_io::{
    broadcast::APPLY_PERIOD_DEFAULT,
    engine_shell::dsps::{apply_snapshot, DspSet},
    engine_shell::ledger::worker::WorkerLedger,
    engine_shell::{notices, Currency},
    BodyPool, BroadcastReceiver, Handler, Request, Response, WorkerCtx,
};

use crate::{
    auction::AuctionShell, control::Resolved, json_error, metrics::Route, onboard, Shared,
};

/// The main port's handler; one per worker: routing, with the auction route's shell.
#[derive(Debug)]
pub struct ExchangeHandler {
    shared: Arc<Shared>,
    index: usize,
    /// The auction route: this worker's engine, DSP slots, workspaces, notices, lag, ledger.
    auction: AuctionShell,
}

impl ExchangeHandler {
    /// Builds a worker's handler; runs inside the worker's runtime (spawns the registry applier,
    /// the notice tasks and the lag probe).
    pub fn new(
        ctx: &WorkerCtx,
        shared: Arc<Shared>,
        updates: Option<BroadcastReceiver<Resolved>>,
    ) -> Self {
        let index = ctx.info.index;
        if let Some(m) = shared.shell.metrics.get(index) {
            let _ = m.driver.set(ctx.info.driver.as_str());
        }
        if let Ok(mut stats) = shared.server_stats.lock() {
            stats.push(ctx.stats.clone());
        }
        let engine = Rc::new(RefCell::new(Engine::new(shared.shell.engine)));
        let dsps: Rc<RefCell<Rc<DspSet>>> = Rc::default();
        if let Some(updates) = updates {
            spawn_applier(ctx, &shared, updates, engine.clone(), dsps.clone());
        }
        if let Some(currency) = &shared.shell.currency {
            spawn_rates_applier(ctx, currency, engine.clone());
        }
        let notices = notices::spawn(shared.shell.clone(), index, dsps.clone());
        let auction = AuctionShell {
            lag: rtb_io::lag::spawn_lag_monitor(ctx.shutdown.clone()),
            in_flight: Cell::new(0),
            ledger: WorkerLedger::new(shared.shell.ledger.as_ref(), index),
            qps_shares: rtb_io::engine_shell::qps_shares::ShareRefresh::default(),
            shared: shared.clone(),
            index,
            engine,
            dsps,
            workspaces: RefCell::new(Vec::new()),
            answers: RefCell::new(BodyPool::default()),
            request_gzip: RefCell::default(),
            notices,
        };
        Self {
            shared,
            index,
            auction,
        }
    }

    /// Counts a request by route and status on this worker.
    fn count(&self, route: Route, status: u16) {
        if let Some(requests) = self.shared.requests.get(self.index) {
            requests.count(route as usize, status);
        }
    }
}

/// Applies every registry snapshot to this worker: new DSP slots and the engine's table, in
/// the same order, at the same moment (between requests).
fn spawn_applier(
    ctx: &WorkerCtx,
    shared: &Arc<Shared>,
    updates: BroadcastReceiver<Resolved>,
    engine: Rc<RefCell<Engine>>,
    dsps: Rc<RefCell<Rc<DspSet>>>,
) {
    let index = ctx.info.index;
    let shared = shared.clone();
    // This worker's TLS client config: its session cache serves this worker's pools only.
    let tls = shared.shell.dsp_tls_roots.worker_connector();
    updates.spawn_applier(
        APPLY_PERIOD_DEFAULT,
        ctx.shutdown.clone(),
        move |snapshot| {
            let Some(metrics) = shared.shell.metrics.get(index) else {
                return;
            };
            let pools = shared.shell.dsp_pools;
            let next = apply_snapshot(&dsps.borrow(), &snapshot, metrics, pools, &tls);
            let specs = next.slots.iter().map(|s| (s.spec(), s.policy.clone()));
            engine.borrow_mut().set_dsps_with_policies(specs);
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

/// How often a worker looks for a new currency rates table (refreshes are minutes apart).
const RATES_APPLY_PERIOD: Duration = Duration::from_millis(100);

/// Installs the startup rates table on this worker's engine, then every new one the control
/// thread publishes, between requests: an auction converts with one whole table.
fn spawn_rates_applier(ctx: &WorkerCtx, currency: &Currency, engine: Rc<RefCell<Engine>>) {
    engine
        .borrow_mut()
        .set_currency_rates(currency.initial.clone());
    let Some(updates) = currency.updates.receiver(ctx.info.index) else {
        return;
    };
    let index = ctx.info.index;
    updates.spawn_applier(RATES_APPLY_PERIOD, ctx.shutdown.clone(), move |rates| {
        tracing::debug!(
            worker = index,
            currencies = rates.currencies(),
            "currency rates applied"
        );
        engine.borrow_mut().set_currency_rates(Some(rates));
    });
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
                    self.auction.serve(&req).await
                } else {
                    method_not_allowed("POST")
                },
            ),
            "/dsp" => match req.method {
                Method::POST => (
                    Route::DspOnboard,
                    onboard::post_dsp(&self.shared, &req).await,
                ),
                Method::GET => (Route::DspList, onboard::list(&self.shared, &req).await),
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
        self.count(route, response.status.as_u16());
        response
    }
}
