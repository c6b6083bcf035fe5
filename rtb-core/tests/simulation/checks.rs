//! Owns the invariants checked at every step of an auction: the start decision and the plan
//! against the reference admission; the breakers against their models; at the finish, one
//! outcome per DSP and per call, the winners and prices against the reference auction, every
//! other bid's loss code, the answer body, the notices (win and loss), the OpenRTB version
//! stated, and the answer-by instant in virtual time.

use std::time::Instant;

use rtb_core::engine::breaker::{State, Transition};
use rtb_core::engine::{Admit, Answer, CallStatus, Finished, NoticeKind, Plan, ShedReason, Start};

use crate::openrtb::RequestModel;
use crate::reference::{self, Expected};
use crate::shell::{Book, Shared, Started};
use crate::world::Timers;

/// An auction answered without calling anyone: 400, 404 or a shed 204.
pub fn immediate(
    shared: &Shared,
    started: &Started,
    model: &RequestModel,
    expected: &Expected,
    start: &Start<'_>,
) {
    let serial = started.serial;
    let got = match start {
        Start::Invalid { body, .. } => {
            let json: serde_json::Value = serde_json::from_slice(body).expect("a 400 body is JSON");
            assert!(
                json["error"].is_string() && json["rule"].is_string(),
                "auction {serial}: 400 body {json}"
            );
            Expected::Invalid
        }
        Start::NoDsp => Expected::NoDsp,
        Start::Shed { reason, .. } => Expected::Shed(*reason),
        Start::Call(..) => unreachable!("handled by the shell"),
    };
    // The adaptive share is the controller's own state, not a function of this request: where
    // the reference would call, a shed for `overload` is right only while the controller is
    // on and sheds a share.
    let adaptive =
        got == Expected::Shed(ShedReason::Overload) && matches!(expected, Expected::Call { .. });
    if adaptive {
        let probability = shared.engine.borrow().shed_probability();
        assert!(
            shared.config.shed_rate.enabled && probability > 0.0,
            "auction {serial}: shed for overload with the controller at {probability}"
        );
    } else {
        assert_eq!(
            &got, expected,
            "auction {serial}: start decision (load {:?}, request {model:?})",
            started.load
        );
    }
    let late = started.now > reference::answer_by(&shared.config, model, started.arrival);
    shared.stats.borrow_mut().immediate(&got, late);
}

/// The plan: the deadline, the `tmax` sent, and the body (only `tmax` may differ).
pub fn plan(
    shared: &Shared,
    started: &Started,
    model: &RequestModel,
    body: &[u8],
    expected: &Expected,
    plan: &Plan<'_>,
) {
    let serial = started.serial;
    let Expected::Call { tmax_ms, deadline } = *expected else {
        panic!(
            "auction {serial}: the engine called DSPs, the reference says {expected:?} (load {:?})",
            started.load
        );
    };
    assert_eq!(plan.deadline, deadline, "auction {serial}: plan deadline");
    assert_eq!(
        plan.version.as_str(),
        model.version.unwrap_or("2.6"),
        "auction {serial}: the OpenRTB version the DSPs are told"
    );
    assert!(
        plan.calls.iter().all(|c| c.tmax_ms == tmax_ms),
        "auction {serial}: tmax sent {:?}, want {tmax_ms}",
        plan.calls
    );
    let (sent_tmax, sent_rest) = strip_tmax(plan.body);
    let (_, original_rest) = strip_tmax(body);
    assert_eq!(
        sent_tmax,
        Some(tmax_ms),
        "auction {serial}: tmax in the body sent"
    );
    assert!(
        sent_rest == original_rest,
        "auction {serial}: the body sent differs beyond tmax"
    );
    let _ = (shared, model);
}

/// The body without its `"tmax":N` member, and N.
fn strip_tmax(body: &[u8]) -> (Option<u32>, Vec<u8>) {
    const KEY: &[u8] = b"\"tmax\":";
    let Some(start) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return (None, body.to_vec());
    };
    let digits = body[start + KEY.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let value = std::str::from_utf8(&body[start + KEY.len()..start + KEY.len() + digits])
        .ok()
        .and_then(|s| s.parse().ok());
    let mut end = start + KEY.len() + digits;
    let mut start = start;
    if body.get(end) == Some(&b',') {
        end += 1;
    } else if start > 0 && body[start - 1] == b',' {
        start -= 1;
    }
    let mut rest = body[..start].to_vec();
    rest.extend_from_slice(&body[end..]);
    (value, rest)
}

