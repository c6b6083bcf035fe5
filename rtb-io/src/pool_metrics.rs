//! Owns a connection pool's figures as metrics: the per-worker mirror of an [`Upstream`]'s
//! counters ([`PoolMetrics`], written by the pool's worker after each call and read by the
//! scrape), their sum over workers ([`PoolSum`]) and the `rtb_dsp_pool_*` families rendered
//! from it, one series per pool label value.
//!
//! A pool's own counters start from zero when the pool is replaced (a re-onboarded upstream);
//! the mirror adds deltas ([`PoolCounted`] remembers what it already added), so the `_total`
//! series stay monotonic.

use std::{
    cell::Cell,
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{
    metrics_text::{header, label_lines, series_table, Series},
    Upstream, DRAIN_RESULTS,
};

/// A pool's counters as last mirrored into its [`PoolMetrics`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PoolCounted {
    /// Connections opened.
    pub connects: u64,
    /// Connects that failed (their address then backs off).
    pub connect_failures: u64,
    /// Calls on a reused connection.
    pub reuses: u64,
    /// Reusable connections closed because the pool held its size target already.
    pub shrunk: u64,
    /// Timed-out calls' connections by fate, in [`DRAIN_RESULTS`] order.
    pub drains: [u64; DRAIN_RESULTS.len()],
}

/// One worker's figures for its pool to one upstream; one writer (the worker), any reader.
#[derive(Debug, Default)]
pub struct PoolMetrics {
    /// Connections opened (mirrors the pool's counter).
    pub connects: AtomicU64,
    /// Connects that failed, each putting its address in back-off (mirrors the pool's counter).
    pub connect_failures: AtomicU64,
    /// Calls served on a reused pooled connection (mirrors the pool's counter).
    pub reuses: AtomicU64,
    /// Reusable connections closed because the pool held its size target already (mirrors
    /// the pool's counter).
    pub shrunk: AtomicU64,
    /// Idle pooled connections after the last call (gauge).
    pub idle: AtomicU64,
    /// Connections open after the last call: idle, in a call or draining (gauge).
    pub open: AtomicU64,
    /// The pool's size target after the last call (gauge; see [`crate::client::sizing`]).
    pub target: AtomicU64,
    /// Timed-out calls' connections by fate, in [`DRAIN_RESULTS`] order (mirrors the pool's
    /// counters).
    pub drains: [AtomicU64; DRAIN_RESULTS.len()],
}

impl PoolMetrics {
    /// Adds what `pool` counted since the last mirror (`counted`, updated) to the `_total`
    /// counters and sets the gauges. Owner thread only.
    pub fn mirror(&self, pool: &Upstream, counted: &Cell<PoolCounted>) {
        let stats = &pool.stats;
        let now = PoolCounted {
            connects: stats.connects.get(),
            connect_failures: stats.connect_failures.get(),
            reuses: stats.reuses.get(),
            shrunk: stats.shrunk.get(),
            drains: stats.drain_counts(),
        };
        let before = counted.get();
        // Single writer (this worker): load + store, no read-modify-write needed.
        let add = |total: &AtomicU64, now: u64, counted: u64| {
            let delta = now.saturating_sub(counted);
            total.store(total.load(Ordering::Relaxed) + delta, Ordering::Relaxed)
        };
        add(&self.connects, now.connects, before.connects);
        add(
            &self.connect_failures,
            now.connect_failures,
            before.connect_failures,
        );
        add(&self.reuses, now.reuses, before.reuses);
        add(&self.shrunk, now.shrunk, before.shrunk);
        for ((total, now), before) in self.drains.iter().zip(now.drains).zip(before.drains) {
            add(total, now, before);
        }
        counted.set(now);
        self.idle.store(pool.idle_count() as u64, Ordering::Relaxed);
        self.open.store(pool.open_count() as u64, Ordering::Relaxed);
        self.target
            .store(pool.target_connections() as u64, Ordering::Relaxed);
    }
}

