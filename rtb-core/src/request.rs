//! The OpenRTB 2.x bid request as the exchange sees it: a borrowed view of only the fields an
//! auction needs, decoded and validated in one walk over simd-json's tape.
//!
//! Strings are `&'a str` into the [`Document`]'s bytes (escaped strings too: simd-json unescapes
//! in place). String lists (`bcat`, `badv`, `cur`, `wseat`, `bseat`, a deal's `wseat`) and the
//! deals stay on the tape the view owns and are read on demand, so a request with 35 blocked
//! categories costs no allocation. Everything else in the body is skipped by its tape span.
//! Unknown fields and unknown enum values are tolerated, as OpenRTB 2.6 requires.
//!
//! That is the whole of [`ValidationMode::Lenient`]. The default, [`ValidationMode::Strict`],
//! then walks the same tape once more against the whole object model ([`crate::validate`]).

use simd_json::Node;
use smallvec::SmallVec;

use crate::error::{FieldPath, RequestError, Rule};
use crate::json::{
    array_items, as_f64, as_i64, as_str, is_null, is_object, object_entries, str_list, Decoder,
    Document, Parsed, Source, StrIter, StrListRef, TapeLoan,
};
use crate::validate::{self, native::NativeParser, ValidationMode};

/// Most impressions accepted in one request; more is a 400 (`imp: too many items`).
pub const REQUEST_IMPS_MAX: usize = 64;
/// Most deals accepted in one impression's `pmp.deals`.
pub const IMP_DEALS_MAX: usize = 64;
/// Currency OpenRTB assumes when `cur`/`bidfloorcur` is absent.
pub const DEFAULT_CURRENCY: &str = "USD";

/// Auction type when the request has no `at` (OpenRTB default: second price plus).
pub const DEFAULT_AUCTION_TYPE: i64 = 2;

pub use crate::media::MediaTypes;

/// The distribution channel object of the request (OpenRTB allows at most one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// `site`
    Site,
    /// `app`
    App,
    /// `dooh`
    Dooh,
}

/// Where the top-level `tmax` sits in the raw body, so it can be rewritten per DSP without
/// re-encoding (see [`crate::splice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TmaxSite {
    /// The value's bytes are `raw[start..end]`.
    Value {
        /// First byte of the value.
        start: u32,
        /// One past its last byte.
        end: u32,
    },
    /// No `tmax` key: a new member goes right after the opening brace at `insert_at - 1`.
    Absent {
        /// Byte offset just after the top-level `{`.
        insert_at: u32,
        /// Whether the object is `{}` (then no comma follows the inserted member).
        object_empty: bool,
    },
    /// A `tmax` spelled with escapes (`"t\u006dax"`): decoded, but not found in the raw bytes.
    /// Splicing refuses rather than add a duplicate key.
    Unlocatable,
}

/// One impression: what the auction needs of `imp[i]`.
#[derive(Clone, Copy, Debug)]
pub struct Imp<'a> {
    /// `imp.id`
    pub id: &'a str,
    /// `imp.bidfloor` (0 when absent), CPM.
    pub bidfloor: f64,
    /// `imp.bidfloorcur` (USD when absent).
    pub bidfloorcur: &'a str,
    /// Which of banner, video, audio, native are present.
    pub media: MediaTypes,
    /// `imp.pmp.private_auction == 1`: only deal bids may win.
    pub private_auction: bool,
    deals: StrListRef,
    /// Tape index of `imp.banner`, 0 when absent (index 0 is always the root).
    banner: u32,
}

/// One deal of `imp.pmp.deals`, read from the tape on demand.
#[derive(Clone, Copy, Debug)]
pub struct Deal<'a> {
    /// `deal.id`
    pub id: &'a str,
    /// `deal.bidfloor` (0 when absent).
    pub bidfloor: f64,
    /// `deal.bidfloorcur`; when absent, the impression's `bidfloorcur`. (The spec's default is
    /// USD, but the IAB's own DOOH examples put GBP deals in a GBP request without it: a floor
    /// inherits its impression's currency, which is what those examples mean.)
    pub bidfloorcur: &'a str,
    /// `deal.at`: 1 first price, 2 second price, 3 the floor is the agreed price.
    pub at: Option<i64>,
    wseat: StrListRef,
}

/// A decoded, validated bid request. Borrows its tape and its strings from the [`Document`]; dropping it gives the tape back.
pub struct BidRequest<'a> {
    tape: TapeLoan<'a>,
    /// `id`
    pub id: &'a str,
    /// `imp[]`, in request order.
    pub imps: SmallVec<[Imp<'a>; 4]>,
    /// `tmax` in ms, when given.
    pub tmax_ms: Option<u32>,
    /// `at` (2 when absent); 1 is first price, every other value is auctioned second price.
    pub at: i64,
    /// `test == 1`
    pub test: bool,
    /// `site`, `app` or `dooh`, when present.
    pub channel: Option<Channel>,
    /// `site.publisher.id` (or `app.`, `dooh.`), when it is a string; not validated (the
    /// ledger records it, no rule depends on it).
    pub publisher_id: Option<&'a str>,
    /// `device.geo.country` when it is three ASCII letters (upper-cased); not validated (only
    /// DSP country filters read it, [`crate::policy`]).
    pub country: Option<[u8; 3]>,
    /// Where `tmax` sits in the raw body.
    pub tmax_site: TmaxSite,
    cur: StrListRef,
    bcat: StrListRef,
    badv: StrListRef,
    wseat: StrListRef,
    bseat: StrListRef,
}

