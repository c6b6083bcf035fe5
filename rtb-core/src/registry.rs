//! The DSP registry as data: who can be called, at which URL, since when. Times are values the
//! caller passes in (milliseconds on any clock it likes), so expiry is unit-testable.
//!
//! Each worker holds a [`RegistrySnapshot`] (an `Arc` of the entries: cloning it is one atomic
//! increment) and swaps in a new one between requests; the control plane owns the
//! [`Registry`] and publishes a snapshot after each change.
//! URL rules: `http` only (DSP calls are plain HTTP/1.1 inside the data centre), no userinfo,
//! no link-local or cloud-metadata targets; loopback is a policy the caller chooses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::policy::DspPolicy;

/// Longest DSP name accepted.
pub const DSP_NAME_BYTES_MAX: usize = 64;
/// Longest base URL or bid path accepted.
pub const DSP_URL_BYTES_MAX: usize = 512;
/// Default cap on the number of registered DSPs.
pub const DEFAULT_DSPS_MAX: usize = 64;
/// Path used when an onboarding call gives none.
pub const DEFAULT_BID_PATH: &str = "/bid";
/// Host names of cloud instance-metadata services: never a DSP.
pub const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
];

/// Where a DSP takes bid requests: `http://host:port/path` or `https://host:port/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BidUrl {
    /// `https://`: the calls go over TLS, the certificate checked against `host`.
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// TCP port (80, or 443 for `https://`, when the URL gives none).
    pub port: u16,
    /// Absolute path, with query if any.
    pub path: String,
}

/// Why a DSP URL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// Neither `http://` nor `https://`.
    NotHttp,
    /// Has `user:pass@`.
    HasUserinfo,
    /// No host.
    NoHost,
    /// Port missing after `:`, not a number, or 0.
    BadPort,
    /// Path not starting with `/`, or with spaces or control characters.
    BadPath,
    /// Longer than [`DSP_URL_BYTES_MAX`].
    TooLong,
    /// A metadata host name or a forbidden address.
    ForbiddenHost(AddressError),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotHttp => f.write_str("only http:// and https:// URLs are accepted"),
            UrlError::HasUserinfo => f.write_str("userinfo is not allowed in the URL"),
            UrlError::NoHost => f.write_str("the URL has no host"),
            UrlError::BadPort => f.write_str("the URL's port is invalid"),
            UrlError::BadPath => f.write_str("the bid path must start with / and have no spaces"),
            UrlError::TooLong => f.write_str("the URL is too long"),
            UrlError::ForbiddenHost(why) => write!(f, "forbidden host: {why}"),
        }
    }
}

impl std::error::Error for UrlError {}

/// Why an address may not be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// 169.254.0.0/16, fe80::/10 (cloud metadata lives there).
    LinkLocal,
    /// A known metadata address or host name.
    Metadata,
    /// 127.0.0.0/8, ::1, when loopback is not allowed.
    Loopback,
    /// 0.0.0.0, ::, multicast, broadcast.
    NotUnicast,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::LinkLocal => "link-local address",
            AddressError::Metadata => "cloud metadata address",
            AddressError::Loopback => "loopback address not allowed",
            AddressError::NotUnicast => "not a unicast address",
        })
    }
}

/// Whether a DSP may be called at `ip`. Check every address a name resolves to, at
/// registration and after each re-resolution (DNS rebinding).
pub fn check_address(ip: IpAddr, allow_loopback: bool) -> Result<(), AddressError> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        IpAddr::V4(_) => ip,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            // Alibaba Cloud's metadata service sits outside link-local.
            if o == [100, 100, 100, 200] {
                return Err(AddressError::Metadata);
            }
            if v4.is_link_local() {
                return Err(AddressError::LinkLocal);
            }
            if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                return Err(AddressError::NotUnicast);
            }
            if v4.is_loopback() && !allow_loopback {
                return Err(AddressError::Loopback);
            }
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            // AWS's IPv6 metadata endpoint.
            if segments == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                return Err(AddressError::Metadata);
            }
            if segments[0] & 0xffc0 == 0xfe80 {
                return Err(AddressError::LinkLocal);
            }
            if v6.is_unspecified() || v6.is_multicast() {
                return Err(AddressError::NotUnicast);
            }
            if v6.is_loopback() && !allow_loopback {
                return Err(AddressError::Loopback);
            }
        }
    }
    Ok(())
}

