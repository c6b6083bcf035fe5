//! Shared fixtures of the rtb benchmarks and their tests: loading the OpenRTB samples (with
//! built-in fallbacks when the shared folder is absent), the two baselines rtb-core is measured
//! against (serde into the owned `openrtb26` model, serde/sonic-rs into a borrowed partial view)
//! with the same validation rules as rtb-core, DSP response builders, and [`run_pipeline`]:
//! one auction through the shipped engine (`rtb_core::engine`) with three canned DSP answers,
//! which the `pipeline/3-dsps` bench times and `tests/alloc.rs` proves allocation-free.
//!
//! Everything here runs at setup time except [`run_pipeline`] and the `decode_*`/`validate_*`
//! functions, which are the measured code.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use rtb_core::engine::{
    Answer, CallStatus, DspSpec, Engine, EngineConfig, Start, WorkerLoad, Workspace,
};
use rtb_core::json::{Decoder, Document};
use rtb_core::request::{BidRequest, Channel, MediaTypes};
use rtb_core::ValidationMode;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The samples folder, relative to the workspace root.
pub const SAMPLES_DIR_FROM_WORKSPACE: &str = "../shared/openrtb-samples";

/// The request samples of the 2.4-3.5 KB class the targets are stated over (file-name prefixes;
/// 06 is 2380 bytes, the rest 2435-3528).
pub const MID_SIZE_PREFIXES: [&str; 5] = ["04-", "06-", "13-", "15-", "18-"];

/// Currency OpenRTB assumes when none is given.
pub const USD: &str = "USD";

/// Auction type when a request has none (OpenRTB: second price plus).
pub const DEFAULT_AT: i64 = 2;

/// Where the OpenRTB samples live: `<workspace root>/../shared/openrtb-samples`.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SAMPLES_DIR_FROM_WORKSPACE)
}

/// One JSON body and the name it is reported under.
#[derive(Clone, Debug)]
pub struct Sample {
    /// File stem (`04-iab26-req-video`) or `builtin-...`.
    pub stem: String,
    /// The raw body.
    pub bytes: Vec<u8>,
}

/// Reads the sample files whose name contains `needle`, sorted by name; `None` when the folder
/// is absent or unreadable (a message is printed).
fn read_samples(needle: &str) -> Option<Vec<Sample>> {
    let dir = samples_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            println!(
                "samples folder {} absent ({e}): using built-in requests",
                dir.display()
            );
            return None;
        }
    };
    let mut samples: Vec<Sample> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .filter_map(|path| {
            let stem = path.file_stem()?.to_str()?.to_owned();
            if !stem.contains(needle) {
                return None;
            }
            let bytes = std::fs::read(&path).ok()?;
            Some(Sample { stem, bytes })
        })
        .collect();
    samples.sort_by(|a, b| a.stem.cmp(&b.stem));
    Some(samples)
}

/// Every request sample (`-req-` in the name), or the built-in requests when the folder is
/// absent.
pub fn request_samples() -> Vec<Sample> {
    read_samples("-req-").unwrap_or_else(builtin_requests)
}

/// The 2.4-3.5 KB request samples ([`MID_SIZE_PREFIXES`]), or the built-in requests.
pub fn mid_size_request_samples() -> Vec<Sample> {
    let samples: Vec<Sample> = request_samples()
        .into_iter()
        .filter(|s| s.stem.starts_with("builtin-") || is_mid_size(&s.stem))
        .collect();
    if samples.is_empty() {
        builtin_requests()
    } else {
        samples
    }
}

/// Whether a sample stem is one of the 2.4-3.5 KB class.
pub fn is_mid_size(stem: &str) -> bool {
    MID_SIZE_PREFIXES.iter().any(|p| stem.starts_with(p))
}

/// The response sample whose stem starts with `prefix` (e.g. `"19-"`), if the folder has it.
pub fn response_sample(prefix: &str) -> Option<Vec<u8>> {
    read_samples("-resp-")?
        .into_iter()
        .find(|s| s.stem.starts_with(prefix))
        .map(|s| s.bytes)
}

/// Requests used when the samples folder is absent: a banner request with a private deal and
/// a two-impression video/banner app request, both of realistic size.
pub fn builtin_requests() -> Vec<Sample> {
    vec![
        Sample {
            stem: "builtin-site-banner-pmp".to_owned(),
            bytes: BUILTIN_SITE_BANNER_PMP.as_bytes().to_vec(),
        },
        Sample {
            stem: "builtin-app-video-2imp".to_owned(),
            bytes: BUILTIN_APP_VIDEO.as_bytes().to_vec(),
        },
    ]
}

