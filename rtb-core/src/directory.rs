//! Owns the DSP directory: the [`Registry`] together with every address each DSP's host name
//! resolved to, as the control plane keeps it. Onboarding resolves the URL's host and checks
//! every address it resolves to ([`crate::dns::resolve_checked`], the DNS-rebinding defence: a
//! name is judged by what it resolves to, not by how it is spelt); re-resolution, each host
//! when its record expires ([`crate::dns::reresolve_at_ms`]), follows a DSP whose addresses
//! changed, keeps the last good addresses when the resolver fails, and removes a DSP whose
//! name now resolves to a forbidden address; expiry drops DSPs not seen within the TTL.
//!
//! Sans-IO like the rest of the crate: the resolver and the wall-clock time are parameters,
//! and every method says whether workers need a new [`Resolved`] snapshot instead of sending
//! one (the exchange's control thread does, over `rtb_io::Broadcast`).

use std::{net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use serde::Serialize;

pub use crate::dns::{resolve_checked, Answer, Resolve};
use crate::{
    dns::{Checked, DnsLimits},
    echo::truncate,
    policy_fields::PolicyFields,
    registry::{BidUrl, DspEntry, DspOptions, Registry, RegistryError, Upsert},
    roster::Roster,
};

/// One DSP as workers see it: the registry entry plus the addresses to connect to.
#[derive(Debug, Clone)]
pub struct ResolvedDsp {
    /// Registry entry.
    pub entry: DspEntry,
    /// Where to connect: every address its host resolved to (at least one, at most
    /// [`DnsLimits::addrs_max`]), in address order.
    pub addrs: Arc<[SocketAddr]>,
}

/// A registry snapshot with addresses, for every worker.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Registry version.
    pub version: u64,
    /// DSPs in registration order.
    pub dsps: Arc<[ResolvedDsp]>,
}

/// Why an onboarding failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnboardError {
    /// Bad request: message for the client.
    Invalid(String),
    /// The registry holds its maximum of DSPs.
    Full,
}

/// What an onboarding did.
#[derive(Debug, Clone)]
pub struct Onboard {
    /// Added, refreshed or replaced.
    pub upsert: Upsert,
    /// The stored entry.
    pub entry: DspEntry,
    /// The addresses resolved (at least one).
    pub addrs: Arc<[SocketAddr]>,
    /// Whether workers need a new snapshot (a refresh at the same addresses only moves
    /// `last_seen`, which workers do not use).
    pub changed: bool,
}

/// What re-resolution found for one DSP, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reresolved {
    /// It now resolves to `addrs`.
    Moved {
        /// DSP name.
        name: String,
        /// Its new addresses.
        addrs: Arc<[SocketAddr]>,
    },
    /// It now resolves to a forbidden address: removed.
    Removed {
        /// DSP name.
        name: String,
        /// Why.
        error: String,
    },
    /// The resolver failed: the last good addresses are kept.
    Failed {
        /// DSP name.
        name: String,
        /// Why.
        error: String,
    },
}

/// The directory's limits.
#[derive(Debug, Clone, Copy)]
pub struct DirectoryConfig {
    /// Cap on DSPs.
    pub dsps_max: usize,
    /// TTL of a DSP since its last onboarding.
    pub ttl: Duration,
    /// Whether loopback DSPs are allowed.
    pub allow_loopback: bool,
    /// How many addresses are kept per host and how a record's TTL is followed.
    pub dns: DnsLimits,
}

/// One DSP's addresses and when to look its host up again.
#[derive(Debug)]
struct DspAddrs {
    name: String,
    addrs: Arc<[SocketAddr]>,
    /// Wall clock, ms; `u64::MAX` for an IP literal (nothing to look up).
    reresolve_at_ms: u64,
}

/// The registry and each DSP's resolved addresses.
#[derive(Debug)]
pub struct Directory {
    config: DirectoryConfig,
    registry: Registry,
    addrs: Vec<DspAddrs>,
    /// Names the roster file holds (issue 15): they never expire, and leave when the roster
    /// drops them.
    from_roster: Vec<String>,
}

/// What applying a roster did, for the caller to log and count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RosterApplied {
    /// Whether workers need a new snapshot.
    pub changed: bool,
    /// DSPs the roster no longer holds, removed.
    pub removed: usize,
    /// Entries not applied (the name and why: a host that does not resolve or resolves to a
    /// forbidden address, a full registry); the others are.
    pub refused: Vec<(String, String)>,
}

