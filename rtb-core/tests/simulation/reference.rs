//! Owns the simulation's references: what the engine must decide, computed independently from
//! the models and the rules as the README and `rtb_core::auction`'s module doc state them, in
//! the simplest code that can state them (brute force, no reuse of the engine's code).
//!
//! - [`auction`]: each impression's winner and clearing price from the raw bids, and every
//!   other bid's OpenRTB loss reason code (the first rule it breaks, else 102 or 103);
//! - [`admission`]: answer 400, 404, shed (and why), or call the DSPs with which `tmax` and
//!   until when, from the request, the instants and the load the worker fed.

use std::time::{Duration, Instant};

use rtb_core::engine::{EngineConfig, ShedReason, WorkerLoad};

use crate::openrtb::{BidModel, Price, RequestModel, ResponseModel};

/// The winner of one impression.
#[derive(Clone, Debug, PartialEq)]
pub struct Winner {
    /// Index of the impression in the request.
    pub imp: usize,
    /// Index of the answer among those given (the order they arrived in).
    pub answer: usize,
    pub bid_id: String,
    pub price: f64,
    /// Its DSP's bid adjustment: the price macro tells it `price / adjustment`.
    pub adjustment: f64,
    pub nurl: Option<String>,
}

/// A bid that did not win, with its OpenRTB loss reason code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loss {
    /// Index of the answer among those given.
    pub answer: usize,
    pub bid_id: String,
    pub code: u16,
    pub lurl: Option<String>,
}

/// A bid that passed every check.
struct Valid<'m> {
    imp: usize,
    answer: usize,
    bid: &'m BidModel,
    /// Adjusted by its DSP's bid adjustment.
    price: f64,
    adjustment: f64,
    floor: f64,
    fixed_price: bool,
    first_price: bool,
}

/// Runs the auction over `answers` (decodable answers, in arrival order), each DSP's bids
/// multiplied by its adjustment (`adjustments`, one per answer; none: 1).
pub fn auction(request: &RequestModel, answers: &[&ResponseModel], increment: f64) -> Vec<Winner> {
    auction_with_losses(request, answers, &[], increment).0
}

/// [`auction`], plus every bid that did not win with its loss code.
pub fn auction_with_losses(
    request: &RequestModel,
    answers: &[&ResponseModel],
    adjustments: &[f64],
    increment: f64,
) -> (Vec<Winner>, Vec<Loss>) {
    let mut valid = Vec::new();
    let mut losses = Vec::new();
    for (a, answer) in answers.iter().enumerate() {
        for seat in &answer.seats {
            for bid in &seat.bids {
                let adjustment = adjustments.get(a).copied().unwrap_or(1.0);
                match check(request, answer, (seat.seat, bid, a), adjustment) {
                    Ok(v) => valid.push(v),
                    Err(code) => losses.push(loss(a, bid, code)),
                }
            }
        }
    }
    let winners = winners(request, &valid, increment);
    for v in &valid {
        let won = winners.iter().find(|(w, _)| w.imp == v.imp);
        match won {
            Some((_, best)) if std::ptr::eq(*best, v) => {}
            Some((_, best)) => {
                let code = if best.fixed_price && !v.fixed_price {
                    103
                } else {
                    102
                };
                losses.push(loss(v.answer, v.bid, code));
            }
            None => unreachable!("a valid bid's impression has a winner"),
        }
    }
    (winners.into_iter().map(|(w, _)| w).collect(), losses)
}

fn loss(answer: usize, bid: &BidModel, code: u16) -> Loss {
    Loss {
        answer,
        bid_id: bid.id.clone(),
        code,
        lurl: bid.lurl.clone(),
    }
}

/// Each impression's winner, with the valid bid it is.
fn winners<'v, 'm>(
    request: &RequestModel,
    valid: &'v [Valid<'m>],
    increment: f64,
) -> Vec<(Winner, &'v Valid<'m>)> {
    let mut winners = Vec::new();
    for imp in 0..request.imps.len() {
        let mut best: Option<&Valid<'_>> = None;
        for v in valid.iter().filter(|v| v.imp == imp) {
            // Fixed-price deals first, then the price; a tie keeps the earlier arrival.
            let better = match best {
                None => true,
                Some(b) => {
                    (v.fixed_price && !b.fixed_price)
                        || (v.fixed_price == b.fixed_price && v.price > b.price)
                }
            };
            if better {
                best = Some(v);
            }
        }
        let Some(w) = best else { continue };
        let price = if w.fixed_price {
            w.floor
        } else if w.first_price {
            w.price
        } else {
            let mut second = 0.0f64;
            for v in valid
                .iter()
                .filter(|v| v.imp == imp && !std::ptr::eq(*v, w))
            {
                second = second.max(v.price);
            }
            (second.max(w.floor) + increment).min(w.price)
        };
        let winner = Winner {
            imp,
            answer: w.answer,
            bid_id: w.bid.id.clone(),
            price,
            adjustment: w.adjustment,
            nurl: w.bid.nurl.clone(),
        };
        winners.push((winner, w));
    }
    winners
}

