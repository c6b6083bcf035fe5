//! Runs the real `rtb-dsp` binary on port 0 and talks HTTP to it: bids on a sample request,
//! no-bids, 400s, tmax, win notices, a reset, onboarding retries against a fake exchange, and a
//! clean exit on SIGTERM. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dsp_bin::httpc::{self, HttpResponse, HttpUrl};
use rtb_core::{BidRequest, BidResponse, Decoder, Document};
use test_support::{ci, http::read_request, process::Process, prom};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

struct Dsp {
    process: Process,
    port: u16,
}

impl Dsp {
    fn start(args: &[&str]) -> Dsp {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtb-dsp"));
        cmd.args(["--port", "0", "--bind", "127.0.0.1", "--seed", "42"])
            .args(args)
            .stderr(Stdio::null());
        let (process, addrs) = Process::start(cmd, "rtb-dsp", &["listening on "]).unwrap();
        let port = addrs[0].rsplit_once(':').unwrap().1.parse().unwrap();
        Dsp { process, port }
    }

    fn url(&self, path: &str) -> HttpUrl {
        HttpUrl::parse(&format!("http://127.0.0.1:{}{path}", self.port)).unwrap()
    }

    fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        httpc::request(&self.url(path), "POST", &[], body, CALL_TIMEOUT).unwrap()
    }

    fn get(&self, path: &str) -> HttpResponse {
        httpc::request(&self.url(path), "GET", &[], b"", CALL_TIMEOUT).unwrap()
    }

    /// SIGTERM, then the exit code (bounded wait).
    fn stop(mut self) -> Option<i32> {
        self.process.terminate(STOP_TIMEOUT)?.code()
    }
}