impl std::fmt::Debug for BidRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BidRequest")
            .field("id", &self.id)
            .field("imps", &self.imps)
            .field("tmax_ms", &self.tmax_ms)
            .field("at", &self.at)
            .field("cur", &self.currencies().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> BidRequest<'a> {
    /// Decodes `raw` (copied into `doc`, which the view then borrows) and validates it in the
    /// default mode, [`ValidationMode::Strict`].
    pub fn decode(
        raw: &[u8],
        doc: &'a mut Document,
        decoder: &mut Decoder,
    ) -> Result<BidRequest<'a>, RequestError> {
        Self::decode_with(raw, doc, decoder, ValidationMode::default())
    }

    /// Decodes `raw` and validates it in `mode`: the fields the auction reads always, the
    /// whole OpenRTB 2.6 object model and the Native request too when strict (see
    /// [`crate::validate`]).
    pub fn decode_with(
        raw: &[u8],
        doc: &'a mut Document,
        decoder: &mut Decoder,
        mode: ValidationMode,
    ) -> Result<BidRequest<'a>, RequestError> {
        let Parsed {
            tape,
            source,
            native,
        } = doc
            .parse(raw, decoder, false)
            .map_err(|e| RequestError::malformed(&e))?;
        let tmax_site = locate_tmax(raw, tape.nodes(), &source);
        let mut request = BidRequest {
            tape,
            id: "",
            imps: SmallVec::new(),
            tmax_ms: None,
            at: DEFAULT_AUCTION_TYPE,
            test: false,
            channel: None,
            publisher_id: None,
            country: None,
            tmax_site,
            cur: StrListRef::ABSENT,
            bcat: StrListRef::ABSENT,
            badv: StrListRef::ABSENT,
            wseat: StrListRef::ABSENT,
            bseat: StrListRef::ABSENT,
        };
        let mut checked = request.fill();
        if checked.is_ok() && mode == ValidationMode::Strict {
            checked = validate::request(request.tape.nodes(), NativeParser::new(native, decoder));
        }
        match checked {
            Ok(()) => Ok(request),
            // Dropping the view gives the tape back to the document.
            Err(error) => Err(error),
        }
    }

    /// `cur`: currencies allowed for bids (USD when absent).
    pub fn currencies(&self) -> impl Iterator<Item = &'a str> + '_ {
        let explicit = self.cur.iter(self.tape.nodes());
        let default = (!self.cur.is_present()).then_some(DEFAULT_CURRENCY);
        explicit.chain(default)
    }

    /// The currency the auction is held in: the first of `cur`, USD when absent. rtb-core has no
    /// exchange rates, so bids in any other currency are rejected.
    pub fn auction_currency(&self) -> &'a str {
        self.cur
            .iter(self.tape.nodes())
            .next()
            .unwrap_or(DEFAULT_CURRENCY)
    }

    /// `bcat`: blocked advertiser categories.
    pub fn bcat(&self) -> StrIter<'_, 'a> {
        self.bcat.iter(self.tape.nodes())
    }

    /// `badv`: blocked advertiser domains.
    pub fn badv(&self) -> StrIter<'_, 'a> {
        self.badv.iter(self.tape.nodes())
    }

    /// `wseat`: the only buyer seats allowed to bid (empty: all).
    pub fn wseat(&self) -> StrIter<'_, 'a> {
        self.wseat.iter(self.tape.nodes())
    }

    /// `bseat`: buyer seats blocked from bidding.
    pub fn bseat(&self) -> StrIter<'_, 'a> {
        self.bseat.iter(self.tape.nodes())
    }

    /// The deals of an impression, in request order.
    pub fn deals(&self, imp: &Imp<'a>) -> impl Iterator<Item = Deal<'a>> + '_ {
        let nodes = self.tape.nodes();
        let imp_currency = imp.bidfloorcur;
        let array = imp.deals.array_index as usize;
        let items = if imp.deals.is_present() {
            Some(array)
        } else {
            None
        };
        items
            .into_iter()
            .flat_map(move |array| array_items(nodes, array))
            .filter_map(move |item| decode_deal(nodes, item, 0, 0, imp_currency).ok())
    }

    /// A deal's `wseat` (empty: any seat).
    pub fn deal_wseat(&self, deal: &Deal<'a>) -> StrIter<'_, 'a> {
        deal.wseat.iter(self.tape.nodes())
    }

    /// Whether a `w` x `h` banner creative fits the impression's banner: its `w`/`h` or one
    /// of its `format`s, flexible ratios included. `None` when the impression has no banner or
    /// its banner names no size, so there is nothing to check against.
    pub fn banner_accepts(&self, imp: &Imp<'a>, w: u32, h: u32) -> Option<bool> {
        if imp.banner == 0 {
            return None;
        }
        crate::creative::banner_accepts(self.tape.nodes(), imp.banner as usize, w, h)
    }

    /// Index of the impression with this id.
    pub fn imp_index(&self, imp_id: &str) -> Option<usize> {
        self.imps.iter().position(|imp| imp.id == imp_id)
    }

    fn fill(&mut self) -> Result<(), RequestError> {
        let nodes: &[Node<'a>] = self.tape.nodes();
        if !is_object(nodes, 0) {
            return Err(RequestError::new(FieldPath::top(""), Rule::NotAnObject));
        }
        let mut seen = 0u32;
        let mut id = None;
        let mut imp_index = None;
        for (key, value) in object_entries(nodes, 0) {
            let (bit, name) = match key {
                "id" => (1, "id"),
                "imp" => (2, "imp"),
                "tmax" => (4, "tmax"),
                "at" => (8, "at"),
                "cur" => (16, "cur"),
                "bcat" => (32, "bcat"),
                "badv" => (64, "badv"),
                "wseat" => (128, "wseat"),
                "bseat" => (256, "bseat"),
                "test" => (512, "test"),
                "site" => (1024, "site"),
                "app" => (2048, "app"),
                "dooh" => (4096, "dooh"),
                "device" => (8192, "device"),
                _ => continue,
            };
            let field = FieldPath::top(name);
            first_time(&mut seen, bit, field)?;
            match bit {
                1 => id = Some(required_str(nodes, value, field)?),
                2 => imp_index = Some(value),
                4 => self.tmax_ms = Some(tmax_ms(nodes, value, field)?),
                8 => self.at = auction_type(nodes, value, field)?,
                16 => self.cur = optional_str_list(nodes, value, field)?,
                32 => self.bcat = optional_str_list(nodes, value, field)?,
                64 => self.badv = optional_str_list(nodes, value, field)?,
                128 => self.wseat = optional_str_list(nodes, value, field)?,
                256 => self.bseat = optional_str_list(nodes, value, field)?,
                512 => self.test = test_flag(nodes, value, field)?,
                8192 => self.country = device_country(nodes, value),
                // A null channel object is as if absent.
                _ if is_null(nodes, value) => {}
                _ => {
                    self.publisher_id = channel_publisher(nodes, value, field, self.channel)?;
                    self.channel = Some(match bit {
                        1024 => Channel::Site,
                        2048 => Channel::App,
                        _ => Channel::Dooh,
                    });
                }
            }
        }
        self.id = id.ok_or(RequestError::new(FieldPath::top("id"), Rule::Missing))?;
        let imp_index = imp_index.ok_or(RequestError::new(FieldPath::top("imp"), Rule::Missing))?;
        decode_imps(nodes, imp_index, &mut self.imps)?;
        if matches!(self.tmax_site, TmaxSite::Absent { .. }) && self.tmax_ms.is_some() {
            self.tmax_site = TmaxSite::Unlocatable;
        }
        Ok(())
    }
}