#[derive(Serialize)]
struct ListEntry<'a> {
    name: &'a str,
    url: String,
    /// The first address (kept for clients that read one).
    addr: String,
    addrs: Vec<String>,
    gzip: bool,
    /// Its policy, fields at their defaults left out.
    #[serde(flatten)]
    policy: PolicyFields,
    added_at_ms: u64,
    last_seen_ms: u64,
    expires_in_ms: u64,
}

#[derive(Serialize)]
struct List<'a> {
    version: u64,
    dsps_max: usize,
    ttl_s: u64,
    dsps: Vec<ListEntry<'a>>,
}

impl Directory {
    /// An empty directory.
    pub fn new(config: DirectoryConfig) -> Self {
        Self {
            config,
            registry: Registry::new(config.dsps_max),
            addrs: Vec::new(),
            from_roster: Vec::new(),
        }
    }

    /// The registry itself.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds, refreshes or replaces `name` (`POST /dsp`), at `now_ms` (wall clock).
    pub fn onboard(
        &mut self,
        name: &str,
        base_url: &str,
        bid_path: Option<&str>,
        options: DspOptions,
        resolve: Resolve<'_>,
        now_ms: u64,
    ) -> Result<Onboard, OnboardError> {
        let allow_loopback = self.config.allow_loopback;
        let url = BidUrl::parse(base_url, bid_path, allow_loopback)
            .map_err(|e| OnboardError::Invalid(format!("base_url: {e}")))?;
        let checked = resolve_checked(resolve, &url, allow_loopback, self.config.dns.addrs_max)
            .map_err(|e| OnboardError::Invalid(format!("base_url: {e}")))?;
        // A roster DSP may heartbeat over HTTP; its roster entry (URL, policy) stays in force.
        let options = match self.roster_entry(name) {
            Some(held) if held.url != url => {
                let why = "name: held by the roster file with another URL";
                return Err(OnboardError::Invalid(why.into()));
            }
            Some(held) => held.options.clone(),
            None => options,
        };
        let reresolve_at_ms = self.reresolve_at_ms(&url, &checked, now_ms);
        let upsert = self
            .registry
            .upsert(name, url, options, now_ms)
            .map_err(|e| match e {
                RegistryError::Full => OnboardError::Full,
                RegistryError::InvalidName => OnboardError::Invalid(format!("name: {e}")),
            })?;
        let (addrs, addrs_changed) = self.store_addrs(name, checked.addrs, reresolve_at_ms);
        let entry = self
            .registry
            .snapshot()
            .dsps
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .ok_or_else(|| OnboardError::Invalid("name: not stored".into()))?;
        Ok(Onboard {
            upsert,
            entry,
            addrs,
            changed: upsert != Upsert::Refreshed || addrs_changed,
        })
    }

