//! Owns the body of a 400 answer: `{"error": ..., "field": ..., "rule": ..., "offset": ...}`
//! written into a reused buffer, so a flood of bad requests costs no allocation.

use std::fmt::{self, Write as _};

use crate::encode::escape_json_into;
use crate::error::{RequestError, Rule};

/// The start decision for a request that broke `error`: 400 with its body written into
/// `out`.
pub(crate) fn start(error: RequestError, out: &mut Vec<u8>) -> super::Start<'_> {
    render(&error, out);
    super::Start::Invalid { error, body: out }
}

/// Writes the JSON error body for `error` into `out` (cleared first).
pub(crate) fn render(error: &RequestError, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"{\"error\":\"");
    let _ = write!(JsonText(out), "{error}");
    out.extend_from_slice(b"\",\"field\":\"");
    let _ = write!(JsonText(out), "{}", error.field);
    out.extend_from_slice(b"\",\"rule\":\"");
    escape_json_into(error.rule.message(), out);
    out.push(b'"');
    if let Rule::MalformedJson { offset } = error.rule {
        out.extend_from_slice(b",\"offset\":");
        let _ = write!(JsonText(out), "{offset}");
    }
    out.push(b'}');
}

/// Formats into a byte buffer as JSON string content (escaping quotes, backslashes and control
/// characters), so `Display` output can go inside a JSON string without a temporary `String`.
struct JsonText<'o>(&'o mut Vec<u8>);

impl fmt::Write for JsonText<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_json_into(s, self.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Decoder, Document};
    use crate::request::BidRequest;

    fn body_for(raw: &[u8]) -> serde_json::Value {
        let (mut doc, mut decoder) = (Document::default(), Decoder::new());
        let error = BidRequest::decode(raw, &mut doc, &mut decoder).unwrap_err();
        let mut out = Vec::new();
        render(&error, &mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn names_the_field_and_the_rule() {
        let body = body_for(br#"{"id":"a","imp":[{"id":"1","banner":{}},{"banner":{}}]}"#);
        assert_eq!(body["error"], "imp[1].id: missing");
        assert_eq!(body["field"], "imp[1].id");
        assert_eq!(body["rule"], "missing");
        assert!(body.get("offset").is_none());
    }

    #[test]
    fn malformed_json_carries_the_offset() {
        let body = body_for(br#"{"id":"a","imp":[}"#);
        assert_eq!(body["rule"], "malformed JSON");
        assert!(body["offset"].as_u64().is_some());
        assert_eq!(body["field"], "");
    }
}
