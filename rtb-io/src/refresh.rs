//! Owns a document that a control thread reloads on a period and hands to every worker: the
//! last good copy stays in force when a load fails, a copy that changed is published to every
//! worker ([`Broadcast`]), and a status is kept for metrics (when it last loaded, loads,
//! failures, its entries, and whether it is older than the age it is called stale after).
//! What the document is, how it is loaded and what is logged are the caller's; the exchange's
//! currency rates are one such document.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::Broadcast;

/// A refreshed document's status, written by the control thread only and read by metrics.
#[derive(Debug)]
pub struct RefreshStatus {
    /// Wall-clock ms of the last successful load; 0 before the first.
    loaded_at_ms: AtomicU64,
    loads: AtomicU64,
    failures: AtomicU64,
    entries: AtomicU64,
    stale_after: Duration,
}

impl RefreshStatus {
    /// A status with nothing loaded yet; a copy older than `stale_after` is stale.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            loaded_at_ms: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            stale_after,
        }
    }

    /// Time since the last successful load, if any, at wall-clock `now_ms`.
    pub fn age(&self, now_ms: u64) -> Option<Duration> {
        match self.loaded_at_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_millis(now_ms.saturating_sub(at))),
        }
    }

    /// Stale: never loaded, or loaded longer ago than the stale age.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        self.age(now_ms).is_none_or(|age| age > self.stale_after)
    }

    /// Successful loads so far.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Failed loads so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Entries in the copy in force (as the caller counts them).
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }
}

/// What one load gave.
#[derive(Debug)]
pub enum Loaded<T> {
    /// A copy that differs from the one in force, now in force (not yet published).
    Changed(Arc<T>),
    /// The same content as the copy in force, which stays.
    Unchanged(Arc<T>),
    /// The load failed (why); the previous copy, if any, stays in force.
    Failed(String),
}

impl<T> Loaded<T> {
    /// The copy in force after a successful load.
    pub fn copy(&self) -> Option<Arc<T>> {
        match self {
            Loaded::Changed(copy) | Loaded::Unchanged(copy) => Some(copy.clone()),
            Loaded::Failed(_) => None,
        }
    }
}

/// A document reloaded every `period` and published to every worker when it changed.
#[derive(Debug)]
pub struct Refresh<T> {
    period: Duration,
    next_at: Instant,
    status: Arc<RefreshStatus>,
    updates: Broadcast<Arc<T>>,
    entries: fn(&T) -> usize,
    current: Option<Arc<T>>,
}

impl<T: PartialEq + Send + Sync> Refresh<T> {
    /// A refresh every `period` (the first a period from now), publishing to `updates`,
    /// counting a copy's entries with `entries`.
    pub fn new(
        period: Duration,
        status: Arc<RefreshStatus>,
        updates: Broadcast<Arc<T>>,
        entries: fn(&T) -> usize,
    ) -> Self {
        Self {
            period,
            next_at: Instant::now() + period,
            status,
            updates,
            entries,
            current: None,
        }
    }

    /// The status it keeps.
    pub fn status(&self) -> &RefreshStatus {
        &self.status
    }

    /// The copy in force, if one ever loaded.
    pub fn current(&self) -> Option<&Arc<T>> {
        self.current.as_ref()
    }

    /// Whether a load is due at `now`; when it is, the next is due a period later.
    pub fn is_due(&mut self, now: Instant) -> bool {
        if now < self.next_at {
            return false;
        }
        self.next_at = now + self.period;
        true
    }

    /// Takes the result of a load finished at wall-clock `now_ms`: counts it, and puts a copy
    /// that changed in force.
    pub fn take(&mut self, loaded: Result<T, String>, now_ms: u64) -> Loaded<T> {
        let copy = match loaded {
            Ok(copy) => copy,
            Err(error) => {
                self.status.failures.fetch_add(1, Ordering::Relaxed);
                return Loaded::Failed(error);
            }
        };
        let status = &self.status;
        status.loaded_at_ms.store(now_ms, Ordering::Release);
        status.loads.fetch_add(1, Ordering::Relaxed);
        let entries = u64::try_from((self.entries)(&copy)).unwrap_or(u64::MAX);
        status.entries.store(entries, Ordering::Relaxed);
        match &self.current {
            Some(current) if **current == copy => Loaded::Unchanged(current.clone()),
            _ => {
                let copy = Arc::new(copy);
                self.current = Some(copy.clone());
                Loaded::Changed(copy)
            }
        }
    }

    /// Hands `copy` to every worker.
    pub fn publish(&self, copy: Arc<T>) {
        self.updates.send(copy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_older_than_the_stale_age_is_stale() {
        let status = RefreshStatus::new(Duration::from_secs(10));
        assert!(status.is_stale(1_000_000), "never loaded: stale");
        status.loaded_at_ms.store(1_000_000, Ordering::Release);
        assert!(!status.is_stale(1_000_000 + 10_000));
        assert!(status.is_stale(1_000_000 + 10_001));
        assert_eq!(status.age(1_005_000), Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_failed_load_keeps_the_copy_in_force_and_only_a_change_is_new() {
        let status = Arc::new(RefreshStatus::new(Duration::from_secs(60)));
        let mut refresh = Refresh::new(
            Duration::ZERO,
            status.clone(),
            Broadcast::new(1),
            |v: &Vec<u8>| v.len(),
        );
        assert!(refresh.is_due(Instant::now()));
        assert!(matches!(
            refresh.take(Ok(vec![1, 2]), 5_000),
            Loaded::Changed(_)
        ));
        assert!(matches!(
            refresh.take(Ok(vec![1, 2]), 6_000),
            Loaded::Unchanged(_)
        ));
        let failed = refresh.take(Err("unreadable".into()), 7_000);
        assert!(matches!(&failed, Loaded::Failed(e) if e == "unreadable"));
        assert_eq!(failed.copy(), None);
        assert_eq!(refresh.current().map(|c| c.as_slice()), Some(&[1, 2][..]));
        let changed = refresh.take(Ok(vec![3]), 8_000);
        assert_eq!(changed.copy().as_deref(), Some(&vec![3]));
        assert_eq!(
            (status.loads(), status.failures(), status.entries()),
            (3, 1, 1)
        );
        assert_eq!(status.age(9_000), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_load_is_due_once_a_period() {
        let t0 = Instant::now();
        let period = Duration::from_secs(30);
        let mut refresh = Refresh::new(
            period,
            Arc::new(RefreshStatus::new(period)),
            Broadcast::new(1),
            |_: &u8| 1,
        );
        assert!(!refresh.is_due(t0), "the first is a period after the start");
        assert!(refresh.is_due(t0 + period + Duration::from_secs(1)));
        assert!(!refresh.is_due(t0 + period + Duration::from_secs(2)));
        assert!(refresh.is_due(t0 + 2 * period + Duration::from_secs(1)));
    }
}
