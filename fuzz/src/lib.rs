//! The fuzzed functions, one per target in `fuzz_targets/`, shared with `tests/replay.rs` so a
//! crash input replays as a normal test on stable.
//!
//! Each function takes arbitrary bytes, drives the code a hostile client or DSP reaches, and
//! asserts properties that must hold for every input (a panic is a finding):
//!
//! - [`http_head`]: rtb-io's request head parser (the one the server runs) and body framing:
//!   limits respected, ranges in bounds, a complete head parses the same from any longer
//!   buffer, chunked decoding gives the same body whatever the read split, gzip stays bounded.
//! - [`bid_request`]: decode + validate; accessors of an accepted request do not panic, and
//!   what rtb-core accepts serde_json accepts too, with the same `id`, impression ids and tmax.
//! - [`bid_response`]: a DSP answer fed to the shipped engine (`rtb_core::engine`) for a fixed
//!   request, alone and as two DSPs' answers: the auction's invariants hold, the answer is
//!   valid JSON, every call has exactly one outcome.
//! - [`tmax_splice`]: a spliced body decodes to the same request with only `tmax` changed.
//! - [`encode_response`]: a response built from fuzz strings (escaped by serde_json) wins an
//!   auction run by the engine, and the encoded answer parses and carries the same `adm`.

use bytes::BytesMut;
use std::time::Instant;

use rtb_core::{
    engine::{Answer, CallStatus, DspSpec, Engine, EngineConfig, Finished, Start, WorkerLoad},
    json::{Decoder, Document},
    request::BidRequest,
    response::BidResponse,
    splice::splice_tmax,
};
use rtb_io::{
    body::{gunzip_limited, BodyError, ChunkedDecoder},
    head::{parse_request_head, Framing},
    limits::ServerLimits,
};
use serde_json::Value;

/// Limits small enough that fuzz inputs reach every "over the limit" branch.
fn fuzz_limits(selector: u8) -> ServerLimits {
    let mut limits = ServerLimits::default();
    if selector & 1 == 1 {
        limits.head_bytes_max = 256;
        limits.headers_count_max = 4;
        limits.body_bytes_max = 64;
        limits.decompressed_bytes_max = 128;
    }
    limits
}

/// Head parsing and body framing, as the server runs them.
pub fn http_head(data: &[u8]) {
    let Some((&selector, buf)) = data.split_first() else {
        return;
    };
    let limits = fuzz_limits(selector);
    let head = match parse_request_head(buf, &limits) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                buf.len() < limits.head_bytes_max,
                "partial head over the limit"
            );
            return;
        }
        Err(reject) => {
            let status = reject.status().as_u16();
            assert!((400..=505).contains(&status), "reject status {status}");
            assert!(!reject.message().is_empty());
            return;
        }
    };
    assert!(head.len <= buf.len() && head.len <= limits.head_bytes_max);
    assert!(head.path.end <= head.len && head.path.start <= head.path.end);
    assert!(head.headers.len() <= limits.headers_count_max);
    for (name, value) in &head.headers {
        assert!(name.start <= name.end && name.end <= head.len);
        assert!(value.start <= value.end && value.end <= head.len);
    }
    // The head ends where it ends whatever follows it: the exact head alone parses the same.
    let again = parse_request_head(&buf[..head.len], &limits);
    match again {
        Ok(Some(h)) => {
            assert_eq!(h.len, head.len);
            assert_eq!(h.framing, head.framing);
        }
        other => panic!("head of {} bytes did not reparse: {other:?}", head.len),
    }
    let body = &buf[head.len..];
    let decoded = match head.framing {
        Framing::Empty => return,
        Framing::Length(n) => {
            assert!(n <= limits.body_bytes_max);
            body[..n.min(body.len())].to_vec()
        }
        Framing::Chunked => {
            let whole = chunked(body, limits.body_bytes_max, body.len().max(1));
            // Any split of the reads gives the same outcome (the server reads what arrives).
            let step = usize::from(selector >> 1).max(1);
            let split = chunked(body, limits.body_bytes_max, step);
            assert_eq!(
                whole, split,
                "chunked result depends on the read split ({step})"
            );
            match whole {
                Ok(Some((out, _rest))) => out,
                _ => return,
            }
        }
    };
    if head.gzip {
        match gunzip_limited(&decoded, limits.decompressed_bytes_max) {
            Ok(plain) => assert!(plain.len() <= limits.decompressed_bytes_max),
            Err(BodyError::TooLarge | BodyError::Malformed(_)) => {}
        }
    }
}

