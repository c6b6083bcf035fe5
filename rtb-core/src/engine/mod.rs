//! The exchange engine: one auction's lifecycle, from the client's bytes to the answer, as a
//! sans-IO state machine. Time and bytes go in, decisions come out; the shell (the monoio
//! exchange, or the tokio example in `rtb-core/examples/`) performs them.
//!
//! ```text
//!  Engine::start(workspace, body, x-openrtb-version header, arrival, now, load)
//!    -> Shed { reason, request: None } (204: the worker is overloaded; nothing decoded)
//!     | Invalid(400 body) | NoDsp (404) | Shed { reason, request } (204)
//!    -> Call(run, plan)      plan: which DSPs to call, the body (tmax spliced), the deadline,
//!                            the OpenRTB version to state (the request's: 2.5, or 2.6)
//!  shell: one fan-out over plan.calls, bounded by plan.deadline; for each result
//!    run.on_answer(engine, call, status, body, at) | run.on_failure(engine, call, kind, at)
//!  run.finish(engine, now) -> Finished: the answer (200 body or 204), the notices to fire,
//!    one outcome record per DSP (latency, bids, wins, breaker), the bids and their fate
//! ```
//!
//! One [`Engine`] per worker owns the worker's DSP table with a circuit breaker per DSP
//! ([`breaker`]), the timing and admission rules ([`crate::deadline`], [`admission`]) and the
//! currency rates in force ([`Engine::set_currency_rates`]: a whole table swapped in between
//! auctions, so no auction sees two tables and none parses or locks anything). Each
//! auction borrows a [`Workspace`] of reused buffers for its whole life; everything the engine
//! decodes borrows from it, and dropping the [`Finished`] record gives every buffer back. So
//! several auctions can be in flight on one worker (each with its own workspace), and the
//! engine itself is touched only between awaits.

pub mod admission;
pub mod breaker;
mod capped;
pub mod dsps;
mod finish;
mod invalid;
pub mod notices;
pub mod outcome;
mod run;
pub mod shed_rate;
mod views;
mod workspace;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auction::AuctionConfig;
use crate::currency::CurrencyRates;
use crate::deadline::{DeadlinePolicy, DspBudget};
use crate::error::RequestError;
use crate::json::Document;
use crate::policy::RequestTraits;
use crate::request::BidRequest;
use crate::roster::DspPolicy;
use crate::splice::splice_tmax;
use crate::validate::ValidationMode;
use crate::version::OpenRtbVersion;

pub use admission::{OverloadPolicy, ShedReason, WorkerLoad};
pub use breaker::{Admit, BreakerConfig};
pub use capped::CAPPED_BODIES_MAX;
pub use dsps::{Dsp, DspSpec, DspTable};
pub use finish::{Answer, Finished};
pub use notices::{Notice, NoticeKind, Notices};
pub use outcome::{CallFailure, CallStatus, DspOutcome};
pub use run::AuctionRun;
pub use shed_rate::{ShedRate, ShedRatePolicy};
pub use workspace::Workspace;

use capped::CappedBody;
use outcome::DspOutcome as Outcome;
use views::Views;

/// Default time kept between the end of the DSP wait and the answer-by instant, for timers
/// that fire late (rtb-io measured its calls returning 1.3 to 2.0 ms after their deadline:
/// monoio's timer wheel ticks in milliseconds).
pub const DEFAULT_TIMER_SLACK: Duration = Duration::from_millis(2);
/// Default cap on the event-loop lag subtracted from the DSP wait (beyond it the worker sheds).
pub const DEFAULT_LAG_COMPENSATION_MAX: Duration = Duration::from_millis(10);

