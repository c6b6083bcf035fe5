//! Owns the command-line flags (and environment variables) of the auction ledger's spool:
//! where it writes ([`SpoolTarget`]), the share of non-winning records kept, file rotation,
//! the flush period and the buffers per worker; and their translation into [`SpoolConfig`] and
//! [`FileRotation`]. A binary flattens [`LedgerArgs`] into its own clap parser
//! (`#[command(flatten)]`).
//!
//! The environment variables are `rtb-exchange`'s (`RTB_EXCHANGE_LEDGER*`), the one binary
//! with a ledger; names, defaults and ranges are part of its interface, so they are spelled
//! here once.

use std::time::Duration;

use crate::{
    spool::SpoolConfig,
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

impl LedgerArgs {
    /// The spool's sizes and flush period, for `workers` producers.
    pub fn spool_config(&self, workers: usize) -> SpoolConfig {
        SpoolConfig {
            producers: workers,
            buffers_per_producer: usize::try_from(self.ledger_buffers).unwrap_or(usize::MAX),
            buffer_bytes: BUFFER_BYTES,
            buffer_bytes_max: BUFFER_BYTES_MAX,
            flush_period: Duration::from_millis(self.ledger_flush_ms),
        }
    }

    /// How a `file:` ledger rotates.
    pub fn rotation(&self) -> FileRotation {
        FileRotation {
            bytes_max: self.ledger_file_max_bytes,
            keep: self.ledger_file_keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        ledger: LedgerArgs,
    }

    #[test]
    fn flags_reach_the_spool_and_the_rotation() {
        let f = Flags::try_parse_from(["x"]).unwrap().ledger;
        assert_eq!((&f.target, f.ledger_sample), (&None, 1.0));
        assert_eq!(f.rotation().bytes_max, FILE_BYTES_MAX_DEFAULT);
        let args = [
            "x",
            "--ledger",
            "file:/tmp/l.jsonl",
            "--ledger-sample",
            "0.25",
            "--ledger-file-keep",
            "2",
            "--ledger-buffers",
            "8",
            "--ledger-flush-ms",
            "50",
        ];
        let f = Flags::try_parse_from(args).unwrap().ledger;
        assert_eq!(f.target, Some(SpoolTarget::File("/tmp/l.jsonl".into())));
        assert_eq!((f.ledger_sample, f.rotation().keep), (0.25, 2));
        let spool = f.spool_config(3);
        assert_eq!((spool.producers, spool.buffers_per_producer), (3, 8));
        assert_eq!(spool.flush_period, Duration::from_millis(50));
        for bad in [
            ["x", "--ledger-sample", "1.5"],
            ["x", "--ledger", "s3:bucket"],
        ] {
            assert!(Flags::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
