//! Owns decoding a gzip body (RFC 1952, one member) into a caller's reused buffer, bounded:
//! the DSP client decodes `Content-Encoding: gzip` answers with it. The member's trailer states
//! its decoded size (ISIZE); a body that states more than `limit` bytes is refused before any
//! work, and one whose data decodes to more than it states is refused by the decoder, which
//! writes no further than the buffer sized to that statement. So a decompression bomb costs
//! at most `limit` bytes of buffer and no inflating at all.
//!
//! libdeflate (through `libdeflater`) decodes whole buffers several times faster than
//! miniz_oxide's streaming inflater on answers of a few hundred bytes, whose cost was mostly
//! resetting that inflater's tables (BENCHMARKS.md, "gzip to DSPs"). Its decompressor is kept
//! per thread, so a worker decodes every answer with one, allocated at its first gzip answer:
//! nothing per answer, nothing per connection.

use std::cell::RefCell;

use libdeflater::{DecompressionError, Decompressor};

/// The smallest gzip member: a 10-byte header, an empty deflate block, an 8-byte trailer.
const GZIP_MEMBER_BYTES_MIN: usize = 20;

thread_local! {
    /// This thread's decompressor.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Why a gzip body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GunzipError {
    /// It states (or decodes to) more than the limit.
    TooLarge,
    /// Not one well-formed gzip member (bad header, bad deflate data, bad CRC or length).
    Malformed,
}

/// Decodes the gzip member `compressed` into `out` (cleared first); fails past `limit` bytes.
pub fn gunzip_into(compressed: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), GunzipError> {
    out.clear();
    if compressed.len() < GZIP_MEMBER_BYTES_MIN {
        return Err(GunzipError::Malformed);
    }
    let trailer = &compressed[compressed.len() - 4..];
    let stated = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let stated = usize::try_from(stated).map_err(|_| GunzipError::TooLarge)?;
    if stated > limit {
        return Err(GunzipError::TooLarge);
    }
    out.resize(stated, 0);
    let decoded = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = slot.get_or_insert_with(Decompressor::new);
        decompressor.gzip_decompress(compressed, out)
    });
    match decoded {
        // libdeflate checks the CRC and that the decoded size is the stated one.
        Ok(n) if n == stated => Ok(()),
        // More data than stated (a lying trailer) or anything else wrong.
        Ok(_) | Err(DecompressionError::BadData | DecompressionError::InsufficientSpace) => {
            out.clear();
            Err(GunzipError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{write::GzEncoder, Compression, GzBuilder};

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decodes_into_the_reused_buffer_up_to_the_limit() {
        let body = br#"{"id":"a","seatbid":[{"bid":[{"id":"1","price":1.5}]}]}"#.repeat(50);
        let gz = gzip(&body);
        let mut out = Vec::new();
        gunzip_into(&gz, &mut out, body.len()).unwrap();
        assert_eq!(out, body);
        let capacity = out.capacity();
        gunzip_into(&gz, &mut out, body.len()).unwrap();
        assert_eq!((out.len(), out.capacity()), (body.len(), capacity));
        assert_eq!(
            gunzip_into(&gz, &mut out, body.len() - 1),
            Err(GunzipError::TooLarge)
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MB of zeros in about 64 KB (deflate's best ratio is about 1,000:1): refused after
        // 1 MB of output.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        let mut out = Vec::new();
        assert_eq!(
            gunzip_into(&bomb, &mut out, 1 << 20),
            Err(GunzipError::TooLarge)
        );
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
    }

    #[test]
    fn malformed_members_are_refused() {
        let gz = gzip(b"hello, hello, hello");
        let mut out = Vec::new();
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1;
        let mut bad_data = gz.clone();
        bad_data[12] ^= 0xff;
        for bad in [&b"nope"[..], &bad_crc, &bad_data, &gz[..10]] {
            assert_eq!(gunzip_into(bad, &mut out, 100), Err(GunzipError::Malformed));
        }
        // Truncated: the last four bytes read as the size are something else; refused either
        // way, as too large or malformed.
        assert!(gunzip_into(&gz[..gz.len() - 3], &mut out, 100).is_err());
    }

    #[test]
    fn optional_header_fields_are_skipped() {
        let mut enc = GzBuilder::new()
            .filename("answer.json")
            .comment("from a DSP")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), Compression::default());
        enc.write_all(b"{\"id\":\"x\"}").unwrap();
        let gz = enc.finish().unwrap();
        let mut out = Vec::new();
        gunzip_into(&gz, &mut out, 100).unwrap();
        assert_eq!(out, b"{\"id\":\"x\"}");
    }
}
