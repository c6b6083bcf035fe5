//! The ledger records rtb-core writes validate against the published JSON Schema
//! (`deploy/ledger/ledger-record.v2.schema.json`), and the schema refuses what it must refuse.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rtb_core::engine::{CallFailure, DspSpec, Engine, EngineConfig, ShedReason, Start, WorkerLoad};
use rtb_core::ledger::{encode_auction, encode_invalid, encode_shed, RecordMeta};
use rtb_core::{BidRequest, Decoder, Document};
use serde_json::{json, Value};

const META: RecordMeta = RecordMeta {
    arrival_unix_us: 1_764_000_000_000_000,
    worker: 0,
};

fn validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/ledger/ledger-record.v2.schema.json"
    );
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(v: &jsonschema::Validator, record: &Value) -> Vec<String> {
    v.iter_errors(record).map(|e| e.to_string()).collect()
}

/// One auction over three DSPs: an answer, a 500, a timeout; the record's line.
fn auction_record(request: &[u8], answer: &[u8]) -> Vec<u8> {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_dsps(["a", "b", "c"].map(|name| DspSpec {
        name: name.into(),
        endpoint: format!("{name}:1").into(),
    }));
    let mut ws = engine.workspace();
    let now = Instant::now();
    let Start::Call(mut run, _) =
        engine.start(&mut ws, request, None, now, now, WorkerLoad::default())
    else {
        panic!("not called")
    };
    let at = now + Duration::from_millis(2);
    run.on_answer(&mut engine, 0, 200, answer, at);
    run.on_answer(&mut engine, 1, 500, b"", at);
    run.on_failure(&mut engine, 2, CallFailure::Timeout, at);
    let finished = run.finish(&mut engine, at);
    let mut out = Vec::new();
    encode_auction(
        &finished,
        META,
        |o| ["a", "b", "c"][usize::from(o.dsp)],
        &mut out,
    );
    out
}

#[test]
fn every_kind_of_record_validates() {
    let v = validator();
    let mut lines = vec![
        auction_record(
            br#"{"id":"r1","app":{"publisher":{"id":"p"}},"test":1,"imp":[{"id":"1","banner":{}}]}"#,
            br#"{"id":"r1","seatbid":[{"seat":"s","bid":[{"id":"x","impid":"1","price":1.5,"dealid":"nope"},
                {"id":"y","impid":"1","price":1e300},{"id":"z","impid":"1","price":0.7}]}]}"#,
        ),
        auction_record(br#"{"id":"r2","imp":[{"id":"1","banner":{}}]}"#, b"{}"),
    ];
    let mut out = Vec::new();
    let (mut doc, mut decoder) = (Document::default(), Decoder::new());
    let shed = BidRequest::decode(
        br#"{"id":"r3","site":{"publisher":{"id":"p3"}},"imp":[{"id":"1","banner":{}}]}"#,
        &mut doc,
        &mut decoder,
    )
    .unwrap();
    encode_shed(ShedReason::TooLate, Some(&shed), META, &mut out);
    lines.push(out.clone());
    encode_shed(ShedReason::InFlight, None, META, &mut out);
    lines.push(out.clone());
    encode_invalid(
        br#"{"error":"missing","field":"id","rule":"missing"}"#,
        META,
        &mut out,
    );
    lines.push(out);
    let mut kinds = Vec::new();
    for line in &lines {
        let record: Value = serde_json::from_slice(line).unwrap();
        let errs = errors(&v, &record);
        assert!(errs.is_empty(), "{errs:?}\n{record}");
        kinds.push(record["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["auction", "auction", "shed", "shed", "invalid"]);
    let shed: Value = serde_json::from_slice(&lines[2]).unwrap();
    assert_eq!(
        (
            &shed["id"],
            &shed["channel"],
            &shed["publisher"],
            &shed["test"]
        ),
        (&json!("r3"), &json!("site"), &json!("p3"), &json!(false)),
        "{shed}"
    );
    let unread: Value = serde_json::from_slice(&lines[3]).unwrap();
    assert_eq!(
        (&unread["id"], &unread["reason"]),
        (&json!(""), &json!("in_flight"))
    );
    let first: Value = serde_json::from_slice(&lines[0]).unwrap();
    assert_eq!(first["imps"][0]["winner"]["bid"], "z", "{first}");
    assert_eq!(first["bids"].as_array().unwrap().len(), 3);
}

#[test]
fn the_schema_refuses_broken_records() {
    let v = validator();
    let good: Value = serde_json::from_slice(&auction_record(
        br#"{"id":"r1","imp":[{"id":"1","banner":{}}]}"#,
        br#"{"id":"r1","seatbid":[{"bid":[{"id":"x","impid":"1","price":1.5}]}]}"#,
    ))
    .unwrap();
    assert!(errors(&v, &good).is_empty());
    let broken = [
        ("v", serde_json::json!(1)),
        ("kind", serde_json::json!("other")),
        ("answer", serde_json::json!("maybe")),
        ("imps", serde_json::json!([])),
        ("dsps", serde_json::json!([{"dsp": "a"}])),
    ];
    for (field, value) in broken {
        let mut record = good.clone();
        record[field] = value;
        assert!(!errors(&v, &record).is_empty(), "{field} accepted");
    }
    let mut record = good.clone();
    record.as_object_mut().unwrap().remove("ts_us");
    assert!(!errors(&v, &record).is_empty(), "missing ts_us accepted");
}