/// OpenRTB loss reason codes the reference gives.
const INVALID: u16 = 3;
const BAD_DEAL: u16 = 4;
const AUCTION_ID_MISMATCH: u16 = 5;
const BELOW_FLOOR: u16 = 100;
const BELOW_DEAL_FLOOR: u16 = 101;
const SEAT_BLOCKED: u16 = 104;
const ADVERTISER_BLOCKED: u16 = 205;
const CATEGORY_BLOCKED: u16 = 209;

/// The bid as a candidate, or the loss code of the first rule it breaks.
fn check<'m>(
    request: &RequestModel,
    answer: &ResponseModel,
    (seat, bid, index): (Option<&str>, &'m BidModel, usize),
    adjustment: f64,
) -> Result<Valid<'m>, u16> {
    let currency = request.auction_currency();
    if answer.id != request.id {
        return Err(AUCTION_ID_MISMATCH);
    }
    if !answer.cur.unwrap_or("USD").eq_ignore_ascii_case(currency) {
        return Err(INVALID);
    }
    let Price::Cpm(raw) = bid.price else {
        return Err(INVALID);
    };
    let impid = bid.impid.as_deref().ok_or(INVALID)?;
    let imp_index = request
        .imps
        .iter()
        .position(|imp| imp.id == impid)
        .ok_or(INVALID)?;
    let imp = &request.imps[imp_index];
    if raw < 0.0 || (raw == 0.0 && bid.dealid.is_none()) {
        return Err(INVALID);
    }
    // The adjustment applies before the cap, floors and ranking, rounded to a millionth as
    // every price the exchange computes.
    let price = if adjustment == 1.0 {
        raw
    } else {
        (raw * adjustment * 1e6).round() / 1e6
    };
    if price > 1000.0 {
        return Err(INVALID);
    }
    let (floor, floor_cur, fixed_price, first_price) = match &bid.dealid {
        Some(dealid) => {
            let deal = imp.deals.iter().find(|d| &d.id == dealid).ok_or(BAD_DEAL)?;
            if !deal.wseat.is_empty() && !seat.is_some_and(|s| deal.wseat.contains(&s)) {
                return Err(SEAT_BLOCKED);
            }
            let first = match deal.at {
                Some(1) => true,
                Some(2) => false,
                _ => request.at == Some(1),
            };
            let cur = deal.floor_cur.or(imp.floor_cur).unwrap_or("USD");
            (deal.floor, cur, deal.at == Some(3), first)
        }
        None if imp.private_auction => return Err(BAD_DEAL),
        None => (
            imp.floor,
            imp.floor_cur.unwrap_or("USD"),
            false,
            request.at == Some(1),
        ),
    };
    if !request.wseat.is_empty() && !seat.is_some_and(|s| request.wseat.contains(&s)) {
        return Err(SEAT_BLOCKED);
    }
    if seat.is_some_and(|s| request.bseat.contains(&s)) {
        return Err(SEAT_BLOCKED);
    }
    if floor > 0.0 && !floor_cur.eq_ignore_ascii_case(currency) {
        return Err(INVALID);
    }
    if price < floor {
        return Err(if bid.dealid.is_some() {
            BELOW_DEAL_FLOOR
        } else {
            BELOW_FLOOR
        });
    }
    let blocked_domain = |d: &str| {
        request
            .badv
            .iter()
            .any(|b| d == *b || d.ends_with(&format!(".{b}")))
    };
    if bid.adomain.iter().any(|d| blocked_domain(d)) {
        return Err(ADVERTISER_BLOCKED);
    }
    let blocked_cat = |c: &str| {
        request
            .bcat
            .iter()
            .any(|b| c == *b || c.starts_with(&format!("{b}-")))
    };
    if bid.cat.iter().any(|c| blocked_cat(c)) {
        return Err(CATEGORY_BLOCKED);
    }
    Ok(Valid {
        imp: imp_index,
        answer: index,
        bid,
        price,
        adjustment,
        floor,
        fixed_price,
        first_price,
    })
}

/// What the engine must do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Invalid,
    NoDsp,
    Shed(ShedReason),
    Call { tmax_ms: u32, deadline: Instant },
}

/// The instant the answer must be written by: arrival + min(tmax, cap) - margin.
pub fn answer_by(config: &EngineConfig, request: &RequestModel, arrival: Instant) -> Instant {
    let policy = &config.deadline;
    let allowed = match request.tmax_ms {
        Some(ms) => Duration::from_millis(u64::from(ms)).min(policy.cap),
        None => policy.cap,
    };
    arrival + allowed.saturating_sub(policy.response_margin)
}

