//! Owns the exchange's auction ledger: its flags, the sink it writes to, the writer thread
//! (an `rtb_io::spool`), the per-worker ends ([`worker::WorkerLedger`]) and its metrics. The
//! record itself is `rtb_core::ledger`'s; the JSON Schema is
//! `deploy/ledger/ledger-record.v2.schema.json`.
//!
//! - [`worker`]: what a worker does per auction: sample, encode into a pooled buffer, hand over.
//!
//! The sinks (a size-rotated file, or batched JSONEachRow inserts into ClickHouse over HTTP,
//! retried) and the choice between them are `rtb_io::spool_target`'s.

pub mod worker;

use std::{
    fmt::Write as _,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rtb_core::ledger_sample::WallAnchor;
use rtb_io::{
    spool::{Producer, Spool, SpoolConfig, SpoolStats},
    spool_target::{FileRotation, SpoolTarget},
};

/// Default size at which the ledger file rotates, bytes.
pub const FILE_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default rotated files kept.
pub const FILE_KEEP_DEFAULT: u32 = 4;
/// Default flush period, ms.
pub const FLUSH_MS_DEFAULT: u64 = 1_000;
/// Default records in flight per worker (each a reused buffer).
pub const BUFFERS_PER_WORKER_DEFAULT: u64 = 1_024;
/// Each buffer's starting capacity: a 3-DSP, 1-impression record is about 900 bytes.
const BUFFER_BYTES: usize = 2 * 1024;
/// A buffer grown past this by a huge record is replaced by the writer.
const BUFFER_BYTES_MAX: usize = 64 * 1024;

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("`{text}`: expected a number from 0 to 1")),
    }
}

/// The ledger's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct LedgerArgs {
    /// Write one record per auction (and per shed or invalid request) to file:PATH (JSON lines)
    /// or clickhouse:http://HOST:PORT (table rtb.ledger) [default: no ledger].
    #[arg(long = "ledger", env = "RTB_EXCHANGE_LEDGER", value_parser = SpoolTarget::parse)]
    pub target: Option<SpoolTarget>,

    /// Share of non-winning records kept (no-bid auctions, shed and invalid requests), 0 to 1;
    /// auctions with a winner are always kept.
    #[arg(long, env = "RTB_EXCHANGE_LEDGER_SAMPLE", default_value_t = 1.0, value_parser = parse_rate)]
    pub ledger_sample: f64,

    /// The ledger file rotates before it would exceed this size, bytes.
    #[arg(long, env = "RTB_EXCHANGE_LEDGER_FILE_MAX_BYTES", default_value_t = FILE_BYTES_MAX_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ledger_file_max_bytes: u64,

    /// Rotated ledger files kept (PATH.1 is the newest).
    #[arg(long, env = "RTB_EXCHANGE_LEDGER_FILE_KEEP", default_value_t = FILE_KEEP_DEFAULT)]
    pub ledger_file_keep: u32,

    /// How often the writer flushes the ledger, ms (and at shutdown).
    #[arg(long, env = "RTB_EXCHANGE_LEDGER_FLUSH_MS", default_value_t = FLUSH_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub ledger_flush_ms: u64,

    /// Records in flight per worker; beyond it (a slow sink) records are dropped and counted.
    #[arg(long, env = "RTB_EXCHANGE_LEDGER_BUFFERS", default_value_t = BUFFERS_PER_WORKER_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub ledger_buffers: u64,
}

/// A running ledger: the writer thread, the producers not yet taken by workers, the counters.
#[derive(Debug)]
pub struct Ledger {
    spool: Mutex<Option<Spool>>,
    producers: Mutex<Vec<Option<Producer>>>,
    stats: Arc<SpoolStats>,
    /// Non-winning records not kept by sampling, summed over workers.
    sampled_out: std::sync::atomic::AtomicU64,
    sample: f64,
    /// The wall clock at start: records turn their arrival `Instant` into wall time from it,
    /// with no clock read per record.
    anchor: WallAnchor,
}

impl Ledger {
    /// Starts the ledger the flags ask for (none without `--ledger`).
    pub fn start(args: &LedgerArgs, workers: usize) -> std::io::Result<Option<Arc<Ledger>>> {
        let config = SpoolConfig {
            producers: workers,
            buffers_per_producer: usize::try_from(args.ledger_buffers).unwrap_or(usize::MAX),
            buffer_bytes: BUFFER_BYTES,
            buffer_bytes_max: BUFFER_BYTES_MAX,
            flush_period: Duration::from_millis(args.ledger_flush_ms),
        };
        let Some(target) = &args.target else {
            return Ok(None);
        };
        let rotation = FileRotation {
            bytes_max: args.ledger_file_max_bytes,
            keep: args.ledger_file_keep,
        };
        let (spool, producers) = target.start(config, rotation, "rtb-ledger")?;
        let anchor_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Ok(Some(Arc::new(Ledger {
            stats: spool.stats().clone(),
            spool: Mutex::new(Some(spool)),
            producers: Mutex::new(producers.into_iter().map(Some).collect()),
            sampled_out: 0.into(),
            sample: args.ledger_sample,
            anchor: WallAnchor {
                unix_us: anchor_unix_us,
                at: Instant::now(),
            },
        })))
    }

    /// Worker `index`'s producer (once).
    fn take_producer(&self, index: usize) -> Option<Producer> {
        let mut producers = self.producers.lock().unwrap_or_else(|p| p.into_inner());
        producers.get_mut(index).and_then(Option::take)
    }

    /// Writes every queued record and stops the writer. Call after the workers stopped.
    pub fn stop(&self) {
        let spool = self.spool.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(spool) = spool {
            spool.stop();
        }
    }

    /// Appends `rtb_ledger_records_total` to a Prometheus text exposition.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str(
            "# HELP rtb_ledger_records_total Ledger records by result: written, dropped (no free \
             buffer: the writer is behind), sampled_out (--ledger-sample), failed (the sink \
             refused them).\n# TYPE rtb_ledger_records_total counter\n",
        );
        for (result, n) in [
            ("written", self.stats.written.load(Ordering::Relaxed)),
            ("dropped", self.stats.dropped.load(Ordering::Relaxed)),
            ("sampled_out", self.sampled_out.load(Ordering::Relaxed)),
            ("failed", self.stats.failed.load(Ordering::Relaxed)),
        ] {
            let _ = writeln!(out, "rtb_ledger_records_total{{result=\"{result}\"}} {n}");
        }
        out.push_str(
            "# HELP rtb_ledger_flush_failures_total Flushes of the ledger sink that failed (the \
             records accepted since the last flush are counted as failed).\n\
             # TYPE rtb_ledger_flush_failures_total counter\n",
        );
        let flush_failed = self.stats.flush_failed.load(Ordering::Relaxed);
        let _ = writeln!(out, "rtb_ledger_flush_failures_total {flush_failed}");
    }
}
