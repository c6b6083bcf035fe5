//! Runs the auction over 3 one-bid responses to the bench request N times, in the auction
//! currency (`plain`) or with every bid in another currency converted through a Prebid-sized
//! rates table (`converted`), for instruction counting under `valgrind --tool=callgrind`:
//!   cargo build --release -p benches --example auction_iterations
//!   valgrind --tool=callgrind target/release/examples/auction_iterations plain 0
//!   valgrind --tool=callgrind target/release/examples/auction_iterations plain 10000
//! (instructions per auction = difference of the totals / 10000; the same for `converted`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use benches::{
    builtin_requests, foreign_currency_responses, one_bid_responses, prebid_sized_rates,
    request_samples,
};
use rtb_core::auction::{Auction, AuctionConfig};
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::response::BidResponse;

/// Bids per auction: one per DSP, three DSPs.
const BIDS: usize = 3;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "plain".into());
    let iterations: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse().expect("iterations"))
        .unwrap_or(10_000);
    // Sample 18, as in `benches/benches/core.rs`, or the built-in two-impression request.
    let raw = request_samples()
        .into_iter()
        .find(|s| s.stem.starts_with("18-"))
        .map(|s| s.bytes)
        .unwrap_or_else(|| builtin_requests()[1].bytes.clone());
    let mut decoder = Decoder::new();
    let mut request_doc = Document::default();
    let request = BidRequest::decode(&raw, &mut request_doc, &mut decoder).unwrap();
    let (bodies, rates) = match mode.as_str() {
        "plain" => (one_bid_responses(&raw, BIDS).unwrap(), None),
        "converted" => (
            foreign_currency_responses(&raw, BIDS).unwrap().0,
            Some(prebid_sized_rates()),
        ),
        other => panic!("mode {other:?}: plain or converted"),
    };
    let mut docs: Vec<Document> = (0..BIDS).map(|_| Document::default()).collect();
    let responses: Vec<BidResponse<'_>> = docs
        .iter_mut()
        .zip(&bodies)
        .map(|(doc, body)| BidResponse::decode(body, doc, &mut decoder).unwrap())
        .collect();
    let mut auction = Auction::new(AuctionConfig::default());
    let winners = auction
        .run_with_rates(&request, &responses, rates.as_ref())
        .winners
        .len();
    assert!(winners > 0, "the bench bids must win");
    let mut total = 0usize;
    for _ in 0..iterations {
        total += auction
            .run_with_rates(black_box(&request), black_box(&responses), rates.as_ref())
            .winners
            .len();
    }
    println!("{mode}: {iterations} auctions, {total} winners");
}
