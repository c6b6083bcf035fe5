//! Owns the auction ledger record: one compact JSON object per auction (and per shed or invalid
//! request), written into a caller's reused buffer from what the engine already hands the
//! shell ([`Finished`], a [`ShedReason`], an invalid request's error body). Pure: no clock (the
//! caller passes the arrival time), no IO, no allocation once the buffer has grown.
//!
//! The record is versioned ([`LEDGER_SCHEMA_VERSION`], the `v` field); the JSON Schema of v2
//! is `deploy/ledger/ledger-record.v2.schema.json` (v1's stays beside it for older files) and
//! the README's "Auction ledger" section describes every field. A field is only ever added in
//! a new version.

use std::io::Write;

use crate::auction::Winner;
use crate::encode::escape_json_into;
use crate::engine::breaker::State;
use crate::engine::{Answer, CallStatus, DspOutcome, Finished, ShedReason};
use crate::macros::price_text;
use crate::request::{BidRequest, Channel};
use crate::response::Bid;

/// The version written in every record's `v`.
pub const LEDGER_SCHEMA_VERSION: u32 = 2;

/// Prices at or above this are written in exponent form (Rust's plain decimal form of 1e300
/// would be 301 digits; a rejected bid may carry any price).
const PRICE_PLAIN_MAX: f64 = 1e15;

/// What the shell knows about a record that the engine does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// When the request arrived (its first byte), microseconds since the Unix epoch.
    pub arrival_unix_us: u64,
    /// The worker that handled it.
    pub worker: u16,
}

/// Writes the record of a finished auction into `out` (cleared first), one line with its
/// `\n`. `dsp_name` names the DSP of an outcome record (the shell's registry names).
pub fn encode_auction<'n>(
    finished: &Finished<'_>,
    meta: RecordMeta,
    dsp_name: impl Fn(&DspOutcome) -> &'n str,
    out: &mut Vec<u8>,
) {
    let request = finished.request();
    head(out, "auction", meta);
    whose(out, request);
    let _ = write!(out, ",\"at\":{}", request.at);
    str_field(out, "cur", request.auction_currency());
    out.extend_from_slice(b",\"tmax_ms\":");
    match request.tmax_ms {
        Some(ms) => int(out, u64::from(ms)),
        None => out.extend_from_slice(b"null"),
    }
    let answer = match finished.answer() {
        Answer::Bid(_) => "bid",
        Answer::NoBid => "no_bid",
    };
    str_field(out, "answer", answer);
    imps(out, finished, &dsp_name);
    dsps(out, finished.outcomes(), &dsp_name);
    bids(out, finished, &dsp_name);
    out.extend_from_slice(b"}\n");
}

