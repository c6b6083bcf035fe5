//! Owns the control plane: the single authoritative DSP [`Registry`], on its own thread.
//!
//! Workers never resolve names or touch the registry: they send a [`Command`] over a bounded
//! crossbeam channel and await a `futures_channel::oneshot` reply. The control thread resolves
//! host names (blocking, off the workers, bounded by [`RESOLVE_TIMEOUT`]), checks every
//! resolved address with `check_address` (DNS-rebinding defence), upserts, and broadcasts a
//! [`Resolved`] snapshot (entries plus their `SocketAddr`) to every worker with
//! `rtb_io::Broadcast`. Every [`TICK`] it expires DSPs not seen within the TTL; every
//! [`RERESOLVE_PERIOD`] it re-resolves names and rebroadcasts when an address changed (a DSP
//! whose name now resolves to a forbidden address is removed). When `--currency-rates` is set,
//! every tick also gives the rates refresh ([`crate::rates::RatesRefresh`]) its turn, so rates
//! are fetched and parsed here, never on a worker.

use std::{
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use futures_channel::oneshot;
use rtb_core::registry::{check_address, BidUrl, DspEntry, Registry, RegistryError, Upsert};
use rtb_io::Broadcast;
use serde::Serialize;

use crate::rates::RatesRefresh;

/// Control commands queued at most; beyond it onboarding answers 503.
pub const COMMAND_QUEUE_MAX: usize = 256;
/// How often the control thread expires DSPs.
pub const TICK: Duration = Duration::from_secs(1);
/// How often host names are resolved again.
pub const RERESOLVE_PERIOD: Duration = Duration::from_secs(30);
/// Longest wait for the system resolver.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest name or URL echoed back in an error or a log line.
pub const ECHO_BYTES_MAX: usize = 128;

/// One DSP as workers see it: the registry entry plus the address to connect to.
#[derive(Debug, Clone)]
pub struct ResolvedDsp {
    /// Registry entry.
    pub entry: DspEntry,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// A registry snapshot with addresses, broadcast to every worker.
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
    /// The registry holds `--max-dsps` DSPs.
    Full,
}

/// Result of an onboarding.
#[derive(Debug, Clone)]
pub struct Onboarded {
    /// What happened.
    pub upsert: Upsert,
    /// The registry version that holds it.
    pub version: u64,
    /// The stored entry.
    pub entry: DspEntry,
    /// The address resolved.
    pub addr: SocketAddr,
}

/// A request to the control thread.
#[derive(Debug)]
pub enum Command {
    /// POST /dsp
    Onboard {
        /// DSP name.
        name: String,
        /// Base URL.
        base_url: String,
        /// Optional bid path.
        bid_path: Option<String>,
        /// Where to answer.
        reply: oneshot::Sender<Result<Onboarded, OnboardError>>,
    },
    /// DELETE /dsp/{name}: answers whether it existed, and the version after.
    Remove {
        /// DSP name.
        name: String,
        /// Where to answer.
        reply: oneshot::Sender<(bool, u64)>,
    },
    /// GET /dsp and /debug/registry: the registry as JSON.
    List {
        /// Where to answer.
        reply: oneshot::Sender<String>,
    },
}

/// The workers' end of the control thread.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: Sender<Command>,
}

impl ControlHandle {
    /// Queues a command; false when the queue is full or the thread is gone.
    pub fn send(&self, cmd: Command) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Control-plane settings.
#[derive(Debug, Clone, Copy)]
pub struct ControlConfig {
    /// Cap on DSPs.
    pub dsps_max: usize,
    /// TTL of a DSP since its last onboarding.
    pub ttl: Duration,
    /// Whether loopback DSPs are allowed.
    pub allow_loopback: bool,
    /// Re-resolve period.
    pub reresolve_period: Duration,
}

/// Milliseconds since the Unix epoch (registry timestamps; shown in GET /dsp).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Cuts `s` to at most [`ECHO_BYTES_MAX`] bytes on a char boundary, for logs and error echoes.
pub fn truncate(s: &str) -> &str {
    if s.len() <= ECHO_BYTES_MAX {
        return s;
    }
    let mut end = ECHO_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Starts the control thread. It stops when every [`ControlHandle`] is dropped.
pub fn spawn(
    config: ControlConfig,
    broadcast: Broadcast<Resolved>,
    rates: Option<RatesRefresh>,
) -> std::io::Result<(ControlHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE_MAX);
    let join = std::thread::Builder::new()
        .name("rtb-control".into())
        .spawn(move || {
            let mut control = Control::new(config, broadcast, system_resolver());
            control.rates = rates;
            control.run(&rx)
        })?;
    Ok((ControlHandle { tx }, join))
}

/// Turns `host, port` into addresses: the system resolver in the binary, a scripted one in
/// tests (so re-resolution can be tested without editing /etc/hosts).
pub type Resolver = Arc<dyn Fn(&str, u16) -> Result<Vec<SocketAddr>, String> + Send + Sync>;

/// The system resolver, bounded by [`RESOLVE_TIMEOUT`].
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| resolve_all(host, port, RESOLVE_TIMEOUT))
}

