//! rtb-demo: the one-command demo driver behind `scripts/demo`.
//!
//! Starts `rtb-exchange` and a fleet of three `rtb-dsp` processes that onboard to it, waits for
//! the registry to list them, sends every sample bid request through `POST /openrtb2/auction`
//! and prints one row per request, runs a short closed-loop load (keep-alive connections on
//! monoio via rtb-io's client, latencies in an HDR histogram), prints counters from the
//! exchange and the DSPs, then stops everything with SIGTERM. Exits non-zero if a process
//! failed to start or exit cleanly, or a request failed unexpectedly.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::Parser;
use dsp_bin::httpc::{self, HttpUrl};
use hdrhistogram::Histogram;
use http::uri::PathAndQuery;
use rtb_core::{BidRequest, Decoder, Document};
use rtb_io::{ClientConfig, ClientRequest, DriverKind, Upstream};

/// Time a process gets to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Time a process gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout of each control-plane call and each sample request.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of each load request.
const LOAD_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the registry is polled while waiting for onboarding.
const ONBOARD_POLL: Duration = Duration::from_millis(200);
/// Load duration in `--smoke` mode.
const SMOKE_LOAD_SECONDS: u64 = 2;
/// Highest latency the histogram tracks, microseconds.
const HISTOGRAM_MAX_US: u64 = 60_000_000;
/// Auction route of the exchange.
const AUCTION_PATH: &str = "/openrtb2/auction";

/// The simulated fleet: name, price, latency, bid rate, extra flags.
const FLEET: [(&str, &str, &str, &str, &[&str]); 3] = [
    ("braid", "lognormal:1.2,4", "uniform:1,5", "0.95", &[]),
    (
        "the-witness",
        "uniform:0.5,3",
        "lognormal:p50=4,p99=20",
        "0.9",
        &[],
    ),
    (
        "order-of-the-sinking-star",
        "above-floor:2",
        "fixed:2",
        "0.8",
        &["--malformed-rate", "0.02"],
    ),
];

/// Used when the samples folder is missing.
const BUILTIN_REQUESTS: [(&str, &str); 3] = [
    (
        "builtin-banner",
        r#"{"id":"demo-banner-1","at":2,"tmax":120,"cur":["USD"],"site":{"id":"s1","domain":"news.example"},"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5,"bidfloorcur":"USD"}]}"#,
    ),
    (
        "builtin-multi-imp",
        r#"{"id":"demo-multi-2","at":2,"tmax":150,"app":{"id":"a1","bundle":"com.example.game"},"imp":[{"id":"1","banner":{"w":320,"h":50},"bidfloor":0.2},{"id":"2","video":{"mimes":["video/mp4"],"w":640,"h":480},"bidfloor":3.0}]}"#,
    ),
    (
        "builtin-first-price",
        r#"{"id":"demo-fp-3","at":1,"tmax":100,"site":{"id":"s2"},"imp":[{"id":"a","banner":{"w":728,"h":90},"bidfloor":1.0}]}"#,
    ),
];

/// Runs the rtb exchange demo: exchange + three simulated DSPs, sample auctions, a short load.
#[derive(Debug, Parser)]
#[command(name = "rtb-demo", version, about)]
struct Args {
    /// rtb-exchange binary; default next to this one.
    #[arg(long, env = "DEMO_EXCHANGE_BIN")]
    exchange_bin: Option<PathBuf>,
    /// rtb-dsp binary; default next to this one.
    #[arg(long, env = "DEMO_DSP_BIN")]
    dsp_bin: Option<PathBuf>,
    /// Folder of OpenRTB samples (files with `-req-` in the name are sent).
    #[arg(long, env = "DEMO_SAMPLES_DIR")]
    samples_dir: Option<PathBuf>,
    /// Seconds of closed-loop load.
    #[arg(long, env = "DEMO_LOAD_SECONDS", default_value_t = 10)]
    load_seconds: u64,
    /// Short run for CI: 2 s of load.
    #[arg(long)]
    smoke: bool,
    /// Keep-alive connections of the load generator.
    #[arg(long, env = "DEMO_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Load generator threads (one monoio runtime each).
    #[arg(long, env = "DEMO_THREADS", default_value_t = 2)]
    threads: usize,
    /// Exchange worker threads (default: the exchange's own default).
    #[arg(long, env = "DEMO_EXCHANGE_WORKERS")]
    exchange_workers: Option<u16>,
    /// Seconds to wait for all DSPs to be onboarded.
    #[arg(long, default_value_t = 20)]
    onboard_timeout_s: u64,
    /// Folder for the processes' logs; default a fresh folder under the temp dir.
    #[arg(long, env = "DEMO_LOG_DIR")]
    log_dir: Option<PathBuf>,
}