/// Everything the engine decides by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineConfig {
    /// Deadlines and DSP budgets.
    pub deadline: DeadlinePolicy,
    /// When to shed: fixed thresholds.
    pub overload: OverloadPolicy,
    /// When to shed: the adaptive share ([`shed_rate`]).
    pub shed_rate: ShedRatePolicy,
    /// Every DSP's circuit breaker.
    pub breaker: BreakerConfig,
    /// Auction rules.
    pub auction: AuctionConfig,
    /// See [`DEFAULT_TIMER_SLACK`].
    pub timer_slack: Duration,
    /// See [`DEFAULT_LAG_COMPENSATION_MAX`].
    pub lag_compensation_max: Duration,
    /// How much of each request is validated before anything else ([`ValidationMode`]).
    pub validation: ValidationMode,
    /// Engines (the process's workers) sharing each DSP's QPS cap: each enforces an equal
    /// share ([`crate::policy::worker_share`]).
    pub workers: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            deadline: DeadlinePolicy::default(),
            overload: OverloadPolicy::default(),
            shed_rate: ShedRatePolicy::default(),
            breaker: BreakerConfig::default(),
            auction: AuctionConfig::default(),
            timer_slack: DEFAULT_TIMER_SLACK,
            lag_compensation_max: DEFAULT_LAG_COMPENSATION_MAX,
            validation: ValidationMode::Strict,
            workers: 1,
        }
    }
}

/// One DSP call the plan asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedCall {
    /// The DSP's index in the table (the shell's pool index).
    pub dsp: u16,
    /// The `tmax` the DSP is sent, ms: the auction's, or the DSP's own cap when smaller.
    pub tmax_ms: u32,
    /// Which body it sends ([`Plan::body_of`]): 0 the plan's, `n` the `n`th capped one.
    pub(crate) body: u8,
    pub(crate) dsp_id: u64,
    pub(crate) admit: Admit,
    pub(crate) outcome: u16,
}

/// What to send, to whom, until when.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'w> {
    /// The calls to make, all at once; results are reported by their index in this list.
    pub calls: &'w [PlannedCall],
    /// The request body every call sends (`tmax` spliced in), but those whose DSP caps its
    /// own `tmax` lower ([`Plan::body_of`]).
    pub body: &'w [u8],
    /// Bodies with a DSP's own smaller `tmax`, one per distinct cap.
    capped: &'w [CappedBody],
    /// Stop waiting for DSPs at this instant (timer slack and event-loop lag already taken
    /// off), then finish.
    pub deadline: Instant,
    /// The OpenRTB version the body is in: every call states it (`x-openrtb-version`).
    pub version: OpenRtbVersion,
}

impl<'w> Plan<'w> {
    /// The body `call` sends: the plan's, or one with its DSP's own smaller `tmax` spliced in
    /// (several DSPs with the same cap share it).
    pub fn body_of(&self, call: &PlannedCall) -> &'w [u8] {
        match usize::from(call.body).checked_sub(1) {
            Some(i) => self.capped.get(i).map_or(self.body, |c| &c.bytes[..]),
            None => self.body,
        }
    }
}

/// What to do with a request that just arrived.
// The `Call` variant is large; boxing it would cost an allocation per auction, and the value
// only lives on the caller's stack until it is matched.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Start<'w> {
    /// Not a valid bid request: answer 400 with this JSON body.
    Invalid {
        /// Which field broke which rule.
        error: RequestError,
        /// `{"error": ..., "field": ..., "rule": ...}`.
        body: &'w [u8],
    },
    /// No DSP is registered on this worker: answer 404.
    NoDsp,
    /// Answer 204 at once, without calling anyone.
    Shed {
        /// Why.
        reason: ShedReason,
        /// The request shed, for its record; `None` when the worker was overloaded (event-loop
        /// lag or auctions in flight over their limits, [`OverloadPolicy`]): that is decided
        /// before the body is decoded, so a shed costs about what a 404 does, not a decode
        /// and a validation on a worker already short of CPU (issue 14).
        request: Option<BidRequest<'w>>,
    },
    /// Call the DSPs of the plan, report each result to the run, then finish it.
    Call(AuctionRun<'w>, Plan<'w>),
}

/// The auction engine of one worker.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    dsps: DspTable,
    rates: Option<Arc<CurrencyRates>>,
    shed_rate: ShedRate,
}

