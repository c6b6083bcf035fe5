//! Owns the gzip form of an auction's DSP request (issue 16): the body is compressed once per
//! auction, only when a DSP that asked for gzip (`"gzip": true` at onboarding) is called, and
//! the same bytes go to every such DSP; the header lines that say so are pre-encoded per
//! OpenRTB version. A body that gzip does not make smaller, or one too large to compress on the
//! hot path, goes out as it is, still with `Accept-Encoding: gzip`.

use bytes::Bytes;
use rtb_core::version::OpenRtbVersion;
use rtb_io::{
    client::{
        OPENRTB_2_5_JSON_ACCEPT_GZIP_HEADERS, OPENRTB_2_5_JSON_GZIP_HEADERS,
        OPENRTB_2_6_JSON_ACCEPT_GZIP_HEADERS, OPENRTB_2_6_JSON_GZIP_HEADERS,
    },
    gzip::{GzipEncoder, GZIP_RESPONSE_BYTES_MAX},
    BodyPool,
};

/// Largest request body compressed for gzip DSPs (a larger one goes as it is): the bound the
/// server uses for its own answers, about 1.5 ms of CPU at the fastest level.
pub const GZIP_REQUEST_BYTES_MAX: usize = GZIP_RESPONSE_BYTES_MAX;
/// Buffers the compressed bodies are cut from, per worker, and their size.
const GZIP_BODY_BUFFERS: usize = 8;
const GZIP_BODY_BUFFER_BYTES: usize = 16 * 1024;

/// A worker's request compressor: a reused encoder, and reused buffers for the compressed
/// bodies (shared as `Bytes` for as long as the auction's calls need them).
#[derive(Debug)]
pub struct RequestGzip {
    encoder: GzipEncoder,
    bodies: BodyPool,
}

impl Default for RequestGzip {
    fn default() -> Self {
        Self {
            encoder: GzipEncoder::new(),
            bodies: BodyPool::new(GZIP_BODY_BUFFERS, GZIP_BODY_BUFFER_BYTES),
        }
    }
}

impl RequestGzip {
    /// `body` as one gzip member, or `None` when it is too large or gzip does not shrink it.
    pub fn compress(&mut self, body: &[u8]) -> Option<Bytes> {
        if body.len() > GZIP_REQUEST_BYTES_MAX {
            return None;
        }
        let gzipped = self.encoder.compress(body)?;
        Some(self.bodies.bytes(gzipped))
    }
}

/// The header lines of a call to a gzip DSP: with `Content-Encoding: gzip` when the body is
/// compressed; `Accept-Encoding: gzip` either way.
pub fn gzip_call_headers(version: OpenRtbVersion, compressed: bool) -> &'static [u8] {
    match (version, compressed) {
        (OpenRtbVersion::V2_5, true) => OPENRTB_2_5_JSON_GZIP_HEADERS,
        (OpenRtbVersion::V2_6, true) => OPENRTB_2_6_JSON_GZIP_HEADERS,
        (OpenRtbVersion::V2_5, false) => OPENRTB_2_5_JSON_ACCEPT_GZIP_HEADERS,
        (OpenRtbVersion::V2_6, false) => OPENRTB_2_6_JSON_ACCEPT_GZIP_HEADERS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_requests_once_into_shared_bytes() {
        let mut gzip = RequestGzip::default();
        let body = br#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#.repeat(40);
        let gz = gzip.compress(&body).unwrap();
        assert!(gz.len() < body.len() / 4);
        let decoded = rtb_io::body::gunzip_limited(&gz, body.len()).unwrap();
        assert_eq!(decoded, body);
        assert_eq!(gzip.compress(b"{}"), None, "not smaller: sent as it is");
        let huge = vec![b' '; GZIP_REQUEST_BYTES_MAX + 1];
        assert_eq!(gzip.compress(&huge), None, "too large for the hot path");
    }

    #[test]
    fn header_lines_say_what_the_body_is() {
        let h = std::str::from_utf8(gzip_call_headers(OpenRtbVersion::V2_5, true)).unwrap();
        assert!(h.contains("x-openrtb-version: 2.5\r\n"));
        assert!(h.contains("content-encoding: gzip\r\n"));
        assert!(h.contains("accept-encoding: gzip\r\n"));
        let h = std::str::from_utf8(gzip_call_headers(OpenRtbVersion::V2_6, false)).unwrap();
        assert!(h.contains("x-openrtb-version: 2.6\r\n"));
        assert!(!h.contains("content-encoding"));
        assert!(h.ends_with("accept-encoding: gzip\r\n"));
    }
}
