//! Owns the reference circuit breakers: one model per DSP id, written from the rules the
//! breaker's module doc and the brief state, fed the same admissions and results as the engine,
//! and compared with the engine's breakers after every step.
//!
//! The rules, as checked here: closed -> open only after `failures_to_trip` consecutive failed
//! calls (0: never); open -> half-open only once the cool-down is over, and then a single probe
//! is let through (another only when the probe is given up after `probe_timeout`); the probe's
//! success closes and resets the cool-down, its failure re-opens with the cool-down doubled (up
//! to the cap); results of calls admitted before the last change decide nothing, and neither
//! does a call the worker's connect pacing refused (`connect_paced`) unless it was the probe.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rtb_core::engine::breaker::{State, Transition};
use rtb_core::engine::{Admit, BreakerConfig};

#[derive(Debug)]
struct Model {
    state: State,
    cooldown: Duration,
}

/// The reference breakers of every DSP in the table, by id.
#[derive(Debug)]
pub struct Breakers {
    config: BreakerConfig,
    models: HashMap<u64, Model>,
    /// Every id ever seen: the engine must never reuse one.
    seen_max: u64,
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            models: HashMap::new(),
            seen_max: 0,
        }
    }

    pub fn state(&self, id: u64) -> Option<State> {
        self.models.get(&id).map(|m| m.state)
    }

    /// The table was replaced: `kept` ids keep their breakers, `fresh` ones start closed.
    pub fn replace(&mut self, kept: &[u64], fresh: &[u64]) {
        self.models.retain(|id, _| kept.contains(id));
        for &id in fresh {
            assert!(
                id > self.seen_max,
                "DSP id {id} reused (highest seen {})",
                self.seen_max
            );
            self.seen_max = id;
            let model = Model {
                state: State::Closed { failures: 0 },
                cooldown: self.config.cooldown,
            };
            self.models.insert(id, model);
        }
    }

    /// Whether a call to `id` planned at `now` goes through.
    pub fn admit(&mut self, id: u64, now: Instant) -> Admit {
        let probe_timeout = self.config.probe_timeout;
        let model = self
            .models
            .get_mut(&id)
            .expect("admitting a DSP of the table");
        match model.state {
            State::Closed { .. } => Admit::Call,
            State::Open { until } if now < until => Admit::Skip,
            State::HalfOpen { probe_sent } if now - probe_sent < probe_timeout => Admit::Skip,
            State::Open { .. } | State::HalfOpen { .. } => {
                model.state = State::HalfOpen { probe_sent: now };
                Admit::Probe
            }
        }
    }

    /// The result of a call admitted as `admitted`, at `at`; `None` when the DSP left the table.
    pub fn record(
        &mut self,
        id: u64,
        admitted: Admit,
        ok: bool,
        at: Instant,
    ) -> Option<(Transition, State)> {
        let config = self.config;
        let model = self.models.get_mut(&id)?;
        let transition = match (model.state, admitted, ok) {
            (State::Closed { .. }, Admit::Call, true) => {
                model.state = State::Closed { failures: 0 };
                Transition::None
            }
            (State::Closed { failures }, Admit::Call, false) => {
                let failures = failures + 1;
                if config.failures_to_trip > 0 && failures >= config.failures_to_trip {
                    assert_eq!(failures, config.failures_to_trip, "tripped late");
                    model.open(at, config.cooldown_max);
                    Transition::Tripped
                } else {
                    model.state = State::Closed { failures };
                    Transition::None
                }
            }
            (State::HalfOpen { .. }, Admit::Probe, true) => {
                model.state = State::Closed { failures: 0 };
                model.cooldown = config.cooldown;
                Transition::Closed
            }
            (State::HalfOpen { .. }, Admit::Probe, false) => {
                model.open(at, config.cooldown_max);
                Transition::Reopened
            }
            _ => Transition::None,
        };
        Some((transition, model.state))
    }
}

impl Model {
    /// Opens for the current cool-down; the next opening waits twice as long (capped).
    fn open(&mut self, at: Instant, cap: Duration) {
        self.state = State::Open {
            until: at + self.cooldown,
        };
        self.cooldown = (self.cooldown * 2).min(cap);
    }
}
