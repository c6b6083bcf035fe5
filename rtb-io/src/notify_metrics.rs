//! Owns the counters of a worker's fire-and-forget sends ([`crate::notify`]: the exchange's
//! win and loss notices), by kind and by result, with the reason of every drop, and their
//! Prometheus rendering:
//!
//! - `rtb_<kind>_notices_total{result}`: `sent` (answered with any status), `failed` (on the
//!   wire), `dropped` (all reasons);
//! - `rtb_notices_dropped_total{kind, reason}`: `queue_full` (the worker's queue, or the
//!   kind's share of it, was full), `bad_url` (not an `http://` or `https://` URL that is
//!   fired, or an https host that is no TLS name), `host_refused` (the sender's address policy
//!   refused the host);
//! - `rtb_win_notice_connections_opened_total` and `_shrunk_total`: connections opened to
//!   send, and closed because their pool held its size target already.
//!
//! Kinds are the caller's, counted by their index in the list it renders with.

use std::fmt::Write as _;

use crate::{limits::Counter, metrics_text::header};

/// Why a URL was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyDrop {
    /// The worker's queue (or the kind's share of it) was full.
    QueueFull,
    /// The URL is not one that is sent (not `http://` or `https://`, unparsable, refused
    /// port, an https host that is no TLS name).
    BadUrl,
    /// The host is refused by the sender's address policy.
    HostRefused,
}

impl NotifyDrop {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [NotifyDrop; 3] = [
        NotifyDrop::QueueFull,
        NotifyDrop::BadUrl,
        NotifyDrop::HostRefused,
    ];

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyDrop::QueueFull => "queue_full",
            NotifyDrop::BadUrl => "bad_url",
            NotifyDrop::HostRefused => "host_refused",
        }
    }
}

const DROPS: usize = NotifyDrop::ALL.len();

/// One worker's send counters for `KINDS` kinds; single writer.
#[derive(Debug)]
pub struct NotifyCounters<const KINDS: usize> {
    sent: [Counter; KINDS],
    failed: [Counter; KINDS],
    dropped: [[Counter; DROPS]; KINDS],
    /// Connections opened to send (a pool growing, or a host closing them).
    pub connects: Counter,
    /// Connections closed because their pool held its size target already.
    pub shrunk: Counter,
}

impl<const KINDS: usize> Default for NotifyCounters<KINDS> {
    fn default() -> Self {
        Self {
            sent: std::array::from_fn(|_| Counter::default()),
            failed: std::array::from_fn(|_| Counter::default()),
            dropped: std::array::from_fn(|_| Default::default()),
            connects: Counter::default(),
            shrunk: Counter::default(),
        }
    }
}

impl<const KINDS: usize> NotifyCounters<KINDS> {
    /// A send of kind `kind` answered with any HTTP status. Owner thread only.
    pub fn sent(&self, kind: usize) {
        self.sent[kind].incr();
    }

    /// A send of kind `kind` that failed on the wire. Owner thread only.
    pub fn failed(&self, kind: usize) {
        self.failed[kind].incr();
    }

    /// A URL of kind `kind` not sent, and why. Owner thread only.
    pub fn dropped(&self, kind: usize, reason: NotifyDrop) {
        self.dropped[kind][reason as usize].incr();
    }

    fn dropped_total(&self, kind: usize) -> u64 {
        self.dropped[kind].iter().map(Counter::get).sum()
    }
}

/// A kind as rendered: its label (`win`) and the help of its `rtb_<label>_notices_total`.
pub type KindSeries = (&'static str, &'static str);

/// Renders every worker's counters, summed; `kinds` in the order of the kind indexes.
pub fn render<'a, const KINDS: usize>(
    out: &mut String,
    kinds: &[KindSeries; KINDS],
    workers: impl Iterator<Item = &'a NotifyCounters<KINDS>> + Clone,
) {
    let sum = |get: &dyn Fn(&NotifyCounters<KINDS>) -> u64| workers.clone().map(get).sum::<u64>();
    for (k, (kind, help)) in kinds.iter().enumerate() {
        let name = format!("rtb_{kind}_notices_total");
        header(out, &name, "counter", help);
        for (result, n) in [
            ("sent", sum(&|w| w.sent[k].get())),
            ("dropped", sum(&|w| w.dropped_total(k))),
            ("failed", sum(&|w| w.failed[k].get())),
        ] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
    }
    let name = "rtb_notices_dropped_total";
    let help = "Notices not fired, by kind and reason.";
    header(out, name, "counter", help);
    for (k, (kind, _)) in kinds.iter().enumerate() {
        for (r, reason) in NotifyDrop::ALL.iter().enumerate() {
            let n = sum(&|w| w.dropped[k][r].get());
            let reason = reason.as_str();
            let _ = writeln!(out, "{name}{{kind=\"{kind}\",reason=\"{reason}\"}} {n}");
        }
    }
    for (name, help, n) in [
        (
            "rtb_win_notice_connections_opened_total",
            "Connections opened to send win and loss notices (pools growing, or hosts closing them).",
            sum(&|w| w.connects.get()),
        ),
        (
            "rtb_win_notice_connections_shrunk_total",
            "Notice connections closed because their pool held its size target already.",
            sum(&|w| w.shrunk.get()),
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [KindSeries; 2] = [("win", "Win notices."), ("loss", "Loss notices.")];

    #[test]
    fn counts_by_kind_and_reason_and_sums_workers() {
        let (a, b) = (NotifyCounters::<2>::default(), NotifyCounters::default());
        a.sent(0);
        b.sent(0);
        a.sent(1);
        a.dropped(1, NotifyDrop::QueueFull);
        b.dropped(1, NotifyDrop::HostRefused);
        b.failed(0);
        a.connects.incr();
        let mut out = String::new();
        render(&mut out, &KINDS, [&a, &b].into_iter());
        for line in [
            "# HELP rtb_win_notices_total Win notices.\n# TYPE rtb_win_notices_total counter\n",
            "rtb_win_notices_total{result=\"sent\"} 2\n",
            "rtb_win_notices_total{result=\"failed\"} 1\n",
            "rtb_win_notices_total{result=\"dropped\"} 0\n",
            "rtb_loss_notices_total{result=\"sent\"} 1\n",
            "rtb_loss_notices_total{result=\"dropped\"} 2\n",
            "rtb_notices_dropped_total{kind=\"loss\",reason=\"queue_full\"} 1\n",
            "rtb_notices_dropped_total{kind=\"loss\",reason=\"host_refused\"} 1\n",
            "rtb_notices_dropped_total{kind=\"win\",reason=\"bad_url\"} 0\n",
            "rtb_win_notice_connections_opened_total 1\n",
            "rtb_win_notice_connections_shrunk_total 0\n",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }
}
