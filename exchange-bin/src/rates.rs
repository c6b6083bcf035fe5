//! Owns the currency rates' life in the exchange: where they come from (`--currency-rates`, a
//! file path or an `http://` URL), loading them (blocking, on the control thread, bounded in
//! bytes and time), the refresh period, handing each new table to every worker
//! ([`Broadcast`]), and their status for metrics and logs (age, stale, loads, failures).
//!
//! rtb-core owns the rule (the table, inverse and cross rates, conversion in the auction);
//! this file only fetches bytes and swaps whole tables. A file that does not load or parse
//! keeps the previous table and counts a failure. The age is the time since the last
//! successful load; past `--currency-stale-s` the rates are reported stale (metrics, and a
//! warning in the logs each time a refresh fails while stale) but still used.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rtb_core::currency::{CurrencyRates, RATES_FILE_BYTES_MAX};
use rtb_io::Broadcast;

use crate::control::{now_ms, system_resolver, truncate};

/// Default `--currency-refresh-s` (Prebid Server's default period too).
pub const REFRESH_S_DEFAULT: u64 = 1800;
/// Default `--currency-stale-s`: four missed refreshes.
pub const STALE_S_DEFAULT: u64 = 7200;
/// Longest a fetch over HTTP may take (connect, send, read), on top of name resolution.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for the response head on top of the file itself.
const HEAD_BYTES_MAX: usize = 16 * 1024;

/// Where the rates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatesSource {
    /// A local file, read again at each refresh.
    File(PathBuf),
    /// An `http://` URL, fetched with one HTTP/1.0 GET at each refresh.
    Http {
        /// Host name or IP literal.
        host: String,
        /// Port (80 by default).
        port: u16,
        /// Path and query (`/` by default).
        path: String,
    },
}

impl std::fmt::Display for RatesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RatesSource::File(path) => write!(f, "{}", path.display()),
            RatesSource::Http { host, port, path } => {
                write!(f, "http://{}{path}", authority(host, *port))
            }
        }
    }
}

impl RatesSource {
    /// `http://host[:port][/path]` or a file path. `https://` is refused for now: the exchange
    /// has no TLS client yet.
    pub fn parse(text: &str) -> Result<RatesSource, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(
                "https:// is not supported yet (no TLS client in the exchange); use an http:// \
                 URL or a file path"
                    .into(),
            );
        }
        let Some(rest) = lower
            .strip_prefix("http://")
            .map(|_| &text["http://".len()..])
        else {
            if lower.contains("://") {
                return Err("only http:// URLs and file paths are supported".into());
            }
            return Ok(RatesSource::File(PathBuf::from(text)));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("bad port {:?}", truncate(port)))?,
            ),
            None => (authority, 80),
        };
        // An IPv6 literal comes in brackets: `http://[::1]:8080/`.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains('@') {
            return Err("the URL needs a host (and no user info)".into());
        }
        Ok(RatesSource::Http {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// Reads and parses the rates (blocking: the control thread's job).
    pub fn load(&self) -> Result<CurrencyRates, String> {
        let bytes = match self {
            RatesSource::File(path) => read_file(path)?,
            RatesSource::Http { host, port, path } => fetch(host, *port, path)?,
        };
        CurrencyRates::parse(&bytes).map_err(|e| e.to_string())
    }
}

/// `host[:port]` as a URL and a `Host` header spell it (IPv6 literals in brackets, port 80
/// left out).
fn authority(host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == 80 {
        host
    } else {
        format!("{host}:{port}")
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    let cap = (RATES_FILE_BYTES_MAX + 1) as u64;
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// One HTTP/1.0 GET (so the answer is never chunked), `Connection: close`, bounded in time and
/// bytes; only a 200 is accepted.
fn fetch(host: &str, port: u16, path: &str) -> Result<Vec<u8>, String> {
    let addr = *system_resolver()(host, port)?
        .first()
        .ok_or("host name has no address")?;
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: rtb-exchange\r\n\r\n",
        authority(host, port)
    );
    stream
        .set_write_timeout(Some(FETCH_TIMEOUT))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = FETCH_TIMEOUT
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or("timed out")?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
        if answer.len() > RATES_FILE_BYTES_MAX + HEAD_BYTES_MAX {
            return Err("answer too large".into());
        }
    }
    body_of_ok(&answer)
}

/// The body of a complete HTTP/1.x answer whose status is 200.
fn body_of_ok(answer: &[u8]) -> Result<Vec<u8>, String> {
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP answer head")?;
    let status_line = answer[..head_end]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or(b"");
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP status {:?}, not 200", truncate(status)));
    }
    Ok(answer[head_end + 4..].to_vec())
}

