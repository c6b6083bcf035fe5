//! Owns [`PinnedSlots`]: a fixed set of futures polled in place by one parent future, so a
//! fan-out runs K calls concurrently without a spawned task (and its allocation) per call.
//!
//! One of the three modules of rtb-io with `unsafe` (with `reused_box` and `kernel_stamp`):
//! projecting the pin of the whole set onto each element. Up to [`SLOTS_INLINE`] futures live
//! inline in the parent future; more spill to one heap allocation per set.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use smallvec::SmallVec;

/// Futures kept inline before the set spills to the heap.
pub const SLOTS_INLINE: usize = 4;

/// A set of futures, each polled until it completes, in place.
pub(crate) struct PinnedSlots<F> {
    // Invariant: once the set is pinned, `slots` is never resized, reordered or moved out of;
    // an element only changes from `Some` to `None`, in place.
    slots: SmallVec<[Option<F>; SLOTS_INLINE]>,
    remaining: usize,
}

impl<F: Future> PinnedSlots<F> {
    /// A set of the given futures, in order (indexes are positions in `futures`).
    pub(crate) fn new(futures: impl IntoIterator<Item = F>) -> Self {
        let slots: SmallVec<[Option<F>; SLOTS_INLINE]> = futures.into_iter().map(Some).collect();
        let remaining = slots.len();
        Self { slots, remaining }
    }

    /// Futures not completed (nor dropped) yet.
    pub(crate) fn remaining(&self) -> usize {
        self.remaining
    }

    /// Polls every unfinished future once; hands each one that completes to `done` with its
    /// index, and drops it in place.
    pub(crate) fn poll_all(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut done: impl FnMut(usize, F::Output),
    ) {
        // SAFETY: `this` is used only to reach the elements in place (see the invariant on
        // `slots`): nothing is moved out of the pinned set.
        let this = unsafe { self.get_unchecked_mut() };
        for (index, slot) in this.slots.iter_mut().enumerate() {
            let Some(future) = slot.as_mut() else {
                continue;
            };
            // SAFETY: the element lives inside the pinned set and is never moved: the vector is
            // not resized after construction, and the element is dropped in place (below, or
            // with the set), which `Pin` allows.
            let future = unsafe { Pin::new_unchecked(future) };
            if let Poll::Ready(output) = future.poll(cx) {
                *slot = None;
                this.remaining -= 1;
                done(index, output);
            }
        }
    }

    /// Drops every unfinished future in place, handing its index to `dropped`.
    pub(crate) fn drop_all(self: Pin<&mut Self>, mut dropped: impl FnMut(usize)) {
        // SAFETY: as in `poll_all`: elements are only dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        for (index, slot) in this.slots.iter_mut().enumerate() {
            if slot.take().is_some() {
                this.remaining -= 1;
                dropped(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{cell::Cell, pin::pin, rc::Rc, task::Waker};

    /// Ready after `n` polls; counts its drops.
    struct After {
        polls_left: usize,
        drops: Rc<Cell<usize>>,
        _pinned: std::marker::PhantomPinned,
    }

    impl Future for After {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
            // SAFETY: a test future that never moves its fields.
            let this = unsafe { self.get_unchecked_mut() };
            if this.polls_left == 0 {
                Poll::Ready(7)
            } else {
                this.polls_left -= 1;
                Poll::Pending
            }
        }
    }

    impl Drop for After {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn polls_in_place_reports_completions_and_drops_the_rest() {
        let drops = Rc::new(Cell::new(0));
        let futures = [0, 2, 9, 1, 5, 0].map(|n| After {
            polls_left: n,
            drops: drops.clone(),
            _pinned: std::marker::PhantomPinned,
        });
        let mut set = pin!(PinnedSlots::new(futures));
        let mut cx = Context::from_waker(Waker::noop());
        let mut order = Vec::new();
        for _ in 0..3 {
            set.as_mut()
                .poll_all(&mut cx, |i, out| order.push((i, out)));
        }
        assert_eq!(order, [(0, 7), (5, 7), (3, 7), (1, 7)]);
        assert_eq!(set.remaining(), 2);
        assert_eq!(drops.get(), 4);
        let mut dropped = Vec::new();
        set.as_mut().drop_all(|i| dropped.push(i));
        assert_eq!(dropped, [2, 4]);
        assert_eq!((set.remaining(), drops.get()), (0, 6));
    }
}
