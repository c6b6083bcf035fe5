//! Owns currency conversion given a rates table: [`CurrencyRates`], parsed from Prebid Server's
//! currency file (`{"dataAsOf": "...", "conversions": {"USD": {"EUR": 0.92, ...}, ...}}`), with
//! every derivable rate worked out once, when the table is built, so that a lookup during an
//! auction is two binary searches over a few dozen codes and one array read: no parsing, no
//! hashing, no allocation.
//!
//! A rate `from -> to` is how many units of `to` one unit of `from` buys. It is derived as
//! Prebid Server's `Rates.GetRate` derives it (`currency/rates.go`):
//! 1. the same currency: 1;
//! 2. the direct entry `conversions[from][to]`;
//! 3. the inverse entry: `1 / conversions[to][from]`;
//! 4. a cross rate through a base currency `B` listing both: `conversions[B][to] /
//!    conversions[B][from]` (Prebid's `FindIntermediateConversionRate`).
//!
//! One difference: Prebid Server ranges over a Go map for step 4, so with several bases that
//! list both currencies the base it picks is random; here it is the first base in
//! alphabetical order, so the same file always gives the same prices.
//!
//! The file is checked strictly: codes are three ASCII letters (matched case-insensitively),
//! every rate is a finite number > 0, and there are at most [`CURRENCIES_MAX`] currencies. A
//! file that breaks any rule is refused whole (the caller keeps its previous table): one bad
//! rate would otherwise price bids absurdly.

use std::path::PathBuf;

use crate::{
    echo::truncate_to,
    json::{as_f64, as_str, is_object, object_entries, Decoder, Document},
};

/// Most currencies one table may hold (ISO 4217 lists about 180).
pub const CURRENCIES_MAX: usize = 256;
/// Largest rates file accepted, bytes (Prebid's file is about 2 KB).
pub const RATES_FILE_BYTES_MAX: usize = 1 << 20;
/// Longest `dataAsOf` kept, bytes.
const DATA_AS_OF_BYTES_MAX: usize = 64;

/// A currency code, upper-cased, packed into an integer (big-endian, so the order is the
/// alphabetical order): a lookup compares integers, not byte strings.
type Code = u32;

/// Why a rates file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RatesError {
    /// Larger than [`RATES_FILE_BYTES_MAX`].
    TooLarge,
    /// Not JSON; the byte offset where parsing failed.
    MalformedJson(usize),
    /// No `conversions` object at the top level.
    NoConversions,
    /// A key that is not a three-letter code.
    BadCode(String),
    /// A rate that is not a finite number > 0 (from, to).
    BadRate(String, String),
    /// More than [`CURRENCIES_MAX`] currencies.
    TooManyCurrencies,
    /// No rate at all.
    Empty,
}

impl std::fmt::Display for RatesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RatesError::TooLarge => {
                write!(f, "rates file larger than {RATES_FILE_BYTES_MAX} bytes")
            }
            RatesError::MalformedJson(offset) => write!(f, "not JSON (at byte {offset})"),
            RatesError::NoConversions => write!(f, "no \"conversions\" object"),
            RatesError::BadCode(code) => {
                write!(
                    f,
                    "\"{}\" is not a three-letter currency code",
                    truncate(code)
                )
            }
            RatesError::BadRate(from, to) => write!(
                f,
                "rate {} -> {} is not a finite number > 0",
                truncate(from),
                truncate(to)
            ),
            RatesError::TooManyCurrencies => write!(f, "more than {CURRENCIES_MAX} currencies"),
            RatesError::Empty => write!(f, "no conversion rate"),
        }
    }
}

impl std::error::Error for RatesError {}

/// Cuts hostile text short before it is echoed into an error message.
fn truncate(text: &str) -> &str {
    truncate_to(text, 16)
}

/// A rates table with every derivable rate worked out. Immutable once built: a refresh builds a
/// new one and the caller swaps it in between auctions.
#[derive(Clone, Debug, PartialEq)]
pub struct CurrencyRates {
    data_as_of: String,
    /// Every currency named in the file, sorted.
    codes: Vec<Code>,
    /// `rates[from * n + to]`; NaN where no rate can be derived.
    rates: Vec<f64>,
}

