//! rtb-io: thread-per-core HTTP/1.1 server and DSP client on monoio.
//!
//! - [`server`]: one pinned worker thread per core, each with its own runtime
//!   ([`driver`]: io_uring with COOP_TASKRUN, epoll fallback) and `SO_REUSEPORT` listener.
//! - [`bodies`]: response bodies cut from reused per-worker buffers ([`BodyPool`]).
//! - [`head`]: request head parsing and body framing rules, a pure function (fuzzed).
//! - [`gzip`]: `Accept-Encoding` negotiation and the per-worker gzip encoder for answers;
//!   [`body_gzip`]: a worker's request compressor for upstreams that take gzip.
//! - [`http`]: the [`Handler`] trait, [`Request`], [`Response`], [`WorkerCtx`].
//! - [`limits`]: [`ServerLimits`] and per-worker counters summed into [`ServerStats`];
//!   [`limit_flags`]: the limits as clap flags, for a binary to flatten into its own.
//! - [`client`]: per-worker keep-alive pools ([`Upstream`]) and deadline-bounded calls;
//!   [`client_flags`]: the pools' limits as clap flags, for a binary to flatten into its own;
//!   [`pool_settings`]: how a worker builds its pool to a new upstream (pre-warm, TLS).
//! - [`fanout`]: K calls at once in one future, each result lent to the caller as it arrives.
//! - [`tls`]: trusted roots, per-worker TLS client configs, a server's certificate;
//!   [`stream`]: a connection's stream, plain or TLS.
//! - [`broadcast`]: control-plane updates to every worker; [`shutdown`]: graceful stop;
//!   [`lag`]: a worker's event-loop lag probe.
//! - [`process`]: the standard `process_*` metrics, read from `/proc/self`;
//!   [`metrics_text`]: the single-writer latency histogram and the Prometheus text writers
//!   (family header, label escaping, histogram lines, per-label series tables, build info,
//!   the server's counters); [`pool_metrics`]: a DSP pool's counters mirrored per worker,
//!   summed and rendered (`rtb_dsp_pool_*`); [`keyed_metrics`]: a worker's metrics per key
//!   (per DSP), bounded, gathered by key on scrape; [`request_metrics`]: HTTP requests by
//!   route and status; [`code_slots`]: counters per code (per
//!   currency) in a few slots claimed on first use.
//! - [`clickhouse`]: the ledger's ClickHouse sink for a [`spool`] (JSONEachRow over HTTP).
//! - Control-thread helpers (blocking, never on a worker): [`control_loop`] (the thread: a
//!   bounded command queue and its own periodic work), [`dns`] (hickory-resolver: every
//!   address and the record's TTL, bounded in time), [`resolve`] (the resolver type, and the
//!   system resolver bounded in time), [`fetch`] (a file or one `http://` GET, bounded),
//!   [`file_stamp`] (which version of a file is behind a path),
//!   [`clock`] (Unix ms), [`dns_status`] (lookups by result, addresses per name, for
//!   `/metrics`), [`refresh`] (a document reloaded on a period, published to every
//!   worker when it changed).
//! - [`notify`]: fire-and-forget sends off the request path (a bounded queue of reused URL
//!   buffers, a few tasks draining it); [`notify_pools`]: the pools their GETs go over;
//!   [`notify_metrics`]: what was sent, failed and dropped (and why), by kind.
//! - [`spool`]: records handed from workers to one writer thread, never blocking (dropped and
//!   counted when it is behind); [`rotating_file`]: a size-rotated file sink for it;
//!   [`spool_target`]: `file:PATH` or `clickhouse:http://...`, and the spool started on it;
//!   [`ledger_flags`]: the exchange ledger's spool as clap flags; [`shared_spool`]: a spool
//!   whose producers the workers take once, stopped once.
//! - [`watched_file`]: a configuration file reloaded when the file behind its path changes
//!   (the last good copy kept, loads counted).
//!
//! - [`engine_shell`] (the `engine` feature, which brings in rtb-core): the monoio driver of
//!   `rtb_core::engine::Engine`, performing the engine's decisions over the pools above.
//!
//! Nothing here holds auction rules; see `rtb-core` for those.

pub mod bodies;
pub mod body;
pub mod body_gzip;
pub mod broadcast;
pub mod clickhouse;
pub mod client;
pub mod client_flags;
pub mod clock;
pub mod code_slots;
mod conn;
pub mod control_loop;
pub mod dns;
pub mod dns_status;
pub mod driver;
#[cfg(feature = "engine")]
pub mod engine_shell;
pub mod fanout;
pub mod fetch;
pub mod file_stamp;
pub mod flags;
pub mod gunzip;
pub mod gzip;
pub mod head;
pub mod http;
pub mod kernel_stamp;
pub mod keyed_metrics;
pub mod lag;
pub mod ledger_flags;
pub mod limit_flags;
pub mod limits;
pub mod metrics_text;
pub mod notify;
pub mod notify_metrics;
pub mod notify_pools;
mod pinned;
pub mod pool_metrics;
pub mod pool_settings;
pub mod process;
pub mod refresh;
pub mod request_metrics;
pub mod resolve;
mod reused_box;
pub mod rotating_file;
pub mod server;
pub mod shared_spool;
pub mod shutdown;
pub mod spool;
pub mod spool_target;
pub mod stream;
pub mod tls;
pub mod turn_budget;
pub mod watched_file;

pub use bodies::BodyPool;
pub use broadcast::{Broadcast, BroadcastReceiver};
pub use client::{
    encode_headers, resolve_blocking, spawn_prewarm, CallError, ClientConfig, ClientRequest,
    ClientResponse, Completed, RequestParts, Upstream, UpstreamStats, DRAIN_RESULTS,
    PREWARM_LANES_DEFAULT,
};
pub use driver::{ActiveDriver, DriverKind};
pub use fanout::{fan_out, Answer, FanOutCall};
pub use http::{Handler, Request, Response, WorkerCtx, WorkerInfo};
pub use limits::{ServerLimits, ServerStats, WorkerStats};
pub use server::{Server, ServerConfig};
pub use shutdown::ShutdownHandle;
pub use stream::NetStream;
pub use tls::{TlsRoots, UpstreamTls, WorkerTls};
