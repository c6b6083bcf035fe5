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
    time::{Duration, Instant},
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
    kernel_stamp::{recv_stamped, StampedRead},
    limits::{ServerLimits, WorkerStats},
    reused_box::ReusedBox,
    stream::NetStream,
    turn_budget::{wait_for_budget, TurnBudget},
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
    /// Completes when the worker starts draining (wakes idle TLS reads, which have no
    /// cancel handle).
    pub drain_signal: DrainSignal,
    /// The worker's gzip encoder for answers, made at the first compressed one.
    pub gzip: RefCell<Option<GzipEncoder>>,
    /// TLS on accepted connections (`None`: plain).
    pub tls: Option<crate::tls::ServerTls>,
    /// How much request work runs before the worker's timers get their turn.
    pub turn_budget: Rc<TurnBudget>,
}

/// A future every idle TLS connection can wait on, completed once at shutdown.
pub(crate) type DrainSignal = futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>;

impl ConnShared {
    pub(crate) fn new(
        limits: ServerLimits,
        stats: Arc<WorkerStats>,
        idle_cancel: CancelHandle,
        drain_signal: DrainSignal,
        tls: Option<crate::tls::ServerTls>,
        turn_budget: Rc<TurnBudget>,
    ) -> Self {
        Self {
            limits,
            stats,
            draining: Cell::new(false),
            idle_cancel,
            drain_signal,
            gzip: RefCell::new(None),
            tls,
            turn_budget,
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
async fn read_more(stream: &mut NetStream, buf: &mut BytesMut, spare: usize) -> io::Result<usize> {
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

/// Before a request's first read, gives an empty read buffer back its whole allocation when
/// the last request's head and body (split off it) are dropped: `try_reclaim` moves its start
/// to the front, with no copy and no allocation. Left as it was, the read went into only the
/// tail the last request had not used, so a request that fitted the allocation could take
/// two reads; the second, with the head still split off and alive, had to allocate a new
/// buffer. Under overload that was a syscall, an allocation and a copy on most requests
/// (BENCHMARKS.md, "The read buffer taken back whole").
fn reclaim_read_buffer(rbuf: &mut BytesMut) {
    if rbuf.is_empty() {
        // More than the tail holds: only the whole allocation, reclaimed, can satisfy it.
        let _whole = rbuf.try_reclaim(rbuf.capacity() + 1);
    }
}

/// Like [`read_more`] but cancelable at shutdown; used only while idle between requests.
async fn read_idle(
    stream: &mut NetStream,
    buf: &mut BytesMut,
    shared: &ConnShared,
) -> io::Result<usize> {
    let NetStream::Plain(tcp) = stream else {
        return read_idle_tls(stream, buf, shared).await;
    };
    if buf.capacity() - buf.len() < READ_SPARE_BYTES_MIN {
        buf.reserve(READ_BUF_BYTES_INITIAL);
    }
    let owned = std::mem::take(buf);
    let end = owned.capacity();
    let begin = owned.len();
    let (res, slice) = tcp
        .cancelable_read(SliceMut::new(owned, begin, end), shared.idle_cancel.clone())
        .await;
    *buf = slice.into_inner();
    res
}

/// An idle TLS read, given up (`ECANCELED`) when the worker starts draining. monoio-rustls has
/// no cancelable read, so the read races the worker's drain signal; the read dropped then
/// takes its bytes with it, which is fine: the connection closes.
async fn read_idle_tls(
    stream: &mut NetStream,
    buf: &mut BytesMut,
    shared: &ConnShared,
) -> io::Result<usize> {
    if shared.draining.get() {
        return Err(io::Error::from_raw_os_error(libc::ECANCELED));
    }
    monoio::select! {
        read = read_more(stream, buf, READ_SPARE_BYTES_MIN) => read,
        _ = shared.drain_signal.clone() => Err(io::Error::from_raw_os_error(libc::ECANCELED)),
    }
}

enum Next {
    Continue,
    Close,
}

/// What reading the next request produced.
// Boxing the request would allocate per request; the value is matched at once.
#[allow(clippy::large_enum_variant)]
enum Read {
    /// A whole request, with what the answer must respect.
    Request(Request, AnswerRules),
    /// A whole request refused without calling the handler; the connection stays in step.
    Refused(Response, AnswerRules),
    /// Nothing more on this connection (closed, idle, rejected and answered already).
    Close,
}

/// How the answer to a request is written.
#[derive(Debug, Clone, Copy)]
struct AnswerRules {
    /// HEAD: headers only.
    is_head: bool,
    /// The client asked to close after this answer.
    close: bool,
    /// The client accepts a gzipped answer.
    gzip: bool,
}

/// Serves one accepted connection until it closes.
///
/// A request the handler answers at once ([`Handler::answer_now`]) costs no future. Otherwise
/// the handler's future is built in one heap slot per connection, reused for every request on
/// it ([`ReusedBox`]): the connection's own future stays small (an idle connection costs its
/// buffers, not the handler's state), a busy connection allocates its handler's state once,
/// not per request, and the future is built in place, not moved.
pub(crate) async fn serve_conn<H: Handler>(
    mut stream: NetStream,
    handler: Rc<H>,
    ctx: Rc<WorkerCtx>,
    shared: Rc<ConnShared>,
) {
    let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES_INITIAL);
    // Allocated at the first response, not at accept: an idle connection (slowloris, or one of
    // thousands a client opens and never uses) costs only its read buffer.
    let mut wbuf = Vec::new();
    // The handler's future, built in one reused heap slot (its type is only known by inference).
    let mut running = ReusedBox::new();
    let mut first = true;
    loop {
        let read = read_request(&mut stream, &mut rbuf, &mut wbuf, &shared, first).await;
        let (mut req, rules) = match read {
            Ok(Read::Request(req, rules)) => (req, rules),
            Ok(Read::Refused(resp, rules)) => {
                first = false;
                match respond(&mut stream, &rbuf, &mut wbuf, &shared, resp, rules, false).await {
                    Ok(Next::Continue) => continue,
                    Ok(Next::Close) => return,
                    Err(error) => return connection_error(&shared, &error),
                }
            }
            Ok(Read::Close) => return,
            Err(error) => return connection_error(&shared, &error),
        };
        first = false;
        if let Some(wait) = wait_for_budget(&shared.turn_budget).await {
            shared.stats.requests_waited_turn.incr();
            req.queue_wait = wait;
        }
        // A bug in one handler call must not take the worker (its listener, every connection
        // on it) down: answer 500, close this connection, keep serving. Free unless a panic
        // happens.
        let at_once = std::panic::catch_unwind(AssertUnwindSafe(|| handler.answer_now(&req, &ctx)));
        let (resp, panicked) = match at_once {
            Ok(Some(resp)) => (resp, false),
            Ok(None) => {
                let future = running.put(|| handler.handle(req, &ctx));
                match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(resp) => (resp, false),
                    Err(_) => (handler_panicked(&shared), true),
                }
            }
            Err(_) => (handler_panicked(&shared), true),
        };
        match respond(
            &mut stream,
            &rbuf,
            &mut wbuf,
            &shared,
            resp,
            rules,
            panicked,
        )
        .await
        {
            Ok(Next::Continue) => {}
            Ok(Next::Close) => return,
            Err(error) => return connection_error(&shared, &error),
        }
    }
}

fn connection_error(shared: &ConnShared, error: &io::Error) {
    tracing::debug!(%error, "connection error");
    shared.stats.io_errors.incr();
}

fn handler_panicked(shared: &ConnShared) -> Response {
    shared.stats.handler_panics.incr();
    tracing::error!("request handler panicked; answered 500 and closed the connection");
    let body = Bytes::from_static(br#"{"error":"internal error"}"#);
    Response::json(StatusCode::INTERNAL_SERVER_ERROR, body)
}

/// Writes the handler's answer; says whether the connection goes on.
async fn respond(
    stream: &mut NetStream,
    rbuf: &BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    resp: Response,
    rules: AnswerRules,
    panicked: bool,
) -> io::Result<Next> {
    if resp.is_abort() {
        return Ok(Next::Close);
    }
    // While draining, requests a client already pipelined behind this one were accepted too:
    // answer them before closing, and say `connection: close` on the last one.
    let close = rules.close || panicked || (shared.draining.get() && rbuf.is_empty());
    wbuf.clear();
    wbuf.reserve(WRITE_BUF_BYTES_INITIAL);
    let compressible = !rules.is_head
        && gzip::worth_gzipping(resp.body.len())
        && resp.headers.get(http::header::CONTENT_ENCODING).is_none();
    if !(compressible && rules.gzip && encode_gzipped(wbuf, shared, &resp, close)) {
        let coding = if compressible {
            Coding::IdentityVaries
        } else {
            Coding::Identity
        };
        encode_response_with(wbuf, &resp, coding, rules.is_head, close);
    }
    write_response(stream, wbuf, &shared.limits).await?;
    Ok(if close { Next::Close } else { Next::Continue })
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

/// Waits for the next request on the connection (bounded by the idle timeout, cancelled at
/// shutdown unless it is the connection's first), then reads its head and body.
async fn read_request(
    stream: &mut NetStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    first: bool,
) -> io::Result<Read> {
    // Bytes already in the buffer (pipelined) were read with an earlier request: unstamped.
    let kernel_wait = if rbuf.is_empty() {
        match wait_for_request(stream, rbuf, shared, first).await? {
            Some(kernel_wait) => kernel_wait,
            None => return Ok(Read::Close),
        }
    } else {
        Duration::ZERO
    };
    let read_at = Instant::now();
    let arrival = read_at.checked_sub(kernel_wait).unwrap_or(read_at);
    let head = match read_head(stream, rbuf, &shared.limits).await? {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(Read::Close),
        Err(reject) => return reject_and_close(stream, rbuf, wbuf, shared, reject).await,
    };
    let head_bytes = rbuf.split_to(head.len).freeze();
    if head.expect_continue && head.framing != Framing::Empty && rbuf.is_empty() {
        wbuf.clear();
        wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let (res, buf) = stream.write_all(std::mem::take(wbuf)).await;
        *wbuf = buf;
        res?;
    }
    let body = match read_body(stream, rbuf, &shared.limits, head.framing, head.gzip).await? {
        Ok(Some(body)) => body,
        Ok(None) => return Ok(Read::Close),
        Err(reject) => return reject_and_close(stream, rbuf, wbuf, shared, reject).await,
    };
    if head.unsupported_encoding {
        // The body was read whole, so the connection is still in step: refuse, keep it.
        shared.stats.rejected_unsupported_encoding.incr();
        let refusal = error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content-encoding",
        );
        let rules = AnswerRules {
            is_head: false,
            close: head.close,
            gzip: false,
        };
        return Ok(Read::Refused(refusal, rules));
    }
    let rules = AnswerRules {
        is_head: head.method == Method::HEAD,
        close: head.close,
        gzip: head.accepts_gzip,
    };
    let mut req = Request::from_parts(
        head.method,
        head.version_minor,
        head_bytes,
        head.path,
        head.headers,
        body,
        arrival,
    );
    req.kernel_wait = kernel_wait;
    shared.stats.requests_handled.incr();
    Ok(Read::Request(req, rules))
}

/// Waits for a request's first bytes: `None` when the connection should close instead (peer
/// closed, idle timeout, shutdown), else how long they had waited in the kernel before this
/// read (zero without kernel stamps).
async fn wait_for_request(
    stream: &mut NetStream,
    rbuf: &mut BytesMut,
    shared: &ConnShared,
    first: bool,
) -> io::Result<Option<Duration>> {
    reclaim_read_buffer(rbuf);
    if shared.draining.get() && !first {
        shared.stats.connections_idle_closed.incr();
        return Ok(None);
    }
    let idle_deadline = MonoInstant::now() + shared.limits.idle_keepalive_timeout;
    // A new connection's first request is not cancelled at shutdown: it was accepted, so it
    // is served. Idle keep-alive waits are.
    let read = match stream {
        NetStream::Plain(tcp) if shared.limits.kernel_arrival => {
            timeout_at(idle_deadline, read_stamped(tcp, rbuf, shared, first)).await
        }
        _ if first => {
            let read = timeout_at(idle_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN));
            read.await.map(unstamped)
        }
        _ => timeout_at(idle_deadline, read_idle(stream, rbuf, shared))
            .await
            .map(unstamped),
    };
    match read {
        Err(_elapsed) => {
            shared.stats.connections_idle_closed.incr();
            Ok(None)
        }
        Ok(Ok(StampedRead { len: 0, .. })) => Ok(None),
        Ok(Ok(read)) => Ok(Some(read.age.unwrap_or(Duration::ZERO))),
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ECANCELED) => {
            shared.stats.connections_idle_closed.incr();
            Ok(None)
        }
        Ok(Err(e)) => Err(e),
    }
}

fn unstamped(read: io::Result<usize>) -> io::Result<StampedRead> {
    read.map(|len| StampedRead { len, age: None })
}

/// At shutdown, an idle wait gives up (`ECANCELED`), unless a request arrived in the same
/// turn as the drain signal (`select!` picks its branch at random): it was sent, so it is
/// read and served.
fn last_read_before_drain(tcp: &TcpStream, rbuf: &mut BytesMut) -> io::Result<StampedRead> {
    match recv_stamped(tcp, rbuf, READ_SPARE_BYTES_MIN) {
        Ok(read) if read.len > 0 => Ok(read),
        _ => Err(io::Error::from_raw_os_error(libc::ECANCELED)),
    }
}

/// A read that carries the kernel's receive stamp (`kernel_stamp`): take what is there, else
/// wait until the socket is readable and take it then. The wait is given up at shutdown
/// (`ECANCELED`), unless this is the connection's first request.
async fn read_stamped(
    tcp: &TcpStream,
    rbuf: &mut BytesMut,
    shared: &ConnShared,
    first: bool,
) -> io::Result<StampedRead> {
    loop {
        match recv_stamped(tcp, rbuf, READ_SPARE_BYTES_MIN) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => return read,
        }
        // Not relaxed: on epoll, readiness left over from an earlier read is confirmed with
        // poll(2) first, or this loop would spin on it.
        if first {
            tcp.readable(false).await?;
            continue;
        }
        if shared.draining.get() {
            return Err(io::Error::from_raw_os_error(libc::ECANCELED));
        }
        monoio::select! {
            ready = tcp.readable(false) => ready?,
            _ = shared.drain_signal.clone() => return last_read_before_drain(tcp, rbuf),
        }
    }
}

