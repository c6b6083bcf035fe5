//! Owns the notices a worker fires (win notices, `nurl`, and loss notices, `lurl`): what is
//! queued, where each may go, and what is counted. The queue (reused URL buffers, bounded, a
//! fixed set of tasks sending off the auction's path) is [`crate::notify`]'s, the pools the
//! GETs go over [`crate::notify_pools`]'.
//!
//! When the queue is full a notice is dropped and counted, never waited for. Loss notices may
//! fill only part of the queue ([`LOSS_QUEUE_SHARE_DIVISOR`]): an auction has a winner but may
//! have many losers, and a flood of loss notices must not crowd out the win notices DSPs bill
//! by. [`NOTICE_TASKS`] tasks drain the queue, so at most that many notices are in flight.
//! Every drop is counted by kind and reason ([`crate::notify_metrics`]).
//!
//! Address policy (`rtb_core::registry::NoticeUrl::addr`): the exchange never resolves names
//! on a worker. A notice URL is fired only when its host is an IP literal that passes
//! `check_address`, or when it names the host of a registered DSP (then that DSP's resolved
//! address is used, with the URL's port). Anything else is dropped and counted.
//!
//! Transport: an `https://` notice goes over TLS (the certificate checked against the URL's
//! host, by the roots of `--dsp-ca-file` and the public ones), from a pool of its own.

use std::{
    cell::RefCell,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    notify::{self, SendQueue},
    notify_metrics::NotifyDrop as NoticeDrop,
    notify_pools::{self, GetTarget, NotifyPools},
};
use rtb_core::engine::NoticeKind;
use rtb_core::registry::NoticeUrl;

use super::{dsps::DspSet, metrics::WorkerMetrics, Shared};

/// A kind's index in `NoticeKind::ALL`, which its counters are kept by.
fn kind_index(kind: NoticeKind) -> usize {
    NoticeKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)
}

/// Loss notices are queued only while the queue is less than 1/N full (N = this): the rest
/// is kept for win notices.
pub const LOSS_QUEUE_SHARE_DIVISOR: usize = 2;
/// Time allowed for one notice.
pub const NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Tasks firing notices per worker: the most notices in flight at once.
pub const NOTICE_TASKS: usize = 32;
/// Notice pools kept per worker (keyed by address); the cache is reset beyond it.
pub const NOTICE_UPSTREAMS_MAX: usize = 256;

/// The auction's end of a worker's notice queue.
#[derive(Debug, Clone)]
pub struct NoticeQueue {
    queue: SendQueue<NoticeKind>,
}

impl NoticeQueue {
    /// Queues `url`, or drops and counts it when the queue (for a loss notice: its share of
    /// the queue) is full.
    pub fn enqueue(&self, kind: NoticeKind, url: &[u8], metrics: &WorkerMetrics) {
        let room = match kind {
            NoticeKind::Win => self.queue.max(),
            NoticeKind::Loss => self.queue.max() / LOSS_QUEUE_SHARE_DIVISOR,
        };
        if !self.queue.enqueue(kind, url, room) {
            metrics
                .notices
                .dropped(kind_index(kind), NoticeDrop::QueueFull);
        }
    }
}

/// Starts this worker's notice tasks; returns the auction's end of their queue.
pub fn spawn(shared: Arc<Shared>, index: usize, dsps: Rc<RefCell<Rc<DspSet>>>) -> NoticeQueue {
    let max = shared.win_queue_max;
    let pools = NotifyPools::new(
        shared.dsp_tls_roots.worker_connector(),
        NOTICE_UPSTREAMS_MAX,
    );
    let notifier = Notifier {
        shared,
        index,
        dsps,
        pools,
    };
    NoticeQueue {
        queue: notify::spawn(max, NOTICE_TASKS, notifier),
    }
}