/// Every DSP of the engine's table has the breaker state its model has.
pub fn breakers_agree(shared: &Shared, serial: u64) {
    let engine = shared.engine.borrow();
    let breakers = shared.breakers.borrow();
    for dsp in engine.dsps().iter() {
        let model = breakers.state(dsp.id());
        assert_eq!(
            Some(dsp.breaker_state()),
            model,
            "after auction {serial}'s step: breaker of {} (id {})",
            dsp.spec.name,
            dsp.id()
        );
    }
}

/// Everything about a finished auction.
pub fn finished(
    shared: &Shared,
    book: &Book,
    model: &RequestModel,
    finished: &Finished<'_>,
    finish_at: Instant,
) {
    outcomes(shared, book, finished);
    let (winners, losses) = auction(shared, book, model, finished);
    assert_eq!(
        finished.version().as_str(),
        model.version.unwrap_or("2.6"),
        "auction {}: the OpenRTB version the answer states",
        book.serial
    );
    answer(book, model, finished, &winners);
    notices(book, model, finished, &winners);
    loss_notices(book, model, finished, &losses);
    timing(shared, book, finish_at);
    let mut stats = shared.stats.borrow_mut();
    stats.finished(!winners.is_empty(), finished.notices().len());
    let answer_len = match finished.answer() {
        Answer::Bid(body) => body.len() as u64,
        Answer::NoBid => 0,
    };
    stats.fold(&[
        book.serial,
        (finish_at - book.started).as_nanos() as u64,
        answer_len,
    ]);
}

/// One outcome per DSP of the table at the start, one result per planned call.
fn outcomes(shared: &Shared, book: &Book, finished: &Finished<'_>) {
    let serial = book.serial;
    let outcomes = finished.outcomes();
    assert_eq!(
        outcomes.len(),
        book.table.len(),
        "auction {serial}: one outcome per DSP of the table"
    );
    let breakers = shared.breakers.borrow();
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(
            (usize::from(o.dsp), o.dsp_id, o.admit),
            (i, book.table[i], book.admits[i]),
            "auction {serial}: outcome {i}"
        );
        let call = book.calls.iter().find(|c| usize::from(c.dsp) == i);
        match call {
            Some(call) => {
                let status = call.status.expect("every call reported before the finish");
                assert_eq!(o.status, status, "auction {serial}: status of DSP {i}");
                assert_eq!(
                    o.latency,
                    call.at.map(|at| at - book.started),
                    "auction {serial}: latency of DSP {i}"
                );
                assert_eq!(
                    (o.transition, o.breaker),
                    (call.transition, call.breaker),
                    "auction {serial}: breaker of DSP {i}"
                );
                let bids = call.answer.as_ref().map_or(0, |a| a.bid_count());
                assert_eq!(
                    (usize::from(o.bids), o.bids_dropped),
                    (bids, 0),
                    "auction {serial}: bids of DSP {i}"
                );
            }
            None => {
                assert_eq!(
                    (o.status, o.latency, o.bids),
                    (CallStatus::SkippedBreaker, None, 0),
                    "auction {serial}: skipped DSP {i}"
                );
                let now: Option<State> = breakers.state(o.dsp_id);
                assert_eq!(
                    (o.transition, o.breaker),
                    (Transition::None, now),
                    "auction {serial}: skipped DSP {i}'s breaker"
                );
                assert_eq!(o.admit, Admit::Skip);
            }
        }
    }
}

/// The reference's winners and losses, each with the outcome index of its DSP.
type ReferenceOutcome = (Vec<(u16, reference::Winner)>, Vec<(u16, reference::Loss)>);

