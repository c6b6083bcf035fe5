//! Owns the simulator's random behaviour: the bid price and response latency distributions,
//! parsed from their flag syntax, and sampled with a caller-supplied RNG so tests are
//! deterministic.
//!
//! Lognormals are given by their median and 99th percentile, which is how latency and price
//! are usually described: mu = ln(p50), sigma = (ln(p99) - mu) / z(0.99).

use std::{fmt, str::FromStr, time::Duration};

use rand::Rng;
use rand_distr::{Distribution, LogNormal};

/// z-score of the 99th percentile of the standard normal.
const Z_P99: f64 = 2.326;
/// Spread above the floor of the default price distribution, CPM.
pub const ABOVE_FLOOR_SPREAD_DEFAULT: f64 = 1.5;
/// Longest latency a distribution may produce; samples are clamped to it.
pub const LATENCY_MS_MAX: f64 = 120_000.0;
/// Highest price a distribution may produce, CPM; samples are clamped to it.
pub const PRICE_MAX: f64 = 1_000_000.0;

/// A parse error naming the spec and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistError(String);

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DistError {}

/// A distribution over non-negative reals.
#[derive(Debug, Clone, Copy)]
pub enum Dist {
    /// Always this value.
    Fixed(f64),
    /// Uniform in `[low, high]`.
    Uniform(f64, f64),
    /// Lognormal with this median and 99th percentile.
    LogNormal {
        /// Median.
        p50: f64,
        /// 99th percentile.
        p99: f64,
        /// The prepared sampler.
        sampler: LogNormal<f64>,
    },
}

impl Dist {
    /// Draws one value.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform(low, high) if high > low => rng.gen_range(low..=high),
            Dist::Uniform(low, _) => low,
            Dist::LogNormal { sampler, .. } => sampler.sample(rng),
        }
    }

    fn lognormal(p50: f64, p99: f64, spec: &str) -> Result<Self, DistError> {
        if !(p50 > 0.0 && p99 >= p50 && p99.is_finite()) {
            return Err(DistError(format!(
                "{spec:?}: lognormal needs 0 < p50 <= p99"
            )));
        }
        let mu = p50.ln();
        let sigma = (p99.ln() - mu) / Z_P99;
        let sampler = LogNormal::new(mu, sigma)
            .map_err(|e| DistError(format!("{spec:?}: lognormal: {e}")))?;
        Ok(Dist::LogNormal { p50, p99, sampler })
    }
}

/// Equal when the specs are equal (the prepared sampler follows from them).
impl PartialEq for Dist {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Dist::Fixed(a), Dist::Fixed(b)) => a == b,
            (Dist::Uniform(a, b), Dist::Uniform(c, d)) => a == c && b == d,
            (Dist::LogNormal { p50: a, p99: b, .. }, Dist::LogNormal { p50: c, p99: d, .. }) => {
                a == c && b == d
            }
            _ => false,
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Fixed(v) => write!(f, "fixed:{v}"),
            Dist::Uniform(a, b) => write!(f, "uniform:{a},{b}"),
            Dist::LogNormal { p50, p99, .. } => write!(f, "lognormal:p50={p50},p99={p99}"),
        }
    }
}

/// Parses `fixed:V`, `uniform:A,B` or `lognormal:P50,P99` (each number may carry a `p50=` /
/// `p99=` label, so `lognormal:p50=10,p99=60` works too).
impl FromStr for Dist {
    type Err = DistError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (kind, args) = spec
            .split_once(':')
            .ok_or_else(|| DistError(format!("{spec:?}: expected KIND:ARGS")))?;
        let numbers = args
            .split(',')
            .map(|a| {
                let a = a.trim();
                let value = a.split_once('=').map_or(a, |(_, v)| v);
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| DistError(format!("{spec:?}: {a:?} is not a number >= 0")))
            })
            .collect::<Result<Vec<f64>, _>>()?;
        match (kind, numbers.as_slice()) {
            ("fixed", [v]) => Ok(Dist::Fixed(*v)),
            ("uniform", [a, b]) if a <= b => Ok(Dist::Uniform(*a, *b)),
            ("uniform", [_, _]) => Err(DistError(format!("{spec:?}: uniform needs A <= B"))),
            ("lognormal", [p50, p99]) => Dist::lognormal(*p50, *p99, spec),
            _ => Err(DistError(format!(
                "{spec:?}: expected fixed:V, uniform:A,B or lognormal:P50,P99"
            ))),
        }
    }
}

/// How the DSP prices a bid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceDist {
    /// The floor plus a uniform amount in `[0.01, spread]` (the default).
    AboveFloor {
        /// Most added to the floor.
        spread: f64,
    },
    /// An absolute distribution; the bid is still raised to `floor + 0.01` when below it.
    Absolute(Dist),
}

