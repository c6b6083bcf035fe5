//! Owns the end of an auction: the auction itself over the answers that arrived, the encoded
//! answer, the notices to fire and the final outcome records, kept together in [`Finished`]
//! until the shell has used them.

use std::time::Instant;

use crate::auction::{AuctionOutcome, Rejection, Winner};
use crate::encode::{append_win_notice_url, encode_bid_response};
use crate::request::BidRequest;
use crate::response::{Bid, BidResponse};

use super::notices::{NoticeKind, Notices};
use super::outcome::DspOutcome;
use super::run::AuctionRun;
use super::views::Views;
use super::Engine;

/// What to answer the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer<'w> {
    /// 200 with this OpenRTB bid response.
    Bid(&'w [u8]),
    /// 204: no valid bid.
    NoBid,
}

/// A finished auction: everything the shell needs to answer, fire notices, count and log.
/// Dropping it gives every buffer back to the workspace.
pub struct Finished<'w> {
    request: BidRequest<'w>,
    views: Views<'w>,
    outcome: &'w AuctionOutcome,
    outcomes: &'w [DspOutcome],
    answer: Answer<'w>,
    notices: &'w Notices,
}

impl std::fmt::Debug for Finished<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("request", &self.request.id)
            .field("answer", &self.answer)
            .field("outcomes", &self.outcomes)
            .finish_non_exhaustive()
    }
}

impl<'w> AuctionRun<'w> {
    /// Runs the auction over the answers reported so far (calls still pending count as
    /// unanswered) and encodes the answer.
    pub fn finish(self, engine: &mut Engine, now: Instant) -> Finished<'w> {
        let AuctionRun {
            request,
            views,
            outcomes,
            auction,
            answer,
            notices,
            ..
        } = self;
        let _ = now;
        for o in outcomes.iter_mut().filter(|o| o.breaker.is_none()) {
            // Skipped (or never reported) calls: show the breaker as it is now.
            o.breaker = engine
                .dsps
                .by_id(usize::from(o.dsp), o.dsp_id)
                .map(|d| d.breaker_state());
        }
        let rates = engine.rates.as_deref();
        let outcome: &'w AuctionOutcome = auction.run_with_rates(&request, views.list(), rates);
        for w in &outcome.winners {
            let o = views.outcome_of(usize::from(w.response));
            if let Some(o) = o.and_then(|o| outcomes.get_mut(usize::from(o))) {
                o.wins += 1;
            }
        }
        let won = encode_bid_response(&request, views.list(), outcome, None, answer);
        // A test auction is not billed: no win notice.
        if won && !request.test {
            queue_win_notices(&request, &views, outcome, notices);
        }
        Finished {
            request,
            views,
            outcome,
            outcomes,
            answer: if won {
                Answer::Bid(answer)
            } else {
                Answer::NoBid
            },
            notices,
        }
    }
}

fn queue_win_notices(
    request: &BidRequest<'_>,
    views: &Views<'_>,
    outcome: &AuctionOutcome,
    notices: &mut Notices,
) {
    for w in &outcome.winners {
        let (Some(response), Some(o)) = (
            views.list().get(usize::from(w.response)),
            views.outcome_of(usize::from(w.response)),
        ) else {
            continue;
        };
        notices.push(NoticeKind::Win, o, |out| {
            append_win_notice_url(request, response, w, out)
        });
    }
}

impl<'w> Finished<'w> {
    /// What to answer.
    pub fn answer(&self) -> Answer<'w> {
        self.answer
    }

    /// The request that was auctioned.
    pub fn request(&self) -> &BidRequest<'w> {
        &self.request
    }

    /// One record per DSP in the table when the auction started (called or skipped).
    pub fn outcomes(&self) -> &'w [DspOutcome] {
        self.outcomes
    }

    /// The notices to fire, off the hot path.
    pub fn notices(&self) -> &'w Notices {
        self.notices
    }

    /// Each impression's winner, with the outcome index of the DSP that won it.
    pub fn winners(&self) -> impl Iterator<Item = (u16, &Winner, &Bid<'w>)> + '_ {
        self.outcome
            .winners
            .iter()
            .filter_map(|w| self.bid(w.response, w.bid, w))
    }

    /// Every bid that did not win, with the outcome index of its DSP and why.
    pub fn rejections(&self) -> impl Iterator<Item = (u16, &Rejection, &Bid<'w>)> + '_ {
        self.outcome
            .rejections
            .iter()
            .filter_map(|r| self.bid(r.response, r.bid, r))
    }

    /// The decoded answer of the DSP at outcome index `outcome`, if it answered with one.
    pub fn response(&self, outcome: u16) -> Option<&BidResponse<'w>> {
        (0..self.views.list().len())
            .find(|&v| self.views.outcome_of(v) == Some(outcome))
            .and_then(|v| self.views.list().get(v))
    }

    fn bid<'s, T>(
        &'s self,
        response: u16,
        bid: u16,
        item: &'s T,
    ) -> Option<(u16, &'s T, &'s Bid<'w>)> {
        let o = self.views.outcome_of(usize::from(response))?;
        let bid = self
            .views
            .list()
            .get(usize::from(response))?
            .bids
            .get(usize::from(bid))?;
        Some((o, item, bid))
    }
}
