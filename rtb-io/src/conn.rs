//! Owns one server connection: reading heads and bodies into a reused buffer, enforcing
//! [`ServerLimits`], calling the handler, writing responses in order, and closing.
//!
//! Requests on a connection are processed one at a time; pipelined requests wait in the read
//! buffer, so answers come out in order without a queue.

use std::{
    cell::{Cell, RefCell},
    io,
    panic::AssertUnwindSafe,
    rc::Rc,
    sync::Arc,
    time::Instant,
};

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
    gzip::{self, GzipEncoder},
    head::{parse_request_head, Framing, ParsedHead, Reject},
    http::{encode_response, encode_response_with, Coding, Handler, Request, Response, WorkerCtx},
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
    /// The worker's gzip encoder for answers, made at the first compressed one.
    pub gzip: RefCell<Option<GzipEncoder>>,
}

impl ConnShared {
    pub(crate) fn new(
        limits: ServerLimits,
        stats: Arc<WorkerStats>,
        idle_cancel: CancelHandle,
    ) -> Self {
        Self {
            limits,
            stats,
            draining: Cell::new(false),
            idle_cancel,
            gzip: RefCell::new(None),
        }
    }
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

/// What a step of reading a request produced: the part read, or how the connection goes on
/// (it was answered already, or the peer went away).
enum Step<T> {
    Got(T),
    Done(Next),
}

/// Turns a step's `Done` into an early return of `serve_one`.
macro_rules! got {
    ($step:expr) => {
        match $step? {
            Step::Got(value) => value,
            Step::Done(next) => return Ok(next),
        }
    };
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
    if rbuf.is_empty() {
        got!(wait_for_request(stream, rbuf, shared, first).await);
    }
    let arrival = Instant::now();
    let head = got!(read_head(stream, rbuf, wbuf, shared).await);
    let head_bytes = rbuf.split_to(head.len).freeze();
    let body = got!(read_body(stream, rbuf, wbuf, shared, &head).await);
    // While draining, requests a client already pipelined behind this one were accepted too:
    // answer them before closing, and say `connection: close` on the last one.
    let closing =
        |panicked: bool| head.close || panicked || (shared.draining.get() && rbuf.is_empty());
    if head.unsupported_encoding {
        // The body was read whole, so the connection is still in step: refuse, keep it.
        shared.stats.rejected_unsupported_encoding.incr();
        let resp = error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content-encoding",
        );
        let close = closing(false);
        answer(stream, wbuf, shared, &resp, AnswerAs::plain(close)).await?;
        return Ok(if close { Next::Close } else { Next::Continue });
    }
    let answer_as = AnswerAs {
        head_only: head.method == Method::HEAD,
        close: false,
        gzip: head.accepts_gzip,
    };
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
    let (resp, panicked) = call_handler(handler, req, ctx, shared).await;
    if resp.is_abort() {
        return Ok(Next::Close);
    }
    let close = closing(panicked);
    answer(stream, wbuf, shared, &resp, AnswerAs { close, ..answer_as }).await?;
    Ok(if close { Next::Close } else { Next::Continue })
}

/// Waits, idle, for the first bytes of the next request.
async fn wait_for_request(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    shared: &ConnShared,
    first: bool,
) -> io::Result<Step<()>> {
    if shared.draining.get() && !first {
        shared.stats.connections_idle_closed.incr();
        return Ok(Step::Done(Next::Close));
    }
    let idle_deadline = MonoInstant::now() + shared.limits.idle_keepalive_timeout;
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
            Ok(Step::Done(Next::Close))
        }
        Ok(Ok(0)) => Ok(Step::Done(Next::Close)),
        Ok(Ok(_)) => Ok(Step::Got(())),
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ECANCELED) => {
            shared.stats.connections_idle_closed.incr();
            Ok(Step::Done(Next::Close))
        }
        Ok(Err(e)) => Err(e),
    }
}

