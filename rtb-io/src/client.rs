//! Owns outgoing HTTP/1.1 calls to DSPs: a per-worker, per-upstream keep-alive pool, a
//! deadline-bounded request/response exchange, and the fan-out that gathers K calls by a
//! deadline.
//!
//! A call that misses its deadline is dropped whole: its connection is closed (monoio submits
//! an async cancel for the in-flight op and keeps the buffer until the kernel lets go), so a
//! connection that may still receive a late answer is never returned to the pool. Connects are
//! done as a non-blocking `connect(2)` plus a readiness wait, so a timed-out connect never
//! cancels a connect op (monoio 0.2.4 leaks the fd then, issue #318).
//!
//! Measured (tests/client.rs, debug build, 2 shared cores, both drivers): a call or fan-out
//! against a hanging upstream returned 1.3 to 2.0 ms after its deadline (monoio's timer wheel
//! ticks in 1 ms); the tests allow 20 ms for a loaded CI machine.

use std::{
    cell::{Cell, RefCell},
    io,
    net::{SocketAddr, ToSocketAddrs},
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::{uri::PathAndQuery, HeaderMap, Method, StatusCode};
use monoio::{
    buf::SliceMut,
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
    time::{timeout_at, Instant as MonoInstant},
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    body::{BodyError, ChunkedDecoder},
    http::format_usize,
};

/// Idle keep-alive connections kept per upstream per worker.
pub const IDLE_CONNECTIONS_MAX_DEFAULT: usize = 64;
/// Concurrent calls per upstream per worker; more fail at once with `Overloaded`.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 1024;
/// Time allowed to open a connection (also bounded by the call's deadline).
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_millis(200);
/// Largest response body accepted.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 256 * 1024;
/// Largest response head accepted.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Most response headers accepted.
pub const RESPONSE_HEADERS_COUNT_MAX: usize = 64;
/// Initial per-connection read buffer.
const CLIENT_READ_BUF_BYTES: usize = 8 * 1024;
/// Least free space offered to a read.
const CLIENT_READ_SPARE_BYTES_MIN: usize = 2 * 1024;

/// Pool and call limits for one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Idle connections kept; extra ones are closed when released.
    pub idle_connections_max: usize,
    /// Concurrent calls.
    pub in_flight_max: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response body size limit, bytes.
    pub response_bytes_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            idle_connections_max: IDLE_CONNECTIONS_MAX_DEFAULT,
            in_flight_max: IN_FLIGHT_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            response_bytes_max: RESPONSE_BYTES_MAX_DEFAULT,
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
        }
    }
}

/// Header lines of an OpenRTB 2.6 JSON call, pre-encoded.
pub const OPENRTB_JSON_HEADERS: &[u8] =
    b"content-type: application/json\r\nx-openrtb-version: 2.6\r\n";

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

/// Counters of one upstream on one worker (single-threaded, plain cells).
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Connections opened.
    pub connects: Cell<u64>,
    /// Calls served on a pooled connection.
    pub reuses: Cell<u64>,
    /// Calls that ended with each error.
    pub timeouts: Cell<u64>,
    /// Calls that failed otherwise.
    pub failures: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

#[derive(Debug)]
struct PooledConn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

/// One upstream (host:port) as seen by one worker: its pool and counters. `!Send`: build one
/// per worker, e.g. in the handler factory.
#[derive(Debug)]
pub struct Upstream {
    addr: Cell<SocketAddr>,
    host: Bytes,
    config: ClientConfig,
    idle: RefCell<Vec<PooledConn>>,
    in_flight: Cell<usize>,
    /// Counters.
    pub stats: UpstreamStats,
}

/// Resolves `host:port` with the system resolver. Blocking: call it off the workers (at
/// registration, or from a refresh thread), then hand the address to [`Upstream::new`].
pub fn resolve_blocking(host_port: &str) -> io::Result<SocketAddr> {
    host_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for host"))
}

struct InFlightGuard<'a>(&'a Cell<usize>);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What one exchange produced, and whether the connection may be reused.
struct Exchange {
    response: ClientResponse,
    reusable: bool,
}

