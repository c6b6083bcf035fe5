//! Owns the server's limits on what a peer may send, and the per-worker counters of how often
//! each limit was hit.
//!
//! Counters are written by exactly one worker thread, so increments are a relaxed load and
//! store (a plain `mov` on x86), not a locked read-modify-write; readers on other threads sum
//! them into a [`ServerStats`] snapshot.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Largest head (request line and headers) accepted by default.
pub const HEAD_BYTES_MAX_DEFAULT: usize = 8 * 1024;
/// Most headers accepted by default.
pub const HEADERS_COUNT_MAX_DEFAULT: usize = 64;
/// Hard cap on `headers_count_max`: the size of the on-stack httparse header array.
pub const HEADERS_COUNT_CAP: usize = 128;
/// Largest request body (as sent, before decompression) accepted by default.
pub const BODY_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Largest body after gzip decoding accepted by default.
pub const DECOMPRESSED_BYTES_MAX_DEFAULT: usize = 256 * 1024;
/// Most open connections per worker by default; beyond it new connections are closed at once.
pub const CONNECTIONS_PER_WORKER_MAX_DEFAULT: usize = 10_000;
/// Default [`ServerLimits::accepts_in_flight`].
pub const ACCEPTS_IN_FLIGHT_DEFAULT: usize = 64;
/// Default for [`ServerLimits::kernel_arrival`].
pub const KERNEL_ARRIVAL_DEFAULT: bool = false;
/// Time allowed from a head's first byte to its last.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Time allowed to read a body once its head is parsed.
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Time allowed to write one response to a client that is not reading.
pub const RESPONSE_WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Time an idle keep-alive connection is kept open waiting for its next request.
pub const IDLE_KEEPALIVE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// What a client may send, per connection and per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Request line plus headers, bytes. Over it: 431.
    pub head_bytes_max: usize,
    /// Header count, at most [`HEADERS_COUNT_CAP`]. Over it: 431.
    pub headers_count_max: usize,
    /// Body as sent (Content-Length or decoded chunks), bytes. Over it: 413.
    pub body_bytes_max: usize,
    /// Body after gzip decoding, bytes. Over it: 413.
    pub decompressed_bytes_max: usize,
    /// Open connections per worker; new ones beyond it are closed without a response.
    pub connections_per_worker_max: usize,
    /// Accepts waiting on the listener at once per worker (io_uring; epoll keeps one), at
    /// least 1. One accept completes per turn of the event loop, and under load a turn takes
    /// milliseconds: with one, a burst of 500 connects waited seconds in the accept queue.
    pub accepts_in_flight: usize,
    /// Request work a worker runs before its event loop checks its timers again; a request
    /// read past it waits for the next turn (`turn_budget`). Zero (the default): off.
    pub turn_budget: Duration,
    /// The order the turn budget's queue serves waiting requests in.
    pub turn_queue_order: crate::turn_budget::QueueOrder,
    /// Stamp each request with the kernel's receive time of its first bytes (`kernel_stamp`),
    /// so its deadline and its wait count the time it sat in the socket's buffer.
    pub kernel_arrival: bool,
    /// First head byte to end of head. Over it: 408.
    pub header_read_timeout: Duration,
    /// End of head to end of body. Over it: 408.
    pub body_read_timeout: Duration,
    /// Writing one response. Over it: close.
    pub response_write_timeout: Duration,
    /// Wait for the next request on a keep-alive connection (also for the first request on a
    /// new connection). Over it: close without a response.
    pub idle_keepalive_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            head_bytes_max: HEAD_BYTES_MAX_DEFAULT,
            headers_count_max: HEADERS_COUNT_MAX_DEFAULT,
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            decompressed_bytes_max: DECOMPRESSED_BYTES_MAX_DEFAULT,
            connections_per_worker_max: CONNECTIONS_PER_WORKER_MAX_DEFAULT,
            accepts_in_flight: ACCEPTS_IN_FLIGHT_DEFAULT,
            turn_budget: crate::turn_budget::TURN_BUDGET_DEFAULT,
            turn_queue_order: crate::turn_budget::QueueOrder::default(),
            kernel_arrival: KERNEL_ARRIVAL_DEFAULT,
            header_read_timeout: HEADER_READ_TIMEOUT_DEFAULT,
            body_read_timeout: BODY_READ_TIMEOUT_DEFAULT,
            response_write_timeout: RESPONSE_WRITE_TIMEOUT_DEFAULT,
            idle_keepalive_timeout: IDLE_KEEPALIVE_TIMEOUT_DEFAULT,
        }
    }
}

/// A single-writer counter: increments are not atomic read-modify-writes, so only the owning
/// worker may call [`Counter::incr`].
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Owner thread only.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Adds `n`. Owner thread only.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Subtracts one (for gauges). Owner thread only.
    #[inline]
    pub fn decr(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(1),
            Ordering::Relaxed,
        );
    }

    /// Current value; any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! stats {
    ($(#[doc = $doc:literal] $name:ident,)*) => {
        /// One worker's counters. Padded to its own cache lines so workers never share one.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct WorkerStats {
            $(#[doc = $doc] pub $name: Counter,)*
        }

        /// Counters summed over workers at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct ServerStats {
            $(#[doc = $doc] pub $name: u64,)*
        }

        impl ServerStats {
            /// Sums per-worker counters.
            pub fn sum<'a>(workers: impl IntoIterator<Item = &'a WorkerStats>) -> Self {
                let mut total = Self::default();
                for w in workers {
                    $(total.$name += w.$name.get();)*
                }
                total
            }
        }
    };
}

stats! {
    /// Connections accepted.
    connections_accepted,
    /// Connections open now (gauge).
    connections_open,
    /// Connections closed at accept because the worker was at `connections_per_worker_max`.
    connections_rejected_over_limit,
    /// Keep-alive connections closed after `idle_keepalive_timeout` or at shutdown.
    connections_idle_closed,
    /// Requests handed to the handler.
    requests_handled,
    /// Requests that queued for the turn budget (spent, or others queued ahead).
    requests_waited_turn,
    /// 400: malformed head, bad chunking, bad gzip, request smuggling attempt.
    rejected_bad_request,
    /// 408: head or body not received in time.
    rejected_timeout,
    /// 411: body-carrying method without a length.
    rejected_length_required,
    /// 413: body over `body_bytes_max` or `decompressed_bytes_max`.
    rejected_body_too_large,
    /// 431: head over `head_bytes_max` or more than `headers_count_max` headers.
    rejected_head_too_large,
    /// 505: HTTP version other than 1.0 or 1.1.
    rejected_bad_version,
    /// 415: a `Content-Encoding` the server does not decode (the connection stays open).
    rejected_unsupported_encoding,
    /// Answers sent gzip-compressed because the client accepted it and they were worth it.
    responses_gzipped,
    /// Connections that ended with a read or write error (reset, broken pipe).
    io_errors,
    /// Handler panics caught: answered 500 and the connection closed; the worker lives on.
    handler_panics,
    /// TLS handshakes on accepted connections that failed or outlasted the header timeout.
    tls_handshakes_failed,
}
