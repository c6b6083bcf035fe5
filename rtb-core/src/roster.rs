//! The DSP roster file (issue 15): its format, parsing and validation, bytes in, roster out.
//!
//! One entry per DSP with its policy: which channels, media types and countries it wants, its
//! QPS cap, its own `tmax` cap and its bid adjustment. The file read and change detection are
//! the exchange's (control thread); this module only turns bytes into a [`Roster`] or a
//! [`RosterError`] that names the entry and the field.
//!
//! The file is YAML, or JSON (a file whose first non-blank byte is `{` is read as JSON, for
//! serde_json's precise errors). YAML is read by serde-saphyr: a pure-Rust parser that never
//! panics on bad input and bounds its work, so a broken ConfigMap is an error, not a crash.

use std::fmt;

use serde::Deserialize;

pub use crate::policy::{ChannelSet, DspPolicy};
pub use crate::policy_fields::PolicyFields;
use crate::registry::{is_valid_dsp_name, BidUrl, UrlError, DEFAULT_DSPS_MAX};

/// Largest roster file accepted, checked before parsing.
pub const ROSTER_BYTES_MAX: usize = 1 << 20;
pub use crate::policy_fields::{BID_ADJUSTMENT_MAX, COUNTRIES_MAX};

/// One roster entry.
#[derive(Clone, Debug, PartialEq)]
pub struct RosterEntry {
    /// Unique name, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// Where bid requests go.
    pub url: BidUrl,
    /// What it is sent and how its bids are adjusted.
    pub policy: DspPolicy,
    /// Requests gzip-compressed, gzip answers welcome (issue 16; default false).
    pub gzip: bool,
}

/// A parsed, validated roster.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Roster {
    /// Entries in file order, names unique.
    pub dsps: Vec<RosterEntry>,
}

/// Why a roster file was refused: which entry (index and name, when known) and which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterError {
    /// `dsps[i]`, when the error is in one entry.
    pub entry: Option<usize>,
    /// The entry's name, when it has one.
    pub name: Option<String>,
    /// The field at fault (`""` for the file as a whole).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RosterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.entry {
            write!(f, "dsps[{i}]")?;
            if let Some(name) = &self.name {
                write!(f, " ({name})")?;
            }
            if !self.field.is_empty() {
                write!(f, ".")?;
            }
        }
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for RosterError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoster {
    dsps: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    url: String,
    qps: Option<u32>,
    channels: Option<Vec<String>>,
    media: Option<Vec<String>>,
    countries: Option<Vec<String>>,
    tmax_ms: Option<u32>,
    bid_adjustment: Option<f64>,
    gzip: Option<bool>,
}

/// Parses and validates a roster file (YAML or JSON). `allow_loopback` is the exchange's URL
/// policy.
pub fn parse(bytes: &[u8], allow_loopback: bool) -> Result<Roster, RosterError> {
    let whole = |reason: String| RosterError {
        entry: None,
        name: None,
        field: "",
        reason,
    };
    if bytes.len() > ROSTER_BYTES_MAX {
        return Err(whole(format!("file over {ROSTER_BYTES_MAX} bytes")));
    }
    let raw = read_raw(bytes).map_err(whole)?;
    if raw.dsps.len() > DEFAULT_DSPS_MAX {
        return Err(whole(format!("more than {DEFAULT_DSPS_MAX} dsps")));
    }
    let mut dsps: Vec<RosterEntry> = Vec::with_capacity(raw.dsps.len());
    for (i, entry) in raw.dsps.into_iter().enumerate() {
        let checked = check_entry(entry, allow_loopback).map_err(|mut e| {
            e.entry = Some(i);
            e
        })?;
        if dsps.iter().any(|d| d.name == checked.name) {
            return Err(RosterError {
                entry: Some(i),
                name: Some(checked.name),
                field: "name",
                reason: "duplicate name".into(),
            });
        }
        dsps.push(checked);
    }
    Ok(Roster { dsps })
}

/// The file's structure, from JSON when it starts with `{`, else from YAML.
fn read_raw(bytes: &[u8]) -> Result<RawRoster, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

fn check_entry(raw: RawEntry, allow_loopback: bool) -> Result<RosterEntry, RosterError> {
    let name = raw.name;
    let named = |field: &'static str, reason: String| RosterError {
        entry: None,
        name: Some(name.clone()),
        field,
        reason,
    };
    if !is_valid_dsp_name(&name) {
        return Err(named(
            "name",
            "must be 1-64 characters of [A-Za-z0-9._-]".into(),
        ));
    }
    let url = full_bid_url(&raw.url, allow_loopback).map_err(|e| named("url", e.to_string()))?;
    let fields = PolicyFields {
        qps: raw.qps,
        channels: raw.channels,
        media: raw.media,
        countries: raw.countries,
        tmax_ms: raw.tmax_ms,
        bid_adjustment: raw.bid_adjustment,
    };
    let policy = fields.check().map_err(|e| named(e.field, e.reason))?;
    Ok(RosterEntry {
        name,
        url,
        policy,
        gzip: raw.gzip.unwrap_or(false),
    })
}

