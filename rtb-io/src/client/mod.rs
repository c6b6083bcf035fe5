//! Owns outgoing HTTP/1.1 calls to DSPs: the call and its limits ([`ClientConfig`],
//! [`CallError`]), per-worker keep-alive pools ([`pool`]), the bytes on the wire ([`wire`]),
//! and, in [`crate::fanout`], the fan-out that gathers K calls by a deadline.
//!
//! No reconnect cascade. A call that misses its deadline is dropped, but its connection is not
//! thrown away when it can be saved: if the request was written whole and no byte of the
//! answer had arrived (a slow DSP: the common case), the connection goes to the upstream's
//! bounded draining set ([`drain`]), whose task reads the late answer by a drain deadline and
//! byte limit, then puts the connection back in the idle pool; anything else (a half-written
//! request, a half-read answer, a malformed, too large or too late answer, a full draining set)
//! closes it. New connections are paced ([`pacing`]: a token bucket and a cap on connects in
//! flight), so a call that finds no idle connection and no connect budget fails at once
//! ([`CallError::ConnectPaced`]) instead of paying for a connect (2.4 ms inside a worker with
//! 10,000 kube-proxy rules, measured by netlab). A slow or hanging DSP, or a slow connection
//! set-up, therefore costs a bounded number of connects per second, whatever the timeout rate.
//! An upstream whose host has several addresses spreads its new connections round robin across
//! them, skipping for a while an address whose connect failed ([`targets`]).
//!
//! Why only an unanswered connection is drained: on io_uring, dropping an in-flight read submits
//! an async cancel, and the buffer goes with the cancelled op. Bytes already read (a half-read
//! answer) are lost with it, so such a stream cannot be resynchronised. If the answer lands in
//! the instant between the drop and the cancel, the kernel completes the cancelled read and
//! those bytes are lost too: the drain then sees a body without its head (a protocol error) or
//! nothing at all (the drain deadline): either way it closes the connection, so a late answer
//! can never be handed to the next call.
//!
//! Measured (tests/client.rs, debug build, 2 shared cores, both drivers): a call or fan-out
//! against a hanging upstream returned 1.3 to 2.0 ms after its deadline (monoio's timer wheel
//! ticks in 1 ms); the tests allow 20 ms for a loaded CI machine.

pub(crate) mod drain;
pub(crate) mod pacing;
pub(crate) mod pool;
pub mod sizing;
pub(crate) mod targets;
pub(crate) mod warmup;
pub(crate) mod wire;

use std::{
    io,
    net::{SocketAddr, ToSocketAddrs},
    time::Duration,
};

use bytes::Bytes;
use http::{uri::PathAndQuery, HeaderMap, Method, StatusCode};

pub use pool::{Completed, Upstream, UpstreamStats, DRAIN_RESULTS};
pub use warmup::{spawn_prewarm, PREWARM_LANES_DEFAULT};

/// Idle keep-alive connections kept per upstream per worker. As many as the exchange's auctions
/// in flight per worker (512), so a worker keeps every connection its peak concurrency opened:
/// a smaller pool closes connections at each dip and reopens them at the next peak (measured
/// at 64: 117 to 163 connects per 1,000 auctions with 512 clients, see BENCHMARKS.md).
pub const IDLE_CONNECTIONS_MAX_DEFAULT: usize = 512;
/// Half-life of the recent peak of calls in flight that a pool keeps connections for: after
/// the traffic falls, a pool shrinks to half its peak's surplus in this time.
pub const POOL_PEAK_HALF_LIFE_DEFAULT: Duration = Duration::from_secs(10);
/// Concurrent calls per upstream per worker; more fail at once with `Overloaded`.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 1024;
/// Time allowed to open a connection, TLS handshake included (also bounded by the call's
/// deadline).
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_millis(200);
/// How long an upstream address whose connect failed (refused, unreachable, or not connected
/// within the connect timeout) is skipped while another address of the upstream is usable.
pub const ADDR_BACKOFF_DEFAULT: Duration = Duration::from_secs(5);
/// Largest response body accepted.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 256 * 1024;
/// How long a timed-out call's connection may wait for its late answer before it is closed.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_millis(250);
/// Largest late answer (head and body) a drain reads before giving the connection up.
pub const DRAIN_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Connections draining at once per upstream per worker; more are closed.
pub const DRAINING_MAX_DEFAULT: usize = 64;
/// Connects in flight at once per upstream per worker.
pub const CONNECTS_IN_FLIGHT_MAX_DEFAULT: usize = 64;
/// New connections per second per upstream per worker, sustained (token bucket refill).
pub const CONNECTS_PER_S_DEFAULT: u32 = 500;
/// New connections per upstream per worker allowed in a burst (token bucket size): enough to
/// grow from cold to the exchange's 512 auctions in flight per worker at once.
pub const CONNECTS_BURST_DEFAULT: u32 = 512;
/// Largest response head accepted.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Most response headers accepted.
pub const RESPONSE_HEADERS_COUNT_MAX: usize = 64;

