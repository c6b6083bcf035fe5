//! Owns the pacing of new connections to one upstream on one worker: a token bucket (a
//! sustained rate and a burst) and a cap on connects in flight. A call that needs a new
//! connection takes a [`ConnectPermit`] first; without one it fails at once
//! ([`super::CallError::ConnectPaced`]), so timeouts or a slow connect can never turn into an
//! unbounded storm of connects (each one costs a worker 2.4 ms with 10,000 kube-proxy rules).
//!
//! The clock is read only when a connect is wanted, never on a call that reuses a connection.

use std::{cell::Cell, time::Instant};

/// The connect budget of one upstream. Single-threaded (plain cells).
#[derive(Debug)]
pub(crate) struct Pacing {
    per_s: u32,
    burst: u32,
    in_flight_max: usize,
    /// Tokens left, in millionths of a connect (integer arithmetic, no drift).
    micro_tokens: Cell<u64>,
    refilled_at: Cell<Option<Instant>>,
    in_flight: Cell<usize>,
}

const MICRO: u64 = 1_000_000;

/// A connect in flight; dropping it frees its slot.
#[derive(Debug)]
pub(crate) struct ConnectPermit<'p>(&'p Cell<usize>);

impl Drop for ConnectPermit<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Pacing {
    /// A full bucket of `burst` connects, refilled at `per_s`; at most `in_flight_max` connects
    /// at once. A zero `burst` or `per_s` is taken as 1, so an upstream can always connect.
    pub(crate) fn new(per_s: u32, burst: u32, in_flight_max: usize) -> Self {
        let burst = burst.max(1);
        Self {
            per_s: per_s.max(1),
            burst,
            in_flight_max: in_flight_max.max(1),
            micro_tokens: Cell::new(u64::from(burst) * MICRO),
            refilled_at: Cell::new(None),
            in_flight: Cell::new(0),
        }
    }

    /// Takes one connect from the budget at `now`, or says no.
    pub(crate) fn try_acquire(&self, now: Instant) -> Option<ConnectPermit<'_>> {
        if self.in_flight.get() >= self.in_flight_max {
            return None;
        }
        self.refill(now);
        let tokens = self.micro_tokens.get();
        if tokens < MICRO {
            return None;
        }
        self.micro_tokens.set(tokens - MICRO);
        self.in_flight.set(self.in_flight.get() + 1);
        Some(ConnectPermit(&self.in_flight))
    }

    /// Connects in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    fn refill(&self, now: Instant) {
        let Some(before) = self.refilled_at.replace(Some(now)) else {
            return;
        };
        let elapsed_us = now.saturating_duration_since(before).as_micros();
        let added = elapsed_us.saturating_mul(u128::from(self.per_s));
        let cap = u64::from(self.burst) * MICRO;
        let tokens = u128::from(self.micro_tokens.get()).saturating_add(added);
        self.micro_tokens
            .set(u64::try_from(tokens.min(u128::from(cap))).unwrap_or(cap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let pacing = Pacing::new(100, 3, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(pacing.try_acquire(t0).expect("within the burst"));
        }
        assert!(pacing.try_acquire(t0).is_none(), "the burst is spent");
        // 100 per second: one more token after 10 ms, not before.
        assert!(pacing.try_acquire(t0 + Duration::from_millis(9)).is_none());
        assert!(pacing.try_acquire(t0 + Duration::from_millis(10)).is_some());
        assert!(pacing.try_acquire(t0 + Duration::from_millis(10)).is_none());
        // A long pause refills to the burst, never past it.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            drop(pacing.try_acquire(later).expect("refilled"));
        }
        assert!(pacing.try_acquire(later).is_none());
    }

    #[test]
    fn in_flight_cap_frees_on_drop() {
        let pacing = Pacing::new(1_000, 10, 2);
        let now = Instant::now();
        let a = pacing.try_acquire(now).expect("first");
        let _b = pacing.try_acquire(now).expect("second");
        assert!(pacing.try_acquire(now).is_none(), "two in flight");
        assert_eq!(pacing.in_flight(), 2);
        drop(a);
        assert!(pacing.try_acquire(now).is_some());
    }
}