impl Engine {
    /// An engine with no DSPs.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            dsps: DspTable::new(config.breaker, config.workers),
            rates: None,
            shed_rate: ShedRate::new(config.shed_rate),
        }
    }

    /// Installs the currency rates the next auctions convert with (`None`: bids and floors
    /// must be in the auction currency). Bids are converted only in
    /// [`AuctionRun::finish`], which reads the table once: every bid and floor of one auction
    /// is converted with the same table, even when a new one was installed while the auction
    /// waited for its DSPs.
    pub fn set_currency_rates(&mut self, rates: Option<Arc<CurrencyRates>>) {
        self.rates = rates;
    }

    /// The currency rates in force.
    pub fn currency_rates(&self) -> Option<&Arc<CurrencyRates>> {
        self.rates.as_ref()
    }

    /// Its settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The share of new auctions the adaptive controller sheds now, 0 to 1.
    pub fn shed_probability(&self) -> f64 {
        self.shed_rate.probability()
    }

    /// The DSPs it calls, in the shell's order.
    pub fn dsps(&self) -> &DspTable {
        &self.dsps
    }

    /// Replaces the DSP table (a new registry snapshot); see [`DspTable::replace`].
    pub fn set_dsps(&mut self, specs: impl IntoIterator<Item = DspSpec>) {
        self.dsps.replace(specs);
    }

    /// [`Engine::set_dsps`] with each DSP's policy (a roster entry's, [`crate::roster`]).
    pub fn set_dsps_with_policies(
        &mut self,
        specs: impl IntoIterator<Item = (DspSpec, Rc<DspPolicy>)>,
    ) {
        self.dsps.replace_with_policies(specs);
    }

    /// Gives the DSP at `index` `fraction` of its QPS cap on this worker; see
    /// [`DspTable::set_qps_fraction`].
    pub fn set_qps_fraction(&mut self, index: usize, fraction: f64) {
        self.dsps.set_qps_fraction(index, fraction);
    }

    /// A workspace for this engine's auctions.
    pub fn workspace(&self) -> Workspace {
        Workspace::new(self.config.auction)
    }

    /// Takes a request that arrived at `arrival` (its first byte read) and is looked at `now`,
    /// with the value of its `x-openrtb-version` header (`None`: no such header; see
    /// [`OpenRtbVersion::from_header`] for what is accepted).
    pub fn start<'w>(
        &mut self,
        ws: &'w mut Workspace,
        body: &'w [u8],
        version: Option<&[u8]>,
        arrival: Instant,
        now: Instant,
        load: WorkerLoad,
    ) -> Start<'w> {
        if let Some(reason) = self.shed_before_decoding(load) {
            return Start::Shed {
                reason,
                request: None,
            };
        }
        self.decode_and_plan(ws, body, version, arrival, now, load)
    }

    /// The overload rule [`Engine::start`] applies first, before the body is decoded: whether
    /// a worker under `load` sheds the request at once. A shell may ask this before it
    /// builds anything for the auction (rtb-io's server asks through `Handler::answer_now`),
    /// so that a shed costs no more than reading and answering the request.
    pub fn shed_before_decoding(&self, load: WorkerLoad) -> Option<ShedReason> {
        // With no DSP there is nothing to shed: a request gets its 400 or its 404 as ever.
        match self.dsps.is_empty() {
            true => None,
            false => self.config.overload.shed(load),
        }
    }

    /// [`Engine::start`] once the worker has room for the auction.
    fn decode_and_plan<'w>(
        &mut self,
        ws: &'w mut Workspace,
        body: &'w [u8],
        version: Option<&[u8]>,
        arrival: Instant,
        now: Instant,
        load: WorkerLoad,
    ) -> Start<'w> {
        let Workspace {
            decoder,
            request_doc,
            response_docs,
            views,
            view_outcomes,
            auction,
            spliced,
            capped,
            calls,
            outcomes,
            adjustments,
            view_adjustments,
            answer,
            notices,
        } = ws;
        let validation = self.config.validation;
        let decoded = OpenRtbVersion::from_header(version).and_then(|version| {
            BidRequest::decode_with(body, request_doc, decoder, validation).map(|r| (r, version))
        });
        let (request, version) = match decoded {
            Ok(decoded) => decoded,
            Err(error) => return invalid::start(error, answer),
        };
        if self.dsps.is_empty() {
            return Start::NoDsp;
        }
        let (tmax_ms, deadline) = match self.budget(&request, arrival, now, load) {
            Some(budget) => budget,
            None => return shed(ShedReason::TooLate, request),
        };
        let (traits, planned) = (
            RequestTraits::of(&request),
            (&mut *outcomes, &mut *adjustments),
        );
        if let Err(reason) = self.plan(&traits, (tmax_ms, now, load), calls, planned) {
            return shed(reason, request);
        }
        if response_docs.len() < calls.len() {
            response_docs.resize_with(calls.len(), Document::default);
        }
        let capped_used = capped::splice_capped(body, &request, tmax_ms, calls, capped);
        let calls: &'w [PlannedCall] = calls;
        let plan = Plan {
            calls,
            body: body_to_send(body, &request, tmax_ms, spliced),
            capped: &capped[..capped_used],
            deadline,
            version,
        };
        notices.clear();
        let run = AuctionRun {
            request,
            decoder,
            docs: response_docs.iter_mut(),
            views: Views::lend(views, view_outcomes),
            calls,
            outcomes,
            adjustments,
            view_adjustments,
            auction,
            answer,
            notices,
            started: now,
            version,
        };
        Start::Call(run, plan)
    }

    /// The `tmax` every DSP is sent and when to stop waiting; `None`: too late to call anyone.
    fn budget(
        &self,
        request: &BidRequest<'_>,
        arrival: Instant,
        now: Instant,
        load: WorkerLoad,
    ) -> Option<(u32, Instant)> {
        let policy = &self.config.deadline;
        let timing = policy.timing(arrival, request.tmax_ms);
        // Calls return up to a timer tick or two after their deadline, and later still when
        // the worker's event loop runs late (its timers fire that much late): plan as if it
        // were that much later, so the tmax sent and the wait both end early enough for the
        // answer to leave by `answer_by`.
        let slack =
            self.config.timer_slack + load.event_loop_lag.min(self.config.lag_compensation_max);
        match policy.dsp_budget(&timing, now + slack) {
            DspBudget::Call {
                tmax_ms,
                call_deadline,
            } => Some((tmax_ms, call_deadline - slack)),
            DspBudget::TooLate => None,
        }
    }

    /// The calls for a request with `traits` (`tmax_ms` to send, at `now`, under `load`), or
    /// why none is made. Who wants it comes before the adaptive share: a request nobody
    /// wants costs nothing to answer and says nothing about overload. Caps and breakers come
    /// after it: a request shed for overload takes no QPS token and no breaker probe.
    fn plan(
        &mut self,
        traits: &RequestTraits,
        (tmax_ms, now, load): (u32, Instant, WorkerLoad),
        calls: &mut Vec<PlannedCall>,
        (outcomes, adjustments): (&mut Vec<Outcome>, &mut Vec<f64>),
    ) -> Result<(), ShedReason> {
        self.wanting_dsps(traits, outcomes);
        if outcomes.is_empty() {
            return Err(ShedReason::NoDspMatched);
        }
        if !self.shed_rate.admit(load.event_loop_lag, now) {
            return Err(ShedReason::Overload);
        }
        self.plan_calls(now, tmax_ms, calls, outcomes);
        // Each DSP's bid adjustment as planned: a table change while the auction waits does
        // not change how its bids are judged.
        adjustments.clear();
        adjustments.extend(outcomes.iter().map(|o| {
            (self.dsps.get(usize::from(o.dsp))).map_or(1.0, |d| d.policy().bid_adjustment)
        }));
        match outcomes.is_empty() {
            true => Err(ShedReason::NoDspMatched),
            false => Ok(()),
        }
    }

    /// One (provisional) outcome per DSP whose filters admit a request with `traits`.
    fn wanting_dsps(&mut self, traits: &RequestTraits, outcomes: &mut Vec<Outcome>) {
        outcomes.clear();
        for index in 0..self.dsps.len() {
            if !self.dsps.wants(index, traits) {
                continue;
            }
            if let Some(dsp) = self.dsps.get(index) {
                outcomes.push(Outcome::planned(index16(index), dsp.id(), Admit::Skip));
            }
        }
    }

    /// Of the DSPs that want the request (`outcomes`), those within their QPS cap keep their
    /// outcome; one call per such DSP its breaker lets through, sending the smaller of the
    /// auction's `tmax` and the DSP's own cap.
    fn plan_calls(
        &mut self,
        now: Instant,
        tmax_ms: u32,
        calls: &mut Vec<PlannedCall>,
        outcomes: &mut Vec<Outcome>,
    ) {
        calls.clear();
        let mut kept = 0;
        for i in 0..outcomes.len() {
            let (index, dsp_id) = (usize::from(outcomes[i].dsp), outcomes[i].dsp_id);
            if !self.dsps.under_cap(index, now) {
                continue;
            }
            let admit = self.dsps.admit(index, now);
            let cap = self.dsps.get(index).and_then(|d| d.policy().tmax_ms);
            let outcome = index16(kept);
            outcomes[kept] = Outcome::planned(index16(index), dsp_id, admit);
            kept += 1;
            if admit != Admit::Skip {
                calls.push(PlannedCall {
                    dsp: index16(index),
                    tmax_ms: cap.map_or(tmax_ms, |cap| cap.min(tmax_ms)),
                    body: 0,
                    dsp_id,
                    admit,
                    outcome,
                });
            }
        }
        outcomes.truncate(kept);
    }
}