    /// Removes `name` (`DELETE /dsp/{name}`); whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let removed = self.registry.remove(name);
        if removed {
            self.addrs.retain(|a| a.name != name);
        }
        removed
    }

    /// Makes the roster's DSPs the directory's roster DSPs at `now_ms`: each entry added or
    /// updated (URL, policy, gzip) as an onboarding would, DSPs the previous roster held and
    /// this one does not removed. DSPs onboarded over HTTP are left alone, unless the roster
    /// names them (the roster's entry then wins and pins them).
    pub fn apply_roster(
        &mut self,
        roster: &Roster,
        resolve: Resolve<'_>,
        now_ms: u64,
    ) -> RosterApplied {
        let mut out = RosterApplied::default();
        let dropped: Vec<String> = (self.from_roster.iter())
            .filter(|n| !roster.dsps.iter().any(|e| e.name == **n))
            .cloned()
            .collect();
        for name in dropped {
            out.removed += usize::from(self.remove(&name));
        }
        self.from_roster.clear();
        for e in &roster.dsps {
            let options = DspOptions {
                gzip: e.gzip,
                policy: Arc::new(e.policy.clone()),
            };
            let applied = self.apply_entry(&e.name, &e.url, options, resolve, now_ms);
            match applied {
                Ok(changed) => {
                    out.changed |= changed;
                    self.from_roster.push(e.name.clone());
                }
                Err(why) => out.refused.push((e.name.clone(), why)),
            }
        }
        out.changed |= out.removed > 0;
        out
    }

    /// The registry entry of `name` when the roster holds it.
    fn roster_entry(&self, name: &str) -> Option<DspEntry> {
        if !self.from_roster.iter().any(|n| n == name) {
            return None;
        }
        let snapshot = self.registry.snapshot();
        snapshot.dsps.iter().find(|e| e.name == name).cloned()
    }

    /// One roster entry into the registry and the address list; whether workers need it.
    fn apply_entry(
        &mut self,
        name: &str,
        url: &BidUrl,
        options: DspOptions,
        resolve: Resolve<'_>,
        now_ms: u64,
    ) -> Result<bool, String> {
        let checked = resolve_checked(
            resolve,
            url,
            self.config.allow_loopback,
            self.config.dns.addrs_max,
        )?;
        let upsert = (self.registry)
            .upsert(name, url.clone(), options, now_ms)
            .map_err(|e| e.to_string())?;
        let reresolve_at_ms = self.reresolve_at_ms(url, &checked, now_ms);
        let (_, addrs_changed) = self.store_addrs(name, checked.addrs, reresolve_at_ms);
        Ok(upsert != Upsert::Refreshed || addrs_changed)
    }

    /// When to look `url`'s host up again after `checked` arrived at `now_ms`: never for an
    /// IP literal.
    fn reresolve_at_ms(&self, url: &BidUrl, checked: &Checked, now_ms: u64) -> u64 {
        if url.host.parse::<IpAddr>().is_ok() {
            return u64::MAX;
        }
        self.config.dns.reresolve_at_ms(now_ms, checked.ttl)
    }

    /// Stores `name`'s addresses and next lookup; the addresses kept and whether they changed.
    fn store_addrs(
        &mut self,
        name: &str,
        addrs: Vec<SocketAddr>,
        reresolve_at_ms: u64,
    ) -> (Arc<[SocketAddr]>, bool) {
        match self.addrs.iter_mut().find(|a| a.name == name) {
            Some(slot) => {
                slot.reresolve_at_ms = reresolve_at_ms;
                let changed = *slot.addrs != *addrs;
                if changed {
                    slot.addrs = addrs.into();
                }
                (slot.addrs.clone(), changed)
            }
            None => {
                let addrs: Arc<[SocketAddr]> = addrs.into();
                self.addrs.push(DspAddrs {
                    name: name.to_string(),
                    addrs: addrs.clone(),
                    reresolve_at_ms,
                });
                (addrs, true)
            }
        }
    }

    /// Drops the DSPs not seen within the TTL at `now_ms` (the roster's never expire); how
    /// many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let pinned = |name: &str| self.from_roster.iter().any(|n| n == name);
        let removed = self.registry.expire(now_ms, ttl_ms, &pinned);
        if removed > 0 {
            let snapshot = self.registry.snapshot();
            self.addrs
                .retain(|a| snapshot.dsps.iter().any(|e| e.name == a.name));
        }
        removed
    }

    /// Looks up again the DSP hosts whose answer expired by `now_ms` (wall clock), the longest
    /// expired first, while `may_continue` says so (the caller's time budget for one pass: a
    /// host left over stays due and goes first next time); returns what changed (or failed),
    /// one entry per DSP concerned. Workers need a new snapshot unless every entry is a
    /// failure. A failed lookup keeps the last good addresses and is tried again after the
    /// re-resolve period.
    pub fn reresolve_due(
        &mut self,
        resolve: Resolve<'_>,
        now_ms: u64,
        may_continue: &dyn Fn() -> bool,
    ) -> Vec<Reresolved> {
        let snapshot = self.registry.snapshot();
        let mut due: Vec<(u64, String)> = (self.addrs.iter())
            .filter(|a| a.reresolve_at_ms <= now_ms)
            .map(|a| (a.reresolve_at_ms, a.name.clone()))
            .collect();
        due.sort_unstable();
        let mut found = Vec::new();
        for (_, name) in due {
            if !may_continue() {
                break;
            }
            if let Some(entry) = snapshot.dsps.iter().find(|e| e.name == name) {
                found.extend(self.reresolve_one(entry, resolve, now_ms));
            }
        }
        found
    }

    /// One DSP's host looked up again at `now_ms`; what changed, if anything.
    fn reresolve_one(
        &mut self,
        entry: &DspEntry,
        resolve: Resolve<'_>,
        now_ms: u64,
    ) -> Option<Reresolved> {
        let name = entry.name.clone();
        let (allow_loopback, dns) = (self.config.allow_loopback, self.config.dns);
        match resolve_checked(resolve, &entry.url, allow_loopback, dns.addrs_max) {
            Ok(checked) => {
                let at_ms = self.reresolve_at_ms(&entry.url, &checked, now_ms);
                let (addrs, changed) = self.store_addrs(&name, checked.addrs, at_ms);
                changed.then_some(Reresolved::Moved { name, addrs })
            }
            Err(error) if error.contains("forbidden") => {
                self.remove(&entry.name);
                Some(Reresolved::Removed { name, error })
            }
            Err(error) => {
                let at_ms = dns.reresolve_at_ms(now_ms, None);
                if let Some(slot) = self.addrs.iter_mut().find(|a| a.name == name) {
                    slot.reresolve_at_ms = at_ms;
                }
                Some(Reresolved::Failed { name, error })
            }
        }
    }

    /// The earliest time (wall clock, ms) a host is due to be looked up again; `None` when
    /// every DSP is an IP literal (or there are none).
    pub fn next_reresolve_ms(&self) -> Option<u64> {
        (self.addrs.iter())
            .map(|a| a.reresolve_at_ms)
            .filter(|&at| at != u64::MAX)
            .min()
    }

    /// The snapshot workers get: every DSP with its address.
    pub fn resolved(&self) -> Resolved {
        let snapshot = self.registry.snapshot();
        let dsps: Vec<ResolvedDsp> = snapshot
            .dsps
            .iter()
            .filter_map(|e| {
                let addrs = self.addrs.iter().find(|a| a.name == e.name)?.addrs.clone();
                Some(ResolvedDsp {
                    entry: e.clone(),
                    addrs,
                })
            })
            .collect();
        Resolved {
            version: snapshot.version,
            dsps: dsps.into(),
        }
    }

    /// The directory as `GET /dsp` shows it, at `now_ms`.
    pub fn list_json(&self, now_ms: u64) -> String {
        let snapshot = self.registry.snapshot();
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let addrs_of = |name: &str| -> Vec<String> {
            (self.addrs.iter().find(|a| a.name == name))
                .map(|a| a.addrs.iter().map(SocketAddr::to_string).collect())
                .unwrap_or_default()
        };
        let list = List {
            version: snapshot.version,
            dsps_max: self.registry.dsps_max(),
            ttl_s: self.config.ttl.as_secs(),
            dsps: snapshot
                .dsps
                .iter()
                .map(|e| ListEntry {
                    name: &e.name,
                    url: e.url.to_string(),
                    addr: addrs_of(&e.name).first().cloned().unwrap_or_default(),
                    addrs: addrs_of(&e.name),
                    gzip: e.options.gzip,
                    policy: PolicyFields::from(&*e.options.policy),
                    added_at_ms: e.added_at_ms,
                    last_seen_ms: e.last_seen_ms,
                    expires_in_ms: (e.last_seen_ms + ttl_ms).saturating_sub(now_ms),
                })
                .collect(),
        };
        serde_json::to_string(&list).unwrap_or_else(|_| "{}".into())
    }
}

