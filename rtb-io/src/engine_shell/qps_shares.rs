//! Owns the split of each DSP's QPS cap between workers (issue 15), rebalanced by the
//! traffic each worker saw for the DSP, without a lock or a shared counter on the auction
//! path.
//!
//! Every worker enforces its part of a cap with its own token bucket (in its engine). A
//! thread of its own (`rtb-qps-shares`) wakes every `--qps-rebalance-ms`, reads from the
//! metrics the requests each worker wanted to send each DSP since the last time (calls,
//! breaker holds, requests over its part), and writes each worker's new part
//! ([`rtb_core::policy::demand_fractions`]) next to those counters. A worker picks its parts
//! up at most every [`APPLY_PERIOD`], between auctions. Parts add up to the cap, so the process
//! never exceeds it; a worker that serves most of a DSP's traffic gets most of its cap.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, Instant},
};

use rtb_core::engine::Engine;
use rtb_core::policy::DemandHistory;

use super::dsps::DspSet;
use super::metrics::{DspMetrics, WorkerMetrics};

/// Default `--qps-rebalance-ms`.
pub const QPS_REBALANCE_MS_DEFAULT: u64 = 1000;
/// How often a worker reads the parts the rebalancer wrote.
pub const APPLY_PERIOD: Duration = Duration::from_millis(100);

/// Starts the rebalancer thread; it ends once the metrics are gone (the exchange stopped).
pub fn spawn(
    metrics: Weak<[WorkerMetrics]>,
    period: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rtb-qps-shares".into())
        .spawn(move || {
            let mut history = DemandHistory::default();
            loop {
                std::thread::sleep(period);
                let Some(workers) = metrics.upgrade() else {
                    return;
                };
                rebalance(&workers, &mut history);
            }
        })
}

/// One DSP's counters on each worker (`None` where a worker has none yet).
type PerWorker = Vec<Option<Arc<DspMetrics>>>;

/// Splits every DSP's cap by the demand each worker saw since the last call (`history` holds
/// the demand totals seen then). DSPs without a cap get parts too: workers
/// ignore them.
pub fn rebalance(workers: &[WorkerMetrics], history: &mut DemandHistory) {
    let mut by_name: HashMap<String, PerWorker> = HashMap::new();
    for (w, worker) in workers.iter().enumerate() {
        for (name, metrics) in worker.dsps.list() {
            let slots = by_name
                .entry(name)
                .or_insert_with(|| vec![None; workers.len()]);
            slots[w] = Some(metrics);
        }
    }
    let mut parts = Vec::with_capacity(workers.len());
    for (name, per_worker) in &by_name {
        let totals: Vec<u64> = (per_worker.iter())
            .map(|m| m.as_ref().map_or(0, |m| m.qps_demand()))
            .collect();
        history.parts_ppm(name, totals, &mut parts);
        for (metrics, ppm) in per_worker.iter().zip(&parts) {
            if let Some(m) = metrics {
                m.qps_fraction_ppm.store(*ppm, Ordering::Relaxed);
            }
        }
    }
    history.retain(|name| by_name.contains_key(name));
}

/// When a worker next reads its parts of the caps.
#[derive(Debug, Default)]
pub struct ShareRefresh {
    next: Cell<Option<Instant>>,
}

impl ShareRefresh {
    /// Whether the parts are due to be read at `now` (then not again for [`APPLY_PERIOD`]).
    pub fn due(&self, now: Instant) -> bool {
        if self.next.get().is_some_and(|next| now < next) {
            return false;
        }
        self.next.set(Some(now + APPLY_PERIOD));
        true
    }
}

/// Gives the engine's capped DSPs the parts the rebalancer wrote for this worker.
pub fn apply(engine: &mut Engine, set: &DspSet) {
    for (index, slot) in set.slots.iter().enumerate() {
        if slot.policy.qps.is_none() {
            continue;
        }
        let ppm = slot.metrics.qps_fraction_ppm.load(Ordering::Relaxed);
        if ppm > 0 {
            engine.set_qps_fraction(index, ppm as f64 / 1e6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `calls` calls of DSP `name` on `worker`.
    fn call(worker: &WorkerMetrics, name: &str, calls: u64) {
        worker.dsps.get(name).calls.add(calls);
    }

    fn ppm(worker: &WorkerMetrics, name: &str) -> u64 {
        worker
            .dsps
            .get(name)
            .qps_fraction_ppm
            .load(Ordering::Relaxed)
    }

    #[test]
    fn parts_follow_each_periods_demand() {
        let workers: Vec<WorkerMetrics> = (0..2).map(|_| WorkerMetrics::default()).collect();
        let mut last = DemandHistory::default();
        call(&workers[0], "braid", 900);
        call(&workers[1], "braid", 100);
        rebalance(&workers, &mut last);
        let (a, b) = (ppm(&workers[0], "braid"), ppm(&workers[1], "braid"));
        // (900 + 20) / 1,040 and (100 + 20) / 1,040 (4% of 1,000 spread over two workers).
        assert_eq!((a, b), (884_615, 115_385));
        // Next period the traffic moved: only the new calls count.
        call(&workers[1], "braid", 1000);
        rebalance(&workers, &mut last);
        let (a, b) = (ppm(&workers[0], "braid"), ppm(&workers[1], "braid"));
        assert!(b > 40 * a && a > 0, "{a} {b}");
        // No traffic at all: equal parts.
        rebalance(&workers, &mut last);
        assert_eq!(ppm(&workers[0], "braid"), 500_000);
    }
}
