//! Owns HTTP content codings of answers: whether a client accepts gzip (`Accept-Encoding`,
//! RFC 9110 §12.5.3), which answers are worth compressing, and a reusable gzip encoder (one
//! per worker) that writes a gzip member (RFC 1952) into a buffer it keeps.
//!
//! Bounded: only bodies of [`GZIP_RESPONSE_BYTES_MIN`] to [`GZIP_RESPONSE_BYTES_MAX`] bytes are
//! compressed, at the fastest level: about 19 us for a 3.4 KB answer, about 1.5 ms at the upper
//! bound (BENCHMARKS.md, "gzip answers"), which is why the bound exists. A body that does not
//! get smaller is sent as it is.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Smallest body compressed. Below it the 18 bytes of gzip framing and the CPU buy little: a
/// 1 KB JSON answer shrinks to about 500 bytes, one TCP segment either way.
pub const GZIP_RESPONSE_BYTES_MIN: usize = 1024;
/// Largest body compressed; a larger one goes out as it is, so a single answer cannot take a
/// worker's core for long.
pub const GZIP_RESPONSE_BYTES_MAX: usize = 256 * 1024;

/// The fixed gzip member header: magic, deflate, no flags, no mtime, no extra flags, OS
/// unknown (RFC 1952 §2.3).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// Deflate's worst case grows stored blocks by 5 bytes per 16 KB, plus the final block.
fn deflate_bound(len: usize) -> usize {
    len + len / 16_384 * 5 + 64
}

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

/// A gzip encoder and its output buffer, both reused from answer to answer.
pub struct GzipEncoder {
    compress: Compress,
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
    /// A fastest-level encoder (raw deflate wrapped in the gzip header and trailer here).
    pub fn new() -> Self {
        Self {
            compress: Compress::new(Compression::fast(), false),
            out: Vec::new(),
        }
    }

    /// `body` as one gzip member, or `None` when that is not smaller than `body` (or the
    /// encoder failed, which the caller treats the same way: send the body as it is).
    pub fn compress(&mut self, body: &[u8]) -> Option<&[u8]> {
        self.out.clear();
        self.out
            .reserve(GZIP_HEADER.len() + deflate_bound(body.len()) + 8);
        self.out.extend_from_slice(&GZIP_HEADER);
        self.compress.reset();
        let mut input = body;
        // The buffer holds the worst case, so one call finishes; a few more cover a surprise.
        for _ in 0..4 {
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.out, FlushCompress::Finish)
                .ok()?;
            let consumed = usize::try_from(self.compress.total_in() - before).ok()?;
            input = input.get(consumed..)?;
            if status == Status::StreamEnd {
                let mut crc = Crc::new();
                crc.update(body);
                self.out.extend_from_slice(&crc.sum().to_le_bytes());
                // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1).
                self.out
                    .extend_from_slice(&(body.len() as u32).to_le_bytes());
                return (self.out.len() < body.len()).then_some(&self.out[..]);
            }
            self.out.reserve(deflate_bound(input.len()));
        }
        None
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