impl Upstream {
    /// A pool for `addr`, sending `host` as the Host header.
    pub fn new(addr: SocketAddr, host: &str, config: ClientConfig) -> Rc<Self> {
        Rc::new(Self {
            addr: Cell::new(addr),
            host: Bytes::copy_from_slice(host.as_bytes()),
            config,
            idle: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            stats: UpstreamStats::default(),
        })
    }

    /// The upstream address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    /// Points the pool at a newly resolved address (from a periodic off-worker resolve).
    /// Idle connections to the old address are closed; in-flight calls finish on theirs.
    pub fn set_addr(&self, addr: SocketAddr) {
        if self.addr.replace(addr) != addr {
            self.clear_idle();
        }
    }

    /// Idle pooled connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Opens connections until `n` are idle (capped at `idle_connections_max`). Returns how
    /// many are idle afterwards.
    pub async fn prewarm(&self, n: usize) -> usize {
        let target = n.min(self.config.idle_connections_max);
        while self.idle_count() < target {
            let deadline = MonoInstant::now() + self.config.connect_timeout;
            match self.connect(deadline).await {
                Ok(conn) => self.idle.borrow_mut().push(conn),
                Err(_) => break,
            }
        }
        self.idle_count()
    }

    /// Closes every idle connection (e.g. when the upstream is removed or re-resolved).
    pub fn clear_idle(&self) {
        self.idle.borrow_mut().clear();
    }

    async fn connect(&self, deadline: MonoInstant) -> Result<PooledConn, CallError> {
        let addr = self.addr.get();
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|_| CallError::ConnectError)?;
        socket
            .set_nonblocking(true)
            .map_err(|_| CallError::ConnectError)?;
        socket
            .set_tcp_nodelay(true)
            .map_err(|_| CallError::ConnectError)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return Err(CallError::ConnectError),
        }
        let std_stream: std::net::TcpStream = socket.into();
        let stream = TcpStream::from_std(std_stream).map_err(|_| CallError::ConnectError)?;
        let connect_deadline = deadline.min(MonoInstant::now() + self.config.connect_timeout);
        match timeout_at(connect_deadline, stream.writable(false)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(CallError::ConnectError),
            Err(_elapsed) => {
                return Err(if connect_deadline < deadline {
                    CallError::ConnectError
                } else {
                    CallError::Timeout
                })
            }
        }
        // Writable with no peer means the connect failed (refused, unreachable).
        stream.peer_addr().map_err(|_| CallError::ConnectError)?;
        bump(&self.stats.connects);
        Ok(PooledConn {
            stream,
            rbuf: BytesMut::with_capacity(CLIENT_READ_BUF_BYTES),
            wbuf: Vec::with_capacity(CLIENT_READ_BUF_BYTES),
        })
    }

    /// Sends `req` and reads the response, returning by `deadline` (plus timer granularity,
    /// [`crate::driver::TIMER_GRANULARITY`]) whatever the upstream does.
    pub async fn call(
        &self,
        req: &ClientRequest,
        deadline: Instant,
    ) -> Result<ClientResponse, CallError> {
        if self.in_flight.get() >= self.config.in_flight_max {
            bump(&self.stats.failures);
            return Err(CallError::Overloaded);
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let _guard = InFlightGuard(&self.in_flight);
        let deadline = MonoInstant::from_std(deadline);
        let result = match timeout_at(deadline, self.call_inner(req, deadline)).await {
            Ok(r) => r,
            Err(_elapsed) => Err(CallError::Timeout),
        };
        match result {
            Ok(_) => {}
            Err(CallError::Timeout) => bump(&self.stats.timeouts),
            Err(_) => bump(&self.stats.failures),
        }
        result
    }

    async fn call_inner(
        &self,
        req: &ClientRequest,
        deadline: MonoInstant,
    ) -> Result<ClientResponse, CallError> {
        let pooled = self.idle.borrow_mut().pop();
        if let Some(mut conn) = pooled {
            bump(&self.stats.reuses);
            match exchange(&mut conn, req, &self.host, &self.config, true).await {
                Ok(done) => return Ok(self.release(conn, done)),
                // The upstream closed an idle pooled connection before reading the request:
                // safe to retry once on a fresh one.
                Err(ExchangeError::StaleConnection) => {}
                Err(ExchangeError::Failed(e)) => return Err(e),
            }
        }
        let mut conn = self.connect(deadline).await?;
        match exchange(&mut conn, req, &self.host, &self.config, false).await {
            Ok(done) => Ok(self.release(conn, done)),
            Err(ExchangeError::StaleConnection) => Err(CallError::Closed),
            Err(ExchangeError::Failed(e)) => Err(e),
        }
    }

    fn release(&self, conn: PooledConn, done: Exchange) -> ClientResponse {
        if done.reusable {
            let mut idle = self.idle.borrow_mut();
            if idle.len() < self.config.idle_connections_max {
                idle.push(conn);
            }
        }
        done.response
    }
}

