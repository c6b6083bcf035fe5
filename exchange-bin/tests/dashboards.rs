//! Every series that deploy/'s monitoring files name exists in a real exchange's scrape: the
//! Grafana dashboards (deploy/grafana/*.json) and the alert rules
//! (deploy/prometheus/rtb-alerts.yaml). The real exchange binary (with a currency rates file,
//! so the rates series exist) and three real `rtb-dsp` processes serve the ledger tests'
//! auctions, wins included; then `/metrics` is scraped and each `rtb_*`/`process_*` name in
//! those files must be a family the page declares (`# TYPE`) or a sample it holds. A name that
//! is misspelt, renamed or never rendered fails here, which no offline check can see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use common::ledger::{run_auctions, start_dsps, temp_dir};
use common::Exchange;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every `rtb_…` or `process_…` name in `text` (recording-rule names with a `:` excluded).
fn series_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = BTreeSet::new();
    for prefix in ["rtb_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| is_name(c) || c == ':') {
                continue;
            }
            let name: String = text[at..].chars().take_while(|&c| is_name(c)).collect();
            let after = text[at + name.len()..].chars().next();
            if after != Some(':') {
                names.insert(name);
            }
        }
    }
    names
}

/// Family names (`# TYPE name kind`) and sample names of a Prometheus text page.
fn scraped_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(rest) => rest.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .map(str::to_string)
        .collect()
}

/// The files whose series are checked, with their text.
fn monitoring_files() -> Vec<(PathBuf, String)> {
    let deploy = deploy_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy.join("grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in deploy/grafana");
    files.push(deploy.join("prometheus/rtb-alerts.yaml"));
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_series_the_dashboards_and_alerts_name_is_in_a_real_scrape() {
    let Some(dsps) = start_dsps() else {
        return; // dsp_binary said why (a failure in CI).
    };
    let dir = temp_dir("dashboards");
    let rates = dir.join("rates.json");
    std::fs::write(
        &rates,
        r#"{"dataAsOf":"2026-12-05","conversions":{"USD":{"EUR":0.8}}}"#,
    )
    .unwrap();
    let mut ex = Exchange::start(&["--currency-rates", rates.to_str().unwrap()]);
    for (name, dsp) in ["steady", "flaky", "sleepy"].iter().zip(&dsps) {
        assert_eq!(ex.onboard(name, dsp.addr).status, 201);
    }
    run_auctions(&ex);
    let page = ex.metrics();
    assert!(ex.terminate().success());
    std::fs::remove_dir_all(&dir).unwrap();

    let scraped = scraped_names(&page);
    let mut checked = 0;
    for (path, text) in monitoring_files() {
        let used = series_names(&text);
        assert!(!used.is_empty(), "{} names no series", path.display());
        let missing: Vec<&String> = used.difference(&scraped).collect();
        assert!(
            missing.is_empty(),
            "{} names series the exchange does not export: {missing:?}\n{page}",
            path.display()
        );
        checked += used.len();
    }
    println!("{checked} series names found in the scrape");
    // The revenue series appear only once something was won: this run must have had wins.
    assert!(
        page.contains("rtb_revenue_total{currency=\"USD\"}"),
        "{page}"
    );
}

#[test]
fn series_names_are_read_out_of_expressions() {
    let names = series_names(
        r#"sum by (le) (rate(rtb_auction_duration_seconds_bucket{job=~"$job"}[5m])) / x:rtb_y
           rtb_dashboard:panel1_A process_cpu_seconds_total"#,
    );
    let want = [
        "process_cpu_seconds_total",
        "rtb_auction_duration_seconds_bucket",
    ];
    assert_eq!(names, want.iter().map(|s| s.to_string()).collect());
    let page = "# HELP a_b A.\n# TYPE a_b histogram\na_b_bucket{le=\"1\"} 1\nc 2\n";
    let want = ["a_b", "a_b_bucket", "c"];
    assert_eq!(
        scraped_names(page),
        want.iter().map(|s| s.to_string()).collect()
    );
}
