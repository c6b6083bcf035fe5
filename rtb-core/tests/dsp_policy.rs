//! The engine applying each DSP's roster policy at planning time and in the auction (issue 15):
//! the QPS cap as this worker's share, the DSP's own `tmax` cap in the body it is sent, and
//! the bid adjustment before floors and ranking, down to the price the winner is told.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::rc::Rc;
use std::time::{Duration, Instant};

use rtb_core::engine::{Answer, DspSpec, Engine, EngineConfig, Start, WorkerLoad};
use rtb_core::roster::{self, DspPolicy};

/// An engine of `workers` workers whose DSPs are the roster's entries, in order.
fn engine_from_roster(json: &str, workers: usize) -> Engine {
    let roster = roster::parse(json.as_bytes(), false).expect("a valid roster");
    let mut engine = Engine::new(EngineConfig {
        workers,
        ..EngineConfig::default()
    });
    engine.set_dsps_with_policies(roster.dsps.iter().map(|e| {
        let spec = DspSpec {
            name: e.name.as_str().into(),
            endpoint: format!("{}:5000", e.name).into(),
        };
        (spec, Rc::new(e.policy.clone()))
    }));
    engine
}

const BANNER: &[u8] =
    br#"{"id":"q","tmax":120,"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":1.0}]}"#;

#[allow(clippy::disallowed_methods)] // a test needs some instant; the engine reads no clock
fn t0() -> Instant {
    Instant::now()
}

/// The names of the DSPs an auction started at `at` calls.
fn called(engine: &mut Engine, at: Instant) -> Vec<String> {
    let mut workspace = engine.workspace();
    let load = WorkerLoad::default();
    let names = match engine.start(&mut workspace, BANNER, None, at, at, load) {
        Start::Call(_, plan) => (plan.calls.iter())
            .map(|c| {
                engine
                    .dsps()
                    .get(c.dsp.into())
                    .unwrap()
                    .spec
                    .name
                    .to_string()
            })
            .collect(),
        Start::Shed { .. } => Vec::new(),
        other => panic!("{other:?}"),
    };
    names
}

#[test]
fn a_capped_dsp_gets_its_share_of_the_cap_and_the_others_everything() {
    // 100 QPS for the process, 2 workers: 50 a second on this one.
    let roster = r#"{"dsps": [
        {"name": "capped", "url": "http://capped:5000/bid", "qps": 100},
        {"name": "free", "url": "http://free:5000/bid"}]}"#;
    let mut engine = engine_from_roster(roster, 2);
    let start = t0();
    let (mut capped, mut free) = (0, 0);
    // Ten seconds at 1,000 auctions a second: 20x the worker's share.
    for i in 0..10_000u64 {
        let names = called(&mut engine, start + Duration::from_millis(i));
        capped += names.iter().filter(|n| *n == "capped").count();
        free += names.iter().filter(|n| *n == "free").count();
    }
    assert_eq!(free, 10_000);
    // One second banked at the start, then 50 a second for 10 s.
    assert!((545..=555).contains(&capped), "{capped}");
    let dsp = engine.dsps().get(0).unwrap();
    let skipped = dsp.policy_skips(rtb_core::policy::SkipReason::Qps);
    assert_eq!(skipped as usize, 10_000 - capped);
}

#[test]
fn a_dsp_over_its_cap_alone_sheds_as_no_dsp_matched() {
    let roster = r#"{"dsps": [{"name": "one", "url": "http://one:5000/bid", "qps": 1}]}"#;
    let mut engine = engine_from_roster(roster, 1);
    let at = t0();
    assert_eq!(called(&mut engine, at), ["one"]);
    let mut workspace = engine.workspace();
    match engine.start(&mut workspace, BANNER, None, at, at, WorkerLoad::default()) {
        Start::Shed { reason, .. } => assert_eq!(reason.as_str(), "no_dsp_matched"),
        other => panic!("{other:?}"),
    };
}

