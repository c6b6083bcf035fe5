//! Owns single-writer counters kept per code, for a small set of codes that is not known in
//! advance (the exchange counts clearing prices per auction currency): [`CodeSlots`] has `N`
//! named slots, each claimed on first use by the worker that owns the counters; any code
//! beyond them, and the code 0, is counted in one shared "other" slot, so a stream of odd
//! codes cannot grow memory or the number of series. Each slot keeps an amount and a count;
//! the hot path adds integers into [`Counter`]s, like every other per-worker counter: no lock,
//! no read-modify-write, no cache line shared between workers.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::limits::Counter;

/// Amounts and counts per code, `N` named slots plus "other". Single writer.
#[derive(Debug)]
pub struct CodeSlots<const N: usize> {
    /// The code of each named slot; 0 while free. Written once by the owner (release), read
    /// at scrape (acquire) so a slot's code is seen before its counts.
    codes: [AtomicU32; N],
    /// Amounts; the slot after the named ones is "other".
    amounts: Vec<Counter>,
    /// Counts; the slot after the named ones is "other".
    counts: Vec<Counter>,
}

impl<const N: usize> Default for CodeSlots<N> {
    fn default() -> Self {
        Self {
            codes: std::array::from_fn(|_| AtomicU32::new(0)),
            amounts: (0..=N).map(|_| Counter::default()).collect(),
            counts: (0..=N).map(|_| Counter::default()).collect(),
        }
    }
}

impl<const N: usize> CodeSlots<N> {
    /// Adds `amount` and one to the slot of `code` (0: "other"). Owner thread only.
    pub fn add(&self, code: u32, amount: u64) {
        let i = self.slot(code);
        self.amounts[i].add(amount);
        self.counts[i].incr();
    }

    fn slot(&self, code: u32) -> usize {
        if code == 0 {
            return N;
        }
        for (i, slot) in self.codes.iter().enumerate() {
            match slot.load(Ordering::Relaxed) {
                c if c == code => return i,
                0 => {
                    slot.store(code, Ordering::Release);
                    return i;
                }
                _ => {}
            }
        }
        N
    }

    /// Calls `each(code, amount, count)` for every slot that counted something; code 0 is
    /// "other". Any thread.
    pub fn for_each(&self, mut each: impl FnMut(u32, u64, u64)) {
        let codes = self.codes.iter().map(|c| c.load(Ordering::Acquire));
        for (i, code) in codes.chain([0]).enumerate() {
            let count = self.counts[i].get();
            if count > 0 {
                each(code, self.amounts[i].get(), count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_beyond_the_slots_and_zero_share_other() {
        let slots = CodeSlots::<2>::default();
        for (code, amount) in [(7, 1), (8, 2), (9, 4), (7, 8), (0, 16), (10, 32)] {
            slots.add(code, amount);
        }
        let mut seen = Vec::new();
        slots.for_each(|code, amount, count| seen.push((code, amount, count)));
        assert_eq!(seen, [(7, 9, 2), (8, 2, 1), (0, 52, 3)]);
        let empty = CodeSlots::<2>::default();
        empty.for_each(|code, _, _| panic!("nothing counted, yet {code}"));
    }
}