/// Indexes are bounded far below u16 (DSPs by the registry cap, bids by the response cap).
fn index16(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

/// The body every DSP is sent: as it came when its `tmax` is already the one to send, else
/// with `tmax` spliced into `spliced`.
fn body_to_send<'w>(
    body: &'w [u8],
    request: &BidRequest<'_>,
    tmax_ms: u32,
    spliced: &'w mut Vec<u8>,
) -> &'w [u8] {
    if request.tmax_ms == Some(tmax_ms) {
        return body;
    }
    match splice_tmax(body, request.tmax_site, tmax_ms, spliced) {
        Ok(()) => spliced,
        // An unlocatable tmax (spelled with escapes): the body goes as sent.
        Err(_) => body,
    }
}

/// A shed decided once the request was decoded: its record names it.
fn shed(reason: ShedReason, request: BidRequest<'_>) -> Start<'_> {
    Start::Shed {
        reason,
        request: Some(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Breaks only a strict rule: a negative banner width.
    const NEGATIVE_WIDTH: &[u8] = br#"{"id":"neg","tmax":100,"imp":[{"id":"1","banner":{"w":-300,"h":250}}],"site":{"id":"s"}}"#;

    /// Starts an auction of [`NEGATIVE_WIDTH`] on an engine validating in `validation`: the
    /// 400 error it gives, or `Ok` when it plans the DSP calls.
    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn start_in(validation: ValidationMode) -> Result<usize, String> {
        let mut engine = Engine::new(EngineConfig {
            validation,
            ..EngineConfig::default()
        });
        engine.set_dsps([DspSpec {
            name: "dsp".into(),
            endpoint: "dsp:5000".into(),
        }]);
        let mut workspace = engine.workspace();
        let now = Instant::now();
        let load = WorkerLoad::default();
        let result = match engine.start(&mut workspace, NEGATIVE_WIDTH, None, now, now, load) {
            Start::Call(_, plan) => Ok(plan.calls.len()),
            Start::Invalid { error, .. } => Err(error.to_string()),
            other => panic!("{other:?}"),
        };
        result
    }

    /// An overloaded worker sheds before decoding (so even a body that is not JSON gets a
    /// 204, with no request to record); with no DSP registered there is nothing to shed, and
    /// the same body gets its 400.
    #[test]
    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn overload_is_shed_before_the_body_is_decoded() {
        let mut engine = Engine::new(EngineConfig::default());
        let mut workspace = engine.workspace();
        let now = Instant::now();
        let overloaded = WorkerLoad {
            event_loop_lag: Duration::ZERO,
            auctions_in_flight: engine.config.overload.auctions_in_flight_max,
            queue_wait: Duration::ZERO,
        };
        let garbage = b"not json at all";
        match engine.start(&mut workspace, garbage, None, now, now, overloaded) {
            Start::Invalid { .. } => {}
            other => panic!("no DSP: {other:?}"),
        }
        engine.set_dsps([DspSpec {
            name: "dsp".into(),
            endpoint: "dsp:5000".into(),
        }]);
        match engine.start(&mut workspace, garbage, None, now, now, overloaded) {
            Start::Shed {
                reason: ShedReason::InFlight,
                request: None,
            } => {}
            other => panic!("overloaded: {other:?}"),
        }
        let lagging = WorkerLoad {
            event_loop_lag: engine.config.overload.event_loop_lag_max + Duration::from_millis(1),
            auctions_in_flight: 0,
            queue_wait: Duration::ZERO,
        };
        match engine.start(&mut workspace, NEGATIVE_WIDTH, None, now, now, lagging) {
            Start::Shed {
                reason: ShedReason::EventLoopLag,
                request: None,
            } => {}
            other => panic!("lagging: {other:?}"),
        };
        let queued_too_long = WorkerLoad {
            queue_wait: engine.config.overload.queue_wait_max + Duration::from_millis(1),
            ..WorkerLoad::default()
        };
        match engine.start(&mut workspace, garbage, None, now, now, queued_too_long) {
            Start::Shed {
                reason: ShedReason::Overload,
                request: None,
            } => {}
            other => panic!("queued too long: {other:?}"),
        };
    }

    /// A video-only DSP and one that takes everything.
    fn engine_with_a_video_only_dsp() -> Engine {
        let video_only = crate::roster::parse(
            br#"{"dsps": [{"name": "v", "url": "http://v:1/bid", "media": ["video"]}]}"#,
            false,
        )
        .unwrap();
        let spec = |name: &str| DspSpec {
            name: name.into(),
            endpoint: format!("{name}:5000").into(),
        };
        let mut engine = Engine::new(EngineConfig::default());
        engine.set_dsps_with_policies([
            (spec("video"), Rc::new(video_only.dsps[0].policy.clone())),
            (spec("all"), Rc::new(DspPolicy::default())),
        ]);
        engine
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn a_dsp_is_planned_only_for_requests_its_policy_admits() {
        let banner = br#"{"id":"b","tmax":100,"imp":[{"id":"1","banner":{}}],"site":{}}"#;
        let mut engine = engine_with_a_video_only_dsp();
        let mut workspace = engine.workspace();
        let now = Instant::now();
        let load = WorkerLoad::default();
        match engine.start(&mut workspace, banner, None, now, now, load) {
            Start::Call(_, plan) => {
                let called: Vec<u16> = plan.calls.iter().map(|c| c.dsp).collect();
                assert_eq!(called, [1], "only the DSP that takes banners");
            }
            other => panic!("{other:?}"),
        }
        let video = engine.dsps.get(0).unwrap();
        assert_eq!(video.policy_skips(crate::policy::SkipReason::Media), 1);

        engine.set_dsps_with_policies(
            engine_with_a_video_only_dsp()
                .dsps
                .iter()
                .take(1)
                .map(|d| (d.spec.clone(), Rc::new(d.policy().clone()))),
        );
        match engine.start(&mut workspace, banner, None, now, now, load) {
            Start::Shed { reason, .. } => assert_eq!(reason, ShedReason::NoDspMatched),
            other => panic!("{other:?}"),
        }
        let kept = engine.dsps.get(0).unwrap();
        assert_eq!(
            kept.policy_skips(crate::policy::SkipReason::Media),
            2,
            "counts kept"
        );
    }

    #[test]
    fn the_validation_mode_is_an_engine_setting() {
        assert_eq!(EngineConfig::default().validation, ValidationMode::Strict);
        assert_eq!(
            start_in(ValidationMode::Strict),
            Err("imp[0].banner.w: must be >= 0".to_owned())
        );
        assert_eq!(start_in(ValidationMode::Lenient), Ok(1));
    }
}
