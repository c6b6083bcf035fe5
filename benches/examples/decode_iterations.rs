//! Decodes every 2.4-3.5 KB request sample N times in one validation mode, for instruction
//! counting under `valgrind --tool=callgrind` (repeatable on a shared machine, unlike wall
//! time), or for `perf record`:
//!   cargo build --release -p benches --example decode_iterations
//!   valgrind --tool=callgrind target/release/examples/decode_iterations lenient 0
//!   valgrind --tool=callgrind target/release/examples/decode_iterations strict 1000
//! (instructions per decode = difference of the totals / (1000 x samples)).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use benches::mid_size_request_samples;
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::ValidationMode;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode: ValidationMode = args
        .next()
        .map(|m| m.parse().expect("strict or lenient"))
        .unwrap_or_default();
    let iterations: usize = args
        .next()
        .map(|n| n.parse().expect("iterations"))
        .unwrap_or(1000);
    let only = args.next();
    let samples: Vec<_> = mid_size_request_samples()
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|p| s.stem.starts_with(p)))
        .collect();
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let mut imps = 0usize;
    for sample in &samples {
        // One warm-up decode so buffers have grown before counting starts.
        for _ in 0..=iterations {
            let request = BidRequest::decode_with(&sample.bytes, &mut doc, &mut decoder, mode)
                .unwrap_or_else(|e| panic!("{}: {e}", sample.stem));
            imps += request.imps.len();
        }
    }
    println!(
        "{} samples x {iterations} {mode} decodes, {imps} impressions",
        samples.len()
    );
}
