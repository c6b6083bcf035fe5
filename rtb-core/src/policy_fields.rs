//! Owns the per-DSP policy as operators write it (issue 15): the fields a roster entry and a
//! `POST /dsp` body share (`qps`, `channels`, `media`, `countries`, `tmax_ms`,
//! `bid_adjustment`), checked into a [`DspPolicy`] with errors that name the field.

use serde::{Deserialize, Serialize};

use crate::policy::{ChannelSet, DspPolicy};
use crate::request::{Channel, MediaTypes};

/// Most countries one DSP may list.
pub const COUNTRIES_MAX: usize = 256;
/// Bid adjustments outside `(0, BID_ADJUSTMENT_MAX]` are refused.
pub const BID_ADJUSTMENT_MAX: f64 = 10.0;

/// The policy fields as written; every one optional (omitted: no cap, every request, no
/// adjustment). Serialized (in `GET /dsp`), a field at its default is left out.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct PolicyFields {
    /// QPS cap for the whole exchange process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qps: Option<u32>,
    /// `site`, `app`, `dooh`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// `banner`, `video`, `audio`, `native`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Vec<String>>,
    /// ISO-3166-1 alpha-3 codes, upper case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    /// Its own `tmax` cap, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmax_ms: Option<u32>,
    /// Multiplies its bid prices before floors and ranking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_adjustment: Option<f64>,
}

/// Channel names, in the order written back.
const CHANNELS: [(&str, Channel); 3] = [
    ("site", Channel::Site),
    ("app", Channel::App),
    ("dooh", Channel::Dooh),
];
/// Media type names, in the order written back.
const MEDIA: [(&str, MediaTypes); 4] = [
    ("banner", MediaTypes::BANNER),
    ("video", MediaTypes::VIDEO),
    ("audio", MediaTypes::AUDIO),
    ("native", MediaTypes::NATIVE),
];

impl From<&DspPolicy> for PolicyFields {
    /// The fields that state `policy` (defaults left out).
    fn from(policy: &DspPolicy) -> Self {
        let names = |all: bool, names: Vec<&str>| {
            (!all).then(|| names.into_iter().map(str::to_owned).collect())
        };
        let channels = (CHANNELS.iter())
            .filter(|(_, c)| policy.channels.wants(Some(*c)))
            .map(|(n, _)| *n);
        let media = (MEDIA.iter())
            .filter(|(_, m)| policy.media.contains(*m))
            .map(|(n, _)| *n);
        let countries = (policy.countries.iter())
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>();
        PolicyFields {
            qps: policy.qps,
            channels: names(policy.channels == ChannelSet::ALL, channels.collect()),
            media: names(policy.media == MediaTypes::ALL, media.collect()),
            countries: (!countries.is_empty()).then_some(countries),
            tmax_ms: policy.tmax_ms,
            bid_adjustment: (policy.bid_adjustment != 1.0).then_some(policy.bid_adjustment),
        }
    }
}

/// A policy field that does not check: which, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl PolicyFields {
    /// The policy these fields state, or the first field at fault.
    pub fn check(self) -> Result<DspPolicy, FieldError> {
        let at = |field: &'static str| move |reason: String| FieldError { field, reason };
        if self.qps == Some(0) {
            return Err(at("qps")("must be at least 1".into()));
        }
        if self.tmax_ms == Some(0) {
            return Err(at("tmax_ms")("must be at least 1".into()));
        }
        let bid_adjustment = self.bid_adjustment.unwrap_or(1.0);
        if !(bid_adjustment > 0.0 && bid_adjustment <= BID_ADJUSTMENT_MAX) {
            let reason = format!("must be in (0, {BID_ADJUSTMENT_MAX}]");
            return Err(at("bid_adjustment")(reason));
        }
        Ok(DspPolicy {
            qps: self.qps,
            channels: channels(self.channels.as_deref()).map_err(at("channels"))?,
            media: media(self.media.as_deref()).map_err(at("media"))?,
            countries: countries(self.countries.as_deref()).map_err(at("countries"))?,
            tmax_ms: self.tmax_ms,
            bid_adjustment,
        })
    }
}

fn channels(list: Option<&[String]>) -> Result<ChannelSet, String> {
    let Some(list) = list else {
        return Ok(ChannelSet::ALL);
    };
    let mut set = ChannelSet::NONE;
    for item in list {
        match CHANNELS.iter().find(|(name, _)| name == item) {
            Some((_, channel)) => set = set.with(*channel),
            None => return Err(format!("unknown channel {item:?} (site, app, dooh)")),
        }
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
        match MEDIA.iter().find(|(name, _)| name == item) {
            Some((_, media)) => types = types.with(*media),
            None => {
                let known = "banner, video, audio, native";
                return Err(format!("unknown media {item:?} ({known})"));
            }
        }
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

    #[test]
    fn a_policy_written_back_reads_the_same() {
        let fields = PolicyFields {
            qps: Some(2000),
            channels: Some(vec!["app".into(), "site".into()]),
            media: Some(vec!["video".into()]),
            countries: Some(vec!["USA".into(), "CAN".into()]),
            tmax_ms: Some(50),
            bid_adjustment: Some(0.95),
        };
        let policy = fields.check().unwrap();
        let written = PolicyFields::from(&policy);
        assert_eq!(written.channels, Some(vec!["site".into(), "app".into()]));
        assert_eq!(written.clone().check().unwrap(), policy);
        let json = serde_json::to_string(&PolicyFields::from(&DspPolicy::default())).unwrap();
        assert_eq!(json, "{}", "defaults are left out");
    }

    #[test]
    fn the_first_field_at_fault_is_named() {
        let error = PolicyFields {
            media: Some(vec!["vidoe".into()]),
            ..PolicyFields::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(error.field, "media");
        assert!(
            error.reason.starts_with("unknown media \"vidoe\""),
            "{}",
            error.reason
        );
    }
}
