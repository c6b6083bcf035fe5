//! Owns the HTTP/1.1 client's bytes on one connection: encoding a request into the connection's
//! write buffer, then reading the response head and body into its read buffer. The body is
//! left where it was read (or de-chunked into the connection's scratch buffer) and located by
//! a [`BodyAt`], so a caller can look at it without a copy before the connection is reused.

use std::io;

use bytes::BytesMut;
use http::StatusCode;
use monoio::{buf::SliceMut, io::AsyncReadRent, io::AsyncWriteRentExt};

use super::{
    CallError, ClientConfig, RequestParts, RESPONSE_HEADERS_COUNT_MAX, RESPONSE_HEAD_BYTES_MAX,
};
use crate::{
    body::{BodyError, ChunkedDecoder},
    gunzip::{gunzip_into, GunzipError},
    http::format_usize,
    stream::NetStream,
};

/// Initial per-connection read buffer.
pub(crate) const CLIENT_READ_BUF_BYTES: usize = 8 * 1024;
/// Least free space offered to a read.
const CLIENT_READ_SPARE_BYTES_MIN: usize = 2 * 1024;

/// One keep-alive connection and its reused buffers.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: NetStream,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: Vec<u8>,
    /// De-chunked body of the last chunked response.
    pub(crate) dechunked: BytesMut,
    /// Decoded body of the last gzip response (allocated at the first one).
    pub(crate) inflated: Vec<u8>,
    /// The request was written whole and no byte of its answer has been read: if the call is
    /// dropped now, the stream is still in step and the connection can be drained.
    pub(crate) unanswered: bool,
}

impl Conn {
    pub(crate) fn new(stream: NetStream) -> Self {
        Self {
            stream,
            rbuf: BytesMut::with_capacity(CLIENT_READ_BUF_BYTES),
            wbuf: Vec::with_capacity(CLIENT_READ_BUF_BYTES),
            dechunked: BytesMut::new(),
            inflated: Vec::new(),
            unanswered: false,
        }
    }

    /// The body of the last response, as located by `at`.
    pub(crate) fn body(&self, at: BodyAt) -> &[u8] {
        match at {
            BodyAt::Empty => &[],
            BodyAt::Read(len) => &self.rbuf[..len],
            BodyAt::Dechunked => &self.dechunked,
            BodyAt::Inflated => &self.inflated,
        }
    }
}

/// Where the body of the last response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyAt {
    /// No body.
    Empty,
    /// The first `n` bytes of the read buffer.
    Read(usize),
    /// The de-chunked scratch buffer.
    Dechunked,
    /// The gzip-decoded scratch buffer.
    Inflated,
}

/// A response read off a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) status: StatusCode,
    pub(crate) body: BodyAt,
    /// Whether the connection can carry another request.
    pub(crate) reusable: bool,
}

/// Why an exchange failed.
pub(crate) enum ExchangeError {
    /// A pooled connection the upstream had closed before reading our request: safe to retry
    /// once on a fresh connection.
    StaleConnection,
    Failed(CallError),
}

impl From<CallError> for ExchangeError {
    fn from(e: CallError) -> Self {
        Self::Failed(e)
    }
}

async fn read_more(conn: &mut Conn) -> io::Result<usize> {
    if conn.rbuf.capacity() - conn.rbuf.len() < CLIENT_READ_SPARE_BYTES_MIN {
        conn.rbuf.reserve(CLIENT_READ_BUF_BYTES);
    }
    let owned = std::mem::take(&mut conn.rbuf);
    let begin = owned.len();
    let end = owned.capacity();
    let (res, slice) = conn.stream.read(SliceMut::new(owned, begin, end)).await;
    conn.rbuf = slice.into_inner();
    if !matches!(res, Ok(0)) {
        // Bytes (or an error) came back: this answer can no longer be drained from the start.
        conn.unanswered = false;
    }
    res
}

