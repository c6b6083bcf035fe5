//! Owns the `POST /dsp` onboarding body: parsed and checked into what the registry takes, with
//! an error that names the field at fault, and the JSON answer to a successful onboarding; and
//! whether a call carries the onboarding token ([`bearer_authorized`]).
//! The URL and address rules are the registry's ([`crate::registry`]); the HTTP statuses are
//! the shell's.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::echo::truncate;
use crate::policy::DspPolicy;
use crate::policy_fields::PolicyFields;
use crate::registry::{DspEntry, Upsert};

/// The onboarding body as a DSP sends it.
#[derive(Debug, Deserialize)]
pub struct OnboardBody {
    /// The DSP's name (checked by the registry).
    pub name: String,
    /// Its base URL (checked by the registry).
    pub base_url: String,
    /// The path of its bid endpoint under `base_url`.
    #[serde(default)]
    pub bid_path: Option<String>,
    /// Bid requests gzip-compressed, gzip answers welcome (issue 16).
    #[serde(default)]
    pub gzip: bool,
    /// The roster's policy fields (issue 15): `qps`, `channels`, `media`, `countries`,
    /// `tmax_ms`, `bid_adjustment`; taken out by [`parse`] (left at their default).
    #[serde(flatten)]
    pub policy: PolicyFields,
}

/// Why an onboarding body was refused: the message to answer (hostile text cut short) and the
/// field it is about (empty when none is named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyRefusal {
    /// What is wrong.
    pub message: String,
    /// The field at fault, or "".
    pub field: &'static str,
}

/// Every field of the body, to name the one a JSON error is about.
const ONBOARD_FIELDS: [&str; 10] = [
    "name",
    "base_url",
    "bid_path",
    "gzip",
    "qps",
    "channels",
    "media",
    "countries",
    "tmax_ms",
    "bid_adjustment",
];

/// The onboarding body and the policy it states, or the refusal that names the field at fault.
pub fn parse(body: &[u8]) -> Result<(OnboardBody, DspPolicy), BodyRefusal> {
    let mut body: OnboardBody = serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = ONBOARD_FIELDS
            .into_iter()
            .find(|f| msg.contains(&format!("`{f}`")))
            .unwrap_or("");
        let message = format!("invalid onboarding body: {}", truncate(&msg));
        BodyRefusal { message, field }
    })?;
    let policy = std::mem::take(&mut body.policy).check().map_err(|e| {
        let message = format!("{}: {}", e.field, truncate(&e.reason));
        BodyRefusal {
            message,
            field: e.field,
        }
    })?;
    Ok((body, policy))
}

/// The answer to a successful onboarding, as JSON: what the DSP is now (`entry`, at registry
/// `version`, reached at `addrs`, the first being `addr`), with the policy in force (a roster
/// DSP's heartbeat keeps the roster's).
pub fn onboarded_json(
    upsert: Upsert,
    version: u64,
    entry: &DspEntry,
    addr: SocketAddr,
    addrs: &[SocketAddr],
) -> String {
    let what = match upsert {
        Upsert::Added => "added",
        Upsert::Refreshed => "refreshed",
        Upsert::Replaced => "replaced",
    };
    let mut body = serde_json::json!({
        "status": what,
        "name": entry.name,
        "url": entry.url.to_string(),
        "addr": addr.to_string(),
        "addrs": addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "gzip": entry.options.gzip,
        "version": version,
        "added_at_ms": entry.added_at_ms,
        "last_seen_ms": entry.last_seen_ms,
    });
    let policy = PolicyFields::from(&*entry.options.policy);
    if let (Some(body), Ok(serde_json::Value::Object(fields))) =
        (body.as_object_mut(), serde_json::to_value(policy))
    {
        body.extend(fields);
    }
    body.to_string()
}

/// Whether an `Authorization` header value carries `Bearer <token>` (always true when no
/// token is configured). The comparison takes the same time wherever the two differ (the
/// length may leak; the content does not).
pub fn bearer_authorized(authorization: Option<&[u8]>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    authorization
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .is_some_and(|got| constant_time_eq(got, token.as_bytes()))
}

/// Compares a presented secret with the configured one in time independent of where they
/// differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_token_is_checked_only_when_one_is_set() {
        assert!(bearer_authorized(None, None));
        assert!(bearer_authorized(Some(b"Bearer t"), Some("t")));
        for wrong in [None, Some(&b"Bearer u"[..]), Some(b"t"), Some(b"Basic t")] {
            assert!(!bearer_authorized(wrong, Some("t")), "{wrong:?}");
        }
    }

    use super::*;

    #[test]
    fn a_body_gives_its_fields_and_its_policy() {
        let raw = br#"{"name":"braid","base_url":"http://10.0.0.1:5000","gzip":true,"qps":200}"#;
        let (body, policy) = parse(raw).unwrap();
        assert_eq!((body.name.as_str(), body.gzip), ("braid", true));
        assert_eq!(body.bid_path, None);
        assert_eq!(policy.qps, Some(200));
        assert_eq!(
            body.policy,
            PolicyFields::default(),
            "the policy is taken out"
        );
    }

    #[test]
    fn a_refusal_names_the_field_at_fault() {
        let refusal = parse(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!(refusal.field, "base_url", "{}", refusal.message);
        assert!(refusal.message.starts_with("invalid onboarding body: "));
        let refusal = parse(br#"{"base_url":"http://a:1"}"#).unwrap_err();
        assert_eq!(refusal.field, "name", "{}", refusal.message);
        let refusal = parse(br#"{"name":"a","base_url":"http://a:1","qps":0}"#).unwrap_err();
        assert_eq!(refusal.field, "qps");
        assert!(refusal.message.starts_with("qps: "), "{}", refusal.message);
        assert_eq!(parse(b"not json").unwrap_err().field, "");
    }
}
