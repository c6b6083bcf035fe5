//! Owns the worker threads: one per core, each pinned, each with its own monoio runtime and its
//! own `SO_REUSEPORT` listener, so the kernel spreads connections and no state is shared on the
//! request path. Also owns graceful shutdown of the workers.

use std::{
    io,
    net::SocketAddr,
    rc::Rc,
    sync::{mpsc, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use monoio::{
    io::Canceller,
    net::{TcpListener, TcpStream},
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    conn::{serve_conn, ConnShared},
    driver::{build_runtime, ActiveDriver, DriverKind, URING_ENTRIES_DEFAULT},
    http::{Handler, WorkerCtx, WorkerInfo},
    limits::{ServerLimits, ServerStats, WorkerStats},
    shutdown::{ShutdownHandle, SHUTDOWN_POLL_PERIOD},
    stream::NetStream,
    turn_budget::{spawn_turn_marker, TurnBudget},
};

/// Listen backlog per worker socket.
pub const BACKLOG_DEFAULT: i32 = 4096;
/// How long workers wait for in-flight requests at shutdown before dropping them.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(30);
/// How long [`Server::start`] waits for every worker to build its runtime.
pub const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error such as EMFILE, so a full fd table does not spin the core.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind, IPv4 or IPv6. Port 0 picks one free port shared by all workers.
    pub addr: SocketAddr,
    /// Worker threads; default `available_parallelism`.
    pub workers: usize,
    /// Pin worker `i` to core `i` (modulo the core count).
    pub pin_cores: bool,
    /// IO driver preference.
    pub driver: DriverKind,
    /// Listen backlog per worker socket.
    pub backlog: i32,
    /// io_uring submission queue entries per worker.
    pub uring_entries: u32,
    /// Per-connection limits.
    pub limits: ServerLimits,
    /// Wait for in-flight requests at shutdown before giving up on them.
    pub shutdown_grace: Duration,
    /// TLS on every accepted connection (`None`: plain HTTP). The handshake is bounded by
    /// the header read timeout.
    pub tls: Option<crate::tls::ServerTls>,
    /// Worker threads are named `{thread_name}-{index}` (at most 15 bytes show in `top`/`perf`),
    /// so two servers in one process can be told apart.
    pub thread_name: &'static str,
}

impl ServerConfig {
    /// Defaults for everything but the address.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_cores: true,
            driver: DriverKind::Auto,
            backlog: BACKLOG_DEFAULT,
            uring_entries: URING_ENTRIES_DEFAULT,
            limits: ServerLimits::default(),
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            tls: None,
            thread_name: "rtb-worker",
        }
    }
}

/// Running workers. Dropping it triggers shutdown and waits for the workers.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    workers: Vec<WorkerInfo>,
    stats: Vec<Arc<WorkerStats>>,
    shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
}

/// Binds one `SO_REUSEPORT` listener.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

impl Server {
    /// Binds the listeners, starts the workers and returns once all of them serve. `factory`
    /// runs once on each worker thread, inside its runtime (so it may `monoio::spawn`).
    pub fn start<H, F>(config: ServerConfig, factory: F) -> io::Result<Server>
    where
        H: Handler,
        F: Fn(&WorkerCtx) -> H + Send + Sync + 'static,
    {
        let workers = config.workers.max(1);
        let (local_addr, listeners) = bind_listeners(config.addr, config.backlog, workers)?;
        if config.limits.kernel_arrival {
            listeners.iter().try_for_each(crate::kernel_stamp::enable)?;
        }
        let cores = if config.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let factory = Arc::new(factory);
        let shutdown = ShutdownHandle::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut server = Server {
            local_addr,
            workers: Vec::new(),
            stats: Vec::with_capacity(workers),
            shutdown,
            threads: Vec::with_capacity(workers),
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let stats = Arc::new(WorkerStats::default());
            server.stats.push(stats.clone());
            let worker = Worker {
                index,
                core: (!cores.is_empty()).then(|| cores[index % cores.len()]),
                listener,
                shutdown: server.shutdown.clone(),
                stats,
                config: config.clone(),
                ready: ready_tx.clone(),
            };
            // On error, dropping `server` triggers shutdown and joins the workers started.
            server.threads.push(worker.spawn(factory.clone())?);
        }
        drop(ready_tx);
        server.workers = wait_until_ready(&ready_rx, workers)?;
        Ok(server)
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Workers with their core and driver, by index.
    pub fn workers(&self) -> &[WorkerInfo] {
        &self.workers
    }

    /// A handle that stops the server; hand it to the signal handler.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Counters summed over workers.
    pub fn stats(&self) -> ServerStats {
        ServerStats::sum(self.stats.iter().map(|s| &**s))
    }

    /// Waits until every worker has exited (after a shutdown trigger).
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                result = Err(io::Error::other("worker panicked"));
            }
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown.trigger();
            let _ = self.join_threads();
        }
    }
}