pub(crate) fn encode_request(out: &mut Vec<u8>, req: &RequestParts<'_>, host: &[u8]) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\ncontent-length: ");
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_usize(req.body.len(), &mut digits));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.header_lines);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RespFraming {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

pub(crate) struct RespHead {
    pub(crate) len: usize,
    pub(crate) status: StatusCode,
    pub(crate) framing: RespFraming,
    pub(crate) close: bool,
    /// `Content-Encoding: gzip`: the body is decoded before it is handed out.
    pub(crate) gzip: bool,
}

/// What the framing headers of a response said.
#[derive(Default)]
struct FramingHeaders {
    length: Option<usize>,
    chunked: bool,
    close: Option<bool>,
    gzip: bool,
}

fn read_framing_headers(headers: &[httparse::Header<'_>]) -> Result<FramingHeaders, CallError> {
    let mut out = FramingHeaders::default();
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(CallError::ProtocolError)?;
            if out.length.is_some_and(|prev| prev != n) {
                return Err(CallError::ProtocolError);
            }
            out.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            out.chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !out.chunked {
                return Err(CallError::ProtocolError);
            }
        } else if h.name.eq_ignore_ascii_case("content-encoding") {
            // Only what the client offers (`Accept-Encoding: gzip`, or nothing) is accepted.
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") {
                out.gzip = true;
            } else if !v.eq_ignore_ascii_case(b"identity") {
                return Err(CallError::ProtocolError);
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.trim_ascii();
            if v.eq_ignore_ascii_case(b"close") {
                out.close = Some(true);
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                out.close = Some(false);
            }
        }
    }
    Ok(out)
}

