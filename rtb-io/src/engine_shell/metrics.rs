//! Owns the engine shell's counters: one [`WorkerMetrics`] per worker (auction outcomes, shed
//! reasons, latency, notices, test auctions, the registry version applied, the IO driver) and,
//! inside it, one [`DspMetrics`] per DSP.
//!
//! Every worker owns its [`WorkerMetrics`] (in an `Arc<[WorkerMetrics]>` list) and is its only
//! writer: counters are rtb-io's single-writer [`Counter`] (relaxed load + store, no locked
//! read-modify-write, no shared cache line between workers). Per-DSP counters are an
//! `Arc<DspMetrics>` held by the worker's DSP slot, kept per name by [`crate::keyed_metrics`]
//! (touched only when the DSP set changes and on scrape). A binary sums them on scrape and
//! chooses which series show them (the exchange's `metrics.rs`).

use std::sync::{atomic::AtomicU64, atomic::Ordering, OnceLock};

use rtb_core::{
    engine::{CallFailure, NoticeKind, ShedReason},
    policy::SkipReason,
    RejectReason,
};

use crate::{
    keyed_metrics::Keyed, limits::Counter, metrics_text::Histogram, notify_metrics::NotifyCounters,
    pool_metrics::PoolMetrics,
};

use super::revenue::Revenue;

/// Per-DSP metric entries kept per worker (DSPs that left keep their counters); names beyond it
/// share one `_other` entry so a churn of names cannot grow memory without bound.
pub const DSP_METRIC_NAMES_MAX: usize = 1024;

/// Auction outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with at least one winner.
    Won,
    /// 204: DSPs called, nobody won.
    NoBid,
    /// 204 at once: too late to start.
    Shed,
    /// 400: request failed validation.
    Invalid,
    /// 404: no DSP registered.
    NoDsp,
}

/// Outcome labels, in [`Outcome`] order (the index of [`WorkerMetrics::outcomes`]).
pub const OUTCOMES: [&str; 5] = ["won", "no_bid", "shed", "invalid", "no_dsp"];

/// Call failures in the order of [`DspMetrics::call_errors`].
pub const CALL_ERRORS: [CallFailure; CallFailure::ALL.len()] = CallFailure::ALL;

/// Names of [`RejectReason`]s, in the order of [`DspMetrics::rejections`].
pub const REJECT_REASONS: [&str; 17] = [
    "defective",
    "auction_id_mismatch",
    "wrong_currency",
    "unknown_imp",
    "invalid_price",
    "price_too_high",
    "unknown_deal",
    "private_auction_needs_deal",
    "seat_not_allowed",
    "below_floor",
    "below_deal_floor",
    "blocked_advertiser",
    "blocked_category",
    "lost_to_higher_bid",
    "lost_to_deal",
    "media_type_not_offered",
    "size_not_allowed",
];

/// One DSP's counters on one worker.
#[derive(Debug, Default)]
pub struct DspMetrics {
    /// Calls started.
    pub calls: Counter,
    /// Bids received (every bid of every 200 response).
    pub bids: Counter,
    /// Impressions won.
    pub wins: Counter,
    /// 204 or empty answers.
    pub no_bids: Counter,
    /// Failed calls, by kind in [`CALL_ERRORS`] order.
    pub call_errors: [Counter; CALL_ERRORS.len()],
    /// 200 responses that did not decode.
    pub decode_errors: Counter,
    /// Answers with a status other than 200 and 204.
    pub bad_status: Counter,
    /// Bids that did not win, by reason in [`REJECT_REASONS`] order.
    pub rejections: [Counter; REJECT_REASONS.len()],
    /// Call latency (answered calls and errors; timeouts included).
    pub latency: Histogram,
    /// This worker's pool to the DSP (mirrored after each call).
    pub pool: PoolMetrics,
    /// This worker's breaker state for the DSP (`State::gauge`: 0 closed, 1 open, 2
    /// half-open).
    pub breaker_state: AtomicU64,
    /// Closed → open transitions.
    pub breaker_trips: Counter,
    /// Calls not made because the breaker was open (or half-open with a probe out).
    pub skipped: Counter,
    /// Requests its roster policy kept from it, by reason in `SkipReason::ALL` order (mirrors
    /// the engine's counts, see `record::mirror_policy_skips`).
    pub policy_skips: [AtomicU64; SkipReason::ALL.len()],
    /// This worker's part of the DSP's QPS cap, in millionths, set by the rebalancer
    /// ([`super::qps_shares`]; 0: not set yet, an equal part).
    pub qps_fraction_ppm: AtomicU64,
    /// Clearing prices of the impressions won in non-test auctions, by auction currency.
    pub revenue: Revenue,
}

