//! Owns which series the exchange exposes, drawn from the counters every worker keeps
//! (`rtb_io::engine_shell::metrics`: [`WorkerMetrics`], and per DSP [`DspMetrics`]) and the
//! requests counted by route here ([`RouteCounts`]). The debug port sums them on scrape; the
//! text writers are `rtb_io::metrics_text`'s.

use std::{
    fmt::Write as _,
    sync::{atomic::Ordering, Arc},
};

use rtb_core::{
    engine::{breaker::State, CallFailure, NoticeKind, ShedReason},
    policy::SkipReason,
    revenue::RevenueSum,
};
use rtb_io::{
    engine_shell::metrics::{DspMetrics, WorkerMetrics, CALL_ERRORS, OUTCOMES, REJECT_REASONS},
    keyed_metrics::Keyed,
    limits::Counter,
    metrics_text::{
        self, escape_label, header, histogram, labeled, BuildInfo, HistSnapshot, Histogram,
        LabeledSeries, Series,
    },
    notify_metrics::KindSeries,
    pool_metrics::PoolSum,
    request_metrics::RequestCounts,
    ServerStats,
};

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

/// Route labels, in [`Route`] order.
const ROUTES: [&str; 6] = [
    "auction",
    "dsp_onboard",
    "dsp_list",
    "dsp_delete",
    "health",
    "other",
];

/// Orders breaker gauge values by severity (closed < half-open < open) so the scrape shows the
/// worst state any worker has.
fn breaker_severity(state: u64) -> u8 {
    match state {
        1 => 2,
        2 => 1,
        _ => 0,
    }
}

/// The kinds as `/metrics` shows them (`rtb_win_notices_total`, `rtb_loss_notices_total`), in
/// `NoticeKind::ALL` order.
pub const NOTICE_KINDS: [KindSeries; NoticeKind::ALL.len()] = [
    ("win", "Win notices by result."),
    ("loss", "Loss notices by result."),
];

/// One worker's requests by route and status (the handler counts them).
pub type RouteCounts = RequestCounts<{ ROUTES.len() }>;

/// One DSP's counters on every worker that has them.
type DspRow = Vec<Arc<DspMetrics>>;

/// One counter of a DSP summed over workers.
fn sum(row: &DspRow, get: impl Fn(&DspMetrics) -> u64) -> u64 {
    row.iter().map(|m| get(m)).sum()
}

/// The worst breaker state any worker has for the DSP.
fn worst_breaker_state(row: &DspRow) -> u64 {
    let states = row.iter().map(|m| m.breaker_state.load(Ordering::Relaxed));
    states.max_by_key(|&s| breaker_severity(s)).unwrap_or(0)
}

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

/// Renders every worker's counters and requests, summed, plus the server's connection
/// counters, the process's own figures and the build, in the Prometheus text format (version
/// 0.0.4).
pub fn render(
    workers: &[WorkerMetrics],
    requests: &[RouteCounts],
    server: Option<&ServerStats>,
) -> String {
    let mut out = String::with_capacity(16 * 1024);
    metrics_text::render_build_info(&mut out, &BUILD);
    render_requests(&mut out, workers, requests);
    render_auctions(&mut out, workers);
    let notices = workers.iter().map(|w| &w.notices);
    rtb_io::notify_metrics::render(&mut out, &NOTICE_KINDS, notices);
    let dsps = Keyed::rows(workers.iter().map(|w| &w.dsps));
    render_dsp_counters(&mut out, &dsps);
    metrics_text::labeled_table(&mut out, "dsp", &dsps, &DSP_FAILURES);
    metrics_text::labeled_table(&mut out, "dsp", &dsps, &DSP_BREAKERS);
    let revenue = dsps.iter().map(|(name, row)| {
        let mut sums = RevenueSum::new();
        row.iter().for_each(|m| m.revenue.add_to(&mut sums));
        let mut label = String::new();
        escape_label(name, &mut label);
        (label, sums)
    });
    let revenue: Vec<(String, RevenueSum)> = revenue.collect();
    crate::revenue::render(&mut out, revenue.iter().map(|(l, s)| (l.clone(), s)));
    if let Some(st) = server {
        metrics_text::render_server(&mut out, st);
    }
    rtb_io::process::render(&mut out);
    out
}

