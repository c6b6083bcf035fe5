//! The conventional baseline exchange of the load benchmarks: what most Rust teams would write.
//! tokio multi-thread runtime + hyper 1 server, serde_json into owned OpenRTB structs, the
//! request re-serialised with the DSP's `tmax`, a pooled hyper-util client fanning out to the
//! registered DSPs (each call bounded by the auction deadline), a first/second-price auction per
//! impression, the answer serialised with serde_json.
//!
//! Same routes and deadline logic as `rtb-exchange` (`POST /openrtb2/auction`, `POST /dsp`
//! `{"name","base_url"}`, `DELETE /dsp/{name}`; rtb-core's [`DeadlinePolicy`]: 80 ms cap, the
//! request's `tmax`, 3 ms margin), so `rtb-load` can put it through scenarios 1 and 2 and
//! compare. Not a straw man: keep-alive pools, TCP_NODELAY on both sides, no per-request
//! logging, `worker_threads` configurable (the harness uses 1, pinned with taskset).
//!
//! Owned structs of our own rather than `openrtb26`'s: that crate rejects samples 06, 16 and 17,
//! and a baseline that answers 400 to them would look faster for the wrong reason. Objects the
//! auction does not read (`site`, `app`, `device`, `user`, ...) are kept as owned
//! `serde_json::Value`s, so the whole document is still decoded and re-encoded.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::Parser;
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use rtb_core::deadline::{DeadlinePolicy, DspBudget};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

/// Largest accepted request or DSP answer body.
const BODY_BYTES_MAX: usize = 256 * 1024;
/// Idle keep-alive connections kept per DSP.
const POOL_IDLE_PER_HOST_MAX: usize = 1024;
/// Idle connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Smallest bid increment of a second-price auction.
const PRICE_INCREMENT: f64 = 0.01;
/// Currency assumed when none is given.
const USD: &str = "USD";
/// Bid path appended to a DSP's base URL (as `rtb-exchange` does).
const BID_PATH: &str = "/bid";

#[derive(Debug, Parser)]
#[command(about = "Conventional tokio + hyper + serde_json exchange (benchmark baseline)")]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port (0: any free one; printed as `listening on ADDR`).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// tokio worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Auction deadline cap, ms.
    #[arg(long, default_value_t = 80)]
    deadline_ms: u64,
}