impl BidUrl {
    /// Parses an onboarding `base_url` plus optional `bid_path` (default `/bid`). IP literals
    /// are checked with [`check_address`]; host names must be resolved and checked by the
    /// caller.
    pub fn parse(
        base_url: &str,
        bid_path: Option<&str>,
        allow_loopback: bool,
    ) -> Result<BidUrl, UrlError> {
        if base_url.len() > DSP_URL_BYTES_MAX
            || bid_path.is_some_and(|p| p.len() > DSP_URL_BYTES_MAX)
        {
            return Err(UrlError::TooLong);
        }
        let (tls, rest) = split_scheme(base_url)?;
        let (authority, base_path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(UrlError::HasUserinfo);
        }
        let (host, port) = split_host_port(authority, default_port(tls))?;
        check_host(host, allow_loopback)?;
        let host = host.to_ascii_lowercase();
        let base_path = base_path
            .split('#')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        let bid_path = bid_path.unwrap_or(DEFAULT_BID_PATH);
        if !bid_path.starts_with('/') {
            return Err(UrlError::BadPath);
        }
        let path = format!("{base_path}{bid_path}");
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::BadPath);
        }
        Ok(BidUrl {
            tls,
            host,
            port,
            path,
        })
    }

    /// `host:port` as written in a `Host` header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BidUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Checks a URL's host: an IP literal by [`check_address`], a name by its spelling (no
/// metadata names, no `localhost` unless loopback is allowed). Names still have to be resolved
/// and their addresses checked by the caller.
fn check_host(host: &str, allow_loopback: bool) -> Result<(), UrlError> {
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return check_address(ip, allow_loopback).map_err(UrlError::ForbiddenHost);
    }
    let bare = host.trim_end_matches('.');
    if METADATA_HOSTS.iter().any(|m| bare.eq_ignore_ascii_case(m)) {
        return Err(UrlError::ForbiddenHost(AddressError::Metadata));
    }
    if bare.eq_ignore_ascii_case("localhost") && !allow_loopback {
        return Err(UrlError::ForbiddenHost(AddressError::Loopback));
    }
    let valid = bare
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if bare.is_empty() || !valid {
        return Err(UrlError::NoHost);
    }
    Ok(())
}

/// A notice URL (`nurl`), borrowed from the bid: where the exchange sends its GET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoticeUrl<'a> {
    /// `https://`: sent over TLS.
    pub tls: bool,
    /// Host as written (compare case-insensitively; IPv6 without brackets).
    pub host: &'a str,
    /// Port (80, or 443 for `https://`, when absent).
    pub port: u16,
    /// Everything after the authority up to a `#`: the request target, except that it may be
    /// empty or start with `?` (then a `/` goes in front).
    pub target: &'a str,
}

impl<'a> NoticeUrl<'a> {
    /// Parses an `http://` or `https://` notice URL by the same host rules as onboarding ([`check_host`]):
    /// no other scheme, no userinfo, no metadata or (unless allowed) loopback hosts, no
    /// control characters or spaces in the target.
    pub fn parse(url: &'a str, allow_loopback: bool) -> Result<Self, UrlError> {
        if url.len() > DSP_URL_BYTES_MAX * 4 {
            return Err(UrlError::TooLong);
        }
        let (tls, rest) = split_scheme(url)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::HasUserinfo);
        }
        let (host, port) = split_host_port(authority, default_port(tls))?;
        check_host(host, allow_loopback)?;
        let target = tail.split('#').next().unwrap_or("");
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::BadPath);
        }
        Ok(Self {
            tls,
            host,
            port,
            target,
        })
    }

    /// Where the notice may be sent, by the exchange's address policy (it never resolves a
    /// name on a worker, and a DSP must not make it call arbitrary hosts): an IP literal host
    /// that passes [`check_address`], or a registered DSP's host, at the address `dsp_ip`
    /// knows for it (`None`: no such DSP); with the URL's port either way.
    pub fn addr(
        &self,
        allow_loopback: bool,
        dsp_ip: impl FnOnce(&str) -> Option<IpAddr>,
    ) -> Option<SocketAddr> {
        let ip = match self.host.parse::<IpAddr>() {
            Ok(ip) => {
                check_address(ip, allow_loopback).ok()?;
                ip
            }
            Err(_) => dsp_ip(self.host)?,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

/// Whether `url` is `https://` (else `http://`), and the rest after the scheme.
fn split_scheme(url: &str) -> Result<(bool, &str), UrlError> {
    if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        return Ok((true, rest));
    }
    let rest = strip_prefix_ignore_case(url, "http://").ok_or(UrlError::NotHttp)?;
    Ok((false, rest))
}

fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(&str, u16), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or(UrlError::NoHost)?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(UrlError::BadPort),
        };
        (&v6[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(UrlError::BadPort),
        },
    };
    Ok((host, port))
}

