//! gzip to and from DSPs (issue 16), through the real exchange binary over loopback sockets:
//!
//! - a DSP onboarded with `"gzip": true` (a real `rtb-dsp --gzip`) receives every bid request
//!   gzip-compressed and answers gzip; the exchange decodes the answer and the DSP's bid wins,
//!   while a plain DSP of the same auctions receives identity bodies;
//! - a gzip answer that decodes past the response limit (a bomb: 8 MB of zeros in about 8 KB)
//!   is refused as `too_large`, counted, and the auction goes on with the other DSP's bid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;

use common::*;
use test_support::{fake::FakeServer, http::read_request, prom};

const AUCTIONS: usize = 20;

/// A request of about 1.2 KB (three banner impressions), so gzip shrinks it.
fn auction_body(id: usize) -> Vec<u8> {
    let imp = |n: usize| {
        format!(
            r#"{{"id":"{n}","banner":{{"w":300,"h":250,"format":[{{"w":300,"h":250}},{{"w":320,"h":50}}]}},"bidfloor":1.0,"bidfloorcur":"USD"}}"#
        )
    };
    format!(
        r#"{{"id":"gz-{id}","tmax":200,"imp":[{},{},{}],"site":{{"id":"s","domain":"news.example","page":"https://news.example/articles/today","publisher":{{"id":"p","name":"News Example"}}}},"device":{{"ua":"Mozilla/5.0 (X11; Linux x86_64)","ip":"203.0.113.9"}},"user":{{"id":"u-1"}}}}"#,
        imp(1),
        imp(2),
        imp(3)
    )
    .into_bytes()
}

fn onboard_gzip(ex: &Exchange, name: &str, dsp: std::net::SocketAddr) {
    let body = format!(r#"{{"name":"{name}","base_url":"http://{dsp}","gzip":true}}"#);
    let r = request(ex.addr, "POST", "/dsp", &[], body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.text().contains(r#""gzip":true"#), "{}", r.text());
}

fn dsp_counter(dsp: std::net::SocketAddr, series: &str) -> f64 {
    let text = request(dsp, "GET", "/metrics", &[], b"").text();
    prom::first(&text, series).unwrap_or(0.0)
}

#[test]
fn gzip_dsps_get_compressed_requests_and_their_gzip_answers_win() {
    let Some(dsp_bin) = dsp_binary("gzip") else {
        return;
    };
    let dsp = |name: &str, price: &str, gzip: bool| {
        let mut flags = vec!["--latency", "fixed:0", "--bid-rate", "1", "--price", price];
        if gzip {
            flags.push("--gzip");
        }
        DspProcess::start(&dsp_bin, name, 0, &flags).expect("rtb-dsp started")
    };
    let (zipped, plain) = (
        dsp("zipped", "fixed:3", true),
        dsp("plain", "fixed:2", false),
    );
    let ex = Exchange::start(&["--shed-lag-ms", "1000", "--shed-queue-wait-ms", "1000"]);
    onboard_gzip(&ex, "zipped", zipped.addr);
    assert_eq!(ex.onboard("plain", plain.addr).status, 201);
    for id in 0..AUCTIONS {
        let r = ex.auction(&auction_body(id));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(r#""seat":"zipped""#), "{}", r.text());
    }
    let n = AUCTIONS as f64;
    assert_eq!(
        dsp_counter(zipped.addr, "rtb_dspsim_gzip_requests_total"),
        n
    );
    assert_eq!(
        dsp_counter(zipped.addr, "rtb_dspsim_gzip_responses_total"),
        n
    );
    assert_eq!(dsp_counter(plain.addr, "rtb_dspsim_requests_total"), n);
    assert_eq!(
        dsp_counter(plain.addr, "rtb_dspsim_gzip_requests_total"),
        0.0
    );
    let page = ex.metrics();
    let errors: f64 = prom::by_label(&page, "rtb_dsp_errors_total{dsp=\"zipped\",kind=\"")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 0.0, "{page}");
}

/// A DSP that answers every bid request with a gzip bomb: 8 MB of zeros, compressed.
fn bomb_dsp() -> FakeServer {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; 8 << 20]).unwrap();
    let bomb = encoder.finish().unwrap();
    FakeServer::start(move |mut conn, _ctx| {
        let mut buf = Vec::new();
        while read_request(&mut conn, &mut buf).is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n\
                 content-length: {}\r\n\r\n",
                bomb.len()
            );
            if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&bomb).is_err() {
                return;
            }
        }
    })
}

#[test]
fn a_gzip_bomb_answer_is_refused_within_the_limit_and_counted() {
    let Some(dsp_bin) = dsp_binary("gzip") else {
        return;
    };
    let bomb = bomb_dsp();
    let plain =
        DspProcess::start(&dsp_bin, "plain", 0, &ALWAYS_BIDS_AT_2).expect("rtb-dsp started");
    let ex = Exchange::start(&["--shed-lag-ms", "1000", "--shed-queue-wait-ms", "1000"]);
    onboard_gzip(&ex, "bomb", bomb.addr);
    assert_eq!(ex.onboard("plain", plain.addr).status, 201);
    for id in 0..5 {
        let r = ex.auction(&auction_body(id));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(r#""seat":"plain""#), "{}", r.text());
    }
    let page = ex.metrics();
    // Each bomb is refused as `too_large` (the breaker may stop calling the DSP before the
    // fifth auction: the other DSP still wins every one).
    let too_large = prom::sample(
        &page,
        "rtb_dsp_errors_total{dsp=\"bomb\",kind=\"too_large\"}",
    );
    assert!((1.0..=5.0).contains(&too_large), "{page}");
    // The process is healthy after the bombs.
    assert_eq!(request(ex.addr, "GET", "/healthz", &[], b"").status, 200);
}