type DemoResult<T> = Result<T, String>;

/// A child process, SIGTERMed and reaped on drop if still running.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<i32>,
}

impl Proc {
    fn terminate(&mut self) {
        if self.exited.is_none() {
            // SAFETY: kill(2) with our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
    }

    /// Waits for exit after [`Self::terminate`]; kills after [`STOP_TIMEOUT`]. Returns the code.
    fn wait_exit(&mut self) -> Option<i32> {
        if self.exited.is_some() {
            return self.exited;
        }
        let until = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exited = Some(status.code().unwrap_or(-1));
                    return self.exited;
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.exited = Some(-1);
                    return None;
                }
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.terminate();
            let _ = self.wait_exit();
        }
    }
}

/// Copies a child's stdout into its log on a thread of its own, and sends each address printed
/// after one of the `wanted` prefixes.
fn forward_stdout(
    stdout: std::process::ChildStdout,
    mut log: File,
    wanted: Vec<&'static str>,
) -> mpsc::Receiver<(&'static str, SocketAddr)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = writeln!(log, "{line}");
            for prefix in &wanted {
                if let Some(addr) = line.strip_prefix(prefix) {
                    if let Ok(addr) = addr.trim().parse::<SocketAddr>() {
                        let _ = tx.send((*prefix, addr));
                    }
                }
            }
        }
    });
    rx
}

/// Starts `bin` with `args`, logs stdout and stderr to `<log_dir>/<name>.log`, and waits for
/// the `listening on ADDR` lines it prints. Returns the process and the addresses by prefix.
fn spawn(
    name: &str,
    bin: &Path,
    args: &[String],
    envs: &[(&str, &str)],
    wanted: &[&'static str],
    log_dir: &Path,
) -> DemoResult<(Proc, BTreeMap<&'static str, SocketAddr>)> {
    let log = log_dir.join(format!("{name}.log"));
    let stderr_file =
        File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let stdout_log = stderr_file
        .try_clone()
        .map_err(|e| format!("cannot reuse {}: {e}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name} ({}): {e}", bin.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| format!("{name}: no stdout"))?;
    let rx = forward_stdout(stdout, stdout_log, wanted.to_vec());
    let mut proc = Proc {
        name: name.to_owned(),
        child,
        log,
        exited: None,
    };
    let mut found = BTreeMap::new();
    let until = Instant::now() + START_TIMEOUT;
    while found.len() < wanted.len() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            proc.exited = status.code();
            return Err(format!(
                "{name} exited at start ({status}); last log lines of {}:\n{}",
                proc.log.display(),
                proc.log_tail()
            ));
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((prefix, addr)) => {
                let ip = if addr.ip().is_unspecified() {
                    IpAddr::from([127, 0, 0, 1])
                } else {
                    addr.ip()
                };
                found.insert(prefix, SocketAddr::new(ip, addr.port()));
            }
            Err(_) if Instant::now() >= until => {
                return Err(format!(
                    "{name} printed no {wanted:?} line within {START_TIMEOUT:?}; log {}:\n{}",
                    proc.log.display(),
                    proc.log_tail()
                ))
            }
            Err(_) => {}
        }
    }
    Ok((proc, found))
}

