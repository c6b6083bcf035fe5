//! Owns the command-line flags (and environment variables) of the DSP connection pools:
//! draining of timed-out calls' connections, answer size, address back-off, connect pacing,
//! pool sizing and pre-warm (plain and TLS); and their translation into [`ClientConfig`]. A
//! binary flattens [`DspClientArgs`] into its own clap parser (`#[command(flatten)]`) and builds
//! its pools by the [`PoolSettings`] they make.
//!
//! The environment variables are `rtb-exchange`'s (`RTB_EXCHANGE_DSP_*`), the one binary that
//! exposes these limits; names, defaults and ranges are part of its interface (the chart and
//! `deploy/validate.sh` use them), so they are spelled here once.

use std::time::Duration;

use crate::{
    pool_settings::{PoolSettings, TlsPoolSettings},
    ClientConfig,
};

/// Default connections opened ahead of traffic to a new DSP, per worker.
pub const DSP_PREWARM_DEFAULT: usize = 2;
/// Default connections opened ahead of traffic to a new `https://` DSP, per worker: enough for
/// 32 calls at once without a handshake under load.
pub const DSP_TLS_PREWARM_DEFAULT: usize = 32;
/// Default TLS handshakes in flight per `https://` DSP per worker.
pub const DSP_TLS_CONNECTS_IN_FLIGHT_DEFAULT: usize = 2;

/// The DSP pools' limits as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DspClientArgs {
    /// Time a timed-out DSP call's connection may wait for its late answer before it is
    /// closed, ms; the connection is then reused instead of reopened. 0 disables draining.
    #[arg(long, env = "RTB_EXCHANGE_DSP_DRAIN_MS", default_value_t = crate::client::DRAIN_TIMEOUT_DEFAULT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub dsp_drain_ms: u64,

    /// Largest DSP answer body, bytes; a gzip answer is refused when it decodes to more (a
    /// decompression bomb stops here). Over it: `rtb_dsp_errors_total{kind="too_large"}`.
    #[arg(long, env = "RTB_EXCHANGE_DSP_RESPONSE_BYTES_MAX", default_value_t = crate::client::RESPONSE_BYTES_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    pub dsp_response_bytes_max: u64,

    /// How long an address of a DSP host whose connect failed is skipped, ms, while another
    /// address of the host is usable (new connections go round robin across them).
    #[arg(long, env = "RTB_EXCHANGE_DSP_ADDR_BACKOFF_MS", default_value_t = crate::client::ADDR_BACKOFF_DEFAULT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub dsp_addr_backoff_ms: u64,

    /// Connections draining at once per DSP per worker; beyond it they are closed.
    #[arg(long, env = "RTB_EXCHANGE_DSP_DRAINING_MAX", default_value_t = crate::client::DRAINING_MAX_DEFAULT)]
    pub dsp_draining_max: usize,

    /// New connections per second per DSP per worker, sustained; a call that needs one more
    /// fails at once (`connect_paced`).
    #[arg(long, env = "RTB_EXCHANGE_DSP_CONNECTS_PER_S", default_value_t = crate::client::CONNECTS_PER_S_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub dsp_connects_per_s: u32,

    /// New connections per DSP per worker allowed in a burst.
    #[arg(long, env = "RTB_EXCHANGE_DSP_CONNECT_BURST", default_value_t = crate::client::CONNECTS_BURST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub dsp_connect_burst: u32,

    /// Connects in flight at once per DSP per worker.
    #[arg(long, env = "RTB_EXCHANGE_DSP_CONNECTS_IN_FLIGHT", default_value_t = crate::client::CONNECTS_IN_FLIGHT_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub dsp_connects_in_flight: u64,

    /// Connections opened to a new DSP ahead of traffic, per worker; also the least a DSP's
    /// pool shrinks to when its traffic falls.
    #[arg(long, env = "RTB_EXCHANGE_DSP_PREWARM", default_value_t = DSP_PREWARM_DEFAULT)]
    pub dsp_prewarm: usize,

    /// Pre-warm connects in flight at once per worker, across every DSP a roster change
    /// brings (fifty new DSPs do not open all their connections at once).
    #[arg(long, env = "RTB_EXCHANGE_DSP_PREWARM_CONNECTS_IN_FLIGHT", default_value_t = crate::PREWARM_LANES_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub dsp_prewarm_connects_in_flight: u64,

    /// Most connections (busy and idle) a worker's pool to one DSP holds; its size follows the
    /// DSP's traffic below it (Little's law and the recent peak).
    #[arg(long, env = "RTB_EXCHANGE_DSP_POOL_CONNECTIONS_MAX", default_value_t = crate::client::IDLE_CONNECTIONS_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub dsp_pool_connections_max: u64,

    /// Half-life, s, of the peak of calls in flight a DSP pool keeps connections for: after the
    /// traffic falls, a pool sheds half its surplus over the new need in this time.
    #[arg(long, env = "RTB_EXCHANGE_DSP_POOL_PEAK_HALF_LIFE_S", default_value_t = crate::client::POOL_PEAK_HALF_LIFE_DEFAULT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dsp_pool_peak_half_life_s: u64,

    /// Connections opened to a new https:// DSP ahead of traffic, per worker (a handshake under
    /// load costs the worker about 1.6 ms of CPU, so TLS pools open up front).
    #[arg(long, env = "RTB_EXCHANGE_DSP_TLS_PREWARM", default_value_t = DSP_TLS_PREWARM_DEFAULT)]
    pub dsp_tls_prewarm: usize,

    /// TLS handshakes in flight at once per https:// DSP per worker (replaces
    /// --dsp-connects-in-flight for them; a call that needs one more fails at once).
    #[arg(long, env = "RTB_EXCHANGE_DSP_TLS_CONNECTS_IN_FLIGHT", default_value_t = DSP_TLS_CONNECTS_IN_FLIGHT_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub dsp_tls_connects_in_flight: u64,
}

impl DspClientArgs {
    /// Each worker's pool limits for one DSP, the rest at their defaults.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            drain_timeout: Duration::from_millis(self.dsp_drain_ms),
            draining_max: self.dsp_draining_max,
            connects_per_s: self.dsp_connects_per_s,
            connects_burst: self.dsp_connect_burst,
            connects_in_flight_max: usize::try_from(self.dsp_connects_in_flight)
                .unwrap_or(usize::MAX),
            response_bytes_max: usize::try_from(self.dsp_response_bytes_max).unwrap_or(usize::MAX),
            addr_backoff: Duration::from_millis(self.dsp_addr_backoff_ms),
            idle_connections_max: usize::try_from(self.dsp_pool_connections_max)
                .unwrap_or(usize::MAX),
            pool_peak_half_life: Duration::from_secs(self.dsp_pool_peak_half_life_s),
            ..ClientConfig::default()
        }
    }

    /// How each worker builds its pool to a new DSP: the pool limits, the pre-warm, TLS.
    pub fn pool_settings(&self) -> PoolSettings {
        let lanes = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        PoolSettings {
            client: self.client_config(),
            prewarm: self.dsp_prewarm,
            prewarm_lanes: lanes(self.dsp_prewarm_connects_in_flight),
            tls: TlsPoolSettings {
                prewarm: self.dsp_tls_prewarm,
                connects_in_flight: lanes(self.dsp_tls_connects_in_flight),
            },
        }
    }
}
