//! Owns the simulator's counters, shared by its workers, and their Prometheus text rendering.
//!
//! Relaxed atomics shared across workers: a simulated DSP is not the hot path under test, and
//! one shared set keeps `/metrics` consistent whichever worker serves it.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

/// Loss reason codes counted apart; any others are counted under one `other` series, so a
/// hostile caller cannot grow the map without bound.
const LOSS_REASONS_MAX: usize = 64;
/// Labels of [`Metrics::onboard_results`], in index order.
pub const ONBOARD_RESULTS: [&str; 3] = ["accepted", "refused", "failed"];
/// Won prices are summed in millionths of a CPM unit, so the sum is an integer.
const PRICE_MICROS: f64 = 1_000_000.0;

/// Kinds of injected failure, in the order the rates are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Never answer.
    Hang,
    /// Close the connection without answering.
    Reset,
    /// Answer 500.
    Error500,
    /// Answer 200 with a truncated JSON body.
    Malformed,
}

impl Failure {
    /// All kinds, in check order.
    pub const ALL: [Failure; 4] = [
        Failure::Hang,
        Failure::Reset,
        Failure::Error500,
        Failure::Malformed,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Hang => "hang",
            Failure::Reset => "reset",
            Failure::Error500 => "error500",
            Failure::Malformed => "malformed",
        }
    }
}