struct Control {
    config: ControlConfig,
    resolver: Resolver,
    registry: Registry,
    addrs: Vec<(String, SocketAddr)>,
    broadcast: Broadcast<Resolved>,
    /// The version workers were last sent. A refresh bumps the registry's version but is not
    /// broadcast, so replies carry this one (what workers will reach).
    published_version: u64,
    /// The currency rates refresh, when `--currency-rates` is set.
    rates: Option<RatesRefresh>,
}

/// Resolves `host:port` with the system resolver on a helper thread, giving up after
/// `timeout` (the helper is then left to finish on its own; getaddrinfo cannot be cancelled).
fn resolve_all(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let target = (host.to_string(), port);
    let spawned = std::thread::Builder::new()
        .name("rtb-resolve".into())
        .spawn(move || {
            let r = target
                .to_socket_addrs()
                .map(|it| it.collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        });
    if spawned.is_err() {
        return Err("resolver thread could not start".into());
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err("host name has no address".into()),
        Ok(Err(e)) => Err(format!("host name does not resolve: {}", truncate(&e))),
        Err(_) => Err("host name resolution timed out".into()),
    }
}

/// Resolves and checks every address (the DNS-rebinding defence: a name is judged by what it
/// resolves to, not by how it is spelt); returns the first one.
pub fn resolve_checked(
    resolver: &Resolver,
    url: &BidUrl,
    allow_loopback: bool,
) -> Result<SocketAddr, String> {
    let addrs = match url.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port)],
        Err(_) => resolver(&url.host, url.port)?,
    };
    for a in &addrs {
        check_address(a.ip(), allow_loopback)
            .map_err(|e| format!("host resolves to a forbidden address: {e}"))?;
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| "host name has no address".to_string())
}

#[derive(Serialize)]
struct ListEntry<'a> {
    name: &'a str,
    url: String,
    addr: String,
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

impl Control {
    fn new(config: ControlConfig, broadcast: Broadcast<Resolved>, resolver: Resolver) -> Self {
        Self {
            config,
            resolver,
            registry: Registry::new(config.dsps_max),
            addrs: Vec::new(),
            broadcast,
            published_version: 0,
            rates: None,
        }
    }

