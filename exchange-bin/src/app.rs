//! Owns the wiring of a running exchange: the control thread, the shared state, the main
//! server's workers and the debug port, started from a [`Config`] and stopped gracefully.
//! `main.rs` runs one from the command line; tests run one in-process.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use rtb_core::{roster::Roster, token_bucket::TokenBucket};
use rtb_io::{
    engine_shell::{
        self,
        control::{self, Resolved},
        metrics::{all_applied, WorkerMetrics},
        rates::{RatesRefresh, RatesStatus},
        roster::{roster_file, RosterFile},
        Currency,
    },
    Broadcast, Server, ShutdownHandle, WorkerCtx,
};

use crate::{
    config::Config, debug::DebugHandler, handler::ExchangeHandler, metrics::RouteCounts, Shared,
};

/// With `--currency-rates`: the first load (blocking, before any worker starts, so the first
/// auction already converts) and the refresh the control thread will run.
fn start_currency(config: &Config, workers: usize) -> (Option<RatesRefresh>, Option<Currency>) {
    let Some(source) = config.currency_rates.clone() else {
        return (None, None);
    };
    let status = Arc::new(RatesStatus::new(Duration::from_secs(
        config.currency_stale_s,
    )));
    let updates = Broadcast::new(workers);
    let mut refresh = RatesRefresh::new(
        source,
        Duration::from_secs(config.currency_refresh_s),
        status.clone(),
        updates.clone(),
    );
    let initial = refresh.load();
    let currency = Currency {
        initial,
        updates,
        status,
    };
    (Some(refresh), Some(currency))
}

/// The roster file and its first load, when `--roster` is set; a file that does not load
/// stops the start (the error names the entry and field). `--check-config` runs it alone.
pub fn load_roster(config: &Config) -> std::io::Result<Option<(RosterFile, Roster)>> {
    let Some(path) = &config.roster else {
        return Ok(None);
    };
    let poll = Duration::from_millis(config.roster_poll_ms);
    let mut file = roster_file(path.clone(), poll, !config.directory.deny_loopback_dsp);
    let roster = file
        .load()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    Ok(Some((file, roster)))
}

/// Longest wait at start for every worker to have the first roster (its DNS lookups can take
/// a while; past it the exchange serves anyway, and the roster arrives when it is ready).
pub const FIRST_ROSTER_WAIT_MAX: Duration = Duration::from_secs(10);

/// Waits (bounded) until every worker applied the registry version the first roster was
/// published as, so no request is answered "no DSP registered" while a roster holds DSPs.
fn wait_first_roster(first_version: &control::FirstVersion, workers: &[WorkerMetrics]) {
    let give_up = std::time::Instant::now() + FIRST_ROSTER_WAIT_MAX;
    let Ok(version) = first_version.recv_timeout(FIRST_ROSTER_WAIT_MAX) else {
        tracing::warn!("the control thread did not apply the roster in time");
        return;
    };
    while !all_applied(workers, version) {
        if std::time::Instant::now() >= give_up {
            tracing::warn!(version, "not every worker applied the first roster in time");
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What every worker's engine shell reads, with the threads that feed it started: the
/// QPS-share rebalancer and the ledger's writer (when `--ledger` is set).
fn start_shell(
    config: &Config,
    workers: usize,
    currency: Option<Currency>,
) -> std::io::Result<Arc<engine_shell::Shared>> {
    let metrics: Arc<[WorkerMetrics]> = (0..workers).map(|_| WorkerMetrics::default()).collect();
    let rebalance = Duration::from_millis(config.qps_rebalance_ms);
    engine_shell::qps_shares::spawn(Arc::downgrade(&metrics), rebalance)?;
    let ledger = engine_shell::ledger::Ledger::start(&config.ledger, workers)?;
    Ok(Arc::new(engine_shell::Shared {
        engine: config.engine_config(),
        dsp_pools: config.dsp_client.pool_settings(),
        dsp_tls_roots: rtb_io::TlsRoots::load(config.dsp_ca_file.as_deref())?,
        metrics,
        win_queue_max: config.win_queue_max,
        allow_loopback: !config.directory.deny_loopback_dsp,
        currency,
        ledger,
    }))
}

/// A running exchange.
#[derive(Debug)]
pub struct App {
    server: Server,
    debug_server: Server,
    shared: Arc<Shared>,
    _control_thread: std::thread::JoinHandle<()>,
}

impl App {
    /// Starts every part of the exchange; serving once this returns.
    pub fn start(config: &Config) -> std::io::Result<App> {
        let workers = config.worker_count();
        let broadcast: Broadcast<Resolved> = Broadcast::new(workers);
        let (rates_refresh, currency) = start_currency(config, workers);
        let roster = load_roster(config)?;
        let roster_status = roster.as_ref().map(|(file, _)| file.status.clone());
        let dns_status = rtb_io::dns_status::status();
        let (control, first_version, control_thread) = control::spawn(
            config.directory.directory_config(),
            config.directory.resolve_timeout(),
            broadcast.clone(),
            rates_refresh,
            roster,
            dns_status.clone(),
        )?;
        let shared = Arc::new(Shared {
            shell: start_shell(config, workers, currency)?,
            token: config.onboard_token.clone(),
            control,
            requests: (0..workers).map(|_| RouteCounts::default()).collect(),
            server_stats: Mutex::new(Vec::new()),
            ready: false.into(),
            onboard_limit: Mutex::new(TokenBucket::new(
                config.onboard_rate_per_s,
                config.onboard_burst,
                std::time::Instant::now(),
            )),
            roster: roster_status,
            dns: dns_status,
        });
        let main_shared = shared.clone();
        let server = Server::start(config.server_config(), move |ctx: &WorkerCtx| {
            ExchangeHandler::new(ctx, main_shared.clone(), broadcast.receiver(ctx.info.index))
        })?;
        let debug_shared = shared.clone();
        let debug_server = Server::start(config.debug_server_config(), move |_ctx: &WorkerCtx| {
            DebugHandler::new(debug_shared.clone())
        })?;
        wait_first_roster(&first_version, &shared.shell.metrics);
        shared.ready.store(true, Ordering::Release);
        Ok(App {
            server,
            debug_server,
            shared,
            _control_thread: control_thread,
        })
    }

    /// The main port's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The debug port's address.
    pub fn debug_addr(&self) -> SocketAddr {
        self.debug_server.local_addr()
    }

    /// Worker threads of the main port.
    pub fn workers(&self) -> usize {
        self.server.workers().len()
    }

    /// Triggering it starts a graceful shutdown (also wired to SIGTERM/SIGINT by `main`).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.server.shutdown_handle()
    }

    /// Shuts down gracefully: not ready, requests in flight answered, every ledger record
    /// written, then the debug port. The control thread holds no state worth flushing; it ends
    /// with the process.
    pub fn stop(self) -> std::io::Result<()> {
        self.shared.ready.store(false, Ordering::Release);
        self.server.shutdown_handle().trigger();
        let joined = self.server.join();
        if let Some(ledger) = &self.shared.shell.ledger {
            ledger.stop();
        }
        joined?;
        self.debug_server.shutdown_handle().trigger();
        self.debug_server.join()
    }
}
