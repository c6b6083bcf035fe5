//! Criterion benches of rtb-core: request decode + validation against three baselines
//! (serde_json into the owned `openrtb26` model, serde_json and sonic-rs into a borrowed partial
//! view), lenient against strict validation, the auction at 3/10/50 bids (and the same bids
//! converted from another currency), response encoding, and the whole core pipeline with three
//! DSPs. Bench ids are an interface (BENCHMARKS.md and scripts read them): keep them.
//!
//! Short run: `cargo bench -p benches --bench core -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use benches::{
    builtin_requests, decode_owned, decode_view_serde_json, decode_view_sonic,
    foreign_currency_responses, mid_size_request_samples, one_bid_responses, pipeline_cases,
    prebid_sized_rates, request_samples, response_sample, EngineDriver,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtb_core::auction::{Auction, AuctionConfig};
use rtb_core::encode::encode_bid_response;
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::response::BidResponse;
use rtb_core::ValidationMode;

/// Bid counts of the `auction/<n>-bids` benches.
const AUCTION_BID_COUNTS: [usize; 3] = [3, 10, 50];

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    for sample in request_samples() {
        let raw = sample.bytes.as_slice();
        group.throughput(Throughput::Bytes(raw.len() as u64));
        // Lenient: the baselines validate the same partial view, so this stays like for like
        // (and comparable with the figures recorded before strict validation existed).
        let first =
            BidRequest::decode_with(raw, &mut doc, &mut decoder, ValidationMode::Lenient).map(drop);
        match first {
            Ok(()) => {
                group.bench_function(format!("rtb-core/{}", sample.stem), |b| {
                    b.iter(|| {
                        let request = BidRequest::decode_with(
                            black_box(raw),
                            &mut doc,
                            &mut decoder,
                            ValidationMode::Lenient,
                        )
                        .unwrap();
                        let imps = request.imps.len();
                        drop(request);
                        imps
                    })
                });
            }
            Err(e) => println!("skip decode/rtb-core/{}: {e}", sample.stem),
        }
        match decode_owned(raw) {
            Ok(_) => group.bench_function(format!("serde_json-owned/{}", sample.stem), |b| {
                b.iter(|| decode_owned(black_box(raw)).unwrap())
            }),
            Err(e) => {
                println!("skip decode/serde_json-owned/{}: {e}", sample.stem);
                &mut group
            }
        };
        match decode_view_serde_json(raw) {
            Ok(_) => group.bench_function(format!("serde_json-view/{}", sample.stem), |b| {
                b.iter(|| decode_view_serde_json(black_box(raw)).unwrap().imp.len())
            }),
            Err(e) => {
                println!("skip decode/serde_json-view/{}: {e}", sample.stem);
                &mut group
            }
        };
        match decode_view_sonic(raw) {
            Ok(_) => group.bench_function(format!("sonic-rs/{}", sample.stem), |b| {
                b.iter(|| decode_view_sonic(black_box(raw)).unwrap().imp.len())
            }),
            Err(e) => {
                println!("skip decode/sonic-rs/{}: {e}", sample.stem);
                &mut group
            }
        };
    }
    group.finish();
}

/// Lenient and strict decoding of the 2.4-3.5 KB samples side by side, one pair per sample, so
/// the cost of strict validation is a ratio measured in the same run
/// (`validation/{lenient,strict}/<stem>`; `benches/scripts/summarize.py` prints the ratios).
fn validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("validation");
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    for sample in mid_size_request_samples() {
        let raw = sample.bytes.as_slice();
        group.throughput(Throughput::Bytes(raw.len() as u64));
        for mode in [ValidationMode::Lenient, ValidationMode::Strict] {
            if let Err(e) = BidRequest::decode_with(raw, &mut doc, &mut decoder, mode) {
                panic!("{}: {mode}: {e}", sample.stem);
            }
            group.bench_function(format!("{mode}/{}", sample.stem), |b| {
                b.iter(|| {
                    let request =
                        BidRequest::decode_with(black_box(raw), &mut doc, &mut decoder, mode)
                            .unwrap();
                    let imps = request.imps.len();
                    drop(request);
                    imps
                })
            });
        }
    }
    group.finish();
}

/// The request the auction and encode benches use: sample 18 (app video, 3.5 KB) or the
/// built-in two-impression request.
fn auction_request() -> Vec<u8> {
    request_samples()
        .into_iter()
        .find(|s| s.stem.starts_with("18-"))
        .map(|s| s.bytes)
        .unwrap_or_else(|| builtin_requests()[1].bytes.clone())
}

