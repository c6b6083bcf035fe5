//! A complete OpenRTB exchange on tokio and hyper that drives rtb-core's [`Engine`], as
//! rtb-exchange does on monoio: proof that rtb-core needs no particular runtime.
//! `POST /dsp` onboards a DSP (rtb-exchange's JSON body and URL rules, IP addresses only);
//! `POST /openrtb2/auction` runs an auction. Usage: `tokio_exchange [ADDR]` (port 0 picks one).
//!
//! One worker: a current-thread runtime with a `LocalSet`. An engine belongs to one worker (it
//! holds the worker's DSP table and circuit breakers, and is not `Sync`); it is touched only
//! between awaits, so a `RefCell` replaces any lock. Each auction borrows a [`Workspace`] of its
//! own across its awaits, so the worker runs many at once. More cores: one such worker per
//! thread, each with its own engine, as rtb-exchange does. Left out (rtb-exchange has them):
//! host names, load measurement, an onboarding token, metrics, read timeouts, graceful shutdown.
#![allow(clippy::disallowed_methods)] // The shell reads the clock; rtb-core's library never does.

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{body::Bytes, body::Incoming, header::HeaderValue, header::CONTENT_TYPE};
use hyper::{server::conn::http1, service::service_fn, Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rtb_core::engine::CallFailure::{self, Closed, Connect, Protocol, Timeout, TooLarge};
use rtb_core::engine::{Answer, DspSpec, Engine, EngineConfig, Start, WorkerLoad, Workspace};
use rtb_core::registry::{BidUrl, NoticeUrl, Registry, RegistryError, Upsert, DEFAULT_DSPS_MAX};
use rtb_core::version::{OpenRtbVersion, OPENRTB_VERSION_HEADER};
use serde_json::{json, Value};
use std::{cell::RefCell, convert::Infallible, net::IpAddr, rc::Rc, time::Duration, time::Instant};
use tokio::{net::TcpListener, task::JoinSet, task::LocalSet, time::timeout, time::timeout_at};

const ALLOW_LOOPBACK: bool = true; // this example runs on one machine (rtb-exchange has a flag)
const BODY_BYTES_MAX: usize = 64 * 1024; // the largest bid request, and DSP answer, read
const NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

type Resp = Response<Full<Bytes>>;
type Pools = Client<HttpConnector, Full<Bytes>>;
type DspResult = Result<(u16, Bytes), CallFailure>;

/// The worker's state. Its engine's DSP endpoints are their bid URLs.
struct Exchange {
    engine: RefCell<Engine>,
    registry: RefCell<Registry>,
    workspaces: RefCell<Vec<Workspace>>,
    client: Pools, // keep-alive connection pools to the DSPs
}

impl Exchange {
    /// `POST /openrtb2/auction`, in a workspace left by an earlier auction if there is one.
    async fn auction(&self, body: &[u8], version: Option<&[u8]>, arrival: Instant) -> Resp {
        let idle = self.workspaces.borrow_mut().pop();
        let mut workspace = idle.unwrap_or_else(|| self.engine.borrow().workspace());
        let response = self
            .run_auction(&mut workspace, body, version, arrival)
            .await;
        self.workspaces.borrow_mut().push(workspace);
        response
    }

    /// The engine decides (the OpenRTB version too: `version` is the raw header), this shell
    /// moves the bytes.
    async fn run_auction(
        &self,
        ws: &mut Workspace,
        body: &[u8],
        version: Option<&[u8]>,
        arrival: Instant,
    ) -> Resp {
        // No load measured here; rtb-exchange passes its event-loop lag and auctions in flight.
        let (now, load) = (Instant::now(), WorkerLoad::default());
        let start = self
            .engine
            .borrow_mut()
            .start(ws, body, version, arrival, now, load);
        let (mut run, plan) = match start {
            Start::Call(run, plan) => (run, plan),
            Start::Invalid { body, .. } => return reply(StatusCode::BAD_REQUEST, body.to_vec()),
            Start::NoDsp => return error(StatusCode::NOT_FOUND, "no DSP registered"),
            Start::Shed { .. } => return reply(StatusCode::NO_CONTENT, ""),
        };
        // Every DSP at once, each call bounded by the plan's deadline.
        let deadline = plan.deadline.into();
        let mut calls = JoinSet::new();
        for (index, call) in plan.calls.iter().enumerate() {
            let engine = self.engine.borrow(); // as everywhere, never held across an await
            let dsp = engine.dsps().get(call.dsp.into());
            let url = dsp.map_or(String::new(), |dsp| dsp.spec.endpoint.to_string());
            let payload = Bytes::copy_from_slice(plan.body_of(call)); // its tmax may be its own
            let call = call_dsp(self.client.clone(), url, payload, plan.version);
            calls.spawn(async move {
                let result = timeout_at(deadline, call).await.unwrap_or(Err(Timeout));
                (index, result, Instant::now())
            });
        }
        // Each result goes to the run as it arrives (the engine decodes it at once).
        while let Some(Ok((call, result, at))) = calls.join_next().await {
            let mut engine = self.engine.borrow_mut();
            match result {
                Ok((status, body)) => run.on_answer(&mut engine, call, status, &body, at),
                Err(failure) => run.on_failure(&mut engine, call, failure, at),
            }
        }
        let finished = run.finish(&mut self.engine.borrow_mut(), Instant::now());
        // Win and loss notices go off the auction's path; only to IP literals that pass the
        // address rules, so a DSP cannot make the exchange resolve and call any host it names.
        for (_, url) in finished.notices().iter() {
            let url = std::str::from_utf8(url).unwrap_or_default();
            let notice = NoticeUrl::parse(url, ALLOW_LOOPBACK);
            let ip = notice.is_ok_and(|n| n.host.parse::<IpAddr>().is_ok());
            if let (true, Ok(url)) = (ip, url.parse::<Uri>()) {
                tokio::spawn(timeout(NOTICE_TIMEOUT, self.client.get(url)));
            }
        }
        let Answer::Bid(body) = finished.answer() else {
            return reply(StatusCode::NO_CONTENT, "");
        };
        let mut ok = reply(StatusCode::OK, body.to_vec());
        let version = HeaderValue::from_static(finished.version().as_str());
        ok.headers_mut().insert(OPENRTB_VERSION_HEADER, version);
        ok
    }

    /// `POST /dsp`: 201 added, 200 refreshed or replaced, 400 invalid, 409 registry full.
    #[allow(clippy::result_large_err)] // both sides are answers, built once per onboarding
    fn onboard(&self, body: &[u8]) -> Result<Resp, Resp> {
        let bad = |message: String| error(StatusCode::BAD_REQUEST, &message);
        let dsp: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        let (Value::String(name), Value::String(base)) = (&dsp["name"], &dsp["base_url"]) else {
            return Err(bad("name and base_url must be strings".into()));
        };
        let url = BidUrl::parse(base, dsp["bid_path"].as_str(), ALLOW_LOOPBACK);
        let url = url.map_err(|e| bad(format!("base_url: {e}")))?;
        if url.host.parse::<IpAddr>().is_err() || url.to_string().parse::<Uri>().is_err() {
            return Err(bad("base_url: http:// and an IP address expected".into()));
        }
        let mut registry = self.registry.borrow_mut();
        // Registry times only matter for expiry, which this example does not do.
        let upsert = registry.upsert(name, url, Default::default(), 0);
        let upsert = upsert.map_err(|e| match e {
            RegistryError::Full => error(StatusCode::CONFLICT, "the registry is full"),
            RegistryError::InvalidName => bad(format!("name: {e}")),
        })?;
        // The engine calls the registry's DSPs; one that moves gets a fresh circuit breaker.
        let snapshot = registry.snapshot();
        let specs = snapshot.dsps.iter().map(|d| DspSpec {
            name: d.name.as_str().into(),
            endpoint: d.url.to_string().into(),
        });
        self.engine.borrow_mut().set_dsps(specs);
        let status = match upsert {
            Upsert::Added => StatusCode::CREATED,
            Upsert::Refreshed | Upsert::Replaced => StatusCode::OK,
        };
        Ok(reply(status, json!({ "name": name }).to_string()))
    }
}

/// One DSP call, ended as the engine wants to hear of it.
async fn call_dsp(pools: Pools, url: String, body: Bytes, version: OpenRtbVersion) -> DspResult {
    let request = Request::post(url).header(CONTENT_TYPE, "application/json");
    let request = request.header(OPENRTB_VERSION_HEADER, version.as_str());
    let request = request.body(Full::new(body)).map_err(|_| Protocol)?;
    let (head, body) = match pools.request(request).await {
        Ok(response) => response.into_parts(),
        Err(e) => return Err(if e.is_connect() { Connect } else { Closed }),
    };
    match Limited::new(body, BODY_BYTES_MAX).collect().await {
        Ok(answer) => Ok((head.status.as_u16(), answer.to_bytes())),
        Err(e) if e.is::<LengthLimitError>() => Err(TooLarge),
        Err(_) => Err(Closed),
    }
}

async fn route(exchange: Rc<Exchange>, request: Request<Incoming>) -> Result<Resp, Infallible> {
    let arrival = Instant::now();
    let (head, body) = request.into_parts();
    let Ok(body) = Limited::new(body, BODY_BYTES_MAX).collect().await else {
        return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    };
    let version = head
        .headers
        .get(OPENRTB_VERSION_HEADER)
        .map(HeaderValue::as_bytes);
    Ok(match (&head.method, head.uri.path()) {
        (&Method::POST, "/openrtb2/auction") => {
            exchange.auction(&body.to_bytes(), version, arrival).await
        }
        (&Method::POST, "/dsp") => exchange.onboard(&body.to_bytes()).unwrap_or_else(|e| e),
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    })
}

/// An answer: `body` as JSON, or nothing for 204.
fn reply(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut response = Response::builder().status(status);
    if status != StatusCode::NO_CONTENT {
        response = response.header(CONTENT_TYPE, "application/json");
    }
    response.body(Full::new(body.into())).unwrap_or_default()
}

fn error(status: StatusCode, message: &str) -> Resp {
    reply(status, json!({ "error": message }).to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8080")).await?;
    println!("listening on {}", listener.local_addr()?);
    let exchange = Rc::new(Exchange {
        engine: RefCell::new(Engine::new(EngineConfig::default())),
        registry: RefCell::new(Registry::new(DEFAULT_DSPS_MAX)),
        workspaces: RefCell::default(),
        client: Client::builder(TokioExecutor::new()).build_http(),
    });
    // The exchange is not `Send`: connections are `LocalSet` tasks, run while awaiting the next.
    let connections = LocalSet::new();
    loop {
        let (stream, _) = connections.run_until(listener.accept()).await?;
        let exchange = exchange.clone();
        let service = service_fn(move |request| route(exchange.clone(), request));
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        connections.spawn_local(connection);
    }
}
