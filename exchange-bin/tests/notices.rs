//! Notices and protocol edges through the real exchange binary, over loopback sockets:
//!
//! - loss notices, with real `rtb-dsp --lurl` processes: every losing bid's `lurl` arrives
//!   once with its OpenRTB loss reason (102 lost to a higher bid, 205 advertiser blocked), the
//!   winner's never does, and `test: 1` auctions fire no notice at all (no win, no loss) and
//!   are counted apart;
//! - `x-openrtb-version`: a 2.5 request goes to the DSP as 2.5 and is answered as 2.5, no
//!   header means 2.6, and a version the exchange does not speak is a JSON 400 that calls no
//!   DSP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{thread, time::Duration};

use common::*;

/// A request with one banner impression, floor 1.0, the `blocked` DSP's advertiser blocked.
fn auction_body(id: &str, test: bool) -> Vec<u8> {
    let test = u8::from(test);
    format!(
        r#"{{"id":"{id}","test":{test},"tmax":200,"badv":["blocked.example"],
            "imp":[{{"id":"1","banner":{{"w":300,"h":250}},"bidfloor":1.0}}],"site":{{"id":"s"}}}}"#
    )
    .into_bytes()
}

/// An `rtb-dsp` series summed over its label sets.
fn dsp_series(dsp: std::net::SocketAddr, series: &str) -> f64 {
    let text = request(dsp, "GET", "/metrics", &[], b"").text();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn losses(dsp: std::net::SocketAddr, reason: &str) -> f64 {
    let text = request(dsp, "GET", "/metrics", &[], b"").text();
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|l| l.starts_with("rtb_dspsim_loss_notices_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn loss_notices_reach_every_loser_once_and_test_auctions_fire_none() {
    let Some(dsp_bin) = dsp_binary("notices") else {
        return;
    };
    let dsp = |name: &str, price: &str| {
        let flags = [
            "--latency",
            "fixed:0",
            "--bid-rate",
            "1",
            "--price",
            price,
            "--lurl",
        ];
        DspProcess::start(&dsp_bin, name, 0, &flags).expect("rtb-dsp started")
    };
    let (high, mid, blocked) = (
        dsp("high", "fixed:3"),
        dsp("mid", "fixed:2"),
        dsp("blocked", "fixed:5"),
    );
    let dir = common::ledger::temp_dir("notices");
    let ledger = dir.join("ledger.jsonl");
    let target = format!("file:{}", ledger.display());
    // A debug build on a busy machine may lag past the default 10 ms: no shedding here.
    let flags = [
        "--shed-lag-ms",
        "1000",
        "--shed-queue-wait-ms",
        "1000",
        "--ledger",
        &target,
        "--ledger-flush-ms",
        "50",
    ];
    let ex = Exchange::start(&flags);
    for (name, d) in [("high", &high), ("mid", &mid), ("blocked", &blocked)] {
        assert_eq!(ex.onboard(name, d.addr).status, 201);
    }
    const AUCTIONS: usize = 20;
    const TEST_AUCTIONS: usize = 10;
    // Test auctions first, until one is won: they warm the connections up and fire nothing.
    let mut test_won = 0;
    let warm = eventually(Duration::from_secs(5), || {
        let r = ex.auction(&auction_body(&format!("warm-{test_won}"), true));
        test_won += usize::from(r.status == 200);
        r.status == 200
    });
    assert!(warm, "no test auction was won");
    for i in 0..TEST_AUCTIONS {
        let r = ex.auction(&auction_body(&format!("test-{i}"), true));
        assert_eq!(r.status, 200, "{}", r.text());
        test_won += 1;
    }
    for i in 0..AUCTIONS {
        let r = ex.auction(&auction_body(&format!("live-{i}"), false));
        assert_eq!(r.status, 200, "{}", r.text());
        // Second price: 2 + 0.01; the blocked bid of 5 is out.
        assert_eq!(r.json()["seatbid"][0]["bid"][0]["price"], 2.01);
    }
    let n = AUCTIONS as f64;
    let arrived = || {
        (
            dsp_series(high.addr, "rtb_dspsim_wins_total"),
            losses(mid.addr, "102"),
            losses(blocked.addr, "205"),
        )
    };
    assert!(
        eventually(Duration::from_secs(5), || arrived() == (n, n, n)),
        "wins to high, 102s to mid, 205s to blocked: {:?}, want {n} each",
        arrived()
    );
    // Nothing more comes: each notice arrived once, and the test auctions fired none.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(arrived(), (n, n, n));
    assert_eq!(dsp_series(high.addr, "rtb_dspsim_loss_notices_total"), 0.0);
    for loser in [&mid, &blocked] {
        assert_eq!(dsp_series(loser.addr, "rtb_dspsim_wins_total"), 0.0);
    }
    assert_eq!(dsp_series(mid.addr, "rtb_dspsim_loss_notices_total"), n);
    assert_eq!(dsp_series(blocked.addr, "rtb_dspsim_loss_notices_total"), n);
    let m = ex.metrics();
    assert_eq!(
        sample(&m, "rtb_win_notices_total{result=\"sent\"}"),
        n,
        "{m}"
    );
    assert_eq!(
        sample(&m, "rtb_loss_notices_total{result=\"sent\"}"),
        2.0 * n
    );
    assert_eq!(
        sample(&m, "rtb_loss_notices_total{result=\"dropped\"}"),
        0.0
    );
    assert_eq!(
        sample(&m, "rtb_test_auctions_total{outcome=\"won\"}"),
        test_won as f64
    );
    let won = sample(&m, "rtb_auctions_total{outcome=\"won\"}");
    assert_eq!(won, (AUCTIONS + test_won) as f64);
    // The ledger marks the test auctions (its revenue views leave them out).
    let records = || -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&ledger).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let total = AUCTIONS + test_won;
    assert!(eventually(Duration::from_secs(5), || records().len() == total));
    for record in records() {
        let id = record["id"].as_str().unwrap();
        assert_eq!(record["test"], !id.starts_with("live-"), "{record}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_openrtb_version_is_forwarded_stated_and_checked() {
    let ex = Exchange::start(&[]);
    let dsp = FakeDsp::start(Behaviour::bid(2.0, "v"));
    ex.onboard("v", dsp.addr);
    let auction = |id: &str, version: Option<&str>| {
        let headers: Vec<(&str, &str)> = version
            .map(|v| ("x-openrtb-version", v))
            .into_iter()
            .collect();
        let body = bid_request(id, 2, 100, 0.1);
        request(ex.addr, "POST", "/openrtb2/auction", &headers, &body)
    };
    for (id, sent, want) in [
        ("v25", Some("2.5"), "2.5"),
        ("v26", Some("2.6"), "2.6"),
        ("none", None, "2.6"),
    ] {
        let r = auction(id, sent);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-openrtb-version"), Some(want), "answer to {id}");
        let calls = dsp.bid_requests();
        let call = calls.last().expect("the DSP was called");
        assert_eq!(call.json()["id"], id);
        assert_eq!(
            call.header("x-openrtb-version"),
            Some(want),
            "call for {id}"
        );
    }
    let calls_before = dsp.bid_requests().len();
    let r = auction("v30", Some("3.0"));
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["field"], "x-openrtb-version", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("2.5 and 2.6"),
        "{body}"
    );
    assert_eq!(
        dsp.bid_requests().len(),
        calls_before,
        "a refused request calls no DSP"
    );
}
