//! End to end, the tokio example exchange (`examples/tokio_exchange.rs`) as a real process with
//! real `rtb-dsp` processes on loopback: 404 before any DSP, onboarding, an IAB sample request
//! auctioned (winner, price and win notice checked against the DSPs' fixed bids), the deadline
//! against a DSP that never answers, 204 when every bid is blocked, and 400 for bad requests.
//!
//! `cargo test` builds the example next to this test; `rtb-dsp` is built by
//! `cargo test --workspace` (or given by `RTB_DSP_BIN`). Without it or the samples the test says
//! SKIP and returns, except under `CI=true`, where that is a failure. Every wait is bounded and
//! every process is killed when the test ends, also when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::disallowed_methods)] // Real processes, real time: the ban is for the library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::{sync::mpsc, thread};

use serde_json::{json, Value};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The exchange's deadline cap (rtb-core's default, 80 ms; the sample has no `tmax`): with a
/// DSP that never answers, the answer comes when the engine stops waiting, a few ms before it.
const DEADLINE_CAP_SECONDS: f64 = 0.080;
/// What a debug build on a busy 2-core machine may add to the cap between the client's write
/// and its read (the hanging DSP would hold an auction that ignored the deadline 120 s).
const SCHEDULING_ALLOWANCE_SECONDS: f64 = 0.250;

/// A child process that is killed and reaped when dropped.
struct Process {
    child: Child,
    name: String,
    addr: SocketAddr,
}

impl Process {
    /// Starts `bin` and waits for its `listening on ADDR` line.
    fn start(bin: &Path, name: &str, args: &[&str]) -> Process {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("RTB_DSP_ONBOARD_ENDPOINTS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => Process {
                child,
                name: name.to_string(),
                addr,
            },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} printed no address: {other:?}", bin.display())
            }
        }
    }

    /// An `rtb-dsp` on a free loopback port, with `extra` flags.
    fn dsp(bin: &Path, name: &str, extra: &[&str]) -> Process {
        let mut args = vec!["--dsp-name", name, "--bind", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(&["--io-driver", "epoll"]);
        args.extend_from_slice(extra);
        Process::start(bin, name, &args)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on its own connection (`connection: close`), bounded by [`IO_TIMEOUT`].
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    Reply {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

/// A counter on an `rtb-dsp`'s `/metrics` page (`rtb_dspsim_<counter>{dsp="<name>"}`).
fn counter(dsp: &Process, counter: &str) -> f64 {
    let series = format!("rtb_dspsim_{counter}{{dsp=\"{}\"}} ", dsp.name);
    let page = http(dsp.addr, "GET", "/metrics", b"");
    let page = String::from_utf8_lossy(&page.body).into_owned();
    page.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

/// What the test needs from outside the crate, or why it cannot run.
fn prerequisites() -> Result<(PathBuf, PathBuf, Vec<u8>), String> {
    // target/<profile>/deps/<this test> -> target/<profile>/{examples/tokio_exchange, rtb-dsp}
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let exchange = profile_dir.join("examples").join("tokio_exchange");
    let dsp =
        std::env::var_os("RTB_DSP_BIN").map_or_else(|| profile_dir.join("rtb-dsp"), PathBuf::from);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-samples/01-iab26-req-simple-banner.json");
    for (path, built_by) in [(&exchange, "cargo test"), (&dsp, "cargo test --workspace")] {
        if !path.is_file() {
            return Err(format!(
                "{} is absent ({built_by} builds it)",
                path.display()
            ));
        }
    }
    let sample = std::fs::read(&sample).map_err(|e| format!("{}: {e}", sample.display()))?;
    assert_fresh(&exchange);
    Ok((exchange, dsp, sample))
}

/// `cargo test -p rtb-core --test tokio_exchange` builds this test but not the example: fail
/// rather than test an example binary older than its code.
fn assert_fresh(example: &Path) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = modified(example);
    let mut dirs = vec![crate_dir.join("src"), crate_dir.join("examples")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                assert!(
                    modified(&path) <= built,
                    "{} is older than {}: `cargo build -p rtb-core --example tokio_exchange` \
                     (or `cargo test -p rtb-core` without --test) rebuilds it",
                    example.display(),
                    path.display()
                );
            }
        }
    }
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap()
}

/// The example exchange and four DSPs, each named after what it does; `high` and `low` bid a
/// fixed price (above any floor) under a seat and an adomain (`<name>.example`) of their name.
struct Fleet {
    exchange: Process,
    high: Process,
    low: Process,
    silent: Process,
    hangs: Process,
}

impl Fleet {
    fn start(exchange: &Path, dsp: &Path) -> Fleet {
        Fleet {
            exchange: Process::start(exchange, "exchange", &["127.0.0.1:0"]),
            high: Process::dsp(dsp, "high", &["--price", "fixed:2.5"]),
            low: Process::dsp(dsp, "low", &["--price", "fixed:1.0"]),
            silent: Process::dsp(dsp, "silent", &["--bid-rate", "0"]),
            hangs: Process::dsp(dsp, "hangs", &["--hang-rate", "1"]),
        }
    }

    fn post(&self, path: &str, body: &[u8]) -> Reply {
        http(self.exchange.addr, "POST", path, body)
    }

    fn onboard(&self, name: &str, base_url: &str) -> Reply {
        self.post(
            "/dsp",
            json!({ "name": name, "base_url": base_url })
                .to_string()
                .as_bytes(),
        )
    }
}

#[test]
fn tokio_example_onboards_real_dsps_and_runs_the_auction() {
    let (exchange, dsp, sample) = match prerequisites() {
        Ok(found) => found,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("under CI: {why}"),
        Err(why) => return eprintln!("SKIP tokio example end to end: {why}"),
    };
    let fleet = Fleet::start(&exchange, &dsp);
    let r = fleet.post("/openrtb2/auction", &sample);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no DSP registered");
    onboarding(&fleet);
    let request: Value = serde_json::from_slice(&sample).unwrap();
    let price = winner(&fleet, &request, &sample);
    win_notice(&fleet, price);
    no_bid_and_invalid(&fleet, request);
    nobody_bids(&fleet, &sample);
}

fn onboarding(fleet: &Fleet) {
    for dsp in [&fleet.high, &fleet.low, &fleet.silent, &fleet.hangs] {
        let r = fleet.onboard(&dsp.name, &format!("http://{}", dsp.addr));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let again = fleet.onboard("high", &format!("http://{}", fleet.high.addr));
    assert_eq!(again.status, 200, "the same DSP again is a refresh");
    let r = fleet.onboard("evil", "http://169.254.169.254/");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("link-local"));
}

/// An IAB sample auctioned: `high` wins at the price the sample's auction type gives (first
/// price pays the bid, second price the second bid + 0.01), within the deadline although one
/// DSP never answers. Returns that price.
fn winner(fleet: &Fleet, request: &Value, sample: &[u8]) -> f64 {
    let expected = if request["at"] == 1 { 2.5 } else { 1.01 };
    let r = auction_within_deadline(fleet, sample);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.head.contains("\r\nx-openrtb-version: 2.6"), "{}", r.head);
    let answer = r.json();
    assert_eq!(answer["id"], request["id"]);
    let seatbids = answer["seatbid"].as_array().unwrap();
    assert_eq!(seatbids.len(), 1, "{answer}");
    let bid = &seatbids[0]["bid"][0];
    assert_eq!(seatbids[0]["seat"], "high");
    assert_eq!(bid["impid"], request["imp"][0]["id"]);
    assert_eq!(bid["price"].as_f64(), Some(expected));
    assert!(
        bid.get("nurl").is_none(),
        "the exchange fires the nurl itself"
    );
    for dsp in [&fleet.silent, &fleet.high, &fleet.low] {
        assert_eq!(
            counter(dsp, "requests_total"),
            1.0,
            "{} called once",
            dsp.name
        );
    }
    expected
}

