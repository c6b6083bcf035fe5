//! Owns turning a finished auction's outcome records into this worker's per-DSP metrics
//! (calls, latency, bids, errors by kind, wins, clearing prices, rejections, breaker, pool
//! counters). The engine decides; this only counts.

use std::sync::atomic::Ordering;

use rtb_core::engine::breaker::Transition;
use rtb_core::engine::{CallStatus, DspOutcome, Engine, Finished};
use rtb_core::policy::SkipReason;

use super::dsps::{DspSet, DspSlot};
use super::revenue::currency_code;

/// Counts every outcome of `finished` on the DSP slots it names.
pub fn record_outcomes(finished: &Finished<'_>, set: &DspSet) {
    let outcomes = finished.outcomes();
    for outcome in outcomes {
        if let Some(slot) = set.slots.get(usize::from(outcome.dsp)) {
            record_call(outcome, slot);
        }
    }
    for (o, rejection, _) in finished.rejections() {
        let slot = outcomes
            .get(usize::from(o))
            .and_then(|o| set.slots.get(usize::from(o.dsp)));
        if let Some(slot) = slot {
            slot.metrics.rejection(rejection.reason);
        }
    }
    record_revenue(finished, set);
}

/// Counts each won impression's clearing price on its DSP, in the auction currency. A test
/// auction is not billed (it fires no win notice), so it counts no revenue.
fn record_revenue(finished: &Finished<'_>, set: &DspSet) {
    let request = finished.request();
    if request.test {
        return;
    }
    let currency = currency_code(request.auction_currency());
    let outcomes = finished.outcomes();
    for (o, winner, _) in finished.winners() {
        let slot = outcomes
            .get(usize::from(o))
            .and_then(|o| set.slots.get(usize::from(o.dsp)));
        if let Some(slot) = slot {
            slot.metrics.revenue.won(currency, winner.clearing_price);
        }
    }
}

fn record_call(outcome: &DspOutcome, slot: &DspSlot) {
    let m = &slot.metrics;
    if let Some(state) = outcome.breaker {
        m.breaker_state.store(state.gauge(), Ordering::Relaxed);
    }
    if outcome.transition == Transition::Tripped {
        m.breaker_trips.incr();
        tracing::debug!(dsp = %slot.name, "circuit breaker opened");
    }
    if !outcome.called() {
        m.skipped.incr();
        return;
    }
    m.calls.incr();
    if let Some(latency) = outcome.latency {
        m.latency.observe(latency);
    }
    m.wins.add(u64::from(outcome.wins));
    match outcome.status {
        CallStatus::Answered => {
            m.bids.add(u64::from(outcome.bids));
            if outcome.bids == 0 {
                m.no_bids.incr();
            }
        }
        CallStatus::NoBid => m.no_bids.incr(),
        CallStatus::Undecodable => m.decode_errors.incr(),
        CallStatus::BadStatus(status) => {
            m.bad_status.incr();
            tracing::debug!(dsp = %slot.name, status, "unexpected DSP status");
        }
        CallStatus::Failed(kind) => {
            m.call_error(kind);
            tracing::debug!(dsp = %slot.name, error = kind.as_str(), "DSP call failed");
        }
        CallStatus::Pending | CallStatus::SkippedBreaker => {}
    }
    slot.metrics.pool.mirror(&slot.upstream, &slot.pool_counted);
}

/// Adds the engine's new per-DSP policy refusals to the metrics. Called only after a request
/// that did not reach every DSP, so an auction that calls them all pays nothing for it.
pub fn mirror_policy_skips(engine: &Engine, set: &DspSet) {
    for (dsp, slot) in engine.dsps().iter().zip(&set.slots) {
        let mut counted = slot.policy_counted.get();
        for (i, reason) in SkipReason::ALL.iter().enumerate() {
            let now = dsp.policy_skips(*reason);
            let new = now.saturating_sub(counted[i]);
            if new > 0 {
                slot.metrics.policy_skips[i].fetch_add(new, Ordering::Relaxed);
                counted[i] = now;
            }
        }
        slot.policy_counted.set(counted);
    }
}
