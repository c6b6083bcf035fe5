//! Owns the command-line flags (and environment variables) of the auction engine: the
//! deadline cap and the answer margin, the fixed and adaptive load shedding, the circuit
//! breaker and the validation mode; and their translation into [`EngineConfig`]. A binary
//! flattens [`EngineArgs`] into its own clap parser (`#[command(flatten)]`). Built with the
//! `flags` feature (clap), so a library user of the engine pays nothing for it.
//!
//! The environment variables are `rtb-exchange`'s (`RTB_EXCHANGE_*`); names, defaults and
//! ranges are part of its interface (the chart and `deploy/validate.sh` use them), so they are
//! spelled here once, next to the defaults they show.

use std::time::Duration;

use crate::{
    deadline::{DeadlinePolicy, DEFAULT_RESPONSE_MARGIN},
    engine::{
        admission::{
            DEFAULT_AUCTIONS_IN_FLIGHT_MAX, DEFAULT_EVENT_LOOP_LAG_MAX, DEFAULT_QUEUE_WAIT_MAX,
        },
        breaker::{self, BreakerConfig},
        EngineConfig, OverloadPolicy, ShedRatePolicy,
    },
    ValidationMode,
};

/// Default cap on an auction's duration, ms.
pub const DEADLINE_MS_CAP_DEFAULT: u64 = 80;

/// The engine's settings as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Cap on an auction's duration, ms, whatever the request's tmax says.
    #[arg(long, env = "RTB_EXCHANGE_DEADLINE_MS", default_value_t = DEADLINE_MS_CAP_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub deadline_ms: u64,

    /// Time kept after the DSP deadline to run the auction and answer, ms.
    #[arg(long, env = "RTB_EXCHANGE_MARGIN_MS", default_value_t = DEFAULT_RESPONSE_MARGIN.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub margin_ms: u64,

    /// Shed new auctions (204 at once) while a worker's event loop lags more than this, ms: its
    /// timers, the DSP deadlines among them, would fire late.
    #[arg(long, env = "RTB_EXCHANGE_SHED_LAG_MS", default_value_t = DEFAULT_EVENT_LOOP_LAG_MAX.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub shed_lag_ms: u64,

    /// Shed new auctions (204 at once) while this many already wait for DSPs on a worker.
    #[arg(long, env = "RTB_EXCHANGE_MAX_AUCTIONS_IN_FLIGHT", default_value_t = DEFAULT_AUCTIONS_IN_FLIGHT_MAX,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_auctions_in_flight: u32,

    /// Shed (204 at once, before decoding) a request that waited longer than this, ms, before
    /// its worker started on it: unread in the kernel (`--kernel-arrival`) and in the worker's
    /// turn queue (`--turn-budget-us`). Counted as `overload`.
    #[arg(long, env = "RTB_EXCHANGE_SHED_QUEUE_WAIT_MS", default_value_t = DEFAULT_QUEUE_WAIT_MAX.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub shed_queue_wait_ms: u64,

    /// Shed a share of new auctions, steered by the worker's event-loop lag (a PIE
    /// controller, issue 14; README "Overload").
    #[arg(long, env = "RTB_EXCHANGE_ADAPTIVE_SHEDDING", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub adaptive_shedding: bool,

    /// The event-loop lag the adaptive shedding steers towards, ms.
    #[arg(long, env = "RTB_EXCHANGE_SHED_TARGET_LAG_MS", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub shed_target_lag_ms: u64,

    /// Consecutive failures (errors, timeouts) that open a DSP's circuit breaker on a worker;
    /// 0 disables the breaker.
    #[arg(long, env = "RTB_EXCHANGE_BREAKER_FAILURES", default_value_t = breaker::FAILURES_TO_TRIP_DEFAULT)]
    pub breaker_failures: u32,

    /// First cool-down of an open breaker, ms (doubles on each failed probe).
    #[arg(long, env = "RTB_EXCHANGE_BREAKER_COOLDOWN_MS", default_value_t = breaker::COOLDOWN_DEFAULT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub breaker_cooldown_ms: u64,

    /// Longest cool-down of an open breaker, ms.
    #[arg(long, env = "RTB_EXCHANGE_BREAKER_COOLDOWN_MAX_MS", default_value_t = breaker::COOLDOWN_MAX_DEFAULT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub breaker_cooldown_max_ms: u64,

    /// How much of each bid request is validated: strict (the whole OpenRTB 2.6 object model
    /// and the Native 1.2 request) or lenient (only the fields the auction reads).
    #[arg(long, env = "RTB_EXCHANGE_VALIDATION", default_value_t = ValidationMode::Strict)]
    pub validation: ValidationMode,
}

