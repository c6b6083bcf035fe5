//! The auction: every bid checked against the request's rules, then one winner per impression
//! and its clearing price.
//!
//! Rules, in the order they are checked (the first broken one is the rejection reason):
//! the response must echo the request id (loss code 5) and be in the auction currency, or in
//! one the rates table converts to it (3: prices are then converted before any check); a
//! bid must be readable (3), name a known impression (3), have a finite price that is > 0, or 0
//! only on a deal (3), no more than [`AuctionConfig::price_cpm_max`] (3); a `dealid` must name
//! a deal of that impression (4) and a private auction takes deal bids only (4); the seat must
//! be allowed by the deal's `wseat`, the request's `wseat` and `bseat` (104); the floor (the
//! deal's, or the impression's) must be in the auction currency or convertible (3) and be met
//! (101 deal, 100 open); no `adomain` in `badv`, domain or parent domain (205); no `cat` in
//! `bcat`, the category or its IAB sub-categories (209); a declared `mtype` must be one of the
//! impression's media (204, "Creative Filtered - Incorrect Creative Format"), and a banner
//! bid's `w` x `h`, when given, one of its banner sizes or formats (203, "Size Not Allowed").
//!
//! Winner per impression: bids on fixed-price deals (`deal.at == 3`) come first, then the
//! highest price, then the earliest arrival (responses in the order given, bids in response
//! order). Clearing price: a fixed-price deal pays the deal floor; first price (`at == 1`,
//! the deal's `at` when the winning bid is on a deal that sets one) pays its bid; otherwise
//! second price: max(second-highest valid bid of the same priority, floor) + the increment,
//! never more than the bid. Losers get 102, or 103 when a fixed-price deal won.
//!
//! Loss codes are those of OpenRTB 2.x list "Loss Reason Codes" (the issue text that asked for
//! this module numbered them one lower; the spec wins).
//! Deterministic: the same input gives the same outcome. Reuses its vectors: no allocation
//! per auction once warm.

use crate::currency::{round_cpm, CurrencyRates};
use crate::request::{BidRequest, Imp, MediaTypes};
use crate::response::{Bid, BidDefect, BidResponse};

/// Settings of the auction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuctionConfig {
    /// Bids above this CPM are refused as absurd.
    pub price_cpm_max: f64,
    /// Added to the second price (OpenRTB's "second price plus").
    pub second_price_increment: f64,
}

/// Default [`AuctionConfig::price_cpm_max`].
pub const DEFAULT_PRICE_CPM_MAX: f64 = 1_000.0;
/// Default [`AuctionConfig::second_price_increment`].
pub const DEFAULT_SECOND_PRICE_INCREMENT: f64 = 0.01;

impl Default for AuctionConfig {
    fn default() -> Self {
        Self {
            price_cpm_max: DEFAULT_PRICE_CPM_MAX,
            second_price_increment: DEFAULT_SECOND_PRICE_INCREMENT,
        }
    }
}

/// Why a bid did not take part in (or did not win) the auction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The bid could not be read (price not a number, id missing...).
    Defective(BidDefect),
    /// The response's `id` is not the request's.
    AuctionIdMismatch,
    /// Response currency, or floor currency, is not the auction currency and no rate converts
    /// it (see [`Auction::run_with_rates`]).
    WrongCurrency,
    /// `impid` names no impression of the request.
    UnknownImp,
    /// Price not finite, negative, or 0 outside a deal.
    InvalidPrice,
    /// Price above [`AuctionConfig::price_cpm_max`].
    PriceTooHigh,
    /// `dealid` names no deal of the impression.
    UnknownDeal,
    /// Open-market bid in a private auction.
    PrivateAuctionNeedsDeal,
    /// Seat not in `wseat` (request or deal) or in `bseat`.
    SeatNotAllowed,
    /// Below the impression's floor.
    BelowFloor,
    /// Below the deal's floor.
    BelowDealFloor,
    /// An `adomain` (or its parent domain) is in `badv`.
    BlockedAdvertiser,
    /// A `cat` (or its parent IAB category) is in `bcat`.
    BlockedCategory,
    /// `mtype` names a media type the impression does not offer (a video bid on a
    /// banner-only impression).
    MediaTypeNotOffered,
    /// A banner bid's `w` x `h` is none of the impression's banner sizes or formats.
    SizeNotAllowed,
    /// Valid, but another bid won.
    LostToHigherBid,
    /// Valid, but a bid on a fixed-price deal won.
    LostToDeal,
}

impl RejectReason {
    /// The OpenRTB loss reason code (`${AUCTION_LOSS}`).
    pub fn loss_code(self) -> u16 {
        match self {
            RejectReason::Defective(_)
            | RejectReason::WrongCurrency
            | RejectReason::UnknownImp
            | RejectReason::InvalidPrice
            | RejectReason::PriceTooHigh => 3,
            RejectReason::UnknownDeal | RejectReason::PrivateAuctionNeedsDeal => 4,
            RejectReason::AuctionIdMismatch => 5,
            RejectReason::BelowFloor => 100,
            RejectReason::BelowDealFloor => 101,
            RejectReason::LostToHigherBid => 102,
            RejectReason::LostToDeal => 103,
            RejectReason::SeatNotAllowed => 104,
            RejectReason::SizeNotAllowed => 203,
            RejectReason::MediaTypeNotOffered => 204,
            RejectReason::BlockedAdvertiser => 205,
            RejectReason::BlockedCategory => 209,
        }
    }

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Defective(_) => "defective",
            RejectReason::AuctionIdMismatch => "auction_id_mismatch",
            RejectReason::WrongCurrency => "wrong_currency",
            RejectReason::UnknownImp => "unknown_imp",
            RejectReason::InvalidPrice => "invalid_price",
            RejectReason::PriceTooHigh => "price_too_high",
            RejectReason::UnknownDeal => "unknown_deal",
            RejectReason::PrivateAuctionNeedsDeal => "private_auction_needs_deal",
            RejectReason::SeatNotAllowed => "seat_not_allowed",
            RejectReason::BelowFloor => "below_floor",
            RejectReason::BelowDealFloor => "below_deal_floor",
            RejectReason::BlockedAdvertiser => "blocked_advertiser",
            RejectReason::BlockedCategory => "blocked_category",
            RejectReason::MediaTypeNotOffered => "media_type_not_offered",
            RejectReason::SizeNotAllowed => "size_not_allowed",
            RejectReason::LostToHigherBid => "lost_to_higher_bid",
            RejectReason::LostToDeal => "lost_to_deal",
        }
    }

    /// Whether the bid itself was at fault (as opposed to losing a fair auction).
    pub fn is_invalid_bid(self) -> bool {
        !matches!(
            self,
            RejectReason::LostToHigherBid | RejectReason::LostToDeal
        )
    }
}

