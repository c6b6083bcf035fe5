//! Owns a worker's request compressor for upstreams that take gzip (the exchange compresses
//! an auction's DSP request once, for every DSP that asked for gzip): a reused encoder
//! ([`GzipEncoder`]) and reused buffers the compressed bodies are cut from, shared as `Bytes`
//! for as long as the calls need them. A body that gzip does not make smaller, or one too
//! large to compress on the hot path ([`GZIP_REQUEST_BYTES_MAX`]), goes out as it is.

use bytes::Bytes;

use crate::{
    gzip::{GzipEncoder, GZIP_RESPONSE_BYTES_MAX},
    BodyPool,
};

/// Largest request body compressed (a larger one goes as it is): the bound the server uses
/// for its own answers, about 1.5 ms of CPU at the fastest level.
pub const GZIP_REQUEST_BYTES_MAX: usize = GZIP_RESPONSE_BYTES_MAX;
/// Buffers the compressed bodies are cut from, per worker, and their size.
const GZIP_BODY_BUFFERS: usize = 8;
const GZIP_BODY_BUFFER_BYTES: usize = 16 * 1024;

/// A worker's request compressor.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_requests_once_into_shared_bytes() {
        let mut gzip = RequestGzip::default();
        let body = br#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#.repeat(40);
        let gz = gzip.compress(&body).unwrap();
        assert!(gz.len() < body.len() / 4);
        let decoded = crate::body::gunzip_limited(&gz, body.len()).unwrap();
        assert_eq!(decoded, body);
        assert_eq!(gzip.compress(b"{}"), None, "not smaller: sent as it is");
        let huge = vec![b' '; GZIP_REQUEST_BYTES_MAX + 1];
        assert_eq!(gzip.compress(&huge), None, "too large for the hot path");
    }
}
