//! Owns [`ReusedBox`]: one heap slot in which a connection builds each request's handler future
//! in place, so that a request costs neither an allocation nor a move of the future.
//!
//! A handler future is large (the exchange's is about 12.7 KB: the fan-out's call futures live
//! inline in it). `Pin::set` on a reused `Box` builds the new future on the stack, drops the old
//! one, then copies the whole type into the box: a 12.7 KB memcpy per request, to a box that is
//! cold when a worker serves a thousand connections. Here the old future is dropped first and
//! the new one written straight into the slot, which lets the compiler build it there (only its
//! captured arguments are written). `unsafe` is confined to this module (and to `pinned` and
//! `kernel_stamp` for their own reasons).

use std::{mem::MaybeUninit, pin::Pin};

/// A heap slot for one future at a time, allocated on first use and reused after.
pub(crate) struct ReusedBox<F> {
    // Invariant: `occupied` says whether `slot` holds an initialized `F`; once it does, that
    // value is pinned: it is dropped in place, never moved out, before the slot is reused.
    slot: Option<Box<MaybeUninit<F>>>,
    occupied: bool,
}

impl<F> ReusedBox<F> {
    /// An empty slot (nothing allocated yet).
    pub(crate) fn new() -> Self {
        Self {
            slot: None,
            occupied: false,
        }
    }

    /// Drops the future the slot holds (if any), builds `make()` in its place, and returns it
    /// pinned. If `make` panics, the slot is left empty.
    pub(crate) fn put(&mut self, make: impl FnOnce() -> F) -> Pin<&mut F> {
        self.clear();
        let slot = self.slot.get_or_insert_with(Box::new_uninit);
        let future: &mut F = slot.write(make());
        self.occupied = true;
        // SAFETY: the future lives in the heap slot, which is never moved out of nor reused
        // before the value is dropped in place (`clear`, `Drop`): the pinning guarantee.
        unsafe { Pin::new_unchecked(future) }
    }

    /// Drops the future the slot holds, in place, keeping the allocation.
    fn clear(&mut self) {
        if let (true, Some(slot)) = (self.occupied, self.slot.as_mut()) {
            self.occupied = false;
            // SAFETY: `occupied` said the slot holds an initialized `F`; it is marked empty
            // first, so a panic in the drop cannot lead to a second one.
            unsafe { slot.assume_init_drop() };
        }
    }
}

impl<F> Drop for ReusedBox<F> {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        cell::Cell,
        future::Future,
        rc::Rc,
        task::{Context, Poll, Waker},
    };

    /// Ready at once with its number; counts its drops.
    struct Numbered {
        number: usize,
        drops: Rc<Cell<usize>>,
    }

    impl Future for Numbered {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
            Poll::Ready(self.number)
        }
    }

    impl Drop for Numbered {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn each_future_is_dropped_once_and_the_allocation_is_kept() {
        let drops = Rc::new(Cell::new(0));
        let mut slot = ReusedBox::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut addresses = Vec::new();
        for number in 0..3 {
            let make = || Numbered {
                number,
                drops: drops.clone(),
            };
            let mut future = slot.put(make);
            addresses.push(&*future as *const Numbered as usize);
            assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(number));
            assert_eq!(drops.get(), number, "the previous future is dropped before");
        }
        assert!(addresses.windows(2).all(|pair| pair[0] == pair[1]));
        drop(slot);
        assert_eq!(drops.get(), 3);
    }

    #[test]
    fn a_panic_while_building_leaves_the_slot_empty() {
        let drops = Rc::new(Cell::new(0));
        let mut slot = ReusedBox::new();
        let first = Numbered {
            number: 1,
            drops: drops.clone(),
        };
        slot.put(|| first);
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.put(|| -> Numbered { panic!("building failed") });
        }));
        assert!(failed.is_err());
        assert_eq!(drops.get(), 1, "the old future was dropped before building");
        drop(slot);
        assert_eq!(drops.get(), 1, "and not again");
    }
}
