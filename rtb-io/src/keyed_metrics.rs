//! Owns a worker's metrics kept per key (the exchange keeps one entry per DSP name): each
//! entry is an `Arc<M>` the worker's per-key state holds and writes, created on first use
//! behind a mutex that is touched only when the key set changes and on scrape, never per
//! request. Keys that left keep their counters (a counter never goes back); beyond
//! `KEYS_MAX` keys, new ones share one [`OTHER_KEY`] entry, so a churn of names cannot grow
//! memory without bound. On scrape, [`Keyed::rows`] gathers every worker's entries by key.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

/// The entry keys beyond the cap share.
pub const OTHER_KEY: &str = "_other";

/// One worker's entries by key, at most `KEYS_MAX` (plus [`OTHER_KEY`]).
#[derive(Debug, Default)]
pub struct Keyed<M, const KEYS_MAX: usize> {
    entries: Mutex<Vec<(String, Arc<M>)>>,
}

impl<M: Default, const KEYS_MAX: usize> Keyed<M, KEYS_MAX> {
    /// The entry of `key`, created on first use (past the cap: the shared [`OTHER_KEY`] one).
    pub fn get(&self, key: &str) -> Arc<M> {
        let mut list = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, m)) = list.iter().find(|(k, _)| k == key) {
            return m.clone();
        }
        let key = if list.len() >= KEYS_MAX {
            OTHER_KEY
        } else {
            key
        };
        if let Some((_, m)) = list.iter().find(|(k, _)| k == key) {
            return m.clone();
        }
        let m = Arc::new(M::default());
        list.push((key.to_string(), m.clone()));
        m
    }

    /// A copy of the entry list, by key (for threads that read the counters).
    pub fn list(&self) -> Vec<(String, Arc<M>)> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every worker's entries gathered by key, in key order.
    pub fn rows<'a>(workers: impl Iterator<Item = &'a Self>) -> BTreeMap<String, Vec<Arc<M>>>
    where
        M: 'a,
    {
        let mut rows: BTreeMap<String, Vec<Arc<M>>> = BTreeMap::new();
        for worker in workers {
            for (key, m) in worker.list() {
                rows.entry(key).or_default().push(m);
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_past_the_cap_share_one_entry_and_rows_gather_workers() {
        let (a, b) = (Keyed::<u8, 2>::default(), Keyed::<u8, 2>::default());
        let first = a.get("x");
        assert!(Arc::ptr_eq(&first, &a.get("x")));
        a.get("y");
        assert!(Arc::ptr_eq(&a.get("z"), &a.get("w")), "both past the cap");
        b.get("x");
        let rows = Keyed::rows([&a, &b].into_iter());
        let keys: Vec<_> = rows.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        assert_eq!(keys, [(OTHER_KEY, 1), ("x", 2), ("y", 1)]);
    }
}