/// Reads until a whole head parses. `Ok(None)`: the peer closed; `Err(reject)`: answer it.
async fn read_head(
    stream: &mut NetStream,
    rbuf: &mut BytesMut,
    limits: &ServerLimits,
) -> io::Result<Result<Option<ParsedHead>, Reject>> {
    let head_deadline = MonoInstant::now() + limits.header_read_timeout;
    loop {
        match parse_request_head(rbuf, limits) {
            Ok(Some(head)) => return Ok(Ok(Some(head))),
            Ok(None) => {}
            Err(reject) => return Ok(Err(reject)),
        }
        match timeout_at(head_deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await {
            Err(_elapsed) => return Ok(Err(Reject::Timeout)),
            Ok(Ok(0)) => return Ok(Ok(None)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Reads the body as framed, then gunzips it when asked. `Ok(None)`: the peer closed.
async fn read_body(
    stream: &mut NetStream,
    rbuf: &mut BytesMut,
    limits: &ServerLimits,
    framing: Framing,
    gzip: bool,
) -> io::Result<Result<Option<Bytes>, Reject>> {
    let deadline = MonoInstant::now() + limits.body_read_timeout;
    let body = match framing {
        Framing::Empty => Bytes::new(),
        Framing::Length(n) => {
            while rbuf.len() < n {
                let want = n - rbuf.len();
                match timeout_at(deadline, read_more(stream, rbuf, want)).await {
                    Err(_elapsed) => return Ok(Err(Reject::Timeout)),
                    Ok(Ok(0)) => return Ok(Ok(None)),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                }
            }
            rbuf.split_to(n).freeze()
        }
        Framing::Chunked => match read_chunked(stream, rbuf, limits, deadline).await? {
            Ok(Some(body)) => body,
            other => return Ok(other),
        },
    };
    if !gzip || body.is_empty() {
        return Ok(Ok(Some(body)));
    }
    Ok(match gunzip_limited(&body, limits.decompressed_bytes_max) {
        Ok(plain) => Ok(Some(Bytes::from(plain))),
        Err(e) => Err(body_reject(e)),
    })
}

async fn read_chunked(
    stream: &mut NetStream,
    rbuf: &mut BytesMut,
    limits: &ServerLimits,
    deadline: MonoInstant,
) -> io::Result<Result<Option<Bytes>, Reject>> {
    let mut decoder = ChunkedDecoder::new(limits.body_bytes_max);
    let mut out = BytesMut::new();
    loop {
        match decoder.decode(rbuf, &mut out) {
            Ok(true) => return Ok(Ok(Some(out.freeze()))),
            Ok(false) => {}
            Err(e) => return Ok(Err(body_reject(e))),
        }
        match timeout_at(deadline, read_more(stream, rbuf, READ_SPARE_BYTES_MIN)).await {
            Err(_elapsed) => return Ok(Err(Reject::Timeout)),
            Ok(Ok(0)) => return Ok(Ok(None)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

fn body_reject(e: BodyError) -> Reject {
    match e {
        BodyError::TooLarge => Reject::BodyTooLarge,
        BodyError::Malformed(why) => Reject::BadRequest(why),
    }
}

async fn write_response(
    stream: &mut NetStream,
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
    stream: &mut NetStream,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
    shared: &ConnShared,
    reject: Reject,
) -> io::Result<Read> {
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
    Ok(Read::Close)
}

/// Half-closes, then discards what the client is still sending for a bounded time, so the
/// kernel does not answer unread data with a reset that would drop our response.
async fn lingering_close(stream: &mut NetStream, rbuf: &mut BytesMut) {
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

    #[test]
    fn an_empty_read_buffer_takes_back_its_whole_allocation_once_the_request_is_dropped() {
        let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES_INITIAL);
        rbuf.extend_from_slice(&[b'x'; 3 * 1024]);
        let start = rbuf.as_ptr();
        let request = rbuf.split_to(3 * 1024).freeze();
        assert_eq!(rbuf.capacity(), READ_BUF_BYTES_INITIAL - 3 * 1024);
        // The request is still alive: nothing to take back, and nothing allocated.
        reclaim_read_buffer(&mut rbuf);
        assert_eq!(rbuf.capacity(), READ_BUF_BYTES_INITIAL - 3 * 1024);
        drop(request);
        reclaim_read_buffer(&mut rbuf);
        assert_eq!(rbuf.capacity(), READ_BUF_BYTES_INITIAL);
        assert_eq!(rbuf.as_ptr(), start, "the same allocation, not a new one");
    }

    #[test]
    fn a_buffer_holding_pipelined_bytes_is_left_alone() {
        let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES_INITIAL);
        rbuf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nGET");
        drop(rbuf.split_to(18));
        let (before, capacity) = (rbuf.as_ptr(), rbuf.capacity());
        reclaim_read_buffer(&mut rbuf);
        assert_eq!((rbuf.as_ptr(), rbuf.capacity()), (before, capacity));
        assert_eq!(&rbuf[..], b"GET");
    }
}
