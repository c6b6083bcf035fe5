//! Owns name resolution for control threads: the system resolver (getaddrinfo, blocking) run
//! on a helper thread and bounded by [`RESOLVE_TIMEOUT`], behind a [`Resolver`] that tests can
//! replace with a scripted one. Never called on a worker: it blocks.

use std::{
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

/// Longest wait for the system resolver.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest resolver error text kept in a message.
const ERROR_ECHO_CHARS_MAX: usize = 128;

/// Turns `host, port` into addresses: the system resolver in the binary, a scripted one in
/// tests (so re-resolution can be tested without editing /etc/hosts).
pub type Resolver = Arc<dyn Fn(&str, u16) -> Result<Vec<SocketAddr>, String> + Send + Sync>;

/// The system resolver, each lookup bounded by `timeout` (the exchange's `--dns-timeout-ms`).
pub fn system_resolver(timeout: Duration) -> Resolver {
    Arc::new(move |host, port| resolve_all(host, port, timeout))
}

/// Resolves `host:port` with the system resolver on a helper thread, giving up after
/// `timeout` (the helper is then left to finish on its own; getaddrinfo cannot be cancelled).
/// An IP literal is its own answer.
pub fn resolve_all(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
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
        Ok(Err(e)) => Err(format!(
            "host name does not resolve: {e:.ERROR_ECHO_CHARS_MAX$}"
        )),
        Err(_) => Err("host name resolution timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_resolve_and_nonsense_does_not() {
        let v6 = resolve_all("::1", 80, RESOLVE_TIMEOUT).unwrap();
        assert_eq!(v6, vec!["[::1]:80".parse().unwrap()]);
        let local = system_resolver(RESOLVE_TIMEOUT)("localhost", 9).unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        let error = resolve_all("no-such-host.invalid", 80, RESOLVE_TIMEOUT).unwrap_err();
        assert!(
            error.contains("does not resolve") || error.contains("timed out"),
            "{error}"
        );
    }
}