/// What a DSP asked for beyond its URL (its onboarding body or its roster entry).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DspOptions {
    /// Bid requests go to it gzip-compressed (`Content-Encoding: gzip`), and it may answer
    /// gzip (`Accept-Encoding: gzip`).
    pub gzip: bool,
    /// Which requests it is sent, and how its bids are adjusted (the roster's; every request
    /// by default). Shared: every worker's table points at it.
    pub policy: Arc<DspPolicy>,
}

/// Whether `name` is a DSP name: `[A-Za-z0-9._-]{1,64}` (onboarding and the roster file).
pub fn is_valid_dsp_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= DSP_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One registered DSP.
#[derive(Clone, Debug, PartialEq)]
pub struct DspEntry {
    /// Unique name, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// Where bid requests go.
    pub url: BidUrl,
    /// What it asked for beyond its URL.
    pub options: DspOptions,
    /// When it was first added (caller's clock, ms).
    pub added_at_ms: u64,
    /// When it last onboarded (caller's clock, ms).
    pub last_seen_ms: u64,
}

/// Why an onboarding was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryError {
    /// The name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    InvalidName,
    /// Already [`Registry::dsps_max`] DSPs.
    Full,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryError::InvalidName => "name must be 1-64 characters of [A-Za-z0-9._-]",
            RegistryError::Full => "the registry is full",
        })
    }
}

impl std::error::Error for RegistryError {}

/// What an upsert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// A new DSP.
    Added,
    /// Same name and URL: last-seen refreshed.
    Refreshed,
    /// Same name, new URL: the URL replaced.
    Replaced,
}

/// An immutable, versioned copy of the registry; cloning is cheap.
#[derive(Clone, Debug, Default)]
pub struct RegistrySnapshot {
    /// Increases with every change.
    pub version: u64,
    /// The DSPs, in the order they were added.
    pub dsps: Arc<[DspEntry]>,
}

impl RegistrySnapshot {
    /// Whether no DSP is registered (the exchange answers 404).
    pub fn is_empty(&self) -> bool {
        self.dsps.is_empty()
    }
}

/// The authoritative registry (control plane).
#[derive(Debug)]
pub struct Registry {
    entries: Vec<DspEntry>,
    version: u64,
    dsps_max: usize,
    snapshot: RegistrySnapshot,
}

impl Registry {
    /// An empty registry accepting at most `dsps_max` DSPs.
    pub fn new(dsps_max: usize) -> Self {
        Self {
            entries: Vec::new(),
            version: 0,
            dsps_max,
            snapshot: RegistrySnapshot::default(),
        }
    }

    /// The cap on DSPs.
    pub fn dsps_max(&self) -> usize {
        self.dsps_max
    }

    /// Adds or refreshes a DSP. Idempotent: the same call twice leaves one entry; a new URL or
    /// new options replace the entry's.
    pub fn upsert(
        &mut self,
        name: &str,
        url: BidUrl,
        options: DspOptions,
        now_ms: u64,
    ) -> Result<Upsert, RegistryError> {
        if !is_valid_dsp_name(name) {
            return Err(RegistryError::InvalidName);
        }
        let outcome = match self.entries.iter_mut().find(|e| e.name == name) {
            Some(entry) => {
                entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
                if entry.url == url && entry.options == options {
                    Upsert::Refreshed
                } else {
                    entry.url = url;
                    entry.options = options;
                    Upsert::Replaced
                }
            }
            None => {
                if self.entries.len() >= self.dsps_max {
                    return Err(RegistryError::Full);
                }
                self.entries.push(DspEntry {
                    name: name.to_string(),
                    url,
                    options,
                    added_at_ms: now_ms,
                    last_seen_ms: now_ms,
                });
                Upsert::Added
            }
        };
        self.publish();
        Ok(outcome)
    }

