//! Owns the end of an auction: the auction itself over the answers that arrived, the encoded
//! answer, the notices to fire and the final outcome records, kept together in [`Finished`]
//! until the shell has used them.

use std::time::Instant;

use crate::auction::{AuctionOutcome, Rejection, Winner};
use crate::encode::{append_loss_notice_url, append_win_notice_url, encode_bid_response};
use crate::request::BidRequest;
use crate::response::{Bid, BidResponse};
use crate::version::OpenRtbVersion;

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
    version: OpenRtbVersion,
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
            adjustments,
            view_adjustments,
            auction,
            answer,
            notices,
            version,
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
        bid_adjustments(&views, adjustments, view_adjustments);
        let rates = engine.rates.as_deref();
        let outcome: &'w AuctionOutcome =
            auction.run_adjusted(&request, views.list(), rates, view_adjustments);
        for w in &outcome.winners {
            let o = views.outcome_of(usize::from(w.response));
            if let Some(o) = o.and_then(|o| outcomes.get_mut(usize::from(o))) {
                o.wins += 1;
            }
        }
        let won = encode_bid_response(&request, views.list(), outcome, None, answer);
        // A test auction is not billed and tells no DSP anything: no win, no loss notice.
        if !request.test {
            queue_win_notices(&request, &views, outcome, notices);
            queue_loss_notices(&request, &views, outcome, notices);
        }
        Finished {
            version,
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

/// Each answer's bid adjustment (its DSP's, as planned: `by_outcome`), in view order; left
/// empty when every one is 1 (the common case costs one pass over the answers).
fn bid_adjustments(views: &Views<'_>, by_outcome: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let adjustment_of = |view: usize| {
        let outcome = views.outcome_of(view)?;
        by_outcome.get(usize::from(outcome)).copied()
    };
    let views = 0..views.list().len();
    if views
        .clone()
        .any(|v| adjustment_of(v).is_some_and(|a| a != 1.0))
    {
        out.extend(views.map(|v| adjustment_of(v).unwrap_or(1.0)));
    }
}

/// One win notice per winner that carries a `nurl`.
fn queue_win_notices(
    request: &BidRequest<'_>,
    views: &Views<'_>,
    outcome: &AuctionOutcome,
    notices: &mut Notices,
) {
    for w in &outcome.winners {
        if let Some((response, o)) = views.response_and_outcome(w.response) {
            notices.push((NoticeKind::Win, 0), o, |out| {
                append_win_notice_url(request, response, w, out)
            });
        }
    }
}

/// One loss notice per bid that did not win and carries a `lurl`: bids that lost the auction
/// (102, 103) and bids the auction rejected (below floor, blocked, invalid...), each with its
/// reason's code. Bounded by the bids read (the response's bid cap times the DSPs called).
fn queue_loss_notices(
    request: &BidRequest<'_>,
    views: &Views<'_>,
    outcome: &AuctionOutcome,
    notices: &mut Notices,
) {
    for r in &outcome.rejections {
        if let Some((response, o)) = views.response_and_outcome(r.response) {
            notices.push((NoticeKind::Loss, r.reason.loss_code()), o, |out| {
                append_loss_notice_url(request, response, r, out)
            });
        }
    }
}

