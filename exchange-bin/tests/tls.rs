//! TLS to DSPs through the real exchange binary and real `rtb-dsp` processes serving https
//! with certificates a test CA signed (rcgen): auctions over TLS reuse their pooled
//! connections (at least 99.9% after warm-up) and fire their https win notices; a DSP whose
//! certificate comes from another CA, or names another host, is refused, counted as a `tls`
//! error, and the auction is still answered in time with the good DSP's bid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::*;
use test_support::tls::{ServerCert, TestCa};

/// Auctions before counting (the pools fill and settle).
const WARM_UP: usize = 100;
/// Auctions counted for pool reuse.
const COUNTED: usize = 2_000;
/// The auctions' tmax; an answer must come within it plus scheduling slack.
const TMAX_MS: u32 = 200;
const ANSWER_SLACK: Duration = Duration::from_millis(100);

fn https_dsp(bin: &std::path::Path, name: &str, cert: &ServerCert) -> DspProcess {
    let args = cert.args();
    let mut flags: Vec<&str> = args.iter().map(String::as_str).collect();
    flags.extend(ALWAYS_BIDS_AT_2);
    DspProcess::start(bin, name, 0, &flags).expect("rtb-dsp started")
}

fn onboard_https(ex: &Exchange, name: &str, dsp: SocketAddr) -> Reply {
    let body = format!(r#"{{"name":"{name}","base_url":"https://{dsp}"}}"#);
    request(ex.addr, "POST", "/dsp", &[], body.as_bytes())
}

/// Opened and reused pool connections to `dsp`, summed over workers.
fn pool_counts(metrics: &str, dsp: &str) -> (f64, f64) {
    (
        dsp_sample(metrics, "rtb_dsp_pool_connections_opened_total", dsp),
        dsp_sample(metrics, "rtb_dsp_pool_connections_reused_total", dsp),
    )
}

fn tls_errors(metrics: &str, dsp: &str) -> f64 {
    sample(
        metrics,
        &format!("rtb_dsp_errors_total{{dsp=\"{dsp}\",kind=\"tls\"}}"),
    )
}

/// Runs auctions (answered 200, or 204 while a call finds the handshake slots taken by the
/// pre-warm: `connect_paced`) until both workers (`Exchange::start` runs 2) have pre-warmed
/// each of `dsps`' TLS pools to the default size. Handshakes are slow in a debug build; pool
/// counters reach the metrics when auctions run.
fn warm_up(ex: &Exchange, dsps: &[&str]) {
    let want = 2.0 * rtb_io::client_flags::DSP_TLS_PREWARM_DEFAULT as f64;
    let mut n = 0;
    let warm = eventually(Duration::from_secs(60), || {
        n += 1;
        let r = ex.auction(&bid_request(&format!("warm{n}"), 1, TMAX_MS, 0.5));
        assert!(r.status == 200 || r.status == 204, "{}", r.text());
        let m = ex.metrics();
        dsps.iter().all(|d| pool_counts(&m, d).0 >= want)
    });
    assert!(
        warm,
        "pools not pre-warmed after {n} auctions: {}",
        ex.metrics()
    );
}

/// Runs one auction; the winning seat, and how long the answer took.
fn auction(ex: &Exchange, id: &str) -> (Option<String>, Duration) {
    let start = Instant::now();
    let r = ex.auction(&bid_request(id, 1, TMAX_MS, 0.5));
    let took = start.elapsed();
    assert_eq!(r.status, 200, "auction {id}: {}", r.text());
    let seat = r.json()["seatbid"][0]["seat"].as_str().map(str::to_string);
    (seat, took)
}

#[test]
fn auctions_over_tls_reuse_connections_and_fire_https_notices() {
    let Some(dsp_bin) = dsp_binary("tls") else {
        return;
    };
    let ca = TestCa::new("exchange-ok");
    let cert = ca.server_cert("dsp", &["localhost", "127.0.0.1"]);
    let a = https_dsp(&dsp_bin, "tls-a", &cert);
    let b = https_dsp(&dsp_bin, "tls-b", &cert);
    let ex = Exchange::start(&["--dsp-ca-file", ca.ca_file.to_str().unwrap()]);
    for (name, dsp) in [("tls-a", &a), ("tls-b", &b)] {
        let r = onboard_https(&ex, name, dsp.addr);
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.json()["url"].as_str().unwrap().starts_with("https://"));
    }
    warm_up(&ex, &["tls-a", "tls-b"]);
    for i in 0..WARM_UP {
        assert!(auction(&ex, &format!("w{i}")).0.is_some(), "warm-up {i}");
    }
    let before = ex.metrics();
    for i in 0..COUNTED {
        let (seat, took) = auction(&ex, &format!("c{i}"));
        assert!(seat.is_some(), "auction {i} had no bid");
        assert!(took < Duration::from_millis(TMAX_MS.into()) + ANSWER_SLACK);
    }
    let after = ex.metrics();
    for dsp in ["tls-a", "tls-b"] {
        let (opened0, reused0) = pool_counts(&before, dsp);
        let (opened1, reused1) = pool_counts(&after, dsp);
        let (opened, reused) = (opened1 - opened0, reused1 - reused0);
        let reuse = reused / (opened + reused);
        assert!(
            reused >= COUNTED as f64 && reuse >= 0.999,
            "{dsp}: {opened} opened, {reused} reused ({reuse:.5})"
        );
        assert_eq!(tls_errors(&after, dsp), 0.0, "{dsp}");
    }
    // Every auction had a winner; its https nurl goes to the DSP over TLS (an IP literal
    // checked against the certificate's IP name).
    let sent = |m: &str| sample(m, "rtb_win_notices_total{result=\"sent\"}");
    assert!(
        eventually(Duration::from_secs(5), || sent(&ex.metrics())
            >= (WARM_UP + COUNTED) as f64),
        "{}",
        ex.metrics()
    );
    let m = ex.metrics();
    let mut zero = vec![
        "rtb_win_notices_total{result=\"failed\"}".to_string(),
        "rtb_win_notices_total{result=\"dropped\"}".to_string(),
    ];
    for reason in ["queue_full", "bad_url", "host_refused"] {
        zero.push(format!(
            "rtb_notices_dropped_total{{kind=\"win\",reason=\"{reason}\"}}"
        ));
    }
    for series in zero {
        assert_eq!(sample(&m, &series), 0.0, "{series}");
        assert!(m.contains(&series), "{series} is exported");
    }
}