/// Writes the record of a request shed before any DSP was called. A request shed once decoded
/// (too late, no DSP matched, the adaptive share) is named by its id, channel, publisher and
/// test flag; one shed for overload (`request` is `None`) was never decoded: an empty id.
pub fn encode_shed(
    reason: ShedReason,
    request: Option<&BidRequest<'_>>,
    meta: RecordMeta,
    out: &mut Vec<u8>,
) {
    head(out, "shed", meta);
    match request {
        Some(request) => whose(out, request),
        // Shed for overload before it was decoded: nobody's request, as far as we know.
        None => out.extend_from_slice(br#","id":"","channel":null,"publisher":null,"test":false"#),
    }
    str_field(out, "reason", reason.as_str());
    out.extend_from_slice(b"}\n");
}

/// Writes the record of an invalid request; `error_body` is the engine's 400 body
/// (`{"error":..,"field":..,"rule":..}`), embedded as the `error` object.
pub fn encode_invalid(error_body: &[u8], meta: RecordMeta, out: &mut Vec<u8>) {
    head(out, "invalid", meta);
    out.extend_from_slice(b",\"error\":");
    out.extend_from_slice(error_body);
    out.extend_from_slice(b"}\n");
}

/// `id`, `channel`, `publisher`, `test`: whose request a record is about.
fn whose(out: &mut Vec<u8>, request: &BidRequest<'_>) {
    str_field(out, "id", request.id);
    out.extend_from_slice(b",\"channel\":");
    opt_str(out, request.channel.map(channel_name));
    out.extend_from_slice(b",\"publisher\":");
    opt_str(out, request.publisher_id);
    let _ = write!(out, ",\"test\":{}", request.test);
}

fn head(out: &mut Vec<u8>, kind: &str, meta: RecordMeta) {
    out.clear();
    let _ = write!(
        out,
        "{{\"v\":{LEDGER_SCHEMA_VERSION},\"kind\":\"{kind}\",\"ts_us\":{},\"worker\":{}",
        meta.arrival_unix_us, meta.worker
    );
}

/// `imps`: each impression with its floor and its winner (or null).
fn imps<'n>(
    out: &mut Vec<u8>,
    finished: &Finished<'_>,
    dsp_name: &impl Fn(&DspOutcome) -> &'n str,
) {
    let request = finished.request();
    out.extend_from_slice(b",\"imps\":[");
    for (i, imp) in request.imps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":\"");
        escape_json_into(imp.id, out);
        out.extend_from_slice(b"\",\"floor\":");
        price(out, imp.bidfloor);
        str_field(out, "floor_cur", imp.bidfloorcur);
        out.extend_from_slice(b",\"winner\":");
        let winner = finished.winners().find(|(_, w, _)| usize::from(w.imp) == i);
        match winner {
            Some((o, w, bid)) => {
                let name = finished.outcomes().get(usize::from(o)).map(dsp_name);
                win(out, name.unwrap_or(""), w, bid);
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
    out.push(b']');
}

fn win(out: &mut Vec<u8>, dsp: &str, winner: &Winner, bid: &Bid<'_>) {
    out.extend_from_slice(b"{\"dsp\":\"");
    escape_json_into(dsp, out);
    out.push(b'"');
    str_field(out, "bid", bid.id);
    out.extend_from_slice(b",\"seat\":");
    opt_str(out, bid.seat);
    out.extend_from_slice(b",\"deal\":");
    opt_str(out, bid.dealid);
    out.extend_from_slice(b",\"price\":");
    price(out, winner.bid_price);
    out.extend_from_slice(b",\"clear\":");
    price(out, winner.clearing_price);
    let _ = write!(out, ",\"fixed_price_deal\":{}}}", winner.fixed_price_deal);
}

/// `dsps`: every DSP in the table when the auction started, called or skipped.
fn dsps<'n>(
    out: &mut Vec<u8>,
    outcomes: &[DspOutcome],
    dsp_name: &impl Fn(&DspOutcome) -> &'n str,
) {
    out.extend_from_slice(b",\"dsps\":[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"dsp\":\"");
        escape_json_into(dsp_name(o), out);
        out.push(b'"');
        str_field(out, "status", status_name(o.status));
        out.extend_from_slice(b",\"http_status\":");
        match o.status {
            CallStatus::BadStatus(code) => int(out, u64::from(code)),
            _ => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"latency_us\":");
        match o.latency {
            Some(d) => int(out, u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            None => out.extend_from_slice(b"null"),
        }
        let _ = write!(
            out,
            ",\"bids\":{},\"bids_dropped\":{},\"wins\":{}",
            o.bids, o.bids_dropped, o.wins
        );
        out.extend_from_slice(b",\"breaker\":");
        opt_str(out, o.breaker.map(State::as_str));
        out.push(b'}');
    }
    out.push(b']');
}

