//! OpenRTB substitution macros (`${AUCTION_PRICE}` and friends) in the winning bid's `nurl`,
//! `burl` and `adm`, and in a losing bid's `lurl`.
//!
//! Substitution streams pieces to a sink, so the encoder can JSON-escape them straight into its
//! output buffer and the win-notice path can append them to a URL buffer: no intermediate
//! string. Unknown macros (e.g. `${AUCTION_MULTIPLIER}`, which needs DOOH data the core does not
//! keep) are left as they are.

use std::fmt::Write as _;

/// Values of the macros for one bid (the winner, or a loser for its loss notice).
#[derive(Clone, Copy, Debug)]
pub struct MacroValues<'a> {
    /// `${AUCTION_ID}`: the bid request's id.
    pub auction_id: &'a str,
    /// `${AUCTION_BID_ID}`: the DSP response's `bidid`, else the bid's id.
    pub bid_id: &'a str,
    /// `${AUCTION_IMP_ID}`
    pub imp_id: &'a str,
    /// `${AUCTION_SEAT_ID}`
    pub seat_id: &'a str,
    /// `${AUCTION_AD_ID}`
    pub ad_id: &'a str,
    /// `${AUCTION_PRICE}`: the clearing price; `None` (a loss notice: a loser is not told
    /// what the winner paid) substitutes nothing.
    pub price: Option<f64>,
    /// `${AUCTION_CURRENCY}`
    pub currency: &'a str,
    /// `${AUCTION_LOSS}`: 0 for the winner, the OpenRTB loss reason code for a loser.
    pub loss: u16,
    /// `${AUCTION_MIN_TO_WIN}`; `None` substitutes nothing, as for the price.
    pub min_to_win: Option<f64>,
}

/// A formatted number on the stack.
struct NumberText {
    bytes: [u8; 40],
    len: usize,
}

