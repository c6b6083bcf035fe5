//! Owns the control thread: the single authoritative DSP directory
//! ([`rtb_core::directory::Directory`]: the registry and each DSP's resolved address) lives on
//! it, and every change reaches the workers from here.
//!
//! Workers never resolve names or touch the registry: they send a [`Command`] over a bounded
//! crossbeam channel and await a `futures_channel::oneshot` reply. The control thread resolves
//! host names (blocking, off the workers, with `rtb_io::resolve`), applies the command to the
//! directory, and broadcasts a [`Resolved`] snapshot to every worker with `rtb_io::Broadcast`
//! when workers need one. Every [`TICK`] it expires DSPs not seen within the TTL; every
//! [`RERESOLVE_PERIOD`] it re-resolves names. When `--currency-rates` is set, every tick also
//! gives the rates refresh ([`crate::rates::RatesRefresh`]) its turn, so rates are fetched and
//! parsed here, never on a worker.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use futures_channel::oneshot;
pub use rtb_core::directory::{OnboardError, Resolved, ResolvedDsp};
pub use rtb_core::echo::truncate;
use rtb_core::{
    directory::{Directory, DirectoryConfig, Reresolved},
    registry::{DspEntry, DspOptions, Upsert},
    roster::Roster,
};
use rtb_io::{
    clock::unix_ms,
    resolve::{system_resolver, Resolver},
    Broadcast,
};

use crate::{rates::RatesRefresh, roster::RosterFile};

/// Control commands queued at most; beyond it onboarding answers 503.
pub const COMMAND_QUEUE_MAX: usize = 256;
/// How often the control thread expires DSPs.
pub const TICK: Duration = Duration::from_secs(1);
/// How often host names are resolved again.
pub const RERESOLVE_PERIOD: Duration = Duration::from_secs(30);

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
    /// Re-resolve period (`--dns-reresolve-s`; getaddrinfo gives no TTL to follow).
    pub reresolve_period: Duration,
    /// Longest wait for one lookup (`--dns-timeout-ms`), so DNS cannot stall the control thread.
    pub resolve_timeout: Duration,
}

/// Starts the control thread. It stops when every [`ControlHandle`] is dropped.
pub fn spawn(
    config: ControlConfig,
    broadcast: Broadcast<Resolved>,
    rates: Option<RatesRefresh>,
    roster: Option<(RosterFile, Roster)>,
) -> std::io::Result<(ControlHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE_MAX);
    let join = std::thread::Builder::new()
        .name("rtb-control".into())
        .spawn(move || {
            let resolver = system_resolver(config.resolve_timeout);
            let mut control = Control::new(config, broadcast, resolver);
            control.rates = rates;
            if let Some((file, first)) = roster {
                control.apply_roster(&first);
                control.roster = Some(file);
            }
            control.run(&rx)
        })?;
    Ok((ControlHandle { tx }, join))
}

struct Control {
    reresolve_period: Duration,
    resolver: Resolver,
    directory: Directory,
    broadcast: Broadcast<Resolved>,
    /// The version workers were last sent. A refresh bumps the registry's version but is not
    /// broadcast, so replies carry this one (what workers will reach).
    published_version: u64,
    /// The currency rates refresh, when `--currency-rates` is set.
    rates: Option<RatesRefresh>,
    /// The roster file, when `--roster` is set.
    roster: Option<RosterFile>,
}

impl Control {
    fn new(config: ControlConfig, broadcast: Broadcast<Resolved>, resolver: Resolver) -> Self {
        Self {
            reresolve_period: config.reresolve_period,
            resolver,
            directory: Directory::new(DirectoryConfig {
                dsps_max: config.dsps_max,
                ttl: config.ttl,
                allow_loopback: config.allow_loopback,
            }),
            broadcast,
            published_version: 0,
            rates: None,
            roster: None,
        }
    }