impl CurrencyRates {
    /// Parses Prebid Server's currency file format. Off the hot path: it allocates.
    pub fn parse(raw: &[u8]) -> Result<Self, RatesError> {
        if raw.len() > RATES_FILE_BYTES_MAX {
            return Err(RatesError::TooLarge);
        }
        let mut doc = Document::default();
        let mut decoder = Decoder::new();
        let parsed = doc
            .parse(raw, &mut decoder, false)
            .map_err(|e| RatesError::MalformedJson(e.index()))?;
        let nodes = parsed.tape.nodes();
        let mut data_as_of = String::new();
        let mut conversions = None;
        for (key, value) in object_entries(nodes, 0) {
            match key {
                "dataAsOf" => {
                    let text = as_str(nodes, value).unwrap_or("");
                    data_as_of = truncate_to(text, DATA_AS_OF_BYTES_MAX).to_string();
                }
                "conversions" if is_object(nodes, value) => conversions = Some(value),
                _ => {}
            }
        }
        let conversions = conversions.ok_or(RatesError::NoConversions)?;
        let mut given = Vec::new();
        for (from, rates) in object_entries(nodes, conversions) {
            if !is_object(nodes, rates) {
                return Err(RatesError::BadRate(from.to_string(), String::new()));
            }
            for (to, rate) in object_entries(nodes, rates) {
                let rate = as_f64(nodes, rate)
                    .ok_or_else(|| RatesError::BadRate(from.to_string(), to.to_string()))?;
                given.push((from, to, rate));
            }
        }
        Self::from_rates(&data_as_of, given)
    }

    /// Builds a table from `(from, to, rate)` entries, as listed in a file's `conversions`
    /// (later duplicates win), deriving inverse and cross rates.
    pub fn from_rates<'a>(
        data_as_of: &str,
        given: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
    ) -> Result<Self, RatesError> {
        let mut entries: Vec<(Code, Code, f64)> = Vec::new();
        for (from, to, rate) in given {
            let from_code = code(from).ok_or_else(|| RatesError::BadCode(from.to_string()))?;
            let to_code = code(to).ok_or_else(|| RatesError::BadCode(to.to_string()))?;
            if !rate.is_finite() || rate <= 0.0 {
                return Err(RatesError::BadRate(from.to_string(), to.to_string()));
            }
            entries.push((from_code, to_code, rate));
        }
        if entries.is_empty() {
            return Err(RatesError::Empty);
        }
        let mut codes: Vec<Code> = entries.iter().flat_map(|&(f, t, _)| [f, t]).collect();
        codes.sort_unstable();
        codes.dedup();
        if codes.len() > CURRENCIES_MAX {
            return Err(RatesError::TooManyCurrencies);
        }
        let n = codes.len();
        let index = |c: &Code| codes.binary_search(c).unwrap_or(0);
        // The file's own entries, by index; bases in alphabetical order (codes are sorted).
        let mut direct = vec![f64::NAN; n * n];
        for (from, to, rate) in &entries {
            direct[index(from) * n + index(to)] = *rate;
        }
        let rates = derive_all(&direct, n);
        Ok(Self {
            data_as_of: data_as_of.to_string(),
            codes,
            rates,
        })
    }

    /// Units of `to` one unit of `from` buys, or `None` when the table cannot say. Codes match
    /// case-insensitively. Allocates nothing.
    pub fn rate(&self, from: &str, to: &str) -> Option<f64> {
        let (from, to) = (code(from)?, code(to)?);
        if from == to {
            return Some(1.0);
        }
        let from = self.codes.binary_search(&from).ok()?;
        let to = self.codes.binary_search(&to).ok()?;
        let rate = *self.rates.get(from * self.codes.len() + to)?;
        (!rate.is_nan()).then_some(rate)
    }

    /// The file's `dataAsOf` (at most 64 bytes kept), as given.
    pub fn data_as_of(&self) -> &str {
        &self.data_as_of
    }

    /// How many currencies the table names.
    pub fn currencies(&self) -> usize {
        self.codes.len()
    }
}

