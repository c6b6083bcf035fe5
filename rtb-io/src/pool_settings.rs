//! Owns how a worker builds its pool to a newly seen upstream (a DSP): the pool limits, the
//! connections opened ahead of traffic, and what differs for an `https://` upstream, whose
//! certificate is checked against the URL's host (also sent as SNI). The flags they come
//! from are [`crate::client_flags`]'.

use std::{net::SocketAddr, rc::Rc};

use crate::{tls::WorkerTls, ClientConfig, Upstream, UpstreamTls};

/// How a worker's pools to new upstreams are built.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Pool limits (draining, connect pacing).
    pub client: ClientConfig,
    /// Connections opened ahead of traffic, per worker; also the least a pool shrinks to.
    pub prewarm: usize,
    /// Pre-warm connects in flight at once per worker, across every new upstream.
    pub prewarm_lanes: usize,
    /// What differs for `https://` upstreams.
    pub tls: TlsPoolSettings,
}

/// Pool settings of `https://` upstreams. A handshake costs both ends about 1.6 ms of CPU (32
/// at once took 50 ms on loopback, BENCHMARKS.md "TLS to DSPs"), so a TLS pool that grows
/// under load stalls the worker's other auctions: it is opened ahead of traffic to the size
/// load needs, and grows a few handshakes at a time.
#[derive(Debug, Clone, Copy)]
pub struct TlsPoolSettings {
    /// Connections opened ahead of traffic, per worker (instead of `prewarm`).
    pub prewarm: usize,
    /// Handshakes in flight at once per upstream per worker (instead of the client config's
    /// `connects_in_flight_max`).
    pub connects_in_flight: usize,
}

/// Where a new pool connects.
#[derive(Debug, Clone, Copy)]
pub struct PoolTarget<'a> {
    /// Every address of the host (connections go round robin across them).
    pub addrs: &'a [SocketAddr],
    /// The URL's host, for the certificate check and SNI.
    pub host: &'a str,
    /// The `Host` header's value.
    pub authority: &'a str,
    /// Whether the URL is `https://`.
    pub tls: bool,
}

impl PoolSettings {
    /// A pool to `target`, over TLS with the worker's `connector` for an `https://` URL.
    /// `None` when the host is no valid TLS name.
    pub fn pool(&self, target: PoolTarget<'_>, connector: &WorkerTls) -> Option<Rc<Upstream>> {
        let mut client = self.client;
        client.connections_min = self.prewarm;
        let mut tls = None;
        if target.tls {
            let server_name = crate::tls::server_name(target.host).ok()?;
            tls = Some(UpstreamTls {
                connector: connector.clone(),
                server_name,
            });
            client.connects_in_flight_max = self.tls.connects_in_flight;
            client.connections_min = self.tls.prewarm;
        }
        Some(Upstream::with_addrs(
            target.addrs,
            target.authority,
            client,
            tls,
        ))
    }
}
