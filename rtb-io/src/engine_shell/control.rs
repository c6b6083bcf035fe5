//! Owns the control thread: the single authoritative DSP directory
//! ([`rtb_core::directory::Directory`]: the registry and every address of each DSP's host)
//! lives on it, and every change reaches the workers from here.
//!
//! Workers never resolve names or touch the registry: they send a [`Command`] over a bounded
//! crossbeam channel and await a `futures_channel::oneshot` reply. The control thread resolves
//! host names (blocking, off the workers, each lookup bounded by `--dns-timeout-ms`, with the
//! resolver of [`crate::dns::control_resolver`], counted by [`crate::dns_status`]), applies the
//! command to the directory, and broadcasts a [`Resolved`] snapshot to every worker with
//! [`crate::Broadcast`] when workers need one. Every [`TICK`] it expires DSPs not seen within
//! the TTL and looks up again each host whose record expired (its TTL, at least
//! `--dns-reresolve-min-ms`, at most `--dns-reresolve-s`), a pass taking about one lookup
//! timeout at most before the commands queued get their turn. When `--currency-rates` is set,
//! every tick also gives the rates refresh ([`super::rates::RatesRefresh`]) its turn, so rates
//! are fetched and parsed here, never on a worker.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{rates::RatesRefresh, roster::RosterFile};
use crate::{
    clock::unix_ms,
    control_loop::{self, CommandSender, ControlState},
    dns::control_resolver,
    dns_status::DnsStatus,
    resolve::Resolver,
    Broadcast,
};
use futures_channel::oneshot;
pub use rtb_core::directory::{Onboard, OnboardError, Resolved, ResolvedDsp};
pub use rtb_core::echo::truncate;
use rtb_core::{
    directory::{Directory, DirectoryConfig, Reresolved},
    dns::Answer,
    registry::{DspOptions, Upsert},
    roster::Roster,
};

/// Control commands queued at most; beyond it onboarding answers 503.
pub const COMMAND_QUEUE_MAX: usize = 256;
/// How often the control thread expires DSPs and looks up the hosts whose record expired.
pub const TICK: Duration = Duration::from_secs(1);

/// A successful onboarding: what the directory did, and the registry version that holds it
/// (what workers will reach).
pub type Onboarded = (Onboard, u64);

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
        /// What it asked for beyond its URL.
        options: DspOptions,
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
pub type ControlHandle = CommandSender<Command>;

/// Why a command got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// Its queue was full (or the thread is gone): the command was not sent.
    Busy,
    /// The thread dropped the reply without answering (it stopped).
    Gone,
}

