//! Owns the way records leave a worker without ever making it wait: each producer (worker) has
//! a bounded pool of reused buffers; it fills one and hands it to a single writer thread over a
//! bounded channel; the writer writes it to a [`SpoolSink`] and gives the buffer back. When a
//! producer has no free buffer (the writer is behind), the record is dropped and counted.
//!
//! Nothing here allocates on the producer once its pool exists: buffers are made when the
//! spool starts, the channels are crossbeam's array flavour (preallocated), and a buffer keeps
//! its capacity from one record to the next. The writer flushes the sink on a period and, at
//! [`Spool::stop`], writes everything queued before it returns.

use std::{
    io,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

/// Where the writer thread puts records. A record counts as written once a flush after it
/// succeeded; a failed flush counts every record accepted since the last one as failed.
pub trait SpoolSink: Send + 'static {
    /// Accepts one record (its bytes as the producer left them); an error loses this record.
    fn write(&mut self, record: &[u8]) -> io::Result<()>;
    /// Makes everything accepted so far durable enough to be read by others.
    fn flush(&mut self) -> io::Result<()>;
    /// Whether the sink wants a flush now, before its period (a batch is full).
    fn wants_flush(&self) -> bool {
        false
    }
}

/// Sizes and periods of a spool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Producers (one per worker).
    pub producers: usize,
    /// Buffers each producer owns: records in flight per producer at most.
    pub buffers_per_producer: usize,
    /// Capacity each buffer starts with, bytes.
    pub buffer_bytes: usize,
    /// A buffer that grew beyond this is replaced (by the writer) with a fresh one, so one huge
    /// record does not keep its memory for ever.
    pub buffer_bytes_max: usize,
    /// How often the writer flushes the sink while records keep coming (and when idle).
    pub flush_period: Duration,
}

/// Records by fate, summed over producers (producers write `dropped`, the writer the rest).
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Written to the sink (accepted, then flushed).
    pub written: AtomicU64,
    /// Dropped by a producer: no free buffer (the writer is behind), or the spool stopped.
    pub dropped: AtomicU64,
    /// Handed to the sink, which failed to write or flush them.
    pub failed: AtomicU64,
    /// Flushes of the sink that failed.
    pub flush_failed: AtomicU64,
}

/// One producer's end: its free buffers and the way to the writer. Owned by one thread.
#[derive(Debug)]
pub struct Producer {
    index: usize,
    free: Receiver<Vec<u8>>,
    free_back: Sender<Vec<u8>>,
    to_writer: Sender<(usize, Vec<u8>)>,
    stats: Arc<SpoolStats>,
}

