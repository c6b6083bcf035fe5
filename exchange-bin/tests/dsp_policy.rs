//! Per-DSP policy through the real exchange binary (issue 15): a QPS-capped `rtb-dsp` receives
//! its cap while the exchange serves ten times that rate and the other DSP gets every request;
//! `POST /dsp` takes the roster's policy fields (its own `tmax`, a bid adjustment, filters),
//! shows them back, and refuses a bad one with a 400 that names it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::Write,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use test_support::http::{connect, read_response};
use test_support::prom;

/// How long the capped rate is measured, after the bucket's banked second is spent and the
/// first rebalance has run.
const WINDOW: Duration = Duration::from_secs(3);
/// Before measuring: the banked second spent, two rebalances (`--qps-rebalance-ms` 500)
/// applied.
const WARM_UP: Duration = Duration::from_millis(1500);

/// How the test's clients reach the exchange's two workers.
#[derive(Clone, Copy, Debug)]
enum Clients {
    /// Eight threads, a new connection per request: SO_REUSEPORT spreads them over both.
    NewConnections,
    /// One keep-alive connection: all the traffic on one worker.
    OneConnection,
}

impl Clients {
    /// The process-wide cap under test: ten times it is well within what the clients send
    /// (one connection sends about 500 a second to a debug build on a busy machine).
    fn cap_qps(self) -> f64 {
        match self {
            Clients::NewConnections => 50.0,
            Clients::OneConnection => 20.0,
        }
    }
}

fn requests_at(dsp: SocketAddr) -> f64 {
    let page = request(dsp, "GET", "/metrics", &[], b"").text();
    prom::first(&page, "rtb_dspsim_requests_total").unwrap_or(0.0)
}

