//! Encodes the exchange's OpenRTB bid response into a reused buffer, without a JSON value tree:
//! `id`, `bidid`, `cur`, and `seatbid` grouped by (DSP, seat) with each winning bid at its
//! clearing price and macros substituted in `adm` and `burl`.
//!
//! The winner's `nurl` is not forwarded: the exchange fires it itself (see
//! [`win_notice_url`]), so forwarding it would bill twice. Strings in the views are unescaped
//! (simd-json decoded them), so everything is escaped again here; the output is tested to parse
//! with serde_json and to equal what was meant.

use crate::auction::{AuctionOutcome, Rejection, Winner};
use crate::currency::round_cpm;
use crate::macros::{price_text, substitute, substitute_into, substitute_pieces, MacroValues};
use crate::request::BidRequest;
use crate::response::{Bid, BidResponse};
use crate::splice::u32_digits;

/// Writes `text` as a JSON string body (without the quotes), escaping `"`, `\` and control
/// characters; everything else, non-ASCII included, passes through as UTF-8.
pub fn escape_json_into(text: &str, out: &mut Vec<u8>) {
    escape_json_bytes(text.as_bytes(), out);
}

/// Eight copies of a byte, for the word-at-a-time scan.
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// Whether any byte of `word` is a control character, `"` or `\` (the classic SWAR
/// "has a byte less than n" and "has a zero byte" tests). Clean 8-byte words are copied in
/// bulk: markup is mostly clean, and the byte-by-byte loop it replaces was a third of the
/// pipeline benchmark.
#[inline]
fn needs_escape(word: u64) -> bool {
    const HIGH: u64 = splat(0x80);
    let below_space = word.wrapping_sub(splat(0x20)) & !word;
    let quote = word ^ splat(b'"');
    let backslash = word ^ splat(b'\\');
    let has_quote = quote.wrapping_sub(splat(1)) & !quote;
    let has_backslash = backslash.wrapping_sub(splat(1)) & !backslash;
    (below_space | has_quote | has_backslash) & HIGH != 0
}

fn escape_json_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len());
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]);
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[run_start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 0xf) as usize]);
                i += 1;
                run_start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run_start..i]);
        out.extend_from_slice(escape);
        i += 1;
        run_start = i;
    }
    out.extend_from_slice(&bytes[run_start..]);
}

fn string_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    escape_json_into(value, out);
    out.push(b'"');
}

/// The macro values of a winner. OpenRTB states `${AUCTION_PRICE}` "using the same currency
/// and units as the bid", so a bid converted from another currency is told its clearing price
/// (and minimum to win) converted back to its own currency, rounded to a millionth, with
/// `${AUCTION_CURRENCY}` naming that currency. The answer's `price` stays in the auction
/// currency (the answer's `cur`).
pub fn macro_values<'m, 'q: 'm, 'r: 'm>(
    request: &BidRequest<'q>,
    response: &BidResponse<'r>,
    winner: &Winner,
) -> MacroValues<'m> {
    let bid = &response.bids[winner.bid as usize];
    if winner.rate != 1.0 {
        return MacroValues {
            price: Some(round_cpm(winner.clearing_price / winner.rate)),
            min_to_win: Some(round_cpm(winner.min_to_win / winner.rate)),
            currency: response.cur,
            ..macro_values_in_auction_currency(request, response, bid, winner)
        };
    }
    macro_values_in_auction_currency(request, response, bid, winner)
}

fn macro_values_in_auction_currency<'m, 'q: 'm, 'r: 'm>(
    request: &BidRequest<'q>,
    response: &BidResponse<'r>,
    bid: &Bid<'r>,
    winner: &Winner,
) -> MacroValues<'m> {
    MacroValues {
        auction_id: request.id,
        bid_id: response.bidid.unwrap_or(bid.id),
        imp_id: bid.impid,
        seat_id: bid.seat.unwrap_or(""),
        ad_id: bid.adid.unwrap_or(""),
        price: Some(winner.clearing_price),
        currency: request.auction_currency(),
        loss: 0,
        min_to_win: Some(winner.min_to_win),
    }
}