/// Every rate of the table from the file's direct entries (NaN where none), in Prebid
/// Server's order: direct, inverse, then through the first base listing both.
fn derive_all(direct: &[f64], n: usize) -> Vec<f64> {
    let mut rates = vec![f64::NAN; n * n];
    for from in 0..n {
        for to in 0..n {
            rates[from * n + to] = derive(direct, n, from, to);
        }
    }
    rates
}

fn derive(direct: &[f64], n: usize, from: usize, to: usize) -> f64 {
    if from == to {
        return 1.0;
    }
    let given = direct[from * n + to];
    if !given.is_nan() {
        return given;
    }
    let inverse = direct[to * n + from];
    if !inverse.is_nan() {
        return 1.0 / inverse;
    }
    for base in 0..n {
        let (to_rate, from_rate) = (direct[base * n + to], direct[base * n + from]);
        if !to_rate.is_nan() && !from_rate.is_nan() {
            return to_rate / from_rate;
        }
    }
    f64::NAN
}

/// `eur` -> `EUR`, packed; `None` unless three ASCII letters.
#[inline]
fn code(text: &str) -> Option<Code> {
    let [a, b, c]: [u8; 3] = text.as_bytes().try_into().ok()?;
    let letters = a.is_ascii_alphabetic() && b.is_ascii_alphabetic() && c.is_ascii_alphabetic();
    letters.then(|| {
        u32::from_be_bytes([
            0,
            a.to_ascii_uppercase(),
            b.to_ascii_uppercase(),
            c.to_ascii_uppercase(),
        ])
    })
}

/// Where a rates table comes from: `--currency-rates`, a file path or an `http://` URL
/// (fetching it is the caller's: `rtb_io::fetch` in the exchange).
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
            RatesSource::Http { path, .. } => {
                write!(f, "http://{}{path}", self.authority().unwrap_or_default())
            }
        }
    }
}

impl RatesSource {
    /// `http://host[:port][/path]` or a file path. `https://` is refused for now: the exchange
    /// has no TLS client for it yet.
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

    /// `host[:port]` as a URL and a `Host` header spell it (IPv6 literals in brackets, port 80
    /// left out); `None` for a file.
    pub fn authority(&self) -> Option<String> {
        let RatesSource::Http { host, port, .. } = self else {
            return None;
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Some(if *port == 80 {
            host
        } else {
            format!("{host}:{port}")
        })
    }
}

/// Rounds a CPM to a millionth: clearing prices (so `0.1 + 0.01` prints as `0.11`) and
/// converted prices and floors (so they print short and compare the same way every time).
pub fn round_cpm(price: f64) -> f64 {
    (price * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"dataAsOf":"2026-12-04","conversions":{
        "USD":{"EUR":0.92,"GBP":0.8,"JPY":150},
        "GBP":{"SEK":13.0,"USD":1.25}}}"#;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn parses_prebids_format_and_keeps_data_as_of() {
        let rates = CurrencyRates::parse(FILE.as_bytes()).unwrap();
        assert_eq!(rates.data_as_of(), "2026-12-04");
        assert_eq!(rates.currencies(), 5);
        assert_eq!(rates.rate("USD", "EUR"), Some(0.92));
        assert_eq!(
            rates.rate("usd", "eur"),
            Some(0.92),
            "codes match in any case"
        );
        assert_eq!(rates.rate("EUR", "EUR"), Some(1.0));
    }

    #[test]
    fn inverse_rates_come_from_the_other_direction() {
        let rates = CurrencyRates::parse(FILE.as_bytes()).unwrap();
        assert!(close(rates.rate("EUR", "USD").unwrap(), 1.0 / 0.92));
        assert!(close(rates.rate("JPY", "USD").unwrap(), 1.0 / 150.0));
    }

    #[test]
    fn a_direct_entry_wins_over_the_inverse() {
        // The file says both USD->GBP 0.8 and GBP->USD 1.25: each direction uses its own.
        let rates = CurrencyRates::parse(FILE.as_bytes()).unwrap();
        assert_eq!(rates.rate("USD", "GBP"), Some(0.8));
        assert_eq!(rates.rate("GBP", "USD"), Some(1.25));
    }