impl std::fmt::Write for NumberText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl NumberText {
    fn new(args: std::fmt::Arguments<'_>) -> Self {
        let mut text = NumberText {
            bytes: [0; 40],
            len: 0,
        };
        // Only numbers are written here: they fit; an error would only shorten the text.
        let _ = text.write_fmt(args);
        text
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// Writes a CPM price the way OpenRTB JSON and macros want it: shortest round-trip decimal.
pub(crate) fn price_text(price: f64, sink: &mut impl FnMut(&[u8])) {
    let mut digits = [0u8; 24];
    match micros_text(price, &mut digits) {
        Some(text) => sink(text),
        None => sink(NumberText::new(format_args!("{price}")).as_str().as_bytes()),
    }
}

/// Prices up to a billion that are whole millionths (every clearing price is, see
/// `currency::round_cpm`) written without the float formatter, which cost more than the rest
/// of the answer's numbers together. The text is the one `{}` writes: when `price` is the double
/// nearest to n/10^6, n/10^6 with trailing zeros trimmed is the shortest decimal that reads
/// back as `price` (any shorter one is another multiple of 10^-6, further than half an ulp
/// away). `None` for any other price.
fn micros_text(price: f64, out: &mut [u8; 24]) -> Option<&[u8]> {
    if !(price.is_sign_positive() && price < 1e9) {
        return None;
    }
    let scaled = (price * 1e6).round();
    if scaled / 1e6 != price {
        return None;
    }
    // Below 10^15, so exact in f64 and in u64.
    let micros = scaled as u64;
    let (whole, mut fraction) = (micros / 1_000_000, micros % 1_000_000);
    let mut whole_digits = [0u8; 10];
    let whole_text = crate::splice::u32_digits(u32::try_from(whole).ok()?, &mut whole_digits);
    let mut len = whole_text.len();
    out.get_mut(..len)?.copy_from_slice(whole_text);
    if fraction != 0 {
        let mut places = 6;
        while fraction % 10 == 0 {
            fraction /= 10;
            places -= 1;
        }
        *out.get_mut(len)? = b'.';
        for place in (0..places).rev() {
            *out.get_mut(len + 1 + place)? = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        len += 1 + places;
    }
    out.get(..len)
}

/// Streams `template` to `sink` with every known macro replaced by its value. The sink gets
/// each piece and whether it is a substituted value (`true`) or template text (`false`), so a
/// caller holding JSON-escaped template text can escape only the values.
pub fn substitute_pieces(
    template: &[u8],
    values: &MacroValues<'_>,
    sink: &mut impl FnMut(&[u8], bool),
) {
    let mut rest = template;
    while let Some(start) = find_macro_start(rest) {
        let (before, from_macro) = rest.split_at(start);
        sink(before, false);
        let Some(end) = memchr::memchr(b'}', from_macro) else {
            sink(from_macro, false);
            return;
        };
        let name = &from_macro[2..end];
        let known = match name {
            b"AUCTION_ID" => Some(values.auction_id),
            b"AUCTION_BID_ID" => Some(values.bid_id),
            b"AUCTION_IMP_ID" => Some(values.imp_id),
            b"AUCTION_SEAT_ID" => Some(values.seat_id),
            b"AUCTION_AD_ID" => Some(values.ad_id),
            b"AUCTION_CURRENCY" => Some(values.currency),
            b"AUCTION_PRICE" | b"AUCTION_MIN_TO_WIN" => {
                let price = if name == b"AUCTION_PRICE" {
                    values.price
                } else {
                    values.min_to_win
                };
                if let Some(price) = price {
                    price_text(price, &mut |p| sink(p, true));
                }
                Some("")
            }
            b"AUCTION_LOSS" => {
                let text = NumberText::new(format_args!("{}", values.loss));
                sink(text.as_str().as_bytes(), true);
                Some("")
            }
            _ => None,
        };
        match known {
            Some(value) => sink(value.as_bytes(), true),
            None => sink(&from_macro[..=end], false),
        }
        rest = &from_macro[end + 1..];
    }
    sink(rest, false);
}

/// SIMD search (memchr) for `$`, then a look at the next byte: markup is kilobytes long and
/// holds few `$`. `memmem::find` built a two-byte searcher on every call, which cost more than
/// the search itself on these short texts.
fn find_macro_start(text: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'$', text.get(from..)?) {
        let dollar = from + found;
        if text.get(dollar + 1) == Some(&b'{') {
            return Some(dollar);
        }
        from = dollar + 1;
    }
    None
}

/// Streams `template` to `sink` with every known macro replaced by its value.
pub fn substitute(template: &str, values: &MacroValues<'_>, sink: &mut impl FnMut(&[u8])) {
    substitute_pieces(template.as_bytes(), values, &mut |piece, _| sink(piece));
}

/// Substitutes into a reused byte buffer (the win-notice path).
pub fn substitute_into(template: &str, values: &MacroValues<'_>, out: &mut Vec<u8>) {
    substitute(template, values, &mut |piece| out.extend_from_slice(piece));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> MacroValues<'static> {
        MacroValues {
            auction_id: "req-1",
            bid_id: "bid-9",
            imp_id: "imp-2",
            seat_id: "seat-3",
            ad_id: "ad-4",
            price: Some(1.23),
            currency: "USD",
            loss: 0,
            min_to_win: Some(1.02),
        }
    }

    fn sub(template: &str) -> String {
        let mut out = Vec::new();
        substitute_into(template, &values(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_known_macro_is_substituted() {
        assert_eq!(
            sub("a=${AUCTION_ID}&b=${AUCTION_BID_ID}&i=${AUCTION_IMP_ID}&s=${AUCTION_SEAT_ID}&ad=${AUCTION_AD_ID}&p=${AUCTION_PRICE}&c=${AUCTION_CURRENCY}&l=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}"),
            "a=req-1&b=bid-9&i=imp-2&s=seat-3&ad=ad-4&p=1.23&c=USD&l=0&m=1.02"
        );
    }

    #[test]
    fn unknown_and_broken_macros_are_left_as_they_are() {
        assert_eq!(sub("x${AUCTION_MULTIPLIER}y"), "x${AUCTION_MULTIPLIER}y");
        assert_eq!(sub("p=${AUCTION_PRICE"), "p=${AUCTION_PRICE");
        assert_eq!(sub("$${AUCTION_PRICE}}"), "$1.23}");
        assert_eq!(sub("no macros"), "no macros");
        assert_eq!(sub(""), "");
        assert_eq!(sub("$x${AUCTION_LOSS}$"), "$x0$");
    }

    #[test]
    fn a_loss_notice_gets_its_code_and_no_prices() {
        let loser = MacroValues {
            price: None,
            min_to_win: None,
            loss: 102,
            ..values()
        };
        let mut out = Vec::new();
        let template =
            "l=${AUCTION_LOSS}&p=${AUCTION_PRICE}&m=${AUCTION_MIN_TO_WIN}&b=${AUCTION_BID_ID}";
        substitute_into(template, &loser, &mut out);
        assert_eq!(out, b"l=102&p=&m=&b=bid-9");
    }

    #[test]
    fn prices_read_as_the_float_formatter_writes_them() {
        let mut samples = vec![
            0.0,
            1.0,
            0.5,
            0.1,
            0.11,
            1.23,
            1.02,
            0.000001,
            0.000123,
            0.439,
            2.5e-7,
            1e-9,
            999_999_999.999999,
            1e9,
            12.345678,
            0.14300000000000002,
            1.0 / 3.0,
            -0.0,
            -1.5,
            f64::NAN,
            f64::INFINITY,
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let raw = (x % 100_000_000_000) as f64 / 1e6 * (1.0 + (x >> 60) as f64 / 7.0);
            samples.push(raw);
            samples.push(crate::currency::round_cpm(raw));
        }
        for price in samples {
            let mut out = Vec::new();
            price_text(price, &mut |p| out.extend_from_slice(p));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{price}"),
                "{price:e}"
            );
        }
    }

    #[test]
    fn pieces_say_which_are_values() {
        let mut pieces = Vec::new();
        substitute_pieces(b"a${AUCTION_ID}b${NOPE}", &values(), &mut |p, is_value| {
            pieces.push((String::from_utf8(p.to_vec()).unwrap(), is_value))
        });
        let expected = [
            ("a", false),
            ("req-1", true),
            ("b", false),
            ("${NOPE}", false),
            ("", false),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(p, v)| (p.to_string(), *v)).collect();
        assert_eq!(pieces, expected);
    }
}
