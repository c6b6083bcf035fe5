//! Runs `pipeline/3-dsps` N times per mid-size sample, for instruction counting under
//! `valgrind --tool=callgrind` (repeatable on a shared machine, unlike wall time):
//!   cargo build --release -p benches --example pipeline_iterations
//!   valgrind --tool=callgrind target/release/examples/pipeline_iterations 0
//!   valgrind --tool=callgrind target/release/examples/pipeline_iterations 1000
//! (instructions per iteration = difference of the totals / (1000 x samples)).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use benches::{pipeline_cases, EngineDriver};

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("iterations"))
        .unwrap_or(1000);
    let cases = pipeline_cases();
    let mut pipeline = EngineDriver::new();
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
