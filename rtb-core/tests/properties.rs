//! Property tests: the decoders never panic on arbitrary or mutated input, and the auction's
//! invariants hold for arbitrary bids (clearing price between floor and bid, one winner per
//! impression, the winner is a highest valid bid, same input gives the same outcome).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rtb_core::auction::{Auction, AuctionConfig};
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::response::BidResponse;
use rtb_core::splice::splice_tmax;

const BUILT_IN: &[&str] = &[
    r#"{"id":"a","tmax":120,"at":2,"cur":["USD"],"bcat":["IAB25"],"imp":[{"id":"1","banner":{"w":300},"bidfloor":0.5,"pmp":{"private_auction":0,"deals":[{"id":"d","bidfloor":1,"wseat":["s"]}]}}],"site":{"id":"x"}}"#,
    r#"{"id":"r","seatbid":[{"seat":"s","bid":[{"id":"1","impid":"1","price":1.5,"adm":"<b>\"x\"</b>","adomain":["a.com"],"dealid":"d"}]}]}"#,
];

/// The built-in inputs plus every shared sample (the samples are required under `CI=true`;
/// elsewhere their absence leaves the built-in corpus only, with a message).
fn corpus() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = BUILT_IN.iter().map(|s| s.as_bytes().to_vec()).collect();
    if let Some(samples) = test_support::ci::samples_named("property corpus", "") {
        out.extend(samples.into_iter().map(|(_, bytes)| bytes));
    }
    out
}

fn decode_everything(bytes: &[u8]) {
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    if let Ok(request) = BidRequest::decode(bytes, &mut doc, &mut decoder) {
        // Whatever decodes must splice into something that decodes with the new tmax.
        let mut out = Vec::new();
        if splice_tmax(bytes, request.tmax_site, 42, &mut out).is_ok() {
            let mut again_doc = Document::default();
            let again = BidRequest::decode(&out, &mut again_doc, &mut decoder)
                .expect("a spliced valid request stays valid");
            assert_eq!(again.tmax_ms, Some(42));
            assert_eq!(again.id, request.id);
        }
        let _ = request.bcat().count() + request.badv().count() + request.currencies().count();
        for imp in &request.imps {
            let _ = request.deals(imp).count();
        }
    }
    let _ = BidResponse::decode(bytes, &mut doc, &mut decoder).map(|r| r.bids.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_samples_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let corpus = corpus();
        let mut bytes = pick.get(&corpus).clone();
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
        }
        decode_everything(&bytes);
    }
}

#[derive(Debug, Clone)]
struct BidSpec {
    imp: usize,
    price_cents: i64,
    deal: bool,
}

fn request_json(floors_cents: &[u32], at: u8, with_deal: bool) -> String {
    let imps: Vec<String> = floors_cents
        .iter()
        .enumerate()
        .map(|(i, floor)| {
            let deal = if with_deal {
                format!(
                    r#","pmp":{{"deals":[{{"id":"d{i}","bidfloor":{},"at":3}}]}}"#,
                    floor * 2
                )
            } else {
                String::new()
            };
            format!(
                r#"{{"id":"i{i}","banner":{{}},"bidfloor":{}{deal}}}"#,
                f64::from(*floor) / 100.0
            )
        })
        .collect();
    format!(r#"{{"id":"req","at":{at},"imp":[{}]}}"#, imps.join(","))
}

fn response_json(dsp: usize, bids: &[BidSpec], imps: usize) -> String {
    let bids: Vec<String> = bids
        .iter()
        .enumerate()
        .map(|(j, b)| {
            let impid = if b.imp >= imps {
                "unknown".to_string()
            } else {
                format!("i{}", b.imp)
            };
            let deal = if b.deal && b.imp < imps {
                format!(r#","dealid":"d{}""#, b.imp)
            } else {
                String::new()
            };
            format!(
                r#"{{"id":"b{dsp}-{j}","impid":"{impid}","price":{}{deal}}}"#,
                b.price_cents as f64 / 100.0
            )
        })
        .collect();
    format!(
        r#"{{"id":"req","seatbid":[{{"seat":"s{dsp}","bid":[{}]}}]}}"#,
        bids.join(",")
    )
}

fn bid_spec(imps: usize) -> impl Strategy<Value = BidSpec> {
    (0..=imps, -100i64..2000, prop::bool::weighted(0.2)).prop_map(|(imp, price_cents, deal)| {
        BidSpec {
            imp,
            price_cents,
            deal,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn auction_invariants_hold(
        floors in proptest::collection::vec(0u32..500, 1..4),
        at in 1u8..3,
        with_deal in any::<bool>(),
        dsps in proptest::collection::vec(proptest::collection::vec(bid_spec(3), 0..5), 0..4),
    ) {
        let request_raw = request_json(&floors, at, with_deal);
        let responses_raw: Vec<String> = dsps
            .iter()
            .enumerate()
            .map(|(d, bids)| response_json(d, bids, floors.len()))
            .collect();
        let mut decoder = Decoder::new();
        let mut request_doc = Document::default();
        let mut docs: Vec<Document> = responses_raw.iter().map(|_| Document::default()).collect();
        let request = BidRequest::decode(request_raw.as_bytes(), &mut request_doc, &mut decoder).unwrap();
        let responses: Vec<BidResponse<'_>> = responses_raw
            .iter()
            .zip(docs.iter_mut())
            .map(|(raw, doc)| BidResponse::decode(raw.as_bytes(), doc, &mut decoder).unwrap())
            .collect();
        let refs = &responses;
        let mut auction = Auction::new(AuctionConfig::default());
        let first = auction.run(&request, refs);
        let winners = first.winners.clone();
        let rejections = first.rejections.clone();

        let total_bids: usize = refs.iter().map(|r| r.bids.len()).sum();
        prop_assert_eq!(winners.len() + rejections.len(), total_bids, "every bid accounted for once");
        for (i, w) in winners.iter().enumerate() {
            prop_assert!(winners[..i].iter().all(|o| o.imp != w.imp), "one winner per imp");
            prop_assert!(w.clearing_price >= w.floor - 1e-9, "clearing {} >= floor {}", w.clearing_price, w.floor);
            prop_assert!(w.clearing_price <= w.bid_price + 1e-9, "clearing {} <= bid {}", w.clearing_price, w.bid_price);
            let bid = &refs[w.response as usize].bids[w.bid as usize];
            prop_assert_eq!(bid.impid, request.imps[w.imp as usize].id);
            if at == 1 && !w.fixed_price_deal {
                prop_assert_eq!(w.clearing_price, w.bid_price);
            }
            // No losing valid bid on this imp offered more (within the same priority).
            for r in rejections.iter().filter(|r| !r.reason.is_invalid_bid()) {
                let loser = &refs[r.response as usize].bids[r.bid as usize];
                if loser.impid == bid.impid && !w.fixed_price_deal {
                    prop_assert!(loser.price <= w.bid_price);
                }
            }
        }
        let again = auction.run(&request, refs);
        prop_assert_eq!(&again.winners, &winners, "deterministic");
        prop_assert_eq!(&again.rejections, &rejections, "deterministic");
    }
}