/// Pool and call limits for one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Idle connections kept; extra ones are closed when released. Also the most the pool's
    /// size target ([`sizing`]) can reach.
    pub idle_connections_max: usize,
    /// The least the pool's size target can fall to (the exchange sets its pre-warm count).
    pub connections_min: usize,
    /// Half-life of the peak of calls in flight the pool's size target remembers ([`sizing`]).
    pub pool_peak_half_life: Duration,
    /// Concurrent calls.
    pub in_flight_max: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response body size limit, bytes.
    pub response_bytes_max: usize,
    /// Time a timed-out call's connection may wait for its late answer (0: never drain).
    pub drain_timeout: Duration,
    /// Largest late answer a drain reads, bytes.
    pub drain_bytes_max: usize,
    /// Connections draining at once (0: never drain).
    pub draining_max: usize,
    /// Connects in flight at once.
    pub connects_in_flight_max: usize,
    /// Token bucket refill: new connections per second.
    pub connects_per_s: u32,
    /// Token bucket size: new connections in a burst.
    pub connects_burst: u32,
    /// How long an address whose connect failed is skipped (another address being usable).
    pub addr_backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            idle_connections_max: IDLE_CONNECTIONS_MAX_DEFAULT,
            connections_min: 0,
            pool_peak_half_life: POOL_PEAK_HALF_LIFE_DEFAULT,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            response_bytes_max: RESPONSE_BYTES_MAX_DEFAULT,
            drain_timeout: DRAIN_TIMEOUT_DEFAULT,
            drain_bytes_max: DRAIN_BYTES_MAX_DEFAULT,
            draining_max: DRAINING_MAX_DEFAULT,
            connects_in_flight_max: CONNECTS_IN_FLIGHT_MAX_DEFAULT,
            connects_per_s: CONNECTS_PER_S_DEFAULT,
            connects_burst: CONNECTS_BURST_DEFAULT,
            addr_backoff: ADDR_BACKOFF_DEFAULT,
        }
    }
}

/// Why a call produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The deadline passed first.
    Timeout,
    /// The connection could not be opened.
    ConnectError,
    /// The response was not valid HTTP/1.1.
    ProtocolError,
    /// The response was larger than `response_bytes_max`.
    TooLarge,
    /// The upstream closed or reset the connection before a full response.
    Closed,
    /// `in_flight_max` calls were already running.
    Overloaded,
    /// No idle connection, and the upstream's connect budget ([`ClientConfig::connects_per_s`],
    /// [`ClientConfig::connects_in_flight_max`]) was spent: failed at once, nothing sent.
    ConnectPaced,
    /// The TLS handshake failed: the certificate was refused (unknown CA, wrong name,
    /// expired), or the peer does not speak TLS or closed during the handshake.
    Tls,
}

impl CallError {
    /// Short stable name for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::ProtocolError => "protocol_error",
            Self::TooLarge => "too_large",
            Self::Closed => "closed",
            Self::Overloaded => "overloaded",
            Self::ConnectPaced => "connect_paced",
            Self::Tls => "tls",
        }
    }
}

/// Header lines of an OpenRTB 2.6 JSON call, pre-encoded.
pub const OPENRTB_JSON_HEADERS: &[u8] = OPENRTB_2_6_JSON_HEADERS;
/// Header lines of an OpenRTB 2.5 JSON call (a request that came in as 2.5 goes out as 2.5).
pub const OPENRTB_2_5_JSON_HEADERS: &[u8] =
    b"content-type: application/json\r\nx-openrtb-version: 2.5\r\n";