impl std::fmt::Display for Reresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reresolved::Moved { name, addrs } => {
                write!(f, "{}: now at {addrs:?}", truncate(name))
            }
            Reresolved::Removed { name, error } => {
                write!(f, "{}: removed: {error}", truncate(name))
            }
            Reresolved::Failed { name, error } => {
                write!(f, "{}: re-resolve failed: {error}", truncate(name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaTypes;
    use std::sync::Mutex;

    const NOW_MS: u64 = 1_000_000;

    /// The re-resolve period (`--dns-reresolve-s`) of these tests.
    const PERIOD_MS: u64 = 30_000;

    fn directory(max: usize, allow_loopback: bool) -> Directory {
        Directory::new(DirectoryConfig {
            dsps_max: max,
            ttl: Duration::from_secs(30),
            allow_loopback,
            dns: DnsLimits {
                reresolve_max: Duration::from_millis(PERIOD_MS),
                ..DnsLimits::default()
            },
        })
    }

    /// A resolver answering `dsp.test` with whatever the test last set, and counting lookups.
    struct Scripted {
        answer: Mutex<Result<Answer, String>>,
        lookups: Mutex<usize>,
    }

    impl Scripted {
        fn new() -> Self {
            let first = Answer {
                addrs: vec![SocketAddr::from(([10, 0, 0, 1], 80))],
                ttl: None,
            };
            Scripted {
                answer: Mutex::new(Ok(first)),
                lookups: Mutex::new(0),
            }
        }

        fn set_with_ttl(&self, answer: Result<Vec<&str>, &str>, ttl: Option<Duration>) {
            *self.answer.lock().unwrap() = answer
                .map(|v| Answer {
                    addrs: v.iter().map(|a| a.parse().unwrap()).collect(),
                    ttl,
                })
                .map_err(str::to_string);
        }

        fn set(&self, answer: Result<Vec<&str>, &str>) {
            self.set_with_ttl(answer, None);
        }

        fn lookups(&self) -> usize {
            *self.lookups.lock().unwrap()
        }

        fn resolve(&self, host: &str, port: u16) -> Result<Answer, String> {
            assert_eq!(host, "dsp.test");
            *self.lookups.lock().unwrap() += 1;
            let answer = self.answer.lock().unwrap().clone();
            answer.map(|a| Answer {
                addrs: (a.addrs.iter())
                    .map(|s| SocketAddr::new(s.ip(), port))
                    .collect(),
                ttl: a.ttl,
            })
        }
    }

    fn no_resolver(host: &str, _port: u16) -> Result<Answer, String> {
        panic!("{host} resolved, but only IP literals are onboarded here")
    }

    /// Every DSP's addresses, in order.
    fn addrs(d: &Directory) -> Vec<SocketAddr> {
        (d.resolved().dsps.iter())
            .flat_map(|d| d.addrs.iter().copied())
            .collect()
    }

    #[test]
    fn reresolve_follows_moves_keeps_last_good_and_drops_forbidden() {
        let scripted = Scripted::new();
        let resolve = |h: &str, p| scripted.resolve(h, p);
        let mut d = directory(4, false);
        let r = d.onboard(
            "a",
            "http://dsp.test:8080",
            None,
            DspOptions::default(),
            &resolve,
            NOW_MS,
        );
        let r = r.unwrap();
        assert_eq!(*r.addrs, ["10.0.0.1:8080".parse().unwrap()]);
        assert!(r.changed);
        let mut now_ms = NOW_MS + PERIOD_MS;

        // Same answer: nothing changed.
        assert_eq!(d.reresolve_due(&resolve, now_ms, &|| true), vec![]);

        // The name stops resolving: the last good address is kept.
        scripted.set(Err("host name does not resolve"));
        now_ms += PERIOD_MS;
        let found = d.reresolve_due(&resolve, now_ms, &|| true);
        assert!(
            matches!(&found[..], [Reresolved::Failed { .. }]),
            "{found:?}"
        );
        assert!(d.list_json(NOW_MS).contains("10.0.0.1:8080"));

        // It moves: the snapshot has the new address.
        scripted.set(Ok(vec!["10.0.0.2:1"]));
        let moved: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        now_ms += PERIOD_MS;
        let found = d.reresolve_due(&resolve, now_ms, &|| true);
        assert_eq!(
            found,
            vec![Reresolved::Moved {
                name: "a".into(),
                addrs: vec![moved].into()
            }]
        );
        assert_eq!(addrs(&d), vec![moved]);

        // It is rebound to loopback (not allowed here): the DSP is removed.
        scripted.set(Ok(vec!["127.0.0.1:1"]));
        now_ms += PERIOD_MS;
        let found = d.reresolve_due(&resolve, now_ms, &|| true);
        assert!(
            matches!(&found[..], [Reresolved::Removed { .. }]),
            "{found:?}"
        );
        assert!(d.registry().snapshot().dsps.is_empty());
        assert_eq!(addrs(&d), vec![]);
    }

    #[test]
    fn every_address_of_a_host_is_kept_and_a_reordered_answer_is_no_change() {
        let scripted = Scripted::new();
        let resolve = |h: &str, p| scripted.resolve(h, p);
        let mut d = directory(4, false);
        scripted.set(Ok(vec!["10.0.0.3:1", "10.0.0.1:1", "10.0.0.2:1"]));
        let options = DspOptions::default();
        let r = d.onboard("a", "http://dsp.test:81", None, options, &resolve, NOW_MS);
        let three: Vec<SocketAddr> = ["10.0.0.1:81", "10.0.0.2:81", "10.0.0.3:81"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(*r.unwrap().addrs, *three);
        assert_eq!(addrs(&d), three);
        assert!(d
            .list_json(NOW_MS)
            .contains(r#""addrs":["10.0.0.1:81","10.0.0.2:81","10.0.0.3:81"]"#));
        // A server rotating its answer is no change for the workers.
        scripted.set(Ok(vec!["10.0.0.2:1", "10.0.0.3:1", "10.0.0.1:1"]));
        assert_eq!(
            d.reresolve_due(&resolve, NOW_MS + PERIOD_MS, &|| true),
            vec![]
        );
        // One address leaves: the others stay.
        scripted.set(Ok(vec!["10.0.0.3:1", "10.0.0.1:1"]));
        let found = d.reresolve_due(&resolve, NOW_MS + 2 * PERIOD_MS, &|| true);
        assert!(
            matches!(&found[..], [Reresolved::Moved { addrs, .. }] if addrs.len() == 2),
            "{found:?}"
        );
        assert_eq!(addrs(&d), [three[0], three[2]]);
    }

    #[test]
    fn each_host_is_looked_up_again_when_its_record_expires() {
        let scripted = Scripted::new();
        let resolve = |h: &str, p| scripted.resolve(h, p);
        let mut d = directory(4, true);
        let options = DspOptions::default();
        // An IP literal is never looked up: nothing is due.
        d.onboard(
            "lit",
            "http://127.0.0.1:9",
            None,
            options.clone(),
            &resolve,
            NOW_MS,
        )
        .unwrap();
        assert_eq!(d.next_reresolve_ms(), None);
        scripted.set_with_ttl(Ok(vec!["10.0.0.1:1"]), Some(Duration::from_secs(5)));
        d.onboard("a", "http://dsp.test", None, options, &resolve, NOW_MS)
            .unwrap();
        assert_eq!(scripted.lookups(), 1);
        assert_eq!(d.next_reresolve_ms(), Some(NOW_MS + 5_000));
        // Before the record expires: no lookup.
        assert_eq!(d.reresolve_due(&resolve, NOW_MS + 4_999, &|| true), vec![]);
        assert_eq!(scripted.lookups(), 1);
        // At expiry: one lookup; a TTL of 0 next is held to the minimum.
        scripted.set_with_ttl(Ok(vec!["10.0.0.1:1"]), Some(Duration::ZERO));
        assert_eq!(d.reresolve_due(&resolve, NOW_MS + 5_000, &|| true), vec![]);
        assert_eq!(scripted.lookups(), 2);
        assert_eq!(d.next_reresolve_ms(), Some(NOW_MS + 6_000));
        // A failed lookup keeps the address and waits the whole period before trying again.
        scripted.set(Err("timed out"));
        let found = d.reresolve_due(&resolve, NOW_MS + 6_000, &|| true);
        assert!(
            matches!(&found[..], [Reresolved::Failed { .. }]),
            "{found:?}"
        );
        assert_eq!(d.next_reresolve_ms(), Some(NOW_MS + 6_000 + PERIOD_MS));
        assert_eq!(addrs(&d).len(), 2);
        // A long TTL is capped at the period.
        scripted.set_with_ttl(Ok(vec!["10.0.0.1:1"]), Some(Duration::from_secs(86_400)));
        let later = NOW_MS + 6_000 + PERIOD_MS;
        assert_eq!(d.reresolve_due(&resolve, later, &|| true), vec![]);
        assert_eq!(d.next_reresolve_ms(), Some(later + PERIOD_MS));
        assert_eq!(scripted.lookups(), 4);
    }

    #[test]
    fn a_pass_stops_when_its_budget_is_spent_and_the_rest_goes_first_next_time() {
        let scripted = Scripted::new();
        let resolve = |h: &str, p| scripted.resolve(h, p);
        let mut d = directory(4, false);
        for (name, at_ms) in [("late", NOW_MS + 1_000), ("early", NOW_MS)] {
            let options = DspOptions::default();
            d.onboard(name, "http://dsp.test", None, options, &resolve, at_ms)
                .unwrap();
        }
        assert_eq!(scripted.lookups(), 2);
        // Both due; the budget allows one lookup: the longest expired ("early") goes.
        scripted.set(Ok(vec!["10.0.0.9:1"]));
        let budget = std::cell::Cell::new(1_u32);
        let one_more = || budget.replace(budget.get().saturating_sub(1)) > 0;
        let now_ms = NOW_MS + 2 * PERIOD_MS;
        let found = d.reresolve_due(&resolve, now_ms, &one_more);
        assert!(
            matches!(&found[..], [Reresolved::Moved { name, .. }] if name == "early"),
            "{found:?}"
        );
        assert_eq!(scripted.lookups(), 3);
        // "late" is still due, and is the one looked up next.
        assert_eq!(d.next_reresolve_ms(), Some(NOW_MS + 1_000 + PERIOD_MS));
        let found = d.reresolve_due(&resolve, now_ms, &|| true);
        assert!(
            matches!(&found[..], [Reresolved::Moved { name, .. }] if name == "late"),
            "{found:?}"
        );
        assert_eq!(scripted.lookups(), 4);
        assert_eq!(d.next_reresolve_ms(), Some(now_ms + PERIOD_MS));
    }

    #[test]
    fn onboarding_checks_every_resolved_address() {
        let scripted = Scripted::new();
        let resolve = |h: &str, p| scripted.resolve(h, p);
        let mut d = directory(4, false);
        let mut onboard_a = || {
            let options = DspOptions::default();
            d.onboard("a", "http://dsp.test", None, options, &resolve, NOW_MS)
        };
        // One good and one metadata address: refused (an attacker controls which one a later
        // connect would use).
        scripted.set(Ok(vec!["10.0.0.1:1", "169.254.169.254:1"]));
        let e = onboard_a().unwrap_err();
        assert!(
            matches!(&e, OnboardError::Invalid(m) if m.contains("forbidden")),
            "{e:?}"
        );
        scripted.set(Ok(vec!["127.0.0.1:1"]));
        assert!(onboard_a().is_err());
        scripted.set(Err("host name does not resolve"));
        assert!(onboard_a().is_err());
        scripted.set(Ok(vec!["10.0.0.1:1"]));
        assert!(onboard_a().is_ok());
    }

    #[test]
    fn onboarding_refreshes_replaces_and_refuses() {
        let mut d = directory(1, true);
        let r = d.onboard(
            "a",
            "http://127.0.0.1:9",
            None,
            DspOptions::default(),
            &no_resolver,
            NOW_MS,
        );
        let r = r.unwrap();
        assert_eq!((r.upsert, r.changed), (Upsert::Added, true));
        assert_eq!(*r.addrs, ["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(d.resolved().dsps[0].entry.url.path, "/bid");
        // Refresh: workers need nothing new.
        let r = d.onboard(
            "a",
            "http://127.0.0.1:9",
            None,
            DspOptions::default(),
            &no_resolver,
            NOW_MS + 1,
        );
        let r = r.unwrap();
        assert_eq!((r.upsert, r.changed), (Upsert::Refreshed, false));
        let r = d.onboard(
            "a",
            "http://127.0.0.1:8",
            None,
            DspOptions::default(),
            &no_resolver,
            NOW_MS + 2,
        );
        assert_eq!(r.unwrap().upsert, Upsert::Replaced);
        // New options at the same URL replace the entry too, and workers need them.
        let gzip = DspOptions {
            gzip: true,
            ..DspOptions::default()
        };
        let r = d.onboard(
            "a",
            "http://127.0.0.1:8",
            None,
            gzip,
            &no_resolver,
            NOW_MS + 3,
        );
        let r = r.unwrap();
        assert_eq!((r.upsert, r.changed), (Upsert::Replaced, true));
        assert!(d.resolved().dsps[0].entry.options.gzip);
        assert!(d.list_json(NOW_MS).contains(r#""gzip":true"#));
        assert_eq!(addrs(&d), vec!["127.0.0.1:8".parse().unwrap()]);
        assert_eq!(
            d.onboard(
                "b",
                "http://127.0.0.1:10",
                None,
                DspOptions::default(),
                &no_resolver,
                NOW_MS
            )
            .unwrap_err(),
            OnboardError::Full
        );
        assert!(matches!(
            d.onboard(
                "c",
                "ftp://x",
                None,
                DspOptions::default(),
                &no_resolver,
                NOW_MS
            ),
            Err(OnboardError::Invalid(_))
        ));
        assert!(matches!(
            d.onboard(
                "c",
                "http://169.254.169.254/",
                None,
                DspOptions::default(),
                &no_resolver,
                NOW_MS
            ),
            Err(OnboardError::Invalid(_))
        ));
    }

    #[test]
    fn expiry_and_removal_drop_the_address_too() {
        let mut d = directory(4, true);
        d.onboard(
            "a",
            "http://127.0.0.1:9",
            None,
            DspOptions::default(),
            &no_resolver,
            NOW_MS,
        )
        .unwrap();
        d.onboard(
            "b",
            "http://127.0.0.1:10",
            None,
            DspOptions::default(),
            &no_resolver,
            NOW_MS + 20_000,
        )
        .unwrap();
        let list = d.list_json(NOW_MS + 25_000);
        assert!(list.contains("\"expires_in_ms\":5000"), "{list}");
        assert_eq!(d.expire(NOW_MS + 30_001), 1);
        assert_eq!(addrs(&d), vec!["127.0.0.1:10".parse().unwrap()]);
        assert!(d.remove("b"));
        assert!(!d.remove("b"));
        assert_eq!(addrs(&d), vec![]);
    }

    #[test]
    fn a_roster_adds_updates_pins_and_removes_its_dsps() {
        let roster = |json: &str| crate::roster::parse(json.as_bytes(), true).unwrap();
        let mut d = directory(8, true);
        let options = DspOptions::default();
        d.onboard(
            "http",
            "http://127.0.0.1:7",
            None,
            options.clone(),
            &no_resolver,
            NOW_MS,
        )
        .unwrap();
        let two = roster(
            r#"{"dsps":[{"name":"a","url":"http://127.0.0.1:8/bid","media":["video"]},
                        {"name":"b","url":"http://127.0.0.1:9/bid","gzip":true}]}"#,
        );
        let applied = d.apply_roster(&two, &no_resolver, NOW_MS);
        assert!(applied.changed && applied.refused.is_empty(), "{applied:?}");
        let resolved = d.resolved();
        let names: Vec<&str> = resolved.dsps.iter().map(|r| &*r.entry.name).collect();
        assert_eq!(names, ["http", "a", "b"]);
        assert_eq!(
            resolved.dsps[1].entry.options.policy.media,
            MediaTypes::VIDEO
        );
        assert!(resolved.dsps[2].entry.options.gzip);
        // `a` heartbeats over HTTP: a refresh, its roster policy kept; another URL is refused.
        let heartbeat = d.onboard(
            "a",
            "http://127.0.0.1:8",
            None,
            options.clone(),
            &no_resolver,
            NOW_MS,
        );
        assert_eq!(heartbeat.unwrap().upsert, Upsert::Refreshed);
        assert_eq!(
            d.resolved().dsps[1].entry.options.policy.media,
            MediaTypes::VIDEO
        );
        let moved = d.onboard(
            "a",
            "http://127.0.0.1:5",
            None,
            options,
            &no_resolver,
            NOW_MS,
        );
        assert!(matches!(moved, Err(OnboardError::Invalid(_))));
        // The same roster again: nothing for workers. Roster DSPs never expire.
        assert!(!d.apply_roster(&two, &no_resolver, NOW_MS + 1).changed);
        assert_eq!(d.expire(NOW_MS + 3_600_000), 1, "only the HTTP one expires");
        // `a` leaves the roster, `b` changes policy: both reach the workers.
        let one = roster(r#"{"dsps":[{"name":"b","url":"http://127.0.0.1:9/bid"}]}"#);
        let applied = d.apply_roster(&one, &no_resolver, NOW_MS + 2);
        assert_eq!((applied.changed, applied.removed), (true, 1));
        assert_eq!(addrs(&d), vec!["127.0.0.1:9".parse().unwrap()]);
        assert!(!d.resolved().dsps[0].entry.options.gzip);
    }
}
