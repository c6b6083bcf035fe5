//! Currency conversion through the whole engine: a rates table installed on the engine, bids
//! in two currencies, the answer in the auction currency, the win notice in the bid's own
//! currency, and a table swapped between two auctions. Then the auction's invariants under
//! arbitrary rates, currencies, floors and prices (proptest).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rtb_core::currency::round_cpm;
use rtb_core::engine::{Answer, DspSpec, Engine, EngineConfig, Start, WorkerLoad};
use rtb_core::{Auction, AuctionConfig, BidRequest, BidResponse, Decoder, Document};
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
        engine.start(&mut ws, REQUEST, None, now, now, WorkerLoad::default())
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

/// Bid currencies: the auction's, two with a direct or inverse rate, one only through a cross
/// rate, one with none.
const CURRENCIES: [&str; 5] = ["USD", "EUR", "GBP", "SEK", "XXX"];

fn arbitrary_rates() -> impl Strategy<Value = CurrencyRates> {
    (1u32..5_000, 1u32..5_000, 1u32..50_000).prop_map(|(eur, gbp, sek)| {
        let (eur, gbp, sek) = (
            f64::from(eur) / 1000.0,
            f64::from(gbp) / 1000.0,
            f64::from(sek) / 1000.0,
        );
        CurrencyRates::from_rates(
            "prop",
            [
                ("USD", "EUR", eur),
                ("GBP", "USD", 1.0 / gbp),
                ("GBP", "EUR", eur / gbp),
                ("GBP", "SEK", sek),
            ],
        )
        .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn converted_auctions_keep_their_invariants(
        rates in arbitrary_rates(),
        at in 1u8..3,
        floor_cents in 0u32..300,
        floor_currency in 0usize..4,
        bids in proptest::collection::vec((0usize..5, 1u32..2_000), 0..8),
    ) {
        let request_raw = format!(
            r#"{{"id":"r","at":{at},"imp":[{{"id":"1","banner":{{}},"bidfloor":{},"bidfloorcur":"{}"}}]}}"#,
            f64::from(floor_cents) / 100.0,
            CURRENCIES[floor_currency],
        );
        let responses_raw: Vec<String> = bids
            .iter()
            .enumerate()
            .map(|(i, (currency, cents))| format!(
                r#"{{"id":"r","cur":"{}","seatbid":[{{"bid":[{{"id":"b{i}","impid":"1","price":{}}}]}}]}}"#,
                CURRENCIES[*currency],
                f64::from(*cents) / 100.0
            ))
            .collect();
        let mut decoder = Decoder::new();
        let mut request_doc = Document::default();
        let request = BidRequest::decode(request_raw.as_bytes(), &mut request_doc, &mut decoder).unwrap();
        let mut docs: Vec<Document> = responses_raw.iter().map(|_| Document::default()).collect();
        let responses: Vec<BidResponse<'_>> = responses_raw
            .iter()
            .zip(docs.iter_mut())
            .map(|(raw, doc)| BidResponse::decode(raw.as_bytes(), doc, &mut decoder).unwrap())
            .collect();
        let mut auction = Auction::new(AuctionConfig::default());
        let outcome = auction.run_with_rates(&request, &responses, Some(&rates));
        let (winners, rejections) = (outcome.winners.clone(), outcome.rejections.clone());
        prop_assert_eq!(winners.len() + rejections.len(), bids.len(), "every bid accounted for once");
        prop_assert!(winners.len() <= 1);
        // What each bid is worth in USD, if it can be converted.
        let usd = |i: usize| {
            let (currency, cents) = bids[i];
            rates.rate(CURRENCIES[currency], "USD").map(|rate| {
                let price = f64::from(cents) / 100.0;
                if rate == 1.0 { price } else { round_cpm(price * rate) }
            })
        };
        for r in &rejections {
            let i = usize::from(r.response);
            if CURRENCIES[bids[i].0] == "XXX" {
                prop_assert_eq!(r.reason, RejectReason::WrongCurrency, "no rate: rejected");
            }
        }
        if let Some(w) = winners.first() {
            let i = usize::from(w.response);
            prop_assert_ne!(CURRENCIES[bids[i].0], "XXX");
            prop_assert_eq!(Some(w.bid_price), usd(i), "the winner's price is its converted bid");
            prop_assert_eq!(Some(w.rate), rates.rate(CURRENCIES[bids[i].0], "USD"));
            prop_assert!(w.clearing_price >= w.floor - 1e-9 && w.clearing_price <= w.bid_price + 1e-9);
            if at == 1 {
                prop_assert_eq!(w.clearing_price, w.bid_price);
            }
            for r in rejections.iter().filter(|r| !r.reason.is_invalid_bid()) {
                prop_assert!(usd(usize::from(r.response)) <= Some(w.bid_price), "the highest converted bid won");
            }
        }
    }
}
