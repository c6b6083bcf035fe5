//! Every series that deploy/'s monitoring files name exists in a real exchange's scrape, and
//! every query they hold returns data from a real Prometheus:
//! - the Grafana dashboards (deploy/grafana/*.json) and the alert rules
//!   (deploy/prometheus/rtb-alerts.yaml) name only `rtb_*`/`process_*` series that the real
//!   exchange binary (with a currency rates file, so the rates series exist), serving the
//!   ledger tests' auctions to three real `rtb-dsp` processes, declares (`# TYPE`) or holds. A
//!   name that is misspelt, renamed or never rendered fails here, which no offline check sees;
//! - (ignored by `cargo test`; scripts/test runs it after `scripts/need deploy` installed
//!   Debian's `prometheus`) a real Prometheus server scrapes that exchange every second with
//!   the alert rules loaded: every dashboard expression and variable query, with Grafana's
//!   variables filled in, returns at least one series, and every alert rule evaluates without
//!   error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::ledger::{run_auctions, start_dsps, temp_dir};
use common::{request, DspProcess, Exchange};
use serde_json::Value;

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

/// The exchange with a currency rates file and a roster (empty: the roster series exist), the
/// three DSPs onboarded; the files live in `dir`.
fn exchange_with_rates(dir: &Path, dsps: &[DspProcess]) -> Exchange {
    let rates = dir.join("rates.json");
    std::fs::write(
        &rates,
        r#"{"dataAsOf":"2026-12-05","conversions":{"USD":{"EUR":0.8}}}"#,
    )
    .unwrap();
    let roster = dir.join("roster.json");
    std::fs::write(&roster, r#"{"dsps":[]}"#).unwrap();
    let ex = Exchange::start(&[
        "--currency-rates",
        rates.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
    ]);
    for (name, dsp) in ["steady", "flaky", "sleepy"].iter().zip(dsps) {
        assert_eq!(ex.onboard(name, dsp.addr).status, 201);
    }
    ex
}

#[test]
fn every_series_the_dashboards_and_alerts_name_is_in_a_real_scrape() {
    let Some(dsps) = start_dsps() else {
        return; // dsp_binary said why (a failure in CI).
    };
    let dir = temp_dir("dashboards");
    let mut ex = exchange_with_rates(&dir, &dsps);
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

/// Grafana's variables as this test fills them in: the scrape job, every DSP, and windows that
/// hold several of the 1 s scrapes.
const GRAFANA_VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "10s"),
    ("$__range", "20s"),
    ("$job", "rtb-exchange"),
    ("$dsp", ".*"),
];

/// Every PromQL expression of the dashboards (panel targets, and the selectors of the
/// variables' `label_values(selector, label)` queries), labelled, variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for (path, text) in monitoring_files() {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&text).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let label = format!("{:?} {}", panel["title"], target["refId"]);
                queries.push((label, target["expr"].as_str().unwrap().to_string()));
            }
        }
        for var in dash["templating"]["list"].as_array().unwrap() {
            let Some(query) = var["query"]["query"].as_str() else {
                continue;
            };
            let inner = query.strip_prefix("label_values(").unwrap();
            let selector = &inner[..inner.rfind(',').unwrap()];
            queries.push((format!("variable {}", var["name"]), selector.to_string()));
        }
    }
    for (_, query) in &mut queries {
        for (name, value) in GRAFANA_VARIABLES {
            *query = query.replace(name, value);
        }
        assert!(!query.contains('$'), "a variable left in {query}");
    }
    queries
}

/// A Prometheus server (Debian's package) with a configuration written by the test: scrape
/// `target` every second as job `rtb-exchange`, evaluate deploy/'s alert rules every second;
/// its data in `dir`, its log in `dir/prometheus.log`. Killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let rules = deploy_dir().join("prometheus/rtb-alerts.yaml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: rtb-exchange\n    static_configs:\n      - targets: ['{target}']\n",
            rules.canonicalize().unwrap().display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus not installed (scripts/need deploy installs it)");
        let server = Prometheus {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        let give_up = Instant::now() + Duration::from_secs(30);
        while !server.ready() {
            assert!(
                Instant::now() < give_up,
                "prometheus not ready: {}",
                server.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn ready(&self) -> bool {
        std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            && request(self.addr, "GET", "/-/ready", &[], b"").status == 200
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` of the HTTP API, its JSON; panics unless `status` is `success`.
    fn api(&self, method: &str, path: &str, form: &str) -> Value {
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        let r = request(self.addr, method, path, &headers, form.as_bytes());
        let body: Value = serde_json::from_str(&r.decoded_text())
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", r.decoded_text()));
        assert_eq!(body["status"], "success", "{path} {form}: {body}");
        body
    }

    /// The series an instant query returns.
    fn query(&self, promql: &str) -> Vec<Value> {
        let body = self.api(
            "POST",
            "/api/v1/query",
            &format!("query={}", form_encode(promql)),
        );
        body["data"]["result"].as_array().unwrap().clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `application/x-www-form-urlencoded` value: every byte but the unreserved ones escaped.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
#[ignore = "needs prometheus: scripts/test runs it after scripts/need deploy"]
fn every_dashboard_query_returns_data_and_every_alert_evaluates_in_a_real_prometheus() {
    let dsps = start_dsps().expect("rtb-dsp binary built");
    let dir = temp_dir("prometheus");
    let mut ex = exchange_with_rates(&dir, &dsps);
    let prometheus = Prometheus::start(&dir, ex.debug);
    // Traffic over 25 scrapes, so every rate window holds several.
    let until = Instant::now() + Duration::from_secs(25);
    while Instant::now() < until {
        run_auctions(&ex);
    }
    let mut empty = Vec::new();
    for (label, promql) in dashboard_queries() {
        let series = prometheus.query(&promql);
        println!("{} series: {label}", series.len());
        if series.is_empty() {
            empty.push(format!("{label}: {promql}"));
        }
    }
    assert!(empty.is_empty(), "queries with no data: {empty:#?}");
    let groups = prometheus.api("GET", "/api/v1/rules", "")["data"]["groups"].clone();
    let rules: Vec<&Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let rules_in_file = monitoring_files()
        .iter()
        .map(|(_, text)| text.matches("- alert: ").count())
        .sum::<usize>();
    assert_eq!(rules.len(), rules_in_file, "{groups}");
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert!(
            rule["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001")),
            "{rule}"
        );
    }
    assert!(ex.terminate().success());
    drop(prometheus);
    std::fs::remove_dir_all(&dir).unwrap();
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
