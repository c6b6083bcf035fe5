//! The monoio driver of `rtb_core::engine::Engine` (the `engine` feature: the quinn /
//! quinn-proto split, with rtb-core as the sans-IO state machine). Everything here performs
//! decisions rtb-core makes, over this crate's sockets, threads and counters; no auction rule
//! lives here. A binary (the exchange) keeps its flags, routes, wiring and which metric series
//! it shows.
//!
//! - [`dsps`]: a worker's DSP slots, in the engine's table order; [`dsp_gzip`]: the header
//!   lines of a call to a DSP that takes gzip.
//! - [`metrics`]: the per-worker and per-DSP counters; [`record`]: a finished auction's
//!   outcome records counted into them; [`revenue`]: clearing prices by currency.
//! - [`qps_shares`]: each DSP's QPS cap split between workers by their traffic.
//! - [`ledger`]: the auction ledger's writer and per-worker ends.
//! - [`rates`]: the currency rates refresh the control thread runs; [`roster`]: the roster
//!   file it watches.

pub mod dsp_gzip;
pub mod dsps;
pub mod ledger;
pub mod metrics;
pub mod qps_shares;
pub mod rates;
pub mod record;
pub mod revenue;
pub mod roster;
