//! Owns onboarding: one std thread per exchange endpoint POSTs `{"name","base_url","bid_path"}`
//! (with `"gzip": true` under `--gzip`) until the exchange accepts it (2xx), backing off
//! exponentially with jitter, then again every interval so the registration stays fresh and an
//! exchange restart recovers by itself.
//!
//! Each round re-resolves the endpoint's host and POSTs to EVERY address it resolves to, so a
//! name with one address per exchange replica (a headless Service) onboards every replica; a
//! new replica is onboarded in the next round, a vanished one is no longer refreshed (the
//! exchange drops it after its `--dsp-ttl-s`). A round succeeds when every address accepted.
//!
//! Blocking IO is fine here: it is off the workers and runs a few times a minute.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rand::{rngs::SmallRng, Rng, SeedableRng};
use rtb_io::{
    resolve::{resolve_all, RESOLVE_TIMEOUT},
    ShutdownHandle,
};

use crate::{
    httpc::{self, HttpResponse, HttpUrl},
    metrics::Metrics,
};

/// First retry delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Time allowed for each onboarding call's connect, write and read.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a sleeping onboarding thread looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// What to register and where.
#[derive(Debug, Clone)]
pub struct Onboarding {
    /// Exchange `/dsp` URLs.
    pub endpoints: Vec<HttpUrl>,
    /// Bearer token, if the exchange wants one. Never logged.
    pub token: Option<String>,
    /// DSP name.
    pub name: String,
    /// This DSP's base URL as the exchange should call it.
    pub base_url: String,
    /// Path of the bid endpoint.
    pub bid_path: String,
    /// Ask for gzip-compressed bid requests (and say gzip answers may come).
    pub gzip: bool,
    /// Re-registration period once accepted.
    pub interval: Duration,
    /// Seed for the backoff jitter.
    pub seed: u64,
    /// Where the targets gauge and per-address results are counted.
    pub metrics: Arc<Metrics>,
}