const BUILTIN_SITE_BANNER_PMP: &str = r#"{"id":"builtin-req-1","at":1,"tmax":150,"cur":["USD"],
"imp":[{"id":"1","tagid":"top-slot","bidfloor":0.75,"bidfloorcur":"USD","secure":1,
"banner":{"w":300,"h":250,"format":[{"w":300,"h":250},{"w":320,"h":50}],"pos":1,"api":[3,5]},
"pmp":{"private_auction":0,"deals":[{"id":"deal-1","bidfloor":1.5,"bidfloorcur":"USD","at":1,
"wseat":["seat-a","seat-b"]},{"id":"deal-2","bidfloor":2.0,"at":3}]}}],
"site":{"id":"s1","domain":"news.example.com","page":"https://news.example.com/a/b?c=d",
"cat":["IAB12"],"publisher":{"id":"pub-1","name":"Example \"News\""},
"content":{"language":"en","keywords":"politics,economy,weather"}},
"device":{"ua":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
"ip":"192.0.2.10","devicetype":2,"language":"en","geo":{"country":"USA","region":"CA","city":"San Jose","zip":"95131","lat":37.4,"lon":-121.9,"type":2}},
"user":{"id":"u-1","buyeruid":"b-1","ext":{"consent":"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA","eids":[{"source":"id5-sync.com","uids":[{"id":"ID5*abcdef0123456789","atype":1}]}]}},
"bcat":["IAB25","IAB26","IAB7-39","IAB8-18","IAB8-5","IAB9-9"],"badv":["bad.example","worse.example"],
"source":{"fd":1,"tid":"tid-1","schain":{"complete":1,"ver":"1.0","nodes":[{"asi":"ex.com","sid":"1","hp":1}]}},
"regs":{"coppa":0,"gdpr":1,"us_privacy":"1YNN"}}"#;

const BUILTIN_APP_VIDEO: &str = r#"{"id":"builtin-req-2","at":2,"tmax":200,"cur":["USD"],
"imp":[{"id":"v1","bidfloor":2.5,"bidfloorcur":"USD","rwdd":1,
"video":{"mimes":["video/mp4","video/webm"],"minduration":5,"maxduration":30,"protocols":[2,3,5,6,7,8],
"w":1280,"h":720,"startdelay":0,"placement":1,"plcmt":1,"linearity":1,"skip":1,"skipafter":5,"api":[1,2,7]}},
{"id":"b2","bidfloor":0.3,"banner":{"w":320,"h":50,"format":[{"w":320,"h":50}]}}],
"app":{"id":"app-1","name":"Puzzle \u00e9dition","bundle":"com.example.puzzle","storeurl":"https://play.google.com/store/apps/details?id=com.example.puzzle",
"cat":["IAB9-30"],"ver":"4.2.1","publisher":{"id":"pub-9","name":"Example Games"}},
"device":{"ua":"Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
"ifa":"38400000-8cf0-11bd-b23e-10b96e40000d","ip":"198.51.100.7","make":"Google","model":"Pixel 7","os":"Android","osv":"13",
"devicetype":4,"connectiontype":2,"lmt":0,"geo":{"country":"DEU","lat":52.52,"lon":13.4,"type":2,"utcoffset":60}},
"user":{"id":"u-9","yob":1990,"gender":"F","ext":{"consent":"CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}},
"bcat":["IAB25","IAB26"],"wseat":["seat-a","seat-b","seat-c"],"test":0,
"source":{"tid":"tid-2","ext":{"schain":{"complete":1,"ver":"1.0","nodes":[{"asi":"ex.com","sid":"9","hp":1}]}}},
"regs":{"gdpr":1},"ext":{"prebid":{"debug":false,"targeting":{"includewinners":true}}}}"#;

// ---------------------------------------------------------------------------------------------
// The borrowed partial view (serde_json and sonic-rs baselines)
// ---------------------------------------------------------------------------------------------

/// A string borrowed from the input when it has no escapes, owned otherwise. A newtype because
/// serde only borrows a `Cow` that is a field's whole type, not one nested in `Option`/`Vec`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Str<'_> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The fields of a bid request rtb-core reads, as a borrowed serde view.
#[derive(Debug, Deserialize)]
pub struct ViewRequest<'a> {
    /// `id`
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    /// `imp`
    #[serde(borrow, default)]
    pub imp: Vec<ViewImp<'a>>,
    /// `tmax`
    pub tmax: Option<i64>,
    /// `at`
    pub at: Option<i64>,
    /// `cur`
    #[serde(borrow)]
    pub cur: Option<Vec<Str<'a>>>,
    /// `bcat`
    #[serde(borrow)]
    pub bcat: Option<Vec<Str<'a>>>,
    /// `badv`
    #[serde(borrow)]
    pub badv: Option<Vec<Str<'a>>>,
    /// `wseat`
    #[serde(borrow)]
    pub wseat: Option<Vec<Str<'a>>>,
    /// `bseat`
    #[serde(borrow)]
    pub bseat: Option<Vec<Str<'a>>>,
    /// `test`
    pub test: Option<i64>,
    /// `site` presence
    pub site: Option<IgnoredAny>,
    /// `app` presence
    pub app: Option<IgnoredAny>,
    /// `dooh` presence
    pub dooh: Option<IgnoredAny>,
}