impl Default for PriceDist {
    fn default() -> Self {
        PriceDist::AboveFloor {
            spread: ABOVE_FLOOR_SPREAD_DEFAULT,
        }
    }
}

impl PriceDist {
    /// The bid price for an impression with this floor: `max(sample, floor + 0.01)`.
    pub fn bid_price<R: Rng + ?Sized>(&self, floor: f64, rng: &mut R) -> f64 {
        let floor = if floor.is_finite() && floor > 0.0 {
            floor
        } else {
            0.0
        };
        let sampled = match self {
            PriceDist::AboveFloor { spread } => {
                floor + Dist::Uniform(0.01, spread.max(0.01)).sample(rng)
            }
            PriceDist::Absolute(d) => d.sample(rng),
        };
        let price = sampled.max(floor + 0.01).min(PRICE_MAX.max(floor + 0.01));
        // Four decimals keep the JSON short; rounding up keeps the price above the floor.
        (price * 10_000.0).ceil() / 10_000.0
    }
}

impl fmt::Display for PriceDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceDist::AboveFloor { spread } => write!(f, "above-floor:{spread}"),
            PriceDist::Absolute(d) => d.fmt(f),
        }
    }
}

/// Parses `above-floor:SPREAD` or any [`Dist`] spec.
impl FromStr for PriceDist {
    type Err = DistError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if let Some(spread) = spec.strip_prefix("above-floor:") {
            let spread = spread
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| DistError(format!("{spec:?}: spread must be > 0")))?;
            return Ok(PriceDist::AboveFloor { spread });
        }
        spec.parse().map(PriceDist::Absolute)
    }
}

/// Response latency in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyDist(pub Dist);

impl Default for LatencyDist {
    fn default() -> Self {
        LatencyDist(Dist::Fixed(0.0))
    }
}

impl LatencyDist {
    /// Draws one latency, clamped to [`LATENCY_MS_MAX`].
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = self.0.sample(rng).clamp(0.0, LATENCY_MS_MAX);
        Duration::from_micros((ms * 1000.0) as u64)
    }
}

impl fmt::Display for LatencyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for LatencyDist {
    type Err = DistError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        spec.parse().map(LatencyDist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn parses_specs() {
        assert_eq!("fixed:2.5".parse::<Dist>(), Ok(Dist::Fixed(2.5)));
        assert_eq!("uniform:0.5,3".parse::<Dist>(), Ok(Dist::Uniform(0.5, 3.0)));
        assert!(matches!(
            "lognormal:p50=10,p99=60".parse::<Dist>(),
            Ok(Dist::LogNormal { p50, p99, .. }) if p50 == 10.0 && p99 == 60.0
        ));
        assert!("lognormal:10,60".parse::<Dist>().is_ok());
        for bad in [
            "",
            "fixed",
            "fixed:x",
            "uniform:3,1",
            "lognormal:60,10",
            "gauss:1",
            "fixed:-1",
        ] {
            assert!(bad.parse::<Dist>().is_err(), "{bad} should not parse");
        }
        assert_eq!(
            "above-floor:2".parse::<PriceDist>(),
            Ok(PriceDist::AboveFloor { spread: 2.0 })
        );
    }

    #[test]
    fn lognormal_matches_its_percentiles() {
        let d: Dist = "lognormal:10,60".parse().unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..20_000).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[v.len() / 2];
        let p99 = v[v.len() * 99 / 100];
        assert!((9.0..11.0).contains(&p50), "p50 {p50}");
        assert!((50.0..72.0).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn bids_are_above_the_floor() {
        let mut rng = SmallRng::seed_from_u64(1);
        for spec in [
            "fixed:0.1",
            "uniform:0.5,3",
            "lognormal:1,5",
            "above-floor:1",
        ] {
            let d: PriceDist = spec.parse().unwrap();
            for floor in [0.0, 0.5, 2.99, 10.0] {
                for _ in 0..200 {
                    let p = d.bid_price(floor, &mut rng);
                    assert!(p >= floor + 0.01 - 1e-9, "{spec} floor {floor} price {p}");
                }
            }
        }
        let fixed: PriceDist = "fixed:2.5".parse().unwrap();
        assert_eq!(fixed.bid_price(1.0, &mut rng), 2.5);
    }

    #[test]
    fn latency_is_clamped() {
        let mut rng = SmallRng::seed_from_u64(1);
        let d: LatencyDist = "fixed:50".parse().unwrap();
        assert_eq!(d.sample(&mut rng), Duration::from_millis(50));
        let huge: LatencyDist = "fixed:1e9".parse().unwrap();
        assert_eq!(huge.sample(&mut rng), Duration::from_secs(120));
    }
}