/// One client thread: auctions until `stop`, each answer 200 or 204, counted in `answered`.
fn client(addr: SocketAddr, id: usize, clients: Clients, stop: &AtomicBool, answered: &AtomicU64) {
    let mut stream = matches!(clients, Clients::OneConnection).then(|| connect(addr));
    let mut buf = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let body = bid_request(&format!("c{id}-{n}"), 2, 200, 0.0);
        let reply = match &mut stream {
            None => request(addr, "POST", "/openrtb2/auction", &[], &body),
            Some(s) => {
                let head = format!(
                    "POST /openrtb2/auction HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                s.write_all(&[head.as_bytes(), &body].concat()).unwrap();
                read_response(s, &mut buf).expect("an answer on the kept connection")
            }
        };
        assert!(matches!(reply.status, 200 | 204), "{}", reply.text());
        answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The capped DSP's calls a second and the auctions served a second, measured over
/// [`WINDOW`] after [`WARM_UP`], with a `capped` (cap [`Clients::cap_qps`]) and a `free`
/// `rtb-dsp`;
/// checks that every auction was answered 200 or 204 and reached the free DSP, and that each
/// auction the capped DSP missed was counted as over its cap.
fn capped_and_served_rates(dsp_bin: &std::path::Path, clients: Clients) -> (f64, f64) {
    let flags = ["--latency", "fixed:0", "--bid-rate", "1"];
    let start = |name: &str| DspProcess::start(dsp_bin, name, 0, &flags).expect("rtb-dsp");
    let (capped, free) = (start("capped"), start("free"));
    // One directory per case: the cases run in parallel.
    let dir = common::ledger::temp_dir(&format!("dsp-policy-{clients:?}"));
    let path = dir.join("roster.yaml");
    let roster = format!(
        "dsps:\n  - name: capped\n    url: http://{}/bid\n    qps: {}\n  \
         - name: free\n    url: http://{}/bid\n",
        capped.addr,
        clients.cap_qps(),
        free.addr
    );
    std::fs::write(&path, roster).unwrap();
    let roster = path.to_str().unwrap();
    let ex = Exchange::start(&[
        "--roster",
        roster,
        "--qps-rebalance-ms",
        "500",
        "--shed-lag-ms",
        "1000",
        "--shed-queue-wait-ms",
        "1000",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let threads = match clients {
        Clients::NewConnections => 8,
        Clients::OneConnection => 1,
    };
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let (stop, answered, addr) = (stop.clone(), answered.clone(), ex.addr);
            thread::spawn(move || client(addr, id, clients, &stop, &answered))
        })
        .collect();
    thread::sleep(WARM_UP);
    let capped_0 = requests_at(capped.addr);
    let (served_0, at_0) = (answered.load(Ordering::Relaxed), Instant::now());
    thread::sleep(WINDOW);
    let (capped_1, served_1) = (requests_at(capped.addr), answered.load(Ordering::Relaxed));
    let elapsed = at_0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("every auction answered 200 or 204");
    }
    let total = answered.load(Ordering::Relaxed) as f64;
    assert_eq!(
        requests_at(free.addr),
        total,
        "the uncapped DSP gets every request"
    );
    let page = ex.metrics();
    let over_cap = r#"rtb_dsp_policy_skipped_total{dsp="capped",reason="qps"}"#;
    let skipped = prom::sample(&page, over_cap);
    assert_eq!(skipped + requests_at(capped.addr), total, "{page}");
    let _ = std::fs::remove_dir_all(&dir);
    let rates = (
        (capped_1 - capped_0) / elapsed,
        (served_1 - served_0) as f64 / elapsed,
    );
    eprintln!(
        "{clients:?}: capped DSP {:.1} calls/s (cap {}), served {:.0}/s",
        rates.0,
        clients.cap_qps(),
        rates.1
    );
    rates
}

/// The capped rate within 10% of the cap, while the exchange served ten times the cap.
fn assert_cap_held(clients: Clients) {
    let Some(dsp_bin) = dsp_binary("dsp_policy") else {
        return;
    };
    let (capped, served) = capped_and_served_rates(&dsp_bin, clients);
    let cap = clients.cap_qps();
    assert!(
        served >= 10.0 * cap,
        "{clients:?}: the exchange served {served:.0} auctions/s, not ten times the cap"
    );
    assert!(
        (cap * 0.9..=cap * 1.1).contains(&capped),
        "{clients:?}: the capped DSP got {capped:.1} calls/s, cap {cap} (served {served:.0}/s)"
    );
}

#[test]
fn a_capped_dsp_gets_its_cap_while_the_other_gets_every_request() {
    assert_cap_held(Clients::NewConnections);
}

#[test]
fn the_cap_follows_the_traffic_to_the_worker_that_has_it() {
    // Without the rebalance, the worker with all the traffic would hold half the cap.
    assert_cap_held(Clients::OneConnection);
}

#[test]
fn post_dsp_takes_the_policy_fields_and_the_auction_applies_them() {
    let adjusted = FakeDsp::start(Behaviour::Bid {
        price: 5.0,
        seat: "adjusted",
        delay: Duration::ZERO,
        nurl: true,
    });
    let plain = FakeDsp::start(Behaviour::bid(2.0, "plain"));
    // A loaded test machine must not shed the one auction that matters.
    let ex = Exchange::start(&["--shed-lag-ms", "1000", "--shed-queue-wait-ms", "1000"]);
    let body = format!(
        r#"{{"name":"adjusted","base_url":"http://{}","bid_path":"/bid","tmax_ms":30,
            "bid_adjustment":0.5,"media":["banner"],"countries":["CAN","USA"]}}"#,
        adjusted.addr
    );
    let r = request(ex.addr, "POST", "/dsp", &[], body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let shown = r.json();
    assert_eq!(shown["tmax_ms"], 30);
    assert_eq!(shown["bid_adjustment"], 0.5);
    assert_eq!(shown["media"], serde_json::json!(["banner"]));
    assert!(
        shown.get("channels").is_none(),
        "defaults are left out: {shown}"
    );
    assert_eq!(ex.onboard("plain", plain.addr).status, 201);
    let listed = request(ex.addr, "GET", "/dsp", &[], b"").json();
    let entry = &listed["dsps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "adjusted");
    assert_eq!(
        entry.unwrap()["countries"],
        serde_json::json!(["CAN", "USA"])
    );

    // 5.0 x 0.5 = 2.5 beats 2.0: second price 2.01 in adjusted terms, 4.02 in the DSP's own.
    let request_body = br#"{"id":"adj-1","at":2,"tmax":200,"imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"id":"s"},"device":{"geo":{"country":"CAN"}}}"#;
    let r = ex.auction(request_body);
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["seatbid"][0]["seat"], "adjusted", "{answer}");
    assert_eq!(answer["seatbid"][0]["bid"][0]["price"], 2.01, "{answer}");
    eventually(Duration::from_secs(5), || !adjusted.wins().is_empty());
    let notice = &adjusted.wins()[0].path;
    assert!(notice.contains("price=4.02"), "{notice}");
    // Its own tmax went to it; the other DSP got the auction's.
    let tmax_of = |dsp: &FakeDsp| dsp.bid_requests()[0].json()["tmax"].as_u64().unwrap();
    assert_eq!(tmax_of(&adjusted), 30);
    assert!(tmax_of(&plain) > 30, "{}", tmax_of(&plain));

    // A video request, or one from elsewhere, is not sent to it.
    let video = br#"{"id":"v","tmax":200,"imp":[{"id":"1","video":{"mimes":["video/mp4"]}}],"site":{"id":"s"},"device":{"geo":{"country":"CAN"}}}"#;
    let mexico = br#"{"id":"m","tmax":200,"imp":[{"id":"1","banner":{}}],"site":{"id":"s"},"device":{"geo":{"country":"MEX"}}}"#;
    for body in [&video[..], &mexico[..]] {
        assert!(matches!(ex.auction(body).status, 200 | 204));
    }
    assert_eq!(adjusted.bid_requests().len(), 1);
    assert_eq!(plain.bid_requests().len(), 3);
}

#[test]
fn post_dsp_refuses_a_bad_policy_field_by_name() {
    let ex = Exchange::start(&[]);
    let dsp = FakeDsp::start(Behaviour::NoBid);
    for (field, value) in [
        ("media", r#"["vidoe"]"#),
        ("qps", "0"),
        ("bid_adjustment", "-1"),
        ("countries", r#"["ca"]"#),
        ("channels", "[]"),
    ] {
        let body = format!(
            r#"{{"name":"bad","base_url":"http://{}","{field}":{value}}}"#,
            dsp.addr
        );
        let r = request(ex.addr, "POST", "/dsp", &[], body.as_bytes());
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{}", r.text());
    }
    let r = request(ex.addr, "GET", "/dsp", &[], b"").json();
    assert_eq!(
        r["dsps"].as_array().unwrap().len(),
        0,
        "nothing was onboarded"
    );
    assert_eq!(request(ex.addr, "GET", "/healthz", &[], b"").status, 200);
}
