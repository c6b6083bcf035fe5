//! Per-DSP policy applied when an auction is planned (issue 15): which requests a DSP is sent
//! (channel, media, country filters) and each worker's share of its QPS cap (the bucket that
//! enforces a share is [`crate::token_bucket`]).
//!
//! The request's traits are computed once per request ([`RequestTraits`]); each DSP's check is
//! then a few bit tests and, for a country list, a short scan: no allocation. The clock is a
//! parameter (`now_us`), as everywhere in rtb-core.

use std::collections::HashMap;

use crate::request::{BidRequest, Channel, MediaTypes};

/// Channels a DSP wants, as bits (all by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelSet(u8);

impl ChannelSet {
    /// Every channel.
    pub const ALL: ChannelSet = ChannelSet(0b111);
    /// No channel (a set being built).
    pub const NONE: ChannelSet = ChannelSet(0);

    /// This set plus `channel`.
    pub fn with(self, channel: Channel) -> ChannelSet {
        ChannelSet(self.0 | Self::bit(channel))
    }

    /// Whether it holds no channel.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn bit(channel: Channel) -> u8 {
        match channel {
            Channel::Site => 1,
            Channel::App => 2,
            Channel::Dooh => 4,
        }
    }

    /// Whether a request of `channel` is wanted (a request with no channel object is wanted by
    /// a DSP that takes every channel only).
    pub fn wants(self, channel: Option<Channel>) -> bool {
        match channel {
            Some(c) => self.0 & Self::bit(c) != 0,
            None => self == Self::ALL,
        }
    }
}

/// One DSP's policy, as the planner applies it.
#[derive(Clone, Debug, PartialEq)]
pub struct DspPolicy {
    /// Cap for the whole exchange process, all workers together; `None`: no cap.
    pub qps: Option<u32>,
    /// Channels it wants.
    pub channels: ChannelSet,
    /// Media types it takes (a request is sent if any impression offers one of them).
    pub media: MediaTypes,
    /// `device.geo.country` values it wants (ISO-3166-1 alpha-3, upper case); empty: all.
    pub countries: Vec<[u8; 3]>,
    /// Its own `tmax` cap; the `tmax` sent is the smaller of this and its budget.
    pub tmax_ms: Option<u32>,
    /// Multiplies its bid prices before floors and ranking.
    pub bid_adjustment: f64,
}

impl Default for DspPolicy {
    fn default() -> Self {
        DspPolicy {
            qps: None,
            channels: ChannelSet::ALL,
            media: MediaTypes::ALL,
            countries: Vec::new(),
            tmax_ms: None,
            bid_adjustment: 1.0,
        }
    }
}

/// What the policy looks at in a request, computed once per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RequestTraits {
    /// `site`, `app` or `dooh`, when present.
    pub channel: Option<Channel>,
    /// Media types offered by any impression.
    pub media: MediaTypes,
    /// `device.geo.country`, when it is a three-letter code.
    pub country: Option<[u8; 3]>,
}

impl RequestTraits {
    /// The traits of `request`.
    pub fn of(request: &BidRequest<'_>) -> Self {
        let media = request
            .imps
            .iter()
            .fold(MediaTypes::default(), |all, imp| all.with(imp.media));
        RequestTraits {
            channel: request.channel,
            media,
            country: request.country,
        }
    }
}

/// Why a DSP was not called for a request (the `reason` label of `rtb_dsp_skipped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The request's channel is not one it wants.
    Channel,
    /// No impression offers a media type it takes.
    Media,
    /// The request's country is not in its list (or the request has none).
    Country,
    /// Over its QPS cap.
    Qps,
}

impl SkipReason {
    /// Every reason, in the order of their discriminants (counters are indexed by them).
    pub const ALL: [SkipReason; 4] = [
        SkipReason::Channel,
        SkipReason::Media,
        SkipReason::Country,
        SkipReason::Qps,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Channel => "channel",
            SkipReason::Media => "media",
            SkipReason::Country => "country",
            SkipReason::Qps => "qps",
        }
    }
}