/// The winners and prices, and every other bid's loss code, against the reference; returns
/// the reference winners and losses with their outcome indexes.
fn auction(
    shared: &Shared,
    book: &Book,
    model: &RequestModel,
    finished: &Finished<'_>,
) -> ReferenceOutcome {
    let serial = book.serial;
    let answers: Vec<_> = book
        .arrivals
        .iter()
        .map(|&c| book.calls[c].answer.as_ref().expect("answered"))
        .collect();
    let increment = shared.config.auction.second_price_increment;
    let adjustments: Vec<f64> = (book.arrivals.iter())
        .map(|&c| book.calls[c].adjustment)
        .collect();
    let (winners, losses) =
        reference::auction_with_losses(model, &answers, &adjustments, increment);
    let dsp_of = |answer: usize| book.calls[book.arrivals[answer]].dsp;
    let want: Vec<(u16, reference::Winner)> =
        winners.into_iter().map(|w| (dsp_of(w.answer), w)).collect();
    let mut losses: Vec<(u16, reference::Loss)> =
        losses.into_iter().map(|l| (dsp_of(l.answer), l)).collect();
    losses.sort();
    let mut rejected: Vec<(u16, String, u16)> = finished
        .rejections()
        .map(|(o, r, bid)| (o, bid.id.to_string(), r.reason.loss_code()))
        .collect();
    rejected.sort();
    let want_rejected: Vec<(u16, String, u16)> = losses
        .iter()
        .map(|(o, l)| (*o, l.bid_id.clone(), l.code))
        .collect();
    assert_eq!(
        rejected, want_rejected,
        "auction {serial}: loss codes\nrequest {model:?}\nanswers {answers:?}"
    );
    let got: Vec<_> = finished
        .winners()
        .map(|(o, w, bid)| (o, usize::from(w.imp), bid.id.to_string(), w.clearing_price))
        .collect();
    let same = got.len() == want.len()
        && got.iter().zip(&want).all(|(g, (o, w))| {
            (g.0, g.1, g.2.as_str()) == (*o, w.imp, w.bid_id.as_str())
                && (g.3 - w.price).abs() < 1e-6
        });
    assert!(same, "auction {serial}: winners {got:?}, reference {want:?}\nrequest {model:?}\nanswers {answers:?}");
    for (i, o) in finished.outcomes().iter().enumerate() {
        let wins = want.iter().filter(|(d, _)| usize::from(*d) == i).count();
        assert_eq!(
            usize::from(o.wins),
            wins,
            "auction {serial}: wins of DSP {i}"
        );
    }
    (want, losses)
}