impl Producer {
    /// Fills a free buffer (handed over cleared) with `fill` and queues it for the writer.
    /// Never blocks: with no free buffer the record is dropped, counted, and false returned.
    pub fn try_record(&self, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Ok(mut buf) = self.free.try_recv() else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        buf.clear();
        fill(&mut buf);
        match self.to_writer.try_send((self.index, buf)) {
            Ok(()) => true,
            Err(TrySendError::Full((_, buf)) | TrySendError::Disconnected((_, buf))) => {
                // The buffer stays in the pool; only the record is lost.
                let _ = self.free_back.try_send(buf);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// A running spool: the writer thread and the counters.
#[derive(Debug)]
pub struct Spool {
    stop: Arc<AtomicBool>,
    stats: Arc<SpoolStats>,
    writer: JoinHandle<()>,
}

impl Spool {
    /// Makes every producer's buffers and starts the writer thread (named `thread_name`).
    /// Returns the spool and one [`Producer`] per configured producer, in order.
    pub fn start(
        config: SpoolConfig,
        sink: impl SpoolSink,
        thread_name: &str,
    ) -> io::Result<(Spool, Vec<Producer>)> {
        let stats = Arc::new(SpoolStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let queue = config.producers.max(1) * config.buffers_per_producer.max(1);
        let (to_writer, from_producers) = bounded(queue);
        let mut producers = Vec::with_capacity(config.producers);
        let mut returns = Vec::with_capacity(config.producers);
        for index in 0..config.producers {
            let (free_back, free) = bounded(config.buffers_per_producer.max(1));
            for _ in 0..config.buffers_per_producer {
                let _ = free_back.try_send(Vec::with_capacity(config.buffer_bytes));
            }
            returns.push(free_back.clone());
            producers.push(Producer {
                index,
                free,
                free_back,
                to_writer: to_writer.clone(),
                stats: stats.clone(),
            });
        }
        drop(to_writer);
        let writer = Writer {
            config,
            sink,
            from_producers,
            returns,
            stop: stop.clone(),
            stats: stats.clone(),
            unflushed: 0,
        };
        let writer = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || writer.run())?;
        Ok((
            Spool {
                stop,
                stats,
                writer,
            },
            producers,
        ))
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<SpoolStats> {
        &self.stats
    }

    /// Writes everything queued, flushes the sink and ends the writer. Call once the producers
    /// are done (records queued after this are dropped and counted).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if self.writer.join().is_err() {
            tracing::error!("spool writer panicked");
        }
    }
}

struct Writer<S> {
    config: SpoolConfig,
    sink: S,
    from_producers: Receiver<(usize, Vec<u8>)>,
    returns: Vec<Sender<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    stats: Arc<SpoolStats>,
    /// Records accepted by the sink since its last flush.
    unflushed: u64,
}

impl<S: SpoolSink> Writer<S> {
    /// How long the writer sleeps at most between looks at the stop flag.
    const STOP_POLL: Duration = Duration::from_millis(50);

    fn run(mut self) {
        let mut next_flush = Instant::now() + self.config.flush_period;
        loop {
            let wait = next_flush
                .saturating_duration_since(Instant::now())
                .min(Self::STOP_POLL);
            match self.from_producers.recv_timeout(wait) {
                Ok((producer, buf)) => self.write(producer, buf),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            if Instant::now() >= next_flush {
                self.flush();
                next_flush = Instant::now() + self.config.flush_period;
            }
        }
        while let Ok((producer, buf)) = self.from_producers.try_recv() {
            self.write(producer, buf);
        }
        self.flush();
    }

    fn write(&mut self, producer: usize, mut buf: Vec<u8>) {
        match self.sink.write(&buf) {
            Ok(()) => self.unflushed += 1,
            Err(e) => {
                tracing::debug!(error = %e, "spool sink write failed");
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if buf.capacity() > self.config.buffer_bytes_max {
            buf = Vec::with_capacity(self.config.buffer_bytes);
        }
        buf.clear();
        if let Some(back) = self.returns.get(producer) {
            let _ = back.try_send(buf);
        }
        if self.sink.wants_flush() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let records = std::mem::take(&mut self.unflushed);
        match self.sink.flush() {
            Ok(()) => self.stats.written.fetch_add(records, Ordering::Relaxed),
            Err(e) => {
                self.stats.flush_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, records, "spool sink flush failed");
                self.stats.failed.fetch_add(records, Ordering::Relaxed)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    /// A sink that keeps what it got, and can be told to stall.
    #[derive(Clone, Default)]
    struct Memory {
        lines: Arc<Mutex<Vec<Vec<u8>>>>,
        flushes: Arc<AtomicU64>,
        stall: Arc<Mutex<()>>,
    }

    impl SpoolSink for Memory {
        fn write(&mut self, record: &[u8]) -> io::Result<()> {
            let _stalled = self.stall.lock().unwrap();
            self.lines.lock().unwrap().push(record.to_vec());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn config(buffers: usize) -> SpoolConfig {
        SpoolConfig {
            producers: 2,
            buffers_per_producer: buffers,
            buffer_bytes: 64,
            buffer_bytes_max: 1024,
            flush_period: Duration::from_millis(10),
        }
    }

    #[test]
    fn stop_writes_everything_queued_and_flushes() {
        let sink = Memory::default();
        let (spool, producers) = Spool::start(config(512), sink.clone(), "spool-test").unwrap();
        for i in 0..1000u32 {
            let p = &producers[(i % 2) as usize];
            while !p.try_record(|b| b.extend_from_slice(&i.to_le_bytes())) {
                std::thread::yield_now();
            }
        }
        let stats = spool.stats().clone();
        spool.stop();
        assert_eq!(sink.lines.lock().unwrap().len(), 1000);
        assert_eq!(stats.written.load(Ordering::Relaxed), 1000);
        assert!(sink.flushes.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn a_stalled_writer_drops_and_counts_never_blocks() {
        let sink = Memory::default();
        let stalled = sink.stall.clone();
        let guard = stalled.lock().unwrap();
        let (spool, producers) = Spool::start(config(4), sink.clone(), "spool-test").unwrap();
        let started = Instant::now();
        let accepted = (0..100)
            .filter(|_| producers[0].try_record(|b| b.push(1)))
            .count();
        assert!(started.elapsed() < Duration::from_secs(1));
        // Four buffers: at most four records in flight (one may sit in the stalled write).
        assert!(accepted <= 4, "{accepted}");
        assert_eq!(
            spool.stats().dropped.load(Ordering::Relaxed),
            100 - accepted as u64
        );
        drop(guard);
        // Buffers come back: the producer records again.
        assert!(eventually(|| producers[0].try_record(|b| b.push(2))));
        let stats = spool.stats().clone();
        spool.stop();
        assert_eq!(
            stats.written.load(Ordering::Relaxed),
            accepted as u64 + 1,
            "every accepted record written"
        );
    }

    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn an_oversized_buffer_is_replaced_not_kept() {
        let sink = Memory::default();
        let mut cfg = config(1);
        cfg.producers = 1;
        let (spool, producers) = Spool::start(cfg, sink.clone(), "spool-test").unwrap();
        assert!(producers[0].try_record(|b| b.resize(100_000, b'x')));
        let mut capacity = 0;
        assert!(eventually(
            || producers[0].try_record(|b| capacity = b.capacity())
        ));
        assert!(capacity <= 1024, "{capacity}");
        spool.stop();
    }
}
