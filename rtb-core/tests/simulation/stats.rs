//! Owns what a run counts: how requests were decided, how calls ended, what breakers did, and
//! how late the late auctions were; printed once per seed so a run shows what it exercised.

use std::{collections::BTreeMap, fmt, time::Duration};

use rtb_core::engine::breaker::Transition;
use rtb_core::engine::{CallStatus, ShedReason};

use crate::reference::Expected;

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: u64,
    /// Refused by the kernel: the worker's backlog was full.
    pub refused: u64,
    pub invalid: u64,
    pub no_dsp: u64,
    pub shed: BTreeMap<&'static str, u64>,
    /// Sheds answered after their answer-by instant (the request waited too long to be read).
    pub shed_late: u64,
    /// Auctions that called DSPs and finished.
    pub auctions: u64,
    pub with_winner: u64,
    pub abandoned: u64,
    pub notices: u64,
    pub calls: BTreeMap<String, u64>,
    pub tripped: u64,
    pub reopened: u64,
    pub closed: u64,
    pub table_changes: u64,
    /// Auctions whose timer fired later than the engine's slack covered, and the worst excess.
    pub late: u64,
    pub late_max: Duration,
    pub virtual_time: Duration,
    pub in_flight_max: u32,
    /// A hash of every step the worker took (when, what it cost) and of every finish: two runs
    /// of one seed must agree on it.
    pub digest: u64,
}

impl Stats {
    pub fn immediate(&mut self, decision: &Expected, late: bool) {
        match decision {
            Expected::Invalid => self.invalid += 1,
            Expected::NoDsp => self.no_dsp += 1,
            Expected::Shed(reason) => {
                *self.shed.entry(shed_name(*reason)).or_default() += 1;
                self.shed_late += u64::from(late);
            }
            Expected::Call { .. } => unreachable!(),
        }
    }

    pub fn call(&mut self, status: CallStatus, transition: Transition) {
        let name = match status {
            CallStatus::Failed(kind) => kind.as_str().to_string(),
            CallStatus::BadStatus(_) => "bad_status".to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        *self.calls.entry(name).or_default() += 1;
        match transition {
            Transition::Tripped => self.tripped += 1,
            Transition::Reopened => self.reopened += 1,
            Transition::Closed => self.closed += 1,
            Transition::None => {}
        }
    }

    pub fn finished(&mut self, with_winner: bool, notices: usize) {
        self.auctions += 1;
        self.with_winner += u64::from(with_winner);
        self.notices += notices as u64;
    }

    /// Folds values into the digest (FNV-1a over their bytes).
    pub fn fold(&mut self, values: &[u64]) {
        let mut hash = if self.digest == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.digest
        };
        for value in values {
            for byte in value.to_le_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        self.digest = hash;
    }

    pub fn late(&mut self, excess: Duration) {
        self.late += 1;
        self.late_max = self.late_max.max(excess);
    }

    /// Requests the engine saw (everything but the kernel's refusals).
    pub fn decided(&self) -> u64 {
        self.invalid
            + self.no_dsp
            + self.shed.values().sum::<u64>()
            + self.auctions
            + self.abandoned
    }
}

fn shed_name(reason: ShedReason) -> &'static str {
    reason.as_str()
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {:.2} s virtual: {} auctions ({} won, {} notices), {} abandoned, {} invalid, {} no DSP, shed {:?} ({} after answer-by), {} refused by the kernel; in flight max {}; calls {:?}; breakers tripped {} reopened {} closed {}; {} table changes; {} answered late, their timer later than the slack covered (by up to {:?})",
            self.requests,
            self.virtual_time.as_secs_f64(),
            self.auctions,
            self.with_winner,
            self.notices,
            self.abandoned,
            self.invalid,
            self.no_dsp,
            self.shed,
            self.shed_late,
            self.refused,
            self.in_flight_max,
            self.calls,
            self.tripped,
            self.reopened,
            self.closed,
            self.table_changes,
            self.late,
            self.late_max,
        )
    }
}

impl Stats {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &Stats) {
        add_map(&mut self.shed, &other.shed);
        add_map(&mut self.calls, &other.calls);
        for (into, from) in [
            (&mut self.requests, other.requests),
            (&mut self.refused, other.refused),
            (&mut self.invalid, other.invalid),
            (&mut self.no_dsp, other.no_dsp),
            (&mut self.shed_late, other.shed_late),
            (&mut self.auctions, other.auctions),
            (&mut self.with_winner, other.with_winner),
            (&mut self.abandoned, other.abandoned),
            (&mut self.notices, other.notices),
            (&mut self.tripped, other.tripped),
            (&mut self.reopened, other.reopened),
            (&mut self.closed, other.closed),
            (&mut self.table_changes, other.table_changes),
            (&mut self.late, other.late),
        ] {
            *into += from;
        }
        self.late_max = self.late_max.max(other.late_max);
        self.virtual_time += other.virtual_time;
        self.in_flight_max = self.in_flight_max.max(other.in_flight_max);
    }

    /// The corpus must exercise every decision, every way a call ends and every breaker
    /// transition: a simulation that stopped reaching one would pass without testing it.
    pub fn assert_covers_everything(&self) {
        for reason in ShedReason::ALL {
            assert!(
                self.shed.get(reason.as_str()).is_some_and(|&n| n > 0),
                "no auction shed for {reason:?}: {self}"
            );
        }
        let mut statuses: Vec<String> = ["answered", "nobid", "undecodable", "bad_status"]
            .map(String::from)
            .to_vec();
        statuses.extend(
            rtb_core::engine::CallFailure::ALL
                .iter()
                .map(|k| k.as_str().to_string()),
        );
        for status in statuses {
            assert!(
                self.calls.get(&status).is_some_and(|&n| n > 0),
                "no call ended {status}: {self}"
            );
        }
        let counts = [
            ("invalid", self.invalid),
            ("no DSP", self.no_dsp),
            ("won", self.with_winner),
            ("notices", self.notices),
            ("abandoned", self.abandoned),
            ("tripped", self.tripped),
            ("reopened", self.reopened),
            ("closed", self.closed),
            ("table changes", self.table_changes),
            ("late beyond the slack", self.late),
            ("refused by the kernel", self.refused),
        ];
        for (name, n) in counts {
            assert!(n > 0, "the corpus never had {name}: {self}");
        }
    }
}

fn add_map<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}
