//! Owns `rtb-ledger`'s report: revenue, win rate and per-DSP figures (calls, bids, wins,
//! timeouts, latency percentiles) read from JSON-lines ledger files, for users without
//! ClickHouse. Revenue is the sum of clearing prices / 1000 (prices are CPM), per currency,
//! test auctions excluded (they are not billed).

use std::{
    collections::BTreeMap,
    io::{BufRead, Write},
};

use serde::Serialize;
use serde_json::Value;

/// Figures for one DSP.
#[derive(Debug, Default, Serialize)]
pub struct DspSummary {
    /// Calls made (skipped ones excluded).
    pub calls: u64,
    /// Calls skipped because the DSP's breaker was open.
    pub skipped: u64,
    /// Bids read from its answers.
    pub bids: u64,
    /// Impressions it won.
    pub wins: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Calls that failed otherwise (errors, bad status, undecodable answers).
    pub errors: u64,
    /// Wins / calls.
    pub win_rate: f64,
    /// What it paid, per currency (test auctions excluded).
    pub revenue: BTreeMap<String, f64>,
    /// Call latency percentiles, µs (p50, p90, p99), over calls with a latency.
    pub latency_us: Percentiles,
    #[serde(skip)]
    latencies: Vec<u64>,
}

/// Three percentiles.
#[derive(Debug, Default, Serialize, PartialEq, Eq, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
}

/// The whole report.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Lines read.
    pub records: u64,
    /// Lines that were not ledger records (not JSON, or no `kind`).
    pub unreadable: u64,
    /// Auction records.
    pub auctions: u64,
    /// Of which answered with a bid.
    pub auctions_won: u64,
    /// Of which test auctions.
    pub test_auctions: u64,
    /// auctions_won / auctions.
    pub win_rate: f64,
    /// Shed records.
    pub shed: u64,
    /// Invalid-request records.
    pub invalid: u64,
    /// Revenue per currency (test auctions excluded).
    pub revenue: BTreeMap<String, f64>,
    /// Per DSP, by name.
    pub dsps: BTreeMap<String, DspSummary>,
}

