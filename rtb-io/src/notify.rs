//! Owns a worker's fire-and-forget sender: a bounded queue of URLs in reused buffers and a
//! fixed set of tasks that drain it, so the request path hands a URL over and moves on.
//!
//! Queueing copies the URL into a buffer taken from a free list made at start, so the
//! queueing side allocates nothing (unless a URL outgrows its buffer); when the queue is full
//! the URL is refused, never waited for, and the caller counts the drop. Each URL carries a
//! kind chosen by the caller, and each call says how much of the queue that kind may fill (a
//! less important kind can be kept to a share, leaving the rest for the others). `tasks`
//! tasks drain the queue, so at most that many sends are in flight. What sending means (the
//! address policy, the GET, the counters) is the caller's [`Sender`]; the exchange's win and
//! loss notices go this way.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::{poll_fn, Future},
    rc::Rc,
    task::{Poll, Waker},
};

/// A buffer is kept for reuse only below this capacity (a huge URL's buffer is freed).
const URL_BUFFER_KEEP_BYTES_MAX: usize = 4096;
/// Capacity of each buffer made at start (a typical notice URL is 100-300 bytes; a longer one
/// grows its buffer once, and the grown buffer is kept).
const URL_BUFFER_START_BYTES: usize = 512;

/// What the sender's tasks do with each queued URL.
pub trait Sender<K>: 'static {
    /// Sends `url` of `kind`. `url` is the queue's buffer, lent for the call: it may be
    /// changed in place, and goes back to the free list afterwards.
    fn send(&self, kind: K, url: &mut Vec<u8>) -> impl Future<Output = ()>;
}

/// The queue both sides share (one worker: no locks, no atomics).
#[derive(Debug)]
struct Queue<K> {
    pending: VecDeque<(K, Vec<u8>)>,
    free: Vec<Vec<u8>>,
    idle_tasks: Vec<Waker>,
    max: usize,
}

/// The queueing end of a worker's sender.
#[derive(Debug)]
pub struct SendQueue<K> {
    queue: Rc<RefCell<Queue<K>>>,
}

impl<K> Clone for SendQueue<K> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<K: Copy + 'static> SendQueue<K> {
    /// The most URLs it holds.
    pub fn max(&self) -> usize {
        self.queue.borrow().max
    }

    /// Queues a copy of `url` as `kind` unless `room` URLs (at most the queue's size) are
    /// already queued; false when it was refused.
    pub fn enqueue(&self, kind: K, url: &[u8], room: usize) -> bool {
        let mut q = self.queue.borrow_mut();
        if q.pending.len() >= room.min(q.max) {
            return false;
        }
        let mut buf = q.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(url);
        q.pending.push_back((kind, buf));
        if let Some(task) = q.idle_tasks.pop() {
            task.wake();
        }
        true
    }

    /// A queue of `max` URLs for `tasks` tasks, with `buffers` reused buffers made now.
    fn new(max: usize, tasks: usize, buffers: usize) -> Self {
        let queue = Queue {
            pending: VecDeque::with_capacity(max),
            free: (0..buffers)
                .map(|_| Vec::with_capacity(URL_BUFFER_START_BYTES))
                .collect(),
            idle_tasks: Vec::with_capacity(tasks),
            max,
        };
        Self {
            queue: Rc::new(RefCell::new(queue)),
        }
    }

    /// The next queued URL; parks the task until there is one.
    async fn next(&self) -> (K, Vec<u8>) {
        poll_fn(|cx| {
            let mut q = self.queue.borrow_mut();
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

    /// Gives a sent URL's buffer back, unless it grew too large or enough are kept.
    fn recycle(&self, url: Vec<u8>, buffers: usize) {
        let mut q = self.queue.borrow_mut();
        if url.capacity() <= URL_BUFFER_KEEP_BYTES_MAX && q.free.len() < buffers {
            q.free.push(url);
        }
    }
}

/// Starts `tasks` tasks on this worker's runtime that send, by `sender`, every URL queued;
/// returns the queueing end of a queue of `max` URLs. Every buffer the queue and the tasks can
/// hold at once is made now (about 0.5 MiB for 1,000 URLs), so a burst never allocates on the
/// queueing side.
pub fn spawn<K: Copy + 'static, S: Sender<K>>(max: usize, tasks: usize, sender: S) -> SendQueue<K> {
    let buffers = max + tasks;
    let queue = SendQueue::new(max, tasks, buffers);
    let sender = Rc::new(sender);
    for _ in 0..tasks {
        let (queue, sender) = (queue.clone(), sender.clone());
        monoio::spawn(async move {
            loop {
                let (kind, mut url) = queue.next().await;
                sender.send(kind, &mut url).await;
                queue.recycle(url, buffers);
            }
        });
    }
    queue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        Important,
        Other,
    }

    #[test]
    fn a_kind_fills_only_the_room_it_is_given() {
        let q = SendQueue::new(4, 0, 0);
        for _ in 0..3 {
            q.enqueue(Kind::Other, b"http://10.0.0.1/l", q.max() / 2);
        }
        let refused = (0..3)
            .filter(|_| !q.enqueue(Kind::Important, b"http://10.0.0.1/w", usize::MAX))
            .count();
        assert_eq!(refused, 1);
        let kinds: Vec<Kind> = q.queue.borrow().pending.iter().map(|(k, _)| *k).collect();
        use Kind::{Important, Other};
        assert_eq!(kinds, [Other, Other, Important, Important]);
    }

    /// What the test sender got, in order.
    type Sent = Rc<RefCell<Vec<(Kind, Vec<u8>)>>>;

    struct Record(Sent);

    impl Sender<Kind> for Record {
        async fn send(&self, kind: Kind, url: &mut Vec<u8>) {
            url.push(b'!');
            self.0.borrow_mut().push((kind, url.clone()));
        }
    }

    async fn send_three(sent: Sent) -> usize {
        let q = spawn(8, 2, Record(sent));
        let pause = std::time::Duration::from_millis(10);
        assert!(q.enqueue(Kind::Important, b"http://a/1", 8));
        assert!(q.enqueue(Kind::Other, b"http://a/2", 8));
        monoio::time::sleep(pause).await;
        assert!(q.enqueue(Kind::Other, b"http://a/3", 8));
        monoio::time::sleep(pause).await;
        let free = q.queue.borrow().free.len();
        free
    }

    #[test]
    fn the_tasks_send_every_url_and_reuse_the_buffers_on_both_drivers() {
        use crate::driver::{block_on, DriverKind};
        for kind in [DriverKind::Epoll, DriverKind::Auto] {
            let sent = Rc::new(RefCell::new(Vec::new()));
            let (free, _) = block_on(kind, send_three(sent.clone())).unwrap();
            assert_eq!(free, 10, "every buffer back");
            let got = sent.borrow().clone();
            assert_eq!(got.len(), 3, "{got:?}");
            assert_eq!(got[0], (Kind::Important, b"http://a/1!".to_vec()));
            assert_eq!(got[2], (Kind::Other, b"http://a/3!".to_vec()));
        }
    }
}
