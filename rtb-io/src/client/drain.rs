//! Owns what happens to a call's connection when the call is dropped before its answer came
//! (the call's deadline, or the fan-out's, passed): [`Lent`] holds the connection for the
//! length of a call, and if the call is dropped while its request is written and no byte of
//! the answer is read, hands the connection to a drain task on the same worker. The task
//! reads the late answer by [`super::ClientConfig::drain_timeout`] and within
//! [`super::ClientConfig::drain_bytes_max`], then returns the connection to the idle pool; a
//! malformed, too large, too late or `connection: close` answer closes it. At most
//! [`super::ClientConfig::draining_max`] connections drain at once per upstream.
//!
//! Allocation: only on the timeout path (the spawned task, and the read buffer that went away
//! with the cancelled read). A call that completes touches none of this but [`Lent`].

use std::rc::Rc;

use monoio::time::{timeout_at, Instant as MonoInstant};

use super::pool::{bump, Upstream};
use super::wire::{read_answer, Conn};

/// A connection lent to one call. Take it back with [`Lent::take`] when the call ends; if the
/// call's future is dropped instead, `Drop` drains or closes it.
pub(crate) struct Lent<'u> {
    upstream: &'u Upstream,
    conn: Option<Conn>,
}

impl<'u> Lent<'u> {
    pub(crate) fn new(upstream: &'u Upstream, conn: Conn) -> Self {
        Self {
            upstream,
            conn: Some(conn),
        }
    }

    /// The connection, for the call's IO.
    pub(crate) fn conn(&mut self) -> &mut Conn {
        // Invariant: `conn` is `Some` until `take` consumes `self`.
        self.conn
            .as_mut()
            .expect("lent connection present until taken")
    }

    /// Ends the loan: the call finished (answered or failed) and decides the connection's fate.
    pub(crate) fn take(mut self) -> Conn {
        self.conn
            .take()
            .expect("lent connection present until taken")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A TLS read dropped mid-way took the TLS layer's buffer with it: never drainable.
        if conn.unanswered && !conn.stream.is_tls() {
            start_drain(self.upstream, conn);
        } else {
            // Half a request written, half an answer read, or a TLS read cut off: the stream is
            // out of step.
            bump(&self.upstream.stats.timeout_closes);
        }
    }
}

/// Hands `conn` to a drain task, or closes it when draining is off or the set is full.
fn start_drain(upstream: &Upstream, conn: Conn) {
    let config = upstream.config();
    if config.draining_max == 0 || config.drain_timeout.is_zero() {
        bump(&upstream.stats.timeout_closes);
        return;
    }
    if upstream.draining.get() >= config.draining_max {
        bump(&upstream.stats.drains_refused);
        return;
    }
    let Some(owner) = upstream.me.upgrade() else {
        return;
    };
    upstream.draining.set(upstream.draining.get() + 1);
    bump(&upstream.stats.drains);
    monoio::spawn(drain(owner, conn));
}

/// Frees a draining slot when the drain ends, also when its task is dropped (shutdown).
struct DrainSlot(Rc<Upstream>);

impl Drop for DrainSlot {
    fn drop(&mut self) {
        self.0.draining.set(self.0.draining.get() - 1);
    }
}

/// Reads the late answer off `conn` and returns the connection to the pool if it is still
/// in step; otherwise drops (closes) it. Counted either way.
async fn drain(upstream: Rc<Upstream>, mut conn: Conn) {
    let slot = DrainSlot(upstream);
    let upstream = &slot.0;
    let mut limits = upstream.config();
    limits.response_bytes_max = limits.drain_bytes_max;
    let deadline = MonoInstant::now() + limits.drain_timeout;
    let answer = timeout_at(deadline, read_answer(&mut conn, &limits, false)).await;
    // The addresses may have been re-pointed while the answer was late: keep only connections
    // to a current one.
    let same_peer = (conn.stream.peer_addr()).is_ok_and(|peer| upstream.has_addr(peer));
    match answer {
        Ok(Ok(received)) if received.reusable && same_peer => {
            bump(&upstream.stats.drains_reused);
            upstream.release(conn);
        }
        _ => bump(&upstream.stats.drains_closed),
    }
}