/// The publisher id of the `site`, `app` or `dooh` object at `value`, which must be an object
/// and the only channel object of the request (`earlier` is the one already seen).
fn channel_publisher<'a>(
    nodes: &[Node<'a>],
    value: usize,
    field: FieldPath,
    earlier: Option<Channel>,
) -> Result<Option<&'a str>, RequestError> {
    if !is_object(nodes, value) {
        return Err(RequestError::new(field, Rule::WrongType(MUST_BE_OBJECT)));
    }
    if earlier.is_some() {
        return Err(RequestError::new(
            field,
            Rule::OnlyOneOf("only one of site, app, dooh"),
        ));
    }
    Ok(publisher_id(nodes, value))
}

/// `tmax`: a positive integer of milliseconds that fits a `u32`.
fn tmax_ms(nodes: &[Node<'_>], value: usize, field: FieldPath) -> Result<u32, RequestError> {
    let tmax =
        as_i64(nodes, value).ok_or(RequestError::new(field, Rule::WrongType(MUST_BE_INTEGER)))?;
    if tmax <= 0 {
        return Err(RequestError::new(field, Rule::MustBePositive));
    }
    u32::try_from(tmax).map_err(|_| RequestError::new(field, Rule::OutOfRange))
}

/// `at`, the auction type: an integer of at least 1.
fn auction_type(nodes: &[Node<'_>], value: usize, field: FieldPath) -> Result<i64, RequestError> {
    let at =
        as_i64(nodes, value).ok_or(RequestError::new(field, Rule::WrongType(MUST_BE_INTEGER)))?;
    if at < 1 {
        return Err(RequestError::new(field, Rule::OutOfRange));
    }
    Ok(at)
}

/// `test`: 0 or 1, null as 0.
fn test_flag(nodes: &[Node<'_>], value: usize, field: FieldPath) -> Result<bool, RequestError> {
    match as_i64(nodes, value) {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(RequestError::new(field, Rule::OutOfRange)),
        None if is_null(nodes, value) => Ok(false),
        None => Err(RequestError::new(field, Rule::WrongType(MUST_BE_INTEGER))),
    }
}

/// `device.geo.country` as three upper-case letters, when it is three ASCII letters.
fn device_country(nodes: &[Node<'_>], device: usize) -> Option<[u8; 3]> {
    if !is_object(nodes, device) {
        return None;
    }
    let (_, geo) = object_entries(nodes, device).find(|(key, _)| *key == "geo")?;
    if !is_object(nodes, geo) {
        return None;
    }
    let (_, country) = object_entries(nodes, geo).find(|(key, _)| *key == "country")?;
    let code: [u8; 3] = as_str(nodes, country)?.as_bytes().try_into().ok()?;
    code.iter()
        .all(u8::is_ascii_alphabetic)
        .then(|| code.map(|b| b.to_ascii_uppercase()))
}

/// `publisher.id` of a channel object, when both are what they should be.
fn publisher_id<'a>(nodes: &[Node<'a>], channel: usize) -> Option<&'a str> {
    let (_, publisher) = object_entries(nodes, channel).find(|(key, _)| *key == "publisher")?;
    if !is_object(nodes, publisher) {
        return None;
    }
    let (_, id) = object_entries(nodes, publisher).find(|(key, _)| *key == "id")?;
    as_str(nodes, id)
}

const MUST_BE_STRING: &str = "must be a string";
const MUST_BE_NUMBER: &str = "must be a number";
const MUST_BE_INTEGER: &str = "must be an integer";
const MUST_BE_OBJECT: &str = "must be an object";
const MUST_BE_ARRAY: &str = "must be an array";
const MUST_BE_STR_ARRAY: &str = "must be an array of strings";

/// Refuses a second copy of a key the exchange reads (`bit` names it within its object): with
/// two values the exchange and a DSP could read different requests.
fn first_time(seen: &mut u32, bit: u32, field: FieldPath) -> Result<(), RequestError> {
    if *seen & bit != 0 {
        return Err(RequestError::new(field, Rule::Duplicate));
    }
    *seen |= bit;
    Ok(())
}

fn required_str<'a>(
    nodes: &[Node<'a>],
    index: usize,
    field: FieldPath,
) -> Result<&'a str, RequestError> {
    let value =
        as_str(nodes, index).ok_or(RequestError::new(field, Rule::WrongType(MUST_BE_STRING)))?;
    if value.is_empty() {
        return Err(RequestError::new(field, Rule::Empty));
    }
    Ok(value)
}

