//! Dev-only helpers shared by the integration tests of every workspace crate, so each exists
//! once instead of being copied into each `tests/` folder. Real sockets and processes only: no
//! mocks of the code under test.
//!
//! - [`ci`]: prerequisites (the shared OpenRTB samples, workspace binaries) that fail the test
//!   under `CI=true` and skip it with a message elsewhere.
//! - [`http`]: a blocking HTTP/1.1 client (every socket operation bounded by [`http::IO_TIMEOUT`])
//!   and the reader of one request, for fake servers.
//! - [`fake`]: a loopback listener with a thread per connection, stopped on drop; the base of
//!   every fake peer.
//! - [`dsp`]: a fake DSP (bid, no-bid, hang) that records what it received.
//! - [`process`]: a child process that prints where it listens, stopped by SIGTERM or killed
//!   on drop.
//! - [`prom`]: reading samples out of a Prometheus text page.
//! - [`procfs`]: RSS, peak RSS and open file descriptors of a process, from `/proc`.
//! - [`tls`]: a test CA and server certificates it signs (rcgen), as PEM files.
//! - [`wire`]: request bodies and encodings (OpenRTB fixtures, chunked, gzip).
//!
//! Tests opt into `unwrap`: a failed helper is a failed test, and says where.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod ci;
pub mod dsp;
pub mod fake;
pub mod http;
pub mod process;
pub mod procfs;
pub mod prom;
pub mod tls;
pub mod wire;

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns its last answer.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + timeout;
    while Instant::now() < give_up {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
