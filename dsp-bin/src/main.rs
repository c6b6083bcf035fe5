//! rtb-dsp: a configurable simulated DSP on rtb-io's thread-per-core server.
//!
//! Parses flags (each with an `RTB_DSP_*` env equivalent), starts the workers, prints
//! `listening on HOST:PORT` on stdout (so scripts can use `--port 0`), registers with the
//! exchanges, and stops gracefully on SIGTERM/SIGINT. Logs go to stderr.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    sync::{Arc, OnceLock},
    time::Duration,
};

use clap::Parser;
use dsp_bin::{
    dist::{LatencyDist, PriceDist},
    handler::{Behaviour, DspHandler, Shared},
    httpc::HttpUrl,
    metrics::Metrics,
    onboard::Onboarding,
};
use rtb_io::{DriverKind, Server, ServerConfig, WorkerCtx};

/// Port when none is given.
const PORT_DEFAULT: u16 = 5000;
/// In-flight requests get this long at shutdown (hanging ones end at once on the trigger).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often main looks at the shutdown flag.
const MAIN_POLL: Duration = Duration::from_millis(50);

/// A simulated OpenRTB 2.6 DSP: bids above floor, with configurable prices, latency and faults.
#[derive(Debug, Parser)]
#[command(name = "rtb-dsp", version, about)]
struct Args {
    /// DSP name (bid ids, creatives, adomain, onboarding).
    #[arg(long, env = "RTB_DSP_NAME", default_value = "dsp")]
    dsp_name: String,
    /// Base URL the exchange calls; default http://127.0.0.1:<bound port> (https:// with
    /// --tls-cert).
    #[arg(long, env = "RTB_DSP_BASE_URL")]
    base_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "RTB_DSP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "RTB_DSP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "RTB_DSP_PORT", default_value_t = PORT_DEFAULT)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "RTB_DSP_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Comma-separated exchange onboarding URLs (http://host:port/dsp).
    #[arg(long, env = "RTB_DSP_ONBOARD_ENDPOINTS", value_delimiter = ',')]
    onboard_endpoints: Vec<String>,
    /// Bearer token for onboarding.
    #[arg(long, env = "RTB_ONBOARD_TOKEN", hide_env_values = true)]
    onboard_token: Option<String>,
    /// Re-onboard (and re-resolve the endpoints' hosts, onboarding every address) every this
    /// many seconds once accepted (about a third of the exchange's TTL).
    #[arg(long, env = "RTB_DSP_ONBOARD_INTERVAL_S", default_value_t = 10)]
    onboard_interval_s: u64,
    /// Worker threads.
    #[arg(long, env = "RTB_DSP_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Pin workers to cores (off by default: the simulator shares cores with the exchange).
    #[arg(long, env = "RTB_DSP_PIN_CORES")]
    pin_cores: bool,
    /// IO driver: auto, uring or epoll.
    #[arg(long, env = "RTB_DSP_IO_DRIVER", default_value = "auto")]
    io_driver: String,
    /// seatbid.seat; default the DSP name.
    #[arg(long, env = "RTB_DSP_SEAT")]
    seat: Option<String>,
    /// Bid path registered with the exchange (POST /bid is always answered too).
    #[arg(long, env = "RTB_DSP_BID_PATH", default_value = "/bid")]
    bid_path: String,
    /// Probability of bidding on a request (else 204).
    #[arg(long, env = "RTB_DSP_BID_RATE", default_value_t = 1.0)]
    bid_rate: f64,
    /// Bid price: above-floor:SPREAD, fixed:V, uniform:A,B or lognormal:P50,P99 (CPM).
    #[arg(long, env = "RTB_DSP_PRICE", default_value = "above-floor:1.5")]
    price: PriceDist,
    /// Response latency in ms: fixed:V, uniform:A,B or lognormal:p50=A,p99=B.
    #[arg(long, env = "RTB_DSP_LATENCY", default_value = "fixed:0")]
    latency: LatencyDist,
    /// Probability of never answering (held until shutdown or 120 s).
    #[arg(long, env = "RTB_DSP_HANG_RATE", default_value_t = 0.0)]
    hang_rate: f64,
    /// Probability of closing the connection without answering.
    #[arg(long, env = "RTB_DSP_RESET_RATE", default_value_t = 0.0)]
    reset_rate: f64,
    /// Probability of answering 500.
    #[arg(long, env = "RTB_DSP_ERROR500_RATE", default_value_t = 0.0)]
    error500_rate: f64,
    /// Probability of answering 200 with malformed JSON.
    #[arg(long, env = "RTB_DSP_MALFORMED_RATE", default_value_t = 0.0)]
    malformed_rate: f64,
    /// Sleep the sampled latency even past tmax (misbehave).
    #[arg(long, env = "RTB_DSP_IGNORE_TMAX")]
    ignore_tmax: bool,
    /// RNG seed (worker i uses seed + i); default from the clock.
    #[arg(long, env = "RTB_DSP_SEED")]
    seed: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "RTB_DSP_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Currency of the bids (`cur`), e.g. EUR; prices from --price are sent as they are, in
    /// it. Default: the request's auction currency.
    #[arg(long, env = "RTB_DSP_CURRENCY")]
    currency: Option<String>,
    /// Put a loss notice URL (`lurl`, back to this DSP's `GET /loss`) in every bid; the loss
    /// notices received are counted by reason (`rtb_dspsim_loss_notices_total`).
    #[arg(long, env = "RTB_DSP_LURL")]
    lurl: bool,
    /// Ask for gzip at onboarding (`"gzip": true`): the exchange then sends bid requests
    /// gzip-compressed, and this DSP answers gzip-compressed (counted in
    /// `rtb_dspsim_gzip_requests_total` and `rtb_dspsim_gzip_responses_total`).
    #[arg(long, env = "RTB_DSP_GZIP")]
    gzip: bool,
}

