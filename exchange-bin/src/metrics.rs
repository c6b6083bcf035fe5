//! Owns the exchange's counters and their Prometheus text exposition.
//!
//! Every worker owns one [`WorkerMetrics`] (in an `Arc<[WorkerMetrics]>` list) and is its only
//! writer: counters are rtb-io's single-writer [`Counter`] (relaxed load + store, no locked
//! read-modify-write, no shared cache line between workers). The debug port sums them on
//! scrape. Per-DSP counters are an `Arc<DspMetrics>` held by the worker's DSP slot; the
//! worker's name → metrics list sits behind a mutex touched only when the DSP set changes and
//! on scrape, never per request.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use rtb_core::{
    engine::{CallFailure, ShedReason},
    policy::SkipReason,
    RejectReason,
};
use rtb_io::{
    limits::Counter,
    metrics_text::{
        self, escape_label, header, histogram, BuildInfo, HistSnapshot, Histogram, LabeledSeries,
        Series,
    },
    pool_metrics::{PoolMetrics, PoolSum},
    ServerStats,
};

use crate::revenue::{Revenue, RevenueSum};

/// Per-DSP metric entries kept per worker (DSPs that left keep their counters); names beyond it
/// share one `_other` entry so a churn of names cannot grow memory without bound.
pub const DSP_METRIC_NAMES_MAX: usize = 1024;

/// Routes counted in `rtb_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// POST /openrtb2/auction
    Auction,
    /// POST /dsp
    DspOnboard,
    /// GET /dsp
    DspList,
    /// DELETE /dsp/{name}
    DspDelete,
    /// /healthz, /readyz
    Health,
    /// Anything else.
    Other,
}

const ROUTES: [(Route, &str); 6] = [
    (Route::Auction, "auction"),
    (Route::DspOnboard, "dsp_onboard"),
    (Route::DspList, "dsp_list"),
    (Route::DspDelete, "dsp_delete"),
    (Route::Health, "health"),
    (Route::Other, "other"),
];

/// Statuses with their own counter; the rest count as "other".
const STATUSES: [u16; 14] = [
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 429, 500, 503, 507,
];

/// Auction outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with at least one winner.
    Won,
    /// 204: DSPs called, nobody won.
    NoBid,
    /// 204 at once: too late to start.
    Shed,
    /// 400: request failed validation.
    Invalid,
    /// 404: no DSP registered.
    NoDsp,
}

const OUTCOMES: [(Outcome, &str); 5] = [
    (Outcome::Won, "won"),
    (Outcome::NoBid, "no_bid"),
    (Outcome::Shed, "shed"),
    (Outcome::Invalid, "invalid"),
    (Outcome::NoDsp, "no_dsp"),
];

const CALL_ERRORS: [CallFailure; CallFailure::ALL.len()] = CallFailure::ALL;

/// Names of [`RejectReason`]s, in a fixed order for the per-DSP counters.
const REJECT_REASONS: [&str; 17] = [
    "defective",
    "auction_id_mismatch",
    "wrong_currency",
    "unknown_imp",
    "invalid_price",
    "price_too_high",
    "unknown_deal",
    "private_auction_needs_deal",
    "seat_not_allowed",
    "below_floor",
    "below_deal_floor",
    "blocked_advertiser",
    "blocked_category",
    "lost_to_higher_bid",
    "lost_to_deal",
    "media_type_not_offered",
    "size_not_allowed",
];

/// One DSP's counters on one worker.
#[derive(Debug, Default)]
pub struct DspMetrics {
    /// Calls started.
    pub calls: Counter,
    /// Bids received (every bid of every 200 response).
    pub bids: Counter,
    /// Impressions won.
    pub wins: Counter,
    /// 204 or empty answers.
    pub no_bids: Counter,
    call_errors: [Counter; CALL_ERRORS.len()],
    /// 200 responses that did not decode.
    pub decode_errors: Counter,
    /// Answers with a status other than 200 and 204.
    pub bad_status: Counter,
    rejections: [Counter; REJECT_REASONS.len()],
    /// Call latency (answered calls and errors; timeouts included).
    pub latency: Histogram,
    /// This worker's pool to the DSP (mirrored after each call).
    pub pool: PoolMetrics,
    /// This worker's breaker state for the DSP (0 closed, 1 open, 2 half-open: rendered as
    /// one `rtb_dsp_breaker_state{state}` series per state).
    pub breaker_state: AtomicU64,
    /// Closed → open transitions.
    pub breaker_trips: Counter,
    /// Calls not made because the breaker was open (or half-open with a probe out).
    pub skipped: Counter,
    /// Requests its roster policy kept from it, by reason in `SkipReason::ALL` order (mirrors
    /// the engine's counts, see `record::mirror_policy_skips`).
    pub policy_skips: [AtomicU64; SkipReason::ALL.len()],
    /// This worker's part of the DSP's QPS cap, in millionths, set by the rebalancer
    /// (`crate::qps_shares`; 0: not set yet, an equal part).
    pub qps_fraction_ppm: AtomicU64,
    /// Clearing prices of the impressions won in non-test auctions, by auction currency.
    pub revenue: Revenue,
}