    #[test]
    fn cross_rates_go_through_a_base_listing_both() {
        let rates = CurrencyRates::parse(FILE.as_bytes()).unwrap();
        // EUR -> JPY: USD lists both, 150 / 0.92.
        assert!(close(rates.rate("EUR", "JPY").unwrap(), 150.0 / 0.92));
        assert!(close(rates.rate("JPY", "EUR").unwrap(), 0.92 / 150.0));
        // SEK is listed by GBP only and EUR by USD only: no base lists both, no rate (Prebid
        // Server does not chain two hops either).
        assert_eq!(rates.rate("SEK", "EUR"), None);
        // SEK -> USD: GBP lists both, 1.25 / 13.
        assert!(close(rates.rate("SEK", "USD").unwrap(), 1.25 / 13.0));
    }

    #[test]
    fn the_first_base_in_alphabetical_order_decides_a_cross_rate() {
        let rates = CurrencyRates::from_rates(
            "",
            [
                ("USD", "EUR", 1.0),
                ("USD", "SEK", 10.0),
                ("GBP", "EUR", 1.0),
                ("GBP", "SEK", 12.0),
            ],
        )
        .unwrap();
        assert_eq!(rates.rate("EUR", "SEK"), Some(12.0), "GBP sorts before USD");
    }

    #[test]
    fn unknown_currencies_have_no_rate() {
        let rates = CurrencyRates::parse(FILE.as_bytes()).unwrap();
        assert_eq!(rates.rate("XXX", "USD"), None);
        assert_eq!(rates.rate("US", "USD"), None);
        assert_eq!(rates.rate("US1", "USD"), None);
    }

    #[test]
    fn bad_files_are_refused_whole() {
        let cases: [(&str, RatesError); 7] = [
            ("{", RatesError::MalformedJson(1)),
            (r#"{"dataAsOf":"x"}"#, RatesError::NoConversions),
            (r#"{"conversions":{}}"#, RatesError::Empty),
            (
                r#"{"conversions":{"USD":{"EURO":1}}}"#,
                RatesError::BadCode("EURO".into()),
            ),
            (
                r#"{"conversions":{"USD":{"EUR":0}}}"#,
                RatesError::BadRate("USD".into(), "EUR".into()),
            ),
            (
                r#"{"conversions":{"USD":{"EUR":-1,"GBP":1}}}"#,
                RatesError::BadRate("USD".into(), "EUR".into()),
            ),
            (
                r#"{"conversions":{"USD":{"EUR":"0.9"}}}"#,
                RatesError::BadRate("USD".into(), "EUR".into()),
            ),
        ];
        for (file, want) in cases {
            let got = CurrencyRates::parse(file.as_bytes()).unwrap_err();
            match (&got, &want) {
                (RatesError::MalformedJson(_), RatesError::MalformedJson(_)) => {}
                _ => assert_eq!(got, want, "{file}"),
            }
            assert!(!got.to_string().is_empty());
        }
        let huge = vec![b' '; RATES_FILE_BYTES_MAX + 1];
        assert_eq!(CurrencyRates::parse(&huge), Err(RatesError::TooLarge));
    }

    #[test]
    fn rounding_keeps_a_millionth() {
        assert_eq!(round_cpm(1.0 / 0.92), 1.086957);
        assert_eq!(round_cpm(2.5 * 1.086_956_521_7), 2.717391);
    }

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
        let plain = RatesSource::parse("HTTP://h").unwrap();
        let expected = RatesSource::Http {
            host: "h".into(),
            port: 80,
            path: "/".into(),
        };
        assert_eq!(plain, expected);
        assert_eq!(plain.authority().as_deref(), Some("h"));
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
        assert_eq!(v6.authority().as_deref(), Some("[::1]:8080"));
        assert!(RatesSource::parse("ftp://x/y").is_err());
        assert!(RatesSource::parse("http://:80/").is_err());
        assert!(RatesSource::parse("http://h:99999/").is_err());
        assert!(RatesSource::parse("").is_err());
    }
}
