//! Owns the notices a worker fires (win notices, `nurl`, and loss notices, `lurl`): a bounded
//! per-worker queue of reused URL buffers, and a fixed set of tasks that send each as a GET,
//! off the auction's path.
//!
//! Queueing copies the URL into a buffer taken from a free list made at start, so the auction
//! side allocates nothing (unless a URL outgrows its buffer); when the queue is full the notice
//! is dropped and counted, never waited for. Loss notices may fill only part of the queue
//! ([`LOSS_QUEUE_SHARE_DIVISOR`]): an auction has a winner but may have many losers, and a
//! flood of loss notices must not crowd out the win notices DSPs bill by. [`NOTICE_TASKS`]
//! tasks drain the queue, so at most that many notices are in flight. Every drop is counted by
//! kind and reason ([`crate::notice_metrics`]).
//!
//! Address policy: the exchange never resolves names on a worker. A notice URL is fired only
//! when its host is an IP literal that passes `check_address`, or when it names the host of a
//! registered DSP (then that DSP's resolved address is used, with the URL's port). Anything
//! else is dropped and counted, so a DSP cannot make the exchange call arbitrary hosts.
//!
//! Transport: an `https://` notice goes over TLS (the certificate checked against the URL's
//! host, by the roots of `--dsp-ca-file` and the public ones), from a pool of its own: pools
//! are keyed by address, and for TLS by host name too, since the name is what is verified.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    future::poll_fn,
    net::{IpAddr, SocketAddr},
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use http::Method;
use rtb_core::engine::NoticeKind;
use rtb_core::registry::{check_address, NoticeUrl};
use rtb_io::{tls::WorkerTls, ClientConfig, RequestParts, Upstream, UpstreamTls};

use crate::{dsps::DspSet, metrics::WorkerMetrics, notice_metrics::NoticeDrop, Shared};

/// Loss notices are queued only while the queue is less than 1/N full (N = this): the rest
/// is kept for win notices.
pub const LOSS_QUEUE_SHARE_DIVISOR: usize = 2;
/// Time allowed for one notice.
pub const NOTICE_TIMEOUT: Duration = Duration::from_secs(1);
/// Tasks firing notices per worker: the most notices in flight at once.
pub const NOTICE_TASKS: usize = 32;
/// Notice pools kept per worker (keyed by address); the cache is reset beyond it.
pub const NOTICE_UPSTREAMS_MAX: usize = 256;
/// A URL buffer is kept for reuse only below this capacity (a huge URL's buffer is freed).
const URL_BUFFER_KEEP_BYTES_MAX: usize = 4096;
/// Capacity of each URL buffer made at start (a typical `nurl` is 100-300 bytes; a longer one
/// grows its buffer once, and the grown buffer is kept).
const URL_BUFFER_START_BYTES: usize = 512;

/// The queue both sides share (one worker: no locks, no atomics).
#[derive(Debug)]
struct Queue {
    pending: VecDeque<(NoticeKind, Vec<u8>)>,
    free: Vec<Vec<u8>>,
    idle_tasks: Vec<Waker>,
    max: usize,
}

/// The auction's end of a worker's notice queue.
#[derive(Debug, Clone)]
pub struct NoticeQueue {
    queue: Rc<RefCell<Queue>>,
}

impl NoticeQueue {
    /// Queues `url`, or drops and counts it when the queue (for a loss notice: its share of
    /// the queue) is full.
    pub fn enqueue(&self, kind: NoticeKind, url: &[u8], metrics: &WorkerMetrics) {
        let mut q = self.queue.borrow_mut();
        let room = match kind {
            NoticeKind::Win => q.max,
            NoticeKind::Loss => q.max / LOSS_QUEUE_SHARE_DIVISOR,
        };
        if q.pending.len() >= room {
            metrics.notices.dropped(kind, NoticeDrop::QueueFull);
            return;
        }
        let mut buf = q.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(url);
        q.pending.push_back((kind, buf));
        if let Some(task) = q.idle_tasks.pop() {
            task.wake();
        }
    }
}

/// Starts this worker's notice tasks; returns the auction's end of their queue.
pub fn spawn(shared: Arc<Shared>, index: usize, dsps: Rc<RefCell<Rc<DspSet>>>) -> NoticeQueue {
    let max = shared.win_queue_max;
    // Every buffer the queue and the tasks can hold at once is made now (about 0.5 MiB at the
    // default queue size), so a burst of wins never allocates on the auction's path.
    let buffers = max + NOTICE_TASKS;
    let queue = Rc::new(RefCell::new(Queue {
        pending: VecDeque::with_capacity(max),
        free: (0..buffers)
            .map(|_| Vec::with_capacity(URL_BUFFER_START_BYTES))
            .collect(),
        idle_tasks: Vec::with_capacity(NOTICE_TASKS),
        max,
    }));
    let tls = shared.dsp_tls_roots.worker_connector();
    let notifier = Rc::new(Notifier {
        shared,
        index,
        dsps,
        upstreams: RefCell::new(HashMap::new()),
        tls,
    });
    for _ in 0..NOTICE_TASKS {
        let (queue, notifier) = (queue.clone(), notifier.clone());
        monoio::spawn(async move {
            loop {
                let (kind, mut url) = next(&queue).await;
                notifier.fire(kind, &mut url).await;
                let mut q = queue.borrow_mut();
                if url.capacity() <= URL_BUFFER_KEEP_BYTES_MAX && q.free.len() < buffers {
                    q.free.push(url);
                }
            }
        });
    }
    NoticeQueue { queue }
}

