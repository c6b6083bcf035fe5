//! Owns body framing shared by the server and the client: an incremental chunked
//! transfer-coding decoder and a size-bounded gzip decoder.
//!
//! Both check a limit before buffering past it, so a peer cannot make us allocate more than the
//! configured maximum plus one read.

use std::io::Read;

use bytes::{Buf, BytesMut};

/// Longest trailer section accepted after the last chunk, bytes.
pub const TRAILER_BYTES_MAX: usize = 4 * 1024;
/// Longest chunk size line (size, extensions, CRLF) accepted, bytes. Enforced on complete lines
/// too, so whether a line is refused does not depend on how the bytes were split into reads
/// (found by the `http_head` fuzz target).
pub const CHUNK_SIZE_LINE_BYTES_MAX: usize = 64;

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Malformed chunk framing or gzip stream.
    Malformed(&'static str),
    /// Decoded size would exceed the limit.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Incremental decoder for `Transfer-Encoding: chunked`. Feed it the connection's read buffer;
/// it consumes what it can and appends chunk data to `out`.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    limit: usize,
}

impl ChunkedDecoder {
    /// A decoder that fails with [`BodyError::TooLarge`] past `limit` decoded bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            state: ChunkState::Size,
            limit,
        }
    }

    /// Whether the terminating chunk and trailers were consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes framing and data from the front of `input`, appending data to `out`. Returns
    /// `Ok(true)` when the body is complete; bytes after it stay in `input` (pipelining).
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<bool, BodyError> {
        loop {
            match self.state {
                // Only the first CHUNK_SIZE_LINE_BYTES_MAX bytes are ever looked at, so the
                // outcome (and its message) is the same however the line was split into reads.
                ChunkState::Size => match httparse::parse_chunk_size(
                    &input[..input.len().min(CHUNK_SIZE_LINE_BYTES_MAX)],
                ) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        input.advance(used);
                        let size = usize::try_from(size).map_err(|_| BodyError::TooLarge)?;
                        if size > self.limit.saturating_sub(out.len()) {
                            return Err(BodyError::TooLarge);
                        }
                        self.state = if size == 0 {
                            ChunkState::Trailers(0)
                        } else {
                            out.reserve(size);
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        // A size line longer than this is not a chunk size; refuse to buffer it.
                        if input.len() >= CHUNK_SIZE_LINE_BYTES_MAX {
                            return Err(BodyError::Malformed("chunk size line too long"));
                        }
                        return Ok(false);
                    }
                    Err(_) => return Err(BodyError::Malformed("bad chunk size")),
                },
                ChunkState::Data(remaining) => {
                    let take = remaining.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input.advance(take);
                    if take < remaining {
                        self.state = ChunkState::Data(remaining - take);
                        return Ok(false);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if input.len() < 2 {
                        return Ok(false);
                    }
                    if &input[..2] != b"\r\n" {
                        return Err(BodyError::Malformed("missing CRLF after chunk"));
                    }
                    input.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers(seen) => {
                    // Trailer lines are skipped up to the empty line that ends them.
                    let Some(eol) = input.iter().position(|&b| b == b'\n') else {
                        if seen + input.len() > TRAILER_BYTES_MAX {
                            return Err(BodyError::Malformed("trailers too long"));
                        }
                        return Ok(false);
                    };
                    let line_is_empty = eol == 0 || (eol == 1 && input[0] == b'\r');
                    input.advance(eol + 1);
                    if line_is_empty {
                        self.state = ChunkState::Done;
                    } else if seen + eol + 1 > TRAILER_BYTES_MAX {
                        return Err(BodyError::Malformed("trailers too long"));
                    } else {
                        self.state = ChunkState::Trailers(seen + eol + 1);
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }
}

/// Decodes a whole gzip body, failing once the output would exceed `limit` bytes.
pub fn gunzip_limited(compressed: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(limit.min(compressed.len().saturating_mul(4)));
    let decoder = flate2::read::GzDecoder::new(compressed);
    // One byte past the limit tells "exactly at the limit" from "over it".
    let mut bounded = decoder.take(limit as u64 + 1);
    bounded
        .read_to_end(&mut out)
        .map_err(|_| BodyError::Malformed("bad gzip body"))?;
    if out.len() > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(wire: &[u8], limit: usize, step: usize) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut dec = ChunkedDecoder::new(limit);
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        for piece in wire.chunks(step) {
            input.extend_from_slice(piece);
            if dec.decode(&mut input, &mut out)? {
                return Ok((out.to_vec(), input.to_vec()));
            }
        }
        Err(BodyError::Malformed("incomplete"))
    }

    #[test]
    fn chunked_any_split() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for step in 1..wire.len() {
            let (body, rest) = decode_all(wire, 100, step).unwrap();
            assert_eq!(body, b"hello world");
            // Bytes after the body are not consumed, whatever the split.
            assert!(b"NEXT".starts_with(&rest));
        }
    }

    #[test]
    fn chunked_limit() {
        assert_eq!(
            decode_all(b"5\r\nhello\r\n0\r\n\r\n", 4, 64),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            decode_all(b"ffffffffffffffffff\r\n", 4, 64),
            Err(BodyError::Malformed("bad chunk size"))
        );
        assert!(matches!(
            decode_all(b"5\r\nhelloXX0\r\n\r\n", 40, 64),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn chunk_size_line_limit_does_not_depend_on_the_read_split() {
        // Extensions may hold any octet, a bare LF included: the line ends at CRLF only.
        let mut wire = b"6;ext=".to_vec();
        wire.extend_from_slice(&[b'x'; 40]);
        wire.extend_from_slice(b"\n");
        wire.extend_from_slice(&[b'y'; 40]);
        wire.extend_from_slice(b"\r\nhello!\r\n0\r\n\r\n");
        for step in [1, 7, wire.len()] {
            assert_eq!(
                decode_all(&wire, 100, step),
                Err(BodyError::Malformed("chunk size line too long")),
                "step {step}"
            );
        }
        // At the limit exactly: accepted whatever the split.
        let mut wire = b"6;".to_vec();
        wire.extend_from_slice(&[b'e'; CHUNK_SIZE_LINE_BYTES_MAX - 5]);
        wire.extend_from_slice(b"\r\nhello!\r\n0\r\n\r\n");
        for step in [1, 7, wire.len()] {
            assert_eq!(decode_all(&wire, 100, step).unwrap().0, b"hello!");
        }
    }

    #[test]
    fn gzip_limit() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&[b'a'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip_limited(&gz, 1000).unwrap().len(), 1000);
        assert_eq!(gunzip_limited(&gz, 999), Err(BodyError::TooLarge));
        assert!(matches!(
            gunzip_limited(b"nope", 10),
            Err(BodyError::Malformed(_))
        ));
    }
}
