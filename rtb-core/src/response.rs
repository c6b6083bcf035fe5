//! A DSP's OpenRTB bid response as a borrowed view: `id`, `cur`, `nbr` and every bid of every
//! seat, flattened in response order, with what the auction checks of each bid (price, deal,
//! markup type, size, domains, categories).
//!
//! A malformed *response* (not JSON, not an object, `seatbid` not an array) is a
//! [`ResponseError`]. A malformed *bid* (price as a string, `impid` missing...) does not spoil
//! its neighbours: the bid carries a [`BidDefect`] and the auction rejects it with a reason.

use simd_json::Node;
use smallvec::SmallVec;

use crate::error::ResponseError;
use crate::json::{
    array_items, as_f64, as_i64, as_str, is_array, is_null, is_object, object_entries, str_list,
    Decoder, Document, StrIter, StrListRef, TapeLoan,
};
use crate::request::DEFAULT_CURRENCY;

/// Most bids read from one response; the rest are ignored (and counted by the caller via
/// [`BidResponse::bids_dropped`]). A DSP answering thousands of bids must not cost the exchange
/// more than this.
pub const RESPONSE_BIDS_MAX: usize = 256;

/// Why a bid could not be read as a bid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BidDefect {
    /// `price` is absent.
    MissingPrice,
    /// `price` is not a JSON number (a string, an object...).
    PriceNotANumber,
    /// `impid` is absent or not a string.
    MissingImpId,
    /// `id` is absent or not a string.
    MissingBidId,
    /// A field has the wrong type; names the field.
    WrongType(&'static str),
}

/// One bid, with the seat it came under.
#[derive(Clone, Copy, Debug)]
pub struct Bid<'a> {
    /// `seatbid[].seat`, when given.
    pub seat: Option<&'a str>,
    /// `bid.id`
    pub id: &'a str,
    /// `bid.impid`
    pub impid: &'a str,
    /// `bid.price`, CPM (NaN when defective: see `defect`).
    pub price: f64,
    /// `bid.adid`
    pub adid: Option<&'a str>,
    /// `bid.crid`
    pub crid: Option<&'a str>,
    /// `bid.dealid`
    pub dealid: Option<&'a str>,
    /// `bid.nurl` (win notice URL, macros unsubstituted)
    pub nurl: Option<&'a str>,
    /// `bid.burl` (billing notice URL)
    pub burl: Option<&'a str>,
    /// `bid.lurl` (loss notice URL)
    pub lurl: Option<&'a str>,
    /// `bid.adm` (markup)
    pub adm: Option<&'a str>,
    /// `bid.adm` exactly as the DSP wrote it, still JSON-escaped: the encoder copies it
    /// instead of escaping the markup again (a 3 KB VAST document costs microseconds to
    /// re-escape). Valid UTF-8 JSON string content, as simd-json validated the whole body.
    pub adm_json: Option<&'a [u8]>,
    /// `bid.w`
    pub w: Option<u32>,
    /// `bid.h`
    pub h: Option<u32>,
    /// `bid.mtype`: the markup type, 1 banner, 2 video, 3 audio, 4 native.
    pub mtype: Option<u32>,
    /// Set when the bid is unusable; the auction rejects it.
    pub defect: Option<BidDefect>,
    adomain: StrListRef,
    cat: StrListRef,
}

/// A decoded bid response. Borrows its tape and its strings from the [`Document`]; dropping it gives the tape back.
pub struct BidResponse<'a> {
    tape: TapeLoan<'a>,
    /// `id`: must echo the request's id.
    pub id: &'a str,
    /// `cur` (USD when absent).
    pub cur: &'a str,
    /// `nbr`: the no-bid reason, when given.
    pub nbr: Option<i64>,
    /// `bidid`: the DSP's id for this response (`${AUCTION_BID_ID}`).
    pub bidid: Option<&'a str>,
    /// Every bid of every seat, in response order (at most [`RESPONSE_BIDS_MAX`]).
    pub bids: SmallVec<[Bid<'a>; 4]>,
    /// Bids beyond [`RESPONSE_BIDS_MAX`] that were ignored.
    pub bids_dropped: usize,
}

impl std::fmt::Debug for BidResponse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BidResponse")
            .field("id", &self.id)
            .field("cur", &self.cur)
            .field("nbr", &self.nbr)
            .field("bids", &self.bids)
            .finish_non_exhaustive()
    }
}