/// `imp[]` of [`ViewRequest`].
#[derive(Debug, Deserialize)]
pub struct ViewImp<'a> {
    /// `imp.id`
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    /// `imp.bidfloor`
    pub bidfloor: Option<f64>,
    /// `imp.bidfloorcur`
    #[serde(borrow)]
    pub bidfloorcur: Option<Str<'a>>,
    /// `imp.banner` presence
    pub banner: Option<IgnoredAny>,
    /// `imp.video` presence
    pub video: Option<IgnoredAny>,
    /// `imp.audio` presence
    pub audio: Option<IgnoredAny>,
    /// `imp.native` presence
    pub native: Option<IgnoredAny>,
    /// `imp.pmp`
    #[serde(borrow)]
    pub pmp: Option<ViewPmp<'a>>,
}

/// `imp.pmp` of [`ViewImp`].
#[derive(Debug, Deserialize)]
pub struct ViewPmp<'a> {
    /// `pmp.private_auction`
    pub private_auction: Option<i64>,
    /// `pmp.deals`
    #[serde(borrow, default)]
    pub deals: Vec<ViewDeal<'a>>,
}

/// `pmp.deals[]` of [`ViewPmp`].
#[derive(Debug, Deserialize)]
pub struct ViewDeal<'a> {
    /// `deal.id`
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    /// `deal.bidfloor`
    pub bidfloor: Option<f64>,
    /// `deal.bidfloorcur`
    #[serde(borrow)]
    pub bidfloorcur: Option<Str<'a>>,
    /// `deal.at`
    pub at: Option<i64>,
    /// `deal.wseat`
    #[serde(borrow)]
    pub wseat: Option<Vec<Str<'a>>>,
}

/// Why a baseline decode was refused (static messages, like rtb-core's rules).
pub type Invalid = &'static str;

/// The request-level rules rtb-core applies, over the borrowed view.
pub fn validate_view(view: &ViewRequest<'_>) -> Result<(), Invalid> {
    if view.id.as_ref().is_none_or(|id| id.0.is_empty()) {
        return Err("id: missing or empty");
    }
    if view.imp.is_empty() {
        return Err("imp: missing or empty");
    }
    if view.tmax.is_some_and(|t| t <= 0) {
        return Err("tmax: must be positive");
    }
    for (i, imp) in view.imp.iter().enumerate() {
        let id = match &imp.id {
            Some(id) if !id.0.is_empty() => id.as_str(),
            _ => return Err("imp[].id: missing or empty"),
        };
        if view.imp[..i]
            .iter()
            .any(|other| other.id.as_ref().is_some_and(|o| o.as_str() == id))
        {
            return Err("imp[].id: duplicate");
        }
        if imp.banner.is_none()
            && imp.video.is_none()
            && imp.audio.is_none()
            && imp.native.is_none()
        {
            return Err("imp[]: no media type");
        }
    }
    Ok(())
}

/// serde_json into the borrowed view, then validation.
pub fn decode_view_serde_json(raw: &[u8]) -> Result<ViewRequest<'_>, Invalid> {
    let view: ViewRequest<'_> = serde_json::from_slice(raw).map_err(|_| "malformed")?;
    validate_view(&view)?;
    Ok(view)
}

/// sonic-rs into the borrowed view, then validation.
pub fn decode_view_sonic(raw: &[u8]) -> Result<ViewRequest<'_>, Invalid> {
    let view: ViewRequest<'_> = sonic_rs::from_slice(raw).map_err(|_| "malformed")?;
    validate_view(&view)?;
    Ok(view)
}

// ---------------------------------------------------------------------------------------------
// The owned openrtb26 model (serde_json-owned baseline)
// ---------------------------------------------------------------------------------------------

/// The request-level rules rtb-core applies, over the owned `openrtb26` model. The model makes
/// `id` and `imp[].id` required fields (a missing one is a decode error), so only emptiness and
/// uniqueness are left to check here.
pub fn validate_owned(request: &openrtb26::BidRequest) -> Result<(), Invalid> {
    if request.id.is_empty() {
        return Err("id: empty");
    }
    if request.imp.is_empty() {
        return Err("imp: empty");
    }
    if request.tmax.is_some_and(|t| t <= 0) {
        return Err("tmax: must be positive");
    }
    for (i, imp) in request.imp.iter().enumerate() {
        if imp.id.is_empty() {
            return Err("imp[].id: empty");
        }
        if request.imp[..i].iter().any(|other| other.id == imp.id) {
            return Err("imp[].id: duplicate");
        }
        if imp.banner.is_none()
            && imp.video.is_none()
            && imp.audio.is_none()
            && imp.native.is_none()
        {
            return Err("imp[]: no media type");
        }
    }
    Ok(())
}