pub(crate) fn parse_response_head(buf: &[u8], limit: usize) -> Result<Option<RespHead>, CallError> {
    let mut storage = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_COUNT_MAX];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < RESPONSE_HEAD_BYTES_MAX => return Ok(None),
        Ok(httparse::Status::Partial) | Err(_) => return Err(CallError::ProtocolError),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| CallError::ProtocolError)?;
    let headers = read_framing_headers(resp.headers)?;
    let close = headers.close.unwrap_or(resp.version == Some(0));
    let framing = if code < 200 || code == 204 || code == 304 {
        RespFraming::Empty
    } else if headers.chunked {
        if headers.length.is_some() {
            return Err(CallError::ProtocolError);
        }
        RespFraming::Chunked
    } else if let Some(n) = headers.length {
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
        gzip: headers.gzip,
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

/// Writes `req` and reads the whole response. On a `reused` connection, a close before any
/// response byte is [`ExchangeError::StaleConnection`].
pub(crate) async fn exchange(
    conn: &mut Conn,
    req: &RequestParts<'_>,
    host: &[u8],
    config: &ClientConfig,
    reused: bool,
) -> Result<Received, ExchangeError> {
    conn.rbuf.clear();
    conn.unanswered = false;
    let mut wbuf = std::mem::take(&mut conn.wbuf);
    encode_request(&mut wbuf, req, host);
    let (res, wbuf) = conn.stream.write_all(wbuf).await;
    conn.wbuf = wbuf;
    if let Err(e) = res {
        return Err(stale_if(reused, io_to_call(&e)));
    }
    conn.unanswered = true;
    read_answer(conn, config, reused).await
}

/// Reads one whole answer off `conn` (its read buffer empty or holding the answer's first
/// bytes). On a `reused` connection, a close before any byte is
/// [`ExchangeError::StaleConnection`].
pub(crate) async fn read_answer(
    conn: &mut Conn,
    config: &ClientConfig,
    reused: bool,
) -> Result<Received, ExchangeError> {
    let head = read_head(conn, config, reused).await?;
    let _ = conn.rbuf.split_to(head.len);
    let (mut body, complete_framing) = read_body(conn, head.framing, config).await?;
    // Leftover bytes would be a desynchronised stream; such a connection is not reused.
    let leftover = match body {
        BodyAt::Read(n) => conn.rbuf.len() > n,
        BodyAt::Empty | BodyAt::Dechunked | BodyAt::Inflated => !conn.rbuf.is_empty(),
    };
    if head.gzip && body != BodyAt::Empty {
        inflate(conn, body, config.response_bytes_max)?;
        body = BodyAt::Inflated;
    }
    Ok(Received {
        status: head.status,
        body,
        reusable: complete_framing && !head.close && !leftover,
    })
}

/// Decodes the gzip body at `at` into the connection's inflate buffer, at most `limit` bytes
/// (the same bound as an identity body): a bomb is `TooLarge`, bad data a protocol error.
fn inflate(conn: &mut Conn, at: BodyAt, limit: usize) -> Result<(), CallError> {
    let compressed: &[u8] = match at {
        BodyAt::Read(n) => &conn.rbuf[..n],
        BodyAt::Dechunked => &conn.dechunked,
        BodyAt::Empty | BodyAt::Inflated => &[],
    };
    gunzip_into(compressed, &mut conn.inflated, limit).map_err(|e| match e {
        GunzipError::TooLarge => CallError::TooLarge,
        GunzipError::Malformed => CallError::ProtocolError,
    })
}

fn stale_if(reused: bool, e: CallError) -> ExchangeError {
    if reused && e == CallError::Closed {
        ExchangeError::StaleConnection
    } else {
        ExchangeError::Failed(e)
    }
}

async fn read_head(
    conn: &mut Conn,
    config: &ClientConfig,
    reused: bool,
) -> Result<RespHead, ExchangeError> {
    loop {
        if let Some(head) = parse_response_head(&conn.rbuf, config.response_bytes_max)? {
            if head.status.is_informational() {
                // `100 Continue` and friends precede the real response.
                let _ = conn.rbuf.split_to(head.len);
                continue;
            }
            return Ok(head);
        }
        let nothing_yet = conn.rbuf.is_empty();
        match read_more(conn).await {
            Ok(0) if nothing_yet => return Err(stale_if(reused, CallError::Closed)),
            Ok(0) => return Err(CallError::Closed.into()),
            Ok(_) => {}
            Err(e) if nothing_yet => return Err(stale_if(reused, io_to_call(&e))),
            Err(e) => return Err(io_to_call(&e).into()),
        }
    }
}

/// Reads the body after the head; returns where it is and whether its framing completed.
async fn read_body(
    conn: &mut Conn,
    framing: RespFraming,
    config: &ClientConfig,
) -> Result<(BodyAt, bool), ExchangeError> {
    let limit = config.response_bytes_max;
    let more = |n: io::Result<usize>| match n {
        Ok(0) => Err(ExchangeError::Failed(CallError::Closed)),
        Ok(_) => Ok(()),
        Err(e) => Err(ExchangeError::Failed(io_to_call(&e))),
    };
    match framing {
        RespFraming::Empty => Ok((BodyAt::Empty, true)),
        RespFraming::Length(n) => {
            while conn.rbuf.len() < n {
                conn.rbuf.reserve(n - conn.rbuf.len());
                more(read_more(conn).await)?;
            }
            Ok((BodyAt::Read(n), true))
        }
        RespFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(limit);
            conn.dechunked.clear();
            loop {
                match decoder.decode(&mut conn.rbuf, &mut conn.dechunked) {
                    Ok(true) => return Ok((BodyAt::Dechunked, true)),
                    Ok(false) => {}
                    Err(BodyError::TooLarge) => return Err(CallError::TooLarge.into()),
                    Err(BodyError::Malformed(_)) => return Err(CallError::ProtocolError.into()),
                }
                more(read_more(conn).await)?;
            }
        }
        RespFraming::UntilClose => loop {
            if conn.rbuf.len() > limit {
                return Err(CallError::TooLarge.into());
            }
            match read_more(conn).await {
                Ok(0) => return Ok((BodyAt::Read(conn.rbuf.len()), false)),
                Ok(_) => {}
                Err(e) => return Err(io_to_call(&e).into()),
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_request() {
        let mut out = Vec::new();
        let req = RequestParts::openrtb_post("/bid", b"{}");
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
        let h = parse_response_head(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n", 10)
            .unwrap()
            .unwrap();
        assert!(
            !h.close,
            "an HTTP/1.0 keep-alive answer keeps the connection"
        );
    }
}
