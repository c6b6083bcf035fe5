//! Currency conversion through the real exchange binary and real `rtb-dsp` processes bidding in
//! USD, EUR and JPY: the rates file is loaded at startup, a EUR bid beats a lower USD bid once
//! converted (and its win notice states its price in EUR), a bid in a currency with no rate is
//! rejected and counted, a rewritten file is picked up by the next refresh, and a broken one
//! keeps the old table and counts a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::PathBuf, time::Duration};

use common::*;

/// 1 EUR = 1.25 USD.
const EUR_STRONG: &str =
    r#"{"dataAsOf":"2026-12-05","conversions":{"USD":{"EUR":0.8,"GBP":0.75}}}"#;
/// 1 EUR = 0.8 USD.
const EUR_WEAK: &str = r#"{"dataAsOf":"2026-12-06","conversions":{"USD":{"EUR":1.25,"GBP":0.75}}}"#;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rtb-currency-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Rewrites the rates file in one step (write then rename), as a deploy would.
fn write_rates(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The winning bid's seat and price, and the answer's currency.
fn winner(ex: &Exchange, id: &str) -> Option<(String, f64, String)> {
    let r = ex.auction(&bid_request(id, 1, 200, 0.5));
    if r.status != 200 {
        return None;
    }
    let answer = r.json();
    let seatbid = &answer["seatbid"][0];
    Some((
        seatbid["seat"].as_str()?.to_string(),
        seatbid["bid"][0]["price"].as_f64()?,
        answer["cur"].as_str()?.to_string(),
    ))
}

/// An `rtb-dsp`'s win notices received and the sum of the prices they stated.
fn dsp_wins(dsp: std::net::SocketAddr) -> (f64, f64) {
    let text = request(dsp, "GET", "/metrics", &[], b"").text();
    let series = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (
        series("rtb_dspsim_wins_total"),
        series("rtb_dspsim_win_value_sum"),
    )
}

fn rejections(metrics: &str, dsp: &str, reason: &str) -> f64 {
    sample(
        metrics,
        &format!("rtb_dsp_bid_rejections_total{{dsp=\"{dsp}\",reason=\"{reason}\"}}"),
    )
}

#[test]
fn bids_are_converted_unknown_currencies_rejected_and_refreshes_picked_up() {
    let Some(dsp_bin) = dsp_binary("currency") else {
        return;
    };
    let scratch = Scratch::new();
    let rates = scratch.0.join("rates.json");
    write_rates(&rates, EUR_STRONG);
    let dsp = |name: &str, extra: &[&str]| {
        let mut flags = vec!["--latency", "fixed:0", "--bid-rate", "1"];
        flags.extend_from_slice(extra);
        DspProcess::start(&dsp_bin, name, 0, &flags).expect("rtb-dsp started")
    };
    let usd = dsp("usd", &["--price", "fixed:2.2"]);
    let eur = dsp("eur", &["--price", "fixed:2", "--currency", "EUR"]);
    let jpy = dsp("jpy", &["--price", "fixed:900", "--currency", "JPY"]);
    let rates_flag = rates.to_str().unwrap();
    let ex = Exchange::start(&[
        "--currency-rates",
        rates_flag,
        "--currency-refresh-s",
        "1",
        "--currency-stale-s",
        "60",
    ]);
    for (name, dsp) in [("usd", &usd), ("eur", &eur), ("jpy", &jpy)] {
        assert_eq!(ex.onboard(name, dsp.addr).status, 201);
    }

    // 2 EUR = 2.5 USD beats 2.2 USD; first price; the answer is in USD.
    let want = ("eur".to_string(), 2.5, "USD".to_string());
    assert!(
        eventually(Duration::from_secs(5), || winner(&ex, "a").as_ref()
            == Some(&want)),
        "EUR bid did not win at 2.5 USD: {:?}",
        winner(&ex, "a")
    );
    let m = ex.metrics();
    assert!(rejections(&m, "jpy", "wrong_currency") >= 1.0, "{m}");
    assert!(rejections(&m, "usd", "lost_to_higher_bid") >= 1.0, "{m}");
    assert_eq!(rejections(&m, "eur", "wrong_currency"), 0.0);
    assert_eq!(sample(&m, "rtb_currency_rates_stale"), 0.0);
    assert_eq!(sample(&m, "rtb_currency_rates_currencies"), 3.0);
    // The exchange fires the EUR DSP's win notice with the price in EUR, as OpenRTB says:
    // 2.5 USD / 1.25 = 2.0 EUR for every win.
    assert!(
        eventually(Duration::from_secs(5), || {
            let (wins, value) = dsp_wins(eur.addr);
            wins >= 1.0 && (value / wins - 2.0).abs() < 1e-6
        }),
        "win notices to the EUR DSP did not state 2.0 (EUR): {:?}",
        dsp_wins(eur.addr)
    );

    // A broken file: the old table stays (EUR still wins), the failure is counted.
    write_rates(&rates, r#"{"conversions":{"USD":{"EUR":"cheap"}}}"#);
    assert!(
        eventually(Duration::from_secs(5), || {
            sample(&ex.metrics(), "rtb_currency_rates_failures_total") >= 1.0
        }),
        "a broken rates file was not counted"
    );
    assert_eq!(winner(&ex, "b"), Some(want));

    // EUR weakens: 2 EUR = 1.6 USD now loses to 2.2 USD after one refresh period.
    write_rates(&rates, EUR_WEAK);
    let want = ("usd".to_string(), 2.2, "USD".to_string());
    assert!(
        eventually(Duration::from_secs(5), || winner(&ex, "c").as_ref()
            == Some(&want)),
        "the refreshed rates were not used: {:?}",
        winner(&ex, "c")
    );
    let m = ex.metrics();
    assert!(sample(&m, "rtb_currency_rates_loads_total") >= 2.0, "{m}");
    assert!(sample(&m, "rtb_currency_rates_age_seconds") < 60.0, "{m}");
    assert!(rejections(&m, "eur", "lost_to_higher_bid") >= 1.0, "{m}");
}

#[test]
fn without_rates_a_foreign_bid_is_rejected_as_before() {
    let Some(dsp_bin) = dsp_binary("currency") else {
        return;
    };
    let eur = DspProcess::start(
        &dsp_bin,
        "eur",
        0,
        &[
            "--latency",
            "fixed:0",
            "--price",
            "fixed:2",
            "--currency",
            "EUR",
        ],
    )
    .expect("rtb-dsp started");
    let ex = Exchange::start(&[]);
    assert_eq!(ex.onboard("eur", eur.addr).status, 201);
    assert!(
        eventually(Duration::from_secs(5), || {
            let r = ex.auction(&bid_request("x", 1, 200, 0.5));
            r.status == 204 && rejections(&ex.metrics(), "eur", "wrong_currency") >= 1.0
        }),
        "a EUR bid without rates was not rejected as wrong_currency"
    );
    assert!(
        !ex.metrics().contains("rtb_currency_rates"),
        "no rates, no series"
    );
}

#[test]
fn a_rates_file_missing_at_startup_is_counted_and_the_exchange_still_serves() {
    let scratch = Scratch::new();
    let missing = scratch.0.join("not-there.json");
    let ex = Exchange::start(&["--currency-rates", missing.to_str().unwrap()]);
    let m = ex.metrics();
    assert_eq!(sample(&m, "rtb_currency_rates_failures_total"), 1.0, "{m}");
    assert_eq!(sample(&m, "rtb_currency_rates_loads_total"), 0.0, "{m}");
    assert_eq!(sample(&m, "rtb_currency_rates_stale"), 1.0, "{m}");
    assert!(m.contains("rtb_currency_rates_age_seconds NaN"), "{m}");
    let r = request(ex.addr, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
}