/// What the debug port shows about the rates; written by the control thread only.
#[derive(Debug)]
pub struct RatesStatus {
    /// Wall-clock ms of the last successful load; 0 before the first.
    loaded_at_ms: AtomicU64,
    loads: AtomicU64,
    failures: AtomicU64,
    currencies: AtomicU64,
    stale_after: Duration,
}

impl RatesStatus {
    /// A status with nothing loaded yet.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            loaded_at_ms: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            currencies: AtomicU64::new(0),
            stale_after,
        }
    }

    /// Seconds since the last successful load, if any.
    pub fn age(&self, now_ms: u64) -> Option<Duration> {
        match self.loaded_at_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_millis(now_ms.saturating_sub(at))),
        }
    }

    /// Stale: never loaded, or loaded longer ago than `--currency-stale-s`.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        self.age(now_ms).is_none_or(|age| age > self.stale_after)
    }

    /// Failed loads so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Appends the `rtb_currency_*` series in the Prometheus text format.
    pub fn render(&self, now_ms: u64, out: &mut String) {
        let age = self.age(now_ms).map_or(f64::NAN, |a| a.as_secs_f64());
        let series: [(&str, &str, &str, String); 5] = [
            (
                "rtb_currency_rates_age_seconds",
                "gauge",
                "Seconds since the currency rates were last loaded (NaN: never).",
                format!("{age:.3}"),
            ),
            (
                "rtb_currency_rates_stale",
                "gauge",
                "1 when the rates were never loaded or are older than --currency-stale-s.",
                u8::from(self.is_stale(now_ms)).to_string(),
            ),
            (
                "rtb_currency_rates_currencies",
                "gauge",
                "Currencies in the table in force.",
                self.currencies.load(Ordering::Relaxed).to_string(),
            ),
            (
                "rtb_currency_rates_loads_total",
                "counter",
                "Successful loads of the rates (startup and refreshes).",
                self.loads.load(Ordering::Relaxed).to_string(),
            ),
            (
                "rtb_currency_rates_failures_total",
                "counter",
                "Loads that failed (unreadable, unreachable or invalid): the old table was kept.",
                self.failures().to_string(),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

/// The rates refresh, run by the control thread: loads on a period, publishes a changed table
/// to every worker, keeps the old one on failure.
#[derive(Debug)]
pub struct RatesRefresh {
    source: RatesSource,
    period: Duration,
    status: Arc<RatesStatus>,
    updates: Broadcast<Arc<CurrencyRates>>,
    current: Option<Arc<CurrencyRates>>,
    next_at: Instant,
}

impl RatesRefresh {
    /// A refresh of `source` every `period`, publishing to `updates`.
    pub fn new(
        source: RatesSource,
        period: Duration,
        status: Arc<RatesStatus>,
        updates: Broadcast<Arc<CurrencyRates>>,
    ) -> Self {
        Self {
            source,
            period,
            status,
            updates,
            current: None,
            next_at: Instant::now() + period,
        }
    }

    /// Loads now; on success the new table is in force here (not yet published). Returns it.
    pub fn load(&mut self) -> Option<Arc<CurrencyRates>> {
        match self.source.load() {
            Ok(rates) => {
                let status = &self.status;
                status.loaded_at_ms.store(now_ms(), Ordering::Release);
                status.loads.fetch_add(1, Ordering::Relaxed);
                status
                    .currencies
                    .store(rates.currencies() as u64, Ordering::Relaxed);
                let changed = self.current.as_deref() != Some(&rates);
                if changed {
                    tracing::info!(source = %self.source, data_as_of = rates.data_as_of(),
                        currencies = rates.currencies(), "currency rates loaded");
                    self.current = Some(Arc::new(rates));
                }
                self.current.clone()
            }
            Err(error) => {
                self.status.failures.fetch_add(1, Ordering::Relaxed);
                let age_s = self.status.age(now_ms()).map(|age| age.as_secs());
                if self.status.is_stale(now_ms()) {
                    tracing::error!(source = %self.source, %error, ?age_s,
                        "currency rates not loaded and stale; the previous table (if any) stays in force");
                } else {
                    tracing::warn!(source = %self.source, %error, ?age_s,
                        "currency rates not loaded; the previous table stays in force");
                }
                None
            }
        }
    }

    /// Called on every control tick: refreshes when the period is up and publishes a table
    /// that changed.
    pub fn poll(&mut self, now: Instant) {
        if now < self.next_at {
            return;
        }
        self.next_at = now + self.period;
        let before = self.current.clone();
        if let Some(rates) = self.load() {
            if before.as_ref().is_none_or(|b| !Arc::ptr_eq(b, &rates)) {
                self.updates.send(rates);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const FILE: &str = r#"{"dataAsOf":"2026-12-05","conversions":{"USD":{"EUR":0.8}}}"#;

    #[test]
    fn sources_parse_and_https_is_refused_clearly() {
        assert_eq!(
            RatesSource::parse("/etc/rates.json"),
            Ok(RatesSource::File("/etc/rates.json".into()))
        );
        assert_eq!(
            RatesSource::parse("http://rates.internal:8080/latest.json?x=1"),
            Ok(RatesSource::Http {
                host: "rates.internal".into(),
                port: 8080,
                path: "/latest.json?x=1".into()
            })
        );
        assert_eq!(
            RatesSource::parse("HTTP://h"),
            Ok(RatesSource::Http {
                host: "h".into(),
                port: 80,
                path: "/".into()
            })
        );
        let https =
            RatesSource::parse("https://cdn.jsdelivr.net/gh/prebid/currency-file@1/latest.json");
        assert!(https.unwrap_err().contains("https:// is not supported yet"));
        assert_eq!(
            RatesSource::parse("http://[::1]:8080/r.json"),
            Ok(RatesSource::Http {
                host: "::1".into(),
                port: 8080,
                path: "/r.json".into()
            })
        );
        let v6 = RatesSource::parse("http://[::1]:8080/r.json").unwrap();
        assert_eq!(v6.to_string(), "http://[::1]:8080/r.json");
        assert!(RatesSource::parse("ftp://x/y").is_err());
        assert!(RatesSource::parse("http://:80/").is_err());
        assert!(RatesSource::parse("http://h:99999/").is_err());
        assert!(RatesSource::parse("").is_err());
    }

    /// Serves `answers` to successive connections, one each, on a loopback port.
    fn serve(answers: Vec<String>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for answer in answers {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = [0u8; 1024];
                let _ = conn.read(&mut head);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn http_sources_load_and_refuse_errors() {
        let ok = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{FILE}");
        let missing = "HTTP/1.0 404 Not Found\r\n\r\nnope".to_string();
        let addr = serve(vec![ok, missing]);
        let source = RatesSource::parse(&format!("http://{addr}/latest.json")).unwrap();
        let rates = source.load().unwrap();
        assert_eq!(rates.rate("USD", "EUR"), Some(0.8));
        let error = source.load().unwrap_err();
        assert!(error.contains("404"), "{error}");
    }

    #[test]
    fn a_bad_file_keeps_the_old_table_and_counts_the_failure() {
        let dir = std::env::temp_dir().join(format!("rtb-rates-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rates.json");
        std::fs::write(&path, FILE).unwrap();
        let status = Arc::new(RatesStatus::new(Duration::from_secs(60)));
        let updates = Broadcast::new(1);
        let rx = updates.receiver(0).unwrap();
        let mut refresh = RatesRefresh::new(
            RatesSource::File(path.clone()),
            Duration::ZERO,
            status.clone(),
            updates,
        );
        assert!(status.is_stale(now_ms()), "never loaded: stale");
        refresh.poll(Instant::now());
        assert_eq!(rx.drain(|_| {}), 1);
        assert!(!status.is_stale(now_ms()));
        // Same content: loaded again, nothing published.
        refresh.poll(Instant::now());
        assert_eq!(rx.drain(|_| {}), 0);
        // A broken file: the old table stays, the failure is counted.
        std::fs::write(&path, "{\"conversions\":{\"USD\":{\"EUR\":0}}}").unwrap();
        refresh.poll(Instant::now());
        assert_eq!(rx.drain(|_| {}), 0);
        assert_eq!(status.failures(), 1);
        assert_eq!(
            refresh.current.as_ref().unwrap().rate("USD", "EUR"),
            Some(0.8)
        );
        // A changed file: published.
        std::fs::write(&path, FILE.replace("0.8", "0.9")).unwrap();
        refresh.poll(Instant::now());
        let mut got = Vec::new();
        rx.drain(|r| got.push(r));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].rate("USD", "EUR"), Some(0.9));
        let mut text = String::new();
        status.render(now_ms(), &mut text);
        assert!(text.contains("rtb_currency_rates_stale 0\n"), "{text}");
        assert!(
            text.contains("rtb_currency_rates_loads_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("rtb_currency_rates_failures_total 1\n"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rates_older_than_the_threshold_are_stale() {
        let status = RatesStatus::new(Duration::from_secs(10));
        status.loaded_at_ms.store(1_000_000, Ordering::Release);
        assert!(!status.is_stale(1_000_000 + 10_000));
        assert!(status.is_stale(1_000_000 + 10_001));
        assert_eq!(status.age(1_005_000), Some(Duration::from_secs(5)));
    }
}