/// What the engine's timers are planned to cover: its timer slack plus the event-loop lag the
/// worker fed (up to the compensation cap).
pub fn covered(config: &EngineConfig, load: WorkerLoad) -> Duration {
    config.timer_slack + load.event_loop_lag.min(config.lag_compensation_max)
}

pub fn admission(
    config: &EngineConfig,
    request: &RequestModel,
    (no_dsp, no_match): (bool, bool),
    arrival: Instant,
    now: Instant,
    load: WorkerLoad,
) -> Expected {
    // Overload is decided first, before the body is decoded (while any DSP is registered).
    if !no_dsp && load.event_loop_lag > config.overload.event_loop_lag_max {
        return Expected::Shed(ShedReason::EventLoopLag);
    }
    if !no_dsp && load.auctions_in_flight >= config.overload.auctions_in_flight_max {
        return Expected::Shed(ShedReason::InFlight);
    }
    if !no_dsp && load.queue_wait > config.overload.queue_wait_max {
        return Expected::Shed(ShedReason::Overload);
    }
    if request.defect.is_some() {
        return Expected::Invalid;
    }
    if no_dsp {
        return Expected::NoDsp;
    }
    let answer_by = answer_by(config, request, arrival);
    let covered = covered(config, load);
    let left = answer_by.saturating_duration_since(now + covered);
    let tmax = left.saturating_sub(config.deadline.network_allowance);
    if tmax < config.deadline.dsp_budget_min {
        return Expected::Shed(ShedReason::TooLate);
    }
    if no_match {
        return Expected::Shed(ShedReason::NoDspMatched);
    }
    Expected::Call {
        tmax_ms: u32::try_from(tmax.as_millis()).unwrap_or(u32::MAX),
        deadline: answer_by - covered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openrtb::{DealModel, ImpModel, SeatModel};

    fn request(at: Option<u8>, floor: f64, deals: Vec<DealModel>) -> RequestModel {
        RequestModel {
            id: "r".into(),
            tmax_ms: None,
            at,
            cur: None,
            test: false,
            version: None,
            wseat: vec![],
            bseat: vec![],
            badv: vec![],
            bcat: vec![],
            imps: vec![ImpModel {
                id: "i".into(),
                floor,
                floor_cur: None,
                private_auction: false,
                deals,
            }],
            defect: None,
        }
    }

    fn answer(bids: &[(&str, f64, Option<&str>)]) -> ResponseModel {
        let bids = bids
            .iter()
            .map(|&(id, price, deal)| BidModel {
                id: id.into(),
                impid: Some("i".into()),
                price: Price::Cpm(price),
                dealid: deal.map(String::from),
                nurl: None,
                lurl: None,
                adomain: vec![],
                cat: vec![],
            })
            .collect();
        ResponseModel {
            id: "r".into(),
            cur: None,
            seats: vec![SeatModel { seat: None, bids }],
        }
    }

    fn won(w: &[Winner]) -> Vec<(String, f64)> {
        w.iter()
            .map(|w| (w.bid_id.clone(), (w.price * 1e6).round() / 1e6))
            .collect()
    }

    #[test]
    fn the_reference_states_the_readme_rules() {
        // Second price plus the increment, capped at the bid; ties to the first arrival.
        let (a, b) = (
            answer(&[("a", 2.0, None)]),
            answer(&[("b", 3.0, None), ("c", 1.5, None)]),
        );
        assert_eq!(
            won(&auction(&request(None, 1.0, vec![]), &[&a, &b], 0.01)),
            [("b".into(), 2.01)]
        );
        let tie = answer(&[("t", 2.0, None)]);
        assert_eq!(
            won(&auction(&request(Some(1), 1.0, vec![]), &[&a, &tie], 0.01)),
            [("a".into(), 2.0)]
        );
        let alone = answer(&[("x", 1.005, None)]);
        assert_eq!(
            won(&auction(&request(None, 1.0, vec![]), &[&alone], 0.01)),
            [("x".into(), 1.005)]
        );
        // A fixed-price deal beats a higher open bid and pays its floor.
        let deal = DealModel {
            id: "d".into(),
            floor: 2.5,
            floor_cur: None,
            at: Some(3),
            wseat: vec![],
        };
        let bids = answer(&[("open", 9.0, None), ("deal", 3.0, Some("d"))]);
        assert_eq!(
            won(&auction(&request(None, 1.0, vec![deal]), &[&bids], 0.01)),
            [("deal".into(), 2.5)]
        );
        // Below the floor: no winner.
        let low = answer(&[("low", 0.99, None)]);
        assert!(auction(&request(None, 1.0, vec![]), &[&low], 0.01).is_empty());
    }
}
