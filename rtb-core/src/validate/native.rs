//! The native impression: OpenRTB's `Native` object and the Native Ads 1.2 request it carries
//! in `request` (Native 1.2 §4), parsed and walked like the rest of the request.
//!
//! `request` is "a JSON-encoded string" in OpenRTB 2.x (2.6 §3.2.9); Native 1.2 §4.1 adds that
//! "many exchanges have implemented a formal object", so an object is walked in place. Native
//! 1.0 wrapped the request in a root object with a single member `native` (2.6 §3.2.9, Native
//! 1.2 §4.1 note); that wrapper is unwrapped, so its paths read `request.native.assets[0]`.
//!
//! The string is copied into a reused buffer of the [`crate::json::Document`] and parsed with
//! the worker's [`Decoder`] onto a reused tape: after the first native request, none allocates.

use simd_json::{Node, Tape};

use super::lists::{
    AMOUNT, CODE, FLAG, NATIVE_CONTEXT, NATIVE_CONTEXT_SUBTYPE, NATIVE_EVENT, NATIVE_PLACEMENT,
    NATIVE_TRACKING_METHOD, POSITIVE, SIZE, VENDOR_CODES_MIN,
};
use super::schema::{opt, req, Combo, Failure, Field, Kind::*, Members, Spec};
use super::walk::{member, ordered, Walker};
use crate::error::{FieldPath, RequestError, Rule};
use crate::json::{array_items, as_i64, is_object, Decoder, NativeScratch};

/// Most assets accepted in one Native request (their ids are compared pairwise).
pub const NATIVE_ASSETS_MAX: usize = 64;

/// What the walk needs to parse an embedded Native request.
pub(crate) struct NativeParser<'s> {
    scratch: &'s mut NativeScratch,
    decoder: &'s mut Decoder,
}

impl<'s> NativeParser<'s> {
    pub(crate) fn new(scratch: &'s mut NativeScratch, decoder: &'s mut Decoder) -> Self {
        Self { scratch, decoder }
    }

    /// Parses `text` and validates it as a Native request; the error's path is relative to
    /// the request (`assets[1].img.w`), or the root when the text is not a JSON object.
    pub(crate) fn validate(&mut self, text: &str) -> Result<(), RequestError> {
        let mut bytes = std::mem::take(&mut self.scratch.bytes);
        bytes.clear();
        bytes.extend_from_slice(text.as_bytes());
        bytes.resize(text.len() + simd_json::INPUT_PADDING, 0);
        let mut tape = std::mem::replace(&mut self.scratch.tape, Tape(Vec::new())).reset();
        let parsed = simd_json::fill_tape_padded(
            &mut bytes,
            text.len(),
            &mut self.decoder.buffers,
            &mut tape,
        );
        let result = match parsed {
            Err(_) => Err(RequestError::new(FieldPath::top(""), Rule::NotJson)),
            Ok(()) => {
                let nodes = &tape.0;
                Walker::new(nodes, None).validate(request_root(nodes, 0), &NATIVE_REQUEST)
            }
        };
        self.scratch.tape = tape.reset();
        self.scratch.bytes = bytes;
        result
    }
}