fn optional_str_list(
    nodes: &[Node<'_>],
    index: usize,
    field: FieldPath,
) -> Result<StrListRef, RequestError> {
    if is_null(nodes, index) {
        return Ok(StrListRef::ABSENT);
    }
    str_list(nodes, index).ok_or(RequestError::new(field, Rule::WrongType(MUST_BE_STR_ARRAY)))
}

fn floor(nodes: &[Node<'_>], index: usize, field: FieldPath) -> Result<f64, RequestError> {
    let value =
        as_f64(nodes, index).ok_or(RequestError::new(field, Rule::WrongType(MUST_BE_NUMBER)))?;
    if !(value >= 0.0 && value.is_finite()) {
        return Err(RequestError::new(field, Rule::MustNotBeNegative));
    }
    Ok(value)
}

fn decode_imps<'a>(
    nodes: &[Node<'a>],
    array: usize,
    imps: &mut SmallVec<[Imp<'a>; 4]>,
) -> Result<(), RequestError> {
    let field = FieldPath::top("imp");
    let len = match nodes.get(array) {
        Some(Node::Array { len, .. }) => *len,
        _ => return Err(RequestError::new(field, Rule::WrongType(MUST_BE_ARRAY))),
    };
    if len == 0 {
        return Err(RequestError::new(field, Rule::Empty));
    }
    if len > REQUEST_IMPS_MAX {
        return Err(RequestError::new(field, Rule::TooMany));
    }
    for (i, item) in array_items(nodes, array).enumerate() {
        let imp = decode_imp(nodes, item, i)?;
        if imps.iter().any(|other| other.id == imp.id) {
            return Err(RequestError::new(FieldPath::imp(i, "id"), Rule::Duplicate));
        }
        imps.push(imp);
    }
    Ok(())
}

fn decode_imp<'a>(nodes: &[Node<'a>], index: usize, i: usize) -> Result<Imp<'a>, RequestError> {
    if !is_object(nodes, index) {
        return Err(RequestError::new(
            FieldPath::imp(i, ""),
            Rule::WrongType(MUST_BE_OBJECT),
        ));
    }
    let mut imp = Imp {
        id: "",
        bidfloor: 0.0,
        bidfloorcur: DEFAULT_CURRENCY,
        media: MediaTypes::default(),
        private_auction: false,
        deals: StrListRef::ABSENT,
        banner: 0,
    };
    let mut id = None;
    let mut seen = 0u32;
    for (key, value) in object_entries(nodes, index) {
        let (bit, name) = match key {
            "id" => (1, "id"),
            "bidfloor" => (2, "bidfloor"),
            "bidfloorcur" => (4, "bidfloorcur"),
            "pmp" => (8, "pmp"),
            "banner" => (16, "banner"),
            "video" => (32, "video"),
            "audio" => (64, "audio"),
            "native" => (128, "native"),
            _ => continue,
        };
        first_time(&mut seen, bit, FieldPath::imp(i, name))?;
        let media = match key {
            "id" => {
                id = Some(required_str(nodes, value, FieldPath::imp(i, "id"))?);
                continue;
            }
            "bidfloor" => {
                imp.bidfloor = floor(nodes, value, FieldPath::imp(i, "bidfloor"))?;
                continue;
            }
            "bidfloorcur" => {
                imp.bidfloorcur = required_str(nodes, value, FieldPath::imp(i, "bidfloorcur"))?;
                continue;
            }
            "pmp" => {
                decode_pmp(nodes, value, i, &mut imp)?;
                continue;
            }
            "banner" => MediaTypes::BANNER,
            "video" => MediaTypes::VIDEO,
            "audio" => MediaTypes::AUDIO,
            "native" => MediaTypes::NATIVE,
            _ => continue,
        };
        if is_object(nodes, value) {
            imp.media.insert(media);
            if media == MediaTypes::BANNER {
                imp.banner = u32::try_from(value).unwrap_or(0);
            }
        } else if !is_null(nodes, value) {
            return Err(RequestError::new(
                FieldPath::imp(i, key_name(key)),
                Rule::WrongType(MUST_BE_OBJECT),
            ));
        }
    }
    imp.id = id.ok_or(RequestError::new(FieldPath::imp(i, "id"), Rule::Missing))?;
    if imp.media.is_empty() {
        return Err(RequestError::new(
            FieldPath::imp(i, ""),
            Rule::NeedsMediaType,
        ));
    }
    Ok(imp)
}

