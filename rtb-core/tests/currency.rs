//! Currency conversion through the whole engine: a rates table installed on the engine, bids
//! in two currencies, the answer in the auction currency, the win notice in the bid's own
//! currency, and a table swapped between two auctions.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtb_core::engine::{Answer, DspSpec, Engine, EngineConfig, Start, WorkerLoad};
use rtb_core::{CurrencyRates, RejectReason};

const REQUEST: &[u8] =
    br#"{"id":"a1","at":2,"imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5}]}"#;
const USD_BID: &[u8] = br#"{"id":"a1","seatbid":[{"bid":[{"id":"usd","impid":"1","price":2.2}]}]}"#;
const EUR_BID: &[u8] =
    br#"{"id":"a1","cur":"EUR","seatbid":[{"bid":[{"id":"eur","impid":"1","price":2.0,
    "nurl":"http://eur/win?p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}"}]}]}"#;

fn rates(usd_to_eur: f64) -> Arc<CurrencyRates> {
    let file =
        format!(r#"{{"dataAsOf":"2026-12-05","conversions":{{"USD":{{"EUR":{usd_to_eur}}}}}}}"#);
    Arc::new(CurrencyRates::parse(file.as_bytes()).unwrap())
}

/// Runs one auction where DSP 0 bids 2.2 USD and DSP 1 bids 2.0 EUR; returns the answer, the
/// win notices and each bid's rejection reason.
fn auction(engine: &mut Engine) -> (Option<String>, Vec<String>, Vec<(String, RejectReason)>) {
    let mut ws = engine.workspace();
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let Start::Call(mut run, _plan) =
        engine.start(&mut ws, REQUEST, now, now, WorkerLoad::default())
    else {
        panic!("two DSPs, an idle worker: a plan")
    };
    let at = now + Duration::from_millis(3);
    run.on_answer(engine, 0, 200, USD_BID, at);
    run.on_answer(engine, 1, 200, EUR_BID, at);
    let finished = run.finish(engine, at);
    let answer = match finished.answer() {
        Answer::Bid(body) => Some(String::from_utf8(body.to_vec()).unwrap()),
        Answer::NoBid => None,
    };
    let notices = finished
        .notices()
        .iter()
        .map(|(_, url)| String::from_utf8(url.to_vec()).unwrap())
        .collect();
    let rejections = finished
        .rejections()
        .map(|(_, r, bid)| (bid.id.to_string(), r.reason))
        .collect();
    (answer, notices, rejections)
}

fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_dsps(["usd-dsp", "eur-dsp"].map(|name| DspSpec {
        name: name.into(),
        endpoint: format!("{name}:80").into(),
    }));
    engine
}

#[test]
fn a_eur_bid_beats_a_lower_usd_bid_and_the_answer_is_in_usd() {
    let mut engine = engine();
    engine.set_currency_rates(Some(rates(0.8)));
    let (answer, notices, rejections) = auction(&mut engine);
    let answer: serde_json::Value = serde_json::from_str(&answer.expect("a bid")).unwrap();
    // 2.0 EUR = 2.5 USD beats 2.2 USD; second price: 2.21 USD.
    assert_eq!(answer["cur"], "USD");
    let bid = &answer["seatbid"][0]["bid"][0];
    assert_eq!(
        (bid["id"].as_str(), bid["price"].as_f64()),
        (Some("eur"), Some(2.21))
    );
    // The DSP is told its price in its own currency: 2.21 / 1.25 = 1.768 EUR.
    assert_eq!(notices, ["http://eur/win?p=1.768&c=EUR"]);
    assert_eq!(
        rejections,
        [("usd".to_string(), RejectReason::LostToHigherBid)]
    );
}

#[test]
fn a_new_table_between_auctions_changes_the_result_and_none_restores_the_old_rule() {
    let mut engine = engine();
    engine.set_currency_rates(Some(rates(0.8)));
    let (answer, _, _) = auction(&mut engine);
    assert!(answer.unwrap().contains(r#""id":"eur""#));
    // EUR weakens: 2.0 EUR = 1.6 USD now loses to 2.2 USD.
    engine.set_currency_rates(Some(rates(1.25)));
    let (answer, notices, rejections) = auction(&mut engine);
    assert!(answer.unwrap().contains(r#""id":"usd""#));
    assert!(notices.is_empty(), "the USD bid has no nurl");
    assert_eq!(
        rejections,
        [("eur".to_string(), RejectReason::LostToHigherBid)]
    );
    // No table: the EUR bid is in the wrong currency, as before conversion existed.
    engine.set_currency_rates(None);
    let (_, _, rejections) = auction(&mut engine);
    assert_eq!(
        rejections,
        [("eur".to_string(), RejectReason::WrongCurrency)]
    );
}