enum ExchangeError {
    StaleConnection,
    Failed(CallError),
}

impl From<CallError> for ExchangeError {
    fn from(e: CallError) -> Self {
        Self::Failed(e)
    }
}

async fn read_more(conn: &mut PooledConn) -> io::Result<usize> {
    if conn.rbuf.capacity() - conn.rbuf.len() < CLIENT_READ_SPARE_BYTES_MIN {
        conn.rbuf.reserve(CLIENT_READ_BUF_BYTES);
    }
    let owned = std::mem::take(&mut conn.rbuf);
    let begin = owned.len();
    let end = owned.capacity();
    let (res, slice) = conn.stream.read(SliceMut::new(owned, begin, end)).await;
    conn.rbuf = slice.into_inner();
    res
}

fn encode_request(out: &mut Vec<u8>, req: &ClientRequest, host: &[u8]) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\ncontent-length: ");
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_usize(req.body.len(), &mut digits));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.header_lines);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&req.body);
}

#[derive(Debug, Clone, Copy)]
enum RespFraming {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

struct RespHead {
    len: usize,
    status: StatusCode,
    framing: RespFraming,
    close: bool,
}

fn parse_response_head(buf: &[u8], limit: usize) -> Result<Option<RespHead>, CallError> {
    let mut storage = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_COUNT_MAX];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < RESPONSE_HEAD_BYTES_MAX => return Ok(None),
        Ok(httparse::Status::Partial) | Err(_) => return Err(CallError::ProtocolError),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| CallError::ProtocolError)?;
    let mut close = resp.version == Some(0);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(CallError::ProtocolError)?;
            if length.is_some_and(|prev| prev != n) {
                return Err(CallError::ProtocolError);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                return Err(CallError::ProtocolError);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let framing = if code < 200 || code == 204 || code == 304 {
        RespFraming::Empty
    } else if chunked {
        if length.is_some() {
            return Err(CallError::ProtocolError);
        }
        RespFraming::Chunked
    } else if let Some(n) = length {
        if n > limit {
            return Err(CallError::TooLarge);
        }
        RespFraming::Length(n)
    } else {
        RespFraming::UntilClose
    };
    Ok(Some(RespHead {
        len,
        status,
        framing,
        close,
    }))
}

fn io_to_call(e: &io::Error) -> CallError {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => CallError::Closed,
        _ => CallError::ProtocolError,
    }
}