/// Decoded body and the bytes left after it, `None` when the body is incomplete.
type Chunked = Result<Option<(Vec<u8>, Vec<u8>)>, BodyError>;

/// Feeds `wire` to a [`ChunkedDecoder`] `step` bytes at a time.
fn chunked(wire: &[u8], limit: usize, step: usize) -> Chunked {
    let mut dec = ChunkedDecoder::new(limit);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    for piece in wire.chunks(step) {
        input.extend_from_slice(piece);
        fed += piece.len();
        let done = dec.decode(&mut input, &mut out)?;
        assert!(out.len() <= limit, "chunked body over its limit");
        if done {
            assert!(dec.is_done());
            // What is left unread is the tail of what was fed: pipelined bytes, untouched.
            let consumed = fed - input.len();
            assert_eq!(&input[..], &wire[consumed..fed]);
            return Ok(Some((out.to_vec(), wire[consumed..].to_vec())));
        }
    }
    Ok(None)
}

/// Decode + validate a bid request; whatever decodes has working accessors and agrees with
/// serde_json.
pub fn bid_request(data: &[u8]) {
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let request = match BidRequest::decode(data, &mut doc, &mut decoder) {
        Ok(r) => r,
        Err(e) => {
            // Error rendering never panics and names something.
            assert!(!e.to_string().is_empty());
            let _ = e.field.to_string();
            assert!(!e.rule.message().is_empty());
            return;
        }
    };
    let _ = request.currencies().count();
    let _ = request.auction_currency();
    let _ = (request.bcat().count(), request.badv().count());
    let _ = (request.wseat().count(), request.bseat().count());
    for imp in &request.imps {
        for deal in request.deals(imp) {
            let _ = request.deal_wseat(&deal).count();
        }
        assert!(request.imp_index(imp.id).is_some());
    }
    let _ = format!("{request:?}");

    let value: Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => panic!("rtb-core accepted a body serde_json rejects: {e}"),
    };
    assert_eq!(value["id"].as_str(), Some(request.id), "id differs");
    let imps = value["imp"].as_array().map_or(0, Vec::len);
    assert_eq!(imps, request.imps.len(), "imp count differs");
    for (i, imp) in request.imps.iter().enumerate() {
        assert_eq!(value["imp"][i]["id"].as_str(), Some(imp.id), "imp[{i}].id");
    }
    if let Some(tmax) = request.tmax_ms {
        // `1e2` is a valid tmax of 100: compare as numbers, not as integer tokens.
        assert_eq!(
            value["tmax"].as_f64(),
            Some(f64::from(tmax)),
            "tmax differs"
        );
    }
    drop(request);
    // The reused document decodes the same body to the same outcome.
    let again = BidRequest::decode(data, &mut doc, &mut decoder);
    assert!(again.is_ok(), "second decode into a reused document failed");
}

/// The request every fuzzed response bids against: two impressions, a deal, blocks, seats.
pub const FIXED_REQUEST: &[u8] = br#"{"id":"req-1","at":2,"tmax":100,"cur":["USD"],
"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5},
{"id":"2","video":{"mimes":["video/mp4"]},"bidfloor":1.0,
 "pmp":{"private_auction":0,"deals":[{"id":"d1","bidfloor":2.0,"wseat":["s1"]}]}}],
"site":{"id":"s"},"bcat":["IAB25"],"badv":["blocked.example"],"bseat":["banned"]}"#;

