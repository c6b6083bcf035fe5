//! Per-DSP policy through the real exchange binary (issue 15): a QPS-capped `rtb-dsp` receives
//! its cap while the exchange serves ten times that rate and the other DSP gets every request;
//! `POST /dsp` takes the roster's policy fields (its own `tmax`, a bid adjustment, filters),
//! shows them back, and refuses a bad one with a 400 that names it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::*;
use test_support::prom;

/// The process-wide cap under test.
const CAP_QPS: f64 = 50.0;
/// How long the capped rate is measured, after the bucket's banked second is spent.
const WINDOW: Duration = Duration::from_secs(3);
/// Client threads, each sending one request per new connection (SO_REUSEPORT spreads the
/// connections over both workers).
const CLIENTS: usize = 8;

fn requests_at(dsp: SocketAddr) -> f64 {
    let page = request(dsp, "GET", "/metrics", &[], b"").text();
    prom::first(&page, "rtb_dspsim_requests_total").unwrap_or(0.0)
}

/// Clients sending auctions until `stop`; each answer must be 200 or 204. Returns the count
/// of answers so far.
fn drive(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Vec<thread::JoinHandle<()>>) {
    let answered = Arc::new(AtomicU64::new(0));
    let clients = (0..CLIENTS)
        .map(|c| {
            let (stop, answered) = (stop.clone(), answered.clone());
            thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = bid_request(&format!("c{c}-{n}"), 2, 200, 0.0);
                    let r = request(addr, "POST", "/openrtb2/auction", &[], &body);
                    assert!(matches!(r.status, 200 | 204), "{}", r.text());
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (answered, clients)
}

#[test]
fn a_capped_dsp_gets_its_cap_while_the_other_gets_every_request() {
    let Some(dsp_bin) = dsp_binary("dsp_policy") else {
        return;
    };
    let flags = ["--latency", "fixed:0", "--bid-rate", "1"];
    let start = |name: &str| DspProcess::start(&dsp_bin, name, 0, &flags).expect("rtb-dsp");
    let (capped, free) = (start("capped"), start("free"));
    let dir = common::ledger::temp_dir("dsp-policy");
    let path = dir.join("roster.yaml");
    let roster = format!(
        "dsps:\n  - name: capped\n    url: http://{}/bid\n    qps: {CAP_QPS}\n  \
         - name: free\n    url: http://{}/bid\n",
        capped.addr, free.addr
    );
    std::fs::write(&path, roster).unwrap();
    let ex = Exchange::start(&[
        "--roster",
        path.to_str().unwrap(),
        "--workers",
        "2",
        "--shed-lag-ms",
        "1000",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, clients) = drive(ex.addr, &stop);
    // Spend the second's worth the buckets start with, then measure.
    thread::sleep(Duration::from_millis(1500));
    let (capped_0, served_0, at_0) = (
        requests_at(capped.addr),
        answered.load(Ordering::Relaxed),
        Instant::now(),
    );
    thread::sleep(WINDOW);
    let (capped_1, served_1) = (requests_at(capped.addr), answered.load(Ordering::Relaxed));
    let elapsed = at_0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("every auction answered 200 or 204");
    }
    let capped_rate = (capped_1 - capped_0) / elapsed;
    let served_rate = (served_1 - served_0) as f64 / elapsed;
    eprintln!("capped DSP: {capped_rate:.1} requests/s (cap {CAP_QPS}), served {served_rate:.0}/s");
    assert!(
        served_rate >= 10.0 * CAP_QPS,
        "the exchange served {served_rate:.0} auctions/s, not ten times the cap"
    );
    assert!(
        (CAP_QPS * 0.9..=CAP_QPS * 1.1).contains(&capped_rate),
        "the capped DSP got {capped_rate:.1} requests/s, cap {CAP_QPS} (served {served_rate:.0}/s)"
    );
    let total = answered.load(Ordering::Relaxed) as f64;
    assert_eq!(
        requests_at(free.addr),
        total,
        "the uncapped DSP gets every request"
    );
    let page = ex.metrics();
    let skipped = prom::sample(
        &page,
        "rtb_dsp_policy_skipped_total{dsp=\"capped\",reason=\"qps\"}",
    );
    assert_eq!(skipped + requests_at(capped.addr), total, "{page}");
    let _ = std::fs::remove_dir_all(&dir);
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
    let ex = Exchange::start(&["--shed-lag-ms", "1000"]);
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
