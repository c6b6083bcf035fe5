//! rtb-exchange as a library: flags, routes, wiring and which metric series it shows, so
//! `main.rs` stays thin and tests can start an exchange in-process. The engine's monoio driver
//! (the auction shell, DSP slots, notices, counters, ledger, QPS shares, the control thread,
//! rates and roster) is `rtb_io::engine_shell`'s; the auction's rules are `rtb_core`'s.
//!
//! - [`config`]: flags and environment.
//! - [`app`]: a running exchange: everything started from a [`config::Config`], and stopped.
//! - [`handler`]: the main port's per-worker handler: routing, and requests counted by route.
//! - [`onboard`]: the HTTP side of the control plane (POST/GET/DELETE /dsp, health).
//! - [`metrics`]: which series the exchange exposes (the counters are
//!   `rtb_io::engine_shell::metrics`', the text writers `rtb_io::metrics_text`').
//! - [`revenue`]: the clearing price and revenue series.
//! - [`debug`]: the debug port's handler.

pub mod app;
pub mod config;
pub mod debug;
pub mod handler;
pub mod metrics;
pub mod onboard;
pub mod revenue;

use std::sync::{atomic::AtomicBool, Arc, Mutex};

use http::StatusCode;
use rtb_io::{limits::WorkerStats, Request, Response};

/// State shared by every worker and the debug port (read-only on the hot path).
#[derive(Debug)]
pub struct Shared {
    /// What every worker's engine shell reads: the engine's settings, the DSP pools' settings
    /// and TLS roots, the per-worker counters, the notice queue's size, the currency rates and
    /// the ledger.
    pub shell: Arc<rtb_io::engine_shell::Shared>,
    /// Onboarding bearer token (never logged).
    pub token: Option<String>,
    /// The control thread.
    pub control: rtb_io::engine_shell::control::ControlHandle,
    /// Requests by route and status, one entry per worker, each written by its worker only.
    pub requests: Arc<[metrics::RouteCounts]>,
    /// The HTTP layer's per-worker counters, filled in by each worker's factory.
    pub server_stats: Mutex<Vec<Arc<WorkerStats>>>,
    /// Set once every worker and the debug port listen; cleared at shutdown.
    pub ready: AtomicBool,
    /// Onboarding rate limit (process-wide; touched only by onboarding calls).
    pub onboard_limit: Mutex<rtb_core::token_bucket::TokenBucket>,
    /// The roster file's reload counters, when `--roster` is set.
    pub roster: Option<Arc<rtb_io::engine_shell::roster::RosterStatus>>,
    /// DNS lookups and each DSP's address count.
    pub dns: Arc<rtb_io::dns_status::DnsStatus>,
}

impl Shared {
    /// Whether `req` carries the configured bearer token (always true when none is set).
    pub fn authorized(&self, req: &Request) -> bool {
        rtb_core::onboard::bearer_authorized(req.header("authorization"), self.token.as_deref())
    }
}

/// 401 with a `WWW-Authenticate` challenge.
pub fn unauthorized() -> Response {
    let mut r = Response::json_error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token",
        "authorization",
    );
    r.headers.insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}
