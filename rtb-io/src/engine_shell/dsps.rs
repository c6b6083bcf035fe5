//! Owns a worker's DSP slots: one keep-alive pool and one metrics handle per DSP, rebuilt from
//! each registry snapshot in the same order as the engine's DSP table, so a planned call's DSP
//! index is also its slot index.

use std::{net::SocketAddr, rc::Rc, sync::Arc};

use http::uri::PathAndQuery;
use rtb_core::{
    directory::Resolved,
    engine::DspSpec,
    policy::{DspPolicy, SkipReason},
};

use super::metrics::{DspMetrics, WorkerMetrics};
use crate::{
    pool_settings::{PoolSettings, PoolTarget},
    tls::WorkerTls,
    Upstream,
};

/// One DSP as a worker calls it.
#[derive(Debug)]
pub struct DspSlot {
    /// Registry name.
    pub name: Rc<str>,
    /// Host as registered (name or IP literal), for matching notice URLs.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The first of the host's resolved addresses (the pool spreads its connections over all
    /// of them).
    pub addr: SocketAddr,
    /// Bid path.
    pub path: PathAndQuery,
    /// Its requests go gzip-compressed, and it may answer gzip.
    pub gzip: bool,
    /// Which requests it is sent (its roster entry's; every request by default).
    pub policy: Rc<DspPolicy>,
    /// This worker's pool.
    pub upstream: Rc<Upstream>,
    /// This worker's counters for the DSP.
    pub metrics: Arc<DspMetrics>,
    /// The pool's counters already added to the `_total` counters. A re-onboarded DSP gets a
    /// new pool counting from zero; counting deltas keeps the totals monotonic.
    pub pool_counted: Rc<std::cell::Cell<crate::pool_metrics::PoolCounted>>,
    /// The engine's policy refusal counts already added to the metrics (the same idea).
    pub policy_counted: Rc<std::cell::Cell<[u64; SkipReason::ALL.len()]>>,
}

impl DspSlot {
    /// What the engine needs to know of it.
    pub fn spec(&self) -> DspSpec {
        DspSpec {
            name: self.name.clone(),
            endpoint: format!("{}:{}", self.host, self.port).into(),
        }
    }
}

/// The DSPs a worker calls, as of one registry version.
#[derive(Debug, Default)]
pub struct DspSet {
    /// Registry version applied.
    pub version: u64,
    /// Slots in registration order (the engine's table order).
    pub slots: Vec<DspSlot>,
}

/// Builds the set for `snapshot`, keeping the pools of DSPs whose name and authority did not
/// change (re-pointing them if only the addresses changed) and pre-warming new ones, a few
/// connects at a time across all of them ([`crate::spawn_prewarm`]). `tls` is the worker's
/// connector, used for `https://` DSPs.
pub fn apply_snapshot(
    old: &DspSet,
    snapshot: &Resolved,
    metrics: &WorkerMetrics,
    pools: PoolSettings,
    tls: &WorkerTls,
) -> DspSet {
    let mut slots = Vec::with_capacity(snapshot.dsps.len());
    let mut to_warm = Vec::new();
    for dsp in snapshot.dsps.iter() {
        let url = &dsp.entry.url;
        let Ok(path) = PathAndQuery::try_from(url.path.as_str()) else {
            tracing::warn!(dsp = %dsp.entry.name, "bid path is not a valid request target");
            continue;
        };
        let kept = old.slots.iter().find(|s| {
            *s.name == *dsp.entry.name
                && s.host == url.host
                && s.port == url.port
                && s.upstream.is_tls() == url.tls
        });
        let (upstream, pool_counted, policy_counted) = match kept {
            Some(s) => {
                s.upstream.set_addrs(&dsp.addrs);
                let counted = (s.pool_counted.clone(), s.policy_counted.clone());
                (s.upstream.clone(), counted.0, counted.1)
            }
            None => {
                let target = PoolTarget {
                    addrs: &dsp.addrs,
                    host: &url.host,
                    authority: &url.authority(),
                    tls: url.tls,
                };
                let Some(up) = pools.pool(target, tls) else {
                    tracing::warn!(dsp = %dsp.entry.name, "host is not a valid TLS server name");
                    continue;
                };
                let prewarm = up.config().connections_min;
                if prewarm > 0 {
                    to_warm.push((up.clone(), prewarm));
                }
                (up, Rc::default(), Rc::default())
            }
        };
        slots.push(DspSlot {
            name: dsp.entry.name.as_str().into(),
            host: url.host.clone(),
            port: url.port,
            addr: dsp.addrs[0],
            path,
            gzip: dsp.entry.options.gzip,
            policy: Rc::new(DspPolicy::clone(&dsp.entry.options.policy)),
            upstream,
            metrics: metrics.dsps.get(&dsp.entry.name),
            pool_counted,
            policy_counted,
        });
    }
    if !to_warm.is_empty() {
        crate::spawn_prewarm(to_warm, pools.prewarm_lanes);
    }
    DspSet {
        version: snapshot.version,
        slots,
    }
}
