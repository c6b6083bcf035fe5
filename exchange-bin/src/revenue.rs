//! Owns the revenue counters: per DSP and per auction currency, the clearing prices of the
//! impressions it won in billable (non-test) auctions, and their Prometheus exposition
//! (`rtb_dsp_clearing_price{dsp,currency}` as a summary's `_sum` and `_count`, and the
//! exchange's `rtb_revenue_total{currency}`).
//!
//! Prices are kept as integer micro-CPM (a millionth of a currency unit per thousand
//! impressions: the precision rtb-core rounds converted prices to), so the hot path adds
//! integers into single-writer counters, like every other per-worker counter: no lock, no
//! read-modify-write, no cache line shared between workers. The auction currency is the
//! request's, so each DSP keeps [`CURRENCY_SLOTS`] currencies (`rtb_io::code_slots`), claimed
//! on first use; any currency beyond them, or a code that is not three ASCII capitals, is
//! counted under `currency="other"`. The amounts (codes, micro-CPM, sums) are
//! `rtb_core::revenue`'s.

use std::fmt::Write as _;

use rtb_core::revenue::{add_sum, cpm_micros, currency_name, CurrencySum};
pub use rtb_core::revenue::{currency_code, RevenueSum};
use rtb_io::{code_slots::CodeSlots, metrics_text::header};

/// Currencies counted by name per DSP per worker; more share the `other` slot.
pub const CURRENCY_SLOTS: usize = 4;

/// One DSP's won clearing prices (micro-CPM) on one worker, by auction currency code
/// ([`currency_code`]). Single writer.
#[derive(Debug, Default)]
pub struct Revenue(CodeSlots<CURRENCY_SLOTS>);

impl Revenue {
    /// Counts one impression won at `clearing_cpm` in the currency `code`
    /// ([`currency_code`]). Owner thread only.
    pub fn won(&self, code: u32, clearing_cpm: f64) {
        self.0.add(code, cpm_micros(clearing_cpm));
    }

    /// Adds this worker's counts to `into`, by currency name.
    pub fn add_to(&self, into: &mut RevenueSum) {
        self.0.for_each(|code, clearing_micros, wins| {
            let counted = CurrencySum {
                clearing_micros,
                wins,
            };
            into.entry(currency_name(code)).or_default().add(counted);
        });
    }
}

/// Writes `rtb_dsp_clearing_price` (per DSP and currency) and `rtb_revenue_total` (per
/// currency, all DSPs) from each DSP's sums; `dsp_label` is the DSP's name escaped.
pub fn render<'a>(out: &mut String, dsps: impl Iterator<Item = (String, &'a RevenueSum)>) {
    header(
        out,
        "rtb_dsp_clearing_price",
        "summary",
        "Clearing prices (CPM, in the auction currency) of the impressions each DSP won in non-test auctions: _sum is their total, _count the impressions.",
    );
    let mut exchange = RevenueSum::new();
    for (dsp, sums) in dsps {
        for (cur, s) in sums {
            let labels = format!("dsp=\"{dsp}\",currency=\"{cur}\"");
            let cpm = s.clearing_cpm();
            let _ = writeln!(out, "rtb_dsp_clearing_price_sum{{{labels}}} {cpm}");
            let _ = writeln!(out, "rtb_dsp_clearing_price_count{{{labels}}} {}", s.wins);
        }
        add_sum(&mut exchange, sums);
    }
    header(
        out,
        "rtb_revenue_total",
        "counter",
        "What winners pay for the impressions of non-test auctions (clearing CPM / 1000), in the auction currency: the exchange's gross revenue.",
    );
    for (cur, s) in &exchange {
        let money = s.money();
        let _ = writeln!(out, "rtb_revenue_total{{currency=\"{cur}\"}} {money}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtb_core::revenue::OTHER_CURRENCY;

    #[test]
    fn currencies_beyond_the_slots_share_other() {
        let r = Revenue::default();
        let codes = ["USD", "EUR", "GBP", "JPY", "CHF", "SEK"];
        for (i, cur) in codes.iter().enumerate() {
            r.won(currency_code(cur), 1.0 + i as f64);
        }
        r.won(currency_code("USD"), 0.5);
        r.won(currency_code("bad"), 2.0);
        let mut sum = RevenueSum::new();
        r.add_to(&mut sum);
        r.add_to(&mut sum);
        let get = |c: &str| sum.get(c).copied().unwrap_or_default();
        assert_eq!(get("USD").wins, 4);
        assert_eq!(get("USD").clearing_micros, 3_000_000);
        assert_eq!(get("JPY").wins, 2);
        assert_eq!(get("CHF"), CurrencySum::default());
        // CHF (5.0), SEK (6.0) and the bad code (2.0), twice over.
        assert_eq!(get(OTHER_CURRENCY).wins, 6);
        assert_eq!(get(OTHER_CURRENCY).clearing_micros, 26_000_000);
    }

    #[test]
    fn renders_per_dsp_sums_and_the_exchange_total() {
        let (a, b) = (Revenue::default(), Revenue::default());
        a.won(currency_code("USD"), 1.25);
        a.won(currency_code("EUR"), 2.0);
        b.won(currency_code("USD"), 0.75);
        let sums: Vec<(String, RevenueSum)> = [("a", &a), ("b", &b)]
            .iter()
            .map(|(n, r)| {
                let mut s = RevenueSum::new();
                r.add_to(&mut s);
                (n.to_string(), s)
            })
            .collect();
        let mut out = String::new();
        render(&mut out, sums.iter().map(|(n, s)| (n.clone(), s)));
        for line in [
            "rtb_dsp_clearing_price_sum{dsp=\"a\",currency=\"USD\"} 1.25\n",
            "rtb_dsp_clearing_price_count{dsp=\"a\",currency=\"EUR\"} 1\n",
            "rtb_dsp_clearing_price_sum{dsp=\"b\",currency=\"USD\"} 0.75\n",
            "rtb_revenue_total{currency=\"USD\"} 0.002\n",
            "rtb_revenue_total{currency=\"EUR\"} 0.002\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
    }
}
