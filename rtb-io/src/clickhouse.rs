//! Owns the ClickHouse sink of the ledger: each record becomes one row of `rtb.ledger`
//! (`deploy/clickhouse/01-ledger.sql`: the record's scalar fields, its DSPs and winners as
//! Nested columns, and the record itself), batched and sent over ClickHouse's HTTP interface
//! as `INSERT INTO table FORMAT JSONEachRow`. A failed insert is retried with doubling backoff,
//! a bounded number of times; then the batch is counted as failed. Runs on the ledger's writer
//! thread only (blocking std sockets; never on a worker).

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

use crate::spool::SpoolSink;
use serde_json::{json, Value};

/// Rows per INSERT at most (a flush sends sooner, on the flush period).
pub const BATCH_ROWS_MAX: usize = 10_000;
/// Attempts per batch (the first and the retries).
pub const INSERT_ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled before each next one (100, 200, 400 ms: 0.7 s total).
pub const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Connect, read and write timeout of one attempt.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Error text kept from a refused insert, for the log.
const ERROR_TEXT_MAX: usize = 300;

/// Where rows go: `http://HOST:PORT`, and the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickHouseTarget {
    /// `HOST:PORT` (resolved on each connection, on the writer thread).
    pub authority: String,
    /// `database.table`.
    pub table: String,
}

impl ClickHouseTarget {
    /// Parses `http://HOST:PORT` (a trailing `/` allowed) into the default table `rtb.ledger`.
    pub fn parse(url: &str) -> Result<ClickHouseTarget, String> {
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/') && a.contains(':'))
            .ok_or_else(|| format!("`{url}`: expected http://HOST:PORT"))?;
        Ok(ClickHouseTarget {
            authority: authority.to_string(),
            table: "rtb.ledger".to_string(),
        })
    }
}

/// The sink: a batch of JSONEachRow lines waiting for the next flush.
#[derive(Debug)]
pub struct ClickHouseSink {
    target: ClickHouseTarget,
    head: String,
    batch: Vec<u8>,
    rows: usize,
}

impl ClickHouseSink {
    /// A sink inserting into `target`.
    pub fn new(target: ClickHouseTarget) -> ClickHouseSink {
        let query = format!("INSERT%20INTO%20{}%20FORMAT%20JSONEachRow", target.table);
        let head = format!(
            "POST /?query={query} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\
             content-type: application/x-ndjson\r\n",
            target.authority
        );
        ClickHouseSink {
            target,
            head,
            batch: Vec::with_capacity(1 << 20),
            rows: 0,
        }
    }

    fn insert_once(&self) -> io::Result<()> {
        let addr: SocketAddr = self
            .target
            .authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("no address"))?;
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let head = format!("{}content-length: {}\r\n\r\n", self.head, self.batch.len());
        stream.write_all(head.as_bytes())?;
        stream.write_all(&self.batch)?;
        let mut answer = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        if text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200") {
            return Ok(());
        }
        let mut end = text.len().min(ERROR_TEXT_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Err(io::Error::other(format!(
            "insert refused: {}",
            &text[..end]
        )))
    }
}

impl SpoolSink for ClickHouseSink {
    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        let record: Value = serde_json::from_slice(record).map_err(io::Error::other)?;
        serde_json::to_writer(&mut self.batch, &row(&record)).map_err(io::Error::other)?;
        self.batch.push(b'\n');
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut backoff = RETRY_BACKOFF_FIRST;
        let mut result = self.insert_once();
        for _ in 1..INSERT_ATTEMPTS {
            let Err(e) = &result else { break };
            tracing::debug!(error = %e, rows = self.rows, "ClickHouse insert failed, retrying");
            std::thread::sleep(backoff);
            backoff *= 2;
            result = self.insert_once();
        }
        self.batch.clear();
        self.rows = 0;
        result
    }

    fn wants_flush(&self) -> bool {
        self.rows >= BATCH_ROWS_MAX
    }
}

/// The `rtb.ledger` row of a record (schema v1 or v2: v2 only adds the fields of auctions to
/// shed records, which fill the same columns).
fn row(record: &Value) -> Value {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let dsps = record["dsps"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let wins: Vec<&Value> = record["imps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|imp| imp["winner"].is_object())
        .collect();
    let reason = match record["kind"].as_str() {
        Some("invalid") => text(&record["error"]["error"]),
        _ => text(&record["reason"]),
    };
    json!({
        "ts_us": record["ts_us"],
        "v": record["v"],
        "kind": record["kind"],
        "worker": record["worker"],
        "id": text(&record["id"]),
        "channel": text(&record["channel"]),
        "publisher": text(&record["publisher"]),
        "test": u8::from(record["test"].as_bool().unwrap_or(false)),
        "cur": text(&record["cur"]),
        "answer": text(&record["answer"]),
        "reason": reason,
        "dsps.name": dsps.iter().map(|d| text(&d["dsp"])).collect::<Vec<_>>(),
        "dsps.status": dsps.iter().map(|d| text(&d["status"])).collect::<Vec<_>>(),
        "dsps.latency_us": dsps.iter().map(|d| d["latency_us"].as_u64().unwrap_or(0)).collect::<Vec<_>>(),
        "dsps.bids": dsps.iter().map(|d| d["bids"].as_u64().unwrap_or(0)).collect::<Vec<_>>(),
        "dsps.wins": dsps.iter().map(|d| d["wins"].as_u64().unwrap_or(0)).collect::<Vec<_>>(),
        "wins.imp": wins.iter().map(|i| text(&i["id"])).collect::<Vec<_>>(),
        "wins.dsp": wins.iter().map(|i| text(&i["winner"]["dsp"])).collect::<Vec<_>>(),
        "wins.bid_price": wins.iter().map(|i| i["winner"]["price"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>(),
        "wins.clear": wins.iter().map(|i| i["winner"]["clear"].as_f64().unwrap_or(0.0)).collect::<Vec<_>>(),
        "record": record.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_url() {
        let t = ClickHouseTarget::parse("http://127.0.0.1:8123/").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8123");
        assert!(ClickHouseTarget::parse("https://x:1").is_err());
        assert!(ClickHouseTarget::parse("http://x:1/db").is_err());
    }

    #[test]
    fn a_record_becomes_one_row_with_nested_dsps_and_winners() {
        let record = json!({"v":1,"kind":"auction","ts_us":5,"worker":0,"id":"r","channel":null,
            "publisher":"p","test":true,"at":2,"cur":"USD","tmax_ms":null,"answer":"bid",
            "imps":[{"id":"1","floor":0,"floor_cur":"USD","winner":{"dsp":"a","bid":"b","seat":null,
                "deal":null,"price":2.0,"clear":1.26,"fixed_price_deal":false}},
                {"id":"2","floor":0,"floor_cur":"USD","winner":null}],
            "dsps":[{"dsp":"a","status":"answered","http_status":null,"latency_us":7,"bids":1,
                "bids_dropped":0,"wins":1,"breaker":"closed"}],"bids":[]});
        let r = row(&record);
        assert_eq!(r["test"], 1);
        assert_eq!(r["channel"], "");
        assert_eq!(r["dsps.latency_us"], json!([7]));
        assert_eq!(r["wins.imp"], json!(["1"]));
        assert_eq!(r["wins.clear"], json!([1.26]));
        let back: Value = serde_json::from_str(r["record"].as_str().unwrap()).unwrap();
        assert_eq!(back, record);
    }
}