/// Header lines of an OpenRTB 2.6 JSON call.
pub const OPENRTB_2_6_JSON_HEADERS: &[u8] =
    b"content-type: application/json\r\nx-openrtb-version: 2.6\r\n";
/// Header lines of an OpenRTB 2.5 JSON call whose body is gzip, to a DSP that may answer gzip.
pub const OPENRTB_2_5_JSON_GZIP_HEADERS: &[u8] = b"content-type: application/json\r\n\
    x-openrtb-version: 2.5\r\ncontent-encoding: gzip\r\naccept-encoding: gzip\r\n";
/// Header lines of an OpenRTB 2.6 JSON call whose body is gzip, to a DSP that may answer gzip.
pub const OPENRTB_2_6_JSON_GZIP_HEADERS: &[u8] = b"content-type: application/json\r\n\
    x-openrtb-version: 2.6\r\ncontent-encoding: gzip\r\naccept-encoding: gzip\r\n";
/// Header line of a call with an identity body to a DSP that may answer gzip (the request
/// was not worth compressing).
pub const OPENRTB_2_5_JSON_ACCEPT_GZIP_HEADERS: &[u8] = b"content-type: application/json\r\n\
    x-openrtb-version: 2.5\r\naccept-encoding: gzip\r\n";
/// As [`OPENRTB_2_5_JSON_ACCEPT_GZIP_HEADERS`], for 2.6.
pub const OPENRTB_2_6_JSON_ACCEPT_GZIP_HEADERS: &[u8] = b"content-type: application/json\r\n\
    x-openrtb-version: 2.6\r\naccept-encoding: gzip\r\n";

/// An outgoing request. Cheap to clone and allocation-free to build: the path, the
/// pre-encoded header lines and the body are all refcounted or static.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// Method, usually POST.
    pub method: Method,
    /// Path and query.
    pub path: PathAndQuery,
    /// Extra header lines, each ending in CRLF (see [`encode_headers`]). Host and
    /// Content-Length are added by the client and must not appear here.
    pub header_lines: Bytes,
    /// Body.
    pub body: Bytes,
}

impl ClientRequest {
    /// A JSON POST with `x-openrtb-version: 2.6`.
    pub fn openrtb_post(path: PathAndQuery, body: Bytes) -> Self {
        Self {
            method: Method::POST,
            path,
            header_lines: Bytes::from_static(OPENRTB_JSON_HEADERS),
            body,
        }
    }

    /// The request as borrowed pieces.
    pub fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            path: self.path.as_str(),
            header_lines: &self.header_lines,
            body: &self.body,
        }
    }
}

/// Encodes a header map once (e.g. per DSP at registration) into [`ClientRequest::header_lines`].
/// Host and Content-Length entries are skipped.
pub fn encode_headers(headers: &HeaderMap) -> Bytes {
    let mut out = Vec::new();
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Bytes::from(out)
}

/// A request as borrowed pieces: what goes on the wire, with nothing to allocate or
/// refcount. The client adds Host and Content-Length.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// Method, usually POST.
    pub method: &'a Method,
    /// Path and query.
    pub path: &'a str,
    /// Extra header lines, each ending in CRLF (see [`encode_headers`]).
    pub header_lines: &'a [u8],
    /// Body.
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    /// A JSON POST with `x-openrtb-version: 2.6`.
    pub fn openrtb_post(path: &'a str, body: &'a [u8]) -> Self {
        Self {
            method: &Method::POST,
            path,
            header_lines: OPENRTB_JSON_HEADERS,
            body,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// Status code.
    pub status: StatusCode,
    /// Body, de-chunked.
    pub body: Bytes,
    /// Whether the call ran on a pooled connection.
    pub reused_connection: bool,
}

/// Resolves `host:port` with the system resolver. Blocking: call it off the workers (at
/// registration, or from a refresh thread), then hand the address to [`Upstream::new`].
pub fn resolve_blocking(host_port: &str) -> io::Result<SocketAddr> {
    host_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for host"))
}
