//! Owns the addresses of one upstream as one worker connects to them: every address its host
//! resolved to, new connections spread round robin across them, and an address whose connect
//! failed skipped for [`ClientConfig::addr_backoff`](super::ClientConfig::addr_backoff) as long
//! as another address is usable (then tried again). When every address is backing off, the
//! one whose back-off ends first is tried: a call never fails for want of an address.
//!
//! Single-threaded (cells, no locks) and allocation-free per connect: the list is replaced
//! only when the control plane sends new addresses.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    time::{Duration, Instant},
};

/// One address and, after a failed connect, until when it is skipped.
#[derive(Debug, Clone, Copy)]
struct Target {
    addr: SocketAddr,
    failed_until: Option<Instant>,
}

impl Target {
    fn usable(&self, now: Instant) -> bool {
        self.failed_until.is_none_or(|until| until <= now)
    }
}

/// An upstream's addresses (never empty) and the round robin cursor.
#[derive(Debug)]
pub(crate) struct Targets {
    list: RefCell<Vec<Target>>,
    next: Cell<usize>,
    backoff: Duration,
}

impl Targets {
    /// Targets for `addrs` (at least one: the caller's invariant, kept by [`Self::set`]).
    pub(crate) fn new(addrs: &[SocketAddr], backoff: Duration) -> Self {
        debug_assert!(!addrs.is_empty(), "an upstream needs an address");
        let list = addrs.iter().map(|&addr| Target {
            addr,
            failed_until: None,
        });
        Self {
            list: RefCell::new(list.collect()),
            next: Cell::new(0),
            backoff,
        }
    }

    /// The address for the next new connection at `now`: the next usable one in turn, or the
    /// one whose back-off ends first when none is usable.
    pub(crate) fn pick(&self, now: Instant) -> SocketAddr {
        let list = self.list.borrow();
        let n = list.len();
        let start = self.next.get() % n;
        let mut chosen = None;
        let mut soonest: Option<(usize, Instant)> = None;
        for k in (start..n).chain(0..start) {
            let t = &list[k];
            if t.usable(now) {
                chosen = Some(k);
                break;
            }
            let until = t.failed_until.unwrap_or(now);
            if soonest.is_none_or(|(_, s)| until < s) {
                soonest = Some((k, until));
            }
        }
        let k = chosen.or(soonest.map(|(k, _)| k)).unwrap_or(start);
        self.next.set(k + 1);
        list[k].addr
    }

    /// A connect to `addr` failed at `now`: skip it for the back-off.
    pub(crate) fn failed(&self, addr: SocketAddr, now: Instant) {
        let mut list = self.list.borrow_mut();
        if let Some(t) = list.iter_mut().find(|t| t.addr == addr) {
            t.failed_until = Some(now + self.backoff);
        }
    }

    /// A connect to `addr` succeeded: it is usable again at once.
    pub(crate) fn succeeded(&self, addr: SocketAddr) {
        let mut list = self.list.borrow_mut();
        if let Some(t) = list.iter_mut().find(|t| t.addr == addr) {
            t.failed_until = None;
        }
    }

    /// Replaces the addresses (an empty list is ignored), keeping the back-off of those that
    /// stay; whether any address left (its pooled connections should then go).
    pub(crate) fn set(&self, addrs: &[SocketAddr]) -> bool {
        if addrs.is_empty() {
            return false;
        }
        let mut list = self.list.borrow_mut();
        if list.iter().map(|t| t.addr).eq(addrs.iter().copied()) {
            return false;
        }
        let left = list.iter().any(|t| !addrs.contains(&t.addr));
        let kept: Vec<Target> = (addrs.iter())
            .map(|&addr| Target {
                addr,
                failed_until: list
                    .iter()
                    .find(|t| t.addr == addr)
                    .and_then(|t| t.failed_until),
            })
            .collect();
        *list = kept;
        left
    }

    /// How many addresses there are (at least one).
    pub(crate) fn len(&self) -> usize {
        self.list.borrow().len()
    }

    /// Whether `addr` is one of the addresses.
    pub(crate) fn contains(&self, addr: SocketAddr) -> bool {
        self.list.borrow().iter().any(|t| t.addr == addr)
    }

    /// The first address.
    pub(crate) fn first(&self) -> SocketAddr {
        self.list.borrow()[0].addr
    }

    /// Every address, in order (allocates: for inspection, not the hot path).
    pub(crate) fn all(&self) -> Vec<SocketAddr> {
        self.list.borrow().iter().map(|t| t.addr).collect()
    }

    /// Addresses usable at `now` (not backing off).
    pub(crate) fn usable_count(&self, now: Instant) -> usize {
        self.list.borrow().iter().filter(|t| t.usable(now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_secs(5);

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect()
    }

    #[test]
    fn picks_go_round_robin_and_skip_a_failed_address_until_its_backoff_ends() {
        let a = addrs(3);
        let t = Targets::new(&a, BACKOFF);
        let now = Instant::now();
        let picks: Vec<_> = (0..6).map(|_| t.pick(now)).collect();
        assert_eq!(picks, [a[0], a[1], a[2], a[0], a[1], a[2]]);
        t.failed(a[1], now);
        assert_eq!(t.usable_count(now), 2);
        let picks: Vec<_> = (0..4).map(|_| t.pick(now)).collect();
        assert_eq!(picks, [a[0], a[2], a[0], a[2]]);
        // Back-off over: tried again.
        let later = now + BACKOFF;
        let picks: Vec<_> = (0..3).map(|_| t.pick(later)).collect();
        assert!(picks.contains(&a[1]), "{picks:?}");
        t.failed(a[1], now);
        t.succeeded(a[1]);
        assert_eq!(t.usable_count(now), 3);
    }

    #[test]
    fn with_every_address_failed_the_first_to_recover_is_tried() {
        let a = addrs(2);
        let t = Targets::new(&a, BACKOFF);
        let now = Instant::now();
        t.failed(a[1], now);
        t.failed(a[0], now + Duration::from_secs(1));
        assert_eq!(t.usable_count(now), 0);
        assert_eq!(t.pick(now), a[1]);
        assert_eq!(t.pick(now), a[1]);
    }

    #[test]
    fn new_addresses_keep_the_backoff_of_those_that_stay() {
        let a = addrs(3);
        let t = Targets::new(&a[..2], BACKOFF);
        let now = Instant::now();
        t.failed(a[1], now);
        assert!(!t.set(&a[..2]), "same list: no change");
        assert!(!t.set(&[]), "an empty list is ignored");
        assert!(!t.set(&a[..3]), "one added, none left");
        assert_eq!(t.usable_count(now), 2, "a[1] still backs off");
        assert!(t.set(&a[1..]), "a[0] left");
        assert!(!t.contains(a[0]) && t.contains(a[2]));
        assert_eq!((t.first(), t.all()), (a[1], a[1..].to_vec()));
        assert_eq!(t.pick(now), a[2]);
    }
}
