//! Owns the engine's table of DSPs on one worker: who they are, in the order the shell's
//! connection pools are kept, and each one's circuit breaker.
//!
//! The table is replaced whole when the registry changes (a new snapshot reaches the worker);
//! a DSP whose name and endpoint did not change keeps its breaker and its id. Ids are never
//! reused, so a result that comes back for a call planned before a replacement is matched to
//! its DSP by id, never credited to whichever DSP now sits at the same index.
//!
//! A DSP with a QPS cap has a token bucket here holding this worker's share of the cap
//! ([`policy::worker_share`]): the cap is enforced without any worker reading another's state.

use std::{rc::Rc, time::Instant};

use super::breaker::{Admit, Breaker, BreakerConfig, State, Transition};
use crate::policy::{self, RequestTraits, SkipReason};
use crate::roster::DspPolicy;
use crate::token_bucket::TokenBucket;

/// A DSP as the shell describes it to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DspSpec {
    /// Registry name.
    pub name: Rc<str>,
    /// Where it is reached (`host:port`): a DSP that moves gets a fresh breaker.
    pub endpoint: Rc<str>,
}

/// One DSP in the table.
#[derive(Debug)]
pub struct Dsp {
    /// What the shell said about it.
    pub spec: DspSpec,
    id: u64,
    breaker: Breaker,
    policy: Rc<DspPolicy>,
    qps: Option<TokenBucket>,
    policy_skips: [u64; SkipReason::ALL.len()],
}

impl Dsp {
    /// Stable identity across table replacements (while name and endpoint stay the same).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its policy (the roster's, or every request with no adjustment).
    pub fn policy(&self) -> &DspPolicy {
        &self.policy
    }

    /// Requests its policy kept from it for `reason`, since it joined this worker's table.
    pub fn policy_skips(&self, reason: SkipReason) -> u64 {
        self.policy_skips[reason as usize]
    }

    /// Whether its filters (channel, media, country) admit a request with `traits`; a
    /// refusal is counted.
    pub(crate) fn wants(&mut self, traits: &RequestTraits) -> bool {
        self.count(policy::filter(&self.policy, traits))
    }

    /// Whether a call at `now` is within its QPS cap (a token is taken); a refusal is counted.
    pub(crate) fn under_cap(&mut self, now: Instant) -> bool {
        let verdict = match &mut self.qps {
            Some(bucket) => bucket.try_take(now).then_some(()).ok_or(SkipReason::Qps),
            None => Ok(()),
        };
        self.count(verdict)
    }

    fn count(&mut self, verdict: Result<(), SkipReason>) -> bool {
        match verdict {
            Ok(()) => true,
            Err(reason) => {
                self.policy_skips[reason as usize] += 1;
                false
            }
        }
    }

    /// Its breaker's state now.
    pub fn breaker_state(&self) -> State {
        self.breaker.state()
    }
}

/// The DSPs a worker's engine calls, in the shell's order.
#[derive(Debug)]
pub struct DspTable {
    dsps: Vec<Dsp>,
    next_id: u64,
    breaker: BreakerConfig,
    /// Tables (workers) that share each DSP's QPS cap.
    qps_sharers: usize,
}

impl DspTable {
    /// An empty table whose DSPs get breakers with these settings, and `1 / qps_sharers` of
    /// their QPS cap (the process's workers: each has a table).
    pub fn new(breaker: BreakerConfig, qps_sharers: usize) -> Self {
        Self {
            dsps: Vec::new(),
            next_id: 1,
            breaker,
            qps_sharers: qps_sharers.max(1),
        }
    }

    /// This table's bucket for `policy`'s cap.
    fn bucket(&self, policy: &DspPolicy) -> Option<TokenBucket> {
        let qps = policy.qps?;
        Some(TokenBucket::one_second(policy::worker_share(
            qps,
            self.qps_sharers,
        )))
    }

    /// Replaces the table, in the order given; DSPs already known (same name and endpoint)
    /// keep their id and breaker.
    pub fn replace(&mut self, specs: impl IntoIterator<Item = DspSpec>) {
        let every_request = Rc::new(DspPolicy::default());
        self.replace_with_policies(specs.into_iter().map(|s| (s, every_request.clone())));
    }

    /// [`DspTable::replace`] with each DSP's policy (the policy does not change its identity:
    /// a DSP whose roster entry changed keeps its breaker, and its QPS bucket unless the cap
    /// changed).
    pub fn replace_with_policies(
        &mut self,
        specs: impl IntoIterator<Item = (DspSpec, Rc<DspPolicy>)>,
    ) {
        let mut old = std::mem::take(&mut self.dsps);
        for (spec, policy) in specs {
            let kept = old.iter().position(|d| d.spec == spec);
            let dsp = match kept {
                Some(i) => {
                    let dsp = old.swap_remove(i);
                    let same_cap = dsp.policy.qps == policy.qps;
                    let qps = if same_cap {
                        dsp.qps
                    } else {
                        self.bucket(&policy)
                    };
                    Dsp { policy, qps, ..dsp }
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    Dsp {
                        spec,
                        id,
                        breaker: Breaker::new(self.breaker),
                        qps: self.bucket(&policy),
                        policy,
                        policy_skips: [0; SkipReason::ALL.len()],
                    }
                }
            };
            self.dsps.push(dsp);
        }
    }