/// Orders breaker gauge values by severity (closed < half-open < open) so the scrape shows the
/// worst state any worker has.
fn breaker_severity(state: u64) -> u8 {
    match state {
        1 => 2,
        2 => 1,
        _ => 0,
    }
}

impl DspMetrics {
    /// Requests this worker wanted to send the DSP (its filters admitted them): calls made,
    /// calls its breaker held back and requests over its QPS part.
    pub fn qps_demand(&self) -> u64 {
        let over_cap = self.policy_skips[SkipReason::Qps as usize].load(Ordering::Relaxed);
        self.calls.get() + self.skipped.get() + over_cap
    }

    /// Counts a failed call. Owner thread only.
    pub fn call_error(&self, e: CallFailure) {
        if let Some(i) = CALL_ERRORS.iter().position(|&k| k == e) {
            self.call_errors[i].incr();
        }
    }

    /// Counts a rejected bid. Owner thread only.
    pub fn rejection(&self, r: RejectReason) {
        let name = r.as_str();
        if let Some(i) = REJECT_REASONS.iter().position(|&k| k == name) {
            self.rejections[i].incr();
        }
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    requests: [[Counter; STATUSES.len() + 1]; ROUTES.len()],
    outcomes: [Counter; OUTCOMES.len()],
    shed_reasons: [Counter; ShedReason::ALL.len()],
    /// Arrival to answer of auctions that called DSPs.
    pub auction_latency: Histogram,
    /// Win and loss notices by result (see [`crate::notice_metrics`]).
    pub notices: crate::notice_metrics::NoticeCounters,
    /// Auctions of `test: 1` requests that called DSPs, won (`[0]`) or not (`[1]`): counted
    /// apart (they are in `rtb_auctions_total` too), billed nothing, no notice fired.
    pub test_auctions: [Counter; 2],
    /// Registry version this worker applied (read by onboarding to wait for every worker).
    pub applied_version: AtomicU64,
    /// The IO driver, set once the worker runs.
    pub driver: OnceLock<&'static str>,
    dsps: Mutex<Vec<(String, Arc<DspMetrics>)>>,
}

impl WorkerMetrics {
    /// Counts a request by route and status. Owner thread only.
    pub fn request(&self, route: Route, status: u16) {
        let r = ROUTES.iter().position(|(k, _)| *k == route).unwrap_or(0);
        let s = STATUSES
            .iter()
            .position(|&k| k == status)
            .unwrap_or(STATUSES.len());
        self.requests[r][s].incr();
    }

    /// Counts a shed auction (outcome `shed`) with its reason. Owner thread only.
    pub fn shed(&self, reason: ShedReason) {
        self.outcome(Outcome::Shed);
        if let Some(i) = ShedReason::ALL.iter().position(|&r| r == reason) {
            self.shed_reasons[i].incr();
        }
    }

    /// Counts an auction outcome. Owner thread only.
    pub fn outcome(&self, o: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|(k, _)| *k == o) {
            self.outcomes[i].incr();
        }
    }

    /// Value of one outcome counter.
    pub fn outcome_count(&self, o: Outcome) -> u64 {
        OUTCOMES
            .iter()
            .position(|(k, _)| *k == o)
            .map_or(0, |i| self.outcomes[i].get())
    }

