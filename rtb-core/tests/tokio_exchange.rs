//! End to end, the tokio example exchange (`examples/tokio_exchange.rs`) as a real process with
//! real `rtb-dsp` processes on loopback: 404 before any DSP, onboarding, an IAB sample request
//! auctioned (winner, price, win notice and the loser's loss notice checked against the DSPs'
//! fixed bids), the deadline against a DSP that never answers, 204 when every bid is blocked
//! (the blocked bid's loss notice says 205) and when no DSP bids, the OpenRTB version stated
//! back, and 400 for bad requests (an unknown `x-openrtb-version` among them).
//!
//! `cargo test` builds the example next to this test; `rtb-dsp` is built by
//! `cargo test --workspace` (or given by `RTB_DSP_BIN`). Without it or the samples the test says
//! SKIP and returns, except under `CI=true`, where that is a failure (test-support's rule). Every
//! wait is bounded and every process is killed when the test ends, also when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::disallowed_methods)] // Real processes, real time: the ban is for the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::http::{self, Reply, IO_TIMEOUT};
use test_support::{ci, process::Process, prom};

const TEST: &str = "tokio example end to end";
/// The exchange's deadline cap (rtb-core's default, 80 ms; the sample has no `tmax`): with a
/// DSP that never answers, the answer comes when the engine stops waiting, a few ms before it.
const DEADLINE_CAP_SECONDS: f64 = 0.080;
/// What a debug build on a busy 2-core machine may add to the cap between the client's write
/// and its read (the hanging DSP would hold an auction that ignored the deadline 120 s).
const SCHEDULING_ALLOWANCE_SECONDS: f64 = 0.250;

/// A process under test and where it listens.
struct Peer {
    process: Process,
    addr: SocketAddr,
}

impl Peer {
    /// Starts `cmd` and waits for its `listening on ADDR` line.
    fn start(mut cmd: Command, name: &str) -> Peer {
        cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit());
        let (process, addrs) = Process::start(cmd, name, &["listening on "]).unwrap();
        let addr = addrs[0].parse().unwrap();
        Peer { process, addr }
    }

    /// An `rtb-dsp` on a free loopback port, not onboarding itself, with `extra` flags.
    fn dsp(bin: &Path, name: &str, extra: &[&str]) -> Peer {
        let mut cmd = Command::new(bin);
        cmd.args(["--dsp-name", name, "--bind", "127.0.0.1", "--port", "0"])
            .args(["--io-driver", "epoll"])
            .args(extra)
            .env_remove("RTB_DSP_ONBOARD_ENDPOINTS");
        Peer::start(cmd, name)
    }

    fn name(&self) -> &str {
        &self.process.name
    }
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    http::request(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body,
    )
}

/// A counter on an `rtb-dsp`'s `/metrics` page (`rtb_dspsim_<counter>{dsp="<name>"}`).
fn counter(dsp: &Peer, counter: &str) -> f64 {
    let page = http::request(dsp.addr, "GET", "/metrics", &[], b"").text();
    prom::dsp_sample(&page, &format!("rtb_dspsim_{counter}"), dsp.name())
}

/// The example and `rtb-dsp` binaries and the IAB sample; `None` (a failure under CI) when one
/// is missing.
fn prerequisites() -> Option<(PathBuf, PathBuf, Vec<u8>)> {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/tokio_exchange
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()?
        .parent()?
        .join("examples")
        .join("tokio_exchange");
    if !example.is_file() {
        let why = format!("{} is absent (cargo test builds it)", example.display());
        return ci::missing(TEST, &why);
    }
    assert_fresh(&example);
    let dsp = ci::workspace_binary(TEST, "rtb-dsp", "RTB_DSP_BIN")?;
    let sample = ci::samples_or_skip(TEST)?.join("01-iab26-req-simple-banner.json");
    Some((example, dsp, std::fs::read(sample).unwrap()))
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
    exchange: Peer,
    high: Peer,
    low: Peer,
    silent: Peer,
    hangs: Peer,
}

impl Fleet {
    fn start(exchange: &Path, dsp: &Path) -> Fleet {
        let mut example = Command::new(exchange);
        example.arg("127.0.0.1:0");
        Fleet {
            exchange: Peer::start(example, "exchange"),
            high: Peer::dsp(dsp, "high", &["--price", "fixed:2.5"]),
            low: Peer::dsp(dsp, "low", &["--price", "fixed:1.0", "--lurl"]),
            silent: Peer::dsp(dsp, "silent", &["--bid-rate", "0"]),
            hangs: Peer::dsp(dsp, "hangs", &["--hang-rate", "1"]),
        }
    }

    fn post(&self, path: &str, body: &[u8]) -> Reply {
        post(self.exchange.addr, path, body)
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
    let Some((exchange, dsp, sample)) = prerequisites() else {
        return;
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
        let r = fleet.onboard(dsp.name(), &format!("http://{}", dsp.addr));
        assert_eq!(r.status, 201, "{}", r.text());
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
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-openrtb-version"),
        Some("2.6"),
        "{:?}",
        r.headers
    );
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
            dsp.name()
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

/// Loss notices an `rtb-dsp` received with loss reason `reason`.
fn losses(dsp: &Peer, reason: u16) -> f64 {
    let page = http::request(dsp.addr, "GET", "/metrics", &[], b"").text();
    let series = format!(
        "rtb_dspsim_loss_notices_total{{dsp=\"{}\",reason=\"{reason}\"}}",
        dsp.name()
    );
    prom::sample(&page, &series)
}

/// Waits (bounded) until `done`.
fn wait_for(done: impl Fn() -> bool) {
    let give_up = Instant::now() + IO_TIMEOUT;
    while !done() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The winner's notice arrives, off the auction's path, with the clearing price; the loser's
/// loss notice says 102 (lost to a higher bid).
fn win_notice(fleet: &Fleet, price: f64) {
    wait_for(|| counter(&fleet.high, "wins_total") >= 1.0 && losses(&fleet.low, 102) >= 1.0);
    assert_eq!(counter(&fleet.high, "wins_total"), 1.0);
    assert_eq!(counter(&fleet.high, "win_value_sum"), price);
    assert_eq!(counter(&fleet.low, "wins_total"), 0.0);
    assert_eq!(losses(&fleet.low, 102), 1.0);
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
    wait_for(|| losses(&fleet.low, 205) >= 1.0);
    assert_eq!(losses(&fleet.low, 205), 1.0, "advertiser blocked");
    let headers = [("x-openrtb-version", "2.5")];
    let path = "/openrtb2/auction";
    let r = http::request(
        fleet.exchange.addr,
        "POST",
        path,
        &headers,
        b"{\"id\":\"x\"}",
    );
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("imp")));
    let headers = [("x-openrtb-version", "3.0")];
    let r = http::request(fleet.exchange.addr, "POST", path, &headers, b"{}");
    let field = r.json()["field"].as_str().map(str::to_owned);
    assert_eq!(
        (r.status, field.as_deref()),
        (400, Some("x-openrtb-version"))
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
        assert_eq!(r.status, 200, "{name} moved: {}", r.text());
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
