//! Owns the command-line flags (and environment variables) of the DSP directory: how many DSPs
//! it holds and for how long without a heartbeat, whether loopback DSPs are allowed, how many
//! addresses it keeps per host and how it follows their DNS records; and their translation
//! into [`DirectoryConfig`]. A binary flattens [`DirectoryArgs`] into its own clap parser
//! (`#[command(flatten)]`). Built with the `flags` feature (clap).
//!
//! The environment variables are `rtb-exchange`'s (`RTB_EXCHANGE_*`), spelled here once, next
//! to the defaults they show.

use std::time::Duration;

use crate::{
    directory::DirectoryConfig,
    dns::{DnsLimits, ADDRS_PER_DSP_MAX_DEFAULT, RERESOLVE_MIN_DEFAULT},
    registry::DEFAULT_DSPS_MAX,
};

/// Default TTL of a DSP that stopped re-onboarding, s.
pub const DSP_TTL_S_DEFAULT: u64 = 30;

/// The directory's settings as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DirectoryArgs {
    /// A DSP not re-onboarded within this many seconds is removed.
    #[arg(long, env = "RTB_EXCHANGE_DSP_TTL_S", default_value_t = DSP_TTL_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dsp_ttl_s: u64,

    /// Longest wait before a DSP host is looked up again, s: a DNS record's TTL is followed up
    /// to it (and no shorter than 1 s); it is the period itself when no TTL is known (the
    /// getaddrinfo fallback, used when /etc/resolv.conf cannot be read) or a lookup failed.
    #[arg(long, env = "RTB_EXCHANGE_DNS_RERESOLVE_S", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub dns_reresolve_s: u64,

    /// Shortest wait before a DSP host is looked up again, ms, whatever its record's TTL.
    #[arg(long, env = "RTB_EXCHANGE_DNS_RERESOLVE_MIN_MS", default_value_t = RERESOLVE_MIN_DEFAULT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub dns_reresolve_min_ms: u64,

    /// Most addresses kept per DSP host (the lowest ones, when a name has more); new
    /// connections go round robin across them.
    #[arg(long, env = "RTB_EXCHANGE_DNS_ADDRS_MAX", default_value_t = ADDRS_PER_DSP_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub dns_addrs_max: u64,

    /// Longest wait for one DNS lookup on the control thread; a slower one counts as failed.
    #[arg(long, env = "RTB_EXCHANGE_DNS_TIMEOUT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub dns_timeout_ms: u64,

    /// Most DSPs registered at once; onboarding beyond it answers 409.
    #[arg(long, env = "RTB_EXCHANGE_MAX_DSPS", default_value_t = DEFAULT_DSPS_MAX)]
    pub max_dsps: usize,

    /// Refuse DSPs on loopback addresses (127.0.0.0/8, ::1, localhost).
    #[arg(long, env = "RTB_EXCHANGE_DENY_LOOPBACK_DSP", default_value_t = false)]
    pub deny_loopback_dsp: bool,
}

impl DirectoryArgs {
    /// How many addresses are kept per host and how a record's TTL is followed.
    pub fn dns_limits(&self) -> DnsLimits {
        DnsLimits {
            addrs_max: usize::try_from(self.dns_addrs_max).unwrap_or(usize::MAX),
            reresolve_min: Duration::from_millis(self.dns_reresolve_min_ms),
            reresolve_max: Duration::from_secs(self.dns_reresolve_s),
        }
    }

    /// The directory's settings.
    pub fn directory_config(&self) -> DirectoryConfig {
        DirectoryConfig {
            dsps_max: self.max_dsps,
            ttl: Duration::from_secs(self.dsp_ttl_s),
            allow_loopback: !self.deny_loopback_dsp,
            dns: self.dns_limits(),
        }
    }

    /// Longest wait for one lookup, so DNS cannot stall the control thread.
    pub fn resolve_timeout(&self) -> Duration {
        Duration::from_millis(self.dns_timeout_ms)
    }
}