impl EngineArgs {
    /// The timing policy.
    pub fn deadline_policy(&self) -> DeadlinePolicy {
        DeadlinePolicy {
            cap: Duration::from_millis(self.deadline_ms),
            response_margin: Duration::from_millis(self.margin_ms),
            ..DeadlinePolicy::default()
        }
    }

    /// When a worker sheds auctions.
    pub fn overload_policy(&self) -> OverloadPolicy {
        OverloadPolicy {
            event_loop_lag_max: Duration::from_millis(self.shed_lag_ms),
            auctions_in_flight_max: self.max_auctions_in_flight,
            queue_wait_max: Duration::from_millis(self.shed_queue_wait_ms),
        }
    }

    /// The circuit breaker's settings; a probe may take up to twice the deadline cap.
    pub fn breaker_config(&self) -> BreakerConfig {
        let cooldown = Duration::from_millis(self.breaker_cooldown_ms);
        let cooldown_max = Duration::from_millis(self.breaker_cooldown_max_ms).max(cooldown);
        BreakerConfig {
            failures_to_trip: self.breaker_failures,
            cooldown,
            cooldown_max,
            probe_timeout: breaker::PROBE_TIMEOUT_DEFAULT
                .max(Duration::from_millis(self.deadline_ms * 2)),
        }
    }

    /// Everything the auction engine of one of `workers` engines decides by.
    pub fn engine_config(&self, workers: usize) -> EngineConfig {
        EngineConfig {
            deadline: self.deadline_policy(),
            overload: self.overload_policy(),
            shed_rate: ShedRatePolicy {
                enabled: self.adaptive_shedding,
                target: Duration::from_millis(self.shed_target_lag_ms),
                ..ShedRatePolicy::default()
            },
            breaker: self.breaker_config(),
            validation: self.validation,
            workers,
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        engine: EngineArgs,
    }

    #[test]
    fn flags_reach_the_engine_config() {
        let defaults = Flags::try_parse_from(["x"]).unwrap().engine;
        let config = defaults.engine_config(3);
        assert_eq!(config.deadline.cap, Duration::from_millis(80));
        assert_eq!(config.overload, OverloadPolicy::default());
        assert_eq!(
            (config.workers, config.validation),
            (3, ValidationMode::Strict)
        );
        assert!(!config.shed_rate.enabled);
        let args = [
            "x",
            "--deadline-ms",
            "2000",
            "--breaker-cooldown-ms",
            "900",
            "--breaker-cooldown-max-ms",
            "100",
            "--adaptive-shedding",
            "true",
            "--validation",
            "lenient",
        ];
        let config = Flags::try_parse_from(args).unwrap().engine.engine_config(1);
        // The longest cool-down is never below the first; a probe outlives the deadline.
        assert_eq!(config.breaker.cooldown_max, Duration::from_millis(900));
        assert_eq!(config.breaker.probe_timeout, Duration::from_secs(4));
        assert!(config.shed_rate.enabled);
        assert_eq!(config.validation, ValidationMode::Lenient);
        assert!(Flags::try_parse_from(["x", "--deadline-ms", "0"]).is_err());
    }
}
