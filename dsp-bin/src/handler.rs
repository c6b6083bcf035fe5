//! Owns the simulated DSP's request handling: `POST /bid` (decode with rtb-core, maybe
//! misbehave, maybe no-bid, else bid on every impression at or above its floor after a sampled
//! latency), `GET /win` (win notices), `GET /loss` (loss notices, with `--lurl`),
//! `GET /metrics` and `GET /healthz`.
//!
//! One handler per worker holds that worker's RNG, decoder, document and output buffer, so a
//! bid allocates little: the response is written by hand into the reused buffer and copied out
//! once. Nothing is borrowed across an await: the answer is fully built before any sleep.

use std::{
    cell::{Cell, RefCell},
    io::Write as _,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, StatusCode};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use rtb_core::{
    encode::escape_json_into,
    json::{Decoder, Document},
    request::{BidRequest, Imp, MediaTypes},
};
use rtb_io::{
    gzip::{accepts_gzip, GzipEncoder},
    Handler, Request, Response, WorkerCtx,
};

use crate::{
    dist::{LatencyDist, PriceDist},
    metrics::{Failure, Metrics},
};

/// Answer this long before `tmax` at the latest; a latency that would not leave it is a 204.
pub const TMAX_MARGIN: Duration = Duration::from_millis(5);
/// A hanging request is held at most this long (or until shutdown).
pub const HANG_MAX: Duration = Duration::from_secs(120);
/// How often a hanging request looks at the shutdown flag.
const HANG_POLL: Duration = Duration::from_millis(50);
/// Size of the creative the simulator offers.
const CREATIVE_W: u32 = 300;
const CREATIVE_H: u32 = 250;
/// What a malformed answer looks like: a JSON object cut short.
const MALFORMED_BODY: &[u8] = b"{\"id\": \x01garbage";
/// Initial capacity of the per-worker response buffer.
const OUT_BYTES_INITIAL: usize = 4096;

/// What the DSP does, shared by all workers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// DSP name: used in bid ids, creatives and `adomain`.
    pub name: String,
    /// `seatbid.seat`.
    pub seat: String,
    /// Extra path answered like `/bid`.
    pub bid_path: String,
    /// Probability of bidding on a request.
    pub bid_rate: f64,
    /// Bid prices.
    pub price: PriceDist,
    /// Response latency.
    pub latency: LatencyDist,
    /// Probability of each injected failure.
    pub hang_rate: f64,
    /// See [`Failure::Reset`].
    pub reset_rate: f64,
    /// See [`Failure::Error500`].
    pub error500_rate: f64,
    /// See [`Failure::Malformed`].
    pub malformed_rate: f64,
    /// Sleep the sampled latency even when it overruns `tmax`.
    pub ignore_tmax: bool,
    /// Base seed; worker `i` uses `seed + i`.
    pub seed: u64,
    /// The bids' currency; `None`: the request's auction currency.
    pub currency: Option<String>,
    /// Whether each bid carries a `lurl` back to `/loss`.
    pub lurl: bool,
    /// Onboard with `"gzip": true` and answer gzip-compressed whenever the request accepts
    /// it (whatever the answer's size).
    pub gzip: bool,
}

impl Behaviour {
    /// Checks rates, naming the bad flag.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("--bid-rate", self.bid_rate),
            ("--hang-rate", self.hang_rate),
            ("--reset-rate", self.reset_rate),
            ("--error500-rate", self.error500_rate),
            ("--malformed-rate", self.malformed_rate),
        ];
        for (flag, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{flag} {rate}: must be within 0..=1"));
            }
        }
        let failures = self.hang_rate + self.reset_rate + self.error500_rate + self.malformed_rate;
        if failures > 1.0 + 1e-9 {
            return Err(format!("failure rates sum to {failures}, more than 1"));
        }
        if let Some(currency) = &self.currency {
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!(
                    "--currency {currency:?}: expected a three-letter code"
                ));
            }
        }
        if !self.bid_path.starts_with('/') {
            return Err(format!("--bid-path {:?}: must start with /", self.bid_path));
        }
        Ok(())
    }

    fn failure_rates(&self) -> [(Failure, f64); 4] {
        [
            (Failure::Hang, self.hang_rate),
            (Failure::Reset, self.reset_rate),
            (Failure::Error500, self.error500_rate),
            (Failure::Malformed, self.malformed_rate),
        ]
    }
}

/// State shared by every worker.
#[derive(Debug)]
pub struct Shared {
    /// Behaviour knobs.
    pub behaviour: Behaviour,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// `http://host:port` of this DSP for `nurl`; set once the port is known.
    pub base_url: OnceLock<String>,
}

