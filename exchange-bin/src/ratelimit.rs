//! Owns the token bucket that limits onboarding calls (`POST /dsp`, `DELETE /dsp/{name}`): a
//! pure structure with time as a parameter.
//!
//! One bucket per process, behind a mutex in [`crate::Shared`]: onboarding is rare and off the
//! auction path, and a process-wide bucket makes `--onboard-rate-per-s` mean what it says
//! whatever the worker count. It is checked before the token, so guessing the token is rate
//! limited too; the price is that a flood of unauthenticated calls also delays legitimate
//! re-onboarding (registered DSPs keep bidding until their TTL runs out).

use std::time::Instant;

/// Default sustained onboarding calls per second.
pub const ONBOARD_RATE_PER_S_DEFAULT: u32 = 50;
/// Default burst (bucket size).
pub const ONBOARD_BURST_DEFAULT: u32 = 100;

/// A token bucket: `burst` tokens, refilled at `rate_per_s`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. A zero rate disables the limit.
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate_per_s: f64::from(rate_per_s),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty (answer 429).
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.rate_per_s == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Seconds until one token is available (for `Retry-After`), at least 1.
    pub fn retry_after_s(&self) -> u64 {
        if self.rate_per_s == 0.0 {
            return 1;
        }
        let need = (1.0 - self.tokens).max(0.0) / self.rate_per_s;
        (need.ceil() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0));
        // 10/s: one token per 100 ms.
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
        assert_eq!(b.retry_after_s(), 1);
    }

    #[test]
    fn zero_rate_is_unlimited_and_time_going_back_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(0, 1, t0);
        for _ in 0..1000 {
            assert!(b.try_take(t0));
        }
        let mut b = TokenBucket::new(1, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
    }
}
