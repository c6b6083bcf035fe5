//! Owns the counters of the notices a worker fires (win and loss notices), by kind and by
//! result, with the reason of every drop, and their Prometheus rendering:
//!
//! - `rtb_win_notices_total{result}` and `rtb_loss_notices_total{result}`: `sent` (answered
//!   with any status), `failed` (on the wire), `dropped` (all reasons);
//! - `rtb_notices_dropped_total{kind, reason}`: `queue_full` (the worker's queue, or the loss
//!   notices' share of it, was full), `bad_url` (not an `http://` or `https://` URL the exchange fires, or an https host that is
//!   no TLS name),
//!   `host_refused` (neither an allowed IP literal nor a registered DSP's host);
//! - `rtb_win_notice_connections_opened_total`: connections opened to send notices.

use std::fmt::Write as _;

use rtb_core::engine::NoticeKind;
use rtb_io::limits::Counter;

use rtb_io::metrics_text::header;

/// Why a notice was not fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeDrop {
    /// The worker's notice queue (or the loss notices' share of it) was full.
    QueueFull,
    /// The URL is not one the exchange fires (not `http://` or `https://`, unparsable, refused
    /// port, an https host that is no TLS name).
    BadUrl,
    /// The host is neither an allowed IP literal nor a registered DSP's host.
    HostRefused,
}

impl NoticeDrop {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [NoticeDrop; 3] = [
        NoticeDrop::QueueFull,
        NoticeDrop::BadUrl,
        NoticeDrop::HostRefused,
    ];

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeDrop::QueueFull => "queue_full",
            NoticeDrop::BadUrl => "bad_url",
            NoticeDrop::HostRefused => "host_refused",
        }
    }
}

const KINDS: usize = NoticeKind::ALL.len();
const DROPS: usize = NoticeDrop::ALL.len();

/// One worker's notice counters.
#[derive(Debug, Default)]
pub struct NoticeCounters {
    sent: [Counter; KINDS],
    failed: [Counter; KINDS],
    dropped: [[Counter; DROPS]; KINDS],
    /// Connections opened to send notices (a notice pool growing, or a host closing them).
    pub connects: Counter,
    /// Notice connections closed because their pool held its size target already.
    pub shrunk: Counter,
}

fn kind_index(kind: NoticeKind) -> usize {
    NoticeKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)
}

impl NoticeCounters {
    /// A notice answered with any HTTP status. Owner thread only.
    pub fn sent(&self, kind: NoticeKind) {
        self.sent[kind_index(kind)].incr();
    }

    /// A notice that failed on the wire. Owner thread only.
    pub fn failed(&self, kind: NoticeKind) {
        self.failed[kind_index(kind)].incr();
    }

    /// A notice not fired, and why. Owner thread only.
    pub fn dropped(&self, kind: NoticeKind, reason: NoticeDrop) {
        let r = NoticeDrop::ALL
            .iter()
            .position(|&d| d == reason)
            .unwrap_or(0);
        self.dropped[kind_index(kind)][r].incr();
    }

    fn dropped_total(&self, kind: usize) -> u64 {
        self.dropped[kind].iter().map(Counter::get).sum()
    }
}

/// Renders every worker's notice counters, summed.
pub fn render<'a>(out: &mut String, workers: impl Iterator<Item = &'a NoticeCounters> + Clone) {
    for (k, kind) in NoticeKind::ALL.iter().enumerate() {
        let name = format!("rtb_{}_notices_total", kind.as_str());
        let help = match kind {
            NoticeKind::Win => "Win notices by result.",
            NoticeKind::Loss => "Loss notices by result.",
        };
        header(out, &name, "counter", help);
        let sum = |get: &dyn Fn(&NoticeCounters) -> u64| workers.clone().map(get).sum::<u64>();
        for (result, n) in [
            ("sent", sum(&|w| w.sent[k].get())),
            ("dropped", sum(&|w| w.dropped_total(k))),
            ("failed", sum(&|w| w.failed[k].get())),
        ] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
    }
    let name = "rtb_notices_dropped_total";
    header(
        out,
        name,
        "counter",
        "Notices not fired, by kind and reason.",
    );
    for (k, kind) in NoticeKind::ALL.iter().enumerate() {
        for (r, reason) in NoticeDrop::ALL.iter().enumerate() {
            let n: u64 = workers.clone().map(|w| w.dropped[k][r].get()).sum();
            let (kind, reason) = (kind.as_str(), reason.as_str());
            let _ = writeln!(out, "{name}{{kind=\"{kind}\",reason=\"{reason}\"}} {n}");
        }
    }
    let name = "rtb_win_notice_connections_opened_total";
    header(
        out,
        name,
        "counter",
        "Connections opened to send win and loss notices (pools growing, or hosts closing them).",
    );
    let opened: u64 = workers.clone().map(|w| w.connects.get()).sum();
    let _ = writeln!(out, "{name} {opened}");
    let name = "rtb_win_notice_connections_shrunk_total";
    header(
        out,
        name,
        "counter",
        "Notice connections closed because their pool held its size target already.",
    );
    let shrunk: u64 = workers.map(|w| w.shrunk.get()).sum();
    let _ = writeln!(out, "{name} {shrunk}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_reason_and_sums_workers() {
        let (a, b) = (NoticeCounters::default(), NoticeCounters::default());
        a.sent(NoticeKind::Win);
        b.sent(NoticeKind::Win);
        a.sent(NoticeKind::Loss);
        a.dropped(NoticeKind::Loss, NoticeDrop::QueueFull);
        b.dropped(NoticeKind::Loss, NoticeDrop::HostRefused);
        b.failed(NoticeKind::Win);
        let mut out = String::new();
        render(&mut out, [&a, &b].into_iter());
        for line in [
            "rtb_win_notices_total{result=\"sent\"} 2\n",
            "rtb_win_notices_total{result=\"failed\"} 1\n",
            "rtb_win_notices_total{result=\"dropped\"} 0\n",
            "rtb_loss_notices_total{result=\"sent\"} 1\n",
            "rtb_loss_notices_total{result=\"dropped\"} 2\n",
            "rtb_notices_dropped_total{kind=\"loss\",reason=\"queue_full\"} 1\n",
            "rtb_notices_dropped_total{kind=\"loss\",reason=\"host_refused\"} 1\n",
            "rtb_notices_dropped_total{kind=\"win\",reason=\"bad_url\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }
}
