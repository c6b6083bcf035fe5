//! Owns what the directory makes of a DNS answer: every address a DSP's host resolves to,
//! each judged by the address policy ([`check_address`], the DNS-rebinding defence), kept in a
//! stable order up to [`DnsLimits::addrs_max`], and when to look the host up again (the
//! record's TTL, clamped between [`DnsLimits::reresolve_min`] and
//! [`DnsLimits::reresolve_max`]).
//!
//! Sans-IO: the resolver is the caller's ([`Resolve`]) and time is a parameter.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use crate::registry::{check_address, BidUrl};

/// Default [`DnsLimits::addrs_max`].
pub const ADDRS_PER_DSP_MAX_DEFAULT: usize = 16;
/// Default [`DnsLimits::reresolve_min`].
pub const RERESOLVE_MIN_DEFAULT: Duration = Duration::from_secs(1);
/// Default [`DnsLimits::reresolve_max`].
pub const RERESOLVE_MAX_DEFAULT: Duration = Duration::from_secs(30);

/// How DNS answers are kept and followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsLimits {
    /// Most addresses kept per DSP host. A name with more answers is served by the first ones
    /// in address order (a stable choice: a server that rotates a long answer does not make
    /// the workers' pools churn); every answer is still checked against the address policy.
    pub addrs_max: usize,
    /// Shortest wait before a host is looked up again, whatever its record's TTL says (a TTL
    /// of 0 would otherwise have the control thread query on every tick).
    pub reresolve_min: Duration,
    /// Longest wait: the cap on a long TTL, and the wait when the resolver reports no TTL
    /// (getaddrinfo) or the lookup failed.
    pub reresolve_max: Duration,
}

impl Default for DnsLimits {
    fn default() -> Self {
        Self {
            addrs_max: ADDRS_PER_DSP_MAX_DEFAULT,
            reresolve_min: RERESOLVE_MIN_DEFAULT,
            reresolve_max: RERESOLVE_MAX_DEFAULT,
        }
    }
}

impl DnsLimits {
    /// When (wall clock, ms) to look a host up again after an answer at `now_ms` valid for
    /// `ttl`: at its expiry, but no sooner than `reresolve_min` and no later than
    /// `reresolve_max` (`None`, an unknown TTL or a failed lookup: `reresolve_max`). A minimum
    /// above the maximum wins.
    pub fn reresolve_at_ms(&self, now_ms: u64, ttl: Option<Duration>) -> u64 {
        let max = self.reresolve_max.max(self.reresolve_min);
        let wait = ttl.unwrap_or(max).clamp(self.reresolve_min, max);
        now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What a resolver found for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Every address (at least one), with the port asked for.
    pub addrs: Vec<SocketAddr>,
    /// How long the answer stays valid: the record's TTL, or `None` when the resolver reports
    /// none (getaddrinfo): the caller's re-resolve period then applies.
    pub ttl: Option<Duration>,
}

/// Turns `host, port` into addresses (the caller's resolver; blocking is its business).
pub type Resolve<'r> = &'r dyn Fn(&str, u16) -> Result<Answer, String>;

/// A host's addresses as the directory keeps them: checked, sorted, deduplicated, at most
/// [`DnsLimits::addrs_max`], never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The addresses to connect to.
    pub addrs: Vec<SocketAddr>,
    /// The answer's TTL (`None`: unknown, or an IP literal).
    pub ttl: Option<Duration>,
}

/// Resolves `url`'s host (an IP literal is its own answer) and checks every address it
/// resolves to, refusing the whole answer when one is forbidden: a later connect could use
/// any of them. Keeps the first `addrs_max` (at least one) in address order.
pub fn resolve_checked(
    resolve: Resolve<'_>,
    url: &BidUrl,
    allow_loopback: bool,
    addrs_max: usize,
) -> Result<Checked, String> {
    let answer = match url.host.parse::<IpAddr>() {
        Ok(ip) => Answer {
            addrs: vec![SocketAddr::new(ip, url.port)],
            ttl: None,
        },
        Err(_) => resolve(&url.host, url.port)?,
    };
    for a in &answer.addrs {
        check_address(a.ip(), allow_loopback)
            .map_err(|e| format!("host resolves to a forbidden address: {e}"))?;
    }
    let mut addrs = answer.addrs;
    addrs.sort_unstable();
    addrs.dedup();
    addrs.truncate(addrs_max.max(1));
    if addrs.is_empty() {
        return Err("host name has no address".into());
    }
    Ok(Checked {
        addrs,
        ttl: answer.ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 5_000_000;

    #[test]
    fn the_next_lookup_follows_the_ttl_within_the_clamps() {
        let limits = DnsLimits::default();
        let at = |ttl_ms: Option<u64>| {
            limits.reresolve_at_ms(NOW_MS, ttl_ms.map(Duration::from_millis)) - NOW_MS
        };
        assert_eq!(at(Some(7_000)), 7_000, "the record's TTL");
        assert_eq!(at(Some(0)), 1_000, "no sooner than the minimum");
        assert_eq!(at(Some(300)), 1_000);
        assert_eq!(at(Some(86_400_000)), 30_000, "no later than the period");
        assert_eq!(at(None), 30_000, "no TTL known: the period");
        // A maximum below the minimum: the minimum wins.
        let inverted = DnsLimits {
            reresolve_min: Duration::from_secs(2),
            reresolve_max: Duration::from_millis(10),
            ..limits
        };
        assert_eq!(
            inverted.reresolve_at_ms(NOW_MS, Some(Duration::ZERO)) - NOW_MS,
            2_000
        );
        assert_eq!(inverted.reresolve_at_ms(NOW_MS, None) - NOW_MS, 2_000);
        assert_eq!(limits.reresolve_at_ms(u64::MAX - 1, None), u64::MAX);
    }

    fn answer(addrs: &[&str]) -> Result<Answer, String> {
        Ok(Answer {
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ttl: Some(Duration::from_secs(5)),
        })
    }

    #[test]
    fn every_address_is_checked_sorted_deduplicated_and_bounded() {
        let url = BidUrl::parse("http://dsp.test:8080", None, true).unwrap();
        let two = |_: &str, _| answer(&["10.0.0.2:8080", "10.0.0.1:8080", "10.0.0.2:8080"]);
        let got = resolve_checked(&two, &url, false, 16).unwrap();
        let want: Vec<SocketAddr> = vec![
            "10.0.0.1:8080".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap(),
        ];
        assert_eq!(got.addrs, want);
        assert_eq!(got.ttl, Some(Duration::from_secs(5)));

        let many: Vec<String> = (1..=40).map(|i| format!("10.0.1.{i}:8080")).collect();
        let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let lots = |_: &str, _| answer(&many_refs);
        let got = resolve_checked(&lots, &url, false, ADDRS_PER_DSP_MAX_DEFAULT).unwrap();
        assert_eq!(got.addrs.len(), ADDRS_PER_DSP_MAX_DEFAULT);
        let three = resolve_checked(&lots, &url, false, 3).unwrap();
        assert_eq!(three.addrs, got.addrs[..3]);
        assert_eq!(got.addrs[0], "10.0.1.1:8080".parse().unwrap());

        // One forbidden address among good ones refuses the answer, even past the bound.
        let mut bad = many_refs.clone();
        bad.push("169.254.169.254:8080");
        let rebinding = |_: &str, _| answer(&bad);
        let e = resolve_checked(&rebinding, &url, false, 16).unwrap_err();
        assert!(e.contains("forbidden"), "{e}");
        let empty = |_: &str, _| answer(&[]);
        assert!(resolve_checked(&empty, &url, false, 16).is_err());
    }
}