/// Writes the winner's `nurl` with macros substituted into `out` (cleared first); false when
/// the bid has no `nurl`.
pub fn win_notice_url(
    request: &BidRequest<'_>,
    response: &BidResponse<'_>,
    winner: &Winner,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    append_win_notice_url(request, response, winner, out)
}

/// Appends the winner's `nurl` with macros substituted to `out`; false (nothing written) when
/// the bid has no `nurl`.
pub fn append_win_notice_url(
    request: &BidRequest<'_>,
    response: &BidResponse<'_>,
    winner: &Winner,
    out: &mut Vec<u8>,
) -> bool {
    let Some(nurl) = response.bids[winner.bid as usize].nurl else {
        return false;
    };
    substitute_into(nurl, &macro_values(request, response, winner), out);
    true
}

/// Appends a losing bid's `lurl` with macros substituted to `out`; false (nothing written) when
/// the bid has no `lurl`. `${AUCTION_LOSS}` is the rejection's OpenRTB loss reason code,
/// `${AUCTION_CURRENCY}` the bid's currency, and the price macros are left empty: a loser is
/// not told the clearing price.
pub fn append_loss_notice_url(
    request: &BidRequest<'_>,
    response: &BidResponse<'_>,
    rejection: &Rejection,
    out: &mut Vec<u8>,
) -> bool {
    let Some(bid) = response.bids.get(usize::from(rejection.bid)) else {
        return false;
    };
    let Some(lurl) = bid.lurl else {
        return false;
    };
    let values = MacroValues {
        auction_id: request.id,
        bid_id: response.bidid.unwrap_or(bid.id),
        imp_id: bid.impid,
        seat_id: bid.seat.unwrap_or(""),
        ad_id: bid.adid.unwrap_or(""),
        price: None,
        currency: response.cur,
        loss: rejection.reason.loss_code(),
        min_to_win: None,
    };
    substitute_into(lurl, &values, out);
    true
}