/// `bids`: every bid read, the winners first (with `won: true`), then the rest with why.
fn bids<'n>(
    out: &mut Vec<u8>,
    finished: &Finished<'_>,
    dsp_name: &impl Fn(&DspOutcome) -> &'n str,
) {
    let outcomes = finished.outcomes();
    let name = |o: u16| outcomes.get(usize::from(o)).map_or("", dsp_name);
    out.extend_from_slice(b",\"bids\":[");
    let mut first = true;
    for (o, _, bid) in finished.winners() {
        bid_head(out, &mut first, name(o), bid);
        out.extend_from_slice(b",\"won\":true,\"reason\":null,\"loss\":null}");
    }
    for (o, rejection, bid) in finished.rejections() {
        bid_head(out, &mut first, name(o), bid);
        out.extend_from_slice(b",\"won\":false");
        str_field(out, "reason", rejection.reason.as_str());
        out.extend_from_slice(b",\"loss\":");
        int(out, u64::from(rejection.reason.loss_code()));
        out.push(b'}');
    }
    out.push(b']');
}

fn bid_head(out: &mut Vec<u8>, first: &mut bool, dsp: &str, bid: &Bid<'_>) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(b"{\"dsp\":\"");
    escape_json_into(dsp, out);
    out.push(b'"');
    str_field(out, "imp", bid.impid);
    str_field(out, "id", bid.id);
    out.extend_from_slice(b",\"price\":");
    price(out, bid.price);
    for (name, value) in [("seat", bid.seat), ("deal", bid.dealid), ("crid", bid.crid)] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        opt_str(out, value);
    }
}

/// The ledger's name for how a call ended: one word, failures by kind.
pub fn status_name(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Pending => "pending",
        CallStatus::SkippedBreaker => "skipped_breaker",
        CallStatus::Answered => "answered",
        CallStatus::NoBid => "no_bid",
        CallStatus::Undecodable => "undecodable",
        CallStatus::BadStatus(_) => "bad_status",
        CallStatus::Failed(kind) => kind.as_str(),
    }
}

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Site => "site",
        Channel::App => "app",
        Channel::Dooh => "dooh",
    }
}

fn str_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    escape_json_into(value, out);
    out.push(b'"');
}

