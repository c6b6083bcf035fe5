//! Owns one upstream's keep-alive pool on one worker ([`Upstream`]): opening connections with a
//! non-blocking connect, lending them to calls, taking them back when the response left them
//! reusable, and counting what happened.
//!
//! Each new connection goes to the next of the upstream's addresses in turn ([`Targets`]); a
//! failed connect puts its address in back-off.
//!
//! Connects are a non-blocking `connect(2)` plus a readiness wait, so a timed-out connect never
//! cancels a connect op (monoio 0.2.4 leaks the fd then, issue #318). Each connect takes a
//! permit from the upstream's [`Pacing`] first; a call's connection is lent through
//! [`Lent`], which drains it (see [`super::drain`]) if the call is dropped at its deadline.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::{Rc, Weak},
    time::Instant,
};

use bytes::Bytes;
use monoio::{
    net::TcpStream,
    time::{timeout_at, Instant as MonoInstant},
};
use socket2::{Domain, Protocol, Socket, Type};

use super::drain::Lent;
use super::pacing::Pacing;
use super::sizing::PoolSizer;
use super::targets::Targets;
use super::wire::{exchange, Conn, ExchangeError, Received};
use super::{CallError, ClientConfig, ClientRequest, ClientResponse, RequestParts};
use crate::{stream::NetStream, tls::UpstreamTls};

/// Counters of one upstream on one worker (single-threaded, plain cells).
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Connections opened.
    pub connects: Cell<u64>,
    /// Connects that failed (refused, unreachable, not connected within the connect timeout,
    /// TLS handshake refused), each putting its address in back-off.
    pub connect_failures: Cell<u64>,
    /// Calls served on a pooled connection.
    pub reuses: Cell<u64>,
    /// Calls that ended with each error.
    pub timeouts: Cell<u64>,
    /// Calls that failed otherwise.
    pub failures: Cell<u64>,
    /// TLS handshakes that failed (certificate refused, peer not TLS).
    pub tls_failures: Cell<u64>,
    /// Calls failed at once for want of a connect permit ([`CallError::ConnectPaced`]).
    pub connects_paced: Cell<u64>,
    /// Timed-out calls' connections handed to a drain task.
    pub drains: Cell<u64>,
    /// Drained connections that read their late answer whole and went back to the pool.
    pub drains_reused: Cell<u64>,
    /// Drained connections closed: answer too late, malformed, too large, or `close`.
    pub drains_closed: Cell<u64>,
    /// Timed-out calls' connections closed because the draining set was full.
    pub drains_refused: Cell<u64>,
    /// Timed-out calls' connections closed because the stream was out of step (the request
    /// half written or the answer half read) or draining is off.
    pub timeout_closes: Cell<u64>,
    /// Reusable connections closed because the pool held its size target (or its ceiling)
    /// already ([`super::sizing`]).
    pub shrunk: Cell<u64>,
}

/// Labels of [`UpstreamStats::drain_counts`], in order (for metrics).
pub const DRAIN_RESULTS: [&str; 5] = ["started", "reused", "closed", "refused", "out_of_step"];

impl UpstreamStats {
    /// What became of timed-out calls' connections, in [`DRAIN_RESULTS`] order: handed to a
    /// drain, drained and reused, drained and closed, closed with the draining set full,
    /// closed out of step (or with draining off).
    pub fn drain_counts(&self) -> [u64; DRAIN_RESULTS.len()] {
        [
            self.drains.get(),
            self.drains_reused.get(),
            self.drains_closed.get(),
            self.drains_refused.get(),
            self.timeout_closes.get(),
        ]
    }
}

pub(crate) fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// One upstream (host:port) as seen by one worker: its pool and counters. `!Send`: build one
/// per worker, e.g. in the handler factory.
#[derive(Debug)]
pub struct Upstream {
    targets: Targets,
    host: Bytes,
    config: ClientConfig,
    /// TLS settings for an `https://` upstream; `None`: plain TCP.
    tls: Option<UpstreamTls>,
    idle: RefCell<Vec<Conn>>,
    in_flight: Cell<usize>,
    pacing: Pacing,
    sizer: PoolSizer,
    /// Connections draining now (see [`super::drain`]).
    pub(crate) draining: Cell<usize>,
    /// This upstream, for the drain tasks it spawns.
    pub(crate) me: Weak<Upstream>,
    /// Counters.
    pub stats: UpstreamStats,
}

/// A finished call: the response, still in its connection's buffers. Dropping it gives the
/// connection back to the pool (when the response left it reusable).
#[derive(Debug)]
pub struct Completed<'u> {
    upstream: &'u Upstream,
    conn: Option<Conn>,
    received: Received,
    reused: bool,
}