fn init_logging(format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => return Err(format!("--log-format {other:?}: expected text or json")),
    }
    Ok(())
}

fn main() {
    if let Err(error) = run() {
        eprintln!("rtb-dsp: {error}");
        std::process::exit(2);
    }
}

/// A seed that differs per start: the clock's nanoseconds mixed with the pid.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

/// How this DSP answers, from its flags.
fn behaviour(args: &Args, seed: u64) -> Behaviour {
    Behaviour {
        seat: args.seat.clone().unwrap_or_else(|| args.dsp_name.clone()),
        name: args.dsp_name.clone(),
        bid_path: args.bid_path.clone(),
        bid_rate: args.bid_rate,
        price: args.price,
        latency: args.latency,
        hang_rate: args.hang_rate,
        reset_rate: args.reset_rate,
        error500_rate: args.error500_rate,
        malformed_rate: args.malformed_rate,
        ignore_tmax: args.ignore_tmax,
        seed,
        currency: args.currency.clone(),
        lurl: args.lurl,
        gzip: args.gzip,
    }
}

fn server_config(args: &Args, driver: DriverKind) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::new(SocketAddr::new(args.bind, args.port));
    config.workers = args.workers.max(1);
    config.pin_cores = args.pin_cores;
    config.driver = driver;
    config.shutdown_grace = SHUTDOWN_GRACE;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = rtb_io::tls::server_tls(cert, key).map_err(|e| format!("--tls-cert: {e}"))?;
        config.tls = Some(tls);
    }
    Ok(config)
}

/// The address a local client can reach (loopback for a wildcard bind) and the base URL this
/// DSP announces (`--base-url`, or `http://` that address, `https://` when serving TLS).
fn addresses(server: &Server, base_url: Option<&str>, tls: bool) -> (SocketAddr, String) {
    let local = server.local_addr();
    let reachable = if local.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), local.port())
    } else {
        local
    };
    let base_url = base_url
        .map_or_else(
            || {
                let scheme = if tls { "https" } else { "http" };
                format!("{scheme}://{reachable}")
            },
            str::to_owned,
        )
        .trim_end_matches('/')
        .to_owned();
    (reachable, base_url)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Go-style `-dsp-name x` as the original fleet's scripts spell it (rtb_io::flags).
    let args = Args::parse_from(rtb_io::flags::go_style(std::env::args_os()));
    init_logging(&args.log_format)?;
    let driver: DriverKind = args
        .io_driver
        .parse()
        .map_err(|e| format!("--io-driver {:?}: {e}", args.io_driver))?;
    let endpoints = args
        .onboard_endpoints
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| HttpUrl::parse(e.trim()).map_err(|err| format!("--onboard-endpoints: {err}")))
        .collect::<Result<Vec<_>, _>>()?;
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let behaviour = behaviour(&args, seed);
    behaviour.validate()?;
    let shared = Arc::new(Shared {
        behaviour,
        metrics: Arc::new(Metrics::default()),
        base_url: OnceLock::new(),
    });

    let config = server_config(&args, driver)?;
    let tls = config.tls.is_some();
    let factory_shared = shared.clone();
    let server = Server::start(config, move |ctx: &WorkerCtx| {
        DspHandler::new(factory_shared.clone(), ctx.info.index)
    })
    .map_err(|e| format!("cannot listen on {}:{}: {e}", args.bind, args.port))?;
    let (reachable, base_url) = addresses(&server, args.base_url.as_deref(), tls);
    let _ = shared.base_url.set(base_url.clone());
    let shutdown = server.shutdown_handle();
    shutdown.trigger_on_signals()?;
    tracing::info!(
        dsp = %shared.behaviour.name, bind = %server.local_addr(), %base_url,
        workers = server.workers().len(), driver = %server.workers().first().map_or("?", |w| w.driver.as_str()),
        price = %shared.behaviour.price, latency = %shared.behaviour.latency,
        bid_rate = shared.behaviour.bid_rate, "rtb-dsp started"
    );
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {reachable}")?;
        stdout.flush()?;
    }
    let onboarding = Onboarding {
        endpoints,
        token: args.onboard_token.clone().filter(|t| !t.is_empty()),
        name: shared.behaviour.name.clone(),
        base_url,
        bid_path: shared.behaviour.bid_path.clone(),
        gzip: shared.behaviour.gzip,
        interval: Duration::from_secs(args.onboard_interval_s.max(1)),
        seed,
        metrics: shared.metrics.clone(),
    };
    let onboard_threads = onboarding.spawn(&shutdown)?;

    while !shutdown.is_triggered() {
        std::thread::sleep(MAIN_POLL);
    }
    tracing::info!("shutting down");
    server.join()?;
    for t in onboard_threads {
        let _ = t.join();
    }
    tracing::info!("stopped");
    Ok(())
}
