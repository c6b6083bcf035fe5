//! Owns where a [`Spool`] writes, as an operator names it (`file:PATH`: JSON lines in a
//! size-rotated file, [`RotatingFile`]; `clickhouse:http://HOST:PORT`: batched inserts,
//! [`ClickHouseSink`]), and starting the spool's writer thread on that sink. The exchange's
//! `--ledger` is one.

use std::{io, path::PathBuf};

use crate::{
    clickhouse::{ClickHouseSink, ClickHouseTarget},
    rotating_file::RotatingFile,
    spool::{Producer, Spool, SpoolConfig},
};

/// Where a spool's records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpoolTarget {
    /// `file:PATH`: JSON lines, size-rotated.
    File(PathBuf),
    /// `clickhouse:http://HOST:PORT`: rows of a ClickHouse table.
    ClickHouse(ClickHouseTarget),
}

/// How a `file:` target rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRotation {
    /// The file rotates before it would exceed this size, bytes.
    pub bytes_max: u64,
    /// Rotated files kept (PATH.1 is the newest).
    pub keep: u32,
}

impl SpoolTarget {
    /// Parses `file:PATH` or `clickhouse:http://HOST:PORT`.
    pub fn parse(text: &str) -> Result<SpoolTarget, String> {
        match text.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(SpoolTarget::File(path.into())),
            Some(("clickhouse", url)) => ClickHouseTarget::parse(url).map(SpoolTarget::ClickHouse),
            _ => Err(format!(
                "`{text}`: expected file:PATH or clickhouse:http://HOST:PORT"
            )),
        }
    }

    /// Opens the sink (a file rotating by `rotation`) and starts the spool's writer thread,
    /// named `thread_name`; returns the spool and its producers ([`Spool::start`]).
    pub fn start(
        &self,
        config: SpoolConfig,
        rotation: FileRotation,
        thread_name: &str,
    ) -> io::Result<(Spool, Vec<Producer>)> {
        match self {
            SpoolTarget::File(path) => {
                let sink = RotatingFile::open(path, rotation.bytes_max, rotation.keep)?;
                Spool::start(config, sink, thread_name)
            }
            SpoolTarget::ClickHouse(target) => {
                let sink = ClickHouseSink::new(target.clone());
                Spool::start(config, sink, thread_name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_file_or_clickhouse() {
        assert_eq!(
            SpoolTarget::parse("file:/var/log/ledger.jsonl"),
            Ok(SpoolTarget::File("/var/log/ledger.jsonl".into()))
        );
        assert!(matches!(
            SpoolTarget::parse("clickhouse:http://127.0.0.1:8123"),
            Ok(SpoolTarget::ClickHouse(_))
        ));
        for bad in ["file:", "ledger.jsonl", "s3:bucket", ""] {
            let error = SpoolTarget::parse(bad).unwrap_err();
            assert!(error.contains("expected file:PATH"), "{bad}: {error}");
        }
    }
}