/// An engine with `dsps` DSPs, as a worker holds it.
fn engine(dsps: usize) -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_dsps((0..dsps).map(|i| DspSpec {
        name: format!("dsp{i}").into(),
        endpoint: format!("dsp{i}:80").into(),
    }));
    engine
}

/// The auction's invariants over a finished auction.
fn check_finished(f: &Finished<'_>, calls: usize) {
    let request = f.request();
    assert_eq!(f.outcomes().len(), calls, "one outcome per DSP");
    for (o, w, bid) in f.winners() {
        let imp = request
            .imps
            .get(usize::from(w.imp))
            .expect("winner imp in range");
        assert!(usize::from(o) < calls);
        assert_eq!(bid.impid, imp.id, "winner bid is for another imp");
        assert!(w.clearing_price.is_finite() && w.clearing_price > 0.0);
        assert!(
            w.clearing_price <= w.bid_price + 1e-9,
            "clearing {} above bid {}",
            w.clearing_price,
            w.bid_price
        );
        assert!(
            w.clearing_price + 1e-9 >= w.floor,
            "clearing {} below floor {}",
            w.clearing_price,
            w.floor
        );
    }
    for (o, r, _) in f.rejections() {
        assert!(usize::from(o) < calls);
        assert!(!r.reason.as_str().is_empty());
        let _ = r.reason.loss_code();
    }
    let wins: u16 = f.outcomes().iter().map(|o| o.wins).sum();
    assert_eq!(usize::from(wins), f.winners().count());
    match f.answer() {
        Answer::Bid(out) => {
            if let Err(e) = serde_json::from_slice::<Value>(out) {
                panic!(
                    "encoded answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(out)
                );
            }
        }
        Answer::NoBid => assert_eq!(f.winners().count(), 0),
    }
}

/// Runs the fixed request through an engine whose `answers.len()` DSPs answer 200 with these
/// bodies, then checks the finished auction with `check`.
fn auction_with(answers: &[&[u8]], check: impl FnOnce(&Finished<'_>)) {
    let mut engine = engine(answers.len());
    let mut workspace = engine.workspace();
    #[allow(clippy::disallowed_methods)] // the fuzz harness is a shell: it may read the clock
    let now = Instant::now();
    let start = engine.start(&mut workspace, FIXED_REQUEST, None, now, now, WorkerLoad::default());
    let Start::Call(mut run, plan) = start else {
        panic!("the fixed request was not planned");
    };
    assert_eq!(plan.calls.len(), answers.len());
    for (call, body) in answers.iter().enumerate() {
        run.on_answer(&mut engine, call, 200, body, now);
    }
    let finished = run.finish(&mut engine, now);
    for o in finished.outcomes() {
        assert_ne!(o.status, CallStatus::Pending, "a reported call left pending");
    }
    check_finished(&finished, answers.len());
    check(&finished);
}

/// Decode a DSP response and run it through the engine's auction and encoder.
pub fn bid_response(data: &[u8]) {
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let Ok(response) = BidResponse::decode(data, &mut doc, &mut decoder) else {
        // The engine must take undecodable answers in its stride too.
        auction_with(&[data], |f| {
            assert_eq!(f.outcomes()[0].status, CallStatus::Undecodable);
        });
        return;
    };
    for bid in &response.bids {
        let _ = (response.adomain(bid).count(), response.cat(bid).count());
    }
    let _ = format!("{response:?}");
    // Alone, and twice (two DSPs answering the same bytes).
    auction_with(&[data], |_| {});
    auction_with(&[data, data], |_| {});
}

/// The object with its top-level `tmax` removed.
fn without_tmax(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.remove("tmax");
    }
    v
}