/// Counters of one DSP process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bid requests received (valid or not).
    pub requests: AtomicU64,
    /// Requests rejected with 400.
    pub invalid: AtomicU64,
    /// Responses carrying bids.
    pub responses_with_bids: AtomicU64,
    /// Bids sent (one per impression bid on).
    pub bids: AtomicU64,
    /// 204 answers for a bid-rate miss.
    pub no_bids: AtomicU64,
    /// 204 answers because the sampled latency would miss `tmax`.
    pub tmax_skips: AtomicU64,
    /// Win notices counted.
    pub wins: AtomicU64,
    /// Sum of won prices, micros.
    pub win_value_micros: AtomicU64,
    /// Win notices that could not be parsed.
    pub bad_win_notices: AtomicU64,
    /// Loss notices received, by OpenRTB loss reason code (`None`: beyond the cap).
    losses: Mutex<BTreeMap<Option<u16>, u64>>,
    /// Loss notices without a numeric reason.
    pub bad_loss_notices: AtomicU64,
    /// Bid requests that came gzip-compressed (`Content-Encoding: gzip`).
    pub gzip_requests: AtomicU64,
    /// Bid responses sent gzip-compressed.
    pub gzip_responses: AtomicU64,
    failures: [AtomicU64; 4],
    /// Exchange addresses the onboarding endpoints resolve to now (a gauge, all endpoints).
    pub onboard_targets: AtomicU64,
    /// Onboarding POSTs per address by result: accepted (2xx), refused (other status), failed.
    pub onboard_results: [AtomicU64; 3],
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an injected failure.
    pub fn failure(&self, kind: Failure) {
        Self::incr(&self.failures[kind as usize]);
    }

    /// Injected failures of `kind` so far.
    pub fn failures(&self, kind: Failure) -> u64 {
        self.failures[kind as usize].load(Ordering::Relaxed)
    }

    /// Counts a win at `price`.
    pub fn win(&self, price: f64) {
        Self::incr(&self.wins);
        let micros = (price.max(0.0) * PRICE_MICROS).round() as u64;
        self.win_value_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a loss notice with its reason code.
    pub fn loss(&self, reason: u16) {
        let mut losses = self.losses.lock().unwrap_or_else(|p| p.into_inner());
        let key = if losses.len() < LOSS_REASONS_MAX || losses.contains_key(&Some(reason)) {
            Some(reason)
        } else {
            None
        };
        *losses.entry(key).or_default() += 1;
    }

    fn render_losses(&self, dsp: &str, out: &mut String) {
        let name = "rtb_dspsim_loss_notices_total";
        let _ = writeln!(
            out,
            "# HELP {name} Loss notices received, by OpenRTB loss reason code.\n# TYPE {name} counter"
        );
        let losses = self.losses.lock().unwrap_or_else(|p| p.into_inner());
        for (reason, n) in losses.iter() {
            let reason = reason.map_or("other".to_string(), |r| r.to_string());
            let _ = writeln!(out, "{name}{{dsp=\"{dsp}\",reason=\"{reason}\"}} {n}");
        }
    }

    fn render_onboarding(&self, dsp: &str, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP rtb_dspsim_onboard_targets Exchange addresses the onboarding endpoints resolve to.\n# TYPE rtb_dspsim_onboard_targets gauge\nrtb_dspsim_onboard_targets{{dsp=\"{dsp}\"}} {}",
            self.onboard_targets.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rtb_dspsim_onboard_total Onboarding POSTs per exchange address, by result.\n# TYPE rtb_dspsim_onboard_total counter"
        );
        for (result, n) in ONBOARD_RESULTS.iter().zip(&self.onboard_results) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "rtb_dspsim_onboard_total{{dsp=\"{dsp}\",result=\"{result}\"}} {n}"
            );
        }
    }

    /// Prometheus text exposition, every series labelled with the DSP name.
    pub fn render(&self, dsp: &str) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(1024);
        let mut counter = |name: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{dsp=\"{dsp}\"}} {value}");
        };
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "rtb_dspsim_requests_total",
                "Bid requests received.",
                &self.requests,
            ),
            (
                "rtb_dspsim_invalid_requests_total",
                "Bid requests answered 400.",
                &self.invalid,
            ),
            (
                "rtb_dspsim_bid_responses_total",
                "Responses carrying bids.",
                &self.responses_with_bids,
            ),
            ("rtb_dspsim_bids_total", "Bids sent.", &self.bids),
            (
                "rtb_dspsim_no_bids_total",
                "No-bid (204) answers by bid-rate.",
                &self.no_bids,
            ),
            (
                "rtb_dspsim_tmax_skips_total",
                "204 answers because latency would exceed tmax.",
                &self.tmax_skips,
            ),
            ("rtb_dspsim_wins_total", "Win notices received.", &self.wins),
            (
                "rtb_dspsim_bad_win_notices_total",
                "Win notices without a parsable price.",
                &self.bad_win_notices,
            ),
            (
                "rtb_dspsim_bad_loss_notices_total",
                "Loss notices without a numeric reason.",
                &self.bad_loss_notices,
            ),
            (
                "rtb_dspsim_gzip_requests_total",
                "Bid requests received gzip-compressed.",
                &self.gzip_requests,
            ),
            (
                "rtb_dspsim_gzip_responses_total",
                "Bid responses sent gzip-compressed (--gzip).",
                &self.gzip_responses,
            ),
        ];
        for (name, help, value) in counters {
            counter(name, help, get(value).to_string());
        }
        counter(
            "rtb_dspsim_win_value_sum",
            "Sum of won clearing prices (CPM).",
            format!("{}", get(&self.win_value_micros) as f64 / PRICE_MICROS),
        );
        self.render_losses(dsp, &mut out);
        self.render_onboarding(dsp, &mut out);
        let _ = writeln!(
            out,
            "# HELP rtb_dspsim_failures_injected_total Failures injected on purpose.\n# TYPE rtb_dspsim_failures_injected_total counter"
        );
        for kind in Failure::ALL {
            let _ = writeln!(
                out,
                "rtb_dspsim_failures_injected_total{{dsp=\"{dsp}\",kind=\"{}\"}} {}",
                kind.as_str(),
                self.failures(kind)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        Metrics::incr(&m.requests);
        m.win(1.25);
        m.win(0.5);
        m.failure(Failure::Reset);
        m.loss(102);
        m.loss(102);
        m.loss(100);
        let text = m.render("braid");
        assert!(text.contains("rtb_dspsim_loss_notices_total{dsp=\"braid\",reason=\"102\"} 2\n"));
        assert!(text.contains("rtb_dspsim_loss_notices_total{dsp=\"braid\",reason=\"100\"} 1\n"));
        assert!(
            text.contains("rtb_dspsim_requests_total{dsp=\"braid\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("rtb_dspsim_wins_total{dsp=\"braid\"} 2\n"));
        assert!(text.contains("rtb_dspsim_win_value_sum{dsp=\"braid\"} 1.75\n"));
        assert!(text.contains("kind=\"reset\"} 1\n"));
        assert!(text.contains("kind=\"hang\"} 0\n"));
    }
}