/// Whether `policy`'s filters admit a request with `traits` (the QPS cap is checked apart, by
/// [`TokenBucket`](crate::token_bucket::TokenBucket), only for DSPs the filters admit).
pub fn filter(policy: &DspPolicy, traits: &RequestTraits) -> Result<(), SkipReason> {
    if !policy.channels.wants(traits.channel) {
        return Err(SkipReason::Channel);
    }
    if !policy.media.intersects(traits.media) {
        return Err(SkipReason::Media);
    }
    if !policy.countries.is_empty()
        && !traits
            .country
            .is_some_and(|c| policy.countries.contains(&c))
    {
        return Err(SkipReason::Country);
    }
    Ok(())
}

/// A worker's equal share of a process-wide cap: `qps / workers`. The share is fixed, so no
/// worker ever reads another's state; with SO_REUSEPORT spreading connections, workers see
/// similar traffic, and a worker that sees less than its share leaves the rest unused (the
/// cap is a ceiling, never exceeded).
pub fn worker_share(qps: u32, workers: usize) -> f64 {
    f64::from(qps) / workers.max(1) as f64
}

/// The part of the cap kept for a worker whatever its demand, as a fraction of the cap spread
/// over the workers: a worker that saw none of a DSP's traffic in the last period still has a
/// little of the cap when traffic moves to it, and gets its fair part at the next rebalance.
pub const IDLE_WORKER_SPREAD: f64 = 0.04;

/// Each worker's part of a DSP's cap, from the requests each wanted to send it in the last
/// period (`demands`, one per worker): in proportion to demand, plus an equal
/// [`IDLE_WORKER_SPREAD`]; equal parts when nobody wanted any. The parts add up to 1, so the
/// process never exceeds the cap, and a worker with most of the traffic gets most of the cap.
pub fn demand_fractions(demands: &[u64], out: &mut Vec<f64>) {
    out.clear();
    let workers = demands.len().max(1) as f64;
    let total: u64 = demands.iter().sum();
    if total == 0 {
        out.extend(demands.iter().map(|_| 1.0 / workers));
        return;
    }
    let total = total as f64;
    let spread = total * IDLE_WORKER_SPREAD / workers;
    let whole = total * (1.0 + IDLE_WORKER_SPREAD);
    out.extend(demands.iter().map(|&d| (d as f64 + spread) / whole));
}

/// Each DSP's demand totals per worker as last seen, so that a rebalance splits a cap by the
/// demand of the last period (what was added since), not of all time.
#[derive(Debug, Default)]
pub struct DemandHistory {
    seen: HashMap<String, Vec<u64>>,
}

impl DemandHistory {
    /// Each worker's part of DSP `name`'s cap ([`demand_fractions`]) in parts per million, at
    /// least 1, into `out`, from the demand totals each worker has counted so far (`totals`,
    /// one per worker).
    pub fn parts_ppm(&mut self, name: &str, totals: Vec<u64>, out: &mut Vec<u64>) {
        let seen = (self.seen.entry(name.to_string())).or_insert_with(|| vec![0; totals.len()]);
        let demands: Vec<u64> = (totals.iter().zip(seen.iter()))
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        *seen = totals;
        let mut fractions = Vec::with_capacity(demands.len());
        demand_fractions(&demands, &mut fractions);
        out.clear();
        out.extend(fractions.iter().map(|f| (f * 1e6).round().max(1.0) as u64));
    }

    /// Forgets the DSPs `keep` refuses (gone from every worker).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.seen.retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `channels: [app], media: [video], countries: [CAN]` (the roster's parsing of the same
    /// is tested in `roster`).
    fn video_in_canada() -> DspPolicy {
        DspPolicy {
            channels: ChannelSet::NONE.with(Channel::App),
            media: MediaTypes::VIDEO,
            countries: vec![*b"CAN"],
            ..DspPolicy::default()
        }
    }

    #[test]
    fn filters_name_the_first_reason() {
        let policy = video_in_canada();
        let ok = RequestTraits {
            channel: Some(Channel::App),
            media: MediaTypes::BANNER.with(MediaTypes::VIDEO),
            country: Some(*b"CAN"),
        };
        assert_eq!(filter(&policy, &ok), Ok(()));
        let site = RequestTraits {
            channel: Some(Channel::Site),
            ..ok
        };
        assert_eq!(filter(&policy, &site), Err(SkipReason::Channel));
        let banner = RequestTraits {
            media: MediaTypes::BANNER,
            ..ok
        };
        assert_eq!(filter(&policy, &banner), Err(SkipReason::Media));
        let usa = RequestTraits {
            country: Some(*b"USA"),
            ..ok
        };
        assert_eq!(filter(&policy, &usa), Err(SkipReason::Country));
        let nowhere = RequestTraits {
            country: None,
            ..ok
        };
        assert_eq!(filter(&policy, &nowhere), Err(SkipReason::Country));
    }

