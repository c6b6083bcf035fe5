//! Owns a running [`Spool`] shared by a process's workers: each worker takes its
//! [`Producer`] once (when it starts, on its own thread), the scrape reads the counters, and
//! the process stops the writer once, after the workers stopped, so every record handed over
//! is written. The exchange's ledger is one.

use std::sync::{Arc, Mutex};

use crate::spool::{Producer, Spool, SpoolStats};

/// A spool, the producers not yet taken, and its counters.
#[derive(Debug)]
pub struct SharedSpool {
    spool: Mutex<Option<Spool>>,
    producers: Mutex<Vec<Option<Producer>>>,
    stats: Arc<SpoolStats>,
}

impl SharedSpool {
    /// `spool` and its producers, one per worker (as [`Spool::start`] returns them).
    pub fn new((spool, producers): (Spool, Vec<Producer>)) -> Self {
        Self {
            stats: spool.stats().clone(),
            spool: Mutex::new(Some(spool)),
            producers: Mutex::new(producers.into_iter().map(Some).collect()),
        }
    }

    /// Worker `index`'s producer (once; `None` after, or past the last worker).
    pub fn take_producer(&self, index: usize) -> Option<Producer> {
        let mut producers = self.producers.lock().unwrap_or_else(|p| p.into_inner());
        producers.get_mut(index).and_then(Option::take)
    }

    /// Records by fate, summed over producers.
    pub fn stats(&self) -> &SpoolStats {
        &self.stats
    }

    /// Writes every queued record and stops the writer (the first call; later ones do
    /// nothing). Call after the workers stopped.
    pub fn stop(&self) {
        let spool = self.spool.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(spool) = spool {
            spool.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io, sync::atomic::Ordering, time::Duration};

    use super::*;
    use crate::spool::{SpoolConfig, SpoolSink};

    /// Keeps the records it is given.
    struct Memory(Arc<Mutex<Vec<Vec<u8>>>>);

    impl SpoolSink for Memory {
        fn write(&mut self, record: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().push(record.to_vec());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn producers_are_taken_once_and_stop_writes_everything() {
        let config = SpoolConfig {
            producers: 2,
            buffers_per_producer: 4,
            buffer_bytes: 64,
            buffer_bytes_max: 1024,
            flush_period: Duration::from_secs(60),
        };
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Memory(written.clone());
        let shared = SharedSpool::new(Spool::start(config, sink, "test-spool").unwrap());
        let producer = shared.take_producer(1).unwrap();
        assert!(shared.take_producer(1).is_none(), "once");
        assert!(shared.take_producer(2).is_none(), "no third worker");
        assert!(producer.try_record(|out| out.extend_from_slice(b"r1")));
        shared.stop();
        shared.stop();
        assert_eq!(*written.lock().unwrap(), [b"r1".to_vec()]);
        assert_eq!(shared.stats().written.load(Ordering::Relaxed), 1);
    }
}