/// serde_json into the owned `openrtb26` model, then validation.
pub fn decode_owned(raw: &[u8]) -> Result<openrtb26::BidRequest, Invalid> {
    let request: openrtb26::BidRequest = serde_json::from_slice(raw).map_err(|_| "malformed")?;
    validate_owned(&request)?;
    Ok(request)
}

// ---------------------------------------------------------------------------------------------
// A decoder-neutral form of the view fields, so the four decoders can be compared
// ---------------------------------------------------------------------------------------------

/// The fields rtb-core reads, with its defaults applied (floor 0, currency USD, at 2, absent
/// lists empty, `cur` USD when absent, a deal's `bidfloorcur` that of its impression).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewFields {
    /// `id`
    pub id: String,
    /// `imp[]`
    pub imps: Vec<ImpFields>,
    /// `tmax`
    pub tmax: Option<i64>,
    /// `at`
    pub at: i64,
    /// `cur`
    pub cur: Vec<String>,
    /// `bcat`
    pub bcat: Vec<String>,
    /// `badv`
    pub badv: Vec<String>,
    /// `wseat`
    pub wseat: Vec<String>,
    /// `bseat`
    pub bseat: Vec<String>,
    /// `test == 1`
    pub test: bool,
    /// `"site"`, `"app"`, `"dooh"` or `""`.
    pub channel: &'static str,
}

/// One impression of [`ViewFields`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImpFields {
    /// `imp.id`
    pub id: String,
    /// `imp.bidfloor`
    pub bidfloor: f64,
    /// `imp.bidfloorcur`
    pub bidfloorcur: String,
    /// banner, video, audio, native presence
    pub media: [bool; 4],
    /// `pmp.private_auction == 1`
    pub private_auction: bool,
    /// `pmp.deals[]`
    pub deals: Vec<DealFields>,
}

/// One deal of [`ImpFields`].
#[derive(Clone, Debug, PartialEq)]
pub struct DealFields {
    /// `deal.id`
    pub id: String,
    /// `deal.bidfloor`
    pub bidfloor: f64,
    /// `deal.bidfloorcur`
    pub bidfloorcur: String,
    /// `deal.at`
    pub at: Option<i64>,
    /// `deal.wseat`
    pub wseat: Vec<String>,
}

fn strs<'s>(items: impl Iterator<Item = &'s str>) -> Vec<String> {
    items.map(str::to_owned).collect()
}

fn view_strs(list: &Option<Vec<Str<'_>>>) -> Vec<String> {
    list.iter().flatten().map(|s| s.0.to_string()).collect()
}

fn owned_strs(list: &Option<Vec<String>>) -> Vec<String> {
    list.iter().flatten().cloned().collect()
}

fn channel_name(site: bool, app: bool, dooh: bool) -> &'static str {
    match (site, app, dooh) {
        (true, _, _) => "site",
        (_, true, _) => "app",
        (_, _, true) => "dooh",
        _ => "",
    }
}

impl ViewFields {
    /// From rtb-core's view.
    pub fn from_rtb_core(request: &BidRequest<'_>) -> Self {
        let imps = request
            .imps
            .iter()
            .map(|imp| ImpFields {
                id: imp.id.to_owned(),
                bidfloor: imp.bidfloor,
                bidfloorcur: imp.bidfloorcur.to_owned(),
                media: [
                    imp.media.contains(MediaTypes::BANNER),
                    imp.media.contains(MediaTypes::VIDEO),
                    imp.media.contains(MediaTypes::AUDIO),
                    imp.media.contains(MediaTypes::NATIVE),
                ],
                private_auction: imp.private_auction,
                deals: request
                    .deals(imp)
                    .map(|deal| DealFields {
                        id: deal.id.to_owned(),
                        bidfloor: deal.bidfloor,
                        bidfloorcur: deal.bidfloorcur.to_owned(),
                        at: deal.at,
                        wseat: strs(request.deal_wseat(&deal)),
                    })
                    .collect(),
            })
            .collect();
        Self {
            id: request.id.to_owned(),
            imps,
            tmax: request.tmax_ms.map(i64::from),
            at: request.at,
            cur: strs(request.currencies()),
            bcat: strs(request.bcat()),
            badv: strs(request.badv()),
            wseat: strs(request.wseat()),
            bseat: strs(request.bseat()),
            test: request.test,
            channel: match request.channel {
                Some(Channel::Site) => "site",
                Some(Channel::App) => "app",
                Some(Channel::Dooh) => "dooh",
                None => "",
            },
        }
    }

