//! The DSP roster file (issue 15): its format, parsing and validation, bytes in, roster out.
//!
//! One entry per DSP with its policy: which channels, media types and countries it wants, its
//! QPS cap, its own `tmax` cap and its bid adjustment. The file read and change detection are
//! the exchange's (control thread); this module only turns bytes into a [`Roster`] or a
//! [`RosterError`] that names the entry and the field. JSON only for now (YAML, which the
//! issue asks for, needs a parser crate and is not done yet).

use std::fmt;

use serde::Deserialize;

pub use crate::policy::{ChannelSet, DspPolicy};
use crate::registry::{is_valid_dsp_name, BidUrl, UrlError, DEFAULT_DSPS_MAX};
use crate::request::{Channel, MediaTypes};

/// Largest roster file accepted, checked before parsing.
pub const ROSTER_BYTES_MAX: usize = 1 << 20;
/// Most countries one entry may list.
pub const COUNTRIES_MAX: usize = 256;
/// Bid adjustments outside `(0, BID_ADJUSTMENT_MAX]` are refused.
pub const BID_ADJUSTMENT_MAX: f64 = 10.0;

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

/// Parses and validates a roster file (JSON). `allow_loopback` is the exchange's URL policy.
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
    let raw: RawRoster = serde_json::from_slice(bytes).map_err(|e| whole(e.to_string()))?;
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
    if raw.qps == Some(0) {
        return Err(named("qps", "must be at least 1".into()));
    }
    if raw.tmax_ms == Some(0) {
        return Err(named("tmax_ms", "must be at least 1".into()));
    }
    let bid_adjustment = raw.bid_adjustment.unwrap_or(1.0);
    if !(bid_adjustment > 0.0 && bid_adjustment <= BID_ADJUSTMENT_MAX) {
        let reason = format!("must be in (0, {BID_ADJUSTMENT_MAX}]");
        return Err(named("bid_adjustment", reason));
    }
    let policy = DspPolicy {
        qps: raw.qps,
        channels: channels(raw.channels.as_deref()).map_err(|r| named("channels", r))?,
        media: media(raw.media.as_deref()).map_err(|r| named("media", r))?,
        countries: countries(raw.countries.as_deref()).map_err(|r| named("countries", r))?,
        tmax_ms: raw.tmax_ms,
        bid_adjustment,
    };
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

fn channels(list: Option<&[String]>) -> Result<ChannelSet, String> {
    let Some(list) = list else {
        return Ok(ChannelSet::ALL);
    };
    let mut set = ChannelSet::NONE;
    for item in list {
        set = set.with(match item.as_str() {
            "site" => Channel::Site,
            "app" => Channel::App,
            "dooh" => Channel::Dooh,
            other => return Err(format!("unknown channel {other:?} (site, app, dooh)")),
        });
    }
    if set.is_empty() {
        return Err("empty (omit the field for every channel)".into());
    }
    Ok(set)
}

fn media(list: Option<&[String]>) -> Result<MediaTypes, String> {
    let Some(list) = list else {
        return Ok(MediaTypes::ALL);
    };
    let mut types = MediaTypes::default();
    for item in list {
        types = types.with(match item.as_str() {
            "banner" => MediaTypes::BANNER,
            "video" => MediaTypes::VIDEO,
            "audio" => MediaTypes::AUDIO,
            "native" => MediaTypes::NATIVE,
            other => {
                return Err(format!(
                    "unknown media {other:?} (banner, video, audio, native)"
                ))
            }
        });
    }
    if types.is_empty() {
        return Err("empty (omit the field for every media type)".into());
    }
    Ok(types)
}

fn countries(list: Option<&[String]>) -> Result<Vec<[u8; 3]>, String> {
    let list = list.unwrap_or_default();
    if list.len() > COUNTRIES_MAX {
        return Err(format!("more than {COUNTRIES_MAX} countries"));
    }
    let mut codes = Vec::with_capacity(list.len());
    for item in list {
        let code: [u8; 3] = match item.as_bytes().try_into() {
            Ok(code) if item.bytes().all(|b| b.is_ascii_uppercase()) => code,
            _ => {
                return Err(format!(
                    "{item:?} is not an ISO-3166-1 alpha-3 code (USA, CAN)"
                ))
            }
        };
        codes.push(code);
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
