//! The monoio driver of `rtb_core::engine::Engine` (the `engine` feature: the quinn /
//! quinn-proto split, with rtb-core as the sans-IO state machine). Everything here performs
//! decisions rtb-core makes, over this crate's sockets, threads and counters; no auction rule
//! lives here. A binary (the exchange) keeps its flags, routes, wiring and which metric series
//! it shows.
//!
//! - [`Shared`]: what every worker's shell reads (engine settings, pool settings, counters).
//! - [`auction`]: the auction route's shell ([`auction::AuctionShell`]): one fan-out per
//!   auction over the worker's pools, the answer, the notices, the counts; [`apply`]: the
//!   tasks that install registry snapshots and currency rates between requests.
//! - [`dsps`]: a worker's DSP slots, in the engine's table order; [`dsp_gzip`]: the header
//!   lines of a call to a DSP that takes gzip.
//! - [`metrics`]: the per-worker and per-DSP counters; [`record`]: a finished auction's
//!   outcome records counted into them; [`revenue`]: clearing prices by currency.
//! - [`qps_shares`]: each DSP's QPS cap split between workers by their traffic.
//! - [`notices`]: the win and loss notices a worker fires.
//! - [`ledger`]: the auction ledger's writer and per-worker ends.
//! - [`control`]: the control thread that owns the DSP directory; [`rates`]: the currency
//!   rates refresh it runs; [`roster`]: the roster file it watches.

pub mod apply;
pub mod auction;
pub mod control;
pub mod dsp_gzip;
pub mod dsps;
pub mod ledger;
pub mod metrics;
pub mod notices;
pub mod qps_shares;
pub mod rates;
pub mod record;
pub mod revenue;
pub mod roster;

use std::sync::Arc;

use rtb_core::{engine::EngineConfig, CurrencyRates};

use crate::{pool_settings::PoolSettings, Broadcast, TlsRoots};

/// State shared by every worker's engine shell (read-only on the hot path).
#[derive(Debug)]
pub struct Shared {
    /// What every worker's auction engine decides by.
    pub engine: EngineConfig,
    /// How each worker builds its pool to a DSP (limits, sizing, pre-warm, TLS).
    pub dsp_pools: PoolSettings,
    /// Roots trusted for https:// DSPs and notices; each worker builds its own client config
    /// (and so its own TLS session cache) from them.
    pub dsp_tls_roots: TlsRoots,
    /// One entry per worker, each written by its worker only.
    pub metrics: Arc<[metrics::WorkerMetrics]>,
    /// Pending win notices per worker.
    pub win_queue_max: usize,
    /// Whether loopback DSP and win-notice addresses are allowed.
    pub allow_loopback: bool,
    /// Currency rates, when the exchange converts currencies.
    pub currency: Option<Currency>,
    /// The auction ledger, when one is written.
    pub ledger: Option<Arc<ledger::Ledger>>,
}

/// The currency rates as workers and the debug port get them.
#[derive(Debug)]
pub struct Currency {
    /// The table loaded at startup (None: the first load failed; auctions keep today's rule
    /// until a refresh succeeds).
    pub initial: Option<Arc<CurrencyRates>>,
    /// Every later table, to every worker.
    pub updates: Broadcast<Arc<CurrencyRates>>,
    /// Age, staleness and counters, for /metrics.
    pub status: Arc<rates::RatesStatus>,
}
