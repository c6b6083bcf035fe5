//! Criterion bench of what gzipping an answer costs: rtb-io's per-worker encoder (the one the
//! server uses when a client sends `Accept-Encoding: gzip`) over the exchange's real answers,
//! the pipeline bench's encoded bid responses (about 3.3 KB with a VAST document).
//! Ids: `gzip/answer/<stem>`; the compressed sizes are printed.
//!
//! Run: `cargo bench -p benches --bench gzip -- --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use benches::{pipeline_cases, EngineDriver};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtb_io::gzip::{worth_gzipping, GzipEncoder};

fn gzip(c: &mut Criterion) {
    let mut group = c.benchmark_group("gzip");
    let mut pipeline = EngineDriver::new();
    let mut encoder = GzipEncoder::new();
    for case in pipeline_cases() {
        let answer = pipeline.answer(&case).unwrap();
        assert!(
            worth_gzipping(answer.len()),
            "{}: {} bytes",
            case.stem,
            answer.len()
        );
        let gzipped = encoder.compress(&answer).map_or(answer.len(), <[u8]>::len);
        println!(
            "gzip/answer/{}: {} -> {} bytes ({:.2}x smaller)",
            case.stem,
            answer.len(),
            gzipped,
            answer.len() as f64 / gzipped as f64
        );
        group.throughput(Throughput::Bytes(answer.len() as u64));
        group.bench_function(format!("answer/{}", case.stem), |b| {
            b.iter(|| encoder.compress(black_box(&answer)).map(<[u8]>::len))
        });
    }
    group.finish();
}

criterion_group!(benches, gzip);
criterion_main!(benches);