    /// Every DSP's counters on this worker, by name (a copy of the list, for the QPS
    /// rebalancer's thread; never called on a worker).
    pub fn dsp_list(&self) -> Vec<(String, Arc<DspMetrics>)> {
        self.dsps.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The counters of DSP `name` on this worker, created on first use. Called when the DSP set
    /// changes, not per request.
    pub fn dsp(&self, name: &str) -> Arc<DspMetrics> {
        let mut list = self.dsps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = list.iter().find(|(n, _)| n == name) {
            return m.clone();
        }
        let name = if list.len() >= DSP_METRIC_NAMES_MAX {
            "_other"
        } else {
            name
        };
        if let Some((_, m)) = list.iter().find(|(n, _)| n == name) {
            return m.clone();
        }
        let m = Arc::new(DspMetrics::default());
        list.push((name.to_string(), m.clone()));
        m
    }
}

/// A per-DSP series: name, type, help, value.
type DspSeries = Series<DspSum>;

#[derive(Default)]
struct DspSum {
    calls: u64,
    bids: u64,
    wins: u64,
    no_bids: u64,
    call_errors: [u64; CALL_ERRORS.len()],
    decode_errors: u64,
    bad_status: u64,
    rejections: [u64; REJECT_REASONS.len()],
    latency: HistSnapshot,
    pool: PoolSum,
    breaker_state: u64,
    breaker_trips: u64,
    skipped: u64,
    policy_skips: [u64; SkipReason::ALL.len()],
    revenue: RevenueSum,
}

impl DspSum {
    /// Adds one worker's counters for the DSP; the breaker keeps the worst state seen.
    fn add(&mut self, m: &DspMetrics) {
        self.calls += m.calls.get();
        self.bids += m.bids.get();
        self.wins += m.wins.get();
        self.no_bids += m.no_bids.get();
        for (a, b) in self.call_errors.iter_mut().zip(m.call_errors.iter()) {
            *a += b.get();
        }
        self.decode_errors += m.decode_errors.get();
        self.bad_status += m.bad_status.get();
        for (a, b) in self.rejections.iter_mut().zip(m.rejections.iter()) {
            *a += b.get();
        }
        self.latency.merge(&m.latency.snapshot());
        self.pool.add(&m.pool);
        let state = m.breaker_state.load(Ordering::Relaxed);
        if breaker_severity(state) > breaker_severity(self.breaker_state) {
            self.breaker_state = state;
        }
        self.breaker_trips += m.breaker_trips.get();
        self.skipped += m.skipped.get();
        for (a, b) in self.policy_skips.iter_mut().zip(m.policy_skips.iter()) {
            *a += b.load(Ordering::Relaxed);
        }
        m.revenue.add_to(&mut self.revenue);
    }

    /// The call errors other than timeouts (those have their own family), with their names.
    fn errors_but_timeouts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CALL_ERRORS
            .iter()
            .zip(self.call_errors)
            .filter(|(e, _)| **e != CallFailure::Timeout)
            .map(|(e, n)| (e.as_str(), n))
            .chain([
                ("bad_status", self.bad_status),
                ("decode_error", self.decode_errors),
            ])
    }

    fn timeouts(&self) -> u64 {
        CALL_ERRORS
            .iter()
            .position(|&e| e == CallFailure::Timeout)
            .map_or(0, |i| self.call_errors[i])
    }
}

/// The per-DSP gauge values of [`DspMetrics::breaker_state`] and the `state` label of each.
const BREAKER_STATES: [(u64, &str); 3] = [(0, "closed"), (1, "open"), (2, "half_open")];

/// This binary's build.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    profile: if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    },
    arch: std::env::consts::ARCH,
    os: std::env::consts::OS,
};

/// Renders every worker's counters, summed, plus the server's connection counters, the
/// process's own figures and the build, in the Prometheus text format (version 0.0.4).
pub fn render(workers: &[WorkerMetrics], server: Option<&ServerStats>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    metrics_text::render_build_info(&mut out, &BUILD);
    render_requests(&mut out, workers);
    render_auctions(&mut out, workers);
    crate::notice_metrics::render(&mut out, workers.iter().map(|w| &w.notices));
    let dsps = dsp_sums(workers);
    render_dsp_counters(&mut out, &dsps);
    metrics_text::labeled_table(&mut out, "dsp", &dsps, &DSP_FAILURES);
    metrics_text::labeled_table(&mut out, "dsp", &dsps, &DSP_BREAKERS);
    crate::revenue::render(
        &mut out,
        dsps.iter().map(|(name, s)| {
            let mut label = String::new();
            escape_label(name, &mut label);
            (label, &s.revenue)
        }),
    );
    if let Some(st) = server {
        metrics_text::render_server(&mut out, st);
    }
    rtb_io::process::render(&mut out);
    out
}

