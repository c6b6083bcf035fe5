//! Owns name resolution for control threads: the [`Resolver`] the exchange's control thread
//! calls (every address of a host, and the record's TTL when the resolver knows it), either
//! the DNS resolver of [`crate::dns`] or, when the system's DNS configuration cannot be read,
//! the system resolver (getaddrinfo, blocking, no TTL) run on a helper thread and bounded by a
//! timeout. Tests replace it with a scripted one. Never called on a worker: it blocks.

use std::{
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

/// Longest wait for the system resolver.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest resolver error text kept in a message.
pub(crate) const ERROR_ECHO_CHARS_MAX: usize = 128;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Every address (at least one), with the port asked for.
    pub addrs: Vec<SocketAddr>,
    /// How long the answer stays valid (the record's TTL); `None` when the resolver does not
    /// say (getaddrinfo).
    pub ttl: Option<Duration>,
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The resolver answered with an error (no such name, no address, server failure).
    Failed(String),
    /// No answer within the lookup's timeout.
    TimedOut,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Failed(why) => {
                write!(
                    f,
                    "host name does not resolve: {why:.ERROR_ECHO_CHARS_MAX$}"
                )
            }
            LookupError::TimedOut => f.write_str("host name resolution timed out"),
        }
    }
}

/// Turns `host, port` into addresses: the DNS resolver or the system resolver in the binary,
/// a scripted one in tests (so re-resolution can be tested without editing /etc/hosts).
pub type Resolver = Arc<dyn Fn(&str, u16) -> Result<Answer, LookupError> + Send + Sync>;

/// The system resolver (getaddrinfo, no TTL), each lookup bounded by `timeout` (the
/// exchange's `--dns-timeout-ms`).
pub fn system_resolver(timeout: Duration) -> Resolver {
    Arc::new(move |host, port| {
        let addrs = system_lookup(host, port, timeout)?;
        Ok(Answer { addrs, ttl: None })
    })
}

/// Resolves `host:port` with the system resolver on a helper thread, giving up after
/// `timeout` (the helper is then left to finish on its own; getaddrinfo cannot be cancelled).
/// An IP literal is its own answer.
pub fn resolve_all(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    system_lookup(host, port, timeout).map_err(|e| e.to_string())
}

fn system_lookup(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, LookupError> {
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
        return Err(LookupError::Failed(
            "resolver thread could not start".into(),
        ));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(LookupError::Failed("host name has no address".into())),
        Ok(Err(e)) => Err(LookupError::Failed(e)),
        Err(_) => Err(LookupError::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_resolve_and_nonsense_does_not() {
        let v6 = resolve_all("::1", 80, RESOLVE_TIMEOUT).unwrap();
        assert_eq!(v6, vec!["[::1]:80".parse().unwrap()]);
        let local = system_resolver(RESOLVE_TIMEOUT)("localhost", 9)
            .unwrap()
            .addrs;
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        let error = resolve_all("no-such-host.invalid", 80, RESOLVE_TIMEOUT).unwrap_err();
        assert!(
            error.contains("does not resolve") || error.contains("timed out"),
            "{error}"
        );
    }
}
