//! Owns one server connection: reading heads and bodies into a reused buffer, enforcing
//! [`ServerLimits`], calling the handler, writing responses in order, and closing.
//!
//! Requests on a connection are processed one at a time; pipelined requests wait in the read
//! buffer, so answers come out in order without a queue.

use std::{cell::Cell, io, ops::Range, rc::Rc, sync::Arc, time::Instant};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use monoio::{
    buf::SliceMut,
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent},
    net::TcpStream,
    time::{timeout_at, Instant as MonoInstant},
};
use smallvec::SmallVec;

use crate::{
    body::{gunzip_limited, BodyError, ChunkedDecoder},
    http::{encode_response, Handler, Request, Response, WorkerCtx, REQUEST_HEADERS_INLINE},
    limits::{ServerLimits, WorkerStats, HEADERS_COUNT_CAP},
};

/// Initial read buffer per connection; grows to the head and body limits when needed.
pub const READ_BUF_BYTES_INITIAL: usize = 4 * 1024;
/// Least free space offered to a read.
const READ_SPARE_BYTES_MIN: usize = 1024;
/// Initial write buffer per connection.
pub const WRITE_BUF_BYTES_INITIAL: usize = 4 * 1024;
/// After an error response, how long unread request bytes are drained so the close does not
/// turn into a reset that destroys the response before the client reads it.
pub const LINGERING_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// Most bytes drained during a lingering close.
pub const LINGERING_CLOSE_BYTES_MAX: usize = 256 * 1024;

/// Per-worker state shared by all its connections.
pub(crate) struct ConnShared {
    pub limits: ServerLimits,
    pub stats: Arc<WorkerStats>,
    /// Set at shutdown: finish the current request, then close.
    pub draining: Cell<bool>,
    /// Cancels idle keep-alive reads (and the accept) at shutdown.
    pub idle_cancel: CancelHandle,
}

impl std::fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnShared")
            .field("limits", &self.limits)
            .field("draining", &self.draining.get())
            .finish_non_exhaustive()
    }
}

/// Why a request was refused; maps to a status and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    BadRequest(&'static str),
    Timeout,
    LengthRequired,
    BodyTooLarge,
    HeadTooLarge,
    BadVersion,
}

impl Reject {
    fn status(self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::BadRequest(why) => why,
            Self::Timeout => "request not received in time",
            Self::LengthRequired => "content-length required",
            Self::BodyTooLarge => "body too large",
            Self::HeadTooLarge => "request head too large",
            Self::BadVersion => "http version not supported",
        }
    }

    fn count(self, stats: &WorkerStats) {
        match self {
            Self::BadRequest(_) => stats.rejected_bad_request.incr(),
            Self::Timeout => stats.rejected_timeout.incr(),
            Self::LengthRequired => stats.rejected_length_required.incr(),
            Self::BodyTooLarge => stats.rejected_body_too_large.incr(),
            Self::HeadTooLarge => stats.rejected_head_too_large.incr(),
            Self::BadVersion => stats.rejected_bad_version.incr(),
        }
    }
}

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// A parsed head as offsets into the read buffer, so the buffer can be mutated afterwards.
#[derive(Debug)]
struct Head {
    len: usize,
    method: Method,
    version_minor: u8,
    path: Range<usize>,
    headers: SmallVec<[(Range<usize>, Range<usize>); REQUEST_HEADERS_INLINE]>,
    framing: Framing,
    close: bool,
    expect_continue: bool,
    gzip: bool,
}

fn offset_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// Parses a complete head from `buf`, `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8], limits: &ServerLimits) -> Result<Option<Head>, Reject> {
    let mut storage = [httparse::EMPTY_HEADER; HEADERS_COUNT_CAP];
    let count_max = limits.headers_count_max.clamp(1, HEADERS_COUNT_CAP);
    let mut req = httparse::Request::new(&mut storage[..count_max]);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.head_bytes_max {
                return Err(Reject::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(Reject::BadVersion),
        Err(_) => return Err(Reject::BadRequest("malformed request head")),
    };
    if len > limits.head_bytes_max {
        return Err(Reject::HeadTooLarge);
    }
    let version_minor = req.version.unwrap_or(1);
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| Reject::BadRequest("bad method"))?;
    let path = offset_in(buf, req.path.unwrap_or("").as_bytes());

    let mut headers = SmallVec::new();
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = version_minor == 0;
    let mut expect_continue = false;
    let mut gzip = false;
    for h in req.headers.iter() {
        headers.push((offset_in(buf, h.name.as_bytes()), offset_in(buf, h.value)));
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value.trim_ascii())
                .ok_or(Reject::BadRequest("bad content-length"))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Reject::BadRequest("conflicting content-length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a lone `chunked` is accepted: anything else is a smuggling vector.
            if transfer_encoding || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Reject::BadRequest("unsupported transfer-encoding"));
            }
            transfer_encoding = true;
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, "close") {
                close = true;
            } else if has_token(h.value, "keep-alive") {
                close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = version_minor == 1;
            } else {
                return Err(Reject::BadRequest("unsupported expectation"));
            }
        } else if name.eq_ignore_ascii_case("content-encoding") {
            gzip = h.value.trim_ascii().eq_ignore_ascii_case(b"gzip");
        }
    }
    let framing = match (content_length, chunked) {
        (Some(_), true) => return Err(Reject::BadRequest("content-length with transfer-encoding")),
        (None, true) if version_minor == 0 => {
            return Err(Reject::BadRequest("transfer-encoding in HTTP/1.0"))
        }
        (None, true) => Framing::Chunked,
        (Some(0), false) => Framing::Empty,
        (Some(n), false) => {
            if n > limits.body_bytes_max {
                return Err(Reject::BodyTooLarge);
            }
            Framing::Length(n)
        }
        (None, false) => {
            if method == Method::POST || method == Method::PUT || method == Method::PATCH {
                return Err(Reject::LengthRequired);
            }
            Framing::Empty
        }
    };
    Ok(Some(Head {
        len,
        method,
        version_minor,
        path,
        headers,
        framing,
        close,
        expect_continue,
        gzip,
    }))
}