impl Completed<'_> {
    /// The response status.
    pub fn status(&self) -> http::StatusCode {
        self.received.status
    }

    /// The response body (de-chunked), borrowed from the connection.
    pub fn body(&self) -> &[u8] {
        self.conn
            .as_ref()
            .map_or(&[][..], |c| c.body(self.received.body))
    }

    /// Whether the call ran on a pooled connection.
    pub fn reused_connection(&self) -> bool {
        self.reused
    }
}

impl Drop for Completed<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.received.reusable {
                self.upstream.release(conn);
            }
        }
    }
}

struct InFlightGuard<'a>(&'a Cell<usize>);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Upstream {
    /// A pool for `addr`, sending `host` as the Host header.
    pub fn new(addr: SocketAddr, host: &str, config: ClientConfig) -> Rc<Self> {
        Self::with_tls(addr, host, config, None)
    }

    /// A pool for `addr` whose connections are TLS when `tls` is given (the handshake is part
    /// of opening a connection: paced, bounded by the connect timeout and the call's deadline,
    /// pre-warmed by [`Upstream::prewarm`]).
    pub fn with_tls(
        addr: SocketAddr,
        host: &str,
        config: ClientConfig,
        tls: Option<UpstreamTls>,
    ) -> Rc<Self> {
        Self::with_addrs(&[addr], host, config, tls)
    }

