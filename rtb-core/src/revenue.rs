//! Owns revenue amounts as the exchange counts them: a currency code packed into a `u32`
//! (three ASCII capitals, 0 for anything else: counted as [`OTHER_CURRENCY`]), prices in whole
//! micro-CPM (a millionth of a currency unit per thousand impressions: the precision rtb-core
//! rounds converted prices to, so counters add integers), and the sums per currency, per DSP
//! and for the whole exchange. The counters themselves are the shell's.

use std::collections::BTreeMap;

/// The label of the currency every odd or surplus code is counted under.
pub const OTHER_CURRENCY: &str = "other";
/// Micro-CPM per CPM.
const MICROS_PER_CPM: f64 = 1e6;
/// Micro-CPM per unit of money: a CPM is the price of a thousand impressions.
const MICROS_PER_UNIT: f64 = MICROS_PER_CPM * 1000.0;

/// A currency code packed into a `u32` (three ASCII capitals), 0 for anything else.
pub fn currency_code(cur: &str) -> u32 {
    match cur.as_bytes() {
        &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => {
            u32::from_be_bytes([0, a, b, c])
        }
        _ => 0,
    }
}

/// The code's text; [`OTHER_CURRENCY`] for 0.
pub fn currency_name(code: u32) -> String {
    if code == 0 {
        return OTHER_CURRENCY.to_string();
    }
    let [_, a, b, c] = code.to_be_bytes();
    String::from_utf8_lossy(&[a, b, c]).into_owned()
}

/// A CPM price in whole micro-CPM (rounded; negative or NaN count as 0, which the auction
/// never produces: a clearing price is at least the floor).
pub fn cpm_micros(cpm: f64) -> u64 {
    // `as` saturates: NaN → 0, negative → 0, beyond u64 → u64::MAX.
    (cpm * MICROS_PER_CPM).round() as u64
}

/// Summed counts of one currency.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CurrencySum {
    /// Clearing prices, micro-CPM.
    pub clearing_micros: u64,
    /// Impressions won.
    pub wins: u64,
}

impl CurrencySum {
    /// The clearing prices' total, CPM.
    pub fn clearing_cpm(&self) -> f64 {
        self.clearing_micros as f64 / MICROS_PER_CPM
    }

    /// What winners pay for these impressions (clearing CPM / 1000), in money.
    pub fn money(&self) -> f64 {
        self.clearing_micros as f64 / MICROS_PER_UNIT
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: CurrencySum) {
        self.clearing_micros += other.clearing_micros;
        self.wins += other.wins;
    }
}

/// One DSP's (or the exchange's) revenue, by currency name.
pub type RevenueSum = BTreeMap<String, CurrencySum>;

/// Adds every currency of `sum` to `into`.
pub fn add_sum(into: &mut RevenueSum, sum: &RevenueSum) {
    for (cur, s) in sum {
        into.entry(cur.clone()).or_default().add(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_three_capitals_or_other() {
        assert_eq!(currency_name(currency_code("USD")), "USD");
        assert_eq!(currency_name(currency_code("EUR")), "EUR");
        for odd in ["usd", "US", "USDX", "", "U\"D", "ÜSD"] {
            assert_eq!(currency_code(odd), 0, "{odd}");
        }
        assert_eq!(currency_name(0), OTHER_CURRENCY);
    }

    #[test]
    fn prices_are_rounded_micro_cpm() {
        assert_eq!(cpm_micros(1.26), 1_260_000);
        assert_eq!(cpm_micros(0.416_666_6), 416_667);
        assert_eq!(cpm_micros(f64::NAN), 0);
        assert_eq!(cpm_micros(-1.0), 0);
    }

    #[test]
    fn sums_add_by_currency_and_convert_to_cpm_and_money() {
        let usd = CurrencySum {
            clearing_micros: 1_250_000,
            wins: 1,
        };
        let mut dsp = RevenueSum::new();
        dsp.insert("USD".into(), usd);
        let mut exchange = RevenueSum::new();
        add_sum(&mut exchange, &dsp);
        add_sum(&mut exchange, &dsp);
        let total = exchange["USD"];
        assert_eq!((total.clearing_micros, total.wins), (2_500_000, 2));
        assert_eq!(total.clearing_cpm(), 2.5);
        assert_eq!(total.money(), 0.0025);
    }
}
