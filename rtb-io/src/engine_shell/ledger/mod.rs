//! Owns the exchange's auction ledger: the sink it writes to, the writer thread
//! (a [`crate::spool`]), the per-worker ends ([`worker::WorkerLedger`]) and its metrics. The
//! record itself is `rtb_core::ledger`'s; the JSON Schema is
//! `deploy/ledger/ledger-record.v2.schema.json`.
//!
//! - [`worker`]: what a worker does per auction: sample, encode into a pooled buffer, hand over.
//!
//! The sinks (a size-rotated file, or batched JSONEachRow inserts into ClickHouse over HTTP,
//! retried) and the choice between them are [`crate::spool_target`]'s, the flags
//! [`crate::ledger_flags`]'.

pub mod worker;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

pub use crate::ledger_flags::LedgerArgs;
use crate::{
    clock::unix_us,
    metrics_text::{labeled, single},
    shared_spool::SharedSpool,
    spool::Producer,
};
use rtb_core::ledger_sample::WallAnchor;

/// A running ledger: the writer thread, the producers not yet taken by workers, the counters.
#[derive(Debug)]
pub struct Ledger {
    spool: SharedSpool,
    /// Non-winning records not kept by sampling, summed over workers.
    sampled_out: AtomicU64,
    sample: f64,
    /// The wall clock at start: records turn their arrival `Instant` into wall time from it,
    /// with no clock read per record.
    anchor: WallAnchor,
}

impl Ledger {
    /// Starts the ledger the flags ask for (none without `--ledger`).
    pub fn start(args: &LedgerArgs, workers: usize) -> std::io::Result<Option<Arc<Ledger>>> {
        let Some(target) = &args.target else {
            return Ok(None);
        };
        let config = args.spool_config(workers);
        let started = target.start(config, args.rotation(), "rtb-ledger")?;
        Ok(Some(Arc::new(Ledger {
            spool: SharedSpool::new(started),
            sampled_out: 0.into(),
            sample: args.ledger_sample,
            anchor: WallAnchor {
                unix_us: unix_us(),
                at: Instant::now(),
            },
        })))
    }

    /// Worker `index`'s producer (once).
    fn take_producer(&self, index: usize) -> Option<Producer> {
        self.spool.take_producer(index)
    }

    /// Writes every queued record and stops the writer. Call after the workers stopped.
    pub fn stop(&self) {
        self.spool.stop();
    }

    /// Appends `rtb_ledger_records_total` to a Prometheus text exposition.
    pub fn render_metrics(&self, out: &mut String) {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let family = (
            "rtb_ledger_records_total",
            "counter",
            "Ledger records by result: written, dropped (no free buffer: the writer is behind), sampled_out (--ledger-sample), failed (the sink refused them).",
        );
        let lines = [
            ("written", get(&self.spool.stats().written)),
            ("dropped", get(&self.spool.stats().dropped)),
            ("sampled_out", get(&self.sampled_out)),
            ("failed", get(&self.spool.stats().failed)),
        ];
        labeled(out, family, "result", lines);
        let family = (
            "rtb_ledger_flush_failures_total",
            "counter",
            "Flushes of the ledger sink that failed (the records accepted since the last flush are counted as failed).",
        );
        single(out, family, get(&self.spool.stats().flush_failed));
    }
}