impl Summary {
    /// Adds every line of `input`.
    pub fn read(&mut self, input: impl BufRead) -> std::io::Result<()> {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            self.records += 1;
            match serde_json::from_str::<Value>(&line) {
                Ok(record) => self.add(&record),
                Err(_) => self.unreadable += 1,
            }
        }
        Ok(())
    }

    /// Adds one record.
    pub fn add(&mut self, record: &Value) {
        match record["kind"].as_str() {
            Some("auction") => self.add_auction(record),
            Some("shed") => self.shed += 1,
            Some("invalid") => self.invalid += 1,
            _ => self.unreadable += 1,
        }
    }

    fn add_auction(&mut self, record: &Value) {
        self.auctions += 1;
        let test = record["test"].as_bool().unwrap_or(false);
        self.test_auctions += u64::from(test);
        self.auctions_won += u64::from(record["answer"] == "bid");
        let cur = record["cur"].as_str().unwrap_or("USD");
        for dsp in record["dsps"].as_array().into_iter().flatten() {
            let name = dsp["dsp"].as_str().unwrap_or("");
            let d = self.dsps.entry(name.to_string()).or_default();
            let status = dsp["status"].as_str().unwrap_or("");
            match status {
                "skipped_breaker" => d.skipped += 1,
                "pending" => {}
                _ => d.calls += 1,
            }
            match status {
                "timeout" => d.timeouts += 1,
                "answered" | "no_bid" | "skipped_breaker" | "pending" => {}
                _ => d.errors += 1,
            }
            d.bids += dsp["bids"].as_u64().unwrap_or(0);
            d.wins += dsp["wins"].as_u64().unwrap_or(0);
            if let Some(us) = dsp["latency_us"].as_u64() {
                d.latencies.push(us);
            }
        }
        if test {
            return;
        }
        for imp in record["imps"].as_array().into_iter().flatten() {
            let winner = &imp["winner"];
            let Some(clear) = winner["clear"].as_f64() else {
                continue;
            };
            let revenue = clear / 1000.0;
            *self.revenue.entry(cur.to_string()).or_default() += revenue;
            let name = winner["dsp"].as_str().unwrap_or("");
            let d = self.dsps.entry(name.to_string()).or_default();
            *d.revenue.entry(cur.to_string()).or_default() += revenue;
        }
    }

    /// Computes the rates and percentiles (after the last [`Summary::read`]).
    pub fn finish(&mut self) {
        self.win_rate = ratio(self.auctions_won, self.auctions);
        for d in self.dsps.values_mut() {
            d.win_rate = ratio(d.wins, d.calls);
            d.latencies.sort_unstable();
            d.latency_us = Percentiles {
                p50: percentile(&d.latencies, 50),
                p90: percentile(&d.latencies, 90),
                p99: percentile(&d.latencies, 99),
            };
        }
    }

    /// The report as text tables.
    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "records {}  auctions {}  won {} (win rate {:.3})  test {}  shed {}  invalid {}  unreadable {}",
            self.records, self.auctions, self.auctions_won, self.win_rate, self.test_auctions,
            self.shed, self.invalid, self.unreadable
        )?;
        for (cur, revenue) in &self.revenue {
            writeln!(out, "revenue {revenue:.6} {cur}")?;
        }
        writeln!(
            out,
            "\n{:<24} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}  revenue",
            "dsp",
            "calls",
            "skipped",
            "bids",
            "wins",
            "win_rate",
            "timeouts",
            "errors",
            "p50_us",
            "p90_us",
            "p99_us"
        )?;
        for (name, d) in &self.dsps {
            let revenue: Vec<String> = d
                .revenue
                .iter()
                .map(|(cur, r)| format!("{r:.6} {cur}"))
                .collect();
            writeln!(
                out,
                "{:<24} {:>9} {:>8} {:>9} {:>8} {:>8.3} {:>8} {:>8} {:>9} {:>9} {:>9}  {}",
                name,
                d.calls,
                d.skipped,
                d.bids,
                d.wins,
                d.win_rate,
                d.timeouts,
                d.errors,
                d.latency_us.p50,
                d.latency_us.p90,
                d.latency_us.p99,
                revenue.join(", ")
            )?;
        }
        Ok(())
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Nearest-rank percentile of sorted values (0 when there are none).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn auction(test: bool, winner: Option<(&str, f64)>, latencies: [u64; 2]) -> String {
        let winner = winner.map_or("null".to_string(), |(dsp, clear)| {
            format!(r#"{{"dsp":"{dsp}","bid":"b","seat":null,"deal":null,"price":9,"clear":{clear},"fixed_price_deal":false}}"#)
        });
        format!(
            r#"{{"v":1,"kind":"auction","ts_us":1,"worker":0,"id":"r","test":{test},"cur":"USD","answer":"{}","imps":[{{"id":"1","floor":0,"floor_cur":"USD","winner":{winner}}}],"dsps":[{{"dsp":"a","status":"answered","latency_us":{},"bids":1,"wins":{}}},{{"dsp":"b","status":"timeout","latency_us":{},"bids":0,"wins":0}}],"bids":[]}}"#,
            if winner == "null" { "no_bid" } else { "bid" },
            latencies[0],
            u8::from(winner != "null"),
            latencies[1],
        )
    }

    #[test]
    fn sums_revenue_win_rate_and_latency_per_dsp() {
        let mut lines = Vec::new();
        for i in 0..100u64 {
            lines.push(auction(
                false,
                (i % 2 == 0).then_some(("a", 2.0)),
                [i + 1, 80_000],
            ));
        }
        lines.push(auction(true, Some(("a", 1000.0)), [1, 1]));
        lines.push(r#"{"v":1,"kind":"shed","ts_us":1,"worker":0,"reason":"too_late"}"#.into());
        lines.push("not json".into());
        let mut s = Summary::default();
        s.read(lines.join("\n").as_bytes()).unwrap();
        s.finish();
        assert_eq!(
            (s.records, s.auctions, s.shed, s.unreadable),
            (103, 101, 1, 1)
        );
        assert_eq!(s.auctions_won, 51);
        // 50 billed wins at 2.0 CPM: 0.1; the test auction's 1000 CPM is not revenue.
        assert!((s.revenue["USD"] - 0.1).abs() < 1e-9, "{:?}", s.revenue);
        let a = &s.dsps["a"];
        assert_eq!((a.calls, a.wins, a.timeouts), (101, 51, 0));
        assert_eq!(
            a.latency_us,
            Percentiles {
                p50: 50,
                p90: 90,
                p99: 99
            }
        );
        let b = &s.dsps["b"];
        assert_eq!((b.timeouts, b.wins), (101, 0));
        let mut text = Vec::new();
        s.write_text(&mut text).unwrap();
        assert!(String::from_utf8(text)
            .unwrap()
            .contains("revenue 0.100000 USD"));
    }
}