/// One worker's handler.
#[derive(Debug)]
pub struct DspHandler {
    shared: Arc<Shared>,
    worker: usize,
    rng: RefCell<SmallRng>,
    decoder: RefCell<Decoder>,
    doc: RefCell<Document>,
    out: RefCell<Vec<u8>>,
    adm: RefCell<String>,
    gzip: RefCell<GzipEncoder>,
    next_id: Cell<u64>,
}

/// What to do with a bid request, decided synchronously.
enum Plan {
    Answer(Response),
    AnswerAfter(Duration, Response),
    Hang,
}

impl DspHandler {
    /// The handler for worker `worker`.
    pub fn new(shared: Arc<Shared>, worker: usize) -> Self {
        let seed = shared.behaviour.seed.wrapping_add(worker as u64);
        Self {
            shared,
            worker,
            rng: RefCell::new(SmallRng::seed_from_u64(seed)),
            decoder: RefCell::new(Decoder::new()),
            doc: RefCell::new(Document::default()),
            out: RefCell::new(Vec::with_capacity(OUT_BYTES_INITIAL)),
            adm: RefCell::new(String::new()),
            gzip: RefCell::new(GzipEncoder::new()),
            next_id: Cell::new(0),
        }
    }

    fn plan_bid(&self, req: &Request) -> Plan {
        let m = &*self.shared.metrics;
        Metrics::incr(&m.requests);
        let encoding = req.header("content-encoding").map(<[u8]>::trim_ascii);
        if encoding.is_some_and(|v| v.eq_ignore_ascii_case(b"gzip")) {
            Metrics::incr(&m.gzip_requests);
        }
        let gzip_answer = self.shared.behaviour.gzip
            && req.header("accept-encoding").and_then(accepts_gzip) == Some(true);
        let mut doc = self.doc.borrow_mut();
        let mut decoder = self.decoder.borrow_mut();
        let request = match BidRequest::decode(&req.body, &mut doc, &mut decoder) {
            Ok(r) => r,
            Err(error) => {
                Metrics::incr(&m.invalid);
                let mut body = Vec::with_capacity(128);
                body.extend_from_slice(b"{\"error\":\"");
                escape_json_into(error.rule.message(), &mut body);
                body.extend_from_slice(b"\",\"field\":\"");
                escape_json_into(&error.field.to_string(), &mut body);
                body.extend_from_slice(b"\"}");
                return Plan::Answer(Response::json(StatusCode::BAD_REQUEST, body));
            }
        };
        let mut rng = self.rng.borrow_mut();
        let plan = self.plan_valid(&request, req.arrival, &mut rng, gzip_answer);
        drop(request);
        plan
    }

