//! Owns the currency rates' refresh in the exchange: loading them on the control thread
//! ([`crate::fetch`] reads the file or GETs the `http://` URL, bounded in bytes and time;
//! `rtb_core::currency` parses the source and the table), and their logs and metrics. The
//! period, keeping the last good table, handing each new one to every worker and the status
//! (age, stale, loads, failures) are [`crate::refresh`]'s.
//!
//! A file that does not load or parse keeps the previous table and counts a failure. The age
//! is the time since the last successful load; past `--currency-stale-s` the rates are
//! reported stale (metrics, and a warning in the logs each time a refresh fails while stale)
//! but still used.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    clock::unix_ms as now_ms,
    fetch::{self, HttpTarget},
    metrics_text::single,
    refresh::{Loaded, Refresh, RefreshStatus},
    Broadcast,
};
pub use rtb_core::currency::RatesSource;
use rtb_core::currency::{CurrencyRates, RATES_FILE_BYTES_MAX};

/// Default `--currency-refresh-s` (Prebid Server's default period too).
pub const REFRESH_S_DEFAULT: u64 = 1800;
/// Default `--currency-stale-s`: four missed refreshes.
pub const STALE_S_DEFAULT: u64 = 7200;
/// Longest a fetch over HTTP may take (connect, send, read), on top of name resolution.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads and parses the rates from `source` (blocking: the control thread's job).
pub fn load(source: &RatesSource) -> Result<CurrencyRates, String> {
    let bytes = match source {
        RatesSource::File(path) => fetch::read_file(path, RATES_FILE_BYTES_MAX)?,
        RatesSource::Http { host, port, path } => {
            let authority = source.authority().unwrap_or_default();
            let target = HttpTarget {
                host,
                port: *port,
                authority: &authority,
                path,
            };
            fetch::http_get(target, RATES_FILE_BYTES_MAX, FETCH_TIMEOUT)?
        }
    };
    CurrencyRates::parse(&bytes).map_err(|e| e.to_string())
}

/// The rates' status: when they last loaded, loads, failures, currencies, staleness.
pub type RatesStatus = RefreshStatus;

/// Appends the `rtb_currency_*` series of `status` in the Prometheus text format.
pub fn render(status: &RatesStatus, now_ms: u64, out: &mut String) {
    let age = status.age(now_ms).map_or(f64::NAN, |a| a.as_secs_f64());
    let (gauge, counter) = ("gauge", "counter");
    let help = "Seconds since the currency rates were last loaded (NaN: never).";
    single(
        out,
        ("rtb_currency_rates_age_seconds", gauge, help),
        format!("{age:.3}"),
    );
    let help = "1 when the rates were never loaded or are older than --currency-stale-s.";
    let stale = u8::from(status.is_stale(now_ms));
    single(out, ("rtb_currency_rates_stale", gauge, help), stale);
    let help = "Currencies in the table in force.";
    single(
        out,
        ("rtb_currency_rates_currencies", gauge, help),
        status.entries(),
    );
    let help = "Successful loads of the rates (startup and refreshes).";
    single(
        out,
        ("rtb_currency_rates_loads_total", counter, help),
        status.loads(),
    );
    let help = "Loads that failed (unreadable, unreachable or invalid): the old table was kept.";
    single(
        out,
        ("rtb_currency_rates_failures_total", counter, help),
        status.failures(),
    );
}

/// The rates refresh, run by the control thread: loads on a period, publishes a changed table
/// to every worker, keeps the old one on failure ([`Refresh`]), and logs what happened.
#[derive(Debug)]
pub struct RatesRefresh {
    source: RatesSource,
    refresh: Refresh<CurrencyRates>,
}

impl RatesRefresh {
    /// A refresh of `source` every `period`, publishing to `updates`.
    pub fn new(
        source: RatesSource,
        period: Duration,
        status: Arc<RatesStatus>,
        updates: Broadcast<Arc<CurrencyRates>>,
    ) -> Self {
        let refresh = Refresh::new(period, status, updates, CurrencyRates::currencies);
        Self { source, refresh }
    }

    /// Loads now; on success the new table is in force here (not yet published). Returns it.
    pub fn load(&mut self) -> Option<Arc<CurrencyRates>> {
        let loaded = self.refresh.take(load(&self.source), now_ms());
        let source = &self.source;
        match &loaded {
            Loaded::Changed(rates) => tracing::info!(%source, data_as_of = rates.data_as_of(),
                currencies = rates.currencies(), "currency rates loaded"),
            Loaded::Unchanged(_) => {}
            Loaded::Failed(error) => {
                let status = self.refresh.status();
                let age_s = status.age(now_ms()).map(|age| age.as_secs());
                if status.is_stale(now_ms()) {
                    tracing::error!(%source, %error, ?age_s,
                        "currency rates not loaded and stale; the previous table (if any) stays in force");
                } else {
                    tracing::warn!(%source, %error, ?age_s,
                        "currency rates not loaded; the previous table stays in force");
                }
            }
        }
        loaded.copy()
    }

    /// Called on every control tick: refreshes when the period is up and publishes a table
    /// that changed.
    pub fn poll(&mut self, now: Instant) {
        if !self.refresh.is_due(now) {
            return;
        }
        let before = self.refresh.current().cloned();
        if let Some(rates) = self.load() {
            if before.as_ref().is_none_or(|b| !Arc::ptr_eq(b, &rates)) {
                self.refresh.publish(rates);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::{Read, Write},
        net::TcpListener,
    };

    const FILE: &str = r#"{"dataAsOf":"2026-12-05","conversions":{"USD":{"EUR":0.8}}}"#;

    #[test]
    fn an_http_source_loads_and_a_refused_answer_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let ok = format!("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{FILE}");
            for answer in [ok.as_str(), "HTTP/1.0 404 Not Found\r\n\r\nnope"] {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = [0u8; 1024];
                let _ = conn.read(&mut head);
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        let source = RatesSource::parse(&format!("http://{addr}/latest.json")).unwrap();
        let rates = load(&source).unwrap();
        assert_eq!(rates.rate("USD", "EUR"), Some(0.8));
        let error = load(&source).unwrap_err();
        assert!(error.contains("404"), "{error}");
        server.join().unwrap();
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
            refresh.refresh.current().unwrap().rate("USD", "EUR"),
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
        render(&status, now_ms(), &mut text);
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
}