/// `rtb_worker_info` and `rtb_requests_total`.
fn render_requests(out: &mut String, workers: &[WorkerMetrics]) {
    header(
        out,
        "rtb_worker_info",
        "gauge",
        "Worker threads and their IO driver.",
    );
    for (i, w) in workers.iter().enumerate() {
        let driver = w.driver.get().copied().unwrap_or("starting");
        let _ = writeln!(
            out,
            "rtb_worker_info{{worker=\"{i}\",driver=\"{driver}\"}} 1"
        );
    }
    header(
        out,
        "rtb_requests_total",
        "counter",
        "HTTP requests by route and status.",
    );
    for (r, (_, route)) in ROUTES.iter().enumerate() {
        for s in 0..=STATUSES.len() {
            let n: u64 = workers.iter().map(|w| w.requests[r][s].get()).sum();
            if n == 0 {
                continue;
            }
            let status = STATUSES.get(s).map_or("other".to_string(), u16::to_string);
            let _ = writeln!(
                out,
                "rtb_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
}

/// Auction outcomes, shed reasons and the auction duration histogram.
fn render_auctions(out: &mut String, workers: &[WorkerMetrics]) {
    header(out, "rtb_auctions_total", "counter", "Auctions by outcome.");
    for (i, (_, name)) in OUTCOMES.iter().enumerate() {
        let n: u64 = workers.iter().map(|w| w.outcomes[i].get()).sum();
        let _ = writeln!(out, "rtb_auctions_total{{outcome=\"{name}\"}} {n}");
    }
    header(
        out,
        "rtb_auctions_shed_total",
        "counter",
        "Auctions answered 204 at once, by reason: too_late (no DSP budget left), event_loop_lag (the worker runs late), in_flight (too many auctions waiting for DSPs).",
    );
    for (i, reason) in ShedReason::ALL.iter().enumerate() {
        let n: u64 = workers.iter().map(|w| w.shed_reasons[i].get()).sum();
        let _ = writeln!(
            out,
            "rtb_auctions_shed_total{{reason=\"{}\"}} {n}",
            reason.as_str()
        );
    }
    header(
        out,
        "rtb_auction_duration_seconds",
        "histogram",
        "Arrival to answer of auctions that called DSPs.",
    );
    let mut h = HistSnapshot::default();
    for w in workers {
        h.merge(&w.auction_latency.snapshot());
    }
    histogram(out, "rtb_auction_duration_seconds", "", &h);
    header(
        out,
        "rtb_test_auctions_total",
        "counter",
        "Auctions of test: 1 requests that called DSPs, by outcome (also in rtb_auctions_total): not billed, no win or loss notice fired.",
    );
    for (i, outcome) in ["won", "no_bid"].iter().enumerate() {
        let n: u64 = workers.iter().map(|w| w.test_auctions[i].get()).sum();
        let _ = writeln!(out, "rtb_test_auctions_total{{outcome=\"{outcome}\"}} {n}");
    }
}

/// Every DSP's counters summed over workers, by name.
fn dsp_sums(workers: &[WorkerMetrics]) -> BTreeMap<String, DspSum> {
    let mut dsps: BTreeMap<String, DspSum> = BTreeMap::new();
    for w in workers {
        let list = w.dsps.lock().unwrap_or_else(|p| p.into_inner());
        for (name, m) in list.iter() {
            dsps.entry(name.clone()).or_default().add(m);
        }
    }
    dsps
}

/// Calls, bids, wins, no-bids, skips, the call duration histogram and the pools.
fn render_dsp_counters(out: &mut String, dsps: &BTreeMap<String, DspSum>) {
    let simple: [DspSeries; 5] = [
        (
            "rtb_dsp_calls_total",
            "counter",
            "Calls made to each DSP.",
            |s| s.calls,
        ),
        (
            "rtb_dsp_bids_total",
            "counter",
            "Bids received from each DSP.",
            |s| s.bids,
        ),
        (
            "rtb_dsp_wins_total",
            "counter",
            "Impressions won by each DSP.",
            |s| s.wins,
        ),
        (
            "rtb_dsp_no_bids_total",
            "counter",
            "204 or empty answers from each DSP.",
            |s| s.no_bids,
        ),
        (
            "rtb_dsp_skipped_total",
            "counter",
            "Calls not made because the DSP's circuit breaker was open.",
            |s| s.skipped,
        ),
    ];
    metrics_text::series_table(out, "dsp", dsps, &simple);
    header(
        out,
        "rtb_dsp_call_duration_seconds",
        "histogram",
        "DSP call latency, start to answer or failure.",
    );
    let mut label = String::new();
    for (dsp, s) in dsps {
        label.clear();
        label.push_str("dsp=\"");
        escape_label(dsp, &mut label);
        label.push('"');
        histogram(out, "rtb_dsp_call_duration_seconds", &label, &s.latency);
    }
    let pools = dsps.iter().map(|(dsp, s)| (dsp.clone(), s.pool)).collect();
    rtb_io::pool_metrics::render(out, &pools);
}

/// Timeouts, other failures by kind, and rejected bids by reason. A timeout is counted in
/// `rtb_dsp_timeouts_total` only, so the two families add up to the failed calls.
const DSP_FAILURES: [LabeledSeries<DspSum>; 4] = [
    (
        "rtb_dsp_timeouts_total",
        "counter",
        "DSP calls that missed the deadline.",
        |s, line| line("", s.timeouts()),
    ),
    (
        "rtb_dsp_errors_total",
        "counter",
        "DSP call failures other than timeouts, by kind (transport errors, bad status, undecodable response).",
        |s, line| {
            for (kind, n) in s.errors_but_timeouts() {
                line(&format!(",kind=\"{kind}\""), n);
            }
        },
    ),
    (
        "rtb_dsp_policy_skipped_total",
        "counter",
        "Requests not sent to each DSP because its roster policy does not want them, by reason.",
        |s, line| {
            for (reason, &n) in SkipReason::ALL.iter().zip(&s.policy_skips) {
                line(&format!(",reason=\"{}\"", reason.label()), n);
            }
        },
    ),
    (
        "rtb_dsp_bid_rejections_total",
        "counter",
        "Bids that did not win, by reason.",
        |s, line| {
            for (reason, &n) in REJECT_REASONS.iter().zip(&s.rejections) {
                if n > 0 {
                    line(&format!(",reason=\"{reason}\""), n);
                }
            }
        },
    ),
];

/// One series per breaker state (1 for the worst state over workers, 0 for the others) and
/// the trips.
const DSP_BREAKERS: [LabeledSeries<DspSum>; 2] = [
    (
        "rtb_dsp_breaker_state",
        "gauge",
        "Circuit breaker state of each DSP, worst over workers (open > half_open > closed): 1 for the state it is in, 0 for the others.",
        |s, line| {
            for (gauge, state) in BREAKER_STATES {
                line(
                    &format!(",state=\"{state}\""),
                    u64::from(s.breaker_state == gauge),
                );
            }
        },
    ),
    (
        "rtb_dsp_breaker_trips_total",
        "counter",
        "Circuit breaker trips (closed to open), summed over workers.",
        |s, line| line("", s.breaker_trips),
    ),
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histogram_is_cumulative_with_inf() {
        let w = WorkerMetrics::default();
        w.auction_latency.observe(Duration::from_micros(40));
        w.auction_latency.observe(Duration::from_micros(700));
        w.auction_latency.observe(Duration::from_millis(500));
        let text = render(std::slice::from_ref(&w), None);
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"0.1\"} 2\n"));
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("rtb_auction_duration_seconds_count 3\n"));
    }

    #[test]
    fn sums_workers_and_labels_dsps() {
        let ws: Vec<WorkerMetrics> = (0..2).map(|_| WorkerMetrics::default()).collect();
        for w in &ws {
            w.request(Route::Auction, 200);
            w.outcome(Outcome::Won);
            let d = w.dsp("br\"aid");
            d.calls.incr();
            d.call_error(CallFailure::Timeout);
            d.rejection(RejectReason::BelowFloor);
            d.call_error(CallFailure::ConnectPaced);
            d.pool.drains[1].store(3, Ordering::Relaxed);
            d.revenue.won(crate::revenue::currency_code("USD"), 1.5);
        }
        ws[0].driver.set("epoll").unwrap();
        let text = render(&ws, None);
        assert!(text.contains("rtb_requests_total{route=\"auction\",status=\"200\"} 2\n"));
        assert!(text.contains("rtb_auctions_total{outcome=\"won\"} 2\n"));
        assert!(text.contains("rtb_dsp_calls_total{dsp=\"br\\\"aid\"} 2\n"));
        assert!(text.contains("rtb_dsp_timeouts_total{dsp=\"br\\\"aid\"} 2\n"));
        assert!(text.contains(
            "rtb_dsp_bid_rejections_total{dsp=\"br\\\"aid\",reason=\"below_floor\"} 2\n"
        ));
        assert!(text.contains("rtb_worker_info{worker=\"0\",driver=\"epoll\"} 1\n"));
        assert!(text.contains("rtb_dsp_clearing_price_sum{dsp=\"br\\\"aid\",currency=\"USD\"} 3\n"));
        assert!(text.contains("rtb_revenue_total{currency=\"USD\"} 0.003\n"));
        // A timeout is counted once: in the timeouts family, not again as an error kind.
        assert!(!text.contains("kind=\"timeout\""), "{text}");
        assert!(text.contains("rtb_dsp_errors_total{dsp=\"br\\\"aid\",kind=\"closed\"} 0\n"));
        assert!(text.contains(&format!(
            "rtb_build_info{{version=\"{}\",profile=\"",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("\nprocess_cpu_seconds_total "));
        assert!(text.contains("rtb_dsp_errors_total{dsp=\"br\\\"aid\",kind=\"connect_paced\"} 2\n"));
        assert!(text.contains("rtb_dsp_pool_drains_total{dsp=\"br\\\"aid\",result=\"reused\"} 6\n"));
        assert!(
            text.contains("rtb_dsp_pool_drains_total{dsp=\"br\\\"aid\",result=\"started\"} 0\n")
        );
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn breaker_state_is_one_series_per_state_worst_over_workers() {
        let ws: Vec<WorkerMetrics> = (0..3).map(|_| WorkerMetrics::default()).collect();
        let states = |ws: &[WorkerMetrics]| -> Vec<String> {
            render(ws, None)
                .lines()
                .filter(|l| l.starts_with("rtb_dsp_breaker_state{"))
                .map(str::to_string)
                .collect()
        };
        for w in &ws {
            w.dsp("a").breaker_state.store(0, Ordering::Relaxed);
        }
        let closed = [
            "rtb_dsp_breaker_state{dsp=\"a\",state=\"closed\"} 1",
            "rtb_dsp_breaker_state{dsp=\"a\",state=\"open\"} 0",
            "rtb_dsp_breaker_state{dsp=\"a\",state=\"half_open\"} 0",
        ];
        assert_eq!(states(&ws), closed);
        ws[1].dsp("a").breaker_state.store(2, Ordering::Relaxed);
        assert_eq!(
            states(&ws),
            [
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"closed\"} 0",
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"open\"} 0",
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"half_open\"} 1",
            ]
        );
        ws[2].dsp("a").breaker_state.store(1, Ordering::Relaxed);
        assert_eq!(
            states(&ws),
            [
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"closed\"} 0",
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"open\"} 1",
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"half_open\"} 0",
            ]
        );
    }

    #[test]
    fn breaker_state_labels_match_the_breakers_gauge() {
        use rtb_core::engine::breaker::State;
        let now = std::time::Instant::now();
        for (state, label) in [
            (State::Closed { failures: 0 }, "closed"),
            (State::Open { until: now }, "open"),
            (State::HalfOpen { probe_sent: now }, "half_open"),
        ] {
            let found = BREAKER_STATES.iter().find(|(g, _)| *g == state.gauge());
            assert_eq!(found.map(|(_, l)| *l), Some(label), "{state:?}");
        }
    }

    #[test]
    fn reject_reason_names_cover_the_enum() {
        use rtb_core::response::BidDefect;
        let all = [
            RejectReason::Defective(BidDefect::MissingPrice),
            RejectReason::AuctionIdMismatch,
            RejectReason::WrongCurrency,
            RejectReason::UnknownImp,
            RejectReason::InvalidPrice,
            RejectReason::PriceTooHigh,
            RejectReason::UnknownDeal,
            RejectReason::PrivateAuctionNeedsDeal,
            RejectReason::SeatNotAllowed,
            RejectReason::BelowFloor,
            RejectReason::BelowDealFloor,
            RejectReason::BlockedAdvertiser,
            RejectReason::BlockedCategory,
            RejectReason::LostToHigherBid,
            RejectReason::LostToDeal,
            RejectReason::MediaTypeNotOffered,
            RejectReason::SizeNotAllowed,
        ];
        // The ledger's schema lists the same names (its `reason` enum).
        let schema = include_str!("../../deploy/ledger/ledger-record.v2.schema.json");
        for r in all {
            assert!(REJECT_REASONS.contains(&r.as_str()), "{}", r.as_str());
            let quoted = format!("\"{}\"", r.as_str());
            assert!(schema.contains(&quoted), "ledger schema lacks {quoted}");
        }
    }
}
