//! rtb-exchange: parse the configuration, set up logging, start the control thread, the
//! workers and the debug port, then wait for SIGTERM/SIGINT and shut down gracefully.
//!
//! Prints `listening on ADDR` and `debug listening on ADDR` on stdout once serving, so a
//! supervisor (or a test) started with `--port 0` learns the real ports. `--check-config`
//! only checks the flags and the roster file, and exits.

use std::{io::Write, time::Duration};

use exchange::{
    app::App,
    config::{Config, LogFormat},
};
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
    if config.check_config {
        std::process::exit(check_config(&config));
    }
    init_tracing(config.log_format);
    if let Err(e) = run(&config) {
        tracing::error!(error = %e, "rtb-exchange failed");
        eprintln!("rtb-exchange: {e}");
        std::process::exit(1);
    }
}

/// `--check-config`: the flags already parsed (a bad one exited 2 in `parse_or_exit`), the
/// roster loaded the way a start loads it. The exit status: 0, or 2 like a bad flag.
fn check_config(config: &Config) -> i32 {
    match exchange::app::load_roster(config) {
        Ok(None) => println!("OK: configuration (no --roster)"),
        Ok(Some((file, roster))) => println!(
            "OK: configuration; roster {}: {} DSPs",
            file.path().display(),
            roster.dsps.len()
        ),
        Err(e) => {
            eprintln!("rtb-exchange: {e}");
            return 2;
        }
    }
    0
}

fn run(config: &Config) -> std::io::Result<()> {
    let app = App::start(config)?;
    let shutdown = app.shutdown_handle();
    if config.onboard_token.is_none() && !config.bind.is_loopback() {
        tracing::warn!(
            bind = %config.bind,
            "open onboarding (--open-onboarding): anyone who reaches the port can register DSPs"
        );
    }
    shutdown.trigger_on_signals()?;
    tracing::info!(
        addr = %app.addr(),
        debug_addr = %app.debug_addr(),
        workers = app.workers(),
        deadline_ms = config.engine.deadline_ms,
        onboarding_token = config.onboard_token.is_some(),
        "rtb-exchange serving"
    );
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", app.addr())?;
        writeln!(out, "debug listening on {}", app.debug_addr())?;
        out.flush()?;
    }
    while !shutdown.is_triggered() {
        std::thread::sleep(MAIN_POLL);
    }
    tracing::info!("shutting down");
    app.stop()?;
    tracing::info!("stopped");
    Ok(())
}