fn opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.push(b'"');
            escape_json_into(v, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn int(out: &mut Vec<u8>, value: u64) {
    let _ = write!(out, "{value}");
}

/// A CPM price as the answer writes it (shortest round-trip decimal), so a winner's `clear`
/// equals the answer's `price` text; null when not finite.
fn price(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if value.abs() < PRICE_PLAIN_MAX {
        price_text(value, &mut |piece| out.extend_from_slice(piece));
    } else {
        let _ = write!(out, "{value:e}");
    }
}

/// The fields every record carries, whatever its kind (for readers that check them).
pub const COMMON_FIELDS: [&str; 4] = ["v", "kind", "ts_us", "worker"];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::{CallFailure, DspSpec, Engine, EngineConfig, Start, WorkerLoad};
    use std::time::{Duration, Instant};

    const META: RecordMeta = RecordMeta {
        arrival_unix_us: 1_700_000_000_000_000,
        worker: 1,
    };

    fn parse(out: &[u8]) -> serde_json::Value {
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn an_auction_record_holds_winner_rejections_and_failures() {
        let mut engine = Engine::new(EngineConfig::default());
        engine.set_dsps(["braid", "witness", "hangs"].map(|name| DspSpec {
            name: name.into(),
            endpoint: format!("{name}:5000").into(),
        }));
        let mut ws = engine.workspace();
        let raw = br#"{"id":"a\"1","tmax":120,"site":{"publisher":{"id":"pub-7"}},
            "imp":[{"id":"1","banner":{},"bidfloor":0.5},{"id":"2","banner":{},"bidfloor":9}]}"#;
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let Start::Call(mut run, _plan) =
            engine.start(&mut ws, raw, None, now, now, WorkerLoad::default())
        else {
            panic!("not called")
        };
        let at = now + Duration::from_millis(3);
        run.on_answer(
            &mut engine,
            0,
            200,
            br#"{"id":"a\"1","seatbid":[{"seat":"s1","bid":[
            {"id":"b1","impid":"1","price":2.0,"crid":"c"},{"id":"b2","impid":"2","price":1}]}]}"#,
            at,
        );
        run.on_answer(
            &mut engine,
            1,
            200,
            br#"{"id":"a\"1","seatbid":[{"bid":[
            {"id":"w1","impid":"1","price":1.25}]}]}"#,
            at,
        );
        run.on_failure(&mut engine, 2, CallFailure::Timeout, at);
        let finished = run.finish(&mut engine, at);
        let names = ["braid", "witness", "hangs"];
        let mut out = Vec::new();
        encode_auction(&finished, META, |o| names[usize::from(o.dsp)], &mut out);
        let r = parse(&out);
        assert_eq!(r["v"], LEDGER_SCHEMA_VERSION);
        assert_eq!(r["kind"], "auction");
        assert_eq!(r["id"], "a\"1");
        assert_eq!(r["channel"], "site");
        assert_eq!(r["publisher"], "pub-7");
        assert_eq!(r["answer"], "bid");
        assert_eq!(r["imps"][0]["winner"]["dsp"], "braid");
        assert_eq!(r["imps"][0]["winner"]["clear"], 1.26);
        assert_eq!(r["imps"][1]["winner"], serde_json::Value::Null);
        assert_eq!(r["dsps"][2]["status"], "timeout");
        assert_eq!(r["dsps"][0]["latency_us"], 3000);
        let bids = r["bids"].as_array().unwrap();
        assert_eq!(bids.len(), 3);
        assert_eq!(bids[0]["won"], true);
        let below = bids.iter().find(|b| b["id"] == "b2").unwrap();
        assert_eq!(
            (below["reason"].as_str(), below["loss"].as_u64()),
            (Some("below_floor"), Some(100))
        );
        let lost = bids.iter().find(|b| b["id"] == "w1").unwrap();
        assert_eq!(lost["reason"], "lost_to_higher_bid");
        // The clearing price is written exactly as the answer writes it.
        let Answer::Bid(answer) = finished.answer() else {
            panic!()
        };
        assert!(std::str::from_utf8(answer)
            .unwrap()
            .contains(r#""price":1.26"#));
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .contains(r#""clear":1.26"#));
    }

    #[test]
    fn shed_and_invalid_records_are_marked() {
        let mut out = Vec::new();
        let (mut doc, mut decoder) = (crate::Document::default(), crate::Decoder::new());
        let body = br#"{"id":"s1","app":{"publisher":{"id":"p"}},"test":1,"imp":[{"id":"1","banner":{}}]}"#;
        let request = BidRequest::decode(body, &mut doc, &mut decoder).unwrap();
        encode_shed(ShedReason::InFlight, Some(&request), META, &mut out);
        let r = parse(&out);
        assert_eq!(
            (r["kind"].as_str(), r["reason"].as_str(), r["id"].as_str()),
            (Some("shed"), Some("in_flight"), Some("s1"))
        );
        assert_eq!(
            (r["channel"].as_str(), r["test"].as_bool()),
            (Some("app"), Some(true))
        );
        encode_invalid(br#"{"error":"missing","field":"id"}"#, META, &mut out);
        let r = parse(&out);
        assert_eq!(r["kind"], "invalid");
        assert_eq!(r["error"]["field"], "id");
        for field in COMMON_FIELDS {
            assert!(!r[field].is_null(), "{field}");
        }
    }

    #[test]
    fn prices_stay_valid_json_whatever_their_size() {
        for (value, text) in [
            (1.26, "1.26"),
            (1e300, "1e300"),
            (f64::NAN, "null"),
            (0.0, "0"),
        ] {
            let mut out = Vec::new();
            price(&mut out, value);
            assert_eq!(std::str::from_utf8(&out).unwrap(), text);
        }
    }
}
