//! Owns the DSP table as the simulated registry changes it: DSPs added, removed, reordered and
//! moved to a new endpoint (which makes them new DSPs to the engine), sometimes none at all.
//! Each replacement is checked: a DSP whose name and endpoint stayed keeps its id and breaker,
//! every other one gets a fresh id, never one used before.

use std::{collections::HashMap, rc::Rc};

use rtb_core::engine::DspSpec;
use rtb_core::roster::DspPolicy;

use crate::rng::Rng;
use crate::shell::Shared;

/// The registry's view: which DSPs are in the table and where each one lives now.
#[derive(Debug, Default)]
pub struct Registry {
    /// Each DSP name's endpoint generation (bumped when it moves).
    moves: HashMap<Rc<str>, u32>,
    /// The table as last given to the engine, in its order.
    pub specs: Vec<DspSpec>,
}

impl Registry {
    /// Whether the table is empty (the registry soon registers someone again).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

impl Registry {
    fn spec(&mut self, name: &Rc<str>, rng: &mut Rng, move_chance: f64) -> DspSpec {
        let generation = self.moves.entry(name.clone()).or_insert(0);
        if rng.chance(move_chance) {
            *generation += 1;
        }
        DspSpec {
            name: name.clone(),
            endpoint: format!("{name}.example:{}", 5000 + *generation).into(),
        }
    }

    /// The first table: these DSPs, in this order.
    pub fn initial(&mut self, shared: &Shared, names: &[Rc<str>], rng: &mut Rng) {
        let specs = names.iter().map(|n| self.spec(n, rng, 0.0)).collect();
        self.replace(shared, specs);
    }

    /// A new table drawn from `names`: a random subset in a random order, some DSPs moved,
    /// rarely none at all.
    pub fn churn(&mut self, shared: &Shared, names: &[Rc<str>], rng: &mut Rng) {
        let mut specs = Vec::new();
        if !rng.chance(0.02) {
            for name in names {
                if rng.chance(0.6) {
                    specs.push(self.spec(name, rng, 0.1));
                }
            }
            if specs.is_empty() {
                specs.push(self.spec(rng.pick(names), rng, 0.1));
            }
            for i in (1..specs.len()).rev() {
                specs.swap(i, rng.index(i + 1));
            }
        }
        self.replace(shared, specs);
    }

    fn replace(&mut self, shared: &Shared, specs: Vec<DspSpec>) {
        let mut engine = shared.engine.borrow_mut();
        let old: Vec<(DspSpec, u64)> = engine
            .dsps()
            .iter()
            .map(|d| (d.spec.clone(), d.id()))
            .collect();
        // Every tenth table wants dooh traffic only: the simulated requests are all site
        // requests, so none matches any DSP (the reference expects `no_dsp_matched`).
        let table_changes = shared.stats.borrow().table_changes;
        let dooh = table_changes % 10 == 9;
        engine.set_dsps_with_policies(specs.iter().map(|s| (s.clone(), policy(&s.name, dooh))));
        let (mut kept, mut fresh) = (Vec::new(), Vec::new());
        for (dsp, spec) in engine.dsps().iter().zip(&specs) {
            assert_eq!(&dsp.spec, spec, "the table is in the order given");
            match old.iter().find(|(s, _)| s == spec) {
                Some((_, id)) => {
                    assert_eq!(
                        dsp.id(),
                        *id,
                        "{} kept its name and endpoint, so its id",
                        spec.name
                    );
                    kept.push(*id);
                }
                None => fresh.push(dsp.id()),
            }
        }
        assert_eq!(engine.dsps().len(), specs.len());
        drop(engine);
        shared.breakers.borrow_mut().replace(&kept, &fresh);
        self.specs = specs;
        shared.stats.borrow_mut().table_changes += 1;
    }
}

/// The bid adjustment the simulated roster gives DSP `name`: a function of the name, so it
/// stays with the DSP across table changes and the reference can state it on its own.
pub fn adjustment_of(name: &str) -> f64 {
    const ADJUSTMENTS: [f64; 5] = [1.0, 1.0, 0.5, 0.8, 1.25];
    let sum: usize = name.bytes().map(usize::from).sum();
    ADJUSTMENTS[sum % ADJUSTMENTS.len()]
}

/// DSP `name`'s policy: its bid adjustment, and dooh requests only when `dooh`.
fn policy(name: &str, dooh: bool) -> Rc<DspPolicy> {
    let channels = if dooh {
        r#", "channels": ["dooh"]"#
    } else {
        ""
    };
    let adjustment = adjustment_of(name);
    let roster = format!(
        r#"{{"dsps": [{{"name": "d", "url": "http://d:1/bid", "bid_adjustment": {adjustment}{channels}}}]}}"#
    );
    let mut parsed = rtb_core::roster::parse(roster.as_bytes(), false).expect("a valid roster");
    Rc::new(parsed.dsps.remove(0).policy)
}