/// Reads more bytes onto the end of `buf`, offering at least `spare` free bytes.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut, spare: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < spare {
        buf.reserve(spare);
    }
    let owned = std::mem::take(buf);
    let end = owned.capacity();
    let begin = owned.len();
    let (res, slice) = stream.read(SliceMut::new(owned, begin, end)).await;
    *buf = slice.into_inner();
    res
}

/// Like [`read_more`] but cancelable at shutdown; used only while idle between requests.
async fn read_idle(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cancel: CancelHandle,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_SPARE_BYTES_MIN {
        buf.reserve(READ_BUF_BYTES_INITIAL);
    }
    let owned = std::mem::take(buf);
    let end = owned.capacity();
    let begin = owned.len();
    let (res, slice) = stream
        .cancelable_read(SliceMut::new(owned, begin, end), cancel)
        .await;
    *buf = slice.into_inner();
    res
}

enum Next {
    Continue,
    Close,
}

/// Serves one accepted connection until it closes.
pub(crate) async fn serve_conn<H: Handler>(
    mut stream: TcpStream,
    handler: Rc<H>,
    ctx: Rc<WorkerCtx>,
    shared: Rc<ConnShared>,
) {
    let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES_INITIAL);
    let mut wbuf = Vec::with_capacity(WRITE_BUF_BYTES_INITIAL);
    let mut first = true;
    loop {
        match serve_one(
            &mut stream,
            &mut rbuf,
            &mut wbuf,
            &*handler,
            &ctx,
            &shared,
            first,
        )
        .await
        {
            Ok(Next::Continue) => first = false,
            Ok(Next::Close) => return,
            Err(error) => {
                tracing::debug!(%error, "connection error");
                shared.stats.io_errors.incr();
                return;
            }
        }
    }
}

