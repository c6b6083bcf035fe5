//! Interleaved A/B timing of the four request decoders (rtb-core in lenient mode, the
//! like-for-like comparison), rtb-core in strict mode, and the pipeline on the 2.4-3.5 KB
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
use rtb_core::ValidationMode;

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

/// One rtb-core decoder with its own buffers, in a fixed validation mode.
struct Core {
    decoder: Decoder,
    doc: Document,
    mode: ValidationMode,
}

impl Core {
    fn new(mode: ValidationMode) -> Self {
        Self {
            decoder: Decoder::new(),
            doc: Document::default(),
            mode,
        }
    }

    fn decode(&mut self, raw: &[u8]) {
        let request =
            BidRequest::decode_with(black_box(raw), &mut self.doc, &mut self.decoder, self.mode)
                .unwrap();
        black_box(request.imps.len());
    }
}

fn median_cell(v: &mut [f64], unit: &str) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else if unit == "ns" {
        format!("{:.0} ns", median(v))
    } else {
        format!("{:.2}x", median(v))
    }
}

/// Times the decoders on every mid-size sample; returns the per-sample median ratios: each
/// baseline over rtb-core lenient, then strict over lenient.
fn decoders() -> [Vec<f64>; 4] {
    let mut lenient = Core::new(ValidationMode::Lenient);
    let mut strict = Core::new(ValidationMode::Strict);
    println!(
        "| sample | rtb-core | serde_json-owned | serde_json-view | sonic-rs | rtb-core strict | x owned | x view | x sonic | strict / lenient |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut all_ratios: [Vec<f64>; 4] = Default::default();
    for sample in mid_size_request_samples() {
        let raw = sample.bytes.as_slice();
        let owned_ok = decode_owned(raw).is_ok();
        let mut core = || lenient.decode(raw);
        let mut owned = || {
            black_box(decode_owned(black_box(raw)).unwrap());
        };
        let mut view = || {
            black_box(decode_view_serde_json(black_box(raw)).unwrap().imp.len());
        };
        let mut sonic = || {
            black_box(decode_view_sonic(black_box(raw)).unwrap().imp.len());
        };
        let mut core_strict = || strict.decode(raw);
        let mut fns: [&mut dyn FnMut(); 5] = [
            &mut core,
            &mut owned,
            &mut view,
            &mut sonic,
            &mut core_strict,
        ];
        let active: Vec<usize> = (0..5).filter(|&i| i != 1 || owned_ok).collect();
        let iterations: Vec<usize> = (0..5)
            .map(|i| {
                if active.contains(&i) {
                    iterations_for(fns[i])
                } else {
                    0
                }
            })
            .collect();
        let mut times: [Vec<f64>; 5] = Default::default();
        let mut ratios: [Vec<f64>; 4] = Default::default();
        for round in 0..ROUNDS {
            let mut this = [0.0f64; 5];
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
            ratios[3].push(this[4] / this[0]);
        }
        let [t0, t1, t2, t3, t4] = &mut times;
        let [r1, r2, r3, r4] = &mut ratios;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            sample.stem,
            median_cell(t0, "ns"),
            median_cell(t1, "ns"),
            median_cell(t2, "ns"),
            median_cell(t3, "ns"),
            median_cell(t4, "ns"),
            median_cell(r1, "x"),
            median_cell(r2, "x"),
            median_cell(r3, "x"),
            median_cell(r4, "x"),
        );
        for (all, r) in all_ratios.iter_mut().zip(&mut ratios) {
            if !r.is_empty() {
                all.push(median(r));
            }
        }
    }
    all_ratios
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported, everything runs.
    let mut all_ratios = decoders();
    println!();
    for (name, r) in NAMES[1..].iter().zip(&mut all_ratios[..3]) {
        if !r.is_empty() {
            println!(
                "rtb-core speed-up vs {name}: median {:.2}x over {} samples",
                median(r),
                r.len()
            );
        }
    }
    let strict = &mut all_ratios[3];
    if !strict.is_empty() {
        println!(
            "rtb-core strict / lenient decode time: median {:.2}x over {} samples (target <= 1.30x)",
            median(strict),
            strict.len()
        );
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