#[test]
fn each_dsp_is_sent_the_smaller_of_its_own_tmax_and_the_auctions() {
    let roster = r#"{"dsps": [
        {"name": "a", "url": "http://a:5000/bid", "tmax_ms": 30},
        {"name": "b", "url": "http://b:5000/bid"},
        {"name": "c", "url": "http://c:5000/bid", "tmax_ms": 30},
        {"name": "d", "url": "http://d:5000/bid", "tmax_ms": 45},
        {"name": "e", "url": "http://e:5000/bid", "tmax_ms": 5000}]}"#;
    let mut engine = engine_from_roster(roster, 1);
    let mut workspace = engine.workspace();
    let at = t0();
    let Start::Call(_, plan) =
        engine.start(&mut workspace, BANNER, None, at, at, Default::default())
    else {
        panic!("five DSPs are called");
    };
    let auction_tmax = plan.calls[1].tmax_ms;
    assert!(auction_tmax > 45 && auction_tmax < 80, "{auction_tmax}");
    let sent: Vec<(u32, String)> = (plan.calls.iter())
        .map(|c| {
            (
                c.tmax_ms,
                String::from_utf8(plan.body_of(c).to_vec()).unwrap(),
            )
        })
        .collect();
    let tmaxes: Vec<u32> = sent.iter().map(|s| s.0).collect();
    assert_eq!(tmaxes, [30, auction_tmax, 30, 45, auction_tmax]);
    for (tmax, body) in &sent {
        assert!(body.contains(&format!(r#""tmax":{tmax},"#)), "{body}");
        assert_eq!(body.replace(&format!(r#""tmax":{tmax},"#), ""), {
            let original = std::str::from_utf8(BANNER).unwrap();
            original.replace(r#""tmax":120,"#, "")
        });
    }
    // Same cap, same body: a and c share one splice; b and e the plan's body.
    assert!(std::ptr::eq(
        plan.body_of(&plan.calls[0]),
        plan.body_of(&plan.calls[2])
    ));
    assert!(std::ptr::eq(plan.body_of(&plan.calls[1]), plan.body));
    assert!(std::ptr::eq(plan.body_of(&plan.calls[4]), plan.body));
}

/// Runs one auction where `a` bids `price_a` and `b` bids `price_b` on the one impression;
/// returns the answer's body.
fn auction_with_bids(engine: &mut Engine, price_a: f64, price_b: f64) -> String {
    let mut workspace = engine.workspace();
    let at = t0();
    let Start::Call(mut run, _plan) =
        engine.start(&mut workspace, BANNER, None, at, at, WorkerLoad::default())
    else {
        panic!("both DSPs are called");
    };
    for (call, (seat, price)) in [("a", price_a), ("b", price_b)].into_iter().enumerate() {
        let answer = format!(
            r#"{{"id":"q","seatbid":[{{"seat":"{seat}","bid":[{{"id":"{seat}1","impid":"1",
               "price":{price},"nurl":"http://{seat}/win?p=${{AUCTION_PRICE}}"}}]}}]}}"#
        );
        run.on_answer(engine, call, 200, answer.as_bytes(), at);
    }
    let finished = run.finish(engine, at);
    let notices: Vec<String> = (finished.notices().iter())
        .map(|(_, url)| String::from_utf8(url.to_vec()).unwrap())
        .collect();
    match finished.answer() {
        Answer::Bid(body) => format!("{} {notices:?}", String::from_utf8_lossy(body)),
        Answer::NoBid => format!("no bid {notices:?}"),
    }
}

#[test]
fn the_bid_adjustment_applies_before_floors_and_ranking() {
    let roster = r#"{"dsps": [
        {"name": "a", "url": "http://a:5000/bid", "bid_adjustment": 0.5},
        {"name": "b", "url": "http://b:5000/bid"}]}"#;
    let mut engine = engine_from_roster(roster, 1);
    // a bids 3.0, worth 1.5 adjusted; b bids 2.0: b wins, second price 1.5 + 0.01.
    let won_by_b = auction_with_bids(&mut engine, 3.0, 2.0);
    assert!(won_by_b.contains(r#""seat":"b""#), "{won_by_b}");
    assert!(won_by_b.contains(r#""price":1.51"#), "{won_by_b}");
    assert!(won_by_b.contains("http://b/win?p=1.51"), "{won_by_b}");
    // a bids 5.0, worth 2.5: a wins at 2.01 (adjusted), and is told 2.01 / 0.5 = 4.02 in its
    // own terms, below its 5.0 bid.
    let won_by_a = auction_with_bids(&mut engine, 5.0, 2.0);
    assert!(won_by_a.contains(r#""seat":"a""#), "{won_by_a}");
    assert!(won_by_a.contains(r#""price":2.01"#), "{won_by_a}");
    assert!(won_by_a.contains("http://a/win?p=4.02"), "{won_by_a}");
    // a alone bids 1.8, worth 0.9: below the 1.0 floor, so nobody wins.
    let below_floor = auction_with_bids(&mut engine, 1.8, 0.5);
    assert!(below_floor.starts_with("no bid"), "{below_floor}");
}

#[test]
fn a_changed_cap_gets_a_fresh_bucket_and_an_unchanged_one_keeps_its_count() {
    let mut engine = engine_from_roster(
        r#"{"dsps": [{"name": "one", "url": "http://one:5000/bid", "qps": 1}]}"#,
        1,
    );
    let at = t0();
    assert_eq!(called(&mut engine, at), ["one"]);
    let same = DspPolicy {
        qps: Some(1),
        ..DspPolicy::default()
    };
    let spec = engine.dsps().get(0).unwrap().spec.clone();
    engine.set_dsps_with_policies([(spec.clone(), Rc::new(same))]);
    assert!(
        called(&mut engine, at).is_empty(),
        "the bucket was kept: empty"
    );
    let raised = DspPolicy {
        qps: Some(5),
        ..DspPolicy::default()
    };
    engine.set_dsps_with_policies([(spec, Rc::new(raised))]);
    assert_eq!(called(&mut engine, at), ["one"], "a new cap, a full bucket");
}