    /// From the borrowed serde view.
    pub fn from_view(view: &ViewRequest<'_>) -> Self {
        let text = |s: &Option<Str<'_>>| s.as_ref().map(|s| s.0.to_string()).unwrap_or_default();
        let currency = |s: &Option<Str<'_>>| {
            s.as_ref()
                .map_or_else(|| USD.to_owned(), |s| s.0.to_string())
        };
        let imps = view
            .imp
            .iter()
            .map(|imp| ImpFields {
                id: text(&imp.id),
                bidfloor: imp.bidfloor.unwrap_or(0.0),
                bidfloorcur: currency(&imp.bidfloorcur),
                media: [
                    imp.banner.is_some(),
                    imp.video.is_some(),
                    imp.audio.is_some(),
                    imp.native.is_some(),
                ],
                private_auction: imp.pmp.as_ref().and_then(|p| p.private_auction) == Some(1),
                deals: imp
                    .pmp
                    .iter()
                    .flat_map(|p| &p.deals)
                    .map(|deal| DealFields {
                        id: text(&deal.id),
                        bidfloor: deal.bidfloor.unwrap_or(0.0),
                        bidfloorcur: deal
                            .bidfloorcur
                            .as_ref()
                            .map_or_else(|| currency(&imp.bidfloorcur), |s| s.0.to_string()),
                        at: deal.at,
                        wseat: view_strs(&deal.wseat),
                    })
                    .collect(),
            })
            .collect();
        Self {
            id: text(&view.id),
            imps,
            tmax: view.tmax,
            at: view.at.unwrap_or(DEFAULT_AT),
            cur: match &view.cur {
                Some(cur) => cur.iter().map(|s| s.0.to_string()).collect(),
                None => vec![USD.to_owned()],
            },
            bcat: view_strs(&view.bcat),
            badv: view_strs(&view.badv),
            wseat: view_strs(&view.wseat),
            bseat: view_strs(&view.bseat),
            test: view.test == Some(1),
            channel: channel_name(view.site.is_some(), view.app.is_some(), view.dooh.is_some()),
        }
    }

    /// From the owned `openrtb26` model.
    pub fn from_owned(request: &openrtb26::BidRequest) -> Self {
        let imps = request
            .imp
            .iter()
            .map(|imp| ImpFields {
                id: imp.id.clone(),
                bidfloor: imp.bidfloor.unwrap_or(0.0),
                bidfloorcur: imp.bidfloorcur.clone(),
                media: [
                    imp.banner.is_some(),
                    imp.video.is_some(),
                    imp.audio.is_some(),
                    imp.native.is_some(),
                ],
                private_auction: imp.pmp.as_ref().map(|p| p.private_auction) == Some(1),
                deals: imp
                    .pmp
                    .iter()
                    .flat_map(|p| p.deals.iter().flatten())
                    .map(|deal| DealFields {
                        id: deal.id.clone(),
                        bidfloor: deal.bidfloor.unwrap_or(0.0),
                        // openrtb26 fills an absent deal currency with USD, so "USD" here may
                        // mean "absent" (rtb-core: the impression's currency). No sample has
                        // an explicit USD deal floor under a non-USD impression.
                        bidfloorcur: if deal.bidfloorcur == USD {
                            imp.bidfloorcur.clone()
                        } else {
                            deal.bidfloorcur.clone()
                        },
                        at: deal.at.map(i64::from),
                        wseat: owned_strs(&deal.wseat),
                    })
                    .collect(),
            })
            .collect();
        Self {
            id: request.id.clone(),
            imps,
            tmax: request.tmax.map(i64::from),
            at: i64::from(request.at),
            cur: match &request.cur {
                Some(cur) => cur.clone(),
                None => vec![USD.to_owned()],
            },
            bcat: owned_strs(&request.bcat),
            badv: owned_strs(&request.badv),
            wseat: owned_strs(&request.wseat),
            bseat: owned_strs(&request.bseat),
            test: request.test == 1,
            channel: channel_name(
                request.site.is_some(),
                request.app.is_some(),
                request.dooh.is_some(),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DSP responses
// ---------------------------------------------------------------------------------------------

/// What a response builder needs to know of the request it answers.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    /// `id`
    pub id: String,
    /// Auction currency (first of `cur`, USD when absent).
    pub currency: String,
    /// Per impression.
    pub imps: Vec<ImpFacts>,
}

/// What a response builder needs to know of one impression.
#[derive(Clone, Debug)]
pub struct ImpFacts {
    /// `imp.id`
    pub id: String,
    /// `imp.bidfloor`
    pub floor: f64,
    /// The first deal's id and floor, if the impression has deals.
    pub deal: Option<(String, f64)>,
    /// The banner's size (its `w`/`h`, else its first format's), when it gives one.
    pub banner_size: Option<(u64, u64)>,
}

impl RequestFacts {
    /// Reads the facts of a request sample with rtb-core (setup time).
    pub fn of(raw: &[u8]) -> Option<Self> {
        let mut doc = Document::default();
        let mut decoder = Decoder::new();
        let request = BidRequest::decode(raw, &mut doc, &mut decoder).ok()?;
        let reference: serde_json::Value = serde_json::from_slice(raw).ok()?;
        let imps = request
            .imps
            .iter()
            .zip(reference["imp"].as_array()?)
            .map(|(imp, json)| {
                let deal = request
                    .deals(imp)
                    .next()
                    .map(|d| (d.id.to_owned(), d.bidfloor));
                let banner = &json["banner"];
                let banner_size = [banner, &banner["format"][0]]
                    .into_iter()
                    .find_map(|b| Some((b["w"].as_u64()?, b["h"].as_u64()?)));
                ImpFacts {
                    id: imp.id.to_owned(),
                    floor: imp.bidfloor,
                    deal,
                    banner_size,
                }
            })
            .collect();
        Some(Self {
            id: request.id.to_owned(),
            currency: request.auction_currency().to_owned(),
            imps,
        })
    }
}

/// A 20-style fallback answer (two seats, a deal bid) used when a sample file is absent.
const FALLBACK_RESPONSE: &str = r#"{"id":"x","seatbid":[{"bid":[{"id":"b1","impid":"1","price":1.0,
"adid":"ad-1","nurl":"http://ads.example/win/1?won=${AUCTION_PRICE}",
"adm":"<div class=\"ad\"><a href=\"https://ads.example/c?p=${AUCTION_PRICE}\"><img src=\"https://cdn.example/i.png\" width=\"300\" height=\"250\"></a></div>",
"adomain":["ads.example"],"cid":"c-1","crid":"cr-1","w":300,"h":250,"cat":["IAB3"]}],"seat":"42"},
{"bid":[{"id":"b2","impid":"1","price":0.5,"adid":"ad-2","adm":"<iframe />","adomain":["ads.example"],
"crid":"cr-2"}],"seat":"772"}],"cur":"USD"}"#;

