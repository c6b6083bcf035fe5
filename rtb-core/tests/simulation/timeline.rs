//! Owns virtual time: the worker's clock (a base `Instant` plus an offset that only moves
//! forward; nothing ever sleeps) and the queue of events due at virtual instants, ordered by
//! (instant, class, sequence) so that events at the same instant always replay in one order.

use std::{
    cmp::{Ordering, Reverse},
    collections::BinaryHeap,
    time::{Duration, Instant},
};

/// Virtual time: offsets from one base instant.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new(base: Instant) -> Self {
        Self { base }
    }

    /// The instant `offset` after the base.
    pub fn at(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    /// The offset of `instant` (which must not be before the base).
    pub fn offset(&self, instant: Instant) -> Duration {
        instant
            .checked_duration_since(self.base)
            .expect("no instant before the simulation's base")
    }
}

struct Entry<E> {
    at: Duration,
    class: u8,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (Duration, u8, u64) {
        (self.at, self.class, self.seq)
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Events by virtual due time; at equal times the lower class goes first, then the earlier push.
pub struct Timeline<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    seq: u64,
}

impl<E> Timeline<E> {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn push(&mut self, at: Duration, class: u8, event: E) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            class,
            seq: self.seq,
            event,
        }));
    }

    /// When the next event is due.
    pub fn next_at(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|Reverse(e)| (e.at, e.event))
    }
}
