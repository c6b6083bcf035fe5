//! dsp-bin: the `rtb-dsp` simulated DSP and the `rtb-demo` driver.
//!
//! - [`dist`]: price and latency distributions (flag syntax, seeded sampling).
//! - [`handler`]: the per-worker request handler (bids, win notices, metrics, faults).
//! - [`metrics`]: counters and their Prometheus text.
//! - [`onboard`]: registration with exchanges, retried with backoff and refreshed.
//! - [`httpc`]: a small blocking HTTP/1.1 client for control-plane calls and tests.

pub mod dist;
pub mod handler;
pub mod httpc;
pub mod metrics;
pub mod onboard;