/// A bid that did not win, by position: `responses[response].bids[bid]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Index into the responses given to [`Auction::run`].
    pub response: u16,
    /// Index into that response's `bids`.
    pub bid: u16,
    /// Why.
    pub reason: RejectReason,
}

/// The winning bid of one impression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Winner {
    /// Index into the request's `imps`.
    pub imp: u16,
    /// Index into the responses given to [`Auction::run`].
    pub response: u16,
    /// Index into that response's `bids`.
    pub bid: u16,
    /// What the bid offered, CPM, in the auction currency (converted when the bid was not).
    pub bid_price: f64,
    /// What the winner pays, CPM (`${AUCTION_PRICE}`).
    pub clearing_price: f64,
    /// The lowest bid that would have won (`${AUCTION_MIN_TO_WIN}`).
    pub min_to_win: f64,
    /// The floor that applied to the winner (deal or impression).
    pub floor: f64,
    /// Won on a fixed-price deal.
    pub fixed_price_deal: bool,
    /// Units of the auction currency one unit of the bid's currency bought (1 when the bid was
    /// in the auction currency), times its DSP's bid adjustment: macros tell the DSP its price
    /// in its own currency and terms.
    pub rate: f64,
}

/// What an auction decided; reused across runs.
#[derive(Debug, Default)]
pub struct AuctionOutcome {
    /// One winner per impression that had a valid bid, in impression order.
    pub winners: Vec<Winner>,
    /// Every other bid with its reason.
    pub rejections: Vec<Rejection>,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    imp: u16,
    response: u16,
    bid: u16,
    price: f64,
    floor: f64,
    fixed_price_deal: bool,
    first_price: bool,
    rate: f64,
}

/// Runs auctions, reusing its buffers.
#[derive(Debug, Default)]
pub struct Auction {
    config: AuctionConfig,
    candidates: Vec<Candidate>,
    outcome: AuctionOutcome,
}