    fn plan_valid(
        &self,
        request: &BidRequest<'_>,
        arrival: Instant,
        rng: &mut SmallRng,
        gzip_answer: bool,
    ) -> Plan {
        let b = &self.shared.behaviour;
        let m = &*self.shared.metrics;
        let roll: f64 = rng.gen();
        let mut edge = 0.0;
        for (kind, rate) in b.failure_rates() {
            edge += rate;
            if roll < edge {
                m.failure(kind);
                return match kind {
                    Failure::Hang => Plan::Hang,
                    Failure::Reset => Plan::Answer(Response::abort()),
                    Failure::Error500 => Plan::Answer(Response::json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Bytes::from_static(b"{\"error\":\"injected failure\"}"),
                    )),
                    Failure::Malformed => Plan::Answer(Response::json(
                        StatusCode::OK,
                        Bytes::from_static(MALFORMED_BODY),
                    )),
                };
            }
        }
        let latency = b.latency.sample(rng);
        if let (Some(tmax_ms), false) = (request.tmax_ms, b.ignore_tmax) {
            let budget = Duration::from_millis(u64::from(tmax_ms))
                .saturating_sub(TMAX_MARGIN)
                .saturating_sub(arrival.elapsed());
            if latency > budget {
                Metrics::incr(&m.tmax_skips);
                return Plan::Answer(Response::new(StatusCode::NO_CONTENT));
            }
        }
        let bids = rng.gen::<f64>() < b.bid_rate;
        let response = if bids && !request.imps.is_empty() {
            let mut out = self.out.borrow_mut();
            let count = self.write_bid_response(request, rng, &mut out);
            Metrics::incr(&m.responses_with_bids);
            m.bids
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            self.bid_answer(&out, gzip_answer)
        } else {
            Metrics::incr(&m.no_bids);
            Response::new(StatusCode::NO_CONTENT)
        };
        if latency.is_zero() {
            Plan::Answer(response)
        } else {
            Plan::AnswerAfter(latency, response)
        }
    }

    /// 200 with `body`, gzip-compressed when asked (`--gzip` and the request accepts it).
    fn bid_answer(&self, body: &[u8], gzip: bool) -> Response {
        let mut encoder = self.gzip.borrow_mut();
        let Some(gzipped) = gzip.then(|| encoder.compress(body)).flatten() else {
            return Response::json(StatusCode::OK, Bytes::copy_from_slice(body));
        };
        Metrics::incr(&self.shared.metrics.gzip_responses);
        let mut response = Response::json(StatusCode::OK, Bytes::copy_from_slice(gzipped));
        response.headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
        response
    }

    /// Writes the OpenRTB 2.6 bid response into `out`; returns the number of bids.
    fn write_bid_response(
        &self,
        request: &BidRequest<'_>,
        rng: &mut SmallRng,
        out: &mut Vec<u8>,
    ) -> u64 {
        let b = &self.shared.behaviour;
        let n = self.next_id.get();
        self.next_id.set(n.wrapping_add(1));
        let base_url = self.shared.base_url.get().map_or("", String::as_str);
        out.clear();
        out.extend_from_slice(b"{\"id\":\"");
        escape_json_into(request.id, out);
        out.extend_from_slice(b"\",\"bidid\":\"");
        escape_json_into(&b.name, out);
        let _ = write!(out, "-{}-{n}", self.worker);
        out.extend_from_slice(b"\",\"cur\":\"");
        let currency = b.currency.as_deref();
        escape_json_into(currency.unwrap_or(request.auction_currency()), out);
        out.extend_from_slice(b"\",\"seatbid\":[{\"seat\":\"");
        escape_json_into(&b.seat, out);
        out.extend_from_slice(b"\",\"bid\":[");
        let mut count = 0u64;
        for (i, imp) in request.imps.iter().enumerate() {
            let (floor, deal) = self.pick_floor(request, imp);
            let price = b.price.bid_price(floor, rng);
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"id\":\"");
            escape_json_into(&b.name, out);
            let _ = write!(out, "-{}-{n}-{i}", self.worker);
            out.extend_from_slice(b"\",\"impid\":\"");
            escape_json_into(imp.id, out);
            let _ = write!(out, "\",\"price\":{price}");
            if let Some(deal) = deal {
                out.extend_from_slice(b",\"dealid\":\"");
                escape_json_into(deal, out);
                out.push(b'"');
            }
            out.extend_from_slice(b",\"adid\":\"");
            escape_json_into(&b.name, out);
            out.extend_from_slice(b"-ad-1\",\"crid\":\"");
            escape_json_into(&b.name, out);
            out.extend_from_slice(b"-creative-1\",\"adomain\":[\"");
            escape_json_into(&b.name, out);
            let _ = write!(
                out,
                ".example\"],\"w\":{CREATIVE_W},\"h\":{CREATIVE_H},\"nurl\":\""
            );
            escape_json_into(base_url, out);
            out.extend_from_slice(
                b"/win?price=${AUCTION_PRICE}&imp=${AUCTION_IMP_ID}&auction=${AUCTION_ID}\",",
            );
            if b.lurl {
                out.extend_from_slice(b"\"lurl\":\"");
                escape_json_into(base_url, out);
                out.extend_from_slice(
                    b"/loss?reason=${AUCTION_LOSS}&imp=${AUCTION_IMP_ID}&auction=${AUCTION_ID}\",",
                );
            }
            out.extend_from_slice(b"\"adm\":\"");
            let mut adm = self.adm.borrow_mut();
            write_adm(&mut adm, &b.name, imp);
            escape_json_into(&adm, out);
            out.extend_from_slice(b"\"}");
            count += 1;
        }
        out.extend_from_slice(b"]}]}");
        count
    }

    /// The floor to beat and, for a private auction, the deal to bid on (the first deal open
    /// to this seat), so deal-only impressions can still be won.
    fn pick_floor<'a>(&self, request: &BidRequest<'a>, imp: &Imp<'a>) -> (f64, Option<&'a str>) {
        if !imp.private_auction {
            return (imp.bidfloor, None);
        }
        let seat = self.shared.behaviour.seat.as_str();
        request
            .deals(imp)
            .find(|deal| {
                let mut wseat = request.deal_wseat(deal).peekable();
                wseat.peek().is_none() || wseat.any(|s| s == seat)
            })
            .map_or((imp.bidfloor, None), |deal| {
                (deal.bidfloor.max(imp.bidfloor), Some(deal.id))
            })
    }

    fn win(&self, req: &Request) -> Response {
        let m = &*self.shared.metrics;
        let price = query_value(req, "price")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|p| p.is_finite() && *p >= 0.0);
        match price {
            Some(price) => {
                m.win(price);
                Response::new(StatusCode::OK)
            }
            None => {
                Metrics::incr(&m.bad_win_notices);
                Response::json(
                    StatusCode::BAD_REQUEST,
                    Bytes::from_static(b"{\"error\":\"price missing or not a number\"}"),
                )
            }
        }
    }
}