impl DspMetrics {
    /// Requests this worker wanted to send the DSP (its filters admitted them): calls made,
    /// calls its breaker held back and requests over its QPS part.
    pub fn qps_demand(&self) -> u64 {
        let over_cap = self.policy_skips[SkipReason::Qps as usize].load(Ordering::Relaxed);
        self.calls.get() + self.skipped.get() + over_cap
    }

    /// Counts a failed call. Owner thread only.
    pub fn call_error(&self, e: CallFailure) {
        if let Some(i) = CALL_ERRORS.iter().position(|&k| k == e) {
            self.call_errors[i].incr();
        }
    }

    /// Counts a rejected bid. Owner thread only.
    pub fn rejection(&self, r: RejectReason) {
        let name = r.as_str();
        if let Some(i) = REJECT_REASONS.iter().position(|&k| k == name) {
            self.rejections[i].incr();
        }
    }
}

/// One worker's notice counters, by kind in `NoticeKind::ALL` order.
pub type NoticeCounters = NotifyCounters<{ NoticeKind::ALL.len() }>;

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Auctions by outcome, in [`OUTCOMES`] order.
    pub outcomes: [Counter; OUTCOMES.len()],
    /// Shed auctions by reason, in `ShedReason::ALL` order.
    pub shed_reasons: [Counter; ShedReason::ALL.len()],
    /// Arrival to answer of auctions that called DSPs.
    pub auction_latency: Histogram,
    /// How long bid requests waited unread in the kernel (kernel arrival stamps; all zero
    /// without them).
    pub kernel_wait: Histogram,
    /// Arrival to answer of every bid request: sheds, invalid and no-DSP answers included.
    pub request_latency: Histogram,
    /// Win and loss notices by result (see [`crate::notify_metrics`]).
    pub notices: NoticeCounters,
    /// Auctions of `test: 1` requests that called DSPs, won (`[0]`) or not (`[1]`): counted
    /// apart (they are in the outcomes too), billed nothing, no notice fired.
    pub test_auctions: [Counter; 2],
    /// Registry version this worker applied (read by onboarding to wait for every worker).
    pub applied_version: AtomicU64,
    /// The IO driver, set once the worker runs.
    pub driver: OnceLock<&'static str>,
    /// Every DSP's counters on this worker, by name (created when the DSP set changes).
    pub dsps: Keyed<DspMetrics, DSP_METRIC_NAMES_MAX>,
}

impl WorkerMetrics {
    /// Counts a shed auction (outcome `shed`) with its reason. Owner thread only.
    pub fn shed(&self, reason: ShedReason) {
        self.outcome(Outcome::Shed);
        if let Some(i) = ShedReason::ALL.iter().position(|&r| r == reason) {
            self.shed_reasons[i].incr();
        }
    }

    /// Counts an auction outcome. Owner thread only.
    pub fn outcome(&self, o: Outcome) {
        self.outcomes[o as usize].incr();
    }
}

/// Whether every worker applied registry `version` (or a later one).
pub fn all_applied(workers: &[WorkerMetrics], version: u64) -> bool {
    (workers.iter()).all(|m| m.applied_version.load(Ordering::Acquire) >= version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reason_names_cover_the_enum() {
        use rtb_core::response::BidDefect;
        let all = [
            RejectReason::Defective(BidDefect::MissingPrice),
            RejectReason::AuctionIdMismatch,
            RejectReason::WrongCurrency,
            RejectReason::UnknownImp,
            RejectReason::InvalidPrice,
            RejectReason::PriceTooHigh,
            RejectReason::UnknownDeal,
            RejectReason::PrivateAuctionNeedsDeal,
            RejectReason::SeatNotAllowed,
            RejectReason::BelowFloor,
            RejectReason::BelowDealFloor,
            RejectReason::BlockedAdvertiser,
            RejectReason::BlockedCategory,
            RejectReason::LostToHigherBid,
            RejectReason::LostToDeal,
            RejectReason::MediaTypeNotOffered,
            RejectReason::SizeNotAllowed,
        ];
        // The ledger's schema lists the same names (its `reason` enum).
        let schema = include_str!("../../../deploy/ledger/ledger-record.v2.schema.json");
        for r in all {
            assert!(REJECT_REASONS.contains(&r.as_str()), "{}", r.as_str());
            let quoted = format!("\"{}\"", r.as_str());
            assert!(schema.contains(&quoted), "ledger schema lacks {quoted}");
        }
    }
}