impl Auction {
    /// An auction with these settings.
    pub fn new(config: AuctionConfig) -> Self {
        Self {
            config,
            candidates: Vec::with_capacity(16),
            outcome: AuctionOutcome {
                winners: Vec::with_capacity(4),
                rejections: Vec::with_capacity(16),
            },
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &AuctionConfig {
        &self.config
    }

    /// Decides the auction of `request` over `responses`, given in arrival order. Every bid
    /// must be in the auction currency (no rates).
    pub fn run<'q, 'r>(
        &mut self,
        request: &BidRequest<'q>,
        responses: &[BidResponse<'r>],
    ) -> &AuctionOutcome {
        self.run_with_rates(request, responses, None)
    }

    /// Like [`Auction::run`], but a bid or a floor in another currency that `rates` can
    /// convert is converted to the auction currency first, before the price cap, floors and
    /// ranking. A converted price or floor is rounded to a millionth of a CPM ([`round_cpm`])
    /// before it is compared; a currency with no rate is rejected as without rates
    /// ([`RejectReason::WrongCurrency`]).
    pub fn run_with_rates<'q, 'r>(
        &mut self,
        request: &BidRequest<'q>,
        responses: &[BidResponse<'r>],
        rates: Option<&CurrencyRates>,
    ) -> &AuctionOutcome {
        self.run_adjusted(request, responses, rates, &[])
    }

    /// Like [`Auction::run_with_rates`], with each response's bid adjustment (its DSP's, in
    /// response order; a missing one is 1): a bid's price, once in the auction currency, is
    /// multiplied by it before the price cap, floors and ranking, so the clearing price is
    /// decided among adjusted prices. The winner's `rate` includes the adjustment, so the
    /// price macros tell the DSP its clearing price in its own terms (divided by it), never
    /// more than it bid.
    pub fn run_adjusted<'q, 'r>(
        &mut self,
        request: &BidRequest<'q>,
        responses: &[BidResponse<'r>],
        rates: Option<&CurrencyRates>,
        adjustments: &[f64],
    ) -> &AuctionOutcome {
        self.candidates.clear();
        self.outcome.winners.clear();
        self.outcome.rejections.clear();
        let currency = request.auction_currency();
        // Answers in one auction are mostly in one or two currencies: look each up once.
        let mut last_foreign: Option<(&str, Result<f64, RejectReason>)> = None;
        for (r, response) in responses.iter().enumerate() {
            let response_index = index16(r);
            let response_rate = match last_foreign {
                _ if response.id != request.id => Err(RejectReason::AuctionIdMismatch),
                _ if response.cur.eq_ignore_ascii_case(currency) => Ok(1.0),
                Some((cur, rate)) if cur == response.cur => rate,
                _ => {
                    let rate = to_auction_currency(response.cur, currency, rates);
                    last_foreign = Some((response.cur, rate));
                    rate
                }
            };
            let adjustment = adjustments.get(r).copied().unwrap_or(1.0);
            let response_rate = response_rate.map(|rate| rate * adjustment);
            for (b, bid) in response.bids.iter().enumerate() {
                let checked = match response_rate {
                    Err(reason) => Err(reason),
                    Ok(rate) => {
                        let money = Money {
                            currency,
                            rate,
                            rates,
                        };
                        self.check(request, response, bid, money)
                    }
                };
                match checked {
                    Ok(mut candidate) => {
                        candidate.response = response_index;
                        candidate.bid = index16(b);
                        self.candidates.push(candidate);
                    }
                    Err(reason) => self.outcome.rejections.push(Rejection {
                        response: response_index,
                        bid: index16(b),
                        reason,
                    }),
                }
            }
        }
        for imp in 0..request.imps.len() {
            self.decide_imp(index16(imp));
        }
        &self.outcome
    }

    /// The outcome of the last run.
    pub fn outcome(&self) -> &AuctionOutcome {
        &self.outcome
    }

    fn check<'q, 'r>(
        &self,
        request: &BidRequest<'q>,
        response: &BidResponse<'r>,
        bid: &Bid<'r>,
        money: Money<'_>,
    ) -> Result<Candidate, RejectReason> {
        if let Some(defect) = bid.defect {
            return Err(RejectReason::Defective(defect));
        }
        let imp_index = request
            .imp_index(bid.impid)
            .ok_or(RejectReason::UnknownImp)?;
        let imp: &Imp<'q> = &request.imps[imp_index];
        if !bid.price.is_finite() || bid.price < 0.0 || (bid.price == 0.0 && bid.dealid.is_none()) {
            return Err(RejectReason::InvalidPrice);
        }
        let price = money.convert(bid.price);
        if price > self.config.price_cpm_max {
            return Err(RejectReason::PriceTooHigh);
        }
        let terms = floor_terms(request, imp, bid)?;
        if !seat_allowed(bid.seat, request.wseat()) || seat_blocked(bid.seat, request.bseat()) {
            return Err(RejectReason::SeatNotAllowed);
        }
        let floor = money.floor(terms.floor, terms.floor_currency)?;
        if price < floor {
            return Err(terms.below);
        }
        check_blocklists(request, response, bid)?;
        creative_fits(request, imp, bid)?;
        Ok(Candidate {
            imp: index16(imp_index),
            response: 0,
            bid: 0,
            price,
            floor,
            fixed_price_deal: terms.fixed_price_deal,
            first_price: terms.first_price,
            rate: money.rate,
        })
    }

    fn decide_imp(&mut self, imp: u16) {
        let increment = self.config.second_price_increment;
        let mut best: Option<Candidate> = None;
        // Candidates are in arrival order: a later bid replaces the best only when strictly
        // better, so ties go to the first arrival.
        for candidate in self.candidates.iter().filter(|c| c.imp == imp) {
            let better = match best {
                None => true,
                Some(b) => {
                    (candidate.fixed_price_deal, candidate.price) > (b.fixed_price_deal, b.price)
                }
            };
            if better {
                best = Some(*candidate);
            }
        }
        let Some(winner) = best else {
            return;
        };
        let mut second: Option<f64> = None;
        for candidate in self.candidates.iter().filter(|c| c.imp == imp) {
            let is_winner = candidate.response == winner.response && candidate.bid == winner.bid;
            if is_winner {
                continue;
            }
            let reason = if winner.fixed_price_deal && !candidate.fixed_price_deal {
                RejectReason::LostToDeal
            } else {
                if candidate.fixed_price_deal == winner.fixed_price_deal {
                    second = Some(second.map_or(candidate.price, |s| s.max(candidate.price)));
                }
                RejectReason::LostToHigherBid
            };
            self.outcome.rejections.push(Rejection {
                response: candidate.response,
                bid: candidate.bid,
                reason,
            });
        }
        let min_to_win = round_cpm(second.unwrap_or(0.0).max(winner.floor) + increment);
        let clearing_price = if winner.fixed_price_deal {
            winner.floor
        } else if winner.first_price {
            winner.price
        } else {
            min_to_win.min(winner.price)
        };
        debug_assert!(clearing_price >= winner.floor && clearing_price <= winner.price);
        self.outcome.winners.push(Winner {
            imp,
            response: winner.response,
            bid: winner.bid,
            bid_price: winner.price,
            clearing_price,
            min_to_win,
            floor: winner.floor,
            fixed_price_deal: winner.fixed_price_deal,
            rate: winner.rate,
        });
    }
}

/// The creative checks: a declared `mtype` must be one of the impression's media; a banner bid
/// (declared, or on a banner-only impression) with a size must fit the banner's sizes.
fn creative_fits<'q>(
    request: &BidRequest<'q>,
    imp: &Imp<'q>,
    bid: &Bid<'_>,
) -> Result<(), RejectReason> {
    let declared = bid.mtype.and_then(MediaTypes::from_mtype);
    if let Some(media) = declared {
        if !imp.media.contains(media) {
            return Err(RejectReason::MediaTypeNotOffered);
        }
    }
    let banner_bid = match bid.mtype {
        Some(_) => declared == Some(MediaTypes::BANNER),
        None => imp.media == MediaTypes::BANNER,
    };
    if let (true, Some(w), Some(h)) = (banner_bid, bid.w, bid.h) {
        if request.banner_accepts(imp, w, h) == Some(false) {
            return Err(RejectReason::SizeNotAllowed);
        }
    }
    Ok(())
}

/// The rate from a response's currency to the auction's: 1 when they are the same, else the
/// table's, else the bid is in the wrong currency.
fn to_auction_currency(
    from: &str,
    auction: &str,
    rates: Option<&CurrencyRates>,
) -> Result<f64, RejectReason> {
    if from.eq_ignore_ascii_case(auction) {
        return Ok(1.0);
    }
    rates
        .and_then(|rates| rates.rate(from, auction))
        .ok_or(RejectReason::WrongCurrency)
}

/// How one response's amounts become auction-currency amounts.
#[derive(Clone, Copy)]
struct Money<'a> {
    currency: &'a str,
    /// The response's currency to the auction's.
    rate: f64,
    rates: Option<&'a CurrencyRates>,
}

impl Money<'_> {
    /// A bid price in the auction currency; unchanged (not rounded) when no conversion applies.
    fn convert(self, price: f64) -> f64 {
        if self.rate == 1.0 {
            price
        } else {
            round_cpm(price * self.rate)
        }
    }

    /// A floor in `floor_currency` in the auction currency (no floor: no currency needed).
    fn floor(self, floor: f64, floor_currency: &str) -> Result<f64, RejectReason> {
        if floor <= 0.0 {
            return Ok(floor);
        }
        let rate = to_auction_currency(floor_currency, self.currency, self.rates)?;
        Ok(if rate == 1.0 {
            floor
        } else {
            round_cpm(floor * rate)
        })
    }
}

fn index16(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

/// The floor a bid must reach and the auction rules it is judged by: its deal's when it names
/// one, its impression's otherwise.
struct FloorTerms<'q> {
    floor: f64,
    floor_currency: &'q str,
    fixed_price_deal: bool,
    first_price: bool,
    /// The rejection when the price is under `floor`.
    below: RejectReason,
}

/// The terms of the deal the bid names (which must exist in its impression and allow its
/// seat), or of the open auction (refused when the impression is private).
fn floor_terms<'q>(
    request: &BidRequest<'q>,
    imp: &Imp<'q>,
    bid: &Bid<'_>,
) -> Result<FloorTerms<'q>, RejectReason> {
    let Some(deal_id) = bid.dealid else {
        if imp.private_auction {
            return Err(RejectReason::PrivateAuctionNeedsDeal);
        }
        return Ok(FloorTerms {
            floor: imp.bidfloor,
            floor_currency: imp.bidfloorcur,
            fixed_price_deal: false,
            first_price: request.at == 1,
            below: RejectReason::BelowFloor,
        });
    };
    let deal = request
        .deals(imp)
        .find(|deal| deal.id == deal_id)
        .ok_or(RejectReason::UnknownDeal)?;
    if !seat_allowed(bid.seat, request.deal_wseat(&deal)) {
        return Err(RejectReason::SeatNotAllowed);
    }
    let first_price = match deal.at {
        Some(1) => true,
        Some(2) => false,
        _ => request.at == 1,
    };
    Ok(FloorTerms {
        floor: deal.bidfloor,
        floor_currency: deal.bidfloorcur,
        fixed_price_deal: deal.at == Some(3),
        first_price,
        below: RejectReason::BelowDealFloor,
    })
}

