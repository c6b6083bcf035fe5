//! Owns onboarding: one std thread per exchange endpoint POSTs `{"name","base_url","bid_path"}`
//! (with `"gzip": true` under `--gzip`) until the exchange accepts it (2xx), backing off
//! exponentially with jitter, then again every interval so the registration stays fresh and an
//! exchange restart recovers by itself.
//!
//! Blocking IO is fine here: it is off the workers and runs a few times a minute.

use std::{
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rand::{rngs::SmallRng, Rng, SeedableRng};
use rtb_io::ShutdownHandle;

use crate::httpc::{self, HttpUrl};

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
        while !shutdown.is_triggered() {
            attempt += 1;
            let result = httpc::request(endpoint, "POST", &headers, &body, CALL_TIMEOUT);
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

    #[test]
    fn jitter_stays_within_bounds() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(400), &mut rng);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }
}
