//! Owns the engine's table of DSPs on one worker: who they are, in the order the shell's
//! connection pools are kept, and each one's circuit breaker.
//!
//! The table is replaced whole when the registry changes (a new snapshot reaches the worker);
//! a DSP whose name and endpoint did not change keeps its breaker and its id. Ids are never
//! reused, so a result that comes back for a call planned before a replacement is matched to
//! its DSP by id, never credited to whichever DSP now sits at the same index.

use std::{rc::Rc, time::Instant};

use super::breaker::{Admit, Breaker, BreakerConfig, State, Transition};

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
}

impl Dsp {
    /// Stable identity across table replacements (while name and endpoint stay the same).
    pub fn id(&self) -> u64 {
        self.id
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
}

impl DspTable {
    /// An empty table whose DSPs get breakers with these settings.
    pub fn new(breaker: BreakerConfig) -> Self {
        Self {
            dsps: Vec::new(),
            next_id: 1,
            breaker,
        }
    }

    /// Replaces the table, in the order given; DSPs already known (same name and endpoint)
    /// keep their id and breaker.
    pub fn replace(&mut self, specs: impl IntoIterator<Item = DspSpec>) {
        let mut old = std::mem::take(&mut self.dsps);
        for spec in specs {
            let kept = old.iter().position(|d| d.spec == spec);
            let dsp = match kept {
                Some(i) => old.swap_remove(i),
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    Dsp {
                        spec,
                        id,
                        breaker: Breaker::new(self.breaker),
                    }
                }
            };
            self.dsps.push(dsp);
        }
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

    /// Asks the breaker of the DSP at `index` whether a call made at `now` goes through.
    pub(crate) fn admit(&mut self, index: usize, now: Instant) -> Admit {
        self.dsps
            .get_mut(index)
            .map_or(Admit::Skip, |d| d.breaker.admit(now))
    }

    /// Records a call's result with the breaker of the DSP `id` (planned at `index`); a result
    /// for a DSP no longer in the table is dropped.
    pub(crate) fn record(
        &mut self,
        index: usize,
        id: u64,
        admitted: Admit,
        ok: bool,
        at: Instant,
    ) -> (Transition, Option<State>) {
        match self.dsps.get_mut(index).filter(|d| d.id == id) {
            Some(d) => (d.breaker.record(admitted, ok, at), Some(d.breaker.state())),
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
        let mut table = DspTable::new(config);
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
        // A late result for the old index 0 (a) is not credited to b.
        let (transition, state) = table.record(0, a, Admit::Call, true, t);
        assert_eq!((transition, state), (Transition::None, None));
    }
}
