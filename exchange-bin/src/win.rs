//! Owns win notices: a bounded per-worker queue and the task that fires each winner's `nurl`
//! with a GET, off the auction's path (the auction only copies the URL into the queue).
//!
//! Address policy: the exchange never resolves names on a worker. A notice URL is fired only
//! when its host is an IP literal that passes `check_address`, or when it names the host of a
//! registered DSP (then that DSP's resolved address is used, with the URL's port). Anything
//! else is dropped and counted, so a DSP cannot make the exchange call arbitrary hosts.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::StreamExt;
use http::{uri::PathAndQuery, Method};
use rtb_core::registry::{check_address, BidUrl};
use rtb_io::{ClientConfig, ClientRequest, Upstream};

use crate::{auction::DspSet, metrics::WorkerMetrics, Shared};

/// Time allowed for one win notice.
pub const WIN_NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Win notices in flight per worker; beyond it the queue is drained one at a time.
pub const WIN_IN_FLIGHT_MAX: usize = 64;
/// Win-notice pools kept per worker (keyed by host:port); the cache is reset beyond it.
pub const WIN_UPSTREAMS_MAX: usize = 256;

/// The auction's end of the queue.
#[derive(Debug)]
pub struct WinSender {
    tx: mpsc::UnboundedSender<Bytes>,
    pending: Rc<Cell<usize>>,
    max: usize,
}

impl WinSender {
    /// Queues `url`, or drops and counts it when `max` notices are pending.
    pub fn enqueue(&self, url: &[u8], metrics: &WorkerMetrics) {
        if self.pending.get() >= self.max {
            metrics.win_dropped.incr();
            return;
        }
        if self.tx.unbounded_send(Bytes::copy_from_slice(url)).is_ok() {
            self.pending.set(self.pending.get() + 1);
        } else {
            metrics.win_dropped.incr();
        }
    }
}

/// A parsed notice target.
#[derive(Debug, PartialEq, Eq)]
pub struct NoticeTarget {
    /// Host (lowercase; IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query.
    pub path: String,
}

/// Splits an `http://` URL into host, port and path (`/` when absent). Refuses other schemes,
/// userinfo, metadata hosts and (when not allowed) loopback, by rtb-core's URL rules.
pub fn parse_notice_url(url: &str, allow_loopback: bool) -> Option<NoticeTarget> {
    let rest = url
        .get(..7)?
        .eq_ignore_ascii_case("http://")
        .then(|| &url[7..])?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let parsed = BidUrl::parse(&format!("http://{authority}"), Some("/"), allow_loopback).ok()?;
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Some(NoticeTarget {
        host: parsed.host,
        port: parsed.port,
        path,
    })
}

/// Starts this worker's notice task; returns the auction's end of its queue.
pub fn spawn(shared: Arc<Shared>, index: usize, dsps: Rc<RefCell<Rc<DspSet>>>) -> WinSender {
    let (tx, mut rx) = mpsc::unbounded::<Bytes>();
    let pending = Rc::new(Cell::new(0usize));
    let sender = WinSender {
        tx,
        pending: pending.clone(),
        max: shared.win_queue_max,
    };
    monoio::spawn(async move {
        let notifier = Rc::new(Notifier {
            shared,
            index,
            dsps,
            upstreams: RefCell::new(HashMap::new()),
            in_flight: Cell::new(0),
        });
        while let Some(url) = rx.next().await {
            pending.set(pending.get().saturating_sub(1));
            if notifier.in_flight.get() >= WIN_IN_FLIGHT_MAX {
                notifier.fire(&url).await;
            } else {
                notifier.in_flight.set(notifier.in_flight.get() + 1);
                let n = notifier.clone();
                monoio::spawn(async move {
                    n.fire(&url).await;
                    n.in_flight.set(n.in_flight.get() - 1);
                });
            }
        }
    });
    sender
}

struct Notifier {
    shared: Arc<Shared>,
    index: usize,
    dsps: Rc<RefCell<Rc<DspSet>>>,
    upstreams: RefCell<HashMap<(IpAddr, u16), Rc<Upstream>>>,
    in_flight: Cell<usize>,
}

impl Notifier {
    fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.index]
    }

    fn target_addr(&self, t: &NoticeTarget) -> Option<SocketAddr> {
        if let Ok(ip) = t.host.parse::<IpAddr>() {
            check_address(ip, self.shared.allow_loopback).ok()?;
            return Some(SocketAddr::new(ip, t.port));
        }
        let set = self.dsps.borrow().clone();
        let slot = set.slots.iter().find(|s| s.host == t.host)?;
        Some(SocketAddr::new(slot.addr.ip(), t.port))
    }

    async fn fire(&self, url: &[u8]) {
        let metrics = self.metrics();
        let target = std::str::from_utf8(url)
            .ok()
            .and_then(|u| parse_notice_url(u, self.shared.allow_loopback));
        let Some(target) = target else {
            metrics.win_dropped.incr();
            tracing::debug!("win notice URL refused");
            return;
        };
        let (Some(addr), Ok(path)) = (
            self.target_addr(&target),
            PathAndQuery::try_from(target.path.as_str()),
        ) else {
            metrics.win_dropped.incr();
            tracing::debug!(host = %crate::control::truncate(&target.host), "win notice host refused");
            return;
        };
        let upstream = {
            let mut cache = self.upstreams.borrow_mut();
            if cache.len() >= WIN_UPSTREAMS_MAX && !cache.contains_key(&(addr.ip(), addr.port())) {
                cache.clear();
            }
            cache
                .entry((addr.ip(), addr.port()))
                .or_insert_with(|| {
                    let host = if target.host.contains(':') {
                        format!("[{}]:{}", target.host, target.port)
                    } else {
                        format!("{}:{}", target.host, target.port)
                    };
                    Upstream::new(addr, &host, ClientConfig::default())
                })
                .clone()
        };
        let req = ClientRequest {
            method: Method::GET,
            path,
            header_lines: Bytes::new(),
            body: Bytes::new(),
        };
        match upstream
            .call(&req, Instant::now() + WIN_NOTICE_TIMEOUT)
            .await
        {
            Ok(_) => metrics.win_sent.incr(),
            Err(e) => {
                metrics.win_failed.incr();
                tracing::debug!(error = e.as_str(), "win notice failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_notice_urls() {
        let t = parse_notice_url("http://127.0.0.1:8080/win?p=1.5&id=x#frag", true).unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path, "/win?p=1.5&id=x");
        let t = parse_notice_url("HTTP://dsp.example?p=1", true).unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/?p=1"));
        assert!(parse_notice_url("https://dsp.example/win", true).is_none());
        assert!(parse_notice_url("http://u:p@dsp.example/win", true).is_none());
        assert!(parse_notice_url("http://169.254.169.254/latest", true).is_none());
        assert!(parse_notice_url("http://127.0.0.1/win", false).is_none());
    }
}
