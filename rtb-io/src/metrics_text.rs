//! Owns the metric primitives a thread-per-core binary counts with and the Prometheus text
//! exposition (version 0.0.4) it renders them in: the single-writer latency [`Histogram`] and
//! its summed [`HistSnapshot`], the family [`header`], label escaping, histogram lines, a
//! per-label series table, `rtb_build_info` and the HTTP server's own counters
//! ([`ServerStats`]). Which series a binary has stays with the binary.
//!
//! Why not a Prometheus crate: `prometheus` and `metrics` register series in shared maps and
//! increment shared atomics (a locked read-modify-write on a cache line every worker touches);
//! here every counter has one writer thread (relaxed load + store, see [`Counter`]) and the
//! scrape sums the workers, so an increment costs what a plain add does.

use std::{
    collections::BTreeMap,
    fmt::{Display, Write as _},
    time::Duration,
};

use crate::{limits::Counter, ServerStats};

/// Histogram bucket upper bounds, microseconds. 5 and 15 ms are the exchange's tail targets at
/// half load (p99 and p99.9), 80 ms its deadline cap and 85 ms the cap plus the 5 ms a client's
/// answer may still take on the way back: with a bound at each, the share of answers over a
/// target is read from the counters exactly, not interpolated between buckets.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 15_000, 25_000, 50_000, 80_000, 85_000, 100_000,
];

/// `# HELP` and `# TYPE` lines of one metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends `v` escaped for a label value (backslash, double quote, newline).
pub fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A latency histogram with [`LATENCY_BUCKETS_US`] bounds; single writer.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; the last slot is +Inf.
    buckets: [Counter; LATENCY_BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    /// Records one observation. Owner thread only.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].incr();
        self.sum_us.add(us);
    }

    /// The counts now; any thread.
    pub fn snapshot(&self) -> HistSnapshot {
        let mut s = HistSnapshot::default();
        s.add(self);
        s
    }
}

/// A histogram's counts read at one moment, or several histograms' counts summed.
#[derive(Debug, Default, Clone, Copy)]
pub struct HistSnapshot {
    buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: u64,
}

impl HistSnapshot {
    /// Adds the live counts of `h`.
    pub fn add(&mut self, h: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(h.buckets.iter()) {
            *a += b.get();
        }
        self.sum_us += h.sum_us.get();
    }

    /// Adds another snapshot's counts.
    pub fn merge(&mut self, o: &HistSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }
}

