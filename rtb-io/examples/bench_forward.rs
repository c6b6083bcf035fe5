//! The floor under the exchange's DSP path: a bare fan-out forwarder. It reads each request,
//! writes its body unchanged to every upstream at once over rtb-io's per-worker keep-alive
//! pools (the fan-out the exchange uses), reads their answers, and answers a fixed body. No
//! JSON, no auction, no metrics: what is left is the IO the exchange cannot avoid, so the
//! exchange's throughput over this one's (same DSPs, same load) says what its own work costs.
//!
//! Usage: `bench_forward PORT WORKERS DRIVER UPSTREAM...` with each upstream `host:port/path`
//! (e.g. `127.0.0.1:5001/bid`). Stops on SIGINT/SIGTERM.

use std::{net::SocketAddr, rc::Rc, time::Duration, time::Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use rtb_io::{
    client::OPENRTB_JSON_HEADERS, fan_out, ClientConfig, DriverKind, FanOutCall, Handler, Request,
    RequestParts, Response, Server, ServerConfig, Upstream, WorkerCtx,
};
use smallvec::SmallVec;

/// How long the forwarder waits for the upstreams (the exchange's default cap).
const DEADLINE: Duration = Duration::from_millis(80);
const ANSWER: &[u8] = b"{\"id\":\"forwarded\",\"seatbid\":[]}";

#[derive(Debug)]
struct Forwarder {
    upstreams: Vec<(Rc<Upstream>, String)>,
}

impl Handler for Forwarder {
    async fn handle(&self, req: Request, _ctx: &WorkerCtx) -> Response {
        let calls: SmallVec<[FanOutCall<'_>; 8]> = self
            .upstreams
            .iter()
            .map(|(upstream, path)| FanOutCall {
                upstream,
                request: RequestParts {
                    method: &Method::POST,
                    path,
                    header_lines: OPENRTB_JSON_HEADERS,
                    body: &req.body,
                },
            })
            .collect();
        let mut answered = 0usize;
        fan_out(&calls, req.arrival + DEADLINE, |_, result, _| {
            answered += usize::from(result.is_ok());
        })
        .await;
        if answered == 0 {
            return Response::new(StatusCode::NO_CONTENT);
        }
        Response::json(StatusCode::OK, Bytes::from_static(ANSWER))
    }
}

fn parse_upstream(spec: &str) -> Result<(SocketAddr, String, String), String> {
    let (authority, path) = spec.split_once('/').unwrap_or((spec, "bid"));
    let addr = authority
        .parse()
        .map_err(|e| format!("bad upstream {spec:?}: {e}"))?;
    Ok((addr, authority.to_string(), format!("/{path}")))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, workers, driver, upstreams @ ..] = args.as_slice() else {
        return Err("usage: bench_forward PORT WORKERS DRIVER UPSTREAM...".into());
    };
    let mut config = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], port.parse()?)));
    config.workers = workers.parse()?;
    config.driver = driver.parse::<DriverKind>().map_err(|e| e.to_string())?;
    config.shutdown_grace = Duration::from_secs(5);
    let targets = upstreams
        .iter()
        .map(|u| parse_upstream(u))
        .collect::<Result<Vec<_>, _>>()?;
    let server = Server::start(config, move |_ctx: &WorkerCtx| Forwarder {
        upstreams: targets
            .iter()
            .map(|(addr, host, path)| {
                let pool = Upstream::new(*addr, host, ClientConfig::default());
                (pool, path.clone())
            })
            .collect(),
    })?;
    println!("listening on {}", server.local_addr());
    let shutdown = server.shutdown_handle();
    shutdown.trigger_on_signals()?;
    let started = Instant::now();
    while !shutdown.is_triggered() {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.join()?;
    println!("served for {:?}", started.elapsed());
    Ok(())
}