fn url(addr: SocketAddr, path: &str) -> HttpUrl {
    HttpUrl {
        host: addr.ip().to_string(),
        port: addr.port(),
        path: path.to_owned(),
        connect_to: Some(addr),
    }
}

/// Every string under a `"name"` key, anywhere in the document.
fn names(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == "name" => out.push(s.clone()),
                    _ => names(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| names(v, out)),
        _ => {}
    }
}

/// Prometheus text as (series, value) pairs, comments skipped.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn metric(metrics: &[(String, f64)], prefix: &str) -> f64 {
    metrics
        .iter()
        .filter(|(s, _)| s.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// A DSP of the fleet once started.
#[derive(Debug)]
struct FleetDsp {
    name: &'static str,
    addr: SocketAddr,
}

impl FleetDsp {
    fn metrics(&self) -> Vec<(String, f64)> {
        httpc::request(&url(self.addr, "/metrics"), "GET", &[], b"", CALL_TIMEOUT)
            .map(|r| parse_metrics(&String::from_utf8_lossy(&r.body)))
            .unwrap_or_default()
    }
}

/// A request to send: file stem, raw body, whether rtb-core accepts it, impression count.
#[derive(Debug)]
struct Sample {
    name: String,
    body: Bytes,
    valid: bool,
    imps: usize,
}

fn load_samples(dir: &Path) -> Vec<Sample> {
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let mut raw: Vec<(String, Vec<u8>)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains("-req-") && n.ends_with(".json"))
            })
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_owned();
                Some((stem, std::fs::read(&p).ok()?))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if raw.is_empty() {
        println!(
            "Samples folder {} not found or empty: using {} built-in example requests.\n",
            dir.display(),
            BUILTIN_REQUESTS.len()
        );
        raw = BUILTIN_REQUESTS
            .iter()
            .map(|(n, b)| ((*n).to_owned(), b.as_bytes().to_vec()))
            .collect();
    } else {
        println!(
            "Sending the {} request samples of {}.\n",
            raw.len(),
            dir.display()
        );
    }
    raw.sort();
    raw.into_iter()
        .map(|(name, body)| {
            let decoded = BidRequest::decode(&body, &mut doc, &mut decoder).map(|r| r.imps.len());
            let (valid, imps) = match decoded {
                Ok(n) => (true, n),
                Err(_) => {
                    let imps = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("imp").and_then(|i| i.as_array()).map(Vec::len))
                        .unwrap_or(0);
                    (false, imps)
                }
            };
            Sample {
                name,
                body: Bytes::from(body),
                valid,
                imps,
            }
        })
        .collect()
}

/// Winner seats and clearing prices of an exchange answer.
fn winners(body: &[u8]) -> (String, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ("(unparsable)".into(), "-".into());
    };
    let mut seats = Vec::new();
    let mut prices = Vec::new();
    for seatbid in v["seatbid"].as_array().into_iter().flatten() {
        let seat = seatbid["seat"].as_str().unwrap_or("?");
        for bid in seatbid["bid"].as_array().into_iter().flatten() {
            seats.push(seat.to_owned());
            let price = bid["price"]
                .as_f64()
                .map_or("?".into(), |p| format!("{p:.2}"));
            let imp = bid["impid"].as_str().unwrap_or("?");
            prices.push(format!("{price}@{imp}"));
        }
    }
    seats.dedup();
    (seats.join(","), prices.join(" "))
}

