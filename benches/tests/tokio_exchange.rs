//! The tokio-exchange baseline does what rtb-load compares it on: 404 without DSPs (after
//! decoding), onboarding, a fan-out whose answer is a second-price auction, 204 when nobody
//! bids in time, removal. The shared test-support fake DSP stands in for rtb-dsp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, process::Command, time::Duration};

use test_support::{
    dsp::{Behaviour, FakeDsp},
    http,
    process::Process,
};

fn start_exchange() -> (Process, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokio-exchange"));
    cmd.args(["--port", "0"]);
    let (process, addrs) = Process::start(cmd, "tokio-exchange", &["listening on "]).unwrap();
    (process, addrs[0].parse().unwrap())
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let headers = [("content-type", "application/json")];
    let r = http::request(addr, method, path, &headers, body.as_bytes());
    (r.status, r.text())
}

/// A DSP answering every bid request with one bid of `price` on the first impression.
fn fake_dsp(price: f64) -> FakeDsp {
    FakeDsp::start(Behaviour::bid(price, "s"))
}

/// Every bid request `dsp` received asked for a tmax within the exchange's 80 ms deadline.
fn assert_tmax_capped(dsp: &FakeDsp) {
    let seen = dsp.bid_requests();
    assert!(!seen.is_empty());
    for r in seen {
        let tmax = r.json()["tmax"].as_u64().unwrap();
        assert!(tmax <= 80, "tmax {tmax} not capped by the deadline");
    }
}

const REQUEST: &str = r#"{"id":"r1","tmax":120,"cur":["USD"],"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5}],"site":{"id":"s"}}"#;

#[test]
fn routes_auction_and_deadline() {
    let (_exchange, addr) = start_exchange();
    assert_eq!(request(addr, "POST", "/openrtb2/auction", REQUEST).0, 404);
    assert_eq!(
        request(addr, "POST", "/openrtb2/auction", "{\"id\":").0,
        400
    );

    let a = fake_dsp(2.0);
    let b = fake_dsp(1.5);
    for (name, dsp) in [("a", &a), ("b", &b)] {
        let body = format!(
            "{{\"name\":\"{name}\",\"base_url\":\"http://{}\"}}",
            dsp.addr
        );
        assert_eq!(request(addr, "POST", "/dsp", &body).0, 201);
    }
    let (status, body) = request(addr, "POST", "/openrtb2/auction", REQUEST);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], "r1");
    let price = answer["seatbid"][0]["bid"][0]["price"].as_f64().unwrap();
    assert!(
        (price - 1.51).abs() < 1e-9,
        "second price + 0.01, got {price}"
    );
    assert_tmax_capped(&a);
    assert_tmax_capped(&b);

    assert_eq!(request(addr, "DELETE", "/dsp/a", "").0, 204);
    assert_eq!(request(addr, "DELETE", "/dsp/b", "").0, 204);
    let hang = FakeDsp::start(Behaviour::Hang);
    let body = format!("{{\"name\":\"h\",\"base_url\":\"http://{}\"}}", hang.addr);
    assert_eq!(request(addr, "POST", "/dsp", &body).0, 201);
    let started = std::time::Instant::now();
    assert_eq!(request(addr, "POST", "/openrtb2/auction", REQUEST).0, 204);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered by the deadline"
    );
}
