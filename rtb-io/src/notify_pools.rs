//! Owns the keep-alive pools a worker sends fire-and-forget GETs over (the exchange's win and
//! loss notices): one pool per address, and for TLS per host name too, since the name is what
//! the certificate is checked against; the cache is reset once it holds its most pools. Which
//! addresses may be called is the caller's policy, decided before a pool is asked for.

use std::{cell::RefCell, collections::HashMap, net::SocketAddr, rc::Rc, time::Instant};

use http::Method;

use crate::{tls::WorkerTls, CallError, ClientConfig, RequestParts, Upstream, UpstreamTls};

/// A pool's key: the address, and for TLS the host name checked in the certificate.
type PoolKey = (SocketAddr, Option<Box<str>>);

/// Where one GET goes.
#[derive(Clone, Copy, Debug)]
pub struct GetTarget<'a> {
    /// The address to connect to (the caller's policy admitted it).
    pub addr: SocketAddr,
    /// The URL's host (the `Host` header, and the TLS name).
    pub host: &'a str,
    /// The URL's port.
    pub port: u16,
    /// Whether it is `https://`.
    pub tls: bool,
}

/// What one GET came to.
#[derive(Debug)]
pub struct GetOutcome {
    /// `Ok` when answered with any status.
    pub result: Result<(), CallError>,
    /// Connections it opened (a pool growing, or a host closing them).
    pub connects: u64,
    /// Connections it closed because the pool held its size target already.
    pub shrunk: u64,
}

/// One worker's pools for fire-and-forget GETs.
#[derive(Debug)]
pub struct NotifyPools {
    pools: RefCell<HashMap<PoolKey, Rc<Upstream>>>,
    pools_max: usize,
    tls: WorkerTls,
}

impl NotifyPools {
    /// No pool yet; at most `pools_max` kept; `https://` targets over `tls`.
    pub fn new(tls: WorkerTls, pools_max: usize) -> Self {
        Self {
            pools: RefCell::new(HashMap::new()),
            pools_max,
            tls,
        }
    }

    /// The pool for `target`; `None` when an `https://` host is no valid TLS name.
    pub fn pool(&self, target: GetTarget<'_>) -> Option<Rc<Upstream>> {
        let GetTarget {
            addr,
            host,
            port,
            tls,
        } = target;
        let key = (addr, tls.then(|| host.to_ascii_lowercase().into()));
        let mut cache = self.pools.borrow_mut();
        if let Some(up) = cache.get(&key) {
            return Some(up.clone());
        }
        let tls = match tls {
            false => None,
            true => Some(UpstreamTls {
                connector: self.tls.clone(),
                server_name: crate::tls::server_name(host).ok()?,
            }),
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        if cache.len() >= self.pools_max {
            cache.clear();
        }
        let up = Upstream::with_tls(addr, &authority, ClientConfig::default(), tls);
        cache.insert(key, up.clone());
        Some(up)
    }
}

/// Sends `GET path` over `pool`, bounded by `deadline`; the answer's status and body are not
/// looked at.
pub async fn get(pool: &Upstream, path: &str, deadline: Instant) -> GetOutcome {
    let request = RequestParts {
        method: &Method::GET,
        path,
        header_lines: b"",
        body: b"",
    };
    let connects_before = pool.stats.connects.get();
    let shrunk_before = pool.stats.shrunk.get();
    let result = pool.call_parts(request, deadline).await.map(drop);
    GetOutcome {
        result,
        connects: pool.stats.connects.get() - connects_before,
        shrunk: pool.stats.shrunk.get() - shrunk_before,
    }
}