impl<'a> BidResponse<'a> {
    /// Decodes `raw` (copied into `doc`, which the view then borrows).
    pub fn decode(
        raw: &[u8],
        doc: &'a mut Document,
        decoder: &mut Decoder,
    ) -> Result<BidResponse<'a>, ResponseError> {
        let parsed = doc
            .parse(raw, decoder, true)
            .map_err(|e| ResponseError::MalformedJson { offset: e.index() })?;
        let mut response = BidResponse {
            tape: parsed.tape,
            id: "",
            cur: DEFAULT_CURRENCY,
            nbr: None,
            bidid: None,
            bids: SmallVec::new(),
            bids_dropped: 0,
        };
        let source = parsed.source;
        match response.fill() {
            Ok(()) => {
                for bid in response.bids.iter_mut() {
                    bid.adm_json = bid.adm.and_then(|adm| source.raw_text(adm));
                }
                Ok(response)
            }
            // Dropping the view gives the tape back to the document.
            Err(error) => Err(error),
        }
    }

    /// A bid's `adomain` list.
    pub fn adomain(&self, bid: &Bid<'a>) -> StrIter<'_, 'a> {
        bid.adomain.iter(self.tape.nodes())
    }

    /// A bid's `cat` list.
    pub fn cat(&self, bid: &Bid<'a>) -> StrIter<'_, 'a> {
        bid.cat.iter(self.tape.nodes())
    }

    fn fill(&mut self) -> Result<(), ResponseError> {
        let nodes: &[Node<'a>] = self.tape.nodes();
        if !is_object(nodes, 0) {
            return Err(ResponseError::Shape("(root)"));
        }
        let mut id = None;
        for (key, value) in object_entries(nodes, 0) {
            match key {
                "id" => id = Some(as_str(nodes, value).ok_or(ResponseError::Shape("id"))?),
                "cur" if !is_null(nodes, value) => {
                    self.cur = as_str(nodes, value).ok_or(ResponseError::Shape("cur"))?;
                }
                "nbr" => self.nbr = as_i64(nodes, value),
                "bidid" => self.bidid = as_str(nodes, value),
                "seatbid" => {
                    if is_null(nodes, value) {
                        continue;
                    }
                    if !is_array(nodes, value) {
                        return Err(ResponseError::Shape("seatbid"));
                    }
                    for seatbid in array_items(nodes, value) {
                        self.bids_dropped += read_seatbid(nodes, seatbid, &mut self.bids)?;
                    }
                }
                _ => {}
            }
        }
        self.id = id.ok_or(ResponseError::Shape("id"))?;
        Ok(())
    }
}

/// Reads one seatbid's bids into `bids`; returns how many were dropped over the cap.
fn read_seatbid<'a>(
    nodes: &[Node<'a>],
    index: usize,
    bids: &mut SmallVec<[Bid<'a>; 4]>,
) -> Result<usize, ResponseError> {
    if !is_object(nodes, index) {
        return Err(ResponseError::Shape("seatbid[]"));
    }
    let mut seat = None;
    let mut bid_array = None;
    for (key, value) in object_entries(nodes, index) {
        match key {
            "seat" => seat = as_str(nodes, value),
            "bid" => {
                if !is_array(nodes, value) {
                    return Err(ResponseError::Shape("seatbid[].bid"));
                }
                bid_array = Some(value);
            }
            _ => {}
        }
    }
    let mut dropped = 0;
    for item in bid_array.into_iter().flat_map(|a| array_items(nodes, a)) {
        if bids.len() >= RESPONSE_BIDS_MAX {
            dropped += 1;
            continue;
        }
        bids.push(read_bid(nodes, item, seat));
    }
    Ok(dropped)
}

/// Reads one bid. A bid that is not what it should be is kept, with its first defect, so the
/// auction can count it as rejected rather than lose it.
fn read_bid<'a>(nodes: &[Node<'a>], index: usize, seat: Option<&'a str>) -> Bid<'a> {
    let mut bid = unread_bid(seat);
    if !is_object(nodes, index) {
        bid.defect = Some(BidDefect::WrongType("bid"));
        return bid;
    }
    let mut required = RequiredBidFields::default();
    let mut defect = None;
    for (key, value) in object_entries(nodes, index) {
        if let Err(found) = read_bid_field(nodes, key, value, &mut bid, &mut required) {
            defect = defect.or(Some(found));
        }
    }
    bid.defect = required.missing().or(defect);
    bid
}

