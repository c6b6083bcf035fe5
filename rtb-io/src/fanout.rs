//! Owns the fan-out: K calls to K upstreams at once, every result handed to the caller the
//! moment it arrives (with its completion time), all of it bounded by one deadline.
//!
//! One future polls every call in place ([`crate::pinned`]): no task is spawned per call and
//! one timer serves the whole fan-out. An answer's body is lent to the caller straight from
//! the connection's read buffer; when the caller's callback returns, the connection goes back
//! to its pool. Calls still running at the deadline are dropped and reported as
//! [`CallError::Timeout`]; a dropped call's connection is drained and reused where its stream
//! is still in step, else closed (see [`crate::client`]).

use std::{
    future::{poll_fn, Future},
    pin::pin,
    task::Poll,
    time::Instant,
};

use http::StatusCode;
use monoio::time::{sleep_until, Instant as MonoInstant};

use crate::client::{CallError, RequestParts, Upstream};
use crate::pinned::PinnedSlots;

/// One call of a fan-out.
#[derive(Debug, Clone, Copy)]
pub struct FanOutCall<'c> {
    /// Where to (this worker's pool for the upstream).
    pub upstream: &'c Upstream,
    /// What to send.
    pub request: RequestParts<'c>,
}

/// An upstream's answer, lent for the duration of the result callback.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'b> {
    /// Status code.
    pub status: StatusCode,
    /// Body, de-chunked.
    pub body: &'b [u8],
    /// Whether the call ran on a pooled connection.
    pub reused_connection: bool,
}

/// Runs every call at once and calls `on_result(index, result, completed_at)` once per call,
/// in completion order: with the answer, with the call's error, or with
/// [`CallError::Timeout`] for each call still running at `deadline`. Returns when every call
/// has been reported: by `deadline` plus timer granularity
/// ([`crate::driver::TIMER_GRANULARITY`]), whatever the upstreams do.
pub async fn fan_out<F>(calls: &[FanOutCall<'_>], deadline: Instant, mut on_result: F)
where
    F: FnMut(usize, Result<Answer<'_>, CallError>, Instant),
{
    let started = Instant::now();
    let deadline = MonoInstant::from_std(deadline);
    let mut set =
        pin!(PinnedSlots::new(calls.iter().map(|call| {
            call.upstream.exchange_parts(call.request, deadline)
        })));
    let mut timer = pin!(sleep_until(deadline));
    poll_fn(|cx| {
        set.as_mut().poll_all(cx, |index, result| {
            let at = Instant::now();
            let upstream = calls[index].upstream;
            let error = result.as_ref().err().copied();
            match result {
                Ok(done) => {
                    let answer = Answer {
                        status: done.status(),
                        body: done.body(),
                        reused_connection: done.reused_connection(),
                    };
                    on_result(index, Ok(answer), at);
                    // `done` drops here: its connection goes back to the pool.
                }
                Err(error) => on_result(index, Err(error), at),
            }
            upstream.call_ended(error, started, at);
        });
        if set.remaining() == 0 {
            return Poll::Ready(());
        }
        if timer.as_mut().poll(cx).is_ready() {
            let at = Instant::now();
            set.as_mut().drop_all(|index| {
                calls[index]
                    .upstream
                    .call_ended(Some(CallError::Timeout), started, at);
                on_result(index, Err(CallError::Timeout), at);
            });
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await
}
#[cfg(test)]
mod tests {
    use crate::client::{RequestParts, Upstream};
    use crate::fanout::{fan_out, FanOutCall};

    /// A call's future lives in the fan-out (four inline, more in a spilled buffer moved on
    /// each fan-out), and the fan-out in each client connection's boxed handler future: its
    /// size is memory per connection and bytes moved per DSP call. Opening a connection (a
    /// TLS handshake's state) once made it 4 KB; it is boxed now, on that rare path.
    #[test]
    fn call_futures_stay_small() {
        let up = Upstream::new("127.0.0.1:1".parse().unwrap(), "x", Default::default());
        let body = b"{}";
        let call = up.exchange_parts(
            RequestParts::openrtb_post("/bid", body),
            monoio::time::Instant::now(),
        );
        assert!(
            std::mem::size_of_val(&call) <= 2048,
            "{}",
            std::mem::size_of_val(&call)
        );
        let calls = [FanOutCall {
            upstream: &up,
            request: RequestParts::openrtb_post("/bid", body),
        }];
        let all = fan_out(&calls, std::time::Instant::now(), |_, _, _| {});
        assert!(
            std::mem::size_of_val(&all) <= 10_240,
            "{}",
            std::mem::size_of_val(&all)
        );
    }
}
