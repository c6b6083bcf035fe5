//! Owns a worker's end of the ledger: whether a record is kept (sampling of non-winning
//! records), its wall-clock time, and encoding it straight into a pooled buffer that the
//! writer thread takes. Never blocks and, once the pool exists, never allocates: a record
//! with no free buffer is dropped and counted.

use std::{
    cell::Cell,
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use super::Ledger;
use crate::{engine_shell::dsps::DspSet, spool::Producer};
use rtb_core::{
    engine::{Answer, Finished, ShedReason},
    ledger::{encode_auction, encode_invalid, encode_shed, RecordMeta},
    ledger_sample::LedgerSampler,
    BidRequest,
};

/// A worker's ledger handle; does nothing when the ledger is off.
#[derive(Debug)]
pub struct WorkerLedger {
    on: Option<On>,
}

#[derive(Debug)]
struct On {
    ledger: Arc<Ledger>,
    producer: Producer,
    worker: u16,
    sampler: Cell<LedgerSampler>,
}

impl WorkerLedger {
    /// Worker `index`'s handle to `ledger` (off when there is none).
    pub fn new(ledger: Option<&Arc<Ledger>>, index: usize) -> WorkerLedger {
        let on = ledger.and_then(|ledger| {
            Some(On {
                producer: ledger.take_producer(index)?,
                ledger: ledger.clone(),
                worker: u16::try_from(index).unwrap_or(u16::MAX),
                sampler: Cell::new(LedgerSampler::new(ledger.sample, index)),
            })
        });
        WorkerLedger { on }
    }

    /// Records a finished auction (always when it has a winner, else as sampled).
    pub fn auction(&self, finished: &Finished<'_>, set: &DspSet, arrival: Instant) {
        let Some(on) = &self.on else { return };
        if !on.keep(matches!(finished.answer(), Answer::Bid(_))) {
            return;
        }
        let meta = on.meta(arrival);
        let name = |o: &rtb_core::engine::DspOutcome| -> &str {
            set.slots.get(usize::from(o.dsp)).map_or("", |s| &s.name)
        };
        on.producer
            .try_record(|out| encode_auction(finished, meta, name, out));
    }

    /// Records a request shed before any DSP was called (as sampled); `None`: shed for
    /// overload before it was decoded.
    pub fn shed(&self, reason: ShedReason, request: Option<&BidRequest<'_>>, arrival: Instant) {
        let Some(on) = &self.on else { return };
        if on.keep(false) {
            let meta = on.meta(arrival);
            on.producer
                .try_record(|out| encode_shed(reason, request, meta, out));
        }
    }

    /// Records an invalid request with the 400 body it got (as sampled).
    pub fn invalid(&self, error_body: &[u8], arrival: Instant) {
        let Some(on) = &self.on else { return };
        if on.keep(false) {
            let meta = on.meta(arrival);
            on.producer
                .try_record(|out| encode_invalid(error_body, meta, out));
        }
    }
}

impl On {
    fn meta(&self, arrival: Instant) -> RecordMeta {
        self.ledger.anchor.meta(arrival, self.worker)
    }

    /// Whether to keep a record (winners always); a record not kept is counted.
    fn keep(&self, winning: bool) -> bool {
        let mut sampler = self.sampler.get();
        let kept = sampler.keep(winning);
        self.sampler.set(sampler);
        if !kept {
            self.ledger.sampled_out.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }
}
