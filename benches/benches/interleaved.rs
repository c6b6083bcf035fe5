//! Interleaved A/B timing of the four request decoders (and the pipeline) on the 2.4-3.5 KB
//! samples. Criterion measures one id after another, minutes apart; on this shared 2-core
//! machine the load drifts in between, so its cross-id ratios move by 30% from run to run.
//! Here every round times a short block of each decoder back to back (order rotated per round),
//! and the speed-up is the median of the per-round ratios, which drift cancels out of.
//!
//! Run: `cargo bench -p benches --bench interleaved` (about 10 s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::{
    decode_owned, decode_view_serde_json, decode_view_sonic, mid_size_request_samples,
    pipeline_cases, EngineDriver,
};
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;

/// Rounds per sample; each round times one block of every decoder.
const ROUNDS: usize = 61;
/// Wall time one block aims at.
const BLOCK_TARGET: Duration = Duration::from_micros(1500);

const NAMES: [&str; 4] = [
    "rtb-core",
    "serde_json-owned",
    "serde_json-view",
    "sonic-rs",
];

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Nanoseconds per call of `f` over a block of `iterations`.
fn time_block(iterations: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn iterations_for(f: &mut dyn FnMut()) -> usize {
    let per_call = time_block(200, f).max(1.0);
    ((BLOCK_TARGET.as_nanos() as f64 / per_call) as usize).max(10)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported, everything runs.
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    println!(
        "| sample | rtb-core | serde_json-owned | serde_json-view | sonic-rs | x owned | x view | x sonic |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut all_ratios: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for sample in mid_size_request_samples() {
        let raw = sample.bytes.as_slice();
        let owned_ok = decode_owned(raw).is_ok();
        let mut core = || {
            let request = BidRequest::decode(black_box(raw), &mut doc, &mut decoder).unwrap();
            black_box(request.imps.len());
            drop(request);
        };
        let mut owned = || {
            black_box(decode_owned(black_box(raw)).unwrap());
        };
        let mut view = || {
            black_box(decode_view_serde_json(black_box(raw)).unwrap().imp.len());
        };
        let mut sonic = || {
            black_box(decode_view_sonic(black_box(raw)).unwrap().imp.len());
        };
        let mut fns: [&mut dyn FnMut(); 4] = [&mut core, &mut owned, &mut view, &mut sonic];
        let active: Vec<usize> = (0..4).filter(|&i| i != 1 || owned_ok).collect();
        let iterations: Vec<usize> = (0..4)
            .map(|i| {
                if active.contains(&i) {
                    iterations_for(fns[i])
                } else {
                    0
                }
            })
            .collect();
        let mut times: [Vec<f64>; 4] = Default::default();
        let mut ratios: [Vec<f64>; 3] = Default::default();
        for round in 0..ROUNDS {
            let mut this = [0.0f64; 4];
            for k in 0..active.len() {
                let i = active[(k + round) % active.len()];
                this[i] = time_block(iterations[i], fns[i]);
                times[i].push(this[i]);
            }
            for i in 1..4 {
                if active.contains(&i) {
                    ratios[i - 1].push(this[i] / this[0]);
                }
            }
        }
        let cell = |v: &mut Vec<f64>| {
            if v.is_empty() {
                "skipped".to_owned()
            } else {
                format!("{:.0} ns", median(v))
            }
        };
        let x = |v: &mut Vec<f64>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}x", median(v))
            }
        };
        let [t0, t1, t2, t3] = &mut times;
        let [r1, r2, r3] = &mut ratios;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            sample.stem,
            cell(t0),
            cell(t1),
            cell(t2),
            cell(t3),
            x(r1),
            x(r2),
            x(r3)
        );
        for (all, r) in all_ratios.iter_mut().zip(&mut ratios) {
            if !r.is_empty() {
                all.push(median(r));
            }
        }
    }
    println!();
    for (name, r) in NAMES[1..].iter().zip(&mut all_ratios) {
        if !r.is_empty() {
            println!(
                "rtb-core speed-up vs {name}: median {:.2}x over {} samples",
                median(r),
                r.len()
            );
        }
    }

    println!();
    let mut pipeline = EngineDriver::new();
    let mut medians = Vec::new();
    for case in pipeline_cases() {
        let mut run = || {
            black_box(pipeline.run(black_box(&case)).unwrap());
        };
        let iterations = iterations_for(&mut run);
        let mut times: Vec<f64> = (0..ROUNDS)
            .map(|_| time_block(iterations, &mut run))
            .collect();
        let m = median(&mut times);
        medians.push(m);
        println!("pipeline/3-dsps/{}: median {:.2} us", case.stem, m / 1000.0);
    }
    if !medians.is_empty() {
        println!(
            "pipeline/3-dsps median over samples: {:.2} us",
            median(&mut medians) / 1000.0
        );
    }
}