/// Encodes the bid response for `outcome` into `out` (cleared first). Returns false, writing
/// nothing, when there is no winner: the caller answers 204.
pub fn encode_bid_response(
    request: &BidRequest<'_>,
    responses: &[BidResponse<'_>],
    outcome: &AuctionOutcome,
    bidid: Option<&str>,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if outcome.winners.is_empty() {
        return false;
    }
    out.extend_from_slice(b"{\"id\":\"");
    escape_json_into(request.id, out);
    out.push(b'"');
    if let Some(bidid) = bidid {
        string_field(out, "bidid", bidid);
    }
    string_field(out, "cur", request.auction_currency());
    out.extend_from_slice(b",\"seatbid\":[");
    // Winners are at most REQUEST_IMPS_MAX (64): a bit per winner marks it written.
    let mut written: u64 = 0;
    let mut first_seat = true;
    for (i, winner) in outcome.winners.iter().enumerate().take(64) {
        if written & (1 << i) != 0 {
            continue;
        }
        let seat = responses[winner.response as usize].bids[winner.bid as usize].seat;
        if !first_seat {
            out.push(b',');
        }
        first_seat = false;
        out.push(b'{');
        if let Some(seat) = seat {
            out.extend_from_slice(b"\"seat\":\"");
            escape_json_into(seat, out);
            out.extend_from_slice(b"\",");
        }
        out.extend_from_slice(b"\"bid\":[");
        let mut first_bid = true;
        for (j, other) in outcome.winners.iter().enumerate().skip(i).take(64 - i) {
            let response = &responses[other.response as usize];
            if other.response != winner.response || response.bids[other.bid as usize].seat != seat {
                continue;
            }
            written |= 1 << j;
            if !first_bid {
                out.push(b',');
            }
            first_bid = false;
            encode_bid(request, response, other, out);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    true
}

fn encode_bid(
    request: &BidRequest<'_>,
    response: &BidResponse<'_>,
    winner: &Winner,
    out: &mut Vec<u8>,
) {
    let bid = &response.bids[winner.bid as usize];
    let values = macro_values(request, response, winner);
    out.extend_from_slice(b"{\"id\":\"");
    escape_json_into(bid.id, out);
    out.push(b'"');
    string_field(out, "impid", bid.impid);
    out.extend_from_slice(b",\"price\":");
    price_text(winner.clearing_price, &mut |piece| {
        out.extend_from_slice(piece)
    });
    for (name, value) in [
        ("adid", bid.adid),
        ("crid", bid.crid),
        ("dealid", bid.dealid),
    ] {
        if let Some(value) = value {
            string_field(out, name, value);
        }
    }
    if let Some(burl) = bid.burl {
        out.extend_from_slice(b",\"burl\":\"");
        substitute(burl, &values, &mut |piece| escape_json_bytes(piece, out));
        out.push(b'"');
    }
    if let Some(adm) = bid.adm {
        out.extend_from_slice(b",\"adm\":\"");
        match bid.adm_json {
            // Still escaped as the DSP wrote it: copy the text, escape only what we substitute.
            Some(escaped) => substitute_pieces(escaped, &values, &mut |piece, is_value| {
                if is_value {
                    escape_json_bytes(piece, out);
                } else {
                    out.extend_from_slice(piece);
                }
            }),
            None => substitute(adm, &values, &mut |piece| escape_json_bytes(piece, out)),
        }
        out.push(b'"');
    }
    for (name, mut items) in [
        ("adomain", response.adomain(bid)),
        ("cat", response.cat(bid)),
    ] {
        let Some(first) = items.next() else {
            continue;
        };
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":[\"");
        escape_json_into(first, out);
        out.push(b'"');
        for item in items {
            out.extend_from_slice(b",\"");
            escape_json_into(item, out);
            out.push(b'"');
        }
        out.push(b']');
    }
    for (name, value) in [("w", bid.w), ("h", bid.h)] {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            let mut digits = [0u8; 10];
            out.extend_from_slice(u32_digits(value, &mut digits));
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::{Auction, AuctionConfig, AuctionOutcome};
    use crate::json::{Decoder, Document};

    #[test]
    fn the_word_scan_finds_every_byte_that_needs_escaping() {
        for byte in 0u8..=255 {
            for position in 0..8 {
                let mut word = *b"abcdefgh";
                word[position] = byte;
                let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
                assert_eq!(
                    needs_escape(u64::from_le_bytes(word)),
                    expected,
                    "{byte} at {position}"
                );
            }
        }
        let long = "x".repeat(40) + "\"" + &"y".repeat(13) + "\u{1}";
        let mut out = Vec::new();
        escape_json_into(&long, &mut out);
        let expected = "x".repeat(40) + "\\\"" + &"y".repeat(13) + "\\u0001";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn escaping_round_trips_through_serde_json() {
        let nasty =
            "<a href=\"x\">'</a>\\ \u{1}\u{1f}\u{7f} \u{e9}\u{1F600} \n\r\t\u{8}\u{c} \u{2028}";
        let mut out = vec![b'"'];
        escape_json_into(nasty, &mut out);
        out.push(b'"');
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, nasty);
    }

    #[test]
    fn response_groups_winners_by_dsp_and_seat_and_substitutes_macros() {
        let mut decoder = Decoder::new();
        let mut req_doc = Document::default();
        let request = BidRequest::decode(
            br#"{"id":"auc\"1","at":2,"imp":[{"id":"i1","banner":{},"bidfloor":0.5},{"id":"i2","banner":{}},{"id":"i3","video":{"mimes":["video/mp4"]}}]}"#,
            &mut req_doc,
            &mut decoder,
        )
        .unwrap();
        let mut docs = [Document::default(), Document::default()];
        let [doc_a, doc_b] = &mut docs;
        let a = BidResponse::decode(
            br#"{"id":"auc\"1","bidid":"resp-a","seatbid":[{"seat":"s1","bid":[{"id":"b1","impid":"i1","price":2,"adm":"<img src=\"p?${AUCTION_PRICE}\">","burl":"http://b/${AUCTION_ID}/${AUCTION_BID_ID}","adomain":["a.com"],"w":300,"h":250,"nurl":"http://n/?p=${AUCTION_PRICE}&i=${AUCTION_IMP_ID}"},{"id":"b3","impid":"i3","price":1}]}]}"#,
            doc_a,
            &mut decoder,
        )
        .unwrap();
        let b = BidResponse::decode(
            br#"{"id":"auc\"1","seatbid":[{"seat":"s2","bid":[{"id":"b2","impid":"i2","price":3,"cat":["IAB1","IAB2"]},{"id":"b1x","impid":"i1","price":1}]}]}"#,
            doc_b,
            &mut decoder,
        )
        .unwrap();
        let responses = [a, b];
        let mut auction = Auction::new(AuctionConfig::default());
        let outcome = auction.run(&request, &responses);
        let mut out = Vec::new();
        assert!(encode_bid_response(
            &request,
            &responses,
            outcome,
            Some("x1"),
            &mut out
        ));
        let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let expected = serde_json::json!({
            "id": "auc\"1", "bidid": "x1", "cur": "USD",
            "seatbid": [
                {"seat": "s1", "bid": [
                    {"id": "b1", "impid": "i1", "price": 1.01,
                     "burl": "http://b/auc\"1/resp-a",
                     "adm": "<img src=\"p?1.01\">", "adomain": ["a.com"], "w": 300, "h": 250},
                    {"id": "b3", "impid": "i3", "price": 0.01}
                ]},
                {"seat": "s2", "bid": [
                    {"id": "b2", "impid": "i2", "price": 0.01, "cat": ["IAB1", "IAB2"]}
                ]}
            ]
        });
        assert_eq!(got, expected);
        let mut url = Vec::new();
        assert!(win_notice_url(
            &request,
            &responses[0],
            &outcome.winners[0],
            &mut url
        ));
        assert_eq!(url, b"http://n/?p=1.01&i=i1");
        assert!(!win_notice_url(
            &request,
            &responses[1],
            &outcome.winners[1],
            &mut url
        ));
    }

    #[test]
    fn forwarding_escaped_markup_equals_escaping_it_again() {
        let adms = [
            r#"plain ${AUCTION_PRICE}"#,
            r#"<VAST version=\"4.0\"><Ad id=\"${AUCTION_AD_ID}\">\u00e9\/\n\t</Ad></VAST>"#,
            r#"\\${AUCTION_PRICE}\\ ${AUCTION_SEAT_ID} ${UNKNOWN} $ {x} ${"#,
            r#"\ud83d\ude00 \u0000 \u001f \u2028"#,
            "",
        ];
        let mut decoder = Decoder::new();
        let mut req_doc = Document::default();
        let request = BidRequest::decode(
            br#"{"id":"a","imp":[{"id":"1","banner":{}}]}"#,
            &mut req_doc,
            &mut decoder,
        )
        .unwrap();
        let mut auction = Auction::new(AuctionConfig::default());
        for adm in adms {
            let raw = format!(
                r#"{{"id":"a","seatbid":[{{"seat":"s\"q","bid":[{{"id":"b","impid":"1","price":1,"adid":"x\"y","adm":"{adm}"}}]}}]}}"#
            );
            let mut doc = Document::default();
            let mut response = BidResponse::decode(raw.as_bytes(), &mut doc, &mut decoder).unwrap();
            assert!(response.bids[0].adm_json.is_some(), "{adm}");
            let outcome = auction
                .run(&request, std::slice::from_ref(&response))
                .winners
                .clone();
            let outcome = AuctionOutcome {
                winners: outcome,
                rejections: Vec::new(),
            };
            let mut forwarded = Vec::new();
            assert!(encode_bid_response(
                &request,
                std::slice::from_ref(&response),
                &outcome,
                None,
                &mut forwarded
            ));
            response.bids[0].adm_json = None;
            let mut escaped_again = Vec::new();
            assert!(encode_bid_response(
                &request,
                std::slice::from_ref(&response),
                &outcome,
                None,
                &mut escaped_again
            ));
            let forwarded: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
            let escaped_again: serde_json::Value = serde_json::from_slice(&escaped_again).unwrap();
            assert_eq!(forwarded, escaped_again, "{adm}");
        }
    }

    #[test]
    fn no_winner_writes_nothing() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let request = BidRequest::decode(
            br#"{"id":"a","imp":[{"id":"1","banner":{}}]}"#,
            &mut doc,
            &mut decoder,
        )
        .unwrap();
        let mut auction = Auction::new(AuctionConfig::default());
        let outcome = auction.run(&request, &[]);
        let mut out = b"stale".to_vec();
        assert!(!encode_bid_response(&request, &[], outcome, None, &mut out));
        assert!(out.is_empty());
    }
}
