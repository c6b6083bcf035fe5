//! Owns the debug port's handler: `GET /metrics` (Prometheus text, summed from per-worker
//! counters on scrape), `GET /debug/registry` (token-protected when a token is set) and
//! `GET /healthz`. It runs as a second rtb-io server with one unpinned worker, so scrapes never
//! share a runtime with auctions. There is no pprof endpoint (use `perf` on the pinned workers).

use std::sync::{atomic::Ordering, Arc};

use http::{Method, StatusCode};
use rtb_io::{Handler, Request, Response, ServerStats, WorkerCtx};

use rtb_io::engine_shell::control::{ask, Command, Unanswered};

use crate::{metrics, unauthorized, Shared};

/// Content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The debug port's handler.
#[derive(Debug)]
pub struct DebugHandler {
    shared: Arc<Shared>,
}

impl DebugHandler {
    /// A handler reading `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn metrics(&self) -> Response {
        let stats = self
            .shared
            .server_stats
            .lock()
            .map(|s| ServerStats::sum(s.iter().map(|w| &**w)))
            .unwrap_or_default();
        let mut text = metrics::render(
            &self.shared.shell.metrics,
            &self.shared.requests,
            Some(&stats),
        );
        if let Some(currency) = &self.shared.shell.currency {
            rtb_io::engine_shell::rates::render(
                &currency.status,
                rtb_io::clock::unix_ms(),
                &mut text,
            );
        }
        if let Some(ledger) = &self.shared.shell.ledger {
            ledger.render_metrics(&mut text);
        }
        if let Some(roster) = &self.shared.roster {
            roster.render(&rtb_io::engine_shell::roster::ROSTER_SERIES, &mut text);
        }
        self.shared.dns.render(&mut text);
        Response::with_body(StatusCode::OK, PROMETHEUS_CONTENT_TYPE, text)
    }

    async fn registry(&self, req: &Request) -> Response {
        if !self.shared.authorized(req) {
            return unauthorized();
        }
        let unavailable = |why| Response::json_error(StatusCode::SERVICE_UNAVAILABLE, why, "");
        let registry = match ask(&self.shared.control, |reply| Command::List { reply }).await {
            Ok(registry) => registry,
            Err(Unanswered::Busy) => return unavailable("control plane busy"),
            Err(Unanswered::Gone) => return unavailable("control plane gone"),
        };
        let workers = self.shared.shell.metrics.iter();
        let applied: Vec<u64> = workers
            .map(|m| m.applied_version.load(Ordering::Acquire))
            .collect();
        let applied = serde_json::to_string(&applied).unwrap_or_else(|_| "[]".into());
        Response::json(
            StatusCode::OK,
            format!("{{\"registry\":{registry},\"workers_applied_version\":{applied}}}"),
        )
    }
}

impl Handler for DebugHandler {
    async fn handle(&self, req: Request, _ctx: &WorkerCtx) -> Response {
        if req.method != Method::GET {
            return Response::method_not_allowed("GET");
        }
        match req.path() {
            "/metrics" => self.metrics(),
            "/debug/registry" => self.registry(&req).await,
            "/healthz" => Response::json(StatusCode::OK, r#"{"status":"ok"}"#),
            _ => Response::json_error(StatusCode::NOT_FOUND, "no such route", ""),
        }
    }
}
