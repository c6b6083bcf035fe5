//! Owns the command-line flags (and environment variables) of the HTTP server's limits:
//! request head and body sizes, header count, connections and accepts per worker, read and
//! keep-alive timeouts; and their translation into [`ServerLimits`]. A binary flattens
//! [`ServerLimitArgs`] into its own clap parser (`#[command(flatten)]`).
//!
//! The environment variables are `rtb-exchange`'s (`RTB_EXCHANGE_*`), the one binary that
//! exposes these limits; names, defaults and ranges are part of its interface (the chart and
//! `deploy/validate.sh` use them), so they are spelled here once.
//!
//! Two defaults differ from [`ServerLimits::default`], the library's: the exchange turns the
//! turn budget and kernel arrival stamps on, because its engine sheds on the wait they measure
//! (`--shed-queue-wait-ms`); a server without such a rule gains little from them.

use std::time::Duration;

use crate::limits::{
    ServerLimits, ACCEPTS_IN_FLIGHT_DEFAULT, BODY_BYTES_MAX_DEFAULT,
    CONNECTIONS_PER_WORKER_MAX_DEFAULT, DECOMPRESSED_BYTES_MAX_DEFAULT, HEADERS_COUNT_CAP,
    HEADERS_COUNT_MAX_DEFAULT, HEAD_BYTES_MAX_DEFAULT,
};

/// The exchange's turn budget (the library's default is off).
pub const EXCHANGE_TURN_BUDGET_DEFAULT: Duration = crate::turn_budget::TURN_BUDGET_MIN;
/// Whether the exchange stamps arrivals with the kernel's receive time (the library: no).
pub const EXCHANGE_KERNEL_ARRIVAL_DEFAULT: bool = true;

/// The server's limits as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerLimitArgs {
    /// Largest request head (request line and headers), bytes.
    #[arg(long, env = "RTB_EXCHANGE_HEAD_BYTES_MAX", default_value_t = HEAD_BYTES_MAX_DEFAULT)]
    pub head_bytes_max: usize,

    /// Most request headers; more are answered 431.
    #[arg(long, env = "RTB_EXCHANGE_HEADER_COUNT_MAX", default_value_t = HEADERS_COUNT_MAX_DEFAULT as u64,
          value_parser = clap::value_parser!(u64).range(1..=HEADERS_COUNT_CAP as u64))]
    pub header_count_max: u64,

    /// Largest request body as sent, bytes.
    #[arg(long, env = "RTB_EXCHANGE_BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX_DEFAULT)]
    pub body_bytes_max: usize,

    /// Largest request body after gzip decoding, bytes.
    #[arg(long, env = "RTB_EXCHANGE_DECOMPRESSED_BYTES_MAX", default_value_t = DECOMPRESSED_BYTES_MAX_DEFAULT)]
    pub decompressed_bytes_max: usize,

    /// Most open client connections per worker.
    #[arg(long, env = "RTB_EXCHANGE_CONNECTIONS_PER_WORKER", default_value_t = CONNECTIONS_PER_WORKER_MAX_DEFAULT)]
    pub connections_per_worker: usize,

    /// Accepts waiting on the listener at once per worker (io_uring; epoll keeps one), so a
    /// burst of new connections is taken several per turn of the event loop.
    #[arg(long, env = "RTB_EXCHANGE_ACCEPTS_IN_FLIGHT", default_value_t = ACCEPTS_IN_FLIGHT_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub accepts_in_flight: usize,

    /// Request work a worker runs between two checks of its timers, us (0: off; raised to at
    /// least 2,000): a request read once it is spent waits for the next turn, so DSP deadlines
    /// fire on time.
    #[arg(long, env = "RTB_EXCHANGE_TURN_BUDGET_US",
          default_value_t = EXCHANGE_TURN_BUDGET_DEFAULT.as_micros() as u64)]
    pub turn_budget_us: u64,

    /// Once the oldest request in a worker's turn queue has waited longer than this, ms, the
    /// queue serves the newest first (they still have their whole deadline); requests past
    /// the exchange's --shed-queue-wait-ms go first, to be shed at once.
    #[arg(long, env = "RTB_EXCHANGE_TURN_LIFO_AFTER_MS",
          default_value_t = crate::turn_budget::LIFO_AFTER_DEFAULT.as_millis() as u64)]
    pub turn_lifo_after_ms: u64,

    /// Stamp each request with the kernel's receive time of its first bytes, so its deadline
    /// and its wait (--shed-queue-wait-ms) count the time it sat unread in the socket.
    #[arg(long, env = "RTB_EXCHANGE_KERNEL_ARRIVAL", default_value_t = EXCHANGE_KERNEL_ARRIVAL_DEFAULT,
          action = clap::ArgAction::Set)]
    pub kernel_arrival: bool,

    /// Time allowed to read a request head, ms.
    #[arg(long, env = "RTB_EXCHANGE_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_timeout_ms: u64,

    /// Time allowed to read a request body, ms.
    #[arg(long, env = "RTB_EXCHANGE_BODY_TIMEOUT_MS", default_value_t = 5_000)]
    pub body_timeout_ms: u64,

    /// Time an idle keep-alive client connection is kept, s.
    #[arg(long, env = "RTB_EXCHANGE_IDLE_TIMEOUT_S", default_value_t = 60)]
    pub idle_timeout_s: u64,
}

impl ServerLimitArgs {
    /// The first limit that is 0 but must not be (0 would refuse every request or
    /// connection), as its flag and variable.
    pub fn zero_limit(&self) -> Option<(&'static str, &'static str)> {
        let limits = [
            (
                "head-bytes-max",
                "RTB_EXCHANGE_HEAD_BYTES_MAX",
                self.head_bytes_max as u64,
            ),
            (
                "body-bytes-max",
                "RTB_EXCHANGE_BODY_BYTES_MAX",
                self.body_bytes_max as u64,
            ),
            (
                "connections-per-worker",
                "RTB_EXCHANGE_CONNECTIONS_PER_WORKER",
                self.connections_per_worker as u64,
            ),
            (
                "header-timeout-ms",
                "RTB_EXCHANGE_HEADER_TIMEOUT_MS",
                self.header_timeout_ms,
            ),
        ];
        let zero = limits.into_iter().find(|(_, _, value)| *value == 0);
        zero.map(|(flag, env, _)| (flag, env))
    }

    /// The limits these flags set (the decompressed cap no lower than the body cap; body and
    /// idle timeouts at least 1 ms and 1 s), the rest at their defaults.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            head_bytes_max: self.head_bytes_max,
            headers_count_max: usize::try_from(self.header_count_max).unwrap_or(HEADERS_COUNT_CAP),
            body_bytes_max: self.body_bytes_max,
            decompressed_bytes_max: self.decompressed_bytes_max.max(self.body_bytes_max),
            connections_per_worker_max: self.connections_per_worker,
            accepts_in_flight: self.accepts_in_flight,
            turn_budget: Duration::from_micros(self.turn_budget_us),
            turn_queue_order: crate::turn_budget::QueueOrder {
                lifo_after: Duration::from_millis(self.turn_lifo_after_ms),
                ..crate::turn_budget::QueueOrder::default()
            },
            kernel_arrival: self.kernel_arrival,
            header_read_timeout: Duration::from_millis(self.header_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
            idle_keepalive_timeout: Duration::from_secs(self.idle_timeout_s.max(1)),
            ..ServerLimits::default()
        }
    }
}
