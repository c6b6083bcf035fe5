//! Owns decoding a gzip body (RFC 1952, one member) into a caller's reused buffer, bounded:
//! the DSP client decodes `Content-Encoding: gzip` answers with it. Past `limit` bytes of
//! output the body is refused, so a decompression bomb costs at most `limit` bytes and the CPU
//! to produce them. The inflater's state (about 40 KB) is kept per thread, so a worker decodes
//! every answer with one, allocated at its first gzip answer: nothing per answer, nothing per
//! connection.

use std::cell::RefCell;

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Output grown at most this much per inflate step, so a small limit is not over-reserved.
const INFLATE_STEP_BYTES: usize = 16 * 1024;
/// gzip header flags (RFC 1952 §2.3.1).
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;
const FLAGS_RESERVED: u8 = 0xe0;

thread_local! {
    /// This thread's raw-deflate inflater, reset per body.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Why a gzip body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GunzipError {
    /// It decodes to more than the limit.
    TooLarge,
    /// Not one well-formed gzip member (bad header, bad deflate data, bad CRC or length).
    Malformed,
}

/// Decodes the gzip member `compressed` into `out` (cleared first); fails past `limit` bytes.
pub fn gunzip_into(compressed: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), GunzipError> {
    out.clear();
    let deflated = skip_header(compressed).ok_or(GunzipError::Malformed)?;
    let consumed = INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater = slot.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        inflate_limited(inflater, deflated, out, limit)
    })?;
    let trailer = deflated
        .get(consumed..consumed + 8)
        .ok_or(GunzipError::Malformed)?;
    let mut crc = Crc::new();
    crc.update(out);
    let (want_crc, want_len) = trailer.split_at(4);
    // ISIZE is the length modulo 2^32.
    if want_crc != crc.sum().to_le_bytes() || want_len != (out.len() as u32).to_le_bytes() {
        return Err(GunzipError::Malformed);
    }
    Ok(())
}

/// Inflates `input` into `out` up to `limit` bytes; the deflate bytes consumed.
fn inflate_limited(
    inflater: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, GunzipError> {
    let mut consumed = 0;
    loop {
        // One byte of room past the limit tells "exactly at it" from "over it".
        let room = (limit + 1 - out.len()).min(INFLATE_STEP_BYTES);
        out.reserve_exact(room);
        let (in_before, out_before) = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|_| GunzipError::Malformed)?;
        let used = usize::try_from(inflater.total_in() - in_before).unwrap_or(usize::MAX);
        input = input.get(used..).ok_or(GunzipError::Malformed)?;
        consumed += used;
        if out.len() > limit {
            return Err(GunzipError::TooLarge);
        }
        match status {
            Status::StreamEnd => return Ok(consumed),
            _ if used == 0 && out.len() == out_before => return Err(GunzipError::Malformed),
            _ => {}
        }
    }
}

/// The deflate stream after a gzip member's header; `None` when the header is not one.
fn skip_header(data: &[u8]) -> Option<&[u8]> {
    let (fixed, mut rest) = (data.get(..10)?, data.get(10..)?);
    let flags = fixed[3];
    if fixed[..3] != [0x1f, 0x8b, 8] || flags & FLAGS_RESERVED != 0 {
        return None;
    }
    if flags & FEXTRA != 0 {
        let len = usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?]));
        rest = rest.get(2 + len..)?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = rest.iter().position(|&b| b == 0)?;
            rest = &rest[end + 1..];
        }
    }
    if flags & FHCRC != 0 {
        rest = rest.get(2..)?;
    }
    Some(rest)
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
        let truncated = &gz[..gz.len() - 3];
        let mut bad_data = gz.clone();
        bad_data[12] ^= 0xff;
        for bad in [&b"nope"[..], &bad_crc, truncated, &bad_data, &gz[..10]] {
            assert_eq!(gunzip_into(bad, &mut out, 100), Err(GunzipError::Malformed));
        }
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
