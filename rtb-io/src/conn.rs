//! Owns one server connection: reading heads and bodies into a reused buffer, enforcing
//! [`ServerLimits`], calling the handler, writing responses in order, and closing.
//!
//! Requests on a connection are processed one at a time; pipelined requests wait in the read
//! buffer, so answers come out in order without a queue.

use std::{cell::Cell, io, panic::AssertUnwindSafe, rc::Rc, sync::Arc, time::Instant};

use futures_util::FutureExt as _;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use monoio::{
    buf::SliceMut,
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent},
    net::TcpStream,
    time::{timeout_at, Instant as MonoInstant},
};

use crate::{
    body::{gunzip_limited, BodyError, ChunkedDecoder},
    head::{parse_request_head, Framing, Reject},
    http::{encode_response, Handler, Request, Response, WorkerCtx},
    limits::{ServerLimits, WorkerStats},
};

/// Initial read buffer per connection; grows to the head and body limits when needed.
pub const READ_BUF_BYTES_INITIAL: usize = 4 * 1024;
/// Least free space offered to a read.
const READ_SPARE_BYTES_MIN: usize = 1024;
/// Write buffer reserved at a connection's first response.
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
    // Allocated at the first response, not at accept: an idle connection (slowloris, or one of
    // thousands a client opens and never uses) costs only its read buffer.
    let mut wbuf = Vec::new();
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
        match parse_request_head(rbuf, limits) {
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
    // A bug in one handler call must not take the worker (its listener, every connection on
    // it) down: answer 500, close this connection, keep serving. Free unless a panic happens.
    let (resp, panicked) = match AssertUnwindSafe(handler.handle(req, ctx))
        .catch_unwind()
        .await
    {
        Ok(resp) => (resp, false),
        Err(_) => {
            shared.stats.handler_panics.incr();
            tracing::error!("request handler panicked; answered 500 and closed the connection");
            let body = Bytes::from_static(br#"{"error":"internal error"}"#);
            (
                Response::json(StatusCode::INTERNAL_SERVER_ERROR, body),
                true,
            )
        }
    };
    if resp.is_abort() {
        return Ok(Next::Close);
    }
    // While draining, requests a client already pipelined behind this one were accepted too:
    // answer them before closing, and say `connection: close` on the last one.
    let close = head.close || panicked || (shared.draining.get() && rbuf.is_empty());
    wbuf.clear();
    wbuf.reserve(WRITE_BUF_BYTES_INITIAL);
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
