//! Owns which auction ledger records a worker keeps and when they happened: records of auctions
//! with a winner always, the rest (no-bid auctions, shed and invalid requests) with a
//! configured probability, drawn from a per-worker xorshift generator (seeded, so a test is
//! deterministic); and a record's wall-clock time from one anchor read at start, so no clock
//! is read per record.

use std::time::Instant;

use crate::ledger::RecordMeta;

/// Whether each record is kept: winners always, the rest with probability `sample`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LedgerSampler {
    sample: f64,
    /// xorshift64 state (never 0).
    rng: u64,
}

impl LedgerSampler {
    /// A sampler keeping a `sample` share (0 to 1) of non-winning records, seeded by
    /// `worker` (each worker draws its own sequence).
    pub fn new(sample: f64, worker: usize) -> Self {
        Self {
            sample,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1),
        }
    }

    /// Whether to keep a record (`winning`: of an auction with a winner).
    pub fn keep(&mut self, winning: bool) -> bool {
        if winning || self.sample >= 1.0 {
            return true;
        }
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        // The top 53 bits as a uniform number in [0, 1).
        ((x >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < self.sample
    }
}

/// The wall clock at one instant, so a record's arrival `Instant` turns into wall time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallAnchor {
    /// Microseconds since the Unix epoch at `at`.
    pub unix_us: u64,
    /// The instant the wall clock was read.
    pub at: Instant,
}

impl WallAnchor {
    /// The record meta of a request that arrived at `arrival` on `worker`.
    pub fn meta(&self, arrival: Instant, worker: u16) -> RecordMeta {
        let since = arrival.saturating_duration_since(self.at);
        RecordMeta {
            arrival_unix_us: self.unix_us + u64::try_from(since.as_micros()).unwrap_or(0),
            worker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn winners_are_always_kept_and_the_rest_at_the_sample_rate() {
        let mut sampler = LedgerSampler::new(0.25, 3);
        assert!((0..1000).all(|_| sampler.keep(true)));
        let kept = (0..100_000).filter(|_| sampler.keep(false)).count();
        assert!((24_000..26_000).contains(&kept), "{kept}");
        let mut none = LedgerSampler::new(0.0, 0);
        assert!(!(0..1000).any(|_| none.keep(false)));
        let mut all = LedgerSampler::new(1.0, 0);
        assert!((0..1000).all(|_| all.keep(false)));
        let draws = |worker| {
            let mut s = LedgerSampler::new(0.5, worker);
            (0..64).map(|_| s.keep(false)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1), "seeded: the same sequence");
        assert_ne!(draws(1), draws(2), "each worker its own");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some instant; the anchor reads no clock
    fn arrival_turns_into_wall_time_from_the_anchor() {
        let at = Instant::now();
        let anchor = WallAnchor {
            unix_us: 1_000_000,
            at,
        };
        let meta = anchor.meta(at + Duration::from_micros(2_500), 7);
        assert_eq!((meta.arrival_unix_us, meta.worker), (1_002_500, 7));
        let before = at.checked_sub(Duration::from_secs(1)).unwrap_or(at);
        assert_eq!(anchor.meta(before, 0).arrival_unix_us, 1_000_000);
    }
}
