//! Owns the exchange's revenue series: `rtb_dsp_clearing_price{dsp,currency}` as a summary's
//! `_sum` and `_count` (the clearing prices of the impressions each DSP won in billable,
//! non-test auctions), and the exchange's `rtb_revenue_total{currency}`. The counters are
//! `rtb_io::engine_shell::revenue`'s (integer micro-CPM per DSP per currency, single writer),
//! the amounts `rtb_core::revenue`'s.

use std::fmt::Write as _;

use rtb_core::revenue::{add_sum, RevenueSum};
use rtb_io::metrics_text::header;

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
    use rtb_io::engine_shell::revenue::{currency_code, Revenue};

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