impl Onboarding {
    /// The JSON registration body.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"name\":\"");
        rtb_core::encode::escape_json_into(&self.name, &mut out);
        out.extend_from_slice(b"\",\"base_url\":\"");
        rtb_core::encode::escape_json_into(&self.base_url, &mut out);
        out.extend_from_slice(b"\",\"bid_path\":\"");
        rtb_core::encode::escape_json_into(&self.bid_path, &mut out);
        out.push(b'"');
        if self.gzip {
            out.extend_from_slice(b",\"gzip\":true");
        }
        out.push(b'}');
        out
    }

    /// Starts one thread per endpoint; they stop when `shutdown` triggers.
    pub fn spawn(&self, shutdown: &ShutdownHandle) -> std::io::Result<Vec<JoinHandle<()>>> {
        let mut threads = Vec::with_capacity(self.endpoints.len());
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let endpoint = endpoint.clone();
            let this = self.clone();
            let shutdown = shutdown.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("rtb-onboard-{i}"))
                    .spawn(move || this.run(&endpoint, i as u64, &shutdown))?,
            );
        }
        Ok(threads)
    }

    fn run(&self, endpoint: &HttpUrl, index: u64, shutdown: &ShutdownHandle) {
        let body = self.body();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let mut rng = SmallRng::seed_from_u64(self.seed.wrapping_add(index));
        let mut backoff = BACKOFF_INITIAL;
        let mut attempt = 0u32;
        let url = format!("http://{}{}", endpoint.authority(), endpoint.path);
        let mut targets = 0usize;
        while !shutdown.is_triggered() {
            attempt += 1;
            let addrs = resolve_all(&endpoint.host, endpoint.port, RESOLVE_TIMEOUT)
                .map_err(std::io::Error::other);
            if let Ok(addrs) = &addrs {
                if addrs.len() != targets {
                    tracing::info!(endpoint = %url, targets = addrs.len(), ?addrs, "onboarding targets");
                    let gauge = &self.metrics.onboard_targets;
                    gauge.fetch_add(addrs.len() as u64, Ordering::Relaxed);
                    gauge.fetch_sub(targets as u64, Ordering::Relaxed);
                    targets = addrs.len();
                }
            }
            let result =
                addrs.and_then(|a| post_to_all(&a, endpoint, &headers, &body, &self.metrics));
            let wait = match result {
                Ok(r) if (200..300).contains(&r.status) => {
                    tracing::info!(endpoint = %url, attempt, status = r.status, dsp = %self.name, "onboarded");
                    attempt = 0;
                    backoff = BACKOFF_INITIAL;
                    self.interval
                }
                outcome => {
                    let wait = jittered(backoff, &mut rng);
                    match outcome {
                        Ok(r) => tracing::info!(
                            endpoint = %url, attempt, status = r.status,
                            body = %String::from_utf8_lossy(&r.body[..r.body.len().min(200)]),
                            retry_in_ms = wait.as_millis() as u64,
                            "onboarding refused"
                        ),
                        Err(error) => tracing::info!(
                            endpoint = %url, attempt, %error,
                            retry_in_ms = wait.as_millis() as u64,
                            "onboarding failed"
                        ),
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            sleep_unless(shutdown, wait);
        }
    }
}

/// POSTs the registration to every address (all are tried each round); the first failure
/// (error or non-2xx answer) if any, else the last answer, so one refusing replica keeps the
/// round retrying while the others stay registered.
pub fn post_to_all(
    addrs: &[SocketAddr],
    endpoint: &HttpUrl,
    headers: &[(&str, &str)],
    body: &[u8],
    metrics: &Metrics,
) -> std::io::Result<HttpResponse> {
    let mut accepted = Err(std::io::Error::other("host resolved to no address"));
    let mut failure = None;
    for &addr in addrs {
        let (result, outcome) =
            match httpc::request(&endpoint.at(addr), "POST", headers, body, CALL_TIMEOUT) {
                Ok(answer) if (200..300).contains(&answer.status) => (0, Ok(answer)),
                Ok(refused) => (1, Ok(refused)),
                Err(e) => (2, Err(std::io::Error::other(format!("{addr}: {e}")))),
            };
        metrics.onboard_results[result].fetch_add(1, Ordering::Relaxed);
        match result {
            0 => accepted = outcome,
            _ => failure = failure.or(Some(outcome)),
        }
    }
    failure.unwrap_or(accepted)
}

/// A delay in `[backoff / 2, backoff]`, so DSPs restarted together do not retry in lockstep.
pub fn jittered(backoff: Duration, rng: &mut SmallRng) -> Duration {
    backoff.mul_f64(rng.gen_range(0.5..=1.0))
}

fn sleep_unless(shutdown: &ShutdownHandle, total: Duration) {
    let until = Instant::now() + total;
    while !shutdown.is_triggered() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(SHUTDOWN_POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json() {
        let o = Onboarding {
            endpoints: vec![],
            token: None,
            name: "the-\"witness\"".into(),
            base_url: "http://127.0.0.1:5000".into(),
            bid_path: "/bid".into(),
            gzip: false,
            interval: Duration::from_secs(10),
            seed: 0,
            metrics: Arc::default(),
        };
        let v: serde_json::Value = serde_json::from_slice(&o.body()).unwrap();
        assert_eq!(v["name"], "the-\"witness\"");
        assert_eq!(v["base_url"], "http://127.0.0.1:5000");
        assert_eq!(v["bid_path"], "/bid");
        assert_eq!(v.get("gzip"), None);
        let gzip = Onboarding { gzip: true, ..o };
        let v: serde_json::Value = serde_json::from_slice(&gzip.body()).unwrap();
        assert_eq!(v["gzip"], true);
    }

    /// An exchange stand-in: answers `status` to each of `calls` requests, returns Host headers.
    fn replica(status: u16, calls: usize) -> (SocketAddr, JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = std::thread::spawn(move || {
            (0..calls)
                .map(|_| {
                    let (mut conn, _) = listener.accept().unwrap();
                    let mut raw = vec![0u8; 4096];
                    let n = conn.read(&mut raw).unwrap();
                    let text = String::from_utf8_lossy(&raw[..n]).to_string();
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                    conn.write_all(reply.as_bytes()).unwrap();
                    let host = text.lines().find(|l| l.starts_with("host: ")).unwrap();
                    host.to_owned()
                })
                .collect()
        });
        (addr, served)
    }

    #[test]
    fn posts_to_every_address_of_the_endpoint() {
        let endpoint = HttpUrl::parse("http://exchange.example:3000/dsp").unwrap();
        let metrics = Metrics::default();
        let (a, served_a) = replica(201, 1);
        let (b, served_b) = replica(200, 1);
        let answer = post_to_all(&[a, b], &endpoint, &[], b"{}", &metrics).unwrap();
        assert_eq!(answer.status, 200);
        for served in [served_a, served_b] {
            assert_eq!(served.join().unwrap(), ["host: exchange.example:3000"]);
        }
        let (ok, served_ok) = replica(200, 1);
        let (refusing, served_refusing) = replica(409, 1);
        let answer = post_to_all(&[refusing, ok], &endpoint, &[], b"{}", &metrics).unwrap();
        assert_eq!(answer.status, 409, "one refusing replica fails the round");
        assert_eq!(
            served_ok.join().unwrap().len(),
            1,
            "the others are still posted to"
        );
        served_refusing.join().unwrap();
        assert!(post_to_all(&[], &endpoint, &[], b"{}", &metrics).is_err());
        let counted = metrics
            .onboard_results
            .each_ref()
            .map(|n| n.load(Ordering::Relaxed));
        assert_eq!(counted, [3, 1, 0], "accepted, refused, failed");
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(400), &mut rng);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }
}
