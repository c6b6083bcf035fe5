//! Shared by the ledger tests (file and ClickHouse sinks): three real `rtb-dsp` processes that
//! between them produce every kind of call outcome, the clients that send auctions (plus
//! invalid and shed requests) and remember each answer, and the exchange's own counts.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{collections::HashMap, path::PathBuf};

use serde_json::Value;

use super::{dsp_binary, sample, DspProcess, Exchange};

/// Client threads sending auctions at once.
pub const CLIENTS: usize = 4;
/// Auctions per client.
pub const AUCTIONS_PER_CLIENT: usize = 120;
/// Impressions in each auction [`run_auctions`] sends.
pub const IMPS_PER_AUCTION: usize = 2;
/// The lowest floor of those impressions: no clearing price is below it.
pub const FLOOR_MIN: f64 = 0.5;
/// Invalid requests and requests that must be shed (tmax 1 ms), each.
pub const OTHERS: usize = 10;

/// What the client got for one auction: the price of each impression won, by impid.
pub type Answers = HashMap<String, Option<HashMap<String, f64>>>;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtb-ledger-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Three DSPs that between them produce every kind of call outcome.
pub fn start_dsps() -> Option<Vec<DspProcess>> {
    let bin = dsp_binary("ledger")?;
    let flags: [(&str, &[&str]); 3] = [
        ("steady", &["--bid-rate", "0.8", "--price", "uniform:0.5,3"]),
        (
            "flaky",
            &[
                "--bid-rate",
                "0.6",
                "--error500-rate",
                "0.1",
                "--reset-rate",
                "0.05",
            ],
        ),
        ("sleepy", &["--bid-rate", "0.9", "--hang-rate", "0.1"]),
    ];
    Some(
        flags
            .iter()
            .map(|(name, extra)| DspProcess::start(&bin, name, 0, extra).expect("rtb-dsp started"))
            .collect(),
    )
}

/// The prices of the answer's bids by impid.
pub fn answer_prices(body: &Value) -> HashMap<String, f64> {
    let mut prices = HashMap::new();
    for seat in body["seatbid"].as_array().unwrap() {
        for bid in seat["bid"].as_array().unwrap() {
            let imp = bid["impid"].as_str().unwrap().to_string();
            prices.insert(imp, bid["price"].as_f64().unwrap());
        }
    }
    prices
}

/// What [`run_auctions`] sent and got.
pub struct Sent {
    /// What each auction got.
    pub answers: Answers,
    /// Invalid requests answered 204, not 400: shed before they were decoded (a loaded
    /// machine's queue wait), so their ledger record is an unnamed shed, not an invalid one.
    pub invalid_shed: usize,
}

/// Sends the auctions (two impressions each, a second one with a high floor that often goes
/// unsold), the invalid and the shed requests; returns what each auction got.
pub fn run_auctions(ex: &Exchange) -> Sent {
    let addr = ex.addr;
    let answers: Vec<Answers> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                s.spawn(move || {
                    let mut got = Answers::new();
                    for i in 0..AUCTIONS_PER_CLIENT {
                        let id = format!("ledger-{c}-{i}");
                        let body = format!(
                            r#"{{"id":"{id}","tmax":100,"test":{},"site":{{"publisher":{{"id":"pub-{c}"}}}},
                            "imp":[{{"id":"1","banner":{{"w":300,"h":250}},"bidfloor":0.5}},
                                   {{"id":"2","banner":{{"w":320,"h":50}},"bidfloor":2.5}}]}}"#,
                            u8::from(i % 10 == 0)
                        );
                        let r = super::request(addr, "POST", "/openrtb2/auction", &[], body.as_bytes());
                        let prices = match r.status {
                            200 => Some(answer_prices(&r.json())),
                            204 => None,
                            other => panic!("{id}: status {other}: {}", r.text()),
                        };
                        got.insert(id, prices);
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut invalid_shed = 0;
    for i in 0..OTHERS {
        let r = ex.auction(format!(r#"{{"id":"bad-{i}"}}"#).as_bytes());
        assert!(r.status == 400 || r.status == 204, "{}", r.text());
        invalid_shed += usize::from(r.status == 204);
        let r = ex.auction(&super::bid_request(&format!("late-{i}"), 2, 1, 0.1));
        assert_eq!(r.status, 204, "{}", r.text());
    }
    Sent {
        answers: answers.into_iter().flatten().collect(),
        invalid_shed,
    }
}

/// The exchange's own counts: records it should have made, and those it counted as not kept.
pub fn expected_and_not_kept(metrics: &str) -> (u64, u64) {
    let count = |s: &str| sample(metrics, s) as u64;
    let made = ["won", "no_bid", "shed", "invalid"]
        .iter()
        .map(|o| count(&format!("rtb_auctions_total{{outcome=\"{o}\"}}")))
        .sum();
    let not_kept = count("rtb_ledger_records_total{result=\"dropped\"}")
        + count("rtb_ledger_records_total{result=\"sampled_out\"}")
        + count("rtb_ledger_records_total{result=\"failed\"}");
    (made, not_kept)
}