/// One listener per worker on the same address (`SO_REUSEPORT`); port 0 is resolved by the first.
fn bind_listeners(
    addr: SocketAddr,
    backlog: i32,
    workers: usize,
) -> io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let first = bind_reuseport(addr, backlog)?;
    let local_addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind_reuseport(local_addr, backlog)?);
    }
    Ok((local_addr, listeners))
}

/// Every worker's info, by index, once all have built their runtime and bound their listener.
fn wait_until_ready(
    ready: &mpsc::Receiver<io::Result<WorkerInfo>>,
    workers: usize,
) -> io::Result<Vec<WorkerInfo>> {
    let mut infos = Vec::with_capacity(workers);
    for _ in 0..workers {
        match ready.recv_timeout(WORKER_START_TIMEOUT) {
            Ok(Ok(info)) => infos.push(info),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::Error::other("worker did not start")),
        }
    }
    infos.sort_by_key(|i| i.index);
    Ok(infos)
}

/// What one worker thread starts with.
struct Worker {
    index: usize,
    core: Option<core_affinity::CoreId>,
    listener: std::net::TcpListener,
    shutdown: ShutdownHandle,
    stats: Arc<WorkerStats>,
    config: ServerConfig,
    ready: mpsc::Sender<io::Result<WorkerInfo>>,
}

impl Worker {
    /// Starts the thread: pin, build the runtime, serve until shutdown.
    fn spawn<H, F>(self, factory: Arc<F>) -> io::Result<JoinHandle<()>>
    where
        H: Handler,
        F: Fn(&WorkerCtx) -> H + Send + Sync + 'static,
    {
        std::thread::Builder::new()
            .name(format!("{}-{}", self.config.thread_name, self.index))
            .spawn(move || self.run(&*factory))
    }

    fn run<H, F>(self, factory: &F)
    where
        H: Handler,
        F: Fn(&WorkerCtx) -> H,
    {
        let pinned = self
            .core
            .filter(|c| core_affinity::set_for_current(*c))
            .map(|c| c.id);
        let (mut rt, driver) = match build_runtime(self.config.driver, self.config.uring_entries) {
            Ok(built) => built,
            Err(e) => {
                let _ = self.ready.send(Err(e));
                return;
            }
        };
        let index = self.index;
        let info = WorkerInfo {
            index,
            core: pinned,
            driver,
        };
        tracing::info!(worker = index, core = ?pinned, driver = %driver, "worker started");
        rt.block_on(worker_main(info, self, factory));
        tracing::info!(worker = index, "worker stopped");
    }
}