/// The request's `badv` and `bcat` against the bid's `adomain` and `cat`.
fn check_blocklists<'r>(
    request: &BidRequest<'_>,
    response: &BidResponse<'r>,
    bid: &Bid<'r>,
) -> Result<(), RejectReason> {
    if response.adomain(bid).any(|domain| {
        request
            .badv()
            .any(|blocked| domain_matches(domain, blocked))
    }) {
        return Err(RejectReason::BlockedAdvertiser);
    }
    if response
        .cat(bid)
        .any(|cat| request.bcat().any(|blocked| category_matches(cat, blocked)))
    {
        return Err(RejectReason::BlockedCategory);
    }
    Ok(())
}

fn seat_allowed<'a>(seat: Option<&str>, mut allowed: impl Iterator<Item = &'a str>) -> bool {
    let Some(first) = allowed.next() else {
        return true;
    };
    let Some(seat) = seat else {
        return false;
    };
    first == seat || allowed.any(|s| s == seat)
}

fn seat_blocked<'a>(seat: Option<&str>, mut blocked: impl Iterator<Item = &'a str>) -> bool {
    seat.is_some_and(|seat| blocked.any(|s| s == seat))
}

/// `ads.example.com` is blocked by `example.com`; `badexample.com` is not.
fn domain_matches(domain: &str, blocked: &str) -> bool {
    let (domain, blocked) = (domain.as_bytes(), blocked.as_bytes());
    if blocked.is_empty() || domain.len() < blocked.len() {
        return false;
    }
    let tail = &domain[domain.len() - blocked.len()..];
    tail.eq_ignore_ascii_case(blocked)
        && (domain.len() == blocked.len() || domain[domain.len() - blocked.len() - 1] == b'.')
}