#[test]
fn wrong_certificates_are_refused_counted_and_the_auction_answered_in_time() {
    let Some(dsp_bin) = dsp_binary("tls") else {
        return;
    };
    let ca = TestCa::new("exchange-trusted");
    let other = TestCa::new("exchange-other");
    let good = https_dsp(&dsp_bin, "good", &ca.server_cert("good", &["127.0.0.1"]));
    let other_ca = https_dsp(
        &dsp_bin,
        "other-ca",
        &other.server_cert("other", &["127.0.0.1"]),
    );
    let wrong_name = https_dsp(
        &dsp_bin,
        "wrong-name",
        &ca.server_cert("wrong", &["dsp.elsewhere.test"]),
    );
    let ex = Exchange::start(&["--dsp-ca-file", ca.ca_file.to_str().unwrap()]);
    for (name, dsp) in [
        ("good", &good),
        ("other-ca", &other_ca),
        ("wrong-name", &wrong_name),
    ] {
        assert_eq!(onboard_https(&ex, name, dsp.addr).status, 201);
    }
    warm_up(&ex, &["good"]);
    for i in 0..50 {
        let (seat, took) = auction(&ex, &format!("x{i}"));
        assert_eq!(seat.as_deref(), Some("good"), "auction {i}");
        assert!(
            took < Duration::from_millis(TMAX_MS.into()) + ANSWER_SLACK,
            "auction {i} took {took:?}"
        );
    }
    let m = ex.metrics();
    for bad in ["other-ca", "wrong-name"] {
        assert!(tls_errors(&m, bad) >= 1.0, "{bad} not counted:\n{m}");
        assert_eq!(pool_counts(&m, bad).0, 0.0, "{bad}: no connection kept");
    }
    assert_eq!(tls_errors(&m, "good"), 0.0);
}
