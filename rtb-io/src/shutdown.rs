//! Owns the graceful-shutdown signal shared by the binary and every worker.
//!
//! Control plane only: workers poll the flag from a per-worker task every
//! [`SHUTDOWN_POLL_PERIOD`], never on the request path.

use std::{
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// How often each worker looks at the shutdown flag.
pub const SHUTDOWN_POLL_PERIOD: Duration = Duration::from_millis(1);

/// Triggers and observes graceful shutdown. Clone freely; any clone can trigger it.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    triggered: Arc<AtomicBool>,
}

impl ShutdownHandle {
    /// A handle that is not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks all workers to stop accepting, finish in-flight requests and exit. Idempotent.
    pub fn trigger(&self) {
        self.triggered.store(true, Ordering::Release);
    }

    /// Whether [`Self::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// Async wait for the trigger, polling every [`SHUTDOWN_POLL_PERIOD`]. Runtime-local.
    pub async fn triggered(&self) {
        while !self.is_triggered() {
            monoio::time::sleep(SHUTDOWN_POLL_PERIOD).await;
        }
    }

    /// Starts a thread that triggers this handle on the first SIGTERM or SIGINT.
    pub fn trigger_on_signals(&self) -> io::Result<std::thread::JoinHandle<()>> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        let handle = self.clone();
        std::thread::Builder::new()
            .name("rtb-signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    tracing::info!(signal, "shutdown signal received");
                    handle.trigger();
                }
            })
    }
}