fn short(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_owned()
    } else {
        let cut: String = name.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

/// Sends every sample once; returns the number of unexpected outcomes.
fn run_samples(exchange: SocketAddr, samples: &[Sample], fleet: &[FleetDsp]) -> usize {
    let bids_header: Vec<String> = fleet.iter().map(|d| short(d.name, 12)).collect();
    println!(
        "{:<44} {:>4} {:>6} {:<28} {:<22} {:>7}  bids per DSP ({})",
        "SAMPLE",
        "IMPS",
        "STATUS",
        "WINNER",
        "CLEARING PRICE@IMP",
        "MS",
        bids_header.join(" / ")
    );
    println!("{}", "-".repeat(150));
    let mut unexpected = 0;
    for sample in samples {
        let before: Vec<f64> = fleet
            .iter()
            .map(|d| metric(&d.metrics(), "rtb_dspsim_bids_total"))
            .collect();
        let started = Instant::now();
        let result = httpc::request(
            &url(exchange, AUCTION_PATH),
            "POST",
            &[
                ("content-type", "application/json"),
                ("x-openrtb-version", "2.6"),
            ],
            &sample.body,
            CALL_TIMEOUT,
        );
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let bids: Vec<String> = fleet
            .iter()
            .zip(&before)
            .map(|(d, b)| format!("{}", metric(&d.metrics(), "rtb_dspsim_bids_total") - b))
            .collect();
        let (status, winner, price, ok) = describe(&result, sample.valid);
        if !ok {
            unexpected += 1;
        }
        println!(
            "{:<44} {:>4} {:>6} {:<28} {:<22} {:>7.2}  {}{}",
            short(&sample.name, 44),
            sample.imps,
            status,
            short(&winner, 28),
            short(&price, 22),
            ms,
            bids.join(" / "),
            if ok { "" } else { "   <-- unexpected" }
        );
    }
    println!();
    unexpected
}

/// One sample's answer as the table shows it: status, winner, clearing price, and whether it
/// is what the sample expects (`valid` samples get 200 or 204, invalid ones 400).
fn describe(
    result: &std::io::Result<httpc::HttpResponse>,
    valid: bool,
) -> (String, String, String, bool) {
    let r = match result {
        Ok(r) => r,
        Err(e) => return ("ERR".into(), e.to_string(), "-".into(), false),
    };
    let (winner, price, ok) = match r.status {
        200 => {
            let (w, p) = winners(&r.body);
            (w, p, valid)
        }
        204 => ("(no bid)".into(), "-".into(), valid),
        400 => {
            let why = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .map(|v| {
                    format!(
                        "{} {}",
                        v["field"].as_str().unwrap_or(""),
                        v["error"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            (format!("rejected: {}", why.trim()), "-".into(), !valid)
        }
        _ => (
            String::from_utf8_lossy(&r.body[..r.body.len().min(40)]).into_owned(),
            "-".into(),
            false,
        ),
    };
    (r.status.to_string(), winner, price, ok)
}

/// What one load thread saw.
#[derive(Debug)]
struct LoadResult {
    histogram: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
}

fn load_thread(
    exchange: SocketAddr,
    bodies: Vec<Bytes>,
    connections: usize,
    offset: usize,
    end: Instant,
) -> DemoResult<LoadResult> {
    let histogram = Histogram::<u64>::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let state = Rc::new(RefCell::new(LoadResult {
        histogram,
        statuses: BTreeMap::new(),
    }));
    let task_state = state.clone();
    let run = async move {
        let config = ClientConfig {
            idle_connections_max: connections,
            in_flight_max: connections,
            ..ClientConfig::default()
        };
        let upstream = Upstream::new(exchange, &exchange.to_string(), config);
        upstream.prewarm(connections).await;
        let path = PathAndQuery::from_static(AUCTION_PATH);
        let mut tasks = Vec::with_capacity(connections);
        for c in 0..connections {
            let upstream = upstream.clone();
            let bodies = bodies.clone();
            let path = path.clone();
            let state = task_state.clone();
            tasks.push(monoio::spawn(async move {
                let mut i = offset + c;
                while Instant::now() < end {
                    let body = bodies[i % bodies.len()].clone();
                    i += 1;
                    let req = ClientRequest::openrtb_post(path.clone(), body);
                    let started = Instant::now();
                    let result = upstream.call(&req, started + LOAD_CALL_TIMEOUT).await;
                    let us = started.elapsed().as_micros() as u64;
                    let mut s = state.borrow_mut();
                    let key = match result {
                        Ok(r) => r.status.as_u16().to_string(),
                        Err(e) => format!("error:{}", e.as_str()),
                    };
                    *s.statuses.entry(key).or_default() += 1;
                    let _ = s.histogram.record(us.clamp(1, HISTOGRAM_MAX_US));
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    };
    rtb_io::driver::block_on(DriverKind::Auto, run).map_err(|e| format!("load runtime: {e}"))?;
    let result = Rc::try_unwrap(state)
        .map_err(|_| "load state still shared".to_owned())?
        .into_inner();
    Ok(result)
}

/// Runs the load; returns the number of unexpected outcomes (transport errors, 5xx but 503).
fn run_load(
    exchange: SocketAddr,
    samples: &[Sample],
    seconds: u64,
    connections: usize,
    threads: usize,
) -> DemoResult<u64> {
    let bodies: Vec<Bytes> = samples
        .iter()
        .filter(|s| s.valid)
        .map(|s| s.body.clone())
        .collect();
    if bodies.is_empty() {
        println!("No valid sample to load the exchange with; skipping the load phase.\n");
        return Ok(0);
    }
    let threads = threads.max(1);
    let connections = connections.max(threads);
    println!(
        "Load: {seconds} s, {connections} keep-alive connections over {threads} threads, \
         closed loop, rotating {} samples...",
        bodies.len()
    );
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let bodies = bodies.clone();
            let n = connections / threads + usize::from(t < connections % threads);
            std::thread::spawn(move || load_thread(exchange, bodies, n, t * 7, end))
        })
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        let r = h.join().map_err(|_| "load thread panicked".to_owned())??;
        histogram
            .add(&r.histogram)
            .map_err(|e| format!("histogram: {e}"))?;
        for (k, v) in r.statuses {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = statuses.values().sum();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  requests {total}  throughput {:.0} req/s  latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        total as f64 / elapsed,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1000.0
    );
    println!("  {:<24} {:>10} {:>8}", "STATUS", "COUNT", "SHARE");
    let mut unexpected = 0;
    for (status, count) in &statuses {
        let bad = status.starts_with("error") || (status.starts_with('5') && status != "503");
        if bad {
            unexpected += count;
        }
        println!(
            "  {:<24} {:>10} {:>7.2}%{}",
            status,
            count,
            100.0 * *count as f64 / total.max(1) as f64,
            if bad { "   <-- unexpected" } else { "" }
        );
    }
    println!();
    Ok(unexpected)
}

fn print_counters(debug: Option<SocketAddr>, fleet: &[FleetDsp]) {
    if let Some(debug) = debug {
        match httpc::request(&url(debug, "/metrics"), "GET", &[], b"", CALL_TIMEOUT) {
            Ok(r) if r.status == 200 => {
                const SHOWN: [&str; 8] = [
                    "rtb_requests_total",
                    "rtb_auctions_total",
                    "rtb_dsp_calls_total",
                    "rtb_dsp_bids_total",
                    "rtb_dsp_wins_total",
                    "rtb_dsp_timeouts_total",
                    "rtb_dsp_errors_total",
                    "rtb_win_notices_total",
                ];
                println!("Exchange /metrics (selected series):");
                let text = String::from_utf8_lossy(&r.body);
                for (series, value) in parse_metrics(&text) {
                    if SHOWN.iter().any(|p| series.starts_with(p)) && value != 0.0 {
                        println!("  {series:<90} {value}");
                    }
                }
                println!();
            }
            Ok(r) => println!("Exchange /metrics answered {}.\n", r.status),
            Err(e) => println!("Exchange /metrics unavailable: {e}\n"),
        }
    }
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>14} {:>10}",
        "DSP", "REQUESTS", "BIDS", "NO-BIDS", "WINS", "WIN VALUE", "FAULTS"
    );
    for d in fleet {
        let m = d.metrics();
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>10} {:>14.2} {:>10}",
            d.name,
            metric(&m, "rtb_dspsim_requests_total"),
            metric(&m, "rtb_dspsim_bids_total"),
            metric(&m, "rtb_dspsim_no_bids_total") + metric(&m, "rtb_dspsim_tmax_skips_total"),
            metric(&m, "rtb_dspsim_wins_total"),
            metric(&m, "rtb_dspsim_win_value_sum"),
            metric(&m, "rtb_dspsim_failures_injected_total"),
        );
    }
    println!();
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn random_token() -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    format!(
        "demo-{:032x}",
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
}

fn main() {
    let args = Args::parse();
    let code = match run(&args) {
        Ok(0) => {
            println!(
                "Demo finished: all processes started and stopped cleanly, no unexpected failures."
            );
            0
        }
        Ok(n) => {
            println!("Demo finished with {n} problem(s); see the lines marked above.");
            1
        }
        Err(e) => {
            eprintln!("rtb-demo: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run(args: &Args) -> DemoResult<u64> {
    let (exchange_bin, dsp_bin) = binaries(args)?;
    let samples_dir = args.samples_dir.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/openrtb-samples")
    });
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("rtb-demo-{}", std::process::id())));
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
    let load_seconds = if args.smoke {
        SMOKE_LOAD_SECONDS
    } else {
        args.load_seconds
    };
    let token = random_token();
    println!("rtb demo: logs in {}\n", log_dir.display());

    let (mut exchange, exchange_addr, debug_addr) =
        start_exchange(args, &exchange_bin, &token, &log_dir)?;
    let (mut procs, fleet) = start_fleet(&dsp_bin, exchange_addr, &token, &log_dir)?;
    wait_onboarded(args, &mut exchange, exchange_addr, &fleet, &token, &log_dir)?;

    let samples = load_samples(&samples_dir);
    let mut problems = run_samples(exchange_addr, &samples, &fleet) as u64;
    problems += run_load(
        exchange_addr,
        &samples,
        load_seconds,
        args.connections,
        args.threads,
    )?;
    // Win notices are fired asynchronously by the exchange; give the last ones a moment.
    std::thread::sleep(Duration::from_millis(300));
    print_counters(debug_addr, &fleet);
    problems += stop_all(&mut procs, &mut exchange);
    println!();
    Ok(problems)
}

/// The exchange and DSP binaries (flags, or next to this one), checked to exist.
fn binaries(args: &Args) -> DemoResult<(PathBuf, PathBuf)> {
    let exchange_bin = args
        .exchange_bin
        .clone()
        .unwrap_or_else(|| sibling("rtb-exchange"));
    let dsp_bin = args.dsp_bin.clone().unwrap_or_else(|| sibling("rtb-dsp"));
    for (what, bin) in [("exchange", &exchange_bin), ("dsp", &dsp_bin)] {
        if !bin.is_file() {
            return Err(format!(
                "{what} binary not found at {} (build it first)",
                bin.display()
            ));
        }
    }
    Ok((exchange_bin, dsp_bin))
}

/// Starts the exchange on free loopback ports; returns it with its main and debug addresses.
fn start_exchange(
    args: &Args,
    exchange_bin: &Path,
    token: &str,
    log_dir: &Path,
) -> DemoResult<(Proc, SocketAddr, Option<SocketAddr>)> {
    let mut exchange_args: Vec<String> = [
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--debug-port",
        "0",
        "--dsp-ttl-s",
        "30",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(w) = args.exchange_workers {
        exchange_args.extend(["--workers".to_owned(), w.to_string()]);
    }
    let (exchange, addrs) = spawn(
        "rtb-exchange",
        exchange_bin,
        &exchange_args,
        &[("RTB_ONBOARD_TOKEN", token)],
        &["listening on ", "debug listening on "],
        log_dir,
    )?;
    let exchange_addr = addrs["listening on "];
    let debug_addr = addrs.get("debug listening on ").copied();
    println!(
        "  started {:<28} on {exchange_addr} (debug {})",
        "rtb-exchange",
        debug_addr.map_or("-".into(), |a| a.to_string())
    );

    Ok((exchange, exchange_addr, debug_addr))
}

/// Starts the simulated DSPs of [`FLEET`], each onboarding itself with `token`.
fn start_fleet(
    dsp_bin: &Path,
    exchange_addr: SocketAddr,
    token: &str,
    log_dir: &Path,
) -> DemoResult<(Vec<Proc>, Vec<FleetDsp>)> {
    let onboard_url = format!("http://{exchange_addr}/dsp");
    let mut procs = Vec::new();
    let mut fleet = Vec::new();
    for (i, (name, price, latency, bid_rate, extra)) in FLEET.iter().enumerate() {
        let mut dsp_args: Vec<String> = [
            "--dsp-name",
            name,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--onboard-endpoints",
            &onboard_url,
            "--onboard-interval-s",
            "5",
            "--price",
            price,
            "--latency",
            latency,
            "--bid-rate",
            bid_rate,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        dsp_args.extend(extra.iter().map(|s| (*s).to_owned()));
        dsp_args.extend(["--seed".to_owned(), (1000 + i).to_string()]);
        let (proc, addrs) = spawn(
            name,
            dsp_bin,
            &dsp_args,
            &[("RTB_ONBOARD_TOKEN", token)],
            &["listening on "],
            log_dir,
        )?;
        let addr = addrs["listening on "];
        println!(
            "  started {name:<28} on {addr} (price {price}, latency {latency} ms, bid rate {bid_rate})"
        );
        procs.push(proc);
        fleet.push(FleetDsp { name, addr });
    }

    Ok((procs, fleet))
}

/// Waits until the exchange lists every DSP of the fleet, or fails with what is missing.
fn wait_onboarded(
    args: &Args,
    exchange: &mut Proc,
    exchange_addr: SocketAddr,
    fleet: &[FleetDsp],
    token: &str,
    log_dir: &Path,
) -> DemoResult<()> {
    let auth = format!("Bearer {token}");
    let until = Instant::now() + Duration::from_secs(args.onboard_timeout_s);
    let onboard_started = Instant::now();
    loop {
        let listed = httpc::request(
            &url(exchange_addr, "/dsp"),
            "GET",
            &[("authorization", &auth)],
            b"",
            CALL_TIMEOUT,
        )
        .ok()
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .map(|v| {
            let mut out = Vec::new();
            names(&v, &mut out);
            out
        })
        .unwrap_or_default();
        let missing: Vec<&str> = fleet
            .iter()
            .map(|d| d.name)
            .filter(|n| !listed.iter().any(|l| l == n))
            .collect();
        if missing.is_empty() {
            println!(
                "  all {} DSPs onboarded in {} ms\n",
                fleet.len(),
                onboard_started.elapsed().as_millis()
            );
            break;
        }
        if Instant::now() >= until {
            return Err(format!(
                "DSPs not onboarded after {} s: {missing:?} (exchange lists {listed:?}); see logs in {}",
                args.onboard_timeout_s,
                log_dir.display()
            ));
        }
        if let Ok(Some(status)) = exchange.child.try_wait() {
            return Err(format!(
                "rtb-exchange exited ({status}):\n{}",
                exchange.log_tail()
            ));
        }
        std::thread::sleep(ONBOARD_POLL);
    }

    Ok(())
}

/// Stops every process with SIGTERM; the number that did not exit 0 in time.
fn stop_all(procs: &mut [Proc], exchange: &mut Proc) -> u64 {
    let mut problems = 0;
    println!("Stopping (SIGTERM)...");
    for p in procs.iter_mut() {
        p.terminate();
    }
    exchange.terminate();
    for p in procs.iter_mut().chain(std::iter::once(exchange)) {
        match p.wait_exit() {
            Some(0) => println!("  {:<28} exited 0", p.name),
            Some(code) => {
                problems += 1;
                println!(
                    "  {:<28} exited {code}   <-- unexpected (log {})",
                    p.name,
                    p.log.display()
                );
            }
            None => {
                problems += 1;
                println!(
                    "  {:<28} did not exit within {STOP_TIMEOUT:?}, killed   <-- unexpected",
                    p.name
                );
            }
        }
    }
    problems
}