/// `IAB1-2` is blocked by `IAB1`; `IAB12` is not.
fn category_matches(category: &str, blocked: &str) -> bool {
    category == blocked
        || (category.len() > blocked.len()
            && category.starts_with(blocked)
            && category.as_bytes()[blocked.len()] == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Decoder, Document};

    type Won = (String, String, f64);
    type Lost = (String, RejectReason);

    /// Runs an auction over a request and responses given as JSON; returns winners as
    /// `(imp id, bid id, clearing price)` and rejections as `(bid id, reason)`.
    fn auction(request: &str, responses: &[&str]) -> (Vec<Won>, Vec<Lost>) {
        auction_with(request, responses, None)
    }

    /// [`auction`] with a rates table.
    fn auction_with(
        request: &str,
        responses: &[&str],
        rates: Option<&CurrencyRates>,
    ) -> (Vec<Won>, Vec<Lost>) {
        let mut decoder = Decoder::new();
        let mut request_doc = Document::default();
        let request = BidRequest::decode(request.as_bytes(), &mut request_doc, &mut decoder)
            .expect("request decodes");
        let mut docs: Vec<Document> = responses.iter().map(|_| Document::default()).collect();
        let decoded: Vec<BidResponse<'_>> = responses
            .iter()
            .zip(docs.iter_mut())
            .map(|(raw, doc)| BidResponse::decode(raw.as_bytes(), doc, &mut decoder).unwrap())
            .collect();
        let refs = &decoded;
        let mut auction = Auction::new(AuctionConfig::default());
        let outcome = auction.run_with_rates(&request, refs, rates);
        let winners = outcome
            .winners
            .iter()
            .map(|w| {
                let bid = &refs[w.response as usize].bids[w.bid as usize];
                (
                    request.imps[w.imp as usize].id.to_string(),
                    bid.id.to_string(),
                    w.clearing_price,
                )
            })
            .collect();
        let rejections = outcome
            .rejections
            .iter()
            .map(|r| {
                let bid = &refs[r.response as usize].bids[r.bid as usize];
                (bid.id.to_string(), r.reason)
            })
            .collect();
        (winners, rejections)
    }

    fn request(at: u8, imp_extra: &str, top_extra: &str) -> String {
        format!(
            r#"{{"id":"req","at":{at},"imp":[{{"id":"1","banner":{{}},"bidfloor":1.0{imp_extra}}}]{top_extra}}}"#
        )
    }

    fn response(bids: &[(&str, f64)]) -> String {
        seat_response("", bids, "")
    }

    fn seat_response(seat: &str, bids: &[(&str, f64)], extra: &str) -> String {
        let bids: Vec<String> = bids
            .iter()
            .map(|(id, price)| format!(r#"{{"id":"{id}","impid":"1","price":{price}{extra}}}"#))
            .collect();
        let seat = if seat.is_empty() {
            String::new()
        } else {
            format!(r#""seat":"{seat}","#)
        };
        format!(
            r#"{{"id":"req","seatbid":[{{{seat}"bid":[{}]}}]}}"#,
            bids.join(",")
        )
    }

    fn win(imp: &str, bid: &str, price: f64) -> (String, String, f64) {
        (imp.to_string(), bid.to_string(), price)
    }

    fn rej(bid: &str, reason: RejectReason) -> (String, RejectReason) {
        (bid.to_string(), reason)
    }

    #[test]
    fn first_price_pays_the_bid() {
        let (w, r) = auction(
            &request(1, "", ""),
            &[&response(&[("a", 2.0)]), &response(&[("b", 3.0)])],
        );
        assert_eq!(w, [win("1", "b", 3.0)]);
        assert_eq!(r, [rej("a", RejectReason::LostToHigherBid)]);
    }

    #[test]
    fn second_price_pays_second_plus_increment() {
        let (w, _) = auction(
            &request(2, "", ""),
            &[
                &response(&[("a", 2.0)]),
                &response(&[("b", 3.0), ("c", 1.5)]),
            ],
        );
        assert_eq!(w, [win("1", "b", 2.01)]);
    }

    #[test]
    fn second_price_single_bid_pays_floor_plus_increment_capped_at_bid() {
        let (w, _) = auction(&request(2, "", ""), &[&response(&[("a", 4.0)])]);
        assert_eq!(w, [win("1", "a", 1.01)]);
        let (w, _) = auction(&request(2, "", ""), &[&response(&[("a", 1.005)])]);
        assert_eq!(w, [win("1", "a", 1.005)], "never more than its own bid");
    }

    #[test]
    fn second_price_with_close_bids_is_capped_at_the_winning_bid() {
        let (w, _) = auction(
            &request(2, "", ""),
            &[&response(&[("a", 2.0)]), &response(&[("b", 2.005)])],
        );
        assert_eq!(w, [win("1", "b", 2.005)]);
    }

    #[test]
    fn ties_go_to_the_first_arrival() {
        let (w, r) = auction(
            &request(1, "", ""),
            &[&response(&[("early", 2.0)]), &response(&[("late", 2.0)])],
        );
        assert_eq!(w, [win("1", "early", 2.0)]);
        assert_eq!(r, [rej("late", RejectReason::LostToHigherBid)]);
    }

    #[test]
    fn floors_and_prices_are_enforced() {
        let (w, r) = auction(
            &request(1, "", ""),
            &[&response(&[
                ("below", 0.99),
                ("zero", 0.0),
                ("negative", -1.0),
                ("absurd", 1e9),
                ("ok", 1.0),
            ])],
        );
        assert_eq!(w, [win("1", "ok", 1.0)]);
        assert_eq!(
            r,
            [
                rej("below", RejectReason::BelowFloor),
                rej("zero", RejectReason::InvalidPrice),
                rej("negative", RejectReason::InvalidPrice),
                rej("absurd", RejectReason::PriceTooHigh),
            ]
        );
    }

    #[test]
    fn defective_and_foreign_bids_are_rejected() {
        let string_price = r#"{"id":"req","seatbid":[{"bid":[{"id":"s","impid":"1","price":"5"},{"id":"u","impid":"nope","price":5}]}]}"#;
        let other_auction =
            r#"{"id":"other","seatbid":[{"bid":[{"id":"o","impid":"1","price":5}]}]}"#;
        let wrong_currency =
            r#"{"id":"req","cur":"EUR","seatbid":[{"bid":[{"id":"e","impid":"1","price":5}]}]}"#;
        let (w, r) = auction(
            &request(1, "", ""),
            &[string_price, other_auction, wrong_currency],
        );
        assert!(w.is_empty());
        assert_eq!(
            r,
            [
                rej("s", RejectReason::Defective(BidDefect::PriceNotANumber)),
                rej("u", RejectReason::UnknownImp),
                rej("o", RejectReason::AuctionIdMismatch),
                rej("e", RejectReason::WrongCurrency),
            ]
        );
        assert_eq!(r[0].1.loss_code(), 3);
        assert_eq!(r[2].1.loss_code(), 5);
    }

    #[test]
    fn currency_follows_the_request() {
        let gbp_request = r#"{"id":"req","cur":["GBP"],"imp":[{"id":"1","banner":{},"bidfloor":1,"bidfloorcur":"GBP"}]}"#;
        let gbp =
            r#"{"id":"req","cur":"GBP","seatbid":[{"bid":[{"id":"g","impid":"1","price":2}]}]}"#;
        let usd = r#"{"id":"req","seatbid":[{"bid":[{"id":"u","impid":"1","price":3}]}]}"#;
        let (w, r) = auction(gbp_request, &[gbp, usd]);
        assert_eq!(w, [win("1", "g", 1.01)]);
        assert_eq!(r, [rej("u", RejectReason::WrongCurrency)]);
        let floor_in_eur =
            r#"{"id":"req","imp":[{"id":"1","banner":{},"bidfloor":1,"bidfloorcur":"EUR"}]}"#;
        let (w, r) = auction(floor_in_eur, &[usd]);
        assert!(w.is_empty());
        assert_eq!(r, [rej("u", RejectReason::WrongCurrency)]);
    }

    /// USD per EUR 1.25 (given as USD->EUR 0.8), GBP only through USD.
    fn rates() -> CurrencyRates {
        CurrencyRates::parse(
            br#"{"dataAsOf":"2026-12-05","conversions":{"USD":{"EUR":0.8,"GBP":0.5}}}"#,
        )
        .unwrap()
    }

    fn priced(cur: &str, bids: &[(&str, f64)]) -> String {
        response(bids).replacen(
            r#"{"id":"req","#,
            &format!(r#"{{"id":"req","cur":"{cur}","#),
            1,
        )
    }

    #[test]
    fn a_bid_in_another_currency_is_converted_before_ranking() {
        // 2 EUR = 2.5 USD beats 2.4 USD; second price pays 2.4 + 0.01 USD.
        let rates = rates();
        let (w, r) = auction_with(
            &request(2, "", ""),
            &[&response(&[("usd", 2.4)]), &priced("EUR", &[("eur", 2.0)])],
            Some(&rates),
        );
        assert_eq!(w, [win("1", "eur", 2.41)]);
        assert_eq!(r, [rej("usd", RejectReason::LostToHigherBid)]);
        // First price pays the converted bid; the winner carries the rate for the macros.
        let req = request(1, "", "");
        let (w, _) = auction_with(&req, &[&priced("eur", &[("eur", 2.0)])], Some(&rates));
        assert_eq!(w, [win("1", "eur", 2.5)]);
    }

    #[test]
    fn the_winner_states_its_converted_price_and_rate() {
        let rates = rates();
        let mut decoder = Decoder::new();
        let mut request_doc = Document::default();
        let raw = request(1, "", "");
        let request = BidRequest::decode(raw.as_bytes(), &mut request_doc, &mut decoder).unwrap();
        let mut doc = Document::default();
        let eur = priced("EUR", &[("eur", 2.0)]);
        let response = BidResponse::decode(eur.as_bytes(), &mut doc, &mut decoder).unwrap();
        let mut auction = Auction::new(AuctionConfig::default());
        let responses = [response];
        let outcome = auction.run_with_rates(&request, &responses, Some(&rates));
        let w = outcome.winners[0];
        assert_eq!((w.bid_price, w.clearing_price, w.rate), (2.5, 2.5, 1.25));
    }

    #[test]
    fn without_a_rate_a_foreign_bid_is_rejected_as_without_rates() {
        let rates = rates();
        let (w, r) = auction_with(
            &request(1, "", ""),
            &[
                &priced("JPY", &[("jpy", 500.0)]),
                &response(&[("usd", 1.5)]),
            ],
            Some(&rates),
        );
        assert_eq!(w, [win("1", "usd", 1.5)]);
        assert_eq!(r, [rej("jpy", RejectReason::WrongCurrency)]);
        assert_eq!(r[0].1.loss_code(), 3);
        // No table at all: today's rule, even for a currency a table would convert.
        let (w, r) = auction(&request(1, "", ""), &[&priced("EUR", &[("eur", 2.0)])]);
        assert!(w.is_empty());
        assert_eq!(r, [rej("eur", RejectReason::WrongCurrency)]);
    }

    #[test]
    fn cross_rates_convert_bids_between_two_non_base_currencies() {
        // A GBP auction, a EUR bid: USD lists both, 1 EUR = 0.5 / 0.8 = 0.625 GBP.
        let rates = rates();
        let gbp_request = r#"{"id":"req","at":1,"cur":["GBP"],"imp":[{"id":"1","banner":{},"bidfloorcur":"GBP"}]}"#;
        let (w, _) = auction_with(
            gbp_request,
            &[&priced("EUR", &[("eur", 3.0)])],
            Some(&rates),
        );
        assert_eq!(w, [win("1", "eur", 1.875)]);
    }

    #[test]
    fn floors_in_another_currency_are_converted() {
        // Floor 2 EUR = 2.5 USD: 2.49 USD is below it, 2.5 meets it.
        let rates = rates();
        let req = request(2, r#","bidfloorcur":"EUR""#, "")
            .replace(r#""bidfloor":1.0"#, r#""bidfloor":2.0"#);
        let (w, r) = auction_with(
            &req,
            &[&response(&[("below", 2.49)]), &response(&[("meets", 2.5)])],
            Some(&rates),
        );
        assert_eq!(
            w,
            [win("1", "meets", 2.5)],
            "second price, floor 2.5 + 0.01 capped"
        );
        assert_eq!(r, [rej("below", RejectReason::BelowFloor)]);
        // A floor in a currency with no rate rejects every bid, as without rates.
        let req = request(1, r#","bidfloorcur":"JPY""#, "");
        let (w, r) = auction_with(&req, &[&response(&[("usd", 9.0)])], Some(&rates));
        assert!(w.is_empty());
        assert_eq!(r, [rej("usd", RejectReason::WrongCurrency)]);
    }

    #[test]
    fn converted_prices_are_rounded_to_a_millionth_before_they_are_compared() {
        // 1 EUR = 1.25 USD exactly; 0.3333333 EUR = 0.41666662... USD, rounded to 0.416667,
        // which meets a 0.416667 USD floor (unrounded it would not).
        let rates = rates();
        let req = request(1, "", "").replace(r#""bidfloor":1.0"#, r#""bidfloor":0.416667"#);
        let (w, _) = auction_with(&req, &[&priced("EUR", &[("eur", 0.3333333)])], Some(&rates));
        assert_eq!(w, [win("1", "eur", 0.416667)]);
    }

    #[test]
    fn the_price_cap_applies_to_the_converted_price() {
        // 900 EUR is 1125 USD: above the 1000 CPM cap.
        let rates = rates();
        let (w, r) = auction_with(
            &request(1, "", ""),
            &[&priced("EUR", &[("eur", 900.0)])],
            Some(&rates),
        );
        assert!(w.is_empty());
        assert_eq!(r, [rej("eur", RejectReason::PriceTooHigh)]);
    }

    #[test]
    fn blocked_advertisers_categories_and_seats() {
        let req = request(
            1,
            "",
            r#","badv":["blocked.com"],"bcat":["IAB25"],"bseat":["bad-seat"]"#,
        );
        let adv = seat_response("s", &[("adv", 5.0)], r#","adomain":["ads.blocked.com"]"#);
        let lookalike = seat_response("s", &[("look", 4.0)], r#","adomain":["notblocked.com"]"#);
        let cat = seat_response("s", &[("cat", 5.0)], r#","cat":["IAB25-3"]"#);
        let seat = seat_response("bad-seat", &[("seat", 5.0)], "");
        let (w, r) = auction(&req, &[&adv, &lookalike, &cat, &seat]);
        assert_eq!(w, [win("1", "look", 4.0)]);
        assert_eq!(
            r,
            [
                rej("adv", RejectReason::BlockedAdvertiser),
                rej("cat", RejectReason::BlockedCategory),
                rej("seat", RejectReason::SeatNotAllowed),
            ]
        );
        assert_eq!(r[0].1.loss_code(), 205);
        assert_eq!(r[1].1.loss_code(), 209);
        assert_eq!(r[2].1.loss_code(), 104);
    }

    #[test]
    fn wseat_allows_only_listed_seats() {
        let req = request(1, "", r#","wseat":["good"]"#);
        let (w, r) = auction(
            &req,
            &[
                &seat_response("good", &[("g", 2.0)], ""),
                &seat_response("other", &[("o", 3.0)], ""),
                &response(&[("none", 3.0)]),
            ],
        );
        assert_eq!(w, [win("1", "g", 2.0)]);
        assert_eq!(
            r,
            [
                rej("o", RejectReason::SeatNotAllowed),
                rej("none", RejectReason::SeatNotAllowed)
            ]
        );
    }

    const DEALS: &str = r#","pmp":{"private_auction":0,"deals":[{"id":"fixed","at":3,"bidfloor":2.5},{"id":"open2","at":2,"bidfloor":1.5,"wseat":["s"]},{"id":"first","at":1,"bidfloor":0}]}"#;

    #[test]
    fn fixed_price_deals_beat_open_market_and_pay_the_agreed_price() {
        let req = request(2, DEALS, "");
        let (w, r) = auction(
            &req,
            &[
                &response(&[("open", 9.0)]),
                &seat_response("s", &[("deal", 3.0)], r#","dealid":"fixed""#),
            ],
        );
        assert_eq!(w, [win("1", "deal", 2.5)]);
        assert_eq!(r, [rej("open", RejectReason::LostToDeal)]);
        assert_eq!(r[0].1.loss_code(), 103);
    }

    #[test]
    fn deal_floors_seats_and_ids_are_enforced() {
        let req = request(2, DEALS, "");
        let (w, r) = auction(
            &req,
            &[
                &seat_response("s", &[("below", 2.4)], r#","dealid":"fixed""#),
                &seat_response("x", &[("seat", 5.0)], r#","dealid":"open2""#),
                &seat_response("s", &[("unknown", 5.0)], r#","dealid":"nope""#),
                &seat_response("s", &[("ok", 2.0)], r#","dealid":"open2""#),
            ],
        );
        assert_eq!(w, [win("1", "ok", 1.51)], "second price on the deal floor");
        assert_eq!(
            r,
            [
                rej("below", RejectReason::BelowDealFloor),
                rej("seat", RejectReason::SeatNotAllowed),
                rej("unknown", RejectReason::UnknownDeal),
            ]
        );
        assert_eq!(r[0].1.loss_code(), 101);
        assert_eq!(r[2].1.loss_code(), 4);
    }

    #[test]
    fn a_deal_may_set_its_own_auction_type_and_allow_zero_price() {
        let req = request(2, DEALS, "");
        let (w, _) = auction(
            &req,
            &[&seat_response("s", &[("d", 0.0)], r#","dealid":"first""#)],
        );
        assert_eq!(w, [win("1", "d", 0.0)], "first-price deal with floor 0");
    }

    #[test]
    fn private_auctions_take_deal_bids_only() {
        let req = request(
            1,
            r#","pmp":{"private_auction":1,"deals":[{"id":"d","bidfloor":2}]}"#,
            "",
        );
        let (w, r) = auction(
            &req,
            &[
                &response(&[("open", 9.0)]),
                &seat_response("s", &[("deal", 2.0)], r#","dealid":"d""#),
            ],
        );
        assert_eq!(w, [win("1", "deal", 2.0)]);
        assert_eq!(r, [rej("open", RejectReason::PrivateAuctionNeedsDeal)]);
    }

    #[test]
    fn multi_imp_multi_seat_auctions_each_imp() {
        let req = r#"{"id":"req","at":1,"imp":[{"id":"1","banner":{}},{"id":"2","video":{"mimes":["video/mp4"]}}]}"#;
        let a = r#"{"id":"req","seatbid":[{"seat":"a1","bid":[{"id":"a-1","impid":"1","price":1}]},{"seat":"a2","bid":[{"id":"a-2","impid":"2","price":5}]}]}"#;
        let b = r#"{"id":"req","seatbid":[{"seat":"b","bid":[{"id":"b-1","impid":"1","price":2},{"id":"b-2","impid":"2","price":4}]}]}"#;
        let (w, r) = auction(req, &[a, b]);
        assert_eq!(w, [win("1", "b-1", 2.0), win("2", "a-2", 5.0)]);
        assert_eq!(
            r,
            [
                rej("a-1", RejectReason::LostToHigherBid),
                rej("b-2", RejectReason::LostToHigherBid)
            ]
        );
    }

    #[test]
    fn creatives_must_fit_the_impressions_media_and_banner_sizes() {
        let req = r#"{"id":"req","at":1,"imp":[{"id":"1","banner":{"w":300,"h":250,"format":[{"w":728,"h":90},{"wratio":2,"hratio":1,"wmin":100}]},"bidfloor":1.0}]}"#;
        let (w, r) = auction(
            req,
            &[
                &seat_response("", &[("video", 9.0)], r#","mtype":2"#),
                &seat_response("", &[("wrong-size", 8.0)], r#","mtype":1,"w":320,"h":50"#),
                &seat_response("", &[("undeclared", 7.0)], r#","w":300,"h":251"#),
                &seat_response("", &[("flex", 6.0)], r#","mtype":1,"w":200,"h":100"#),
                &seat_response("", &[("format", 5.0)], r#","w":728,"h":90"#),
            ],
        );
        assert_eq!(w, [win("1", "flex", 6.0)]);
        assert_eq!(
            r,
            [
                rej("video", RejectReason::MediaTypeNotOffered),
                rej("wrong-size", RejectReason::SizeNotAllowed),
                rej("undeclared", RejectReason::SizeNotAllowed),
                rej("format", RejectReason::LostToHigherBid),
            ]
        );
        assert_eq!(r[0].1.loss_code(), 204);
        assert_eq!(r[1].1.loss_code(), 203);
        assert_eq!(
            (r[0].1.as_str(), r[1].1.as_str()),
            ("media_type_not_offered", "size_not_allowed")
        );
    }

    #[test]
    fn sizes_are_checked_only_on_banner_bids_and_unknown_mtypes_pass() {
        let req = r#"{"id":"req","at":1,"imp":[{"id":"1","banner":{"w":300,"h":250},"video":{"mimes":["video/mp4"]}},{"id":"2","banner":{}}]}"#;
        let both = |extra: &str| seat_response("", &[("b", 2.0)], extra);
        for extra in [
            r#","mtype":2,"w":640,"h":480"#,
            r#","w":640,"h":480"#,
            r#","mtype":9"#,
            r#","mtype":1,"w":300,"h":250"#,
        ] {
            let (w, r) = auction(req, &[&both(extra)]);
            assert_eq!((w.len(), r), (1, vec![]), "{extra}");
        }
        let (_, r) = auction(req, &[&both(r#","mtype":3"#)]);
        assert_eq!(r, [rej("b", RejectReason::MediaTypeNotOffered)]);
        let (_, r) = auction(req, &[&both(r#","mtype":1,"w":1,"h":1"#)]);
        assert_eq!(r, [rej("b", RejectReason::SizeNotAllowed)]);
        let no_sizes = r#"{"id":"2","impid":"2","price":2,"mtype":1,"w":1,"h":1}"#;
        let (w, _) = auction(
            req,
            &[&format!(
                r#"{{"id":"req","seatbid":[{{"bid":[{no_sizes}]}}]}}"#
            )],
        );
        assert_eq!(w.len(), 1, "a banner without sizes accepts any size");
    }

    #[test]
    fn domain_and_category_matching() {
        assert!(domain_matches("example.com", "example.com"));
        assert!(domain_matches("ads.Example.com", "example.COM"));
        assert!(!domain_matches("badexample.com", "example.com"));
        assert!(!domain_matches("example.com", ""));
        assert!(category_matches("IAB1-2", "IAB1"));
        assert!(category_matches("IAB1", "IAB1"));
        assert!(!category_matches("IAB12", "IAB1"));
    }
}