/// The next queued notice; parks the task until there is one.
async fn next(queue: &RefCell<Queue>) -> (NoticeKind, Vec<u8>) {
    poll_fn(|cx| {
        let mut q = queue.borrow_mut();
        match q.pending.pop_front() {
            Some(url) => Poll::Ready(url),
            None => {
                q.idle_tasks.push(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await
}

#[derive(Debug)]
struct Notifier {
    shared: Arc<Shared>,
    index: usize,
    dsps: Rc<RefCell<Rc<DspSet>>>,
    upstreams: RefCell<HashMap<PoolKey, Rc<Upstream>>>,
    /// This worker's TLS client config for `https://` notices.
    tls: WorkerTls,
}

/// A notice pool's key: the address, and for TLS the host name checked in the certificate.
type PoolKey = (SocketAddr, Option<Box<str>>);

impl Notifier {
    fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.index]
    }

    fn target_addr(&self, url: &NoticeUrl<'_>) -> Option<SocketAddr> {
        if let Ok(ip) = url.host.parse::<IpAddr>() {
            check_address(ip, self.shared.allow_loopback).ok()?;
            return Some(SocketAddr::new(ip, url.port));
        }
        let set = self.dsps.borrow();
        let slot = set
            .slots
            .iter()
            .find(|s| s.host.eq_ignore_ascii_case(url.host))?;
        Some(SocketAddr::new(slot.addr.ip(), url.port))
    }

    /// The pool for `addr` (and, for TLS, the URL's host); `None` when an `https://` host is
    /// no valid TLS name.
    fn upstream(&self, addr: SocketAddr, url: &NoticeUrl<'_>) -> Option<Rc<Upstream>> {
        let key = (addr, url.tls.then(|| url.host.to_ascii_lowercase().into()));
        let mut cache = self.upstreams.borrow_mut();
        if let Some(up) = cache.get(&key) {
            return Some(up.clone());
        }
        let tls = match url.tls {
            false => None,
            true => Some(UpstreamTls {
                connector: self.tls.clone(),
                server_name: rtb_io::tls::server_name(url.host).ok()?,
            }),
        };
        let host = if url.host.contains(':') {
            format!("[{}]:{}", url.host, url.port)
        } else {
            format!("{}:{}", url.host, url.port)
        };
        if cache.len() >= NOTICE_UPSTREAMS_MAX {
            cache.clear();
        }
        let up = Upstream::with_tls(addr, &host, ClientConfig::default(), tls);
        cache.insert(key, up.clone());
        Some(up)
    }

    /// Fires one notice. `url` is the queue's buffer: a target that lacks its leading `/` gets
    /// one in place.
    async fn fire(&self, kind: NoticeKind, url: &mut Vec<u8>) {
        let metrics = &self.metrics().notices;
        let parsed = std::str::from_utf8(url)
            .ok()
            .and_then(|u| NoticeUrl::parse(u, self.shared.allow_loopback).ok());
        let Some(parsed) = parsed else {
            metrics.dropped(kind, NoticeDrop::BadUrl);
            tracing::debug!("notice URL refused");
            return;
        };
        let Some(addr) = self.target_addr(&parsed) else {
            metrics.dropped(kind, NoticeDrop::HostRefused);
            tracing::debug!(host = %crate::control::truncate(parsed.host), "notice host refused");
            return;
        };
        let Some(upstream) = self.upstream(addr, &parsed) else {
            metrics.dropped(kind, NoticeDrop::BadUrl);
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
        let target = std::str::from_utf8(&url[start..end]).unwrap_or("/");
        let request = RequestParts {
            method: &Method::GET,
            path: target,
            header_lines: b"",
            body: b"",
        };
        let connects_before = upstream.stats.connects.get();
        let sent = upstream
            .call_parts(request, Instant::now() + NOTICE_TIMEOUT)
            .await
            .map(drop);
        let opened = upstream.stats.connects.get() - connects_before;
        metrics.connects.add(opened);
        match sent {
            Ok(()) => metrics.sent(kind),
            Err(e) => {
                metrics.failed(kind);
                tracing::debug!(error = e.as_str(), "notice failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice_metrics::NoticeCounters;

    fn queue(max: usize) -> NoticeQueue {
        NoticeQueue {
            queue: Rc::new(RefCell::new(Queue {
                pending: VecDeque::new(),
                free: Vec::new(),
                idle_tasks: Vec::new(),
                max,
            })),
        }
    }

    fn rendered(counters: &NoticeCounters) -> String {
        let mut out = String::new();
        crate::notice_metrics::render(&mut out, std::iter::once(counters));
        out
    }

    #[test]
    fn loss_notices_fill_only_their_share_and_win_notices_the_rest() {
        let q = queue(4);
        let metrics = WorkerMetrics::default();
        for _ in 0..3 {
            q.enqueue(NoticeKind::Loss, b"http://10.0.0.1/l", &metrics);
        }
        for _ in 0..3 {
            q.enqueue(NoticeKind::Win, b"http://10.0.0.1/w", &metrics);
        }
        let kinds: Vec<NoticeKind> = q.queue.borrow().pending.iter().map(|(k, _)| *k).collect();
        use NoticeKind::{Loss, Win};
        assert_eq!(
            kinds,
            [Loss, Loss, Win, Win],
            "half for losses, all of it for wins"
        );
        let text = rendered(&metrics.notices);
        for line in [
            "rtb_notices_dropped_total{kind=\"loss\",reason=\"queue_full\"} 1\n",
            "rtb_notices_dropped_total{kind=\"win\",reason=\"queue_full\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