/// A bid with nothing read yet: no price (NaN), no optional field.
fn unread_bid(seat: Option<&str>) -> Bid<'_> {
    Bid {
        seat,
        id: "",
        impid: "",
        price: f64::NAN,
        adid: None,
        crid: None,
        dealid: None,
        nurl: None,
        burl: None,
        lurl: None,
        adm: None,
        adm_json: None,
        w: None,
        h: None,
        mtype: None,
        defect: None,
        adomain: StrListRef::ABSENT,
        cat: StrListRef::ABSENT,
    }
}

/// Which of a bid's required fields were present (a string `id`/`impid`, any `price`).
#[derive(Default)]
struct RequiredBidFields {
    id: bool,
    impid: bool,
    price: bool,
}

impl RequiredBidFields {
    /// The defect of the first required field missing, in the order the spec lists them.
    fn missing(&self) -> Option<BidDefect> {
        match (self.id, self.impid, self.price) {
            (false, _, _) => Some(BidDefect::MissingBidId),
            (_, false, _) => Some(BidDefect::MissingImpId),
            (_, _, false) => Some(BidDefect::MissingPrice),
            _ => None,
        }
    }
}

/// Reads one key of a bid object into `bid`; an unknown key is ignored, a known one of the
/// wrong type is the defect returned.
fn read_bid_field<'a>(
    nodes: &[Node<'a>],
    key: &str,
    value: usize,
    bid: &mut Bid<'a>,
    required: &mut RequiredBidFields,
) -> Result<(), BidDefect> {
    match key {
        "id" => {
            if let Some(s) = as_str(nodes, value) {
                bid.id = s;
                required.id = true;
            }
        }
        "impid" => {
            if let Some(s) = as_str(nodes, value) {
                bid.impid = s;
                required.impid = true;
            }
        }
        "price" => {
            required.price = true;
            bid.price = as_f64(nodes, value).ok_or(BidDefect::PriceNotANumber)?;
        }
        "adid" | "crid" | "dealid" | "nurl" | "burl" | "lurl" | "adm" => {
            let slot = optional_text_slot(bid, key);
            match as_str(nodes, value) {
                Some(s) => *slot = Some(s),
                None if is_null(nodes, value) => {}
                None => return Err(BidDefect::WrongType(static_key(key))),
            }
        }
        "w" => bid.w = as_u32(nodes, value),
        "h" => bid.h = as_u32(nodes, value),
        "mtype" => match as_u32(nodes, value) {
            Some(mtype) => bid.mtype = Some(mtype),
            None if is_null(nodes, value) => {}
            None => return Err(BidDefect::WrongType("mtype")),
        },
        "adomain" => {
            bid.adomain = str_list(nodes, value).ok_or(BidDefect::WrongType("adomain"))?;
        }
        "cat" => bid.cat = str_list(nodes, value).ok_or(BidDefect::WrongType("cat"))?,
        _ => {}
    }
    Ok(())
}

/// The field of `bid` that holds the optional string `key` (one of `adid`, `crid`, `dealid`,
/// `nurl`, `burl`, `lurl`, `adm`).
fn optional_text_slot<'b, 'a>(bid: &'b mut Bid<'a>, key: &str) -> &'b mut Option<&'a str> {
    match key {
        "adid" => &mut bid.adid,
        "crid" => &mut bid.crid,
        "dealid" => &mut bid.dealid,
        "nurl" => &mut bid.nurl,
        "burl" => &mut bid.burl,
        "lurl" => &mut bid.lurl,
        _ => &mut bid.adm,
    }
}

