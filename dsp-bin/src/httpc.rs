//! Owns the small blocking HTTP/1.1 client used off the hot path: onboarding calls, the demo's
//! control calls (`GET /dsp`, `/metrics`) and tests. One request per connection
//! (`connection: close`), bounded by a timeout and a response size limit.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

/// Largest response accepted, bytes.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A parsed `http://host:port/path` URL (no TLS, no userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host as written.
    pub host: String,
    /// Port (80 when absent).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    /// The address to connect to, when the caller resolved the host itself (one of several
    /// replicas); `None` resolves the host and takes its first address.
    pub connect_to: Option<SocketAddr>,
}

impl HttpUrl {
    /// Parses an `http://` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: missing host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            connect_to: None,
        })
    }

    /// The same URL (same Host header), connecting to `addr`.
    pub fn at(&self, addr: SocketAddr) -> Self {
        Self {
            connect_to: Some(addr),
            ..self.clone()
        }
    }

    /// `host:port`, for connecting and for the Host header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body (Content-Length framed or read to EOF; chunked is decoded).
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole response, within `timeout` per IO step.
pub fn request(
    url: &HttpUrl,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let addr: SocketAddr = match url.connect_to {
        Some(addr) => addr,
        None => url
            .authority()
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("host did not resolve"))?,
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = Vec::with_capacity(256 + body.len());
    write!(
        out,
        "{method} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        url.path,
        url.authority(),
        body.len()
    )?;
    for (name, value) in headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    let mut raw = Vec::new();
    stream
        .take(RESPONSE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut raw)?;
    if raw.len() > RESPONSE_BYTES_MAX {
        return Err(io::Error::other("response too large"));
    }
    parse_response(&raw)
}

/// Parses a complete response read to EOF.
pub fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(io::Error::other("truncated response")),
        Err(e) => return Err(io::Error::other(format!("bad response: {e}"))),
    };
    let status = parsed.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
        }
    }
    let rest = &raw[head_len..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| io::Error::other("truncated body"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io::Error::other("bad chunk"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| io::Error::other("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| io::Error::other("truncated chunk"))?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/dsp").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/dsp")
        );
        let u = HttpUrl::parse("http://example.com").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(HttpUrl::parse("https://x/").is_err());
        assert!(HttpUrl::parse("http://:80/").is_err());
        assert!(HttpUrl::parse("http://h:99999/").is_err());
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abc");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab").is_err());
    }
}