/// If a body decodes, the spliced body decodes to the same request with only tmax changed.
pub fn tmax_splice(data: &[u8]) {
    let Some((tmax_bytes, raw)) = data.split_first_chunk::<4>() else {
        return;
    };
    // The exchange never sends tmax 0 (a DSP budget is at least `dsp_budget_min`).
    let tmax_ms = u32::from_le_bytes(*tmax_bytes).max(1);
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let Ok(request) = BidRequest::decode(raw, &mut doc, &mut decoder) else {
        return;
    };
    let mut spliced = Vec::new();
    if splice_tmax(raw, request.tmax_site, tmax_ms, &mut spliced).is_err() {
        return;
    }
    let mut doc2 = Document::default();
    let after = match BidRequest::decode(&spliced, &mut doc2, &mut decoder) {
        Ok(r) => r,
        Err(e) => panic!(
            "spliced body does not decode ({e}): {}",
            String::from_utf8_lossy(&spliced)
        ),
    };
    assert_eq!(after.tmax_ms, Some(tmax_ms), "tmax not set");
    assert_eq!(after.id, request.id);
    assert_eq!(after.imps.len(), request.imps.len());
    assert_eq!(after.at, request.at);
    let (Ok(before_v), Ok(after_v)) = (
        serde_json::from_slice::<Value>(raw),
        serde_json::from_slice::<Value>(&spliced),
    ) else {
        panic!(
            "serde_json rejects the body or its splice: {}",
            String::from_utf8_lossy(&spliced)
        );
    };
    assert_eq!(after_v["tmax"].as_u64(), Some(u64::from(tmax_ms)));
    assert_eq!(
        without_tmax(before_v),
        without_tmax(after_v),
        "splice changed more than tmax"
    );
}

/// Splits fuzz bytes into `n` strings at 0xFF bytes (lossy UTF-8), padding with "".
fn fields<const N: usize>(data: &[u8]) -> [String; N] {
    let mut parts = data.split(|&b| b == 0xFF);
    std::array::from_fn(|_| String::from_utf8_lossy(parts.next().unwrap_or(b"")).into_owned())
}

/// A response built from fuzz strings wins, and the encoded answer carries them intact.
pub fn encode_response(data: &[u8]) {
    let Some((&price_byte, rest)) = data.split_first() else {
        return;
    };
    let [adm, seat, bid_id, adid, crid] = fields::<5>(rest);
    // Above imp 1's floor (0.5) and below any sane cap.
    let price = 0.5 + f64::from(price_byte) / 10.0;
    let mut bid = serde_json::json!({
        "id": bid_id, "impid": "1", "price": price, "adm": adm, "crid": crid,
    });
    if !adid.is_empty() {
        bid["adid"] = Value::String(adid.clone());
    }
    let mut seatbid = serde_json::json!({ "bid": [bid] });
    if !seat.is_empty() {
        seatbid["seat"] = Value::String(seat.clone());
    }
    let body = serde_json::json!({ "id": "req-1", "cur": "USD", "seatbid": [seatbid] });
    let raw = serde_json::to_vec(&body).expect("serialise");

    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let response = match BidResponse::decode(&raw, &mut doc, &mut decoder) {
        Ok(r) => r,
        Err(e) => panic!(
            "serde_json-built response rejected ({e}): {}",
            String::from_utf8_lossy(&raw)
        ),
    };
    let Some(decoded) = response.bids.first() else {
        // A bid rtb-core drops (e.g. an empty id) is a legitimate outcome; nothing to encode.
        return;
    };
    assert_eq!(decoded.adm, Some(adm.as_str()), "adm decoded differently");
    let defective = decoded.defect.is_some();
    auction_with(&[&raw], |finished| {
        let Answer::Bid(out) = finished.answer() else {
            // Lost: only because rtb-core rejected the bid (a defect, e.g. the seat is blocked).
            assert!(
                finished.rejections().count() > 0 || defective,
                "valid bid neither won nor was rejected"
            );
            return;
        };
        let answer: Value = serde_json::from_slice(out).expect("checked JSON");
        let won = &answer["seatbid"][0]["bid"][0];
        assert_eq!(answer["id"], "req-1");
        // Macros (`${...}`) in adm are substituted by design; elsewhere it must round-trip.
        if !adm.contains("${") {
            assert_eq!(won["adm"].as_str(), Some(adm.as_str()), "adm changed");
        }
        if !seat.is_empty() {
            assert_eq!(answer["seatbid"][0]["seat"].as_str(), Some(seat.as_str()));
        }
    });
}