/// Sends the command `command` builds around a fresh reply channel and awaits the reply; a
/// worker's way to ask the control thread anything.
pub async fn ask<T>(
    control: &ControlHandle,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Unanswered> {
    let (reply, answer) = oneshot::channel();
    if !control.send(command(reply)) {
        return Err(Unanswered::Busy);
    }
    answer.await.map_err(|_| Unanswered::Gone)
}

/// The registry version the control thread published after applying the first roster (0
/// without one): workers that applied it call every roster DSP.
pub type FirstVersion = std::sync::mpsc::Receiver<u64>;

/// Starts the control thread. It stops when every [`ControlHandle`] is dropped.
/// `dns` counts its lookups for `/metrics`.
pub fn spawn(
    config: DirectoryConfig,
    resolve_timeout: Duration,
    broadcast: Broadcast<Resolved>,
    rates: Option<RatesRefresh>,
    roster: Option<(RosterFile, Roster)>,
    dns: Arc<DnsStatus>,
) -> std::io::Result<(ControlHandle, FirstVersion, std::thread::JoinHandle<()>)> {
    let (first_tx, first_rx) = std::sync::mpsc::sync_channel(1);
    let start = move || {
        let resolver = control_resolver(resolve_timeout);
        let mut control = Control::new(config, resolve_timeout, broadcast, resolver, dns);
        control.rates = rates;
        if let Some((file, first)) = roster {
            control.apply_roster(&first);
            control.roster_poll = file.poll;
            control.roster = Some(file);
        }
        let _ = first_tx.send(control.published_version);
        control
    };
    let (handle, join) = control_loop::spawn("rtb-control", COMMAND_QUEUE_MAX, start)?;
    Ok((handle, first_rx, join))
}

/// One lookup with `resolver`, counted in `dns`, in the directory's terms.
fn lookup(resolver: &Resolver, dns: &DnsStatus, host: &str, port: u16) -> Result<Answer, String> {
    let answer = dns
        .lookup(resolver, host, port)
        .map_err(|e| e.to_string())?;
    Ok(Answer {
        addrs: answer.addrs,
        ttl: answer.ttl,
    })
}

struct Control {
    resolver: Resolver,
    /// Longest wait for one lookup, and the time budget of one re-resolve pass.
    resolve_timeout: Duration,
    /// Lookup counters and address counts, for `/metrics`.
    dns: Arc<DnsStatus>,
    directory: Directory,
    broadcast: Broadcast<Resolved>,
    /// The version workers were last sent. A refresh bumps the registry's version but is not
    /// broadcast, so replies carry this one (what workers will reach).
    published_version: u64,
    /// The currency rates refresh, when `--currency-rates` is set.
    rates: Option<RatesRefresh>,
    /// The roster file, when `--roster` is set.
    roster: Option<RosterFile>,
    /// How often the roster file is looked at (`--roster-poll-ms`).
    roster_poll: Duration,
    /// When expiry, re-resolution and the rates refresh are next due.
    next_tick: Instant,
    /// When the roster file is next looked at.
    next_roster: Instant,
}

impl Control {
    fn new(
        config: DirectoryConfig,
        resolve_timeout: Duration,
        broadcast: Broadcast<Resolved>,
        resolver: Resolver,
        dns: Arc<DnsStatus>,
    ) -> Self {
        Self {
            resolver,
            resolve_timeout,
            dns,
            directory: Directory::new(config),
            broadcast,
            published_version: 0,
            rates: None,
            roster: None,
            roster_poll: TICK,
            next_tick: Instant::now() + TICK,
            next_roster: Instant::now() + TICK,
        }
    }

    /// Makes `roster` the directory's roster, and tells the workers when they need it.
    fn apply_roster(&mut self, roster: &Roster) {
        let (resolver, dns) = (self.resolver.clone(), self.dns.clone());
        let resolve = |host: &str, port| lookup(&resolver, &dns, host, port);
        let applied = self.directory.apply_roster(roster, &resolve, unix_ms());
        for (name, error) in &applied.refused {
            tracing::warn!(dsp = truncate(name), %error, "roster entry not applied");
        }
        tracing::info!(
            dsps = roster.dsps.len(),
            removed = applied.removed,
            refused = applied.refused.len(),
            "roster applied"
        );
        if applied.changed {
            self.publish();
        }
    }

    fn onboard(
        &mut self,
        name: &str,
        base_url: &str,
        bid_path: Option<&str>,
        options: DspOptions,
    ) -> Result<Onboarded, OnboardError> {
        let (resolver, dns) = (self.resolver.clone(), self.dns.clone());
        let resolve = |host: &str, port| lookup(&resolver, &dns, host, port);
        let done =
            (self.directory).onboard(name, base_url, bid_path, options, &resolve, unix_ms())?;
        let addr = done.addrs[0];
        let addrs = done.addrs.len();
        match done.upsert {
            Upsert::Added => tracing::info!(dsp = name, %addr, addrs, "dsp added"),
            Upsert::Replaced => tracing::info!(dsp = name, %addr, addrs, "dsp url replaced"),
            Upsert::Refreshed => tracing::debug!(dsp = name, "dsp refreshed"),
        }
        if done.changed {
            self.publish();
        }
        Ok((done, self.published_version))
    }

    fn expire(&mut self) {
        let removed = self.directory.expire(unix_ms());
        if removed > 0 {
            tracing::info!(removed, "dsps expired");
            self.publish();
        }
    }

    /// Looks up again the hosts whose record expired by `now_ms`.
    fn reresolve(&mut self, now_ms: u64) {
        if self
            .directory
            .next_reresolve_ms()
            .is_none_or(|at| at > now_ms)
        {
            return;
        }
        let (resolver, dns) = (self.resolver.clone(), self.dns.clone());
        let resolve = |host: &str, port| lookup(&resolver, &dns, host, port);
        // One pass may spend about one lookup timeout more than the budget; hosts left over
        // go first at the next tick, and commands are served in between.
        let budget_end = Instant::now() + self.resolve_timeout;
        let may_continue = || Instant::now() < budget_end;
        let found = self
            .directory
            .reresolve_due(&resolve, now_ms, &may_continue);
        for event in &found {
            match event {
                Reresolved::Moved { .. } => tracing::info!(%event, "dsp address changed"),
                Reresolved::Removed { .. } => tracing::warn!(%event, "dsp removed"),
                // A transient resolver failure keeps the last good address.
                Reresolved::Failed { .. } => tracing::warn!(%event, "re-resolve failed"),
            }
        }
        if found
            .iter()
            .any(|event| !matches!(event, Reresolved::Failed { .. }))
        {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let resolved = self.directory.resolved();
        let counts = resolved.dsps.iter();
        (self.dns).published(counts.map(|d| (d.entry.name.clone(), d.addrs.len())));
        self.published_version = resolved.version;
        self.broadcast.send(resolved);
    }
}

impl ControlState for Control {
    type Command = Command;

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Onboard {
                name,
                base_url,
                bid_path,
                options,
                reply,
            } => {
                let r = self.onboard(&name, &base_url, bid_path.as_deref(), options);
                let _ = reply.send(r);
            }
            Command::Remove { name, reply } => {
                let removed = self.directory.remove(&name);
                if removed {
                    tracing::info!(dsp = truncate(&name), "dsp removed");
                    self.publish();
                }
                let _ = reply.send((removed, self.published_version));
            }
            Command::List { reply } => {
                let _ = reply.send(self.directory.list_json(unix_ms()));
            }
        }
    }

    fn wake_at(&self) -> Instant {
        self.next_tick.min(self.next_roster)
    }

    /// Every [`TICK`]: expiry, re-resolution and the rates refresh; every roster poll: the
    /// roster file, when it changed.
    fn wake(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.expire();
            self.reresolve(unix_ms());
            if let Some(rates) = &mut self.rates {
                rates.poll(now);
            }
        }
        if now >= self.next_roster {
            self.next_roster = now + self.roster_poll;
            if let Some(roster) = self.roster.as_mut().and_then(|file| file.poll()) {
                self.apply_roster(&roster);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Answer;
    use rtb_core::dns::DnsLimits;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    const PERIOD: Duration = Duration::from_secs(30);

    /// A control on a resolver that answers `dsp.test` with whatever the test last set.
    fn scripted() -> (Control, Broadcast<Resolved>, Arc<Mutex<Vec<SocketAddr>>>) {
        let answer = Arc::new(Mutex::new(vec![SocketAddr::from(([10, 0, 0, 1], 80))]));
        let a = answer.clone();
        let resolver: Resolver = Arc::new(move |_host, port| {
            let addrs = a.lock().unwrap().clone();
            Ok(Answer {
                addrs: (addrs.iter())
                    .map(|s| SocketAddr::new(s.ip(), port))
                    .collect(),
                ttl: None,
            })
        });
        let broadcast = Broadcast::new(1);
        let config = DirectoryConfig {
            dsps_max: 4,
            ttl: Duration::from_secs(30),
            allow_loopback: false,
            dns: DnsLimits {
                reresolve_max: PERIOD,
                ..DnsLimits::default()
            },
        };
        let timeout = crate::resolve::RESOLVE_TIMEOUT;
        let control = Control::new(
            config,
            timeout,
            broadcast.clone(),
            resolver,
            Default::default(),
        );
        (control, broadcast, answer)
    }

    #[test]
    fn workers_get_a_snapshot_for_each_real_change_only() {
        let (mut c, b, answer) = scripted();
        let rx = b.receiver(0).unwrap();
        let r = c
            .onboard("a", "http://dsp.test:8080", None, DspOptions::default())
            .unwrap();
        assert_eq!((r.0.upsert, r.1), (Upsert::Added, 1));
        assert_eq!(rx.drain(|_| {}), 1);
        // A refresh bumps the registry's version but is not broadcast: the reply says so.
        let r = c
            .onboard("a", "http://dsp.test:8080", None, DspOptions::default())
            .unwrap();
        assert_eq!((r.0.upsert, r.1), (Upsert::Refreshed, 1));
        assert_eq!(rx.drain(|_| {}), 0);
        // Same address on re-resolve: nothing; a move (to two addresses): one snapshot.
        let period_ms = u64::try_from(PERIOD.as_millis()).unwrap();
        let later = unix_ms() + period_ms;
        c.reresolve(later);
        assert_eq!(rx.drain(|_| {}), 0);
        *answer.lock().unwrap() =
            vec!["10.0.0.3:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap()];
        c.reresolve(later + period_ms);
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert_eq!(got.len(), 1);
        let two: Vec<SocketAddr> = vec![
            "10.0.0.2:8080".parse().unwrap(),
            "10.0.0.3:8080".parse().unwrap(),
        ];
        assert_eq!(*got[0].dsps[0].addrs, *two);
        let mut metrics = String::new();
        c.dns.render(&mut metrics);
        assert!(
            metrics.contains("rtb_dns_lookups_total{result=\"ok\"} 4\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("rtb_dsp_addresses{dsp=\"a\"} 2\n"),
            "{metrics}"
        );
        let (tx, reply) = oneshot::channel();
        c.handle(Command::Remove {
            name: "a".into(),
            reply: tx,
        });
        let mut reply = reply;
        let (removed, version) = reply.try_recv().unwrap().unwrap();
        assert!(removed);
        assert_eq!(version, got[0].version + 1);
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert!(got.len() == 1 && got[0].dsps.is_empty());
    }
}
