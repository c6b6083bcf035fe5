//! Owns the notices an auction asks the shell to fire: each a URL with its macros substituted,
//! written into one reused buffer, with its kind and the DSP it belongs to. The shell queues
//! them off the hot path; the engine only decides which to fire (see [`super::Finished`]: a
//! win notice per winner with a `nurl`, a loss notice per other bid with a `lurl`, none at all
//! for a `test: 1` request).

use std::ops::Range;

/// What a notice tells the DSP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// `nurl`: the bid won the impression.
    Win,
    /// `lurl`: the bid lost (or was rejected), with its OpenRTB loss reason code.
    Loss,
}

impl NoticeKind {
    /// Every kind, in a fixed order (for metrics).
    pub const ALL: [NoticeKind; 2] = [NoticeKind::Win, NoticeKind::Loss];

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Loss => "loss",
        }
    }
}

/// One notice to fire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Its kind.
    pub kind: NoticeKind,
    /// The outcome index of the DSP it goes to (see [`super::Finished::outcomes`]).
    pub outcome: u16,
    /// The OpenRTB loss reason code substituted for `${AUCTION_LOSS}` (0 for a win).
    pub loss_code: u16,
    url: Range<u32>,
}

/// The notices of one auction, in a reused buffer.
#[derive(Debug, Default)]
pub struct Notices {
    bytes: Vec<u8>,
    list: Vec<Notice>,
}

impl Notices {
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.list.clear();
    }

    /// Appends a notice whose URL `write` writes (into the buffer's end); a notice whose
    /// writer wrote nothing, or that would not fit the offsets, is not kept.
    pub(crate) fn push(
        &mut self,
        (kind, loss_code): (NoticeKind, u16),
        outcome: u16,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        let start = self.bytes.len();
        let wrote = write(&mut self.bytes);
        let range = u32::try_from(start)
            .ok()
            .zip(u32::try_from(self.bytes.len()).ok());
        match range {
            Some((s, e)) if wrote && e > s => self.list.push(Notice {
                kind,
                outcome,
                loss_code,
                url: s..e,
            }),
            _ => self.bytes.truncate(start),
        }
    }

    /// Each notice with its URL.
    pub fn iter(&self) -> impl Iterator<Item = (&Notice, &[u8])> {
        self.list
            .iter()
            .map(|n| (n, &self.bytes[n.url.start as usize..n.url.end as usize]))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_written_urls_and_drops_empty_ones() {
        let mut n = Notices::default();
        let win = (NoticeKind::Win, 0);
        n.push(win, 0, |out| {
            out.extend_from_slice(b"http://a/w?p=1");
            true
        });
        n.push(win, 1, |_| false);
        n.push(win, 2, |out| {
            out.extend_from_slice(b"partial");
            false
        });
        n.push((NoticeKind::Loss, 102), 3, |out| {
            out.extend_from_slice(b"http://b/");
            true
        });
        let got: Vec<_> = n
            .iter()
            .map(|(k, u)| (k.outcome, k.loss_code, u.to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 0, b"http://a/w?p=1".to_vec()),
                (3, 102, b"http://b/".to_vec())
            ]
        );
        n.clear();
        assert!(n.is_empty());
    }
}
