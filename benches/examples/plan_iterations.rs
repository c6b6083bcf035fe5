//! Runs the engine's whole auction (`pipeline/3-dsps`) N times per mid-size sample with the
//! three DSPs described three ways, for instruction counting under callgrind (issue 15: what
//! planning with per-DSP policy costs):
//! - `plain`: three DSPs onboarded over HTTP (no policy);
//! - `roster50`: the same three in a roster of 50, the 47 others wanting a country no request
//!   has (`countries: [ZZZ]`), so every auction checks 50 policies and calls 3;
//! - `policy`: the three with a QPS cap (never reached), their own `tmax` (one extra body
//!   spliced per auction) and a bid adjustment (the filters are `roster50`'s part).
//!
//! ```sh
//! cargo build --release -p benches --example plan_iterations
//! valgrind --tool=callgrind target/release/examples/plan_iterations roster50 0
//! valgrind --tool=callgrind target/release/examples/plan_iterations roster50 1000
//! ```
//! (instructions per auction = difference of the totals / (1000 x samples)).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::time::Instant;

use benches::{pipeline_cases, run_pipeline, PIPELINE_DSPS};
use rtb_core::engine::{DspSpec, Engine, EngineConfig};
use rtb_core::roster::{self, DspPolicy};

fn spec(name: &str) -> DspSpec {
    DspSpec {
        name: name.into(),
        endpoint: format!("{name}:5000").into(),
    }
}

/// The policy a roster entry with these JSON fields states.
fn policy(fields: &str) -> Rc<DspPolicy> {
    let json = format!(r#"{{"dsps": [{{"name": "x", "url": "http://x:1/bid"{fields}}}]}}"#);
    Rc::new(
        roster::parse(json.as_bytes(), false)
            .unwrap()
            .dsps
            .remove(0)
            .policy,
    )
}

fn engine(case: &str) -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    let every = policy("");
    let mut table: Vec<(DspSpec, Rc<DspPolicy>)> = match case {
        "plain" | "roster50" => PIPELINE_DSPS.map(|n| (spec(n), every.clone())).to_vec(),
        "policy" => {
            let all = policy(r#","qps": 1000000000, "tmax_ms": 40, "bid_adjustment": 0.9"#);
            PIPELINE_DSPS.map(|n| (spec(n), all.clone())).to_vec()
        }
        other => panic!("unknown case {other:?}: plain, roster50 or policy"),
    };
    if case == "roster50" {
        let nowhere = policy(r#","countries": ["ZZZ"]"#);
        table.extend((0..47).map(|i| (spec(&format!("other-{i}")), nowhere.clone())));
    }
    engine.set_dsps_with_policies(table);
    engine
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "plain".into());
    let iterations: usize = args.next().map_or(1000, |n| n.parse().expect("iterations"));
    let cases = pipeline_cases();
    let mut engine = engine(&case);
    let mut workspace = engine.workspace();
    #[allow(clippy::disallowed_methods)] // one instant for every run: the engine reads no clock
    let arrival = Instant::now();
    let mut answered = 0usize;
    for sample in &cases {
        // One warm-up run so buffers have grown before counting starts.
        run_pipeline(&mut engine, &mut workspace, sample, arrival).unwrap();
        for _ in 0..iterations {
            let result = run_pipeline(&mut engine, &mut workspace, sample, arrival).unwrap();
            answered += result.answer_len;
        }
    }
    println!(
        "{case}: {} samples x {iterations} iterations, {answered} answer bytes",
        cases.len()
    );
}