    /// Removes a DSP by name; false when there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        let removed = self.entries.len() != before;
        if removed {
            self.publish();
        }
        removed
    }

    /// Removes every DSP not seen for more than `ttl_ms`, except those `pinned` names; returns
    /// their number.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64, pinned: &dyn Fn(&str) -> bool) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| pinned(&e.name) || now_ms.saturating_sub(e.last_seen_ms) <= ttl_ms);
        let expired = before - self.entries.len();
        if expired > 0 {
            self.publish();
        }
        expired
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> RegistrySnapshot {
        self.snapshot.clone()
    }

    fn publish(&mut self) {
        self.version += 1;
        self.snapshot = RegistrySnapshot {
            version: self.version,
            dsps: self.entries.clone().into(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_notice_urls_without_allocating() {
        let t = NoticeUrl::parse("http://127.0.0.1:8080/win?p=1.5&id=x#frag", true).unwrap();
        assert_eq!(
            (t.host, t.port, t.target),
            ("127.0.0.1", 8080, "/win?p=1.5&id=x")
        );
        let t = NoticeUrl::parse("HTTP://dsp.example?p=1", true).unwrap();
        assert_eq!((t.host, t.port, t.target), ("dsp.example", 80, "?p=1"));
        let t = NoticeUrl::parse("http://[::1]:81", true).unwrap();
        assert_eq!((t.host, t.port, t.target), ("::1", 81, ""));
        let t = NoticeUrl::parse("https://dsp.example/win", true).unwrap();
        assert_eq!(
            (t.tls, t.host, t.port, t.target),
            (true, "dsp.example", 443, "/win")
        );
        assert_eq!(
            NoticeUrl::parse("ftp://dsp.example/win", true),
            Err(UrlError::NotHttp)
        );
        assert_eq!(
            NoticeUrl::parse("http://u:p@dsp.example/win", true),
            Err(UrlError::HasUserinfo)
        );
        assert!(NoticeUrl::parse("http://169.254.169.254/latest", true).is_err());
        assert!(NoticeUrl::parse("http://METADATA.google.internal/x", true).is_err());
        assert!(NoticeUrl::parse("http://127.0.0.1/win", false).is_err());
        assert!(NoticeUrl::parse("http://LocalHost/win", false).is_err());
        assert_eq!(
            NoticeUrl::parse("http://a/b c", true),
            Err(UrlError::BadPath)
        );
        let dsp = |host: &str| (host == "dsp.example").then(|| IpAddr::from([10, 0, 0, 7]));
        let url = |u| NoticeUrl::parse(u, true).unwrap();
        let addr = url("http://DSP.example:81/w").addr(false, |h| dsp(&h.to_lowercase()));
        assert_eq!(addr, Some(SocketAddr::from(([10, 0, 0, 7], 81))));
        assert_eq!(url("http://other.example/w").addr(false, dsp), None);
        assert_eq!(
            url("http://127.0.0.1/w").addr(false, dsp),
            None,
            "loopback refused"
        );
        let addr = url("http://127.0.0.1:82/w").addr(true, dsp);
        assert_eq!(addr, Some(SocketAddr::from(([127, 0, 0, 1], 82))));
    }

    fn url(s: &str) -> BidUrl {
        BidUrl::parse(s, None, true).unwrap()
    }

    #[test]
    fn urls_parse_with_defaults() {
        let u = url("http://braid:5000");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("braid", 5000, "/bid")
        );
        assert_eq!(u.to_string(), "http://braid:5000/bid");
        let u = BidUrl::parse("HTTP://Example.COM/base/", Some("/v2/bid?x=1"), false).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("example.com", 80, "/base/v2/bid?x=1")
        );
        let u = url("HTTPS://dsp.example/rtb");
        assert!(u.tls);
        assert_eq!((u.port, u.path.as_str()), (443, "/rtb/bid"));
        assert_eq!(u.to_string(), "https://dsp.example:443/rtb/bid");
        assert!(!url("http://braid:5000").tls);
        let u = url("http://[::1]:7000");
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:7000".to_string())
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        let cases = [
            ("ftp://x", UrlError::NotHttp),
            ("https//x", UrlError::NotHttp),
            ("x:1", UrlError::NotHttp),
            ("http://user:pw@x:1", UrlError::HasUserinfo),
            ("http://:80", UrlError::NoHost),
            ("http://x:0", UrlError::BadPort),
            ("http://x:99999", UrlError::BadPort),
            ("http://x:+1", UrlError::BadPort),
            ("http://x:", UrlError::BadPort),
            ("http://bad host", UrlError::NoHost),
            (
                "http://169.254.169.254",
                UrlError::ForbiddenHost(AddressError::LinkLocal),
            ),
            (
                "http://[fe80::1]:80",
                UrlError::ForbiddenHost(AddressError::LinkLocal),
            ),
            (
                "http://[fd00:ec2::254]",
                UrlError::ForbiddenHost(AddressError::Metadata),
            ),
            (
                "http://100.100.100.200",
                UrlError::ForbiddenHost(AddressError::Metadata),
            ),
            (
                "http://metadata.google.internal",
                UrlError::ForbiddenHost(AddressError::Metadata),
            ),
            (
                "http://0.0.0.0:80",
                UrlError::ForbiddenHost(AddressError::NotUnicast),
            ),
            (
                "http://[::ffff:169.254.169.254]",
                UrlError::ForbiddenHost(AddressError::LinkLocal),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(BidUrl::parse(raw, None, true), Err(expected), "{raw}");
        }
        assert_eq!(
            BidUrl::parse("http://x", Some("bid"), true),
            Err(UrlError::BadPath)
        );
        assert_eq!(
            BidUrl::parse("http://x", Some("/b id"), true),
            Err(UrlError::BadPath)
        );
        assert_eq!(
            BidUrl::parse(&format!("http://{}", "a".repeat(600)), None, true),
            Err(UrlError::TooLong)
        );
    }

    #[test]
    fn loopback_is_a_policy() {
        assert!(BidUrl::parse("http://127.0.0.1:5000", None, true).is_ok());
        assert_eq!(
            BidUrl::parse("http://127.0.0.1:5000", None, false),
            Err(UrlError::ForbiddenHost(AddressError::Loopback))
        );
        assert_eq!(
            BidUrl::parse("http://localhost:5000", None, false),
            Err(UrlError::ForbiddenHost(AddressError::Loopback))
        );
        assert_eq!(
            check_address("::1".parse().unwrap(), false),
            Err(AddressError::Loopback)
        );
        assert_eq!(check_address("10.0.0.7".parse().unwrap(), false), Ok(()));
    }

    #[test]
    fn upsert_is_idempotent_and_versioned() {
        let mut registry = Registry::new(2);
        assert_eq!(
            registry.upsert("braid", url("http://a:1"), DspOptions::default(), 10),
            Ok(Upsert::Added)
        );
        assert_eq!(
            registry.upsert("braid", url("http://a:1"), DspOptions::default(), 20),
            Ok(Upsert::Refreshed)
        );
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.dsps.len(), 1);
        assert_eq!(
            (snapshot.dsps[0].added_at_ms, snapshot.dsps[0].last_seen_ms),
            (10, 20)
        );
        assert_eq!(
            registry.upsert("braid", url("http://b:2"), DspOptions::default(), 30),
            Ok(Upsert::Replaced)
        );
        assert_eq!(registry.snapshot().dsps[0].url, url("http://b:2"));
        assert!(registry.snapshot().version > snapshot.version);
        assert_eq!(
            registry.upsert("x", url("http://c:3"), DspOptions::default(), 30),
            Ok(Upsert::Added)
        );
        assert_eq!(
            registry.upsert("y", url("http://d:4"), DspOptions::default(), 30),
            Err(RegistryError::Full)
        );
        assert_eq!(
            registry.upsert("", url("http://d:4"), DspOptions::default(), 30),
            Err(RegistryError::InvalidName)
        );
        assert_eq!(
            registry.upsert("a b", url("http://d:4"), DspOptions::default(), 30),
            Err(RegistryError::InvalidName)
        );
        assert!(registry.remove("x"));
        assert!(!registry.remove("x"));
        assert_eq!(registry.snapshot().dsps.len(), 1);
    }

    #[test]
    fn entries_expire_by_last_seen() {
        let mut registry = Registry::new(8);
        registry
            .upsert("old", url("http://a:1"), DspOptions::default(), 0)
            .unwrap();
        registry
            .upsert("new", url("http://b:1"), DspOptions::default(), 20_000)
            .unwrap();
        let none = |_: &str| false;
        assert_eq!(registry.expire(30_000, 30_000, &none), 0);
        assert_eq!(registry.expire(30_001, 30_000, &|n: &str| n == "old"), 0);
        assert_eq!(registry.expire(30_001, 30_000, &none), 1);
        let names: Vec<_> = registry
            .snapshot()
            .dsps
            .iter()
            .map(|d| d.name.clone())
            .collect();
        assert_eq!(names, ["new"]);
        assert!(!registry.snapshot().is_empty());
    }
}