/// A non-negative integer that fits `u32`, or `None`.
fn as_u32(nodes: &[Node<'_>], index: usize) -> Option<u32> {
    as_i64(nodes, index).and_then(|v| u32::try_from(v).ok())
}

fn static_key(key: &str) -> &'static str {
    match key {
        "adid" => "adid",
        "crid" => "crid",
        "dealid" => "dealid",
        "nurl" => "nurl",
        "burl" => "burl",
        "lurl" => "lurl",
        _ => "adm",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_of_all_seats_are_flattened_with_their_seat() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"id":"r","cur":"EUR","seatbid":[{"seat":"a","bid":[{"id":"1","impid":"i","price":1.5,"adomain":["x.com"],"cat":["IAB1"],"w":300,"h":250,"mtype":1,"adm":"<b>\"hi\"</b>"}]},{"bid":[{"id":"2","impid":"i","price":2,"dealid":"d"}]}]}"#;
        let r = BidResponse::decode(raw, &mut doc, &mut decoder).unwrap();
        assert_eq!((r.id, r.cur, r.bids.len()), ("r", "EUR", 2));
        let b = r.bids[0];
        assert_eq!((b.seat, b.id, b.impid, b.price), (Some("a"), "1", "i", 1.5));
        assert_eq!(
            (b.w, b.h, b.mtype, b.adm),
            (Some(300), Some(250), Some(1), Some("<b>\"hi\"</b>"))
        );
        assert_eq!(b.adm_json, Some(&br#"<b>\"hi\"</b>"#[..]));
        assert_eq!(r.adomain(&b).collect::<Vec<_>>(), ["x.com"]);
        assert_eq!(r.cat(&b).collect::<Vec<_>>(), ["IAB1"]);
        let b = r.bids[1];
        assert_eq!((b.seat, b.price, b.dealid), (None, 2.0, Some("d")));
        assert_eq!(b.defect, None);
    }

    #[test]
    fn defective_bids_are_marked_not_fatal() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"id":"r","seatbid":[{"bid":[{"id":"1","impid":"i","price":"1.5"},{"id":"2","price":1},{"id":"3","impid":"i"},{"impid":"i","price":1},{"id":"5","impid":"i","price":1,"adm":5},{"id":"6","impid":"i","price":1},{"id":"7","impid":"i","price":1,"mtype":"1"},{"id":"8","impid":"i","price":1,"mtype":-2}]}]}"#;
        let r = BidResponse::decode(raw, &mut doc, &mut decoder).unwrap();
        let defects: Vec<_> = r.bids.iter().map(|b| b.defect).collect();
        assert_eq!(
            defects,
            [
                Some(BidDefect::PriceNotANumber),
                Some(BidDefect::MissingImpId),
                Some(BidDefect::MissingPrice),
                Some(BidDefect::MissingBidId),
                Some(BidDefect::WrongType("adm")),
                None,
                Some(BidDefect::WrongType("mtype")),
                Some(BidDefect::WrongType("mtype")),
            ]
        );
    }

    #[test]
    fn response_shape_errors() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        for (raw, expected) in [
            (&b"[]"[..], ResponseError::Shape("(root)")),
            (b"{}", ResponseError::Shape("id")),
            (
                br#"{"id":"r","seatbid":{}}"#,
                ResponseError::Shape("seatbid"),
            ),
            (
                br#"{"id":"r","seatbid":[1]}"#,
                ResponseError::Shape("seatbid[]"),
            ),
            (
                br#"{"id":"r","seatbid":[{"bid":{}}]}"#,
                ResponseError::Shape("seatbid[].bid"),
            ),
            (b"{\"id\":", ResponseError::MalformedJson { offset: 5 }),
        ] {
            assert_eq!(
                BidResponse::decode(raw, &mut doc, &mut decoder).unwrap_err(),
                expected
            );
        }
        let ok = BidResponse::decode(br#"{"id":"r","nbr":2}"#, &mut doc, &mut decoder).unwrap();
        assert_eq!((ok.nbr, ok.bids.len()), (Some(2), 0));
    }

    #[test]
    fn bids_over_the_cap_are_dropped_and_counted() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let bids: Vec<String> = (0..RESPONSE_BIDS_MAX + 3)
            .map(|i| format!(r#"{{"id":"{i}","impid":"1","price":1}}"#))
            .collect();
        let raw = format!(r#"{{"id":"r","seatbid":[{{"bid":[{}]}}]}}"#, bids.join(","));
        let r = BidResponse::decode(raw.as_bytes(), &mut doc, &mut decoder).unwrap();
        assert_eq!((r.bids.len(), r.bids_dropped), (RESPONSE_BIDS_MAX, 3));
    }
}