async fn worker_main<H, F>(info: WorkerInfo, worker: Worker, factory: &F)
where
    H: Handler,
    F: Fn(&WorkerCtx) -> H,
{
    let Worker {
        listener,
        shutdown,
        stats,
        config,
        ready,
        ..
    } = worker;
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let ctx = Rc::new(WorkerCtx {
        info,
        shutdown: shutdown.clone(),
        stats: stats.clone(),
    });
    let handler = Rc::new(factory(&ctx));
    let canceller = Canceller::new();
    let (drain_tx, drain_rx) = futures_channel::oneshot::channel();
    let turn_budget = Rc::new(TurnBudget::new(config.limits.turn_budget, Instant::now()));
    turn_budget.set_order(config.limits.turn_queue_order);
    spawn_turn_marker(turn_budget.clone(), shutdown.clone());
    let shared = Rc::new(ConnShared::new(
        config.limits,
        stats.clone(),
        canceller.handle(),
        futures_util::FutureExt::shared(drain_rx),
        config.tls.clone(),
        turn_budget,
    ));
    spawn_drain_on_shutdown(shutdown, shared.clone(), canceller, drain_tx);
    let _ = ready.send(Ok(info));
    // Several accepts at once on io_uring (each its own SQE). monoio's epoll driver keeps one
    // waker per socket and direction, so a second accept there could miss its wake-up.
    let accepts = match ctx.info.driver {
        ActiveDriver::Epoll => 1,
        _ => config.limits.accepts_in_flight.max(1),
    };
    let loops = (0..accepts).map(|_| accept_until_draining(&listener, &handler, &ctx, &shared));
    futures_util::future::join_all(loops).await;
    drop(listener);
    wait_for_connections(info.index, &stats, config.shutdown_grace).await;
}

/// At shutdown: mark the worker draining, then wake the pending accept and every idle
/// keep-alive read with ECANCELED (an op that already completed keeps its result, so no
/// accepted connection is lost).
fn spawn_drain_on_shutdown(
    shutdown: ShutdownHandle,
    shared: Rc<ConnShared>,
    canceller: Canceller,
    drain_signal: futures_channel::oneshot::Sender<()>,
) {
    monoio::spawn(async move {
        shutdown.triggered().await;
        shared.draining.set(true);
        drop(canceller.cancel());
        let _ = drain_signal.send(());
    });
}

/// Accepts connections, each served by its own task, until the worker drains (several of
/// these loops share the listener: see [`ServerLimits::accepts_in_flight`]).
async fn accept_until_draining<H: Handler>(
    listener: &TcpListener,
    handler: &Rc<H>,
    ctx: &Rc<WorkerCtx>,
    shared: &Rc<ConnShared>,
) {
    let stats = &shared.stats;
    let connections_max = shared.limits.connections_per_worker_max as u64;
    loop {
        match listener.cancelable_accept(shared.idle_cancel.clone()).await {
            Ok((stream, _peer)) => {
                stats.connections_accepted.incr();
                if stats.connections_open.get() >= connections_max {
                    stats.connections_rejected_over_limit.incr();
                    continue;
                }
                let _ = stream.set_nodelay(true);
                stats.connections_open.incr();
                let (handler, ctx, shared) = (handler.clone(), ctx.clone(), shared.clone());
                monoio::spawn(async move {
                    let stats = shared.stats.clone();
                    if let Some(stream) = secure(stream, &shared).await {
                        serve_conn(stream, handler, ctx, shared).await;
                    }
                    stats.connections_open.decr();
                });
            }
            Err(_) if shared.draining.get() => break,
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// The accepted connection as the server speaks it: plain, or TLS after a handshake bounded
/// by the header read timeout (`None`: the handshake failed or took too long; counted).
async fn secure(stream: TcpStream, shared: &ConnShared) -> Option<NetStream> {
    let Some(tls) = &shared.tls else {
        return Some(NetStream::Plain(stream));
    };
    let peer = stream.peer_addr().ok()?;
    let deadline = monoio::time::Instant::now() + shared.limits.header_read_timeout;
    match monoio::time::timeout_at(deadline, tls.0.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(NetStream::TlsServer(
            Box::new(tls_stream),
            peer,
            Default::default(),
        )),
        Ok(Err(error)) => {
            shared.stats.tls_handshakes_failed.incr();
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_elapsed) => {
            shared.stats.tls_handshakes_failed.incr();
            None
        }
    }
}

/// Lets open connections finish for up to `grace`, then gives up on them.
async fn wait_for_connections(worker: usize, stats: &WorkerStats, grace: Duration) {
    let grace_end = monoio::time::Instant::now() + grace;
    while stats.connections_open.get() > 0 && monoio::time::Instant::now() < grace_end {
        monoio::time::sleep(SHUTDOWN_POLL_PERIOD).await;
    }
    if stats.connections_open.get() > 0 {
        tracing::warn!(
            worker,
            open = stats.connections_open.get(),
            "shutdown grace elapsed, dropping connections"
        );
    }
}