/// An auction with the hanging DSP in the fleet: it waits for the engine's deadline (the
/// hanging DSP's call ends there, not earlier), and answers by the cap.
fn auction_within_deadline(fleet: &Fleet, body: &[u8]) -> Reply {
    let hung = counter(&fleet.hangs, "requests_total");
    let started = Instant::now();
    let r = fleet.post("/openrtb2/auction", body);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        counter(&fleet.hangs, "requests_total"),
        hung + 1.0,
        "the hanging DSP was called"
    );
    assert!(
        took >= DEADLINE_CAP_SECONDS / 2.0,
        "answered in {took} s: before the deadline although one DSP never answered"
    );
    assert!(
        took < DEADLINE_CAP_SECONDS + SCHEDULING_ALLOWANCE_SECONDS,
        "answered in {took} s: the deadline cap is {DEADLINE_CAP_SECONDS} s"
    );
    r
}

/// The winner's notice arrives, off the auction's path, with the clearing price.
fn win_notice(fleet: &Fleet, price: f64) {
    let give_up = Instant::now() + IO_TIMEOUT;
    while counter(&fleet.high, "wins_total") < 1.0 && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counter(&fleet.high, "wins_total"), 1.0);
    assert_eq!(counter(&fleet.high, "win_value_sum"), price);
    assert_eq!(counter(&fleet.low, "wins_total"), 0.0);
}

/// 204 when every bid is blocked (by advertiser domain); 400 with the engine's JSON error.
fn no_bid_and_invalid(fleet: &Fleet, mut request: Value) {
    request["badv"] = json!(["high.example", "low.example"]);
    let r = auction_within_deadline(fleet, request.to_string().as_bytes());
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(
        counter(&fleet.low, "bids_total"),
        2.0,
        "low bid, and was blocked"
    );
    let r = fleet.post("/openrtb2/auction", br#"{"id":"no-imps"}"#);
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("imp")));
    let r = fleet.post("/openrtb2/auction", b"{not json");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["rule"], "malformed JSON");
}

/// 204 when no DSP bids: `high` and `low` onboarded again at `silent`'s address (a replaced
/// URL, 200), so all three bidding slots call the DSP that never bids.
fn nobody_bids(fleet: &Fleet, sample: &[u8]) {
    let silent = format!("http://{}", fleet.silent.addr);
    for name in ["high", "low"] {
        let r = fleet.onboard(name, &silent);
        assert_eq!(
            r.status,
            200,
            "{name} moved: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let (silent_before, high_before) = (
        counter(&fleet.silent, "requests_total"),
        counter(&fleet.high, "requests_total"),
    );
    let r = auction_within_deadline(fleet, sample);
    assert_eq!((r.status, r.body.len()), (204, 0));
    assert_eq!(
        counter(&fleet.silent, "requests_total"),
        silent_before + 3.0
    );
    assert_eq!(counter(&fleet.high, "requests_total"), high_before);
}