#[derive(Debug)]
struct Notifier {
    shared: Arc<Shared>,
    index: usize,
    dsps: Rc<RefCell<Rc<DspSet>>>,
    pools: NotifyPools,
}

impl Notifier {
    fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.index]
    }
}

impl notify::Sender<NoticeKind> for Notifier {
    /// Fires one notice. `url` is the queue's buffer: a target that lacks its leading `/` gets
    /// one in place.
    async fn send(&self, kind: NoticeKind, url: &mut Vec<u8>) {
        let metrics = &self.metrics().notices;
        let parsed = std::str::from_utf8(url)
            .ok()
            .and_then(|u| NoticeUrl::parse(u, self.shared.allow_loopback).ok());
        let Some(parsed) = parsed else {
            metrics.dropped(kind_index(kind), NoticeDrop::BadUrl);
            tracing::debug!("notice URL refused");
            return;
        };
        let dsp_ip = |host: &str| {
            let set = self.dsps.borrow();
            let mut slots = set.slots.iter();
            let slot = slots.find(|s| s.host.eq_ignore_ascii_case(host))?;
            Some(slot.addr.ip())
        };
        let Some(addr) = parsed.addr(self.shared.allow_loopback, dsp_ip) else {
            metrics.dropped(kind_index(kind), NoticeDrop::HostRefused);
            tracing::debug!(host = %rtb_core::echo::truncate(parsed.host), "notice host refused");
            return;
        };
        let target = GetTarget {
            addr,
            host: parsed.host,
            port: parsed.port,
            tls: parsed.tls,
        };
        let Some(pool) = self.pools.pool(target) else {
            metrics.dropped(kind_index(kind), NoticeDrop::BadUrl);
            tracing::debug!("notice host is no valid TLS name");
            return;
        };
        let start = parsed.target.as_ptr() as usize - url.as_ptr() as usize;
        let mut end = start + parsed.target.len();
        if !parsed.target.starts_with('/') {
            url.insert(start, b'/');
            end += 1;
        }
        // The bytes were valid UTF-8 (parsed above) and a '/' keeps them so.
        let path = std::str::from_utf8(&url[start..end]).unwrap_or("/");
        let sent = notify_pools::get(&pool, path, Instant::now() + NOTICE_TIMEOUT).await;
        metrics.connects.add(sent.connects);
        metrics.shrunk.add(sent.shrunk);
        match sent.result {
            Ok(()) => metrics.sent(kind_index(kind)),
            Err(e) => {
                metrics.failed(kind_index(kind));
                tracing::debug!(error = e.as_str(), "notice failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_shell::metrics::NoticeCounters;

    fn rendered(counters: &NoticeCounters) -> String {
        let mut out = String::new();
        let kinds = [("win", "Win notices."), ("loss", "Loss notices.")];
        crate::notify_metrics::render(&mut out, &kinds, std::iter::once(counters));
        out
    }

    /// A queue of 4 whose tasks never get to run (the runtime is not polled past the test).
    fn queue_of_four() -> NoticeQueue {
        struct Never;
        impl notify::Sender<NoticeKind> for Never {
            async fn send(&self, _: NoticeKind, _: &mut Vec<u8>) {}
        }
        NoticeQueue {
            queue: notify::spawn(4, 0, Never),
        }
    }

    #[test]
    fn loss_notices_fill_only_their_share_and_win_notices_the_rest() {
        let q = queue_of_four();
        let metrics = WorkerMetrics::default();
        for _ in 0..3 {
            q.enqueue(NoticeKind::Loss, b"http://10.0.0.1/l", &metrics);
        }
        for _ in 0..3 {
            q.enqueue(NoticeKind::Win, b"http://10.0.0.1/w", &metrics);
        }
        let text = rendered(&metrics.notices);
        for line in [
            "rtb_notices_dropped_total{kind=\"loss\",reason=\"queue_full\"} 1\n",
            "rtb_notices_dropped_total{kind=\"win\",reason=\"queue_full\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