/// `rtb_worker_info` and `rtb_requests_total`.
fn render_requests(out: &mut String, workers: &[WorkerMetrics], requests: &[RouteCounts]) {
    let (name, help) = ("rtb_worker_info", "Worker threads and their IO driver.");
    header(out, name, "gauge", help);
    for (i, w) in workers.iter().enumerate() {
        let driver = w.driver.get().copied().unwrap_or("starting");
        let _ = writeln!(out, "{name}{{worker=\"{i}\",driver=\"{driver}\"}} 1");
    }
    rtb_io::request_metrics::render(out, &ROUTES, requests.iter());
}

/// Auction outcomes, shed reasons and the auction duration histogram.
fn render_auctions(out: &mut String, workers: &[WorkerMetrics]) {
    let total = |get: &dyn Fn(&WorkerMetrics) -> &Counter| -> u64 {
        workers.iter().map(|w| get(w).get()).sum()
    };
    let family = ("rtb_auctions_total", "counter", "Auctions by outcome.");
    let outcomes = OUTCOMES.iter().enumerate();
    labeled(
        out,
        family,
        "outcome",
        outcomes.map(|(i, name)| (*name, total(&|w| &w.outcomes[i]))),
    );
    let family = (
        "rtb_auctions_shed_total",
        "counter",
        "Auctions answered 204 at once, by reason: too_late (no DSP budget left), event_loop_lag (the worker runs late), in_flight (too many auctions waiting for DSPs).",
    );
    let reasons = ShedReason::ALL.iter().enumerate();
    let lines = reasons.map(|(i, r)| (r.as_str(), total(&|w| &w.shed_reasons[i])));
    labeled(out, family, "reason", lines);
    let help = "Arrival to answer of auctions that called DSPs (arrival: the kernel's receive stamp with --kernel-arrival).";
    let name = "rtb_auction_duration_seconds";
    summed_histogram(out, name, help, workers, |w| &w.auction_latency);
    let help = "How long bid requests waited unread in the kernel's socket buffer (--kernel-arrival; all zero without it).";
    let name = "rtb_request_kernel_wait_seconds";
    summed_histogram(out, name, help, workers, |w| &w.kernel_wait);
    let help = "Arrival to answer of every bid request, sheds, invalid and no-DSP answers included (arrival: the kernel's receive stamp with --kernel-arrival).";
    let name = "rtb_bid_request_duration_seconds";
    summed_histogram(out, name, help, workers, |w| &w.request_latency);
    let family = (
        "rtb_test_auctions_total",
        "counter",
        "Auctions of test: 1 requests that called DSPs, by outcome (also in rtb_auctions_total): not billed, no win or loss notice fired.",
    );
    let outcomes = ["won", "no_bid"].into_iter().enumerate();
    let lines = outcomes.map(|(i, o)| (o, total(&|w| &w.test_auctions[i])));
    labeled(out, family, "outcome", lines);
}

/// One histogram family: `field` of every worker, summed.
fn summed_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    workers: &[WorkerMetrics],
    field: fn(&WorkerMetrics) -> &Histogram,
) {
    header(out, name, "histogram", help);
    let mut h = HistSnapshot::default();
    workers.iter().for_each(|w| h.add(field(w)));
    histogram(out, name, "", &h);
}

