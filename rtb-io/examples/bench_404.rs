//! Serves a fixed 404 after reading the whole request body, to compare the server's overhead
//! with nginx under wrk.
//!
//! Usage: `cargo run --release -p rtb-io --example bench_404 -- [port] [workers] [auto|uring|epoll]`
//! (defaults 8080, all cores, auto). Stops on SIGINT/SIGTERM and prints the counters.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::StatusCode;
use rtb_io::{DriverKind, Handler, Request, Response, Server, ServerConfig, WorkerCtx};

const PORT_DEFAULT: u16 = 8080;
const NOT_FOUND_BODY: &[u8] = b"{\"error\":\"not found\"}";

#[derive(Debug)]
struct NotFound {
    body: Bytes,
}

impl Handler for NotFound {
    async fn handle(&self, _req: Request, _ctx: &WorkerCtx) -> Response {
        Response::json(StatusCode::NOT_FOUND, self.body.clone())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        Some(p) => p.parse().map_err(|e| format!("bad port {p:?}: {e}"))?,
        None => PORT_DEFAULT,
    };
    let mut config = ServerConfig::new(SocketAddr::from(([0, 0, 0, 0], port)));
    if let Some(w) = args.next() {
        config.workers = w.parse().map_err(|e| format!("bad workers {w:?}: {e}"))?;
    }
    if let Some(d) = args.next() {
        config.driver = d
            .parse::<DriverKind>()
            .map_err(|e| format!("bad driver {d:?}: {e}"))?;
    }
    config.shutdown_grace = Duration::from_secs(5);
    let server = Server::start(config, |_ctx: &WorkerCtx| NotFound {
        body: Bytes::from_static(NOT_FOUND_BODY),
    })?;
    for w in server.workers() {
        println!("worker {} core {:?} driver {}", w.index, w.core, w.driver);
    }
    println!("listening on {}", server.local_addr());
    let shutdown = server.shutdown_handle();
    shutdown.trigger_on_signals()?;
    while !shutdown.is_triggered() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = server.stats();
    server.join()?;
    println!("{stats:#?}");
    Ok(())
}