async fn serve_one<H: Handler>(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    handler: &H,
    ctx: &WorkerCtx,
    shared: &ConnShared,
    first: bool,
) -> io::Result<Next> {
    let limits = &shared.limits;
    if rbuf.is_empty() {
        if shared.draining.get() && !first {
            shared.stats.connections_idle_closed.incr();
            return Ok(Next::Close);
        }
        let idle_deadline = MonoInstant::now() + limits.idle_keepalive_timeout;
        // A new connection's first request is not cancelled at shutdown: it was accepted, so it
        // is served. Idle keep-alive waits are.
        let read = if first {
            timeout_at(idle_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await
        } else {
            let cancel = shared.idle_cancel.clone();
            timeout_at(idle_deadline, read_idle(stream, rbuf, cancel)).await
        };
        match read {
            Err(_elapsed) => {
                shared.stats.connections_idle_closed.incr();
                return Ok(Next::Close);
            }
            Ok(Ok(0)) => return Ok(Next::Close),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ECANCELED) => {
                shared.stats.connections_idle_closed.incr();
                return Ok(Next::Close);
            }
            Ok(Err(e)) => return Err(e),
        }
    }
    let arrival = Instant::now();
    let head_deadline = MonoInstant::now() + limits.header_read_timeout;
    let head = loop {
        match parse_head(rbuf, limits) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(reject) => return reject_and_close(stream, rbuf, wbuf, shared, reject).await,
        }
        match timeout_at(head_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await {
            Err(_elapsed) => {
                return reject_and_close(stream, rbuf, wbuf, shared, Reject::Timeout).await
            }
            Ok(Ok(0)) => return Ok(Next::Close),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    };

    let head_bytes = rbuf.split_to(head.len).freeze();
    let body_deadline = MonoInstant::now() + limits.body_read_timeout;
    if head.expect_continue && head.framing != Framing::Empty && rbuf.is_empty() {
        wbuf.clear();
        wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let (res, buf) = stream.write_all(std::mem::take(wbuf)).await;
        *wbuf = buf;
        res?;
    }
    let body = match head.framing {
        Framing::Empty => Bytes::new(),
        Framing::Length(n) => {
            while rbuf.len() < n {
                let want = n - rbuf.len();
                match timeout_at(body_deadline, read_more(stream, rbuf, want)).await {
                    Err(_elapsed) => {
                        return reject_and_close(stream, rbuf, wbuf, shared, Reject::Timeout).await
                    }
                    Ok(Ok(0)) => return Ok(Next::Close),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
            rbuf.split_to(n).freeze()
        }
        Framing::Chunked => {
            let mut decoder = ChunkedDecoder::new(limits.body_bytes_max);
            let mut out = BytesMut::new();
            loop {
                match decoder.decode(rbuf, &mut out) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        return reject_and_close(stream, rbuf, wbuf, shared, body_reject(e)).await
                    }
                }
                match timeout_at(body_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await
                {
                    Err(_elapsed) => {
                        return reject_and_close(stream, rbuf, wbuf, shared, Reject::Timeout).await
                    }
                    Ok(Ok(0)) => return Ok(Next::Close),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
            out.freeze()
        }
    };
    let body = if head.gzip && !body.is_empty() {
        match gunzip_limited(&body, limits.decompressed_bytes_max) {
            Ok(plain) => Bytes::from(plain),
            Err(e) => return reject_and_close(stream, rbuf, wbuf, shared, body_reject(e)).await,
        }
    } else {
        body
    };

    let is_head = head.method == Method::HEAD;
    let req = Request::from_parts(
        head.method,
        head.version_minor,
        head_bytes,
        head.path,
        head.headers,
        body,
        arrival,
    );
    shared.stats.requests_handled.incr();
    let resp = handler.handle(req, ctx).await;
    if resp.is_abort() {
        return Ok(Next::Close);
    }
    let close = head.close || shared.draining.get();
    wbuf.clear();
    encode_response(wbuf, &resp, is_head, close);
    write_response(stream, wbuf, limits).await?;
    Ok(if close { Next::Close } else { Next::Continue })
}

fn body_reject(e: BodyError) -> Reject {
    match e {
        BodyError::TooLarge => Reject::BodyTooLarge,
        BodyError::Malformed(why) => Reject::BadRequest(why),
    }
}

async fn write_response(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    limits: &ServerLimits,
) -> io::Result<()> {
    let deadline = MonoInstant::now() + limits.response_write_timeout;
    match timeout_at(deadline, stream.write_all(std::mem::take(wbuf))).await {
        Ok((res, buf)) => {
            *wbuf = buf;
            res.map(|_| ())
        }
        Err(_elapsed) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Writes the error response for `reject`, then closes gracefully.
async fn reject_and_close(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    reject: Reject,
) -> io::Result<Next> {
    reject.count(&shared.stats);
    tracing::debug!(
        status = reject.status().as_u16(),
        reason = reject.message(),
        "request rejected"
    );
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"error\":\"");
    body.extend_from_slice(reject.message().as_bytes());
    body.extend_from_slice(b"\"}");
    wbuf.clear();
    encode_response(wbuf, &Response::json(reject.status(), body), false, true);
    write_response(stream, wbuf, &shared.limits).await?;
    lingering_close(stream, rbuf).await;
    Ok(Next::Close)
}

/// Half-closes, then discards what the client is still sending for a bounded time, so the
/// kernel does not answer unread data with a reset that would drop our response.
async fn lingering_close(stream: &mut TcpStream, rbuf: &mut BytesMut) {
    let _ = stream.shutdown().await;
    let deadline = MonoInstant::now() + LINGERING_CLOSE_TIMEOUT;
    let mut drained = 0;
    while drained < LINGERING_CLOSE_BYTES_MAX {
        rbuf.clear();
        match timeout_at(deadline, read_more(stream, rbuf, READ_BUF_BYTES_INITIAL)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<Head>, Reject> {
        parse_head(raw, &ServerLimits::default())
    }

    #[test]
    fn framing_rules() {
        let h = parse(b"POST /a?b HTTP/1.1\r\ncontent-length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.close);
        let h = parse(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap_err()
                .status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n")
                .unwrap_err(),
            Reject::BadRequest("conflicting content-length")
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\n\r\n").unwrap_err(),
            Reject::LengthRequired
        );
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            Reject::BadVersion
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\ncontent-length: 999999999\r\n\r\n").unwrap_err(),
            Reject::BodyTooLarge
        );
        assert!(parse(b"GET / HTTP/1.1\r\nhost: x").unwrap().is_none());
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.close);
    }

    #[test]
    fn lengths() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"123"), Some(123));
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"99999999999999999999999"), None);
    }
}
