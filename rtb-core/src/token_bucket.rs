//! Owns the token bucket: a rate of tokens a second, a burst banked at most, and one token
//! taken per call, with time as a parameter. Two users: each DSP's QPS cap on each worker
//! ([`TokenBucket::one_second`], the worker's share of the cap) and the exchange's onboarding
//! rate limit ([`TokenBucket::new`], a configured burst, with [`TokenBucket::retry_after_s`]
//! for `Retry-After`).

use std::time::Instant;

/// How many tokens a bucket banks at most.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Burst {
    /// A fixed number of tokens.
    Tokens(f64),
    /// One second's worth of the current rate, and never less than one token (a rate below 1
    /// a second still lets a call through now and then).
    OneSecond,
}

/// A token bucket: refilled at `rate_per_s` tokens a second up to its burst; a zero rate
/// disables the limit. An earlier `now` than the last call refills nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucket {
    rate_per_s: f64,
    burst: Burst,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket at `now`: `burst` tokens (at least 1), refilled at `rate_per_s`. A zero
    /// rate disables the limit.
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate_per_s: f64::from(rate_per_s),
            burst: Burst::Tokens(burst),
            tokens: burst,
            last: Some(now),
        }
    }

    /// A full bucket that banks one second's worth of `rate_per_s` (at least one token), as a
    /// worker's share of a DSP's QPS cap; time starts at the first call.
    pub fn one_second(rate_per_s: f64) -> Self {
        debug_assert!(rate_per_s > 0.0);
        TokenBucket {
            rate_per_s,
            burst: Burst::OneSecond,
            tokens: rate_per_s.max(1.0),
            last: None,
        }
    }

    /// The tokens it refills a second.
    pub fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }

    /// The most tokens it banks.
    fn room(&self) -> f64 {
        match self.burst {
            Burst::Tokens(tokens) => tokens,
            Burst::OneSecond => self.rate_per_s.max(1.0),
        }
    }

    /// Changes the refill rate (a new share of a cap); the tokens banked stay, trimmed to the
    /// burst (which, for a one-second bucket, follows the new rate). A rate that is not finite
    /// and positive is ignored.
    pub fn set_rate(&mut self, rate_per_s: f64) {
        if rate_per_s > 0.0 && rate_per_s.is_finite() {
            self.rate_per_s = rate_per_s;
            self.tokens = self.tokens.min(self.room());
        }
    }

    /// Takes one token at `now` if there is one (refilled for the time since the last call);
    /// false when the bucket is empty.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.rate_per_s == 0.0 {
            return true;
        }
        let elapsed_s = self.last.map_or(0.0, |last| {
            now.saturating_duration_since(last).as_secs_f64()
        });
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        self.tokens = (self.tokens + elapsed_s * self.rate_per_s).min(self.room());
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
#[allow(clippy::disallowed_methods)] // tests need some instant; the bucket reads no clock
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

    #[test]
    fn retry_after_counts_the_seconds_to_the_next_token() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 3, t0);
        assert_eq!((0..10).filter(|_| b.try_take(t0)).count(), 3);
        assert_eq!(b.retry_after_s(), 1);
        let mut slow = TokenBucket::one_second(0.25);
        assert!(slow.try_take(t0));
        assert!(!slow.try_take(t0));
        assert_eq!(slow.retry_after_s(), 4, "one token at 0.25 a second");
    }

    #[test]
    fn the_one_second_bucket_gives_its_rate_and_banks_one_second_at_most() {
        let t0 = Instant::now();
        let at_us = |us: u64| t0 + Duration::from_micros(us);
        let mut bucket = TokenBucket::one_second(100.0);
        let burst = (0..1000).filter(|_| bucket.try_take(t0)).count();
        assert_eq!(burst, 100);
        // Ten seconds at 1,000 calls a second: 100 a second pass, plus nothing banked.
        let passed = (1..=10_000u64)
            .filter(|i| bucket.try_take(at_us(i * 1_000)))
            .count();
        assert!((990..=1010).contains(&passed), "{passed}");
        assert!(!bucket.try_take(at_us(10_000_000)));
        assert!(!bucket.try_take(t0), "time going back refills nothing");
    }

    #[test]
    fn a_share_below_one_a_second_still_passes_calls_at_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::one_second(0.5);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + Duration::from_millis(1500)));
        assert!(bucket.try_take(t0 + Duration::from_millis(2000)));
    }

    #[test]
    fn a_new_rate_keeps_the_tokens_banked_up_to_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::one_second(100.0);
        bucket.set_rate(10.0);
        assert_eq!((0..100).filter(|_| bucket.try_take(t0)).count(), 10);
        bucket.set_rate(f64::NAN);
        assert_eq!(bucket.rate_per_s(), 10.0, "a bad rate is ignored");
        let mut fixed = TokenBucket::new(100, 5, t0);
        fixed.set_rate(1000.0);
        assert_eq!((0..100).filter(|_| fixed.try_take(t0)).count(), 5);
    }
}
