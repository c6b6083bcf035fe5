//! Owns the types a handler sees: [`Request`], [`Response`], the [`Handler`] trait and the
//! per-worker [`WorkerCtx`], plus response serialisation.
//!
//! A request keeps its head as one refcounted `Bytes` (a slice of the connection's read buffer)
//! and header positions as offsets into it, so parsing allocates nothing per header.

use std::{
    future::Future,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use smallvec::SmallVec;

use crate::{driver::ActiveDriver, limits::WorkerStats, shutdown::ShutdownHandle};

/// Headers kept inline in a [`Request`] before spilling to the heap.
pub const REQUEST_HEADERS_INLINE: usize = 16;

/// Identity of a worker thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// 0-based worker index; also the index of its broadcast receiver.
    pub index: usize,
    /// The core it is pinned to, if pinning is on and succeeded.
    pub core: Option<usize>,
    /// The IO driver it runs.
    pub driver: ActiveDriver,
}

/// What a handler can reach on its worker.
#[derive(Debug)]
pub struct WorkerCtx {
    /// This worker.
    pub info: WorkerInfo,
    /// The server-wide shutdown signal.
    pub shutdown: ShutdownHandle,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
}

/// A parsed HTTP/1.x request with its whole body.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    head: Bytes,
    path: Range<usize>,
    headers: SmallVec<[(Range<usize>, Range<usize>); REQUEST_HEADERS_INLINE]>,
    /// Body after chunked and gzip decoding; a slice of the read buffer when neither applied.
    pub body: Bytes,
    /// When the request arrived: with kernel stamps (`ServerLimits::kernel_arrival`), the
    /// kernel's receive time of the last segment the request's first read took in (a later,
    /// so safer, time when that read also took in more); else when its first bytes were read.
    pub arrival: Instant,
    /// How long those bytes waited in the kernel (the socket's receive buffer) before the
    /// worker read them; zero without kernel stamps.
    pub kernel_wait: Duration,
    /// How long it waited in the worker's turn queue after it was read (`turn_budget`).
    pub queue_wait: Duration,
}

impl Request {
    pub(crate) fn from_parts(
        method: Method,
        version_minor: u8,
        head: Bytes,
        path: Range<usize>,
        headers: SmallVec<[(Range<usize>, Range<usize>); REQUEST_HEADERS_INLINE]>,
        body: Bytes,
        arrival: Instant,
    ) -> Self {
        Self {
            method,
            version_minor,
            head,
            path,
            headers,
            body,
            arrival,
            kernel_wait: Duration::ZERO,
            queue_wait: Duration::ZERO,
        }
    }

    /// Request target as sent (path and query). httparse guarantees it is valid UTF-8 token
    /// bytes, so this only returns "" if that changes.
    pub fn target(&self) -> &str {
        std::str::from_utf8(&self.head[self.path.clone()]).unwrap_or("")
    }

    /// Path without the query string.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// First value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// All headers in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter().map(|(n, v)| {
            (
                std::str::from_utf8(&self.head[n.clone()]).unwrap_or(""),
                &self.head[v.clone()],
            )
        })
    }
}

/// A response to write. Content-Length and Connection are added by the server.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Content-Type, kept out of `headers` so the common response allocates nothing.
    pub content_type: Option<&'static str>,
    /// Other headers. Empty maps do not allocate.
    pub headers: HeaderMap,
    /// Header lines known at compile time, pre-encoded (each `name: value\r\n`): written as
    /// they are, so a response that needs one allocates no `HeaderMap`.
    pub static_headers: &'static [u8],
    /// Body.
    pub body: Bytes,
    /// Close the connection without writing this response (see [`Response::abort`]).
    abort: bool,
}

impl Response {
    /// No response at all: the server closes the connection without writing anything, as a
    /// crashed or reset peer would. For fault injection (the DSP simulator).
    pub fn abort() -> Self {
        Self {
            abort: true,
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }

    /// Whether this is [`Response::abort`].
    pub fn is_abort(&self) -> bool {
        self.abort
    }

    /// An empty-bodied response.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            content_type: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            static_headers: b"",
            abort: false,
        }
    }

    /// A response with a body and its content type.
    pub fn with_body(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Bytes>,
    ) -> Self {
        Self {
            status,
            content_type: Some(content_type),
            headers: HeaderMap::new(),
            body: body.into(),
            static_headers: b"",
            abort: false,
        }
    }

    /// A JSON response.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::with_body(status, "application/json", body)
    }

    /// A JSON error body `{"error": ..., "field": ...}` (`field`: the request field at fault,
    /// or empty).
    pub fn json_error(status: StatusCode, error: &str, field: &str) -> Self {
        let body = serde_json::json!({ "error": error, "field": field }).to_string();
        Self::json(status, body)
    }

    /// 405 with a JSON error body and `allow: <allow>`, the methods the route takes.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut r = Self::json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", "");
        (r.headers).insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
        r
    }

    /// The same response with pre-encoded header lines (see [`Response::static_headers`]).
    pub fn with_static_headers(mut self, lines: &'static [u8]) -> Self {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
        self.static_headers = lines;
        self
    }
}