fn key_name(key: &str) -> &'static str {
    match key {
        "banner" => "banner",
        "video" => "video",
        "audio" => "audio",
        _ => "native",
    }
}

fn decode_pmp(
    nodes: &[Node<'_>],
    index: usize,
    i: usize,
    imp: &mut Imp<'_>,
) -> Result<(), RequestError> {
    if is_null(nodes, index) {
        return Ok(());
    }
    if !is_object(nodes, index) {
        return Err(RequestError::new(
            FieldPath::imp(i, "pmp"),
            Rule::WrongType(MUST_BE_OBJECT),
        ));
    }
    let mut seen = 0u32;
    for (key, value) in object_entries(nodes, index) {
        match key {
            "private_auction" => {
                first_time(&mut seen, 1, FieldPath::imp(i, "pmp.private_auction"))?
            }
            "deals" => first_time(&mut seen, 2, FieldPath::imp(i, "pmp.deals"))?,
            _ => continue,
        }
        match key {
            "private_auction" => {
                let field = FieldPath::imp(i, "pmp.private_auction");
                imp.private_auction = match as_i64(nodes, value) {
                    Some(0) => false,
                    Some(1) => true,
                    Some(_) => return Err(RequestError::new(field, Rule::OutOfRange)),
                    None => return Err(RequestError::new(field, Rule::WrongType(MUST_BE_INTEGER))),
                };
            }
            "deals" => {
                let field = FieldPath::imp(i, "pmp.deals");
                let len = match nodes.get(value) {
                    Some(Node::Array { len, .. }) => *len,
                    _ if is_null(nodes, value) => continue,
                    _ => return Err(RequestError::new(field, Rule::WrongType(MUST_BE_ARRAY))),
                };
                if len > IMP_DEALS_MAX {
                    return Err(RequestError::new(field, Rule::TooMany));
                }
                let mut first_ids: SmallVec<[&str; 8]> = SmallVec::new();
                for (j, item) in array_items(nodes, value).enumerate() {
                    let deal = decode_deal(nodes, item, i, j, DEFAULT_CURRENCY)?;
                    // Duplicate deal ids would make a bid's `dealid` ambiguous. Only the first
                    // few are checked pairwise: beyond that the cost is quadratic for nothing.
                    if first_ids.contains(&deal.id) {
                        return Err(RequestError::new(
                            FieldPath::deal(i, j, "id"),
                            Rule::Duplicate,
                        ));
                    }
                    if first_ids.len() < first_ids.inline_size() {
                        first_ids.push(deal.id);
                    }
                }
                imp.deals = StrListRef {
                    array_index: u32::try_from(value)
                        .map_err(|_| RequestError::new(field, Rule::TooMany))?,
                };
            }
            _ => {}
        }
    }
    Ok(())
}

fn decode_deal<'a>(
    nodes: &[Node<'a>],
    index: usize,
    i: usize,
    j: usize,
    default_currency: &'a str,
) -> Result<Deal<'a>, RequestError> {
    if !is_object(nodes, index) {
        return Err(RequestError::new(
            FieldPath::deal(i, j, ""),
            Rule::WrongType(MUST_BE_OBJECT),
        ));
    }
    let mut deal = Deal {
        id: "",
        bidfloor: 0.0,
        bidfloorcur: default_currency,
        at: None,
        wseat: StrListRef::ABSENT,
    };
    let mut id = None;
    let mut seen = 0u32;
    for (key, value) in object_entries(nodes, index) {
        let (bit, name) = match key {
            "id" => (1, "id"),
            "bidfloor" => (2, "bidfloor"),
            "bidfloorcur" => (4, "bidfloorcur"),
            "at" => (8, "at"),
            "wseat" => (16, "wseat"),
            _ => continue,
        };
        first_time(&mut seen, bit, FieldPath::deal(i, j, name))?;
        match key {
            "id" => id = Some(required_str(nodes, value, FieldPath::deal(i, j, "id"))?),
            "bidfloor" => deal.bidfloor = floor(nodes, value, FieldPath::deal(i, j, "bidfloor"))?,
            "bidfloorcur" => {
                deal.bidfloorcur = required_str(nodes, value, FieldPath::deal(i, j, "bidfloorcur"))?
            }
            "at" => {
                let field = FieldPath::deal(i, j, "at");
                let at = as_i64(nodes, value)
                    .ok_or(RequestError::new(field, Rule::WrongType(MUST_BE_INTEGER)))?;
                if at < 1 {
                    return Err(RequestError::new(field, Rule::OutOfRange));
                }
                deal.at = Some(at);
            }
            "wseat" => {
                deal.wseat = optional_str_list(nodes, value, FieldPath::deal(i, j, "wseat"))?
            }
            _ => {}
        }
    }
    deal.id = id.ok_or(RequestError::new(
        FieldPath::deal(i, j, "id"),
        Rule::Missing,
    ))?;
    Ok(deal)
}