/// Rewrites a DSP response template so it answers `facts`: response `id` and `cur` set, bid
/// `i` aimed at impression `i % imps` with a price above its floor (`uplift` times the floor
/// plus `bonus`), `dealid` set to that impression's first deal (or removed when it has
/// none), priced above the deal floor, and a creative size (`w`, `h`) made the banner's, so
/// the exchange's size check passes it.
pub fn adapt_response(template: &[u8], facts: &RequestFacts, uplift: f64, bonus: f64) -> Vec<u8> {
    let mut value: serde_json::Value = match serde_json::from_slice(template) {
        Ok(v) => v,
        Err(_) => serde_json::from_str(FALLBACK_RESPONSE).unwrap_or_default(),
    };
    value["id"] = facts.id.clone().into();
    value["cur"] = facts.currency.clone().into();
    let mut n = 0usize;
    if let Some(seats) = value["seatbid"].as_array_mut() {
        for seat in seats {
            let Some(bids) = seat["bid"].as_array_mut() else {
                continue;
            };
            for bid in bids {
                let ImpFacts {
                    id: imp_id,
                    floor,
                    deal,
                    banner_size,
                } = &facts.imps[n % facts.imps.len()];
                let mut price = floor * uplift + bonus + 0.01 * n as f64;
                let obj = bid.as_object_mut();
                if let Some(obj) = obj {
                    obj.insert("impid".into(), imp_id.clone().into());
                    match (deal, obj.contains_key("dealid")) {
                        (Some((deal_id, deal_floor)), true) => {
                            obj.insert("dealid".into(), deal_id.clone().into());
                            price = price.max(deal_floor * uplift + bonus);
                        }
                        _ => {
                            obj.remove("dealid");
                        }
                    }
                    obj.insert("price".into(), price.into());
                    if let (Some((w, h)), true) = (banner_size, obj.contains_key("w")) {
                        obj.insert("w".into(), (*w).into());
                        obj.insert("h".into(), (*h).into());
                    }
                }
                n += 1;
            }
        }
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The three DSP answers of the pipeline bench, after samples 19 (VAST 4 inline, nurl/lurl),
/// 14 (native, nurl/burl) and 20 (two seats, a deal), adapted to `request`.
pub fn pipeline_responses(request: &[u8]) -> Option<[Vec<u8>; 3]> {
    let facts = RequestFacts::of(request)?;
    let template = |prefix: &str| {
        response_sample(prefix).unwrap_or_else(|| FALLBACK_RESPONSE.as_bytes().to_vec())
    };
    Some([
        adapt_response(&template("19-"), &facts, 1.3, 0.40),
        adapt_response(&template("14-"), &facts, 1.2, 0.25),
        adapt_response(&template("20-"), &facts, 1.1, 0.10),
    ])
}

/// `n` one-bid DSP answers to `request` with distinct seats and prices, all aimed at its
/// impressions in turn, for the `auction/<n>-bids` benches.
pub fn one_bid_responses(request: &[u8], n: usize) -> Option<Vec<Vec<u8>>> {
    let facts = RequestFacts::of(request)?;
    Some(
        (0..n)
            .map(|i| {
                let ImpFacts {
                    id: imp_id, floor, ..
                } = &facts.imps[i % facts.imps.len()];
                let price = floor + 0.05 + 0.037 * ((i * 7919) % 97) as f64;
                serde_json::json!({
                    "id": facts.id,
                    "cur": facts.currency,
                    "seatbid": [{"seat": format!("seat-{i}"), "bid": [{
                        "id": format!("bid-{i}"), "impid": imp_id, "price": price,
                        "adid": format!("ad-{i}"), "crid": format!("cr-{i}"),
                        "adomain": [format!("brand{i}.example")],
                        "nurl": format!("https://dsp{i}.example/win?p=${{AUCTION_PRICE}}"),
                        "adm": format!("<a href=\"https://dsp{i}.example/c\"><img src=\"https://cdn.example/{i}.png\"></a>"),
                        "w": 300, "h": 250
                    }]}]
                })
                .to_string()
                .into_bytes()
            })
            .collect(),
    )
}

/// [`one_bid_responses`] restated in another currency than the request's auction currency
/// (EUR, or GBP for a EUR request), with the currency it chose.
pub fn foreign_currency_responses(
    request: &[u8],
    n: usize,
) -> Option<(Vec<Vec<u8>>, &'static str)> {
    let facts = RequestFacts::of(request)?;
    let foreign = if facts.currency.eq_ignore_ascii_case("EUR") {
        "GBP"
    } else {
        "EUR"
    };
    let from = format!(r#""cur":"{}""#, facts.currency);
    let to = format!(r#""cur":"{foreign}""#);
    let bodies = one_bid_responses(request, n)?
        .into_iter()
        .map(|body| {
            let text = String::from_utf8(body).ok()?;
            text.contains(&from)
                .then(|| text.replacen(&from, &to, 1).into_bytes())
        })
        .collect::<Option<Vec<_>>>()?;
    Some((bodies, foreign))
}

/// A rates table shaped like Prebid's currency file: two bases (USD, GBP), 33 currencies each,
/// EUR at a realistic rate (stronger than USD, so converted bench bids still meet the floors).
pub fn prebid_sized_rates() -> rtb_core::CurrencyRates {
    const CODES: [&str; 33] = [
        "AUD", "BGN", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "IDR",
        "ILS", "INR", "ISK", "JPY", "KRW", "MXN", "MYR", "NOK", "NZD", "PHP", "PLN", "RON", "SEK",
        "SGD", "THB", "TRY", "USD", "ZAR", "AED", "SAR",
    ];
    let given = ["USD", "GBP"].into_iter().flat_map(|base| {
        CODES
            .iter()
            .enumerate()
            .map(move |(i, code)| (base, *code, 0.5 + i as f64 * 0.11))
    });
    // Later entries win.
    let given = given.chain([("USD", "EUR", 0.92)]);
    rtb_core::CurrencyRates::from_rates("bench", given).expect("a valid table")
}

// ---------------------------------------------------------------------------------------------
// One whole-core pipeline iteration
// ---------------------------------------------------------------------------------------------

/// A request sample and the three DSP answers the pipeline decodes with it.
#[derive(Clone, Debug)]
pub struct PipelineCase {
    /// Sample stem.
    pub stem: String,
    /// Raw request.
    pub request: Vec<u8>,
    /// Raw DSP answers (19-, 14-, 20-style).
    pub responses: [Vec<u8>; 3],
}

/// The pipeline cases over the 2.4-3.5 KB samples (built-ins when the folder is absent).
pub fn pipeline_cases() -> Vec<PipelineCase> {
    mid_size_request_samples()
        .into_iter()
        .filter_map(|s| {
            let responses = pipeline_responses(&s.bytes)?;
            Some(PipelineCase {
                stem: s.stem,
                request: s.bytes,
                responses,
            })
        })
        .collect()
}

/// What one pipeline iteration produced (so the work cannot be optimised away, and tests can
/// check it did something).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineResult {
    /// Bytes of the DSP copy of the request (tmax spliced), 0 when not spliced.
    pub dsp_body_len: usize,
    /// Winners of the auction.
    pub winners: usize,
    /// Rejected bids.
    pub rejections: usize,
    /// Bytes of the encoded answer (0: no bid, 204).
    pub answer_len: usize,
}

/// Why a pipeline iteration stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineError {
    /// The engine did not plan DSP calls (invalid request, shed, no DSP).
    NotCalled,
    /// A DSP answer was not a decodable bid response.
    Response,
}

/// Names of the three DSPs the pipeline's engine calls.
pub const PIPELINE_DSPS: [&str; 3] = ["braid", "the-witness", "order-of-the-sinking-star"];

/// An engine as a worker has it, with the three pipeline DSPs registered.
pub fn pipeline_engine() -> Engine {
    pipeline_engine_validating(ValidationMode::Strict)
}

/// [`pipeline_engine`] validating requests in `validation` (lenient: only the fields the
/// auction reads, as decoding did before strict validation existed).
pub fn pipeline_engine_validating(validation: ValidationMode) -> Engine {
    let config = EngineConfig {
        validation,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config);
    engine.set_dsps(PIPELINE_DSPS.map(|name| DspSpec {
        name: name.into(),
        endpoint: format!("{name}:5000").into(),
    }));
    engine
}

/// An engine and a workspace as one worker holds them, and a fixed arrival instant (the engine
/// never reads a clock, so one instant serves every iteration).
#[derive(Debug)]
pub struct EngineDriver {
    engine: Engine,
    workspace: Workspace,
    arrival: Instant,
}

impl EngineDriver {
    /// The pipeline engine with a fresh workspace.
    pub fn new() -> Self {
        Self::validating(ValidationMode::Strict)
    }

    /// The pipeline engine validating in `validation`, with a fresh workspace.
    pub fn validating(validation: ValidationMode) -> Self {
        let engine = pipeline_engine_validating(validation);
        let workspace = engine.workspace();
        Self {
            engine,
            workspace,
            arrival: Instant::now(),
        }
    }

    /// One auction of `case` through the engine ([`run_pipeline`]).
    pub fn run(&mut self, case: &PipelineCase) -> Result<PipelineResult, PipelineError> {
        run_pipeline(&mut self.engine, &mut self.workspace, case, self.arrival)
    }

    /// The answer body the engine encodes for `case` (empty when it answers no bid).
    pub fn answer(&mut self, case: &PipelineCase) -> Result<Vec<u8>, PipelineError> {
        let mut answer = Vec::new();
        run_pipeline_with(
            &mut self.engine,
            &mut self.workspace,
            case,
            self.arrival,
            |body| answer.extend_from_slice(body),
        )?;
        Ok(answer)
    }
}

impl Default for EngineDriver {
    fn default() -> Self {
        Self::new()
    }
}

/// One request through the shipped engine, as the exchange drives it minus the sockets: start
/// (decode, validate, admit, plan, tmax splice), the three DSP answers as they arrive, finish
/// (auction, encode, notices, outcomes). Everything goes back to the workspace on return.
pub fn run_pipeline(
    engine: &mut Engine,
    workspace: &mut Workspace,
    case: &PipelineCase,
    arrival: Instant,
) -> Result<PipelineResult, PipelineError> {
    run_pipeline_with(engine, workspace, case, arrival, |_| {})
}

/// [`run_pipeline`], handing the answer body (when there is one) to `keep_answer`.
pub fn run_pipeline_with(
    engine: &mut Engine,
    workspace: &mut Workspace,
    case: &PipelineCase,
    arrival: Instant,
    keep_answer: impl FnOnce(&[u8]),
) -> Result<PipelineResult, PipelineError> {
    let start = engine.start(
        workspace,
        &case.request,
        None,
        arrival,
        arrival,
        WorkerLoad::default(),
    );
    let Start::Call(mut run, plan) = start else {
        return Err(PipelineError::NotCalled);
    };
    let mut result = PipelineResult {
        dsp_body_len: plan.body.len(),
        ..PipelineResult::default()
    };
    for (call, answer) in case.responses.iter().enumerate() {
        run.on_answer(engine, call, 200, answer, arrival);
    }
    let finished = run.finish(engine, arrival);
    if finished
        .outcomes()
        .iter()
        .any(|o| o.status != CallStatus::Answered)
    {
        return Err(PipelineError::Response);
    }
    result.winners = finished.winners().count();
    result.rejections = finished.rejections().count();
    if let Answer::Bid(body) = finished.answer() {
        result.answer_len = body.len();
        keep_answer(body);
    }
    Ok(result)
}

/// Ids of the view fields that must be unique, used by tests (kept here so the rule lives once).
pub fn imp_ids_unique(fields: &ViewFields) -> bool {
    let mut seen = HashSet::new();
    fields.imps.iter().all(|imp| seen.insert(imp.id.as_str()))
}