async fn exchange(
    conn: &mut PooledConn,
    req: &ClientRequest,
    host: &[u8],
    config: &ClientConfig,
    reused: bool,
) -> Result<Exchange, ExchangeError> {
    conn.rbuf.clear();
    let mut wbuf = std::mem::take(&mut conn.wbuf);
    encode_request(&mut wbuf, req, host);
    let (res, wbuf) = conn.stream.write_all(wbuf).await;
    conn.wbuf = wbuf;
    let stale = |e: CallError| {
        if reused && e == CallError::Closed {
            ExchangeError::StaleConnection
        } else {
            ExchangeError::Failed(e)
        }
    };
    if let Err(e) = res {
        return Err(stale(io_to_call(&e)));
    }
    let head = loop {
        if let Some(head) = parse_response_head(&conn.rbuf, config.response_bytes_max)? {
            if head.status.is_informational() {
                // `100 Continue` and friends precede the real response.
                let _ = conn.rbuf.split_to(head.len);
                continue;
            }
            break head;
        }
        let nothing_yet = conn.rbuf.is_empty();
        match read_more(conn).await {
            Ok(0) if nothing_yet => return Err(stale(CallError::Closed)),
            Ok(0) => return Err(CallError::Closed.into()),
            Ok(_) => {}
            Err(e) if nothing_yet => return Err(stale(io_to_call(&e))),
            Err(e) => return Err(io_to_call(&e).into()),
        }
    };
    let _ = conn.rbuf.split_to(head.len);
    let limit = config.response_bytes_max;
    let (body, complete_framing) = match head.framing {
        RespFraming::Empty => (Bytes::new(), true),
        RespFraming::Length(n) => {
            while conn.rbuf.len() < n {
                conn.rbuf.reserve(n - conn.rbuf.len());
                match read_more(conn).await {
                    Ok(0) => return Err(CallError::Closed.into()),
                    Ok(_) => {}
                    Err(e) => return Err(io_to_call(&e).into()),
                }
            }
            (conn.rbuf.split_to(n).freeze(), true)
        }
        RespFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(limit);
            let mut out = BytesMut::new();
            loop {
                match decoder.decode(&mut conn.rbuf, &mut out) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(BodyError::TooLarge) => return Err(CallError::TooLarge.into()),
                    Err(BodyError::Malformed(_)) => return Err(CallError::ProtocolError.into()),
                }
                match read_more(conn).await {
                    Ok(0) => return Err(CallError::Closed.into()),
                    Ok(_) => {}
                    Err(e) => return Err(io_to_call(&e).into()),
                }
            }
            (out.freeze(), true)
        }
        RespFraming::UntilClose => loop {
            if conn.rbuf.len() > limit {
                return Err(CallError::TooLarge.into());
            }
            match read_more(conn).await {
                Ok(0) => break (conn.rbuf.split().freeze(), false),
                Ok(_) => {}
                Err(e) => return Err(io_to_call(&e).into()),
            }
        },
    };
    // Leftover bytes would be a desynchronised stream; such a connection is not reused.
    let reusable = complete_framing && !head.close && conn.rbuf.is_empty();
    Ok(Exchange {
        response: ClientResponse {
            status: head.status,
            body,
            reused_connection: reused,
        },
        reusable,
    })
}

/// Calls every `(upstream, request)` pair concurrently and gathers the results in input order,
/// returning by `deadline` (plus timer granularity) even if some upstream hangs. Each call runs
/// as its own task on the current worker.
pub async fn fan_out(
    calls: impl IntoIterator<Item = (Rc<Upstream>, ClientRequest)>,
    deadline: Instant,
) -> Vec<Result<ClientResponse, CallError>> {
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(upstream, req)| monoio::spawn(async move { upstream.call(&req, deadline).await }))
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        // Every task is bounded by the deadline, so awaiting them in order ends by it too.
        results.push(handle.await);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_request() {
        let mut out = Vec::new();
        let req = ClientRequest::openrtb_post(
            PathAndQuery::from_static("/bid"),
            Bytes::from_static(b"{}"),
        );
        encode_request(&mut out, &req, b"dsp:80");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /bid HTTP/1.1\r\nhost: dsp:80\r\ncontent-length: 2\r\n"));
        assert!(text.contains("x-openrtb-version: 2.6\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn response_framing() {
        let h = parse_response_head(b"HTTP/1.1 204 No Content\r\n\r\n", 10)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, RespFraming::Empty));
        let h = parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", 10)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, RespFraming::Length(5)));
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n", 10).err(),
            Some(CallError::TooLarge)
        );
        assert_eq!(
            parse_response_head(b"garbage\r\n\r\n", 10).err(),
            Some(CallError::ProtocolError)
        );
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\n", 10)
            .unwrap()
            .is_none());
    }
}