fn auction(c: &mut Criterion) {
    let raw = auction_request();
    let mut decoder = Decoder::new();
    let mut request_doc = Document::default();
    let request = BidRequest::decode(&raw, &mut request_doc, &mut decoder).unwrap();
    let mut group = c.benchmark_group("auction");
    for n in AUCTION_BID_COUNTS {
        let bodies = one_bid_responses(&raw, n).unwrap();
        let mut docs: Vec<Document> = (0..n).map(|_| Document::default()).collect();
        let responses: Vec<BidResponse<'_>> = docs
            .iter_mut()
            .zip(&bodies)
            .map(|(doc, body)| BidResponse::decode(body, doc, &mut decoder).unwrap())
            .collect();
        let refs = &responses;
        let mut auction = Auction::new(AuctionConfig::default());
        assert!(!auction.run(&request, refs).winners.is_empty());
        group.bench_function(format!("{n}-bids"), |b| {
            b.iter(|| {
                auction
                    .run(black_box(&request), black_box(refs))
                    .winners
                    .len()
            })
        });
        // The same bids, every one in another currency, converted through a table the size
        // of Prebid's currency file.
        let (foreign_bodies, _) = foreign_currency_responses(&raw, n).unwrap();
        let mut foreign_docs: Vec<Document> = (0..n).map(|_| Document::default()).collect();
        let foreign_responses: Vec<BidResponse<'_>> = foreign_docs
            .iter_mut()
            .zip(&foreign_bodies)
            .map(|(doc, body)| BidResponse::decode(body, doc, &mut decoder).unwrap())
            .collect();
        let rates = prebid_sized_rates();
        let foreign_refs = &foreign_responses;
        let converted = auction.run_with_rates(&request, foreign_refs, Some(&rates));
        assert!(!converted.winners.is_empty() && converted.winners[0].rate != 1.0);
        group.bench_function(format!("{n}-bids-converted"), |b| {
            b.iter(|| {
                auction
                    .run_with_rates(black_box(&request), black_box(foreign_refs), Some(&rates))
                    .winners
                    .len()
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    // Two impressions, two DSPs, each winning one: adm with HTML, quotes and a price macro.
    let raw = builtin_requests()[1].bytes.clone();
    let mut decoder = Decoder::new();
    let mut request_doc = Document::default();
    let request = BidRequest::decode(&raw, &mut request_doc, &mut decoder).unwrap();
    let body_a = format!(
        r#"{{"id":"{}","cur":"USD","bidid":"resp-a","seatbid":[{{"seat":"seat-a","bid":[{{"id":"a1","impid":"v1","price":4.2,"crid":"cr-a","adomain":["brand-a.example"],"nurl":"https://dsp-a.example/win?p=${{AUCTION_PRICE}}&id=${{AUCTION_ID}}","adm":"<VAST version=\"4.0\"><Ad id=\"1\"><InLine><AdTitle>Brand \"A\"</AdTitle><Impression><![CDATA[https://dsp-a.example/imp?p=${{AUCTION_PRICE}}]]></Impression></InLine></Ad></VAST>","w":1280,"h":720}}]}}]}}"#,
        request.id
    );
    let body_b = format!(
        r#"{{"id":"{}","cur":"USD","seatbid":[{{"seat":"seat-b","bid":[{{"id":"b1","impid":"b2","price":0.9,"adid":"ad-b","crid":"cr-b","burl":"https://dsp-b.example/bill?p=${{AUCTION_PRICE}}","adm":"<div class=\"ad\" onclick=\"window.open('https://dsp-b.example/c')\"><img src=\"https://cdn.example/b.png\" alt=\"B &amp; co\"></div>\n<script>var p=\"${{AUCTION_PRICE}}\";</script>","w":320,"h":50}}]}},{{"seat":"seat-c","bid":[{{"id":"c1","impid":"v1","price":3.1,"crid":"cr-c","adm":"<VAST/>"}}]}}]}}"#,
        request.id
    );
    let (mut doc_a, mut doc_b) = (Document::default(), Document::default());
    let a = BidResponse::decode(body_a.as_bytes(), &mut doc_a, &mut decoder).unwrap();
    let b = BidResponse::decode(body_b.as_bytes(), &mut doc_b, &mut decoder).unwrap();
    let all = [a, b];
    let mut auction = Auction::new(AuctionConfig::default());
    let outcome = auction.run(&request, &all);
    assert_eq!(outcome.winners.len(), 2, "{outcome:?}");
    let mut out = Vec::with_capacity(8192);
    assert!(encode_bid_response(
        &request,
        &all,
        outcome,
        Some("bid-1"),
        &mut out
    ));
    c.bench_function("encode/response", |bench| {
        bench.iter(|| {
            encode_bid_response(
                black_box(&request),
                black_box(&all),
                outcome,
                Some("bid-1"),
                &mut out,
            );
            out.len()
        })
    });
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    if response_sample("19-").is_none() {
        println!("response samples absent: pipeline uses the built-in DSP answer");
    }
    let mut pipeline = EngineDriver::new();
    for case in pipeline_cases() {
        let result = pipeline.run(&case).unwrap();
        assert!(
            result.answer_len > 0,
            "{}: no winner: {result:?}",
            case.stem
        );
        group.throughput(Throughput::Bytes(case.request.len() as u64));
        group.bench_function(format!("3-dsps/{}", case.stem), |b| {
            b.iter(|| pipeline.run(black_box(&case)).unwrap())
        });
    }
    // The same with lenient validation: the decoding the pipeline did before strict validation
    // (issue 13) existed, so that the engine's own cost is comparable with figures from then.
    let mut lenient = EngineDriver::validating(ValidationMode::Lenient);
    for case in pipeline_cases() {
        let result = lenient.run(&case).unwrap();
        assert!(result.answer_len > 0, "{}: no winner", case.stem);
        group.throughput(Throughput::Bytes(case.request.len() as u64));
        group.bench_function(format!("3-dsps-lenient/{}", case.stem), |b| {
            b.iter(|| lenient.run(black_box(&case)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, decode, validation, auction, encode, pipeline);
criterion_main!(benches);