/// One shared OpenRTB sample; `None` (a failure under CI) when the samples are absent.
fn sample(test: &str, name: &str) -> Option<Vec<u8>> {
    let dir = ci::samples_or_skip(test)?;
    Some(std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn metric(text: &str, prefix: &str) -> f64 {
    prom::first(text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

const SIMPLE: &[u8] = br#"{"id":"req-7","tmax":200,"cur":["EUR"],
    "imp":[{"id":"a","banner":{"w":300,"h":250},"bidfloor":1.5,"bidfloorcur":"EUR"},
           {"id":"b","video":{"mimes":["video/mp4"]},"bidfloor":4.0,"bidfloorcur":"EUR"}]}"#;

#[test]
fn bids_on_the_sample_request_above_floor() {
    let Some(raw) = sample(
        "bids_on_the_sample_request_above_floor",
        "01-iab26-req-simple-banner.json",
    ) else {
        return;
    };
    let dsp = Dsp::start(&["--dsp-name", "braid", "--price", "uniform:0.01,3"]);
    let (mut decoder, mut req_doc, mut resp_doc) =
        (Decoder::new(), Document::default(), Document::default());
    let request = BidRequest::decode(&raw, &mut req_doc, &mut decoder).unwrap();
    for _ in 0..20 {
        let r = dsp.post("/bid", &raw);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let resp = BidResponse::decode(&r.body, &mut resp_doc, &mut decoder).unwrap();
        assert_eq!(resp.id, request.id);
        assert_eq!(resp.bids.len(), request.imps.len());
        for bid in &resp.bids {
            let imp = &request.imps[request.imp_index(bid.impid).unwrap()];
            assert!(
                bid.price >= imp.bidfloor + 0.01 - 1e-9,
                "{} < {}",
                bid.price,
                imp.bidfloor
            );
            assert_eq!(bid.seat, Some("braid"));
            assert_eq!(resp.adomain(bid).collect::<Vec<_>>(), ["braid.example"]);
            assert!(bid
                .nurl
                .unwrap()
                .contains(&format!(":{}/win?price=${{AUCTION_PRICE}}", dsp.port)));
        }
        drop(resp);
    }
    assert_eq!(dsp.stop(), Some(0));
}

#[test]
fn bids_every_imp_in_the_auction_currency_with_unique_ids() {
    let dsp = Dsp::start(&[
        "--dsp-name",
        "the-witness",
        "--seat",
        "w1",
        "--price",
        "fixed:2",
    ]);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..3 {
        let r = dsp.post("/bid", SIMPLE);
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], "req-7");
        assert_eq!(v["cur"], "EUR");
        assert_eq!(v["seatbid"][0]["seat"], "w1");
        let bids = v["seatbid"][0]["bid"].as_array().unwrap();
        assert_eq!(bids[0]["price"], 2.0);
        assert_eq!(bids[1]["price"], 4.01, "raised to floor + 0.01");
        assert!(bids[1]["adm"].as_str().unwrap().starts_with("<VAST"));
        for b in bids {
            assert!(
                ids.insert(b["id"].as_str().unwrap().to_owned()),
                "duplicate bid id"
            );
        }
    }
}

/// The original fleet's scripts spell long flags with one dash (Go's `flag` package).
#[test]
fn accepts_go_style_single_dash_flags() {
    let dsp = Dsp::start(&[
        "-dsp-name",
        "go-style",
        "-base-url=http://go.example:5000",
        "-price",
        "fixed:2",
    ]);
    let r = dsp.post("/bid", SIMPLE);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let bid = &v["seatbid"][0]["bid"][0];
    assert_eq!(v["seatbid"][0]["seat"], "go-style", "{v}");
    let nurl = bid["nurl"].as_str().unwrap();
    assert!(nurl.starts_with("http://go.example:5000/win"), "{nurl}");
    assert_eq!(bid["price"], 2.0, "{v}");
    assert_eq!(dsp.stop(), Some(0));
}

#[test]
fn no_bid_invalid_and_unknown_paths() {
    let dsp = Dsp::start(&["--bid-rate", "0", "--bid-path", "/openrtb"]);
    assert_eq!(dsp.post("/bid", SIMPLE).status, 204);
    assert_eq!(dsp.post("/openrtb", SIMPLE).status, 204);
    let bad = dsp.post("/bid", b"{\"id\":");
    assert_eq!(bad.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&bad.body).unwrap();
    assert!(v["error"].is_string());
    let missing_imp = dsp.post("/bid", br#"{"id":"x"}"#);
    assert_eq!(missing_imp.status, 400);
    assert_eq!(dsp.post("/nope", SIMPLE).status, 404);
    assert_eq!(dsp.get("/healthz").status, 200);
    let m = String::from_utf8(dsp.get("/metrics").body).unwrap();
    assert_eq!(metric(&m, "rtb_dspsim_requests_total"), 4.0);
    assert_eq!(metric(&m, "rtb_dspsim_no_bids_total"), 2.0);
    assert_eq!(metric(&m, "rtb_dspsim_invalid_requests_total"), 2.0);
}

#[test]
fn honours_tmax() {
    let dsp = Dsp::start(&["--latency", "fixed:50"]);
    let short = br#"{"id":"t","tmax":20,"imp":[{"id":"1","banner":{}}]}"#;
    let started = Instant::now();
    assert_eq!(dsp.post("/bid", short).status, 204);
    assert!(
        started.elapsed() < Duration::from_millis(40),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(dsp.post("/bid", SIMPLE).status, 200, "tmax 200 leaves time");
    assert!(started.elapsed() >= Duration::from_millis(50));
    let m = String::from_utf8(dsp.get("/metrics").body).unwrap();
    assert_eq!(metric(&m, "rtb_dspsim_tmax_skips_total"), 1.0);

    let rude = Dsp::start(&["--latency", "fixed:50", "--ignore-tmax"]);
    let started = Instant::now();
    assert_eq!(rude.post("/bid", short).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[test]
fn counts_wins() {
    let dsp = Dsp::start(&[]);
    assert_eq!(dsp.get("/win?price=1.25&imp=1&auction=a").status, 200);
    assert_eq!(dsp.get("/win?imp=2&price=0.5&auction=b").status, 200);
    assert_eq!(dsp.get("/win?price=${AUCTION_PRICE}").status, 400);
    let m = String::from_utf8(dsp.get("/metrics").body).unwrap();
    assert_eq!(metric(&m, "rtb_dspsim_wins_total"), 2.0);
    assert_eq!(metric(&m, "rtb_dspsim_win_value_sum"), 1.75);
    assert_eq!(metric(&m, "rtb_dspsim_bad_win_notices_total"), 1.0);
}

#[test]
fn injects_failures() {
    let reset = Dsp::start(&["--reset-rate", "1"]);
    let mut s = TcpStream::connect(("127.0.0.1", reset.port)).unwrap();
    s.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    write!(
        s,
        "POST /bid HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        SIMPLE.len()
    )
    .unwrap();
    s.write_all(SIMPLE).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "reset answered {:?}",
        String::from_utf8_lossy(&got)
    );

    let e500 = Dsp::start(&["--error500-rate", "1"]);
    assert_eq!(e500.post("/bid", SIMPLE).status, 500);

    let malformed = Dsp::start(&["--malformed-rate", "1"]);
    let r = malformed.post("/bid", SIMPLE);
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());

    let hang = Dsp::start(&["--hang-rate", "1"]);
    let err = httpc::request(
        &hang.url("/bid"),
        "POST",
        &[],
        SIMPLE,
        Duration::from_millis(300),
    );
    assert!(err.is_err(), "a hanging DSP answered");
    let m = String::from_utf8(hang.get("/metrics").body).unwrap();
    assert_eq!(
        metric(
            &m,
            "rtb_dspsim_failures_injected_total{dsp=\"dsp\",kind=\"hang\"}"
        ),
        1.0
    );
    let started = Instant::now();
    assert_eq!(hang.stop(), Some(0), "exits cleanly with a request hanging");
    assert!(started.elapsed() < Duration::from_secs(5));

    assert!(
        Command::new(env!("CARGO_BIN_EXE_rtb-dsp"))
            .args(["--hang-rate", "0.6", "--reset-rate", "0.6", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .code()
            == Some(2),
        "failure rates over 1 are refused"
    );
}

#[test]
fn onboards_with_retries_and_token() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port();
    let dsp = Dsp::start(&[
        "--dsp-name",
        "order-of-the-sinking-star",
        "--onboard-endpoints",
        &format!("http://127.0.0.1:{port}/dsp"),
        "--onboard-token",
        "s3cret",
        "--onboard-interval-s",
        "1",
    ]);
    fake.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    // Refuse the first two attempts, accept the third, then expect a refresh about 1 s later.
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "only {} onboarding calls",
            seen.len()
        );
        let (mut s, _) = match fake.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        let req = read_request(&mut s, &mut Vec::new()).expect("client closed early");
        let answer: &[u8] = if seen.len() < 2 {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        };
        s.write_all(answer).unwrap();
        seen.push((Instant::now(), req));
    }
    for (_, req) in &seen {
        let line = (req.method.as_str(), req.path.as_str(), req.version);
        assert_eq!(line, ("POST", "/dsp", 1), "{req:?}");
        assert_eq!(
            req.header("authorization"),
            Some("Bearer s3cret"),
            "{req:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["name"], "order-of-the-sinking-star");
        assert_eq!(v["base_url"], format!("http://127.0.0.1:{}", dsp.port));
        assert_eq!(v["bid_path"], "/bid");
    }
    let retry_gap = seen[1].0 - seen[0].0;
    let refresh_gap = seen[3].0 - seen[2].0;
    assert!(
        retry_gap < Duration::from_millis(600),
        "retry after {retry_gap:?}"
    );
    assert!(
        refresh_gap >= Duration::from_millis(900),
        "refresh after {refresh_gap:?}"
    );
    assert_eq!(dsp.stop(), Some(0));
}