/// Serves requests on one worker. Built per worker by the server's factory, so it may hold
/// `Rc`, `RefCell` and pools; the returned future need not be `Send`.
///
/// Implementations may write `async fn handle(&self, req: Request, ctx: &WorkerCtx) -> Response`.
pub trait Handler: 'static {
    /// Answers a request that needs no IO at once (a route that does not exist, a health
    /// check, a request shed under overload), or returns `None` to have it
    /// [`handled`](Handler::handle). The server asks this first, for every request: an answer
    /// given here costs no future. `handle`'s future is as large as its largest route's state
    /// (an auction's fan-out: kilobytes), and building it is a copy of all of it into the
    /// connection's memory, which under overload is cold. The default answers nothing at once.
    fn answer_now(&self, req: &Request, ctx: &WorkerCtx) -> Option<Response> {
        let _ = (req, ctx);
        None
    }

    /// Answers one request. Requests on one connection are handled one at a time, in order.
    fn handle(&self, req: Request, ctx: &WorkerCtx) -> impl Future<Output = Response>;
}

/// Appends a serialised response head and body to `out`.
pub(crate) fn encode_response(out: &mut Vec<u8>, resp: &Response, head_only: bool, close: bool) {
    encode_response_with(out, resp, Coding::Identity, head_only, close);
}

/// How an answer's body goes on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Coding<'b> {
    /// As the handler gave it.
    Identity,
    /// As the handler gave it, with `vary: accept-encoding`: it would have been compressed for
    /// a client accepting gzip, so caches must key on that header.
    IdentityVaries,
    /// This gzip member instead, with `content-encoding: gzip` and `vary: accept-encoding`.
    Gzip(&'b [u8]),
}

/// Appends a serialised response head and body to `out`, the body coded as `coding` says.
pub(crate) fn encode_response_with(
    out: &mut Vec<u8>,
    resp: &Response,
    coding: Coding<'_>,
    head_only: bool,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        resp.status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    if let Some(content_type) = resp.content_type {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(resp.static_headers);
    for (name, value) in &resp.headers {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::CONNECTION
            || (resp.content_type.is_some() && name == http::header::CONTENT_TYPE)
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body: &[u8] = match coding {
        Coding::Identity => &resp.body,
        Coding::IdentityVaries => {
            out.extend_from_slice(b"vary: accept-encoding\r\n");
            &resp.body
        }
        Coding::Gzip(gzipped) => {
            out.extend_from_slice(b"content-encoding: gzip\r\nvary: accept-encoding\r\n");
            gzipped
        }
    };
    let status = resp.status.as_u16();
    let bodyless = status < 200 || status == 204 || status == 304;
    if !bodyless {
        out.extend_from_slice(b"content-length: ");
        let mut digits = [0u8; 20];
        out.extend_from_slice(format_usize(body.len(), &mut digits));
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodyless && !head_only {
        out.extend_from_slice(body);
    }
}

/// Decimal digits of `n` without allocating.
pub(crate) fn format_usize(mut n: usize, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_response() {
        let mut out = Vec::new();
        encode_response(&mut out, &Response::json(StatusCode::OK, "{}"), false, true);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
        );
        out.clear();
        encode_response(
            &mut out,
            &Response::new(StatusCode::NO_CONTENT),
            false,
            false,
        );
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
        out.clear();
        let resp = Response::json(StatusCode::OK, "{\"a\":1}");
        encode_response_with(&mut out, &resp, Coding::Gzip(b"GZ"), false, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\nvary: accept-encoding\r\ncontent-length: 2\r\n\r\nGZ"
        );
        out.clear();
        encode_response_with(&mut out, &resp, Coding::IdentityVaries, false, false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nvary: accept-encoding\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn formats_numbers() {
        let mut d = [0u8; 20];
        assert_eq!(format_usize(0, &mut d), b"0");
        assert_eq!(format_usize(65536, &mut d), b"65536");
        assert_eq!(
            format_usize(usize::MAX, &mut d),
            usize::MAX.to_string().as_bytes()
        );
    }
}
