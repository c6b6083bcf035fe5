//! Owns the gzip form of an auction's DSP request (issue 16): the body is compressed once per
//! auction ([`crate::body_gzip`]), only when a DSP that asked for gzip (`"gzip": true` at
//! onboarding) is called, and the same bytes go to every such DSP; the header lines that say
//! so are pre-encoded per OpenRTB version. A body that gzip does not make smaller, or one too
//! large to compress on the hot path, goes out as it is, still with `Accept-Encoding: gzip`.

pub use crate::body_gzip::RequestGzip;
use crate::client::{
    OPENRTB_2_5_JSON_ACCEPT_GZIP_HEADERS, OPENRTB_2_5_JSON_GZIP_HEADERS,
    OPENRTB_2_6_JSON_ACCEPT_GZIP_HEADERS, OPENRTB_2_6_JSON_GZIP_HEADERS,
};
use rtb_core::version::OpenRtbVersion;

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
