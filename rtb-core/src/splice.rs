//! Rewrites the top-level `tmax` of a raw bid request for one DSP without re-encoding it: the
//! bytes before and after the old value are copied, the new value goes between; when `tmax` is
//! absent a member is inserted right after the opening brace. Where the value sits was found by
//! [`crate::request::BidRequest::decode`] (its `tmax_site`).

use crate::request::TmaxSite;

/// Why a body could not be rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// `tmax` is spelled with escapes in the raw body; rewriting it would add a duplicate key.
    Unlocatable,
    /// The site does not fit the bytes given (they are not the ones that were decoded).
    OutOfBounds,
}

/// Writes `raw` with its top-level `tmax` set to `tmax_ms` into `out` (cleared first).
pub fn splice_tmax(
    raw: &[u8],
    site: TmaxSite,
    tmax_ms: u32,
    out: &mut Vec<u8>,
) -> Result<(), SpliceError> {
    out.clear();
    let mut digits = [0u8; 10];
    let value = u32_digits(tmax_ms, &mut digits);
    match site {
        TmaxSite::Value { start, end } => {
            let (start, end) = (start as usize, end as usize);
            if start > end || end > raw.len() {
                return Err(SpliceError::OutOfBounds);
            }
            out.reserve(raw.len() + value.len());
            out.extend_from_slice(&raw[..start]);
            out.extend_from_slice(value);
            out.extend_from_slice(&raw[end..]);
        }
        TmaxSite::Absent {
            insert_at,
            object_empty,
        } => {
            let at = insert_at as usize;
            if at == 0 || at > raw.len() || raw[at - 1] != b'{' {
                return Err(SpliceError::OutOfBounds);
            }
            out.reserve(raw.len() + value.len() + 9);
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(b"\"tmax\":");
            out.extend_from_slice(value);
            if !object_empty {
                out.push(b',');
            }
            out.extend_from_slice(&raw[at..]);
        }
        TmaxSite::Unlocatable => return Err(SpliceError::Unlocatable),
    }
    Ok(())
}

/// Decimal digits of `value`, written at the end of `digits`.
pub(crate) fn u32_digits(mut value: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Decoder, Document};
    use crate::request::BidRequest;

    fn splice(raw: &str, tmax: u32) -> Result<String, SpliceError> {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let site = BidRequest::decode(raw.as_bytes(), &mut doc, &mut decoder)
            .unwrap()
            .tmax_site;
        let mut out = Vec::new();
        splice_tmax(raw.as_bytes(), site, tmax, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    const IMP: &str = r#""imp":[{"id":"1","banner":{}}]"#;

    #[test]
    fn replaces_an_existing_value_keeping_everything_else() {
        assert_eq!(
            splice(&format!(r#"{{"id":"a", "tmax" : 500 ,{IMP}}}"#), 73).unwrap(),
            format!(r#"{{"id":"a", "tmax" : 73 ,{IMP}}}"#)
        );
        assert_eq!(
            splice(&format!(r#"{{"id":"a",{IMP},"tmax":1.5e2}}"#), 0).unwrap(),
            format!(r#"{{"id":"a",{IMP},"tmax":0}}"#)
        );
    }

    #[test]
    fn digits_are_decimal() {
        for v in [0u32, 7, 10, 250, u32::MAX] {
            assert_eq!(u32_digits(v, &mut [0; 10]), v.to_string().as_bytes());
        }
    }

    #[test]
    fn inserts_when_absent() {
        assert_eq!(
            splice(&format!(r#"  {{"id":"a",{IMP}}}"#), 4_294_967_295).unwrap(),
            format!(r#"  {{"tmax":4294967295,"id":"a",{IMP}}}"#)
        );
    }

    #[test]
    fn refuses_an_escaped_key_and_bad_sites() {
        let raw = format!(r#"{{"id":"a","t\u006dax":9,{IMP}}}"#);
        assert_eq!(splice(&raw, 5), Err(SpliceError::Unlocatable));
        let mut out = Vec::new();
        assert_eq!(
            splice_tmax(b"{}", TmaxSite::Value { start: 1, end: 9 }, 1, &mut out),
            Err(SpliceError::OutOfBounds)
        );
        assert_eq!(
            splice_tmax(
                b"[]",
                TmaxSite::Absent {
                    insert_at: 1,
                    object_empty: true
                },
                1,
                &mut out
            ),
            Err(SpliceError::OutOfBounds)
        );
        splice_tmax(
            b"{}",
            TmaxSite::Absent {
                insert_at: 1,
                object_empty: true,
            },
            1,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, br#"{"tmax":1}"#);
    }
}
