//! Owns the exchange's configuration: every flag, its environment variable and its default, and
//! the translation into rtb-io's [`ServerConfig`]. The engine's, the directory's, the server
//! limits', the DSP pools' and the ledger's flags are their crates' (`rtb_core::engine_flags`,
//! `rtb_core::directory_flags`, `rtb_io::limit_flags`, `rtb_io::client_flags`,
//! `rtb_io::ledger_flags`), flattened here; the rules across flags are checked here.
//!
//! Parsing is clap's (derive, `env`); on a bad value the error names the flag, the variable and
//! the value (see [`Config::parse_or_exit`]).

use std::{
    ffi::OsString,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use clap::{CommandFactory, Parser, ValueEnum};
use rtb_core::engine::EngineConfig;
use rtb_io::{ClientConfig, DriverKind, ServerConfig};

/// Default main port.
pub const PORT_DEFAULT: u16 = 3000;
/// Default debug/metrics port.
pub const DEBUG_PORT_DEFAULT: u16 = 6060;
/// Default pending win notices per worker.
pub const WIN_QUEUE_MAX_DEFAULT: usize = 1024;
/// Longest onboarding token accepted (a longer one is a configuration mistake).
pub const ONBOARD_TOKEN_BYTES_MAX: usize = 256;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// rtb-exchange: a thread-per-core OpenRTB 2.6 ad exchange.
#[derive(Debug, Clone, Parser)]
#[command(name = "rtb-exchange", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Main (auction and onboarding) port; 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, env = "RTB_EXCHANGE_PORT", default_value_t = PORT_DEFAULT)]
    pub port: u16,

    /// Address to bind both ports on. Off loopback, onboarding needs a token (--onboard-token)
    /// or an explicit --open-onboarding.
    #[arg(long, env = "RTB_EXCHANGE_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Debug port (/metrics, /debug/registry); 0 picks a free one.
    #[arg(long, env = "RTB_EXCHANGE_DEBUG_PORT", default_value_t = DEBUG_PORT_DEFAULT)]
    pub debug_port: u16,

    /// Worker threads [default: usable cores].
    #[arg(long, env = "RTB_EXCHANGE_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Pin worker i to core i.
    #[arg(long, env = "RTB_EXCHANGE_PIN", default_value_t = true, action = clap::ArgAction::Set)]
    pub pin: bool,

    /// IO driver: auto (io_uring, epoll fallback), uring or epoll.
    #[arg(long, env = "RTB_EXCHANGE_IO_DRIVER", default_value = "auto")]
    pub io_driver: DriverKind,

    /// The auction engine's settings (deadline, shedding, breaker, validation).
    #[command(flatten)]
    pub engine: rtb_core::engine_flags::EngineArgs,

    /// Bearer token required by POST /dsp, GET /dsp, DELETE /dsp/{name} and /debug/registry
    /// [default: none: open onboarding, refused off loopback without --open-onboarding].
    #[arg(long, env = "RTB_ONBOARD_TOKEN", hide_env_values = true)]
    pub onboard_token: Option<String>,

    /// Allow open onboarding (no token) on a non-loopback --bind address: anyone who reaches
    /// the port can then register, list and remove DSPs. Only for closed networks (a lab).
    #[arg(long, env = "RTB_EXCHANGE_OPEN_ONBOARDING", default_value_t = false)]
    pub open_onboarding: bool,

    /// The DSP directory's settings (size, TTL, loopback, DNS).
    #[command(flatten)]
    pub directory: rtb_core::directory_flags::DirectoryArgs,

    /// The HTTP server's limits (request sizes, connections, read timeouts).
    #[command(flatten)]
    pub server_limits: rtb_io::limit_flags::ServerLimitArgs,

    /// Pending win and loss notices per worker (loss notices up to half of it); beyond it new
    /// ones are dropped (and counted).
    #[arg(long, env = "RTB_EXCHANGE_WIN_QUEUE_MAX", default_value_t = WIN_QUEUE_MAX_DEFAULT)]
    pub win_queue_max: usize,

    /// Time given to in-flight requests at shutdown, s.
    #[arg(long, env = "RTB_EXCHANGE_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,

    /// Onboarding calls (POST /dsp, DELETE /dsp/{name}) allowed per second, process-wide;
    /// beyond it (and the burst) they answer 429. 0 disables the limit.
    #[arg(long, env = "RTB_EXCHANGE_ONBOARD_RATE_PER_S", default_value_t = crate::onboard::ONBOARD_RATE_PER_S_DEFAULT)]
    pub onboard_rate_per_s: u32,

    /// Onboarding calls allowed in a burst.
    #[arg(long, env = "RTB_EXCHANGE_ONBOARD_BURST", default_value_t = crate::onboard::ONBOARD_BURST_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub onboard_burst: u32,

    /// The DSP roster file (YAML or JSON; issue 15): each DSP with its URL and policy (QPS
    /// cap, channels, media, countries, own tmax, bid adjustment; gzip). Reloaded when it
    /// changes; its DSPs never expire. A file that does not load at start stops the start
    /// [default: none: DSPs onboard over HTTP only].
    #[arg(long, env = "RTB_EXCHANGE_ROSTER")]
    pub roster: Option<std::path::PathBuf>,

    /// How often the roster file is looked at for a change, ms.
    #[arg(long, env = "RTB_EXCHANGE_ROSTER_POLL_MS", default_value_t = rtb_io::engine_shell::roster::ROSTER_POLL_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub roster_poll_ms: u64,

    /// How often each DSP's QPS cap is split again between workers by the traffic each saw
    /// for it, ms (a worker enforces its part with its own token bucket).
    #[arg(long, env = "RTB_EXCHANGE_QPS_REBALANCE_MS", default_value_t = rtb_io::engine_shell::qps_shares::QPS_REBALANCE_MS_DEFAULT,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub qps_rebalance_ms: u64,

    /// Check the configuration and exit without serving: the flags and environment parsed,
    /// the --roster file loaded; prints `OK ...` (exit 0) or the error (exit 2). For a
    /// rendered chart or an edited roster before it ships. A flag only, no variable: a
    /// variable left in an environment would keep the exchange from ever serving.
    #[arg(long, default_value_t = false)]
    pub check_config: bool,

    /// Currency rates in Prebid Server's file format: a file path or an http:// URL (https is
    /// not supported yet). Bids and floors in a currency with a rate are converted to the
    /// auction currency [default: none: bids must be in the auction currency].
    #[arg(long, env = "RTB_EXCHANGE_CURRENCY_RATES", value_parser = rtb_io::engine_shell::rates::RatesSource::parse)]
    pub currency_rates: Option<rtb_io::engine_shell::rates::RatesSource>,

    /// Seconds between loads of --currency-rates (a failed load keeps the previous table).
    #[arg(long, env = "RTB_EXCHANGE_CURRENCY_REFRESH_S", default_value_t = rtb_io::engine_shell::rates::REFRESH_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub currency_refresh_s: u64,

    /// Rates not loaded successfully for this many seconds are reported stale (metrics, logs);
    /// they are still used.
    #[arg(long, env = "RTB_EXCHANGE_CURRENCY_STALE_S", default_value_t = rtb_io::engine_shell::rates::STALE_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(1..=2_592_000))]
    pub currency_stale_s: u64,

    /// The auction ledger (`--ledger*` flags).
    #[command(flatten)]
    pub ledger: rtb_io::ledger_flags::LedgerArgs,

    /// The DSP connection pools' limits (draining, connects, sizing, pre-warm, TLS).
    #[command(flatten)]
    pub dsp_client: rtb_io::client_flags::DspClientArgs,

    /// Extra certificate authorities (PEM) trusted for https:// DSPs and notices, beside the
    /// compiled-in public roots (webpki-roots).
    #[arg(long, env = "RTB_EXCHANGE_DSP_CA_FILE")]
    pub dsp_ca_file: Option<std::path::PathBuf>,

    /// Log format (levels come from RUST_LOG, default info).
    #[arg(long, env = "RTB_EXCHANGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// Parses the process's arguments and environment, or prints the error (naming the flag,
    /// its variable and the value) and exits with status 2.
    pub fn parse_or_exit() -> Config {
        match Self::try_parse_from_env(std::env::args_os()) {
            Ok(c) => c,
            Err(e) => e.exit(),
        }
    }

    /// Parses `args` plus the environment, then checks cross-field rules. Go-style `-flag`
    /// spellings are accepted as `--flag` (rtb_io::flags), as the original fleet's scripts use.
    pub fn try_parse_from_env<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = rtb_io::flags::go_style(args);
        let config = Config::try_parse_from(args)
            .map_err(|e| rtb_io::flags::with_env_hint(e, &Config::command()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), clap::Error> {
        let bad = |flag: &str, env: &str, value: String, why: &str| {
            Config::command().error(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{value}' for '--{flag}' (env {env}): {why}"),
            )
        };
        if self.engine.margin_ms >= self.engine.deadline_ms {
            return Err(bad(
                "margin-ms",
                "RTB_EXCHANGE_MARGIN_MS",
                self.engine.margin_ms.to_string(),
                "must be below --deadline-ms",
            ));
        }
        self.check_onboarding()?;
        if self.currency_stale_s <= self.currency_refresh_s {
            return Err(bad(
                "currency-stale-s",
                "RTB_EXCHANGE_CURRENCY_STALE_S",
                self.currency_stale_s.to_string(),
                "must be more than --currency-refresh-s (rates would be stale between refreshes)",
            ));
        }
        if let Some(token) = &self.onboard_token {
            // The value itself is never echoed: it is a secret.
            if token.is_empty() || token.len() > ONBOARD_TOKEN_BYTES_MAX {
                return Err(bad(
                    "onboard-token",
                    "RTB_ONBOARD_TOKEN",
                    "<hidden>".into(),
                    "must be 1 to 256 bytes",
                ));
            }
        }
        let own = [
            ("max-dsps", "RTB_EXCHANGE_MAX_DSPS", self.directory.max_dsps),
            (
                "win-queue-max",
                "RTB_EXCHANGE_WIN_QUEUE_MAX",
                self.win_queue_max,
            ),
        ];
        let zero = own.into_iter().find(|(_, _, value)| *value == 0);
        let zero = zero.map(|(flag, env, _)| (flag, env));
        if let Some((flag, env)) = zero.or_else(|| self.server_limits.zero_limit()) {
            return Err(bad(flag, env, "0".into(), "must be > 0"));
        }
        Ok(())
    }

    /// Open onboarding (no token) is refused off loopback unless asked for, and a token with
    /// --open-onboarding is a contradiction: both are configuration mistakes worth a clear stop.
    fn check_onboarding(&self) -> Result<(), clap::Error> {
        let refuse = |message: String| {
            Err(Config::command().error(clap::error::ErrorKind::ArgumentConflict, message))
        };
        match (&self.onboard_token, self.open_onboarding) {
            (Some(_), true) => refuse(
                "--open-onboarding (RTB_EXCHANGE_OPEN_ONBOARDING) and --onboard-token \
                 (RTB_ONBOARD_TOKEN) are both set: drop one of them"
                    .into(),
            ),
            (None, false) if !self.bind.is_loopback() => refuse(format!(
                "refusing to start with open onboarding on {bind}: without a token, anyone who \
                 reaches port {port} can register, list and remove DSPs (POST/GET /dsp, \
                 DELETE /dsp/{{name}}). Do one of:\n  \
                 - set a token: --onboard-token TOKEN or RTB_ONBOARD_TOKEN=TOKEN (DSPs send \
                 `Authorization: Bearer TOKEN`);\n  \
                 - bind loopback only: --bind 127.0.0.1 (RTB_EXCHANGE_BIND);\n  \
                 - accept open onboarding on this network: --open-onboarding \
                 (RTB_EXCHANGE_OPEN_ONBOARDING=true)",
                bind = self.bind,
                port = self.port,
            )),
            _ => Ok(()),
        }
    }

    /// Worker count: the flag, or the cores this process may use.
    pub fn worker_count(&self) -> usize {
        self.workers.map(usize::from).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Everything the auction engine decides by.
    pub fn engine_config(&self) -> EngineConfig {
        self.engine.engine_config(self.worker_count())
    }

    /// Each worker's pool limits for one DSP.
    pub fn dsp_client_config(&self) -> ClientConfig {
        self.dsp_client.client_config()
    }

    /// The main server's configuration.
    pub fn server_config(&self) -> ServerConfig {
        let mut c = ServerConfig::new(SocketAddr::new(self.bind, self.port));
        c.workers = self.worker_count();
        c.pin_cores = self.pin;
        c.driver = self.io_driver;
        c.limits = self.server_limits.limits();
        // The turn queue serves first what the engine will shed at once for its wait.
        c.limits.turn_queue_order.stale_after =
            Duration::from_millis(self.engine.shed_queue_wait_ms);
        c.shutdown_grace = Duration::from_secs(self.shutdown_grace_s);
        c
    }

    /// The debug server: one unpinned worker on the same driver.
    pub fn debug_server_config(&self) -> ServerConfig {
        let mut c = ServerConfig::new(SocketAddr::new(self.bind, self.debug_port));
        c.workers = 1;
        c.pin_cores = false;
        c.driver = self.io_driver;
        c.shutdown_grace = Duration::from_secs(1);
        c.thread_name = "rtb-debug";
        c
    }
}

#[cfg(test)]
mod tests {
    use rtb_core::{dns::DnsLimits, ValidationMode};
    use rtb_io::{
        client_flags::{DSP_TLS_CONNECTS_IN_FLIGHT_DEFAULT, DSP_TLS_PREWARM_DEFAULT},
        limits::HEADERS_COUNT_MAX_DEFAULT,
    };

    use super::*;

    #[test]
    fn defaults() {
        let c = Config::try_parse_from(["rtb-exchange"]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.debug_port, 6060);
        assert_eq!(c.engine.deadline_ms, 80);
        assert_eq!(c.directory.dsp_ttl_s, 30);
        assert!(c.pin);
        assert_eq!(c.io_driver, DriverKind::Auto);
        assert_eq!(c.engine.deadline_policy().cap, Duration::from_millis(80));
        assert_eq!(c.engine.validation, ValidationMode::Strict);
    }

    #[test]
    fn validation_mode_from_flag_or_env() {
        let c = Config::try_parse_from(["rtb-exchange", "--validation", "lenient"]).unwrap();
        assert_eq!(c.engine.validation, ValidationMode::Lenient);
        assert_eq!(c.engine_config().validation, ValidationMode::Lenient);
        let e = Config::try_parse_from_env(["rtb-exchange", "--validation", "loose"]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("loose") && text.contains("RTB_EXCHANGE_VALIDATION"),
            "{text}"
        );
    }

    #[test]
    fn dns_period_and_timeout_flags_are_bounded() {
        let defaults = Config::try_parse_from(["x"])
            .unwrap()
            .directory
            .dns_limits();
        assert_eq!(defaults, DnsLimits::default());
        let flags = ["x", "--dns-reresolve-min-ms", "250", "--dns-addrs-max", "4"];
        let limits = Config::try_parse_from(flags)
            .unwrap()
            .directory
            .dns_limits();
        assert_eq!(limits.reresolve_min, Duration::from_millis(250));
        assert_eq!(limits.addrs_max, 4);
        let e = Config::try_parse_from_env(["x", "--dns-addrs-max", "0"]).unwrap_err();
        assert!(e.to_string().contains("--dns-addrs-max"), "{e}");
        let c = Config::try_parse_from(["x", "--dns-reresolve-s", "5", "--dns-timeout-ms", "300"])
            .unwrap();
        assert_eq!(
            (c.directory.dns_reresolve_s, c.directory.dns_timeout_ms),
            (5, 300)
        );
        let e = Config::try_parse_from_env(["x", "--dns-timeout-ms", "5"]).unwrap_err();
        assert!(e.to_string().contains("RTB_EXCHANGE_DNS_TIMEOUT_MS"), "{e}");
        let e = Config::try_parse_from_env(["x", "--dns-reresolve-s", "0"]).unwrap_err();
        assert!(
            e.to_string().contains("RTB_EXCHANGE_DNS_RERESOLVE_S"),
            "{e}"
        );
    }

    #[test]
    fn go_style_single_dash_flags_are_accepted() {
        let c = Config::try_parse_from_env(["rtb-exchange", "-port", "5001", "-bind", "127.0.0.1"])
            .unwrap();
        assert_eq!(c.port, 5001);
        let c =
            Config::try_parse_from_env(["rtb-exchange", "-port=5002", "-bind=127.0.0.1"]).unwrap();
        assert_eq!(c.port, 5002);
    }

    #[test]
    fn bad_values_name_flag_and_value() {
        let e = Config::try_parse_from_env(["rtb-exchange", "--port", "70000"]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--port") && text.contains("70000"), "{text}");
        assert!(text.contains("RTB_EXCHANGE_PORT"), "{text}");
        let e = Config::try_parse_from_env(["rtb-exchange", "--io-driver", "kqueue"]).unwrap_err();
        assert!(e.to_string().contains("kqueue"));
        let e = Config::try_parse_from_env(["rtb-exchange", "--margin-ms", "90"]).unwrap_err();
        assert!(e.to_string().contains("RTB_EXCHANGE_MARGIN_MS"));
    }

    /// A config parsed from `args` with the onboarding settings given (whatever the
    /// environment of the test process says).
    fn onboarding(args: &[&str], token: Option<&str>, open: bool) -> Config {
        let mut c = Config::try_parse_from(args).unwrap();
        c.onboard_token = token.map(str::to_string);
        c.open_onboarding = open;
        c
    }

    #[test]
    fn open_onboarding_off_loopback_needs_to_be_asked_for() {
        let refused = onboarding(&["rtb-exchange"], None, false)
            .check_onboarding()
            .unwrap_err()
            .to_string();
        for needle in [
            "refusing to start with open onboarding on 0.0.0.0",
            "--onboard-token",
            "RTB_ONBOARD_TOKEN",
            "--bind 127.0.0.1",
            "--open-onboarding",
            "RTB_EXCHANGE_OPEN_ONBOARDING=true",
        ] {
            assert!(refused.contains(needle), "{needle} missing in: {refused}");
        }
        let v6 = onboarding(&["rtb-exchange", "--bind", "::"], None, false);
        assert!(v6.check_onboarding().is_err());
        for ok in [
            onboarding(&["rtb-exchange"], Some("t"), false),
            onboarding(&["rtb-exchange"], None, true),
            onboarding(&["rtb-exchange", "--bind", "127.0.0.1"], None, false),
            onboarding(&["rtb-exchange", "--bind", "::1"], None, false),
        ] {
            assert!(ok.check_onboarding().is_ok(), "{ok:?}");
        }
        let both = onboarding(&["rtb-exchange"], Some("t"), true).check_onboarding();
        assert!(both.unwrap_err().to_string().contains("drop one of them"));
    }

    #[test]
    fn header_count_max_reaches_the_server_limits() {
        let c = Config::try_parse_from(["rtb-exchange", "--header-count-max", "9"]).unwrap();
        assert_eq!(c.server_config().limits.headers_count_max, 9);
        let c = Config::try_parse_from(["rtb-exchange"]).unwrap();
        assert_eq!(
            c.server_config().limits.headers_count_max,
            HEADERS_COUNT_MAX_DEFAULT
        );
        for bad in ["0", "129"] {
            let e = Config::try_parse_from_env(["rtb-exchange", "--header-count-max", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("RTB_EXCHANGE_HEADER_COUNT_MAX"), "{e}");
        }
    }

    #[test]
    fn currency_flags() {
        let c = Config::try_parse_from_env(["rtb-exchange", "--bind", "127.0.0.1"]).unwrap();
        assert_eq!(c.currency_rates, None);
        assert_eq!((c.currency_refresh_s, c.currency_stale_s), (1800, 7200));
        let c = Config::try_parse_from_env([
            "rtb-exchange",
            "--bind",
            "127.0.0.1",
            "--currency-rates",
            "http://rates.test/latest.json",
        ])
        .unwrap();
        assert!(matches!(
            c.currency_rates,
            Some(rtb_io::engine_shell::rates::RatesSource::Http { .. })
        ));
        let e = Config::try_parse_from_env([
            "rtb-exchange",
            "--bind",
            "127.0.0.1",
            "--currency-rates",
            "https://cdn.jsdelivr.net/gh/prebid/currency-file@1/latest.json",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--currency-rates") && e.contains("https:// is not supported"),
            "{e}"
        );
        let e = Config::try_parse_from_env([
            "rtb-exchange",
            "--bind",
            "127.0.0.1",
            "--currency-stale-s",
            "60",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("RTB_EXCHANGE_CURRENCY_STALE_S"), "{e}");
    }

    #[test]
    fn dsp_pool_flags_reach_the_client_config() {
        let defaults = Config::try_parse_from(["rtb-exchange"]).unwrap();
        assert_eq!(defaults.dsp_client_config(), ClientConfig::default());
        let c = Config::try_parse_from([
            "rtb-exchange",
            "--dsp-drain-ms",
            "0",
            "--dsp-draining-max",
            "3",
            "--dsp-connects-per-s",
            "50",
            "--dsp-connect-burst",
            "5",
            "--dsp-connects-in-flight",
            "2",
            "--dsp-tls-prewarm",
            "7",
            "--dsp-tls-connects-in-flight",
            "3",
            "--dsp-response-bytes-max",
            "4096",
            "--dsp-addr-backoff-ms",
            "700",
        ])
        .unwrap();
        let tls = c.dsp_client.pool_settings().tls;
        assert_eq!((tls.prewarm, tls.connects_in_flight), (7, 3));
        let tls = defaults.dsp_client.pool_settings().tls;
        assert_eq!(
            (tls.prewarm, tls.connects_in_flight),
            (DSP_TLS_PREWARM_DEFAULT, DSP_TLS_CONNECTS_IN_FLIGHT_DEFAULT)
        );
        let client = c.dsp_client_config();
        assert_eq!(client.drain_timeout, Duration::ZERO);
        assert_eq!(client.draining_max, 3);
        assert_eq!(client.connects_per_s, 50);
        assert_eq!(client.connects_burst, 5);
        assert_eq!(client.connects_in_flight_max, 2);
        assert_eq!(client.response_bytes_max, 4096);
        assert_eq!(client.addr_backoff, Duration::from_millis(700));
        let e = Config::try_parse_from_env(["rtb-exchange", "--dsp-connect-burst", "0"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--dsp-connect-burst"), "{e}");
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        for (flag, env) in [
            ("--max-dsps", "RTB_EXCHANGE_MAX_DSPS"),
            ("--win-queue-max", "RTB_EXCHANGE_WIN_QUEUE_MAX"),
            ("--head-bytes-max", "RTB_EXCHANGE_HEAD_BYTES_MAX"),
            ("--header-timeout-ms", "RTB_EXCHANGE_HEADER_TIMEOUT_MS"),
        ] {
            let args = ["rtb-exchange", "--bind", "127.0.0.1", flag, "0"];
            let e = Config::try_parse_from_env(args).unwrap_err().to_string();
            assert!(e.contains(env) && e.contains("must be > 0"), "{e}");
        }
    }

    #[test]
    fn pin_takes_a_value() {
        let c = Config::try_parse_from(["rtb-exchange", "--pin", "false"]).unwrap();
        assert!(!c.pin);
    }
}