/// The answer: 204 without a winner, else a bid response with each winner at its price.
fn answer(
    book: &Book,
    model: &RequestModel,
    finished: &Finished<'_>,
    winners: &[(u16, reference::Winner)],
) {
    let serial = book.serial;
    let body = match finished.answer() {
        Answer::NoBid => {
            return assert!(
                winners.is_empty(),
                "auction {serial}: 204 with winners {winners:?}"
            )
        }
        Answer::Bid(body) => body,
    };
    let json: serde_json::Value = serde_json::from_slice(body).expect("the answer is JSON");
    assert_eq!(json["id"], model.id.as_str(), "auction {serial}: answer id");
    assert_eq!(
        json["cur"],
        model.auction_currency(),
        "auction {serial}: answer currency"
    );
    let mut got: Vec<(String, String, i64)> = Vec::new();
    for seat in json["seatbid"].as_array().expect("seatbid") {
        for bid in seat["bid"].as_array().expect("bid") {
            let price = bid["price"].as_f64().expect("price");
            got.push((
                bid["impid"].as_str().expect("impid").into(),
                bid["id"].as_str().expect("bid id").into(),
                micros(price),
            ));
        }
    }
    let mut want: Vec<_> = winners
        .iter()
        .map(|(_, w)| {
            (
                model.imps[w.imp].id.clone(),
                w.bid_id.clone(),
                micros(w.price),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "auction {serial}: bids in the answer");
}

fn micros(price: f64) -> i64 {
    (price * 1e6).round() as i64
}

/// Win notices: one per winner with a `nurl`, at its price, never for a test request.
fn notices(
    book: &Book,
    model: &RequestModel,
    finished: &Finished<'_>,
    winners: &[(u16, reference::Winner)],
) {
    let serial = book.serial;
    let got: Vec<(u16, String)> = finished
        .notices()
        .iter()
        .filter(|(n, _)| n.kind == NoticeKind::Win)
        .map(|(n, url)| {
            assert_eq!(n.loss_code, 0);
            (
                n.outcome,
                String::from_utf8(url.to_vec()).expect("URL text"),
            )
        })
        .collect();
    if model.test {
        return assert!(
            got.is_empty(),
            "auction {serial}: notices for a test request: {got:?}"
        );
    }
    let want: Vec<_> = winners
        .iter()
        .filter_map(|(o, w)| w.nurl.as_ref().map(|n| (*o, n, told(w))))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "auction {serial}: notices {got:?}, winners {winners:?}"
    );
    for ((o, url), (want_o, nurl, price)) in got.iter().zip(&want) {
        let prefix = nurl
            .strip_suffix("${AUCTION_PRICE}")
            .expect("the simulation's nurl ends with the price");
        let paid: f64 = url
            .strip_prefix(prefix)
            .and_then(|p| p.parse().ok())
            .unwrap_or(f64::NAN);
        assert!(
            o == want_o && (paid - price).abs() < 1e-6,
            "auction {serial}: notice {url} to {o}, want {nurl} at {price} to {want_o}"
        );
    }
}

/// The price a winner is told (`${AUCTION_PRICE}`): in its own terms, its clearing price
/// divided by its bid adjustment, rounded to a millionth.
fn told(winner: &reference::Winner) -> f64 {
    if winner.adjustment == 1.0 {
        winner.price
    } else {
        (winner.price / winner.adjustment * 1e6).round() / 1e6
    }
}

/// Loss notices: one per bid that did not win and has a `lurl`, with its loss code, to its
/// DSP; never for a test request.
fn loss_notices(
    book: &Book,
    model: &RequestModel,
    finished: &Finished<'_>,
    losses: &[(u16, reference::Loss)],
) {
    let serial = book.serial;
    let mut got: Vec<(u16, String, u16)> = finished
        .notices()
        .iter()
        .filter(|(n, _)| n.kind == NoticeKind::Loss)
        .map(|(n, url)| {
            let url = std::str::from_utf8(url).expect("URL text");
            let (bid, code) = url
                .split_once("/loss?b=")
                .and_then(|(_, rest)| rest.split_once("&r="))
                .expect("the simulation's lurl shape");
            let code: u16 = code.parse().expect("a substituted loss code");
            assert_eq!(n.loss_code, code, "auction {serial}: notice {url}");
            (n.outcome, bid.to_string(), code)
        })
        .collect();
    got.sort();
    let want: Vec<(u16, String, u16)> = if model.test {
        Vec::new()
    } else {
        losses
            .iter()
            .filter(|(_, l)| l.lurl.is_some())
            .map(|(o, l)| (*o, l.bid_id.clone(), l.code))
            .collect()
    };
    assert_eq!(got, want, "auction {serial}: loss notices");
}

/// No answer after the answer-by instant while the timers fire within what the engine planned
/// for; beyond that, the answer is late by exactly the excess (and counted).
fn timing(shared: &Shared, book: &Book, finish_at: Instant) {
    let serial = book.serial;
    let lateness = finish_at.saturating_duration_since(book.deadline);
    if lateness <= book.covered {
        assert!(
            finish_at <= book.answer_by,
            "auction {serial}: answered {:?} after its answer-by instant",
            finish_at - book.answer_by
        );
        return;
    }
    assert_ne!(
        shared.timers,
        Timers::Covered,
        "auction {serial}: the shell fired {lateness:?} late, more than covered"
    );
    assert!(
        !(shared.timers == Timers::Loop && shared.deadline_strict),
        "auction {serial}: answered {:?} after its answer-by instant: the loop ran its timer {lateness:?} late, the engine planned for {:?} (RTB_SIM_DEADLINE_STRICT)",
        finish_at - book.answer_by,
        book.covered
    );
    let excess = lateness - book.covered;
    assert_eq!(
        finish_at - book.answer_by,
        excess,
        "auction {serial}: late by more than the timer's excess"
    );
    shared.stats.borrow_mut().late(excess);
}