/// Calls, bids, wins, no-bids and skips of each DSP.
const DSP_COUNTERS: [Series<DspRow>; 5] = [
    (
        "rtb_dsp_calls_total",
        "counter",
        "Calls made to each DSP.",
        |s| sum(s, |m| m.calls.get()),
    ),
    (
        "rtb_dsp_bids_total",
        "counter",
        "Bids received from each DSP.",
        |s| sum(s, |m| m.bids.get()),
    ),
    (
        "rtb_dsp_wins_total",
        "counter",
        "Impressions won by each DSP.",
        |s| sum(s, |m| m.wins.get()),
    ),
    (
        "rtb_dsp_no_bids_total",
        "counter",
        "204 or empty answers from each DSP.",
        |s| sum(s, |m| m.no_bids.get()),
    ),
    (
        "rtb_dsp_skipped_total",
        "counter",
        "Calls not made because the DSP's circuit breaker was open.",
        |s| sum(s, |m| m.skipped.get()),
    ),
];

/// The counters of [`DSP_COUNTERS`], the call duration histogram and the pools.
fn render_dsp_counters(out: &mut String, dsps: &std::collections::BTreeMap<String, DspRow>) {
    metrics_text::series_table(out, "dsp", dsps, &DSP_COUNTERS);
    let name = "rtb_dsp_call_duration_seconds";
    let help = "DSP call latency, start to answer or failure.";
    header(out, name, "histogram", help);
    let mut label = String::new();
    for (dsp, row) in dsps {
        label.clear();
        label.push_str("dsp=\"");
        escape_label(dsp, &mut label);
        label.push('"');
        let mut h = HistSnapshot::default();
        row.iter().for_each(|m| h.add(&m.latency));
        histogram(out, name, &label, &h);
    }
    let pools = dsps.iter().map(|(dsp, row)| {
        let mut pool = PoolSum::default();
        row.iter().for_each(|m| pool.add(&m.pool));
        (dsp.clone(), pool)
    });
    rtb_io::pool_metrics::render(out, &pools.collect());
}

/// Timeouts, other failures by kind, and rejected bids by reason. A timeout is counted in
/// `rtb_dsp_timeouts_total` only, so the two families add up to the failed calls.
const DSP_FAILURES: [LabeledSeries<DspRow>; 4] = [
    (
        "rtb_dsp_timeouts_total",
        "counter",
        "DSP calls that missed the deadline.",
        |s, line| {
            let timeout = CALL_ERRORS.iter().position(|&e| e == CallFailure::Timeout);
            line("", timeout.map_or(0, |i| sum(s, |m| m.call_errors[i].get())));
        },
    ),
    (
        "rtb_dsp_errors_total",
        "counter",
        "DSP call failures other than timeouts, by kind (transport errors, bad status, undecodable response).",
        |s, line| {
            for (i, kind) in CALL_ERRORS.iter().enumerate() {
                if *kind != CallFailure::Timeout {
                    let n = sum(s, |m| m.call_errors[i].get());
                    line(&format!(",kind=\"{}\"", kind.as_str()), n);
                }
            }
            line(",kind=\"bad_status\"", sum(s, |m| m.bad_status.get()));
            line(",kind=\"decode_error\"", sum(s, |m| m.decode_errors.get()));
        },
    ),
    (
        "rtb_dsp_policy_skipped_total",
        "counter",
        "Requests not sent to each DSP because its roster policy does not want them, by reason.",
        |s, line| {
            for (i, reason) in SkipReason::ALL.iter().enumerate() {
                let n = sum(s, |m| m.policy_skips[i].load(Ordering::Relaxed));
                line(&format!(",reason=\"{}\"", reason.label()), n);
            }
        },
    ),
    (
        "rtb_dsp_bid_rejections_total",
        "counter",
        "Bids that did not win, by reason.",
        |s, line| {
            for (i, reason) in REJECT_REASONS.iter().enumerate() {
                let n = sum(s, |m| m.rejections[i].get());
                if n > 0 {
                    line(&format!(",reason=\"{reason}\""), n);
                }
            }
        },
    ),
];