/// The roster's `url` is the whole bid URL: its path is the bid path (`/` when it has none).
fn full_bid_url(url: &str, allow_loopback: bool) -> Result<BidUrl, UrlError> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => {
            let (base, path) = url.split_at(after_scheme + i);
            BidUrl::parse(base, Some(path), allow_loopback)
        }
        None => BidUrl::parse(url, Some("/"), allow_loopback),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Channel, MediaTypes};

    const BRAID: &str = r#"{"dsps": [{"name": "braid", "url": "http://braid:5000/bid",
        "qps": 2000, "channels": ["site", "app"], "media": ["video"],
        "countries": ["USA", "CAN"], "tmax_ms": 50, "bid_adjustment": 0.95}]}"#;

    #[test]
    fn a_full_entry_parses() {
        let roster = parse(BRAID.as_bytes(), false).unwrap();
        let entry = &roster.dsps[0];
        assert_eq!(entry.name, "braid");
        assert_eq!(entry.url.authority(), "braid:5000");
        assert_eq!(entry.url.path, "/bid");
        let policy = &entry.policy;
        assert_eq!(policy.qps, Some(2000));
        assert!(policy.channels.wants(Some(Channel::App)));
        assert!(!policy.channels.wants(Some(Channel::Dooh)));
        assert!(!policy.channels.wants(None));
        assert!(policy.media.contains(MediaTypes::VIDEO));
        assert!(!policy.media.contains(MediaTypes::BANNER));
        assert_eq!(policy.countries, vec![*b"USA", *b"CAN"]);
        assert_eq!(policy.tmax_ms, Some(50));
        assert_eq!(policy.bid_adjustment, 0.95);
    }

    #[test]
    fn omitted_fields_mean_everything() {
        let json = br#"{"dsps": [{"name": "witness", "url": "http://w:1/bid"}]}"#;
        let roster = parse(json, false).unwrap();
        assert_eq!(roster.dsps[0].policy, DspPolicy::default());
        assert!(roster.dsps[0].policy.channels.wants(None));
    }

    fn error_of(entry: &str) -> String {
        let json = format!(r#"{{"dsps": [{{"name": "ok", "url": "http://a:1/bid"}}, {entry}]}}"#);
        parse(json.as_bytes(), false).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_entry_and_the_field() {
        let base = r#""name": "braid", "url": "http://braid:1/bid""#;
        let cases = [
            (r#""qps": 0"#, "dsps[1] (braid).qps: must be at least 1"),
            (
                r#""tmax_ms": 0"#,
                "dsps[1] (braid).tmax_ms: must be at least 1",
            ),
            (
                r#""bid_adjustment": -1"#,
                "dsps[1] (braid).bid_adjustment: must be in",
            ),
            (
                r#""channels": ["web"]"#,
                "dsps[1] (braid).channels: unknown channel \"web\"",
            ),
            (r#""media": []"#, "dsps[1] (braid).media: empty"),
            (
                r#""countries": ["us"]"#,
                "dsps[1] (braid).countries: \"us\" is not",
            ),
        ];
        for (field, expected) in cases {
            let message = error_of(&format!("{{{base}, {field}}}"));
            assert!(message.starts_with(expected), "{field}: {message}");
        }
        let bad_name = error_of(r#"{"name": "a b", "url": "http://a:1/bid"}"#);
        assert!(
            bad_name.starts_with("dsps[1] (a b).name: must be"),
            "{bad_name}"
        );
        let duplicate = error_of(r#"{"name": "ok", "url": "http://b:1/bid"}"#);
        assert_eq!(duplicate, "dsps[1] (ok).name: duplicate name");
        let bad_url = error_of(r#"{"name": "m", "url": "http://169.254.169.254/bid"}"#);
        assert!(bad_url.starts_with("dsps[1] (m).url: "), "{bad_url}");
    }

    #[test]
    fn unknown_fields_and_oversized_files_are_refused() {
        let unknown = br#"{"dsps": [{"name": "a", "url": "http://a:1/bid", "qpss": 3}]}"#;
        assert!(parse(unknown, false).unwrap_err().reason.contains("qpss"));
        let huge = vec![b' '; ROSTER_BYTES_MAX + 1];
        assert!(parse(&huge, false).unwrap_err().reason.contains("over"));
    }

    /// The issue's example, as an operator writes it.
    const BRAID_YAML: &str = "
# one entry per DSP
dsps:
  - name: braid
    url: http://braid:5000/bid
    qps: 2000                        # cap for the whole exchange process
    channels: [site, app]
    media:
      - video
    countries: [USA, CAN]
    tmax_ms: 50
    bid_adjustment: 0.95
";

    #[test]
    fn yaml_reads_as_json_does() {
        let yaml = parse(BRAID_YAML.as_bytes(), false).unwrap();
        let json = parse(BRAID.as_bytes(), false).unwrap();
        assert_eq!(yaml, json);
    }

    #[test]
    fn yaml_errors_are_errors_not_crashes() {
        let unknown = "dsps:\n  - name: a\n    url: http://a:1/bid\n    qpss: 3\n";
        let error = parse(unknown.as_bytes(), false).unwrap_err();
        assert!(error.reason.contains("qpss"), "{error}");
        let wrong_type = "dsps:\n  - name: a\n    url: http://a:1/bid\n    qps: lots\n";
        assert!(parse(wrong_type.as_bytes(), false).is_err());
        for broken in [
            "dsps: [",
            "dsps:\n  - {name: a",
            "\t- :",
            "",
            "dsps: 3",
            "[1, 2]",
        ] {
            assert!(parse(broken.as_bytes(), false).is_err(), "{broken:?}");
        }
        let check = "dsps:\n  - name: braid\n    url: http://braid:1/bid\n    qps: 0\n";
        let error = parse(check.as_bytes(), false).unwrap_err().to_string();
        assert_eq!(error, "dsps[0] (braid).qps: must be at least 1");
        assert!(parse(&[0xff, 0xfe, b'x'], false)
            .unwrap_err()
            .reason
            .contains("UTF-8"));
    }
}
