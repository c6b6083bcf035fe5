//! Owns the base of every fake peer: a std listener on a free loopback port that runs a
//! handler on its own thread for each accepted connection, counts connections, and stops on
//! drop (new connections are refused; handlers see [`Stop::is_set`] and should return).
//! Also the two socket tricks fakes need: holding a connection silently and closing with RST.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

/// The stop flag a handler polls while it holds a connection.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Whether the server was dropped.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sleeps until the server is dropped or `max` passes, in 10 ms steps.
    pub fn hold(&self, max: Duration) {
        let give_up = Instant::now() + max;
        while !self.is_set() && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What a handler learns about its connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The server's own address (for URLs that point back at it).
    pub server: SocketAddr,
    /// 0 for the first connection accepted, then 1, 2, ...
    pub index: usize,
    /// Set when the server is dropped.
    pub stop: Stop,
}

/// A loopback server with one thread per connection.
#[derive(Debug)]
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Stop,
}

impl FakeServer {
    /// Listens on a free loopback port and runs `handler` for each connection.
    pub fn start<H>(handler: H) -> FakeServer
    where
        H: Fn(TcpStream, Conn) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Stop::default();
        let (count, flag, handler) = (accepted.clone(), stop.clone(), Arc::new(handler));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.is_set() {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let index = count.fetch_add(1, Ordering::SeqCst);
                let ctx = Conn {
                    server: addr,
                    index,
                    stop: flag.clone(),
                };
                let handler = handler.clone();
                thread::spawn(move || handler(conn, ctx));
            }
        });
        FakeServer {
            addr,
            accepted,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A handle on the accepted-connection count that outlives a borrow of the server.
    pub fn accepted_counter(&self) -> Arc<AtomicUsize> {
        self.accepted.clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.0.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

/// Closes `conn` with RST instead of FIN (SO_LINGER 0).
pub fn reset(conn: TcpStream) {
    socket2::SockRef::from(&conn)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(conn);
}
