//! rtb-io: thread-per-core HTTP/1.1 server and DSP client on monoio.
//!
//! - [`server`]: one pinned worker thread per core, each with its own runtime
//!   ([`driver`]: io_uring with COOP_TASKRUN, epoll fallback) and `SO_REUSEPORT` listener.
//! - [`head`]: request head parsing and body framing rules, a pure function (fuzzed).
//! - [`gzip`]: `Accept-Encoding` negotiation and the per-worker gzip encoder for answers.
//! - [`http`]: the [`Handler`] trait, [`Request`], [`Response`], [`WorkerCtx`].
//! - [`limits`]: [`ServerLimits`] and per-worker counters summed into [`ServerStats`].
//! - [`client`]: per-worker keep-alive pools ([`Upstream`]) and deadline-bounded [`fan_out`].
//! - [`broadcast`]: control-plane updates to every worker; [`shutdown`]: graceful stop.
//!
//! Nothing here holds auction rules; see `rtb-core` for those.

pub mod body;
pub mod broadcast;
pub mod client;
mod conn;
pub mod driver;
pub mod gzip;
pub mod head;
pub mod http;
pub mod limits;
pub mod server;
pub mod shutdown;

pub use broadcast::{Broadcast, BroadcastReceiver};
pub use client::{
    encode_headers, fan_out, resolve_blocking, CallError, ClientConfig, ClientRequest,
    ClientResponse, Upstream,
};
pub use driver::{ActiveDriver, DriverKind};
pub use http::{Handler, Request, Response, WorkerCtx, WorkerInfo};
pub use limits::{ServerLimits, ServerStats, WorkerStats};
pub use server::{Server, ServerConfig};
pub use shutdown::ShutdownHandle;