/// The Native request object at or under `index`: the member `native` of a Native 1.0 wrapper
/// (a root with `native` and no `assets` of its own), else `index` itself.
pub(crate) fn request_root(nodes: &[Node<'_>], index: usize) -> usize {
    if member(nodes, index, "assets").is_some() {
        return index;
    }
    match member(nodes, index, "native") {
        Some(inner) if is_object(nodes, inner) => inner,
        _ => index,
    }
}

/// OpenRTB 2.6 §3.2.9.
pub(crate) static NATIVE: Spec = Spec::new(NATIVE_FIELDS, &[], None);
const NATIVE_FIELDS: &[Field] = &[
    req("request", NativeRequest),
    opt("ver", Str),
    opt("api", IntList(CODE)),
    opt("battr", IntList(CODE)),
    opt("ext", Ext),
];

/// Native 1.2 §4.1, the Native Markup Request.
pub(crate) static NATIVE_REQUEST: Spec = Spec::new(REQUEST_FIELDS, &[], Some(request_rules));
const REQUEST_FIELDS: &[Field] = &[
    opt("ver", Str),
    opt("context", Int(NATIVE_CONTEXT)),
    opt("contextsubtype", Int(NATIVE_CONTEXT_SUBTYPE)),
    opt("plcmttype", Int(NATIVE_PLACEMENT)),
    opt("plcmtcnt", Int(POSITIVE)),
    opt("seq", Int(AMOUNT)),
    req("assets", ObjList(&ASSET)),
    opt("aurlsupport", Int(FLAG)),
    opt("durlsupport", Int(FLAG)),
    opt("eventtrackers", ObjList(&EVENT_TRACKER)),
    opt("privacy", Int(FLAG)),
    opt("ext", Ext),
];

/// Native 1.2 §4.2: "each asset object may contain only one of title, img, data or video".
static ASSET: Spec = Spec::new(
    ASSET_FIELDS,
    &[Combo::ExactlyOne(
        &["title", "img", "video", "data"],
        "needs exactly one of title, img, video, data",
    )],
    None,
);
const ASSET_FIELDS: &[Field] = &[
    req("id", Int(AMOUNT)),
    opt("required", Int(FLAG)),
    opt("title", Obj(&TITLE)),
    opt("img", Obj(&IMAGE)),
    opt("video", Obj(&VIDEO)),
    opt("data", Obj(&DATA)),
    opt("ext", Ext),
];

/// Native 1.2 §4.3.
static TITLE: Spec = Spec::new(&[req("len", Int(POSITIVE)), opt("ext", Ext)], &[], None);

/// Native 1.2 §4.4. Image asset types are an open list (table 7.5 is "non-exhaustive").
static IMAGE: Spec = Spec::new(
    &[
        opt("type", Int(CODE)),
        opt("w", Int(SIZE)),
        opt("wmin", Int(SIZE)),
        opt("h", Int(SIZE)),
        opt("hmin", Int(SIZE)),
        opt("mimes", StrList),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// Native 1.2 §4.5: the four required members; the other OpenRTB `Video` members it allows
/// are left to the exchange ("exchange implementers can impose their own restrictions").
static VIDEO: Spec = Spec::new(
    &[
        req("mimes", StrList),
        req("minduration", Int(AMOUNT)),
        req("maxduration", Int(AMOUNT)),
        req("protocols", IntList(CODE)),
        opt("ext", Ext),
    ],
    &[],
    Some(video_rules),
);

/// Native 1.2 §4.6. Data asset types are an open list (table 7.4 is "non-exhaustive").
static DATA: Spec = Spec::new(
    &[
        req("type", Int(CODE)),
        opt("len", Int(AMOUNT)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// Native 1.2 §4.7.
static EVENT_TRACKER: Spec = Spec::new(
    &[
        req("event", Int(NATIVE_EVENT)),
        req("methods", IntList(NATIVE_TRACKING_METHOD)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

fn video_rules(members: &Members<'_, '_, '_>) -> Result<(), Failure> {
    ordered(
        members,
        "minduration",
        "maxduration",
        "minduration above maxduration",
    )
}

fn request_rules(members: &Members<'_, '_, '_>) -> Result<(), Failure> {
    subtype_in_context_group(members)?;
    unique_asset_ids(members)
}

/// Table 7.2: "for a context type of 1, only context subtypes that start with 1 are valid".
fn subtype_in_context_group(members: &Members<'_, '_, '_>) -> Result<(), Failure> {
    if let (Some(context), Some(subtype)) = (members.int("context"), members.int("contextsubtype"))
    {
        let standard = context < VENDOR_CODES_MIN && subtype < VENDOR_CODES_MIN;
        if standard && subtype / 10 != context {
            return Err(Failure::at(
                members.get("contextsubtype").unwrap_or(members.index),
                Rule::Conflict("contextsubtype is not in the group of context"),
            ));
        }
    }
    Ok(())
}

/// §4.2: "The id is to be unique within the AssetObject array so that the response can be
/// aligned."
fn unique_asset_ids(members: &Members<'_, '_, '_>) -> Result<(), Failure> {
    let nodes = members.nodes;
    let Some(assets) = members.get("assets") else {
        return Ok(());
    };
    let mut ids = [0i64; NATIVE_ASSETS_MAX];
    let mut count = 0;
    for (n, asset) in array_items(nodes, assets).enumerate() {
        if n == NATIVE_ASSETS_MAX {
            return Err(Failure::at(assets, Rule::TooMany));
        }
        // The walk already required an integer id on every asset.
        let Some(at) = member(nodes, asset, "id") else {
            continue;
        };
        let Some(id) = as_i64(nodes, at) else {
            continue;
        };
        if ids[..count].contains(&id) {
            return Err(Failure::at(at, Rule::Duplicate));
        }
        ids[count] = id;
        count += 1;
    }
    Ok(())
}
