//! Owns the decoded DSP answers of one auction: the list of response views, which DSP call each
//! came from, and the reuse of the list's allocation from one auction to the next.
//!
//! A view borrows its document for the auction's lifetime `'w`, so the list cannot simply be
//! kept in the workspace between auctions. It is kept there empty, as a
//! `Vec<BidResponse<'static>>`, and turned into a `Vec<BidResponse<'w>>` for the auction and
//! back afterwards by [`recycle`]: an in-place collect of an empty vector, which keeps the
//! allocation because both element types have the same size and alignment (the test below
//! and the zero-allocation tests check that it does).

use crate::response::BidResponse;

/// Reuses an empty-after-clear vector's allocation for the same type under another lifetime.
pub(crate) fn recycle<'a, 'b>(mut list: Vec<BidResponse<'a>>) -> Vec<BidResponse<'b>> {
    list.clear();
    list.into_iter()
        .map(|_| -> BidResponse<'b> { unreachable!("the list was cleared") })
        .collect()
}

/// The answers decoded so far, in arrival order, each with the outcome it belongs to.
pub(crate) struct Views<'w> {
    list: Vec<BidResponse<'w>>,
    outcome_of: &'w mut Vec<u16>,
    home: &'w mut Vec<BidResponse<'static>>,
}

impl<'w> Views<'w> {
    /// Borrows the workspace's list (empty) and index.
    pub(crate) fn lend(
        home: &'w mut Vec<BidResponse<'static>>,
        outcome_of: &'w mut Vec<u16>,
    ) -> Self {
        outcome_of.clear();
        Self {
            list: recycle(std::mem::take(home)),
            outcome_of,
            home,
        }
    }

    pub(crate) fn push(&mut self, view: BidResponse<'w>, outcome: u16) {
        self.list.push(view);
        self.outcome_of.push(outcome);
    }

    /// The views, in arrival order.
    pub(crate) fn list(&self) -> &[BidResponse<'w>] {
        &self.list
    }

    /// The outcome index of the view at `view`.
    pub(crate) fn outcome_of(&self, view: usize) -> Option<u16> {
        self.outcome_of.get(view).copied()
    }

    /// The response at `view` (an auction's response index) and its DSP's outcome index.
    pub(crate) fn response_and_outcome(&self, view: u16) -> Option<(&BidResponse<'w>, u16)> {
        let view = usize::from(view);
        Some((self.list.get(view)?, self.outcome_of(view)?))
    }
}

impl Drop for Views<'_> {
    fn drop(&mut self) {
        // Dropping the views gives their tapes back to their documents; the emptied list goes
        // back to the workspace.
        *self.home = recycle(std::mem::take(&mut self.list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{Decoder, Document};

    #[test]
    fn recycling_keeps_the_allocation() {
        let mut home: Vec<BidResponse<'static>> = Vec::with_capacity(8);
        let address = home.as_ptr() as usize;
        let mut index = Vec::new();
        let mut doc = Document::default();
        let mut decoder = Decoder::new();
        {
            let mut views = Views::lend(&mut home, &mut index);
            let view = BidResponse::decode(br#"{"id":"x"}"#, &mut doc, &mut decoder).unwrap();
            views.push(view, 3);
            assert_eq!(views.list().len(), 1);
            assert_eq!(views.outcome_of(0), Some(3));
            assert_eq!(views.list.as_ptr() as usize, address);
        }
        assert!(home.is_empty());
        assert_eq!(home.capacity(), 8);
        assert_eq!(home.as_ptr() as usize, address);
    }
}
