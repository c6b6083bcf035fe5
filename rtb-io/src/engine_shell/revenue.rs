//! Owns the revenue counters: per DSP and per auction currency, the clearing prices of the
//! impressions it won in billable (non-test) auctions, on one worker.
//!
//! Prices are kept as integer micro-CPM (a millionth of a currency unit per thousand
//! impressions: the precision rtb-core rounds converted prices to), so the hot path adds
//! integers into single-writer counters, like every other per-worker counter: no lock, no
//! read-modify-write, no cache line shared between workers. The auction currency is the
//! request's, so each DSP keeps [`CURRENCY_SLOTS`] currencies ([`crate::code_slots`]), claimed
//! on first use; any currency beyond them, or a code that is not three ASCII capitals, is
//! counted under `currency="other"`. The amounts (codes, micro-CPM, sums) are
//! `rtb_core::revenue`'s; which series show them is the binary's choice.

use rtb_core::revenue::{cpm_micros, currency_name, CurrencySum};
pub use rtb_core::revenue::{currency_code, RevenueSum};

use crate::code_slots::CodeSlots;

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
}