    /// A pool whose new connections go round robin to `addrs` (every address of the host;
    /// at least one), skipping for [`ClientConfig::addr_backoff`] an address whose connect
    /// failed while another is usable; TLS as in [`Upstream::with_tls`].
    pub fn with_addrs(
        addrs: &[SocketAddr],
        host: &str,
        config: ClientConfig,
        tls: Option<UpstreamTls>,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| Self {
            targets: Targets::new(addrs, config.addr_backoff),
            host: Bytes::copy_from_slice(host.as_bytes()),
            config,
            tls,
            idle: RefCell::new(Vec::new()),
            in_flight: Cell::new(0),
            pacing: Pacing::new(
                config.connects_per_s,
                config.connects_burst,
                config.connects_in_flight_max,
            ),
            sizer: PoolSizer::new(
                config.connections_min,
                config.idle_connections_max,
                config.pool_peak_half_life,
            ),
            draining: Cell::new(0),
            me: me.clone(),
            stats: UpstreamStats::default(),
        })
    }

    /// The pool's limits.
    pub fn config(&self) -> ClientConfig {
        self.config
    }

    /// Connections draining now.
    pub fn draining_count(&self) -> usize {
        self.draining.get()
    }

    /// Connects in flight now.
    pub fn connects_in_flight(&self) -> usize {
        self.pacing.in_flight()
    }

    /// The upstream's first address.
    pub fn addr(&self) -> SocketAddr {
        self.targets.first()
    }

    /// Every address new connections go to, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.targets.all()
    }

    /// Addresses not backing off after a failed connect, at `now`.
    pub fn usable_addr_count(&self, now: Instant) -> usize {
        self.targets.usable_count(now)
    }

    /// Whether `addr` is one of the upstream's addresses.
    pub(crate) fn has_addr(&self, addr: SocketAddr) -> bool {
        self.targets.contains(addr)
    }

    /// Points the pool at newly resolved addresses (from an off-worker resolve; an empty list
    /// is ignored). Idle connections to an address that left are closed; in-flight calls
    /// finish on theirs; addresses that stay keep their connections and back-off.
    pub fn set_addrs(&self, addrs: &[SocketAddr]) {
        if self.targets.set(addrs) {
            (self.idle.borrow_mut())
                .retain(|c| c.stream.peer_addr().is_ok_and(|p| self.targets.contains(p)));
        }
    }

    /// Points the pool at one newly resolved address (see [`Upstream::set_addrs`]).
    pub fn set_addr(&self, addr: SocketAddr) {
        self.set_addrs(&[addr]);
    }

    /// Idle pooled connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Connections open now: idle, lent to a call, or draining a late answer.
    pub fn open_count(&self) -> usize {
        self.idle_count() + self.in_flight() + self.draining_count()
    }

    /// Connections (busy and idle) the pool holds at most now, from its measured traffic (see
    /// [`super::sizing`]); more are closed when released.
    pub fn target_connections(&self) -> usize {
        self.sizer.target()
    }

    /// Mean calls in flight over the last sizing window (Little's law: rate times duration).
    pub fn mean_in_flight(&self) -> f64 {
        self.sizer.concurrency()
    }

    /// Records a call that started at `started` and ended at `ended` with `error` (if any):
    /// counts a timeout or failure in the stats, and tells the sizer; when that closes a sizing
    /// window, idle connections beyond the new target are closed, oldest first.
    pub(crate) fn call_ended(&self, error: Option<CallError>, started: Instant, ended: Instant) {
        match error {
            None => {}
            Some(CallError::Timeout) => bump(&self.stats.timeouts),
            Some(_) => bump(&self.stats.failures),
        }
        if self.sizer.call_ended(started, ended, self.in_flight()) {
            let keep = self.sizer.target().saturating_sub(self.in_flight());
            let mut idle = self.idle.borrow_mut();
            let excess = idle.len().saturating_sub(keep);
            idle.drain(..excess);
            self.stats
                .shrunk
                .set(self.stats.shrunk.get() + excess as u64);
        }
    }

    /// Opens connections until `n` are idle (capped at `idle_connections_max`), round robin
    /// across the addresses; a failed address is skipped while another is usable. It stops at
    /// a spent connect budget, at a failure with no usable address left, or after as many
    /// failed connects as there are addresses (a back-off shorter than a connect timeout
    /// would otherwise let it try forever). Returns how many are idle afterwards.
    pub async fn prewarm(&self, n: usize) -> usize {
        let target = n.min(self.config.idle_connections_max);
        let mut failures_left = self.targets.len();
        while self.idle_count() < target {
            let deadline = MonoInstant::now() + self.config.connect_timeout;
            match self.connect(deadline).await {
                Ok(conn) => self.idle.borrow_mut().push(conn),
                Err(CallError::ConnectError | CallError::Tls)
                    if failures_left > 1 && self.targets.usable_count(Instant::now()) > 0 =>
                {
                    failures_left -= 1;
                }
                Err(_) => break,
            }
        }
        self.idle_count()
    }

    /// Closes every idle connection (e.g. when the upstream is removed or re-resolved).
    pub fn clear_idle(&self) {
        self.idle.borrow_mut().clear();
    }

    /// Opens a connection if the connect budget allows, else fails with `ConnectPaced`. A
    /// failed connect (nothing was sent) is tried once more on each other usable address, by
    /// the same deadline and under the same permit, so a refusing address costs the call a
    /// refused connect, not the call.
    async fn connect(&self, deadline: MonoInstant) -> Result<Conn, CallError> {
        let Some(_permit) = self.pacing.try_acquire(Instant::now()) else {
            bump(&self.stats.connects_paced);
            return Err(CallError::ConnectPaced);
        };
        let mut tries_left = self.targets.len();
        loop {
            tries_left -= 1;
            match self.connect_unpaced(deadline).await {
                Err(CallError::ConnectError | CallError::Tls)
                    if tries_left > 0 && self.targets.usable_count(Instant::now()) > 0 => {}
                opened => return opened,
            }
        }
    }

    /// Opens a connection to the next address in turn; a failed connect (or handshake) puts
    /// the address in back-off, a good one takes it out. A connect cut short by the call's
    /// own deadline says nothing of the address and leaves it alone.
    async fn connect_unpaced(&self, deadline: MonoInstant) -> Result<Conn, CallError> {
        let addr = self.targets.pick(Instant::now());
        let opened = self.connect_to(addr, deadline).await;
        match &opened {
            Ok(_) => self.targets.succeeded(addr),
            Err(CallError::Timeout) => {}
            Err(_) => {
                bump(&self.stats.connect_failures);
                self.targets.failed(addr, Instant::now());
            }
        }
        opened
    }

    async fn connect_to(&self, addr: SocketAddr, deadline: MonoInstant) -> Result<Conn, CallError> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(|_| CallError::ConnectError)?;
        socket
            .set_nonblocking(true)
            .map_err(|_| CallError::ConnectError)?;
        socket
            .set_tcp_nodelay(true)
            .map_err(|_| CallError::ConnectError)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return Err(CallError::ConnectError),
        }
        let std_stream: std::net::TcpStream = socket.into();
        let stream = TcpStream::from_std(std_stream).map_err(|_| CallError::ConnectError)?;
        let connect_deadline = deadline.min(MonoInstant::now() + self.config.connect_timeout);
        match timeout_at(connect_deadline, stream.writable(false)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(CallError::ConnectError),
            Err(_elapsed) => {
                return Err(if connect_deadline < deadline {
                    CallError::ConnectError
                } else {
                    CallError::Timeout
                })
            }
        }
        // Writable with no peer means the connect failed (refused, unreachable).
        let peer = stream.peer_addr().map_err(|_| CallError::ConnectError)?;
        let stream = match &self.tls {
            None => NetStream::Plain(stream),
            Some(tls) => {
                self.handshake(tls, stream, peer, connect_deadline, deadline)
                    .await?
            }
        };
        bump(&self.stats.connects);
        Ok(Conn::new(stream))
    }

    /// The TLS handshake on a fresh connection, by the same deadlines as the connect: a
    /// refused certificate or a peer that is not TLS is [`CallError::Tls`].
    async fn handshake(
        &self,
        tls: &UpstreamTls,
        stream: TcpStream,
        peer: SocketAddr,
        connect_deadline: MonoInstant,
        deadline: MonoInstant,
    ) -> Result<NetStream, CallError> {
        let handshake = tls.connector.0.connect(tls.server_name.clone(), stream);
        match timeout_at(connect_deadline, handshake).await {
            Ok(Ok(tls_stream)) => Ok(NetStream::TlsClient(
                Box::new(tls_stream),
                peer,
                Default::default(),
            )),
            Ok(Err(error)) => {
                bump(&self.stats.tls_failures);
                tracing::debug!(%error, "TLS handshake failed");
                Err(CallError::Tls)
            }
            Err(_elapsed) if connect_deadline < deadline => Err(CallError::ConnectError),
            Err(_elapsed) => Err(CallError::Timeout),
        }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Sends `req` and reads the response into an owned [`ClientResponse`], returning by
    /// `deadline` (plus timer granularity, [`crate::driver::TIMER_GRANULARITY`]) whatever the
    /// upstream does. Copies the body out: for the hot path, see [`crate::fan_out`].
    pub async fn call(
        &self,
        req: &ClientRequest,
        deadline: Instant,
    ) -> Result<ClientResponse, CallError> {
        let done = self.call_parts(req.parts(), deadline).await?;
        Ok(ClientResponse {
            status: done.status(),
            body: Bytes::copy_from_slice(done.body()),
            reused_connection: done.reused_connection(),
        })
    }

    /// Sends `req` and reads the response, returning by `deadline` (plus timer granularity)
    /// whatever the upstream does; the response stays in the connection's buffers until the
    /// returned [`Completed`] is dropped, so nothing is copied or allocated.
    pub async fn call_parts(
        &self,
        req: RequestParts<'_>,
        deadline: Instant,
    ) -> Result<Completed<'_>, CallError> {
        let started = Instant::now();
        let deadline = MonoInstant::from_std(deadline);
        let result = match timeout_at(deadline, self.exchange_parts(req, deadline)).await {
            Ok(r) => r,
            Err(_elapsed) => Err(CallError::Timeout),
        };
        self.call_ended(result.as_ref().err().copied(), started, Instant::now());
        result
    }

    /// One call without a deadline of its own (the caller bounds it, e.g. the fan-out's one
    /// timer); the response stays in the connection until the returned [`Completed`] drops.
    pub(crate) async fn exchange_parts(
        &self,
        req: RequestParts<'_>,
        deadline: MonoInstant,
    ) -> Result<Completed<'_>, CallError> {
        if self.in_flight.get() >= self.config.in_flight_max {
            return Err(CallError::Overloaded);
        }
        self.in_flight.set(self.in_flight.get() + 1);
        self.sizer.call_started(self.in_flight.get());
        let _guard = InFlightGuard(&self.in_flight);
        let mut pooled = self.idle.borrow_mut().pop();
        // One `exchange` await for both paths (a pooled connection, then at most one fresh
        // one), so the future holds one exchange's state, not two side by side.
        loop {
            let reused = pooled.is_some();
            let conn = match pooled.take() {
                Some(conn) => {
                    bump(&self.stats.reuses);
                    conn
                }
                // Boxed: opening a connection (a TLS handshake's state included) was 3.5 of
                // this future's 4 KB, on the rare path. Inline, every call carried it, four
                // calls inline in each fan-out (so in each connection's boxed handler future),
                // and the fan-out moved it for each call.
                None => Box::pin(self.connect(deadline)).await?,
            };
            let mut lent = Lent::new(self, conn);
            let result = exchange(lent.conn(), &req, &self.host, &self.config, reused).await;
            let conn = lent.take();
            match result {
                Ok(received) => return Ok(self.completed(conn, received, reused)),
                // The upstream closed an idle pooled connection before reading the request:
                // safe to retry once on a fresh one.
                Err(ExchangeError::StaleConnection) if reused => {}
                Err(ExchangeError::StaleConnection) => return Err(CallError::Closed),
                Err(ExchangeError::Failed(e)) => return Err(e),
            }
        }
    }

    fn completed(&self, conn: Conn, received: Received, reused: bool) -> Completed<'_> {
        Completed {
            upstream: self,
            conn: Some(conn),
            received,
            reused,
        }
    }

    /// Takes back a connection whose call left it reusable: kept idle while the pool holds
    /// fewer than its target (or this window's peak of calls in flight) and its ceiling, else
    /// closed.
    pub(crate) fn release(&self, mut conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        let held = idle.len() + self.in_flight.get();
        if idle.len() < self.config.idle_connections_max && held < self.sizer.keep_limit() {
            conn.rbuf.clear();
            idle.push(conn);
        } else {
            bump(&self.stats.shrunk);
        }
    }
}