    /// Gives the DSP at `index` `fraction` of its QPS cap on this worker (a rebalance by
    /// demand, [`policy::demand_fractions`]); a DSP without a cap, or a fraction outside
    /// (0, 1], is left as it is.
    pub fn set_qps_fraction(&mut self, index: usize, fraction: f64) {
        let Some(dsp) = self.dsps.get_mut(index) else {
            return;
        };
        if let (Some(bucket), Some(cap)) = (&mut dsp.qps, dsp.policy.qps) {
            if fraction > 0.0 && fraction <= 1.0 {
                bucket.set_rate(f64::from(cap) * fraction);
            }
        }
    }

    /// Whether the filters of the DSP at `index` admit a request with `traits`.
    pub(crate) fn wants(&mut self, index: usize, traits: &RequestTraits) -> bool {
        self.dsps.get_mut(index).is_some_and(|d| d.wants(traits))
    }

    /// Whether a call at `now` to the DSP at `index` is within its QPS cap.
    pub(crate) fn under_cap(&mut self, index: usize, now: Instant) -> bool {
        self.dsps.get_mut(index).is_some_and(|d| d.under_cap(now))
    }

    /// The DSPs, in the shell's order.
    pub fn iter(&self) -> impl Iterator<Item = &Dsp> {
        self.dsps.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.dsps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.dsps.is_empty()
    }

    /// The DSP at `index`.
    pub fn get(&self, index: usize) -> Option<&Dsp> {
        self.dsps.get(index)
    }

    /// The DSP with this id, wherever it sits now (`index` is where it was planned: checked
    /// first, since the table rarely changes while an auction is in flight).
    pub(crate) fn by_id(&self, index: usize, id: u64) -> Option<&Dsp> {
        self.position(index, id).map(|i| &self.dsps[i])
    }

    fn position(&self, index: usize, id: u64) -> Option<usize> {
        match self.dsps.get(index) {
            Some(d) if d.id == id => Some(index),
            _ => self.dsps.iter().position(|d| d.id == id),
        }
    }

    /// Asks the breaker of the DSP at `index` whether a call made at `now` goes through.
    pub(crate) fn admit(&mut self, index: usize, now: Instant) -> Admit {
        self.dsps
            .get_mut(index)
            .map_or(Admit::Skip, |d| d.breaker.admit(now))
    }

    /// Records a call's result with the breaker of the DSP `id` (planned at `index`, which
    /// it may have left since: a reordered table keeps its DSPs); a result for a DSP no longer
    /// in the table is dropped.
    pub(crate) fn record(
        &mut self,
        index: usize,
        id: u64,
        admitted: Admit,
        ok: bool,
        at: Instant,
    ) -> (Transition, Option<State>) {
        match self.position(index, id) {
            Some(i) => {
                let d = &mut self.dsps[i];
                (d.breaker.record(admitted, ok, at), Some(d.breaker.state()))
            }
            None => (Transition::None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, endpoint: &str) -> DspSpec {
        DspSpec {
            name: name.into(),
            endpoint: endpoint.into(),
        }
    }

    #[allow(clippy::disallowed_methods)] // tests need some instant; the logic never reads a clock
    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn replacing_keeps_known_dsps_and_their_breakers() {
        let config = BreakerConfig {
            failures_to_trip: 1,
            ..BreakerConfig::default()
        };
        let mut table = DspTable::new(config, 1);
        table.replace([spec("a", "a:1"), spec("b", "b:1")]);
        let (a, b) = (table.get(0).unwrap().id(), table.get(1).unwrap().id());
        assert_ne!(a, b);
        let t = now();
        let admit = table.admit(0, t);
        assert_eq!(table.record(0, a, admit, false, t).0, Transition::Tripped);

        // Reordered, b moved to a new endpoint, c added.
        table.replace([spec("b", "b:2"), spec("a", "a:1"), spec("c", "c:1")]);
        let names: Vec<_> = table.iter().map(|d| d.spec.name.to_string()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(table.get(1).unwrap().id(), a);
        assert_eq!(table.get(1).unwrap().breaker_state().as_str(), "open");
        assert_ne!(table.get(0).unwrap().id(), b, "a moved DSP starts afresh");
        // A late result for the old index 0 (a) is not credited to b, but to a, now at 1.
        let (transition, state) = table.record(0, a, Admit::Call, true, t);
        assert_eq!(
            transition,
            Transition::None,
            "a call admitted before the trip"
        );
        assert_eq!(state.map(State::as_str), Some("open"));
        assert_eq!(table.get(0).unwrap().breaker_state().as_str(), "closed");
        // A DSP no longer in the table: dropped.
        let gone = table.get(0).unwrap().id() + 100;
        assert_eq!(
            table.record(0, gone, Admit::Call, false, t),
            (Transition::None, None)
        );
    }

    #[test]
    fn a_late_result_reaches_a_dsp_that_moved_in_the_table() {
        // Found by the simulation (rtb-core/tests/simulation, seed 3): the table was reordered
        // while a call was out, and its success never reset the DSP's failure streak.
        let mut table = DspTable::new(BreakerConfig::default(), 1);
        table.replace([spec("a", "a:1"), spec("b", "b:1")]);
        let a = table.get(0).unwrap().id();
        let t = now();
        let first = table.admit(0, t);
        table.record(0, a, first, false, t);
        let late = table.admit(0, t);
        table.replace([spec("b", "b:1"), spec("a", "a:1")]);
        let (_, state) = table.record(0, a, late, true, t);
        assert_eq!(state, Some(State::Closed { failures: 0 }));
        assert_eq!(
            table.by_id(0, a).unwrap().breaker_state(),
            State::Closed { failures: 0 }
        );
        assert_eq!(
            table.get(0).unwrap().breaker_state(),
            State::Closed { failures: 0 }
        );
    }
}