    fn run(mut self, rx: &Receiver<Command>) {
        let mut next_tick = Instant::now() + TICK;
        let mut next_resolve = Instant::now() + self.reresolve_period;
        let roster_poll = self.roster.as_ref().map_or(TICK, |r| r.poll);
        let mut next_roster = Instant::now() + roster_poll;
        loop {
            match rx.recv_deadline(next_tick.min(next_roster)) {
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
                next_resolve = now + self.reresolve_period;
                self.reresolve();
            }
            if now >= next_roster {
                next_roster = now + roster_poll;
                if let Some(roster) = self.roster.as_mut().and_then(RosterFile::poll) {
                    self.apply_roster(&roster);
                }
            }
        }
    }

    /// Makes `roster` the directory's roster, and tells the workers when they need it.
    fn apply_roster(&mut self, roster: &Roster) {
        let resolver = self.resolver.clone();
        let applied = self.directory.apply_roster(roster, &*resolver, unix_ms());
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

    fn onboard(
        &mut self,
        name: &str,
        base_url: &str,
        bid_path: Option<&str>,
        options: DspOptions,
    ) -> Result<Onboarded, OnboardError> {
        let resolver = self.resolver.clone();
        let done =
            self.directory
                .onboard(name, base_url, bid_path, options, &*resolver, unix_ms())?;
        let addr = done.addr;
        match done.upsert {
            Upsert::Added => tracing::info!(dsp = name, %addr, "dsp added"),
            Upsert::Replaced => tracing::info!(dsp = name, %addr, "dsp url replaced"),
            Upsert::Refreshed => tracing::debug!(dsp = name, "dsp refreshed"),
        }
        if done.changed {
            self.publish();
        }
        Ok(Onboarded {
            upsert: done.upsert,
            version: self.published_version,
            entry: done.entry,
            addr,
        })
    }

    fn expire(&mut self) {
        let removed = self.directory.expire(unix_ms());
        if removed > 0 {
            tracing::info!(removed, "dsps expired");
            self.publish();
        }
    }

    fn reresolve(&mut self) {
        let resolver = self.resolver.clone();
        let found = self.directory.reresolve(&*resolver);
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
        self.published_version = resolved.version;
        self.broadcast.send(resolved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A control on a resolver that answers `dsp.test` with whatever the test last set.
    fn scripted() -> (Control, Broadcast<Resolved>, Arc<Mutex<Vec<SocketAddr>>>) {
        let answer = Arc::new(Mutex::new(vec![SocketAddr::from(([10, 0, 0, 1], 80))]));
        let a = answer.clone();
        let resolver: Resolver = Arc::new(move |_host, port| {
            let addrs = a.lock().unwrap().clone();
            Ok(addrs
                .iter()
                .map(|s| SocketAddr::new(s.ip(), port))
                .collect())
        });
        let broadcast = Broadcast::new(1);
        let config = ControlConfig {
            dsps_max: 4,
            ttl: Duration::from_secs(30),
            allow_loopback: false,
            reresolve_period: RERESOLVE_PERIOD,
            resolve_timeout: rtb_io::resolve::RESOLVE_TIMEOUT,
        };
        let control = Control::new(config, broadcast.clone(), resolver);
        (control, broadcast, answer)
    }

    #[test]
    fn workers_get_a_snapshot_for_each_real_change_only() {
        let (mut c, b, answer) = scripted();
        let rx = b.receiver(0).unwrap();
        let r = c
            .onboard("a", "http://dsp.test:8080", None, DspOptions::default())
            .unwrap();
        assert_eq!((r.upsert, r.version), (Upsert::Added, 1));
        assert_eq!(rx.drain(|_| {}), 1);
        // A refresh bumps the registry's version but is not broadcast: the reply says so.
        let r = c
            .onboard("a", "http://dsp.test:8080", None, DspOptions::default())
            .unwrap();
        assert_eq!((r.upsert, r.version), (Upsert::Refreshed, 1));
        assert_eq!(rx.drain(|_| {}), 0);
        // Same address on re-resolve: nothing; a move: one snapshot with the new address.
        c.reresolve();
        assert_eq!(rx.drain(|_| {}), 0);
        *answer.lock().unwrap() = vec!["10.0.0.2:1".parse().unwrap()];
        c.reresolve();
        let mut got = Vec::new();
        rx.drain(|s| got.push(s));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].dsps[0].addr, "10.0.0.2:8080".parse().unwrap());
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