/// The request fields the exchange reads; everything else is kept as owned JSON.
#[derive(Debug, Deserialize, Serialize)]
struct BidRequest {
    id: String,
    imp: Vec<Imp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tmax: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cur: Vec<String>,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Imp {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bidfloor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bidfloorcur: Option<String>,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct BidResponse {
    id: String,
    #[serde(default)]
    seatbid: Vec<SeatBid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cur: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bidid: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
struct SeatBid {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seat: Option<String>,
    bid: Vec<Bid>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
struct Bid {
    id: String,
    impid: String,
    price: f64,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct Onboard {
    name: String,
    base_url: String,
}

#[derive(Debug, Clone)]
struct Dsp {
    name: String,
    bid_uri: Uri,
}

#[derive(Debug)]
struct State {
    dsps: RwLock<Arc<Vec<Dsp>>>,
    client: Client<HttpConnector, Full<Bytes>>,
    policy: DeadlinePolicy,
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn empty(status: StatusCode) -> Answer {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, message: &str) -> Answer {
    json(status, serde_json::json!({ "error": message }).to_string())
}

async fn read_body(body: Incoming) -> Option<Bytes> {
    Some(
        Limited::new(body, BODY_BYTES_MAX)
            .collect()
            .await
            .ok()?
            .to_bytes(),
    )
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let arrival = Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let answer = match (method, path.as_str()) {
        (Method::POST, "/openrtb2/auction") => match read_body(req.into_body()).await {
            Some(body) => auction(&state, arrival, &body).await,
            None => error(StatusCode::BAD_REQUEST, "unreadable body"),
        },
        (Method::POST, "/dsp") => match read_body(req.into_body()).await {
            Some(body) => onboard(&state, &body),
            None => error(StatusCode::BAD_REQUEST, "unreadable body"),
        },
        (Method::DELETE, p) if p.starts_with("/dsp/") => {
            let name = &p["/dsp/".len()..];
            let mut dsps = match state.dsps.write() {
                Ok(d) => d,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = dsps.len();
            let kept: Vec<Dsp> = dsps.iter().filter(|d| d.name != name).cloned().collect();
            let removed = kept.len() != before;
            *dsps = Arc::new(kept);
            if removed {
                empty(StatusCode::NO_CONTENT)
            } else {
                error(StatusCode::NOT_FOUND, "no such DSP")
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    };
    Ok(answer)
}

fn onboard(state: &State, body: &[u8]) -> Answer {
    let Ok(o) = serde_json::from_slice::<Onboard>(body) else {
        return error(StatusCode::BAD_REQUEST, "expected {\"name\",\"base_url\"}");
    };
    let Ok(bid_uri) = format!("{}{BID_PATH}", o.base_url.trim_end_matches('/')).parse::<Uri>()
    else {
        return error(StatusCode::BAD_REQUEST, "bad base_url");
    };
    let mut dsps = match state.dsps.write() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut next: Vec<Dsp> = dsps.iter().filter(|d| d.name != o.name).cloned().collect();
    next.push(Dsp {
        name: o.name,
        bid_uri,
    });
    *dsps = Arc::new(next);
    empty(StatusCode::CREATED)
}

/// Calls one DSP; `None` on any failure, timeout or no-bid.
async fn call_dsp(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    body: Bytes,
    deadline: tokio::time::Instant,
) -> Option<BidResponse> {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-openrtb-version", "2.6")
        .body(Full::new(body))
        .ok()?;
    let call = async {
        let resp = client.request(req).await.ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        let bytes = Limited::new(resp.into_body(), BODY_BYTES_MAX)
            .collect()
            .await
            .ok()?
            .to_bytes();
        serde_json::from_slice::<BidResponse>(&bytes).ok()
    };
    tokio::time::timeout_at(deadline, call).await.ok().flatten()
}

async fn auction(state: &State, arrival: Instant, body: &[u8]) -> Answer {
    let mut request: BidRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if request.imp.is_empty() {
        return error(StatusCode::BAD_REQUEST, "imp: empty");
    }
    let dsps = match state.dsps.read() {
        Ok(d) => d.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if dsps.is_empty() {
        return error(StatusCode::NOT_FOUND, "no DSP registered");
    }
    let timing = state.policy.timing(arrival, request.tmax);
    let (tmax_ms, call_deadline) = match state.policy.dsp_budget(&timing, Instant::now()) {
        DspBudget::Call {
            tmax_ms,
            call_deadline,
        } => (tmax_ms, call_deadline),
        DspBudget::TooLate => return empty(StatusCode::NO_CONTENT),
    };
    request.tmax = Some(tmax_ms);
    let Ok(outgoing) = serde_json::to_vec(&request) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "encode failed");
    };
    let outgoing = Bytes::from(outgoing);
    let deadline = tokio::time::Instant::from_std(call_deadline);
    let calls = dsps
        .iter()
        .map(|d| call_dsp(&state.client, d.bid_uri.clone(), outgoing.clone(), deadline));
    let answers = futures_util::future::join_all(calls).await;

    let currency = request.cur.first().map_or(USD, String::as_str);
    let second_price = request.at.unwrap_or(2) != 1;
    let mut seatbids: Vec<SeatBid> = Vec::new();
    for imp in &request.imp {
        let floor = imp.bidfloor.unwrap_or(0.0);
        let mut best: Option<(&Bid, Option<&String>)> = None;
        let mut second: Option<f64> = None;
        for answer in answers.iter().flatten() {
            if answer.id != request.id || answer.cur.as_deref().unwrap_or(USD) != currency {
                continue;
            }
            for sb in &answer.seatbid {
                for bid in sb.bid.iter().filter(|b| b.impid == imp.id) {
                    if !(bid.price.is_finite() && bid.price > 0.0 && bid.price >= floor) {
                        continue;
                    }
                    match best {
                        Some((b, _)) if b.price >= bid.price => {
                            second = Some(second.map_or(bid.price, |s: f64| s.max(bid.price)));
                        }
                        _ => {
                            if let Some((b, _)) = best {
                                second = Some(second.map_or(b.price, |s: f64| s.max(b.price)));
                            }
                            best = Some((bid, sb.seat.as_ref()));
                        }
                    }
                }
            }
        }
        if let Some((bid, seat)) = best {
            let mut won = bid.clone();
            if second_price {
                let runner_up = second.unwrap_or(floor).max(floor);
                won.price = (runner_up + PRICE_INCREMENT).min(bid.price);
            }
            seatbids.push(SeatBid {
                seat: seat.cloned(),
                bid: vec![won],
            });
        }
    }
    if seatbids.is_empty() {
        return empty(StatusCode::NO_CONTENT);
    }
    let response = BidResponse {
        id: request.id,
        seatbid: seatbids,
        cur: Some(currency.to_owned()),
        bidid: None,
    };
    match serde_json::to_vec(&response) {
        Ok(out) => {
            let mut r = json(StatusCode::OK, out);
            r.headers_mut()
                .insert("x-openrtb-version", header::HeaderValue::from_static("2.6"));
            r
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "encode failed"),
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let addr: SocketAddr = format!("{}:{}", args.bind, args.port)
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
        .build(connector);
    let state = Arc::new(State {
        dsps: RwLock::new(Arc::new(Vec::new())),
        client,
        policy: DeadlinePolicy {
            cap: Duration::from_millis(args.deadline_ms),
            ..DeadlinePolicy::default()
        },
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route(state.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