/// Finds the top-level `tmax` member in the raw bytes. The tape's root entries give the key
/// (a dozen steps: nested objects are skipped by their spans); the key's address gives its
/// place in the body, since simd-json unescapes a string in place from where its raw text
/// starts; the structural indexes after it bound the value. A key spelled with escapes is not
/// `"tmax"` in the raw bytes and is passed over, as the byte search this replaces did.
pub(crate) fn locate_tmax(raw: &[u8], nodes: &[Node<'_>], source: &Source<'_, '_>) -> TmaxSite {
    let structurals = source.structurals;
    let at = |k: usize| structurals.get(k).map(|&p| p as usize);
    let Some(open) = at(0) else {
        return TmaxSite::Unlocatable;
    };
    if raw.get(open) != Some(&b'{') {
        return TmaxSite::Unlocatable;
    }
    for (key, _) in object_entries(nodes, 0) {
        if key != "tmax" {
            continue;
        }
        let Some(quote) = (key.as_ptr() as usize).checked_sub(source.base_address + 1) else {
            return TmaxSite::Unlocatable;
        };
        if raw.get(quote..quote + 6) != Some(&b"\"tmax\""[..]) {
            continue;
        }
        let Ok(Ok(k)) = u32::try_from(quote).map(|q| structurals.binary_search(&q)) else {
            return TmaxSite::Unlocatable;
        };
        let (Some(value_start), Some(value_end)) = (at(k + 2), at(k + 3)) else {
            return TmaxSite::Unlocatable;
        };
        let mut end = value_end;
        while end > value_start && raw.get(end - 1).is_some_and(u8::is_ascii_whitespace) {
            end -= 1;
        }
        return match (u32::try_from(value_start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => TmaxSite::Value { start, end },
            _ => TmaxSite::Unlocatable,
        };
    }
    match u32::try_from(open + 1) {
        Ok(insert_at) => TmaxSite::Absent {
            insert_at,
            object_empty: at(1).and_then(|p| raw.get(p)) == Some(&b'}'),
        },
        Err(_) => TmaxSite::Unlocatable,
    }
}

/// How many tape nodes a request used: exposed for tests of the skipping logic.
#[cfg(test)]
pub(crate) fn value_span(request: &BidRequest<'_>, index: usize) -> usize {
    crate::json::span(request.tape.nodes(), index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<String, String> {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        BidRequest::decode(json.as_bytes(), &mut doc, &mut decoder)
            .map(|r| format!("{}:{}", r.id, r.imps.len()))
            .map_err(|e| e.to_string())
    }

    fn err(json: &str) -> String {
        decode(json).unwrap_err()
    }

    const IMP: &str = r#"{"id":"1","banner":{}}"#;

    #[test]
    fn minimal_request_decodes_with_defaults() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = format!(r#"{{"id":"r1","imp":[{IMP}]}}"#);
        let r = BidRequest::decode(raw.as_bytes(), &mut doc, &mut decoder).unwrap();
        assert_eq!(r.id, "r1");
        assert_eq!(r.at, 2);
        assert_eq!(r.tmax_ms, None);
        assert_eq!(r.auction_currency(), "USD");
        assert_eq!(r.currencies().collect::<Vec<_>>(), ["USD"]);
        assert_eq!(r.imps[0].bidfloor, 0.0);
        assert_eq!(r.imps[0].bidfloorcur, "USD");
        assert!(r.imps[0].media.contains(MediaTypes::BANNER));
        assert_eq!(
            r.tmax_site,
            TmaxSite::Absent {
                insert_at: 1,
                object_empty: false
            }
        );
        assert_eq!(value_span(&r, 0), r.tape.nodes().len());
    }

    #[test]
    fn every_validation_rule_names_its_field() {
        let cases = [
            ("[]", "must be a JSON object"),
            ("{", "malformed JSON at byte 0"),
            (r#"{"imp":[]}"#, "id: missing"),
            (r#"{"id":"","imp":[]}"#, "id: must not be empty"),
            (r#"{"id":7,"imp":[]}"#, "id: must be a string"),
            (r#"{"id":"a"}"#, "imp: missing"),
            (r#"{"id":"a","imp":[]}"#, "imp: must not be empty"),
            (r#"{"id":"a","imp":{}}"#, "imp: must be an array"),
            (r#"{"id":"a","imp":[7]}"#, "imp[0]: must be an object"),
            (r#"{"id":"a","imp":[{"banner":{}}]}"#, "imp[0].id: missing"),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{}},{"banner":{}}]}"#,
                "imp[1].id: missing",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{}},{"id":"1","video":{}}]}"#,
                "imp[1].id: duplicate",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1"}]}"#,
                "imp[0]: needs one of banner, video, audio, native",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":null}]}"#,
                "imp[0]: needs one of banner, video, audio, native",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":[]}]}"#,
                "imp[0].banner: must be an object",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"bidfloor":-1}]}"#,
                "imp[0].bidfloor: must be >= 0",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"bidfloor":"1"}]}"#,
                "imp[0].bidfloor: must be a number",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"bidfloorcur":""}]}"#,
                "imp[0].bidfloorcur: must not be empty",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"deals":[{"bidfloor":1}]}}]}"#,
                "imp[0].pmp.deals[0].id: missing",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"deals":[{"id":"d"},{"id":"d"}]}}]}"#,
                "imp[0].pmp.deals[1].id: duplicate",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"private_auction":2}}]}"#,
                "imp[0].pmp.private_auction: out of range",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"deals":[{"id":"d","at":0}]}}]}"#,
                "imp[0].pmp.deals[0].at: out of range",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"deals":[{"id":"d","wseat":[1]}]}}]}"#,
                "imp[0].pmp.deals[0].wseat: must be an array of strings",
            ),
            (
                &format!(r#"{{"id":"a","tmax":0,"imp":[{IMP}]}}"#),
                "tmax: must be > 0",
            ),
            (
                &format!(r#"{{"id":"a","tmax":-5,"imp":[{IMP}]}}"#),
                "tmax: must be > 0",
            ),
            (
                &format!(r#"{{"id":"a","tmax":"80","imp":[{IMP}]}}"#),
                "tmax: must be an integer",
            ),
            (
                &format!(r#"{{"id":"a","tmax":99999999999,"imp":[{IMP}]}}"#),
                "tmax: out of range",
            ),
            (
                &format!(r#"{{"id":"a","tmax":80,"tmax":90,"imp":[{IMP}]}}"#),
                "tmax: duplicate",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","id":"2","banner":{}}]}"#,
                "imp[0].id: duplicate",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"bidfloor":1,"bidfloor":0}]}"#,
                "imp[0].bidfloor: duplicate",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"deals":[],"deals":[{"id":"x"}]}}]}"#,
                "imp[0].pmp.deals: duplicate",
            ),
            (
                r#"{"id":"a","imp":[{"id":"1","banner":{},"pmp":{"deals":[{"id":"d","bidfloor":1,"bidfloor":2}]}}]}"#,
                "imp[0].pmp.deals[0].bidfloor: duplicate",
            ),
            (
                &format!(r#"{{"id":"a","at":0,"imp":[{IMP}]}}"#),
                "at: out of range",
            ),
            (
                &format!(r#"{{"id":"a","test":2,"imp":[{IMP}]}}"#),
                "test: out of range",
            ),
            (
                &format!(r#"{{"id":"a","bcat":"IAB1","imp":[{IMP}]}}"#),
                "bcat: must be an array of strings",
            ),
            (
                &format!(r#"{{"id":"a","cur":["USD",1],"imp":[{IMP}]}}"#),
                "cur: must be an array of strings",
            ),
            (
                &format!(r#"{{"id":"a","site":{{}},"app":{{}},"imp":[{IMP}]}}"#),
                "app: only one of site, app, dooh",
            ),
            (
                &format!(r#"{{"id":"a","site":5,"imp":[{IMP}]}}"#),
                "site: must be an object",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(err(json), expected, "for {json}");
        }
    }

    #[test]
    fn too_many_imps_is_refused() {
        let imps: Vec<String> = (0..=REQUEST_IMPS_MAX)
            .map(|i| format!(r#"{{"id":"{i}","banner":{{}}}}"#))
            .collect();
        let json = format!(r#"{{"id":"a","imp":[{}]}}"#, imps.join(","));
        assert_eq!(err(&json), "imp: too many items");
    }

    #[test]
    fn unknown_fields_and_enum_values_are_tolerated() {
        let json = r#"{"id":"a","at":501,"future":{"x":[1,{"y":null}]},"imp":[{"id":"1","video":{"mimes":["video/mp4"],"plcmt":99},"ext":{"prebid":{}}}],"ext":{"gdpr":1},"regs":{"ext":{"gdpr":1}}}"#;
        assert_eq!(decode(json).unwrap(), "a:1");
    }

    #[test]
    fn escaped_strings_borrow_unescaped() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"id":"a\"b\u00e9\n","imp":[{"id":"\u0031","native":{"request":"{\"assets\":[{\"id\":1,\"title\":{\"len\":25}}]}"}}],"bcat":["IAB\/1"]}"#;
        let r = BidRequest::decode(raw, &mut doc, &mut decoder).unwrap();
        assert_eq!(r.id, "a\"b\u{e9}\n");
        assert_eq!(r.imps[0].id, "1");
        assert_eq!(r.bcat().collect::<Vec<_>>(), ["IAB/1"]);
    }

    #[test]
    fn lists_and_deals_read_from_the_tape() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"id":"a","cur":["EUR","USD"],"wseat":["s1"],"bseat":["s2"],"badv":["x.com"],"imp":[{"id":"1","banner":{},"pmp":{"private_auction":1,"deals":[{"id":"d1","bidfloor":2.5,"at":3,"wseat":["s1","s3"]},{"id":"d2"}]}}]}"#;
        let r = BidRequest::decode(raw, &mut doc, &mut decoder).unwrap();
        assert_eq!(r.auction_currency(), "EUR");
        assert_eq!(r.currencies().collect::<Vec<_>>(), ["EUR", "USD"]);
        assert_eq!(r.wseat().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(r.bseat().collect::<Vec<_>>(), ["s2"]);
        assert_eq!(r.badv().collect::<Vec<_>>(), ["x.com"]);
        let imp = r.imps[0];
        assert!(imp.private_auction);
        let deals: Vec<_> = r.deals(&imp).collect();
        assert_eq!(deals.len(), 2);
        assert_eq!(
            (deals[0].id, deals[0].bidfloor, deals[0].at),
            ("d1", 2.5, Some(3))
        );
        assert_eq!(r.deal_wseat(&deals[0]).collect::<Vec<_>>(), ["s1", "s3"]);
        assert_eq!(
            (deals[1].id, deals[1].bidfloor, deals[1].at),
            ("d2", 0.0, None)
        );
    }

    #[test]
    fn tmax_is_located_in_raw_bytes() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"id":"a","x":{"tmax":1},"tmax" : 120 ,"imp":[{"id":"1","banner":{}}]}"#;
        let r = BidRequest::decode(raw, &mut doc, &mut decoder).unwrap();
        let TmaxSite::Value { start, end } = r.tmax_site else {
            panic!("{:?}", r.tmax_site)
        };
        assert_eq!(&raw[start as usize..end as usize], b"120");
        drop(r);
        let raw = br#"{"id":"a","t\u006dax":120,"imp":[{"id":"1","banner":{}}]}"#;
        let r = BidRequest::decode(raw, &mut doc, &mut decoder).unwrap();
        assert_eq!(r.tmax_ms, Some(120));
        assert_eq!(r.tmax_site, TmaxSite::Unlocatable);
    }

    #[test]
    fn the_tape_goes_back_to_its_document_when_the_view_is_dropped() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = format!(r#"{{"id":"r1","imp":[{IMP}]}}"#);
        let r = BidRequest::decode(raw.as_bytes(), &mut doc, &mut decoder).unwrap();
        let used = r.tape.nodes().len();
        assert!(used > 0);
        drop(r);
        assert!(doc.spare_tape.0.is_empty());
        assert!(doc.spare_tape.0.capacity() >= used);
        // A failed decode gives it back too.
        assert!(BidRequest::decode(b"{\"id\":1}", &mut doc, &mut decoder).is_err());
        assert!(doc.spare_tape.0.capacity() >= used);
    }
}