/// Writes the `_bucket` (cumulative, `le` in seconds), `_sum` and `_count` lines of `h`;
/// `labels` is the label list without braces (`dsp="a"`) or empty.
pub fn histogram(out: &mut String, name: &str, labels: &str, h: &HistSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += h.buckets[i];
        let le = *b as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    cumulative += h.buckets[LATENCY_BUCKETS_US.len()];
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

/// A family of one unlabelled series: header, then `name value`.
pub fn single(out: &mut String, (name, kind, help): (&str, &str, &str), value: impl Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A family with one label of fixed values: header, then `name{label="value"} n` for every
/// `(value, n)` of `lines` (values are not escaped: they are the binary's own names).
pub fn labeled<'a>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    label: &str,
    lines: impl IntoIterator<Item = (&'a str, u64)>,
) {
    header(out, name, kind, help);
    for (value, n) in lines {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// One family of a series table: name, type, help and the value read from a row.
pub type Series<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Writes `name{<label>="<key>"<extra>} value` for every row of `rows` (keys escaped, in key
/// order) and every `(extra, value)` that `each` reports for it; `extra` is empty or starts
/// with a comma.
pub fn label_lines<T, F>(
    out: &mut String,
    name: &str,
    label: &str,
    rows: &BTreeMap<String, T>,
    mut each: F,
) where
    F: FnMut(&T, &mut dyn FnMut(&str, u64)),
{
    let mut value = String::new();
    for (key, row) in rows {
        value.clear();
        escape_label(key, &mut value);
        each(row, &mut |extra, n| {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"{extra}}} {n}");
        });
    }
}

/// Each family of `table` (header, then one line per row labelled `label`), in table order.
pub fn series_table<T>(
    out: &mut String,
    label: &str,
    rows: &BTreeMap<String, T>,
    table: &[Series<T>],
) {
    for (name, kind, help, get) in table {
        header(out, name, kind, help);
        label_lines(out, name, label, rows, |row, line| line("", get(row)));
    }
}

/// One family of a series table with labels of its own: name, type, help, and the lines of a
/// row, each reported as `(extra labels, value)` (see [`label_lines`]).
pub type LabeledSeries<T> = (
    &'static str,
    &'static str,
    &'static str,
    fn(&T, &mut dyn FnMut(&str, u64)),
);

/// Each family of `table` (header, then the lines of every row labelled `label`), in table
/// order.
pub fn labeled_table<T>(
    out: &mut String,
    label: &str,
    rows: &BTreeMap<String, T>,
    table: &[LabeledSeries<T>],
) {
    for (name, kind, help, lines) in table {
        header(out, name, kind, help);
        label_lines(out, name, label, rows, lines);
    }
}

/// What a build says about itself in `rtb_build_info`.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// `release` or `debug` (whether debug assertions are on).
    pub profile: &'static str,
    /// Target architecture.
    pub arch: &'static str,
    /// Target OS.
    pub os: &'static str,
}

/// Appends `rtb_build_info`: 1, with the build's version, profile and target as labels.
pub fn render_build_info(out: &mut String, b: &BuildInfo) {
    header(
        out,
        "rtb_build_info",
        "gauge",
        "The running build: 1, with its version, profile and target as labels.",
    );
    let _ = writeln!(
        out,
        "rtb_build_info{{version=\"{}\",profile=\"{}\",arch=\"{}\",os=\"{}\"}} 1",
        b.version, b.profile, b.arch, b.os
    );
}

/// Appends the HTTP layer's connection, rejection and handler-panic counters.
pub fn render_server(out: &mut String, st: &ServerStats) {
    let gauges: [(&str, &str, &str, u64); 2] = [
        (
            "rtb_connections_open",
            "gauge",
            "Client connections open now.",
            st.connections_open,
        ),
        (
            "rtb_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            st.connections_accepted,
        ),
    ];
    for (name, kind, help, n) in gauges {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {n}");
    }
    header(
        out,
        "rtb_http_rejected_total",
        "counter",
        "Requests refused by the HTTP layer before the handler.",
    );
    for (reason, n) in [
        ("bad_request", st.rejected_bad_request),
        ("timeout", st.rejected_timeout),
        ("length_required", st.rejected_length_required),
        ("body_too_large", st.rejected_body_too_large),
        ("head_too_large", st.rejected_head_too_large),
        ("bad_version", st.rejected_bad_version),
        ("unsupported_encoding", st.rejected_unsupported_encoding),
        ("over_connection_limit", st.connections_rejected_over_limit),
    ] {
        let _ = writeln!(out, "rtb_http_rejected_total{{reason=\"{reason}\"}} {n}");
    }
    header(
        out,
        "rtb_handler_panics_total",
        "counter",
        "Handler panics caught by the HTTP layer (answered 500; should stay 0).",
    );
    let _ = writeln!(out, "rtb_handler_panics_total {}", st.handler_panics);
    header(
        out,
        "rtb_requests_waited_turn_total",
        "counter",
        "Requests that queued for the worker's turn budget (spent, or others queued ahead).",
    );
    let _ = writeln!(
        out,
        "rtb_requests_waited_turn_total {}",
        st.requests_waited_turn
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_lines_are_cumulative_in_seconds_with_inf() {
        let h = Histogram::default();
        for us in [40, 700, 500_000] {
            h.observe(Duration::from_micros(us));
        }
        let mut text = String::new();
        histogram(&mut text, "x", "dsp=\"a\"", &h.snapshot());
        assert!(text.contains("x_bucket{dsp=\"a\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("x_bucket{dsp=\"a\",le=\"0.1\"} 2\n"));
        assert!(text.contains("x_bucket{dsp=\"a\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_sum{dsp=\"a\"} 0.50074\n"));
        assert!(text.contains("x_count{dsp=\"a\"} 3\n"));
    }

    #[test]
    fn series_table_escapes_keys_and_keeps_table_order() {
        let rows: BTreeMap<String, u64> = [("b\"\\\n".to_string(), 2), ("a".to_string(), 1)]
            .into_iter()
            .collect();
        let table: [Series<u64>; 2] = [
            ("second_total", "counter", "Two.", |n| *n * 2),
            ("first", "gauge", "One.", |n| *n),
        ];
        let mut text = String::new();
        series_table(&mut text, "dsp", &rows, &table);
        let expected = "# HELP second_total Two.\n# TYPE second_total counter\n\
                        second_total{dsp=\"a\"} 2\nsecond_total{dsp=\"b\\\"\\\\\\n\"} 4\n\
                        # HELP first One.\n# TYPE first gauge\n\
                        first{dsp=\"a\"} 1\nfirst{dsp=\"b\\\"\\\\\\n\"} 2\n";
        assert_eq!(text, expected);
    }
}
