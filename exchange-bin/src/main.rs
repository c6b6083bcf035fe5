//! rtb-exchange: parse the configuration, set up logging, start the control thread, the
//! workers and the debug port, then wait for SIGTERM/SIGINT and shut down gracefully.
//!
//! Prints `listening on ADDR` and `debug listening on ADDR` on stdout once serving, so a
//! supervisor (or a test) started with `--port 0` learns the real ports.

use std::{
    io::Write,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use exchange::{
    auction::ExchangeHandler,
    config::{Config, LogFormat},
    control::{self, ControlConfig, Resolved},
    debug::DebugHandler,
    metrics::WorkerMetrics,
    ratelimit::TokenBucket,
    Shared,
};
use rtb_io::{Broadcast, Server, WorkerCtx};
use tracing_subscriber::EnvFilter;

/// How often the main thread looks at the shutdown flag.
const MAIN_POLL: Duration = Duration::from_millis(20);

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() {
    let config = Config::parse_or_exit();
    init_tracing(config.log_format);
    if let Err(e) = run(&config) {
        tracing::error!(error = %e, "rtb-exchange failed");
        eprintln!("rtb-exchange: {e}");
        std::process::exit(1);
    }
}

fn run(config: &Config) -> std::io::Result<()> {
    let workers = config.worker_count();
    let broadcast: Broadcast<Resolved> = Broadcast::new(workers);
    let (control, control_thread) = control::spawn(
        ControlConfig {
            dsps_max: config.max_dsps,
            ttl: Duration::from_secs(config.dsp_ttl_s),
            allow_loopback: !config.deny_loopback_dsp,
            reresolve_period: control::RERESOLVE_PERIOD,
        },
        broadcast.clone(),
    )?;
    let metrics: Arc<[WorkerMetrics]> = (0..workers).map(|_| WorkerMetrics::default()).collect();
    let shared = Arc::new(Shared {
        policy: config.deadline_policy(),
        token: config.onboard_token.clone(),
        control,
        metrics,
        server_stats: Mutex::new(Vec::new()),
        ready: false.into(),
        win_queue_max: config.win_queue_max,
        allow_loopback: !config.deny_loopback_dsp,
        breaker: config.breaker_config(),
        overload: config.overload_policy(),
        validation: config.validation,
        onboard_limit: Mutex::new(TokenBucket::new(
            config.onboard_rate_per_s,
            config.onboard_burst,
            std::time::Instant::now(),
        )),
    });

    let main_shared = shared.clone();
    let server = Server::start(config.server_config(), move |ctx: &WorkerCtx| {
        ExchangeHandler::new(ctx, main_shared.clone(), broadcast.receiver(ctx.info.index))
    })?;
    let debug_shared = shared.clone();
    let debug_server = Server::start(config.debug_server_config(), move |_ctx: &WorkerCtx| {
        DebugHandler::new(debug_shared.clone())
    })?;
    let shutdown = server.shutdown_handle();
    shutdown.trigger_on_signals()?;
    shared.ready.store(true, Ordering::Release);
    tracing::info!(
        addr = %server.local_addr(),
        debug_addr = %debug_server.local_addr(),
        workers = server.workers().len(),
        deadline_ms = config.deadline_ms,
        onboarding_token = config.onboard_token.is_some(),
        "rtb-exchange serving"
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.local_addr())?;
        writeln!(out, "debug listening on {}", debug_server.local_addr())?;
        out.flush()?;
    }

    while !shutdown.is_triggered() {
        std::thread::sleep(MAIN_POLL);
    }
    shared.ready.store(false, Ordering::Release);
    tracing::info!("shutting down");
    server.join()?;
    debug_server.shutdown_handle().trigger();
    debug_server.join()?;
    // The control thread holds no state worth flushing; it ends with the process.
    drop(control_thread);
    tracing::info!("stopped");
    Ok(())
}
