//! Owns the main port's per-worker handler: routing, and counting each request by route and
//! status. The auction route's shell (the engine, the DSP slots, the notices, how registry
//! snapshots and currency rates reach the worker) is `rtb_io::engine_shell::auction`'s.

use std::sync::Arc;

use http::{Method, StatusCode};
use rtb_io::{
    engine_shell::{auction::AuctionShell, control::Resolved},
    BroadcastReceiver, Handler, Request, Response, WorkerCtx,
};

use crate::{metrics::Route, onboard, Shared};

/// The main port's handler; one per worker: routing, with the auction route's shell.
#[derive(Debug)]
pub struct ExchangeHandler {
    shared: Arc<Shared>,
    index: usize,
    /// The auction route: this worker's engine, DSP slots, workspaces, notices, lag, ledger.
    auction: AuctionShell,
}

impl ExchangeHandler {
    /// Builds a worker's handler; runs inside the worker's runtime (the auction shell spawns
    /// the registry applier, the notice tasks and the lag probe).
    pub fn new(
        ctx: &WorkerCtx,
        shared: Arc<Shared>,
        updates: Option<BroadcastReceiver<Resolved>>,
    ) -> Self {
        if let Ok(mut stats) = shared.server_stats.lock() {
            stats.push(ctx.stats.clone());
        }
        let auction = AuctionShell::start(ctx, shared.shell.clone(), updates);
        Self {
            shared,
            index: ctx.info.index,
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

impl Handler for ExchangeHandler {
    /// Every route that needs no IO, and an auction shed under overload: answered without
    /// building `handle`'s future (whose auction state is kilobytes).
    fn answer_now(&self, req: &Request, _ctx: &WorkerCtx) -> Option<Response> {
        let path = req.path();
        let (route, response) = match (path, &req.method) {
            ("/openrtb2/auction", &Method::POST) => (Route::Auction, self.auction.shed_now(req)?),
            ("/openrtb2/auction", _) => (Route::Auction, Response::method_not_allowed("POST")),
            ("/dsp", &Method::POST | &Method::GET) => return None,
            ("/dsp", _) => (Route::Other, Response::method_not_allowed("GET, POST")),
            (p, &Method::DELETE) if p.starts_with("/dsp/") => return None,
            (p, _) if p.starts_with("/dsp/") => {
                (Route::Other, Response::method_not_allowed("DELETE"))
            }
            ("/healthz" | "/readyz", _) => (Route::Health, onboard::health(&self.shared, path)),
            _ => (
                Route::Other,
                Response::json_error(StatusCode::NOT_FOUND, "no such route", ""),
            ),
        };
        self.count(route, response.status.as_u16());
        Some(response)
    }

    /// The routes [`ExchangeHandler::answer_now`] left: an admitted auction, and onboarding.
    async fn handle(&self, req: Request, ctx: &WorkerCtx) -> Response {
        let (route, response) = match (req.path(), &req.method) {
            ("/openrtb2/auction", &Method::POST) => {
                (Route::Auction, self.auction.serve(&req).await)
            }
            ("/dsp", &Method::POST) => (
                Route::DspOnboard,
                onboard::post_dsp(&self.shared, &req).await,
            ),
            ("/dsp", &Method::GET) => (Route::DspList, onboard::list(&self.shared, &req).await),
            (p, &Method::DELETE) if p.starts_with("/dsp/") => (
                Route::DspDelete,
                onboard::delete_dsp(&self.shared, &req, &p["/dsp/".len()..]).await,
            ),
            // Every other route is answered by `answer_now`, which rtb-io's server asks first.
            _ => {
                return (self.answer_now(&req, ctx)).unwrap_or(Response::new(StatusCode::NOT_FOUND))
            }
        };
        self.count(route, response.status.as_u16());
        response
    }
}