/// Reads until a whole head is in `rbuf`, within the header timeout.
async fn read_head(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
) -> io::Result<Step<ParsedHead>> {
    let head_deadline = MonoInstant::now() + shared.limits.header_read_timeout;
    loop {
        match parse_request_head(rbuf, &shared.limits) {
            Ok(Some(head)) => return Ok(Step::Got(head)),
            Ok(None) => {}
            Err(reject) => return reject_and_close(stream, rbuf, wbuf, shared, reject).await,
        }
        match timeout_at(head_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await {
            Err(_elapsed) => {
                return reject_and_close(stream, rbuf, wbuf, shared, Reject::Timeout).await
            }
            Ok(Ok(0)) => return Ok(Step::Done(Next::Close)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Reads the body `head` announces, within the body timeout, de-chunked and un-gzipped.
async fn read_body(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    head: &ParsedHead,
) -> io::Result<Step<Bytes>> {
    let limits = &shared.limits;
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
                    Ok(Ok(0)) => return Ok(Step::Done(Next::Close)),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
            rbuf.split_to(n).freeze()
        }
        Framing::Chunked => match read_chunked(stream, rbuf, wbuf, shared, body_deadline).await? {
            Step::Got(body) => body,
            done => return Ok(done),
        },
    };
    if head.gzip && !body.is_empty() {
        return match gunzip_limited(&body, limits.decompressed_bytes_max) {
            Ok(plain) => Ok(Step::Got(Bytes::from(plain))),
            Err(e) => reject_and_close(stream, rbuf, wbuf, shared, body_reject(e)).await,
        };
    }
    Ok(Step::Got(body))
}

/// Reads and decodes a chunked body.
async fn read_chunked(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    body_deadline: MonoInstant,
) -> io::Result<Step<Bytes>> {
    let mut decoder = ChunkedDecoder::new(shared.limits.body_bytes_max);
    let mut out = BytesMut::new();
    loop {
        match decoder.decode(rbuf, &mut out) {
            Ok(true) => return Ok(Step::Got(out.freeze())),
            Ok(false) => {}
            Err(e) => return reject_and_close(stream, rbuf, wbuf, shared, body_reject(e)).await,
        }
        match timeout_at(body_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await {
            Err(_elapsed) => {
                return reject_and_close(stream, rbuf, wbuf, shared, Reject::Timeout).await
            }
            Ok(Ok(0)) => return Ok(Step::Done(Next::Close)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Calls the handler. A bug in one handler call must not take the worker (its listener, every
/// connection on it) down: a panic is answered 500 and closes this connection (the `bool`),
/// and the worker keeps serving. Free unless a panic happens.
async fn call_handler<H: Handler>(
    handler: &H,
    req: Request,
    ctx: &WorkerCtx,
    shared: &ConnShared,
) -> (Response, bool) {
    match AssertUnwindSafe(handler.handle(req, ctx))
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
    }
}

/// How one answer goes out.
#[derive(Debug, Clone, Copy)]
struct AnswerAs {
    /// A HEAD request: the head only.
    head_only: bool,
    /// Say `connection: close` (the caller closes after writing).
    close: bool,
    /// The client accepts gzip.
    gzip: bool,
}

impl AnswerAs {
    fn plain(close: bool) -> Self {
        Self {
            head_only: false,
            close,
            gzip: false,
        }
    }
}

/// Writes `resp`, its body gzipped when the client accepts it and the body is worth it (see
/// [`crate::gzip`]): compressed with the worker's encoder, which stays borrowed only until the
/// bytes are in the write buffer.
async fn answer(
    stream: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    resp: &Response,
    how: AnswerAs,
) -> io::Result<()> {
    wbuf.clear();
    wbuf.reserve(WRITE_BUF_BYTES_INITIAL);
    let compressible = !how.head_only
        && gzip::worth_gzipping(resp.body.len())
        && resp.headers.get(http::header::CONTENT_ENCODING).is_none();
    if !(compressible && how.gzip && encode_gzipped(wbuf, shared, resp, how.close)) {
        let coding = if compressible {
            Coding::IdentityVaries
        } else {
            Coding::Identity
        };
        encode_response_with(wbuf, resp, coding, how.head_only, how.close);
    }
    write_response(stream, wbuf, &shared.limits).await
}

/// Encodes `resp` with its body gzipped into `wbuf`; false (nothing written) when gzip does
/// not make it smaller. Synchronous, so the worker's encoder is never borrowed across an
/// await (another connection of the worker may be answering meanwhile).
fn encode_gzipped(wbuf: &mut Vec<u8>, shared: &ConnShared, resp: &Response, close: bool) -> bool {
    let mut encoder = shared.gzip.borrow_mut();
    let Some(gzipped) = encoder
        .get_or_insert_with(GzipEncoder::new)
        .compress(&resp.body)
    else {
        return false;
    };
    shared.stats.responses_gzipped.incr();
    encode_response_with(wbuf, resp, Coding::Gzip(gzipped), false, close);
    true
}

/// `{"error": message}` with `status`.
fn error_response(status: StatusCode, message: &str) -> Response {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"error\":\"");
    body.extend_from_slice(message.as_bytes());
    body.extend_from_slice(b"\"}");
    Response::json(status, body)
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
async fn reject_and_close<T>(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    reject: Reject,
) -> io::Result<Step<T>> {
    reject.count(&shared.stats);
    tracing::debug!(
        status = reject.status().as_u16(),
        reason = reject.message(),
        "request rejected"
    );
    wbuf.clear();
    let resp = error_response(reject.status(), reject.message());
    encode_response(wbuf, &resp, false, true);
    write_response(stream, wbuf, &shared.limits).await?;
    lingering_close(stream, rbuf).await;
    Ok(Step::Done(Next::Close))
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