impl DspHandler {
    /// `GET /loss?reason=N...`: counted by reason.
    fn loss(&self, req: &Request) -> Response {
        let m = &*self.shared.metrics;
        match query_value(req, "reason").and_then(|v| v.parse::<u16>().ok()) {
            Some(reason) => {
                m.loss(reason);
                Response::new(StatusCode::OK)
            }
            None => {
                Metrics::incr(&m.bad_loss_notices);
                Response::json(
                    StatusCode::BAD_REQUEST,
                    Bytes::from_static(b"{\"error\":\"reason missing or not a number\"}"),
                )
            }
        }
    }
}

/// The value of query parameter `name`, as sent.
fn query_value<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    let query = req.target().split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A small creative for the impression's media type.
fn write_adm(adm: &mut String, name: &str, imp: &Imp<'_>) {
    use std::fmt::Write as _;
    adm.clear();
    if imp.media.contains(MediaTypes::VIDEO) && !imp.media.contains(MediaTypes::BANNER) {
        let _ = write!(
            adm,
            "<VAST version=\"4.0\"><Ad id=\"{name}-ad-1\"><InLine><AdSystem>{name}</AdSystem>\
             <AdTitle>{name} demo</AdTitle><Impression><![CDATA[https://{name}.example/imp?p=${{AUCTION_PRICE}}]]></Impression>\
             <Creatives/></InLine></Ad></VAST>"
        );
    } else if imp.media.contains(MediaTypes::NATIVE) && !imp.media.contains(MediaTypes::BANNER) {
        let _ = write!(
            adm,
            "{{\"native\":{{\"ver\":\"1.2\",\"assets\":[{{\"id\":1,\"title\":{{\"text\":\"{name} demo\"}}}}],\
             \"link\":{{\"url\":\"https://{name}.example/\"}}}}}}"
        );
    } else {
        let _ = write!(
            adm,
            "<div class=\"ad\" style=\"width:{CREATIVE_W}px;height:{CREATIVE_H}px\">\
             <a href=\"https://{name}.example/\">{name} ad for imp {}</a>\
             <img src=\"https://{name}.example/imp?p=${{AUCTION_PRICE}}\" width=\"1\" height=\"1\"></div>",
            imp.id.replace(['<', '>', '"', '&'], "")
        );
    }
}

impl Handler for DspHandler {
    async fn handle(&self, req: Request, ctx: &WorkerCtx) -> Response {
        let b = &self.shared.behaviour;
        let path = req.path();
        let is_bid = path == "/bid" || path == b.bid_path;
        match (&req.method, is_bid, path) {
            (&Method::POST, true, _) => match self.plan_bid(&req) {
                Plan::Answer(r) => r,
                Plan::AnswerAfter(delay, r) => {
                    monoio::time::sleep(delay).await;
                    r
                }
                Plan::Hang => {
                    let until = Instant::now() + HANG_MAX;
                    while !ctx.shutdown.is_triggered() && Instant::now() < until {
                        monoio::time::sleep(HANG_POLL).await;
                    }
                    Response::abort()
                }
            },
            (&Method::GET, _, "/win") => self.win(&req),
            (&Method::GET, _, "/loss") => self.loss(&req),
            (&Method::GET, _, "/metrics") => Response::with_body(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.shared.metrics.render(&b.name),
            ),
            (&Method::GET, _, "/healthz") => {
                Response::with_body(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))
            }
            (_, true, _) | (_, _, "/win" | "/loss" | "/metrics" | "/healthz") => {
                Response::new(StatusCode::METHOD_NOT_ALLOWED)
            }
            _ => Response::json(
                StatusCode::NOT_FOUND,
                Bytes::from_static(b"{\"error\":\"not found\"}"),
            ),
        }
    }
}
