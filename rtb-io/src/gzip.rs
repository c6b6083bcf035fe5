//! Owns HTTP content codings of answers: whether a client accepts gzip (`Accept-Encoding`,
//! RFC 9110 §12.5.3), which answers are worth compressing, and a reusable gzip encoder (one
//! per worker, libdeflate's) that writes a gzip member (RFC 1952) into a buffer it keeps.
//!
//! Bounded: only bodies of [`GZIP_RESPONSE_BYTES_MIN`] to [`GZIP_RESPONSE_BYTES_MAX`] bytes are
//! compressed, at the fastest level: about 19 us for a 3.4 KB answer, about 1.5 ms at the upper
//! bound (BENCHMARKS.md, "gzip answers"), which is why the bound exists. A body that does not
//! get smaller is sent as it is.

use libdeflater::{CompressionLvl, Compressor};

/// Smallest body compressed. Below it the 18 bytes of gzip framing and the CPU buy little: a
/// 1 KB JSON answer shrinks to about 500 bytes, one TCP segment either way.
pub const GZIP_RESPONSE_BYTES_MIN: usize = 1024;
/// Largest body compressed; a larger one goes out as it is, so a single answer cannot take a
/// worker's core for long.
pub const GZIP_RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// Whether a body of `len` bytes is compressed when the client accepts gzip.
pub fn worth_gzipping(len: usize) -> bool {
    (GZIP_RESPONSE_BYTES_MIN..=GZIP_RESPONSE_BYTES_MAX).contains(&len)
}

/// What one `Accept-Encoding` header value says about gzip: `Some(true)` acceptable,
/// `Some(false)` refused (`gzip;q=0`), `None` not mentioned. An explicit `gzip` (or its alias
/// `x-gzip`) entry wins over `*`.
pub fn accepts_gzip(value: &[u8]) -> Option<bool> {
    let mut wildcard = None;
    for entry in value.split(|&b| b == b',') {
        let mut parts = entry.split(|&b| b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let weighted_in = parts.all(|param| !is_zero_weight(param.trim_ascii()));
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            return Some(weighted_in);
        }
        if coding == b"*" {
            wildcard = Some(weighted_in);
        }
    }
    wildcard
}

/// `q=0`, `q=0.0`, `q=0.000`: the coding is not acceptable.
fn is_zero_weight(param: &[u8]) -> bool {
    let Some(value) = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))
    else {
        return false;
    };
    match value.split_first() {
        Some((b'0', rest)) => {
            rest.is_empty() || (rest[0] == b'.' && rest[1..].iter().all(|&d| d == b'0'))
        }
        _ => false,
    }
}

/// A gzip encoder and its output buffer, both reused from body to body.
pub struct GzipEncoder {
    compressor: Compressor,
    out: Vec<u8>,
}

impl std::fmt::Debug for GzipEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipEncoder")
            .field("out_capacity", &self.out.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for GzipEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl GzipEncoder {
    /// A fastest-level encoder (libdeflate's level 1: whole buffers, no streaming state to
    /// reset between bodies, which is what made miniz_oxide slow on small ones).
    pub fn new() -> Self {
        Self {
            // Level 1: libdeflate's `fastest()` is level 0, which stores without compressing.
            compressor: Compressor::new(CompressionLvl::new(1).unwrap_or_default()),
            out: Vec::new(),
        }
    }

    /// `body` as one gzip member, or `None` when that is not smaller than `body` (or the
    /// encoder failed, which the caller treats the same way: send the body as it is).
    pub fn compress(&mut self, body: &[u8]) -> Option<&[u8]> {
        // Sized to libdeflate's bound, so the call cannot run out of room.
        let bound = self.compressor.gzip_compress_bound(body.len());
        self.out.resize(bound, 0);
        let len = self.compressor.gzip_compress(body, &mut self.out).ok()?;
        self.out.truncate(len);
        (len < body.len()).then_some(&self.out[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::gunzip_limited;

    /// The server's own request decoder, so what it sends is what it would accept.
    fn gunzip(data: &[u8]) -> Vec<u8> {
        gunzip_limited(data, GZIP_RESPONSE_BYTES_MAX).unwrap()
    }

    #[test]
    fn compresses_to_a_valid_gzip_member_and_reuses_its_buffer() {
        let mut encoder = GzipEncoder::new();
        // About 120 KB: inside the range the server compresses.
        let body: Vec<u8> = (0..5_000u32)
            .flat_map(|i| format!("{{\"bid\":{i},\"price\":1.5}},").into_bytes())
            .collect();
        assert!(worth_gzipping(body.len()), "{}", body.len());
        let gz = encoder.compress(&body).unwrap().to_vec();
        assert!(gz.len() < body.len() / 4, "{} -> {}", body.len(), gz.len());
        assert_eq!(gunzip(&gz), body);
        let small =
            br#"{"id":"x","seatbid":[{"bid":[{"id":"1","impid":"1","price":1.5}]}]}"#.repeat(20);
        let gz = encoder.compress(&small).unwrap().to_vec();
        assert_eq!(gunzip(&gz), small);
    }

    #[test]
    fn incompressible_bodies_are_left_alone() {
        let mut encoder = GzipEncoder::new();
        // A xorshift stream: no repetition for deflate to find.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(encoder.compress(&noise), None);
    }

    #[test]
    fn accept_encoding_values() {
        for (value, expected) in [
            (&b"gzip"[..], Some(true)),
            (b"deflate, gzip;q=1.0, br", Some(true)),
            (b"GZIP", Some(true)),
            (b"x-gzip", Some(true)),
            (b"gzip;q=0", Some(false)),
            (b"gzip; q=0.000", Some(false)),
            (b"gzip;q=0.5", Some(true)),
            (b"*", Some(true)),
            (b"*;q=0", Some(false)),
            (b"*, gzip;q=0", Some(false)),
            (b"br, deflate", None),
            (b"identity", None),
            (b"", None),
        ] {
            assert_eq!(
                accepts_gzip(value),
                expected,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn only_mid_sized_bodies_are_worth_it() {
        assert!(!worth_gzipping(GZIP_RESPONSE_BYTES_MIN - 1));
        assert!(worth_gzipping(GZIP_RESPONSE_BYTES_MIN));
        assert!(worth_gzipping(GZIP_RESPONSE_BYTES_MAX));
        assert!(!worth_gzipping(GZIP_RESPONSE_BYTES_MAX + 1));
    }
}
