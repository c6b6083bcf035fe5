//! Runs `pipeline/3-dsps` N times per mid-size sample, for instruction counting under
//! `valgrind --tool=callgrind` (repeatable on a shared machine, unlike wall time):
//!   cargo build --release -p benches --example pipeline_iterations
//!   valgrind --tool=callgrind target/release/examples/pipeline_iterations 0
//!   valgrind --tool=callgrind target/release/examples/pipeline_iterations 1000
//! (instructions per iteration = difference of the totals / (1000 x samples)).
//! A second argument, `strict` (the default) or `lenient`, sets the engine's validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use benches::{pipeline_cases, EngineDriver};
use rtb_core::ValidationMode;

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args
        .next()
        .map(|n| n.parse().expect("iterations"))
        .unwrap_or(1000);
    let validation = match args.next().as_deref() {
        None | Some("strict") => ValidationMode::Strict,
        Some("lenient") => ValidationMode::Lenient,
        Some(other) => panic!("validation must be strict or lenient, not {other}"),
    };
    let cases = pipeline_cases();
    let mut pipeline = EngineDriver::validating(validation);
    let mut answered = 0usize;
    for case in &cases {
        // One warm-up run so buffers have grown before counting starts.
        pipeline.run(case).unwrap();
        for _ in 0..iterations {
            answered += pipeline.run(case).unwrap().answer_len;
        }
    }
    println!(
        "{} samples x {iterations} iterations, {answered} answer bytes",
        cases.len()
    );
}