impl<'w> Finished<'w> {
    /// What to answer.
    pub fn answer(&self) -> Answer<'w> {
        self.answer
    }

    /// The OpenRTB version the request was in: the answer states it.
    pub fn version(&self) -> OpenRtbVersion {
        self.version
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::engine::{DspSpec, Engine, EngineConfig, NoticeKind, Start, WorkerLoad};
    use crate::version::OpenRtbVersion;

    /// What a finished auction asked: its version, and each notice as (kind, DSP, code, URL).
    type Fired = (OpenRtbVersion, Vec<(NoticeKind, u16, u16, String)>);

    /// One auction of a request with `test` and the `x-openrtb-version` `version`, against
    /// three DSPs bidding 3 (wins), 2 (loses to it: 102) and 0.5 (below the 1.0 floor: 100),
    /// every bid with a `nurl` and a `lurl`.
    fn auction(test: u8, version: Option<&[u8]>) -> Result<Fired, String> {
        let mut engine = Engine::new(EngineConfig::default());
        engine.set_dsps(["a", "b", "c"].map(|name| DspSpec {
            name: name.into(),
            endpoint: format!("{name}:80").into(),
        }));
        let mut ws = engine.workspace();
        let raw = format!(
            r#"{{"id":"q","test":{test},"imp":[{{"id":"1","banner":{{"w":300,"h":250}},"bidfloor":1.0}}]}}"#
        );
        #[allow(clippy::disallowed_methods)] // a test needs some instant
        let t0 = Instant::now();
        let (mut run, plan) = match engine.start(
            &mut ws,
            raw.as_bytes(),
            version,
            t0,
            t0,
            WorkerLoad::default(),
        ) {
            Start::Call(run, plan) => (run, plan),
            Start::Invalid { body, .. } => return Err(String::from_utf8_lossy(body).into_owned()),
            other => panic!("{other:?}"),
        };
        let planned = plan.version;
        for (call, (dsp, price)) in [("a", 3.0), ("b", 2.0), ("c", 0.5)].into_iter().enumerate() {
            let answer = format!(
                r#"{{"id":"q","seatbid":[{{"bid":[{{"id":"{dsp}1","impid":"1","price":{price},
                "nurl":"http://{dsp}/win?p=${{AUCTION_PRICE}}",
                "lurl":"http://{dsp}/loss?r=${{AUCTION_LOSS}}&b=${{AUCTION_BID_ID}}&p=${{AUCTION_PRICE}}"}}]}}]}}"#
            );
            run.on_answer(
                &mut engine,
                call,
                200,
                answer.as_bytes(),
                t0 + Duration::from_millis(3),
            );
        }
        let finished = run.finish(&mut engine, t0 + Duration::from_millis(4));
        assert_eq!(
            finished.version(),
            planned,
            "the answer states the plan's version"
        );
        let notices = finished
            .notices()
            .iter()
            .map(|(n, url)| {
                let url = String::from_utf8(url.to_vec()).expect("URL text");
                (n.kind, n.outcome, n.loss_code, url)
            })
            .collect();
        Ok((planned, notices))
    }

    #[test]
    fn the_winner_gets_its_win_notice_every_other_bid_its_loss_code() {
        let (version, notices) = auction(0, None).expect("a valid request");
        assert_eq!(version, OpenRtbVersion::V2_6, "no header: 2.6");
        let want = [
            (NoticeKind::Win, 0, 0, "http://a/win?p=2.01".to_owned()),
            // Rejected while checked, before the auction ranks the rest.
            (
                NoticeKind::Loss,
                2,
                100,
                "http://c/loss?r=100&b=c1&p=".to_owned(),
            ),
            (
                NoticeKind::Loss,
                1,
                102,
                "http://b/loss?r=102&b=b1&p=".to_owned(),
            ),
        ];
        assert_eq!(notices, want);
    }

    #[test]
    fn a_test_auction_fires_no_notice_at_all() {
        let (_, notices) = auction(1, None).expect("a valid request");
        assert_eq!(notices, []);
    }

    #[test]
    fn the_request_version_is_forwarded_and_an_unknown_one_refused() {
        let (version, _) = auction(0, Some(b"2.5")).expect("2.5 is spoken");
        assert_eq!(version, OpenRtbVersion::V2_5);
        let (version, _) = auction(0, Some(b"2.6")).expect("2.6 is spoken");
        assert_eq!(version, OpenRtbVersion::V2_6);
        let body = auction(0, Some(b"2.2")).expect_err("2.2 is not spoken");
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON 400 body");
        assert_eq!(body["field"], "x-openrtb-version");
        assert_eq!(body["rule"], "OpenRTB version not spoken (2.5 and 2.6 are)");
    }
}
