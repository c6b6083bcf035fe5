//! Owns the OpenRTB version of a bid request: what the inbound `x-openrtb-version` header
//! says, decided once per request. The shell hands the header's raw value to
//! [`crate::engine::Engine::start`]; the plan says which version to state to every DSP and the
//! finished auction which to state on the answer.
//!
//! The rule: no header means 2.6 (the version this exchange validates by, and what a client
//! that does not say is most likely to send); `2.5` and `2.6` (surrounding spaces allowed) are
//! taken as they are and forwarded as they came; any other value is refused with a 400 naming
//! the header, since the exchange would otherwise forward, under a version it does not speak, a
//! request whose meaning it cannot vouch for.

use crate::error::{FieldPath, RequestError, Rule};

/// The header's name, as rtb-core's errors name it.
pub const OPENRTB_VERSION_HEADER: &str = "x-openrtb-version";

/// An OpenRTB version the exchange speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OpenRtbVersion {
    /// OpenRTB 2.5.
    V2_5,
    /// OpenRTB 2.6: the default when the request does not say.
    #[default]
    V2_6,
}

impl OpenRtbVersion {
    /// Every version spoken, oldest first.
    pub const ALL: [OpenRtbVersion; 2] = [OpenRtbVersion::V2_5, OpenRtbVersion::V2_6];

    /// The version a request with this `x-openrtb-version` value (`None`: no header) is in,
    /// or the 400 error for a version the exchange does not speak.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, RequestError> {
        let Some(value) = value else {
            return Ok(Self::default());
        };
        match value.trim_ascii() {
            b"2.5" => Ok(OpenRtbVersion::V2_5),
            b"2.6" => Ok(OpenRtbVersion::V2_6),
            _ => Err(RequestError::new(
                FieldPath::top(OPENRTB_VERSION_HEADER),
                Rule::UnsupportedVersion,
            )),
        }
    }

    /// The header value: `2.5` or `2.6`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenRtbVersion::V2_5 => "2.5",
            OpenRtbVersion::V2_6 => "2.6",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_2_6_known_versions_pass_others_are_refused() {
        let from = |v: Option<&[u8]>| OpenRtbVersion::from_header(v);
        assert_eq!(from(None), Ok(OpenRtbVersion::V2_6));
        assert_eq!(from(Some(b"2.5")), Ok(OpenRtbVersion::V2_5));
        assert_eq!(from(Some(b" 2.6 ")), Ok(OpenRtbVersion::V2_6));
        for bad in [&b""[..], b"2.4", b"3.0", b"2.6.1", b"2,6", b"v2.6"] {
            let error = from(Some(bad)).unwrap_err();
            assert_eq!(error.field.to_string(), "x-openrtb-version");
            assert_eq!(error.rule, Rule::UnsupportedVersion);
            assert_eq!(
                error.to_string(),
                "x-openrtb-version: OpenRTB version not spoken (2.5 and 2.6 are)"
            );
        }
        let names: Vec<_> = OpenRtbVersion::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(names, ["2.5", "2.6"]);
    }
}