    fn traits_of(json: &str) -> RequestTraits {
        let mut decoder = crate::json::Decoder::new();
        let mut doc = crate::json::Document::default();
        let request = BidRequest::decode(json.as_bytes(), &mut doc, &mut decoder).unwrap();
        RequestTraits::of(&request)
    }

    #[test]
    fn traits_are_read_from_the_request() {
        let traits = traits_of(
            r#"{"id":"r","app":{},"device":{"geo":{"country":"can"}},
                "imp":[{"id":"1","banner":{}},{"id":"2","video":{"mimes":["video/mp4"]}}]}"#,
        );
        assert_eq!(traits.channel, Some(Channel::App));
        assert_eq!(traits.media, MediaTypes::BANNER.with(MediaTypes::VIDEO));
        assert_eq!(traits.country, Some(*b"CAN"));
        assert_eq!(filter(&video_in_canada(), &traits), Ok(()));
        let odd = traits_of(
            r#"{"id":"r","device":{"geo":{"country":"CA"}},"imp":[{"id":"1","banner":{}}]}"#,
        );
        assert_eq!(odd.country, None);
        assert_eq!(odd.channel, None);
    }

    #[test]
    fn the_default_policy_admits_everything() {
        let policy = DspPolicy::default();
        assert_eq!(policy.channels, ChannelSet::ALL);
        let banner_nowhere = RequestTraits {
            media: MediaTypes::BANNER,
            ..RequestTraits::default()
        };
        assert_eq!(filter(&policy, &banner_nowhere), Ok(()));
    }

    #[test]
    fn fractions_follow_demand_and_add_up_to_one() {
        let mut out = Vec::new();
        demand_fractions(&[0, 0], &mut out);
        assert_eq!(out, [0.5, 0.5]);
        demand_fractions(&[1000, 0], &mut out);
        // 1,000 wanted on one worker: 1,020 / 1,040 of the cap there, 20 / 1,040 kept idle.
        assert!((out[0] - 1020.0 / 1040.0).abs() < 1e-12, "{out:?}");
        assert!((out[1] - 20.0 / 1040.0).abs() < 1e-12, "{out:?}");
        demand_fractions(&[300, 100, 0, 0], &mut out);
        assert!(
            out[0] > 2.5 * out[1] && out[2] == out[3] && out[2] > 0.0,
            "{out:?}"
        );
        for case in [&[5u64, 7][..], &[1], &[0, 9, 3], &[u64::from(u32::MAX), 1]] {
            demand_fractions(case, &mut out);
            let sum: f64 = out.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{case:?}: {sum}");
        }
    }

    #[test]
    fn the_share_splits_the_cap_between_workers() {
        assert_eq!(worker_share(200, 2), 100.0);
        assert_eq!(worker_share(200, 0), 200.0);
    }

    #[test]
    fn parts_follow_each_periods_demand() {
        let mut history = DemandHistory::default();
        let mut ppm = Vec::new();
        history.parts_ppm("braid", vec![900, 100], &mut ppm);
        // (900 + 20) / 1,040 and (100 + 20) / 1,040 (4% of 1,000 spread over two workers).
        assert_eq!(ppm, [884_615, 115_385]);
        // Next period the traffic moved: only the new demand counts.
        history.parts_ppm("braid", vec![900, 1100], &mut ppm);
        assert!(ppm[1] > 40 * ppm[0] && ppm[0] > 0, "{ppm:?}");
        // No demand at all: equal parts.
        history.parts_ppm("braid", vec![900, 1100], &mut ppm);
        assert_eq!(ppm, [500_000, 500_000]);
        history.retain(|name| name != "braid");
        history.parts_ppm("braid", vec![900, 1100], &mut ppm);
        assert_eq!(ppm[0], 451_923, "forgotten: all time's demand again");
    }
}