/// [`PoolMetrics`] summed over workers.
#[derive(Debug, Default, Clone, Copy)]
pub struct PoolSum {
    connects: u64,
    connect_failures: u64,
    reuses: u64,
    shrunk: u64,
    idle: u64,
    open: u64,
    target: u64,
    drains: [u64; DRAIN_RESULTS.len()],
}

impl PoolSum {
    /// Adds one worker's figures.
    pub fn add(&mut self, m: &PoolMetrics) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.connects += get(&m.connects);
        self.connect_failures += get(&m.connect_failures);
        self.reuses += get(&m.reuses);
        self.shrunk += get(&m.shrunk);
        self.idle += get(&m.idle);
        self.open += get(&m.open);
        self.target += get(&m.target);
        for (a, b) in self.drains.iter_mut().zip(m.drains.iter()) {
            *a += get(b);
        }
    }
}

/// The pools' families without extra labels, in output order.
const POOL_SERIES: [Series<PoolSum>; 7] = [
    (
        "rtb_dsp_pool_connections_opened_total",
        "counter",
        "Connections opened to each DSP.",
        |s| s.connects,
    ),
    (
        "rtb_dsp_pool_connect_failures_total",
        "counter",
        "Connects to each DSP that failed; the address is then skipped for a while.",
        |s| s.connect_failures,
    ),
    (
        "rtb_dsp_pool_connections_reused_total",
        "counter",
        "Calls served on a reused pooled connection.",
        |s| s.reuses,
    ),
    (
        "rtb_dsp_pool_connections_shrunk_total",
        "counter",
        "Reusable connections to each DSP closed because the pool held its size target.",
        |s| s.shrunk,
    ),
    (
        "rtb_dsp_pool_connections_idle",
        "gauge",
        "Idle pooled connections to each DSP.",
        |s| s.idle,
    ),
    (
        "rtb_dsp_pool_connections_open",
        "gauge",
        "Connections open to each DSP: idle, in a call, or draining a late answer.",
        |s| s.open,
    ),
    (
        "rtb_dsp_pool_connections_target",
        "gauge",
        "Connections the pools to each DSP hold at most now, sized by Little's law and \
         the recent peak of calls in flight.",
        |s| s.target,
    ),
];

/// Appends the `rtb_dsp_pool_*` families, one series per entry of `pools` labelled `dsp`:
/// connections opened, failed and reused, the connections held now, and what became of
/// timed-out calls' connections.
pub fn render(out: &mut String, pools: &BTreeMap<String, PoolSum>) {
    series_table(out, "dsp", pools, &POOL_SERIES);
    header(
        out,
        "rtb_dsp_pool_drains_total",
        "counter",
        "Timed-out calls' connections: started draining, drained and reused, drained and \
         closed, closed with the draining set full, closed out of step.",
    );
    label_lines(out, "rtb_dsp_pool_drains_total", "dsp", pools, |s, line| {
        for (result, &n) in DRAIN_RESULTS.iter().zip(&s.drains) {
            line(&format!(",result=\"{result}\""), n);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers_and_renders_every_family_per_pool() {
        let workers: [PoolMetrics; 2] = Default::default();
        for w in &workers {
            w.connects.store(2, Ordering::Relaxed);
            w.drains[1].store(3, Ordering::Relaxed);
        }
        let mut sum = PoolSum::default();
        workers.iter().for_each(|w| sum.add(w));
        let pools: BTreeMap<String, PoolSum> = [("a\"b".to_string(), sum)].into_iter().collect();
        let mut text = String::new();
        render(&mut text, &pools);
        assert!(text.contains("rtb_dsp_pool_connections_opened_total{dsp=\"a\\\"b\"} 4\n"));
        assert!(text.contains("rtb_dsp_pool_drains_total{dsp=\"a\\\"b\",result=\"reused\"} 6\n"));
        assert!(text.contains("rtb_dsp_pool_drains_total{dsp=\"a\\\"b\",result=\"started\"} 0\n"));
        let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(families, POOL_SERIES.len() + 1);
    }
}
