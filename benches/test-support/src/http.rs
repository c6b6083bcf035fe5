//! Owns the tests' blocking HTTP/1.1 over loopback TCP: the client side (send a request, read
//! one response or every response until the peer closes) and the server side (read one request,
//! for fake peers). Heads are parsed with httparse; header names are kept lower-case. Every
//! socket operation has a timeout, so no test can hang on a silent peer.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// Upper bound on any single blocking socket operation of a test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Most headers a test reads in one head.
const HEADERS_MAX: usize = 64;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as text (lossy), with a chunked transfer coding undone.
    pub fn decoded_text(&self) -> String {
        let chunked = self
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        if chunked {
            String::from_utf8_lossy(&crate::wire::unchunked(&self.body)).into_owned()
        } else {
            self.text()
        }
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }
}

/// A request a fake server received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method, as sent.
    pub method: String,
    /// Request target, as sent.
    pub path: String,
    /// Minor HTTP version (1 for HTTP/1.1).
    pub version: u8,
    /// Headers in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The Content-Length body.
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

fn header_of<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn lower_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

fn content_length(headers: &[(String, String)]) -> usize {
    header_of(headers, "content-length").map_or(0, |v| v.parse().unwrap_or(0))
}

/// Connects with [`IO_TIMEOUT`] on connect, reads and writes, and no Nagle delay.
pub fn try_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// [`try_connect`] that panics on failure.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// The bytes of a request with `host`, `connection: close` and `content-length` set.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<TcpStream> {
    let mut s = try_connect(addr, IO_TIMEOUT)?;
    s.write_all(&request_bytes(addr, method, path, headers, body))?;
    Ok(s)
}

/// Writes a `connection: close` request; returns the stream, ready to read the answer.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    try_send(addr, method, path, headers, body).unwrap_or_else(|e| panic!("send to {addr}: {e}"))
}

/// Reads until the server closes (the request said `connection: close`) and parses the reply.
pub fn read_reply(mut s: TcpStream) -> Reply {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_reply(&raw)
}

/// One request on a new connection, answered and closed; errors instead of panics (for
/// background clients that record failures).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let mut s = try_send(addr, method, path, headers, body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    try_parse_reply(&raw).ok_or_else(|| {
        let start = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
        format!("no HTTP response in {start:?}")
    })
}

/// One request on a new connection, answered and closed.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    read_reply(send(addr, method, path, headers, body))
}

/// Parses a response whose body is everything after the head; `None` without a whole head.
pub fn try_parse_reply(raw: &[u8]) -> Option<Reply> {
    let mut storage = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut r = httparse::Response::new(&mut storage);
    let httparse::Status::Complete(n) = r.parse(raw).ok()? else {
        return None;
    };
    Some(Reply {
        status: r.code?,
        headers: lower_headers(r.headers),
        body: raw[n..].to_vec(),
    })
}

/// [`try_parse_reply`] that panics, with the bytes, when there is no head.
pub fn parse_reply(raw: &[u8]) -> Reply {
    try_parse_reply(raw).unwrap_or_else(|| {
        panic!(
            "no HTTP response head in {:?}",
            String::from_utf8_lossy(raw)
        )
    })
}

/// Splits back-to-back responses (each framed by content-length, or bodiless).
pub fn split_replies(mut raw: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = parse_reply(&raw[..end + 4]);
        let total = (end + 4 + content_length(&head.headers)).min(raw.len());
        out.push(parse_reply(&raw[..total]));
        raw = &raw[total..];
    }
    out
}

/// Reads more bytes into `buf`; false on EOF, error or timeout.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Takes the `len` body bytes that follow an `n`-byte head out of `buf` (reading more as
/// needed), leaving what follows them; `None` when the peer stops first.
fn take_body(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize, len: usize) -> Option<Vec<u8>> {
    while buf.len() < n + len {
        if !fill(s, buf) {
            return None;
        }
    }
    let body = buf[n..n + len].to_vec();
    buf.drain(..n + len);
    Some(body)
}

/// Reads one Content-Length-framed response on a keep-alive connection; bytes of the next
/// response stay in `buf`. `None` when the peer closes or times out first.
pub fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Reply> {
    loop {
        let mut storage = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut r = httparse::Response::new(&mut storage);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let status = r.code?;
            let headers = lower_headers(r.headers);
            let body = take_body(s, buf, n, content_length(&headers))?;
            return Some(Reply {
                status,
                headers,
                body,
            });
        }
        if !fill(s, buf) {
            return None;
        }
    }
}

/// Sends `raw` on a new connection and reads one response.
pub fn roundtrip(addr: SocketAddr, raw: &[u8]) -> Option<Reply> {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    read_response(&mut s, &mut Vec::new())
}

/// Whether the peer closed: a read returns 0 (or a reset) before `within` passes.
pub fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Reads one request (head and Content-Length body) from `conn`; bytes already read but not
/// used stay in `buf`. `None` on EOF, error or timeout before a whole request.
pub fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    loop {
        let mut storage = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut r = httparse::Request::new(&mut storage);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let (method, path, version) = (r.method?.to_string(), r.path?.to_string(), r.version?);
            let headers = lower_headers(r.headers);
            let body = take_body(conn, buf, n, content_length(&headers))?;
            return Some(Seen {
                method,
                path,
                version,
                headers,
                body,
            });
        }
        if !fill(conn, buf) {
            return None;
        }
    }
}
