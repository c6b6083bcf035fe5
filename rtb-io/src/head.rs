//! Owns request head parsing: a pure function from the bytes read so far to a parsed head (or
//! "need more bytes", or a [`Reject`] that says which 4xx/5xx to answer), including the body
//! framing rules (Content-Length, `Transfer-Encoding: chunked`, request smuggling checks).
//!
//! No IO and no allocation per header: the connection loop in `conn.rs` calls it on its read
//! buffer, and the fuzz targets in `fuzz/` call the very same function.

use std::ops::Range;

use http::{Method, StatusCode};
use smallvec::SmallVec;

use crate::{
    http::REQUEST_HEADERS_INLINE,
    limits::{ServerLimits, WorkerStats, HEADERS_COUNT_CAP},
};

/// Why a request was refused; maps to a status and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed head or framing, request smuggling attempt.
    BadRequest(&'static str),
    /// 408: head or body not received in time.
    Timeout,
    /// 411: body-carrying method without a length.
    LengthRequired,
    /// 413: body over a limit.
    BodyTooLarge,
    /// 431: head over a limit.
    HeadTooLarge,
    /// 505: HTTP version other than 1.0 or 1.1.
    BadVersion,
}

impl Reject {
    /// The status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }

    /// A short static reason, sent in the JSON error body.
    pub fn message(self) -> &'static str {
        match self {
            Self::BadRequest(why) => why,
            Self::Timeout => "request not received in time",
            Self::LengthRequired => "content-length required",
            Self::BodyTooLarge => "body too large",
            Self::HeadTooLarge => "request head too large",
            Self::BadVersion => "http version not supported",
        }
    }

    pub(crate) fn count(self, stats: &WorkerStats) {
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
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`, already checked against `body_bytes_max`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed head as offsets into the read buffer, so the buffer can be mutated afterwards.
#[derive(Debug)]
pub struct ParsedHead {
    /// Bytes of the head, its final empty line included; the body starts here.
    pub len: usize,
    /// Method.
    pub method: Method,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The request target.
    pub path: Range<usize>,
    /// `(name, value)` of every header, in order.
    pub headers: SmallVec<[(Range<usize>, Range<usize>); REQUEST_HEADERS_INLINE]>,
    /// How the body is framed.
    pub framing: Framing,
    /// Close after answering (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
    /// `Content-Encoding: gzip` (or `x-gzip`): the body is decoded before the handler sees it.
    pub gzip: bool,
    /// A `Content-Encoding` other than one `gzip` and any `identity`: answered 415 once the
    /// body is read, without calling the handler (the connection stays usable).
    pub unsupported_encoding: bool,
    /// `Accept-Encoding` allows gzip: answers worth it are compressed (see [`crate::gzip`]).
    pub accepts_gzip: bool,
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

/// Parses a complete head from the front of `buf`, `Ok(None)` when more bytes are needed (and
/// the head limit is not reached yet). Bytes after the head (body, pipelined requests) are left
/// alone; every range in the result indexes `buf`.
pub fn parse_request_head(buf: &[u8], limits: &ServerLimits) -> Result<Option<ParsedHead>, Reject> {
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
    let mut facts = HeaderFacts {
        close: version_minor == 0,
        ..HeaderFacts::default()
    };
    for h in req.headers.iter() {
        headers.push((offset_in(buf, h.name.as_bytes()), offset_in(buf, h.value)));
        facts.read(h.name, h.value, version_minor)?;
    }
    let framing = facts.framing(&method, version_minor, limits)?;
    Ok(Some(ParsedHead {
        len,
        method,
        version_minor,
        path,
        headers,
        framing,
        close: facts.close,
        expect_continue: facts.expect_continue,
        gzip: facts.codings.gzip == 1 && !facts.codings.unsupported,
        unsupported_encoding: facts.codings.unsupported || facts.codings.gzip > 1,
        accepts_gzip: facts.accepts_gzip.unwrap_or(false),
    }))
}

/// What the headers of one request say about framing, the connection and codings.
#[derive(Debug, Default)]
struct HeaderFacts {
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
    expect_continue: bool,
    codings: Codings,
    accepts_gzip: Option<bool>,
}

impl HeaderFacts {
    /// Takes in one header; refuses the ones that make the request ambiguous or unsupported.
    fn read(&mut self, name: &str, value: &[u8], version_minor: u8) -> Result<(), Reject> {
        if name.eq_ignore_ascii_case("content-length") {
            let n =
                parse_length(value.trim_ascii()).ok_or(Reject::BadRequest("bad content-length"))?;
            if self.content_length.is_some_and(|prev| prev != n) {
                return Err(Reject::BadRequest("conflicting content-length"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a lone `chunked` is accepted: anything else is a smuggling vector.
            if self.chunked || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Reject::BadRequest("unsupported transfer-encoding"));
            }
            self.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                self.close = true;
            } else if has_token(value, "keep-alive") {
                self.close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(Reject::BadRequest("unsupported expectation"));
            }
            self.expect_continue = version_minor == 1;
        } else if name.eq_ignore_ascii_case("content-encoding") {
            self.codings.add(value);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            self.accepts_gzip = self.accepts_gzip.or(crate::gzip::accepts_gzip(value));
        }
        Ok(())
    }

    /// How the body is framed, once every header is in.
    fn framing(
        &self,
        method: &Method,
        version_minor: u8,
        limits: &ServerLimits,
    ) -> Result<Framing, Reject> {
        match (self.content_length, self.chunked) {
            (Some(_), true) => Err(Reject::BadRequest("content-length with transfer-encoding")),
            (None, true) if version_minor == 0 => {
                Err(Reject::BadRequest("transfer-encoding in HTTP/1.0"))
            }
            (None, true) => Ok(Framing::Chunked),
            (Some(0), false) => Ok(Framing::Empty),
            (Some(n), false) if n > limits.body_bytes_max => Err(Reject::BodyTooLarge),
            (Some(n), false) => Ok(Framing::Length(n)),
            (None, false) => {
                if method == Method::POST || method == Method::PUT || method == Method::PATCH {
                    return Err(Reject::LengthRequired);
                }
                Ok(Framing::Empty)
            }
        }
    }
}

/// The content codings applied to a request body, over every `Content-Encoding` header.
#[derive(Debug, Default)]
struct Codings {
    /// How many times gzip was applied: the server decodes one layer.
    gzip: u8,
    /// Any coding other than gzip and identity.
    unsupported: bool,
}

impl Codings {
    fn add(&mut self, value: &[u8]) {
        for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                self.gzip = self.gzip.saturating_add(1);
            } else if !(coding.is_empty() || coding.eq_ignore_ascii_case(b"identity")) {
                self.unsupported = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<ParsedHead>, Reject> {
        parse_request_head(raw, &ServerLimits::default())
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
    fn content_codings() {
        let codings = |value: &str| {
            let raw = format!(
                "POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-encoding: {value}\r\n\r\n"
            );
            let h = parse(raw.as_bytes()).unwrap().unwrap();
            (h.gzip, h.unsupported_encoding)
        };
        assert_eq!(codings("gzip"), (true, false));
        assert_eq!(codings("X-Gzip"), (true, false));
        assert_eq!(codings("identity"), (false, false));
        assert_eq!(codings("identity, gzip"), (true, false));
        assert_eq!(codings("br"), (false, true));
        assert_eq!(codings("gzip, br"), (false, true));
        assert_eq!(codings("gzip, gzip"), (false, true));
        let h = parse(b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-encoding: gzip\r\ncontent-encoding: deflate\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.unsupported_encoding && !h.gzip);
        let plain = parse(b"POST / HTTP/1.1\r\ncontent-length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!plain.gzip && !plain.unsupported_encoding && !plain.accepts_gzip);
        let h = parse(b"GET / HTTP/1.1\r\naccept-encoding: br, gzip\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.accepts_gzip);
        let h = parse(b"GET / HTTP/1.1\r\naccept-encoding: gzip;q=0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.accepts_gzip);
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