    fn run(mut self, rx: &Receiver<Command>) {
        let mut next_tick = Instant::now() + TICK;
        let mut next_resolve = Instant::now() + self.config.reresolve_period;
        loop {
            match rx.recv_deadline(next_tick) {
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.expire();
                if let Some(rates) = &mut self.rates {
                    rates.poll(now);
                }
            }
            if now >= next_resolve {
                next_resolve = now + self.config.reresolve_period;
                self.reresolve();
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Onboard {
                name,
                base_url,
                bid_path,
                reply,
            } => {
                let r = self.onboard(&name, &base_url, bid_path.as_deref());
                let _ = reply.send(r);
            }
            Command::Remove { name, reply } => {
                let removed = self.registry.remove(&name);
                if removed {
                    self.addrs.retain(|(n, _)| *n != name);
                    tracing::info!(dsp = truncate(&name), "dsp removed");
                    self.publish();
                }
                let _ = reply.send((removed, self.published_version));
            }
            Command::List { reply } => {
                let _ = reply.send(self.list_json());
            }
        }
    }

    fn onboard(
        &mut self,
        name: &str,
        base_url: &str,
        bid_path: Option<&str>,
    ) -> Result<Onboarded, OnboardError> {
        let url = BidUrl::parse(base_url, bid_path, self.config.allow_loopback)
            .map_err(|e| OnboardError::Invalid(format!("base_url: {e}")))?;
        let addr = resolve_checked(&self.resolver, &url, self.config.allow_loopback)
            .map_err(|e| OnboardError::Invalid(format!("base_url: {e}")))?;
        let upsert = self
            .registry
            .upsert(name, url, now_ms())
            .map_err(|e| match e {
                RegistryError::Full => OnboardError::Full,
                RegistryError::InvalidName => OnboardError::Invalid(format!("name: {e}")),
            })?;
        let old = self.addrs.iter().position(|(n, _)| n == name);
        let addr_changed = match old {
            Some(i) => {
                let changed = self.addrs[i].1 != addr;
                self.addrs[i].1 = addr;
                changed
            }
            None => {
                self.addrs.push((name.to_string(), addr));
                true
            }
        };
        match upsert {
            Upsert::Added => tracing::info!(dsp = name, %addr, "dsp added"),
            Upsert::Replaced => tracing::info!(dsp = name, %addr, "dsp url replaced"),
            Upsert::Refreshed => tracing::debug!(dsp = name, "dsp refreshed"),
        }
        // A refresh only moves last_seen: workers need a new snapshot only for real changes.
        if upsert != Upsert::Refreshed || addr_changed {
            self.publish();
        }
        let snapshot = self.registry.snapshot();
        let entry = snapshot
            .dsps
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .ok_or_else(|| OnboardError::Invalid("name: not stored".into()))?;
        Ok(Onboarded {
            upsert,
            version: self.published_version,
            entry,
            addr,
        })
    }

    fn expire(&mut self) {
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let removed = self.registry.expire(now_ms(), ttl_ms);
        if removed > 0 {
            let snapshot = self.registry.snapshot();
            self.addrs
                .retain(|(n, _)| snapshot.dsps.iter().any(|e| e.name == *n));
            tracing::info!(removed, "dsps expired");
            self.publish();
        }
    }

    fn reresolve(&mut self) {
        let snapshot = self.registry.snapshot();
        let mut changed = false;
        for entry in snapshot.dsps.iter() {
            if entry.url.host.parse::<IpAddr>().is_ok() {
                continue;
            }
            match resolve_checked(&self.resolver, &entry.url, self.config.allow_loopback) {
                Ok(addr) => {
                    if let Some(slot) = self.addrs.iter_mut().find(|(n, _)| *n == entry.name) {
                        if slot.1 != addr {
                            tracing::info!(dsp = %entry.name, %addr, "dsp address changed");
                            slot.1 = addr;
                            changed = true;
                        }
                    }
                }
                Err(e) if e.contains("forbidden") => {
                    tracing::warn!(dsp = %entry.name, error = %e, "dsp removed: address now forbidden");
                    self.registry.remove(&entry.name);
                    self.addrs.retain(|(n, _)| *n != entry.name);
                    changed = true;
                }
                // A transient resolver failure keeps the last good address.
                Err(e) => tracing::warn!(dsp = %entry.name, error = %e, "re-resolve failed"),
            }
        }
        if changed {
            self.publish();
        }
    }

    fn resolved(&self) -> Resolved {
        let snapshot = self.registry.snapshot();
        let dsps: Vec<ResolvedDsp> = snapshot
            .dsps
            .iter()
            .filter_map(|e| {
                let addr = self.addrs.iter().find(|(n, _)| *n == e.name)?.1;
                Some(ResolvedDsp {
                    entry: e.clone(),
                    addr,
                })
            })
            .collect();
        Resolved {
            version: snapshot.version,
            dsps: dsps.into(),
        }
    }

    fn publish(&mut self) {
        let resolved = self.resolved();
        self.published_version = resolved.version;
        self.broadcast.send(resolved);
    }

    fn list_json(&self) -> String {
        let snapshot = self.registry.snapshot();
        let now = now_ms();
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
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
                    addr: self
                        .addrs
                        .iter()
                        .find(|(n, _)| *n == e.name)
                        .map(|(_, a)| a.to_string())
                        .unwrap_or_default(),
                    added_at_ms: e.added_at_ms,
                    last_seen_ms: e.last_seen_ms,
                    expires_in_ms: (e.last_seen_ms + ttl_ms).saturating_sub(now),
                })
                .collect(),
        };
        serde_json::to_string(&list).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(max: usize) -> (Control, Broadcast<Resolved>) {
        control_with(max, true, system_resolver())
    }

    fn control_with(
        max: usize,
        allow_loopback: bool,
        resolver: Resolver,
    ) -> (Control, Broadcast<Resolved>) {
        let b = Broadcast::new(1);
        let c = Control::new(
            ControlConfig {
                dsps_max: max,
                ttl: Duration::from_secs(30),
                allow_loopback,
                reresolve_period: RERESOLVE_PERIOD,
            },
            b.clone(),
            resolver,
        );
        (c, b)
    }

    /// A resolver answering `dsp.test` with whatever the test last set.
    type Answer = Arc<std::sync::Mutex<Result<Vec<SocketAddr>, String>>>;

    fn scripted() -> (Resolver, Answer) {
        let answer = Arc::new(std::sync::Mutex::new(Ok(vec![SocketAddr::from((
            [10, 0, 0, 1],
            80,
        ))])));
        let a = answer.clone();
        let resolver: Resolver = Arc::new(move |host, port| {
            assert_eq!(host, "dsp.test");
            a.lock().unwrap().clone().map(|v| {
                v.into_iter()
                    .map(|s| SocketAddr::new(s.ip(), port))
                    .collect()
            })
        });
        (resolver, answer)
    }

    fn addrs_of(snapshots: &[Resolved]) -> Vec<Vec<SocketAddr>> {
        snapshots
            .iter()
            .map(|s| s.dsps.iter().map(|d| d.addr).collect())
            .collect()
    }

    #[test]
    fn reresolve_follows_moves_keeps_last_good_and_drops_forbidden() {
        let (resolver, answer) = scripted();
        let (mut c, b) = control_with(4, false, resolver);
        let rx = b.receiver(0).unwrap();
        let r = c.onboard("a", "http://dsp.test:8080", None).unwrap();
        assert_eq!(r.addr, "10.0.0.1:8080".parse().unwrap());
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert_eq!(got.len(), 1);

        // Same answer: nothing is broadcast.
        c.reresolve();
        assert_eq!(rx.drain(|_| {}), 0);

        // The name stops resolving: the last good address is kept, nothing is broadcast.
        *answer.lock().unwrap() = Err("host name does not resolve".into());
        c.reresolve();
        assert_eq!(rx.drain(|_| {}), 0);
        assert!(c.list_json().contains("10.0.0.1:8080"), "{}", c.list_json());

        // It moves: workers get the new address.
        *answer.lock().unwrap() = Ok(vec!["10.0.0.2:1".parse().unwrap()]);
        c.reresolve();
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert_eq!(
            addrs_of(&got),
            vec![vec!["10.0.0.2:8080".parse::<SocketAddr>().unwrap()]]
        );

        // It is rebound to loopback (not allowed here): the DSP is removed.
        *answer.lock().unwrap() = Ok(vec!["127.0.0.1:1".parse().unwrap()]);
        c.reresolve();
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert_eq!(addrs_of(&got), vec![Vec::<SocketAddr>::new()]);
        assert!(c.registry.snapshot().dsps.is_empty());
    }

    #[test]
    fn onboarding_checks_every_resolved_address() {
        let (resolver, answer) = scripted();
        let (mut c, _b) = control_with(4, false, resolver);
        // One good and one metadata address: refused (an attacker controls which one a later
        // connect would use).
        *answer.lock().unwrap() = Ok(vec![
            "10.0.0.1:1".parse().unwrap(),
            "169.254.169.254:1".parse().unwrap(),
        ]);
        let e = c.onboard("a", "http://dsp.test", None).unwrap_err();
        assert!(
            matches!(&e, OnboardError::Invalid(m) if m.contains("forbidden")),
            "{e:?}"
        );
        *answer.lock().unwrap() = Ok(vec!["127.0.0.1:1".parse().unwrap()]);
        assert!(c.onboard("a", "http://dsp.test", None).is_err());
        *answer.lock().unwrap() = Err("host name does not resolve".into());
        assert!(c.onboard("a", "http://dsp.test", None).is_err());
        *answer.lock().unwrap() = Ok(vec!["10.0.0.1:1".parse().unwrap()]);
        assert!(c.onboard("a", "http://dsp.test", None).is_ok());
    }

    #[test]
    fn onboard_publishes_resolved_snapshot() {
        let (mut c, b) = control(1);
        let rx = b.receiver(0).unwrap();
        let r = c.onboard("a", "http://127.0.0.1:9", None).unwrap();
        assert_eq!(r.upsert, Upsert::Added);
        assert_eq!(r.addr, "127.0.0.1:9".parse().unwrap());
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].dsps[0].entry.url.path, "/bid");
        // Refresh: no new snapshot.
        let r = c.onboard("a", "http://127.0.0.1:9", None).unwrap();
        assert_eq!(r.upsert, Upsert::Refreshed);
        assert_eq!(rx.drain(|_| {}), 0);
        assert_eq!(
            c.onboard("b", "http://127.0.0.1:10", None).unwrap_err(),
            OnboardError::Full
        );
        assert!(matches!(
            c.onboard("c", "ftp://x", None),
            Err(OnboardError::Invalid(_))
        ));
        assert!(matches!(
            c.onboard("c", "http://169.254.169.254/", None),
            Err(OnboardError::Invalid(_))
        ));
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(100);
        let t = truncate(&s);
        assert!(t.len() <= ECHO_BYTES_MAX && t.is_char_boundary(t.len()));
        assert_eq!(truncate("abc"), "abc");
    }
}
