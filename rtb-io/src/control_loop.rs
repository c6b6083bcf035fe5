//! Owns a control thread's loop: commands from the workers over a bounded queue (a full queue
//! refuses at once, so a worker never waits on the control plane), each served as it comes,
//! and the thread's own periodic work at the instant it asks for next. The thread ends when
//! every [`CommandSender`] is dropped. What the commands and the periodic work do is the
//! caller's [`ControlState`]; the exchange's DSP directory runs this way.

use std::{thread::JoinHandle, time::Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, TrySendError};

/// What a control thread owns and does.
pub trait ControlState: 'static {
    /// A request from a worker.
    type Command: Send + 'static;
    /// Serves one command.
    fn handle(&mut self, command: Self::Command);
    /// When [`ControlState::wake`] is next due.
    fn wake_at(&self) -> Instant;
    /// The periodic work, called at or after [`ControlState::wake_at`] with the time now.
    fn wake(&mut self, now: Instant);
}

/// The workers' end of a control thread.
#[derive(Debug)]
pub struct CommandSender<C> {
    tx: Sender<C>,
}

impl<C> Clone for CommandSender<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<C> CommandSender<C> {
    /// Queues a command; false when the queue is full or the thread is gone.
    pub fn send(&self, command: C) -> bool {
        match self.tx.try_send(command) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Starts the thread `name` with a queue of `queue_max` commands; `start` builds its state on
/// the thread (anything blocking it does, it does there).
pub fn spawn<S: ControlState>(
    name: &str,
    queue_max: usize,
    start: impl FnOnce() -> S + Send + 'static,
) -> std::io::Result<(CommandSender<S::Command>, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::bounded(queue_max);
    let join = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut state = start();
            loop {
                match rx.recv_deadline(state.wake_at()) {
                    Ok(command) => state.handle(command),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                let now = Instant::now();
                if now >= state.wake_at() {
                    state.wake(now);
                }
            }
        })?;
    Ok((CommandSender { tx }, join))
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, time::Duration};

    use super::*;

    /// Adds the commands up; every wake reports the sum so far.
    struct Sum {
        total: u64,
        next: Instant,
        report: mpsc::Sender<u64>,
    }

    impl ControlState for Sum {
        type Command = u64;
        fn handle(&mut self, n: u64) {
            self.total += n;
        }
        fn wake_at(&self) -> Instant {
            self.next
        }
        fn wake(&mut self, now: Instant) {
            self.next = now + Duration::from_millis(5);
            let _ = self.report.send(self.total);
        }
    }

    #[test]
    fn serves_commands_wakes_on_time_and_ends_with_its_senders() {
        let (report, reports) = mpsc::channel();
        let start = move || Sum {
            total: 0,
            next: Instant::now(),
            report,
        };
        let (tx, join) = spawn("test-control", 1, start).unwrap();
        assert!(tx.send(2));
        let first = reports.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(first <= 2);
        assert!(tx.send(3));
        let sum = std::iter::from_fn(|| reports.recv_timeout(Duration::from_secs(5)).ok())
            .find(|&total| total == 5);
        assert_eq!(sum, Some(5));
        drop(tx);
        join.join().unwrap();
    }
}