/// One series per breaker state (1 for the worst state over workers, 0 for the others; a
/// state's gauge value is its index in `State::NAMES`) and the trips.
const DSP_BREAKERS: [LabeledSeries<DspRow>; 2] = [
    (
        "rtb_dsp_breaker_state",
        "gauge",
        "Circuit breaker state of each DSP, worst over workers (open > half_open > closed): 1 for the state it is in, 0 for the others.",
        |s, line| {
            let worst = worst_breaker_state(s);
            for (gauge, state) in (0..).zip(State::NAMES) {
                line(&format!(",state=\"{state}\""), u64::from(worst == gauge));
            }
        },
    ),
    (
        "rtb_dsp_breaker_trips_total",
        "counter",
        "Circuit breaker trips (closed to open), summed over workers.",
        |s, line| line("", sum(s, |m| m.breaker_trips.get())),
    ),
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use rtb_core::RejectReason;
    use rtb_io::engine_shell::{metrics::Outcome, revenue::currency_code};

    #[test]
    fn kinds_are_rendered_by_their_names() {
        for (kind, (label, _)) in NoticeKind::ALL.iter().zip(NOTICE_KINDS) {
            assert_eq!(kind.as_str(), label);
        }
    }

    #[test]
    fn histogram_is_cumulative_with_inf() {
        let w = WorkerMetrics::default();
        w.auction_latency.observe(Duration::from_micros(40));
        w.auction_latency.observe(Duration::from_micros(700));
        w.auction_latency.observe(Duration::from_millis(500));
        let text = render(std::slice::from_ref(&w), &[], None);
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"0.1\"} 2\n"));
        assert!(text.contains("rtb_auction_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("rtb_auction_duration_seconds_count 3\n"));
    }

    #[test]
    fn sums_workers_and_labels_dsps() {
        let ws: Vec<WorkerMetrics> = (0..2).map(|_| WorkerMetrics::default()).collect();
        let requests: Vec<RouteCounts> = (0..2).map(|_| RouteCounts::default()).collect();
        for (w, r) in ws.iter().zip(&requests) {
            r.count(Route::Auction as usize, 200);
            w.outcome(Outcome::Won);
            let d = w.dsps.get("br\"aid");
            d.calls.incr();
            d.call_error(CallFailure::Timeout);
            d.rejection(RejectReason::BelowFloor);
            d.call_error(CallFailure::ConnectPaced);
            d.pool.drains[1].store(3, Ordering::Relaxed);
            d.revenue.won(currency_code("USD"), 1.5);
        }
        ws[0].driver.set("epoll").unwrap();
        let text = render(&ws, &requests, None);
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
            render(ws, &[], None)
                .lines()
                .filter(|l| l.starts_with("rtb_dsp_breaker_state{"))
                .map(str::to_string)
                .collect()
        };
        for w in &ws {
            w.dsps.get("a").breaker_state.store(0, Ordering::Relaxed);
        }
        let closed = [
            "rtb_dsp_breaker_state{dsp=\"a\",state=\"closed\"} 1",
            "rtb_dsp_breaker_state{dsp=\"a\",state=\"open\"} 0",
            "rtb_dsp_breaker_state{dsp=\"a\",state=\"half_open\"} 0",
        ];
        assert_eq!(states(&ws), closed);
        ws[1]
            .dsps
            .get("a")
            .breaker_state
            .store(2, Ordering::Relaxed);
        assert_eq!(
            states(&ws),
            [
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"closed\"} 0",
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"open\"} 0",
                "rtb_dsp_breaker_state{dsp=\"a\",state=\"half_open\"} 1",
            ]
        );
        ws[2]
            .dsps
            .get("a")
            .breaker_state
            .store(1, Ordering::Relaxed);
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
        let now = std::time::Instant::now();
        for (state, label) in [
            (State::Closed { failures: 0 }, "closed"),
            (State::Open { until: now }, "open"),
            (State::HalfOpen { probe_sent: now }, "half_open"),
        ] {
            let found = State::NAMES.get(state.gauge() as usize);
            assert_eq!(found, Some(&label), "{state:?}");
            assert_eq!(state.as_str(), label);
        }
    }
}
