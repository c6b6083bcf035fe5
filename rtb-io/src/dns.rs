//! Owns the DNS resolver of the exchange's control thread: hickory-resolver (a stub resolver
//! that reads `/etc/resolv.conf`, its search domains and `ndots` like the system's) on a
//! current-thread tokio runtime of its own, so a lookup reports every address of the host and
//! the record's TTL, which getaddrinfo does not. Each lookup is bounded by a timeout (the
//! exchange's `--dns-timeout-ms`): the runtime is driven only inside the lookup, so nothing
//! runs between lookups and a slow server cannot hold the control thread longer.
//!
//! `/etc/hosts` is honoured (hickory answers a name it holds without a query, as the system's
//! `files` source does) and read again when it changes, as getaddrinfo would: `ip netns exec`
//! bind-mounts `/etc/netns/NS/hosts` there, and tests rely on it. Answers from the hosts file
//! carry no real TTL (hickory reports a day): the caller's re-resolve period caps it.

use std::{
    fs::File,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_resolver::{config::LookupIpStrategy, Hosts, TokioResolver};

use crate::file_stamp::FileStamp;
use crate::resolve::{system_resolver, Answer, LookupError, Resolver};

/// The hosts file read (the system resolver's `files` source).
pub const HOSTS_PATH: &str = "/etc/hosts";

struct Dns {
    runtime: tokio::runtime::Runtime,
    resolver: TokioResolver,
    /// Which version of the hosts file was last read.
    hosts: Option<FileStamp>,
    timeout: Duration,
}

/// A [`Resolver`] on the system's DNS configuration, each lookup bounded by `timeout`; an
/// error (for the caller to log before falling back to getaddrinfo) when the configuration
/// cannot be read or the runtime cannot start.
pub fn dns_resolver(timeout: Duration) -> Result<Resolver, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("DNS runtime: {e}"))?;
    let mut builder =
        TokioResolver::builder_tokio().map_err(|e| format!("system DNS configuration: {e}"))?;
    let options = builder.options_mut();
    // Every address, as getaddrinfo gives; one attempt per server within our own bound.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = timeout;
    let resolver = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
    let dns = Mutex::new(Dns {
        runtime,
        resolver,
        hosts: None,
        timeout,
    });
    Ok(Arc::new(move |host, port| {
        let mut dns = dns
            .lock()
            .map_err(|_| LookupError::Failed("resolver poisoned".into()))?;
        dns.lookup(host, port)
    }))
}

/// The control thread's resolver: DNS with TTLs ([`dns_resolver`]), or getaddrinfo (no TTL:
/// the caller's re-resolve period applies) when the system's DNS configuration cannot be read
/// (logged).
pub fn control_resolver(timeout: Duration) -> Resolver {
    match dns_resolver(timeout) {
        Ok(resolver) => resolver,
        Err(error) => {
            tracing::warn!(%error, "DNS resolver unavailable; using getaddrinfo (no TTL)");
            system_resolver(timeout)
        }
    }
}

impl Dns {
    fn lookup(&mut self, host: &str, port: u16) -> Result<Answer, LookupError> {
        self.reload_hosts();
        let lookup = self.resolver.lookup_ip(host);
        let found = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, lookup).await });
        let ips = match found {
            Err(_elapsed) => return Err(LookupError::TimedOut),
            Ok(Err(e)) => return Err(LookupError::Failed(e.to_string())),
            Ok(Ok(ips)) => ips,
        };
        let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(LookupError::Failed("host name has no address".into()));
        }
        let ttl = ips.valid_until().saturating_duration_since(Instant::now());
        Ok(Answer {
            addrs,
            ttl: Some(ttl),
        })
    }

    /// Reads the hosts file again when it changed since the last lookup (a missing or
    /// unreadable file leaves the last one read in force).
    fn reload_hosts(&mut self) {
        let stamp = FileStamp::of(Path::new(HOSTS_PATH));
        if stamp.is_none() || stamp == self.hosts {
            return;
        }
        let mut hosts = Hosts::default();
        let read = File::open(HOSTS_PATH).and_then(|f| hosts.read_hosts_conf(f));
        match read {
            Ok(()) => {
                self.resolver.set_hosts(Arc::new(hosts));
                self.hosts = stamp;
            }
            Err(error) => tracing::warn!(%error, path = HOSTS_PATH, "hosts file not read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_the_hosts_file_resolve_with_a_ttl_and_nonsense_does_not() {
        let resolve = dns_resolver(Duration::from_secs(2)).unwrap();
        // The test machine's /etc/hosts names localhost, as every Linux does.
        let local = resolve("localhost", 9).unwrap();
        assert!(!local.addrs.is_empty());
        assert!(local
            .addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9));
        assert!(local.ttl.is_some());
        let literal = resolve("10.1.2.3", 80).unwrap();
        assert_eq!(literal.addrs, vec!["10.1.2.3:80".parse().unwrap()]);
        // `.invalid` never resolves (RFC 6761); with no reachable server it times out instead.
        let error = resolve("no-such-host.invalid", 80).unwrap_err();
        assert!(error.to_string().contains("resolv"), "{error}");
    }
}
