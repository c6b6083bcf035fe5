//! The distribution channel and its content: `Site`, `App`, `DOOH`, `Publisher`, `Content`,
//! `Producer`, `Network`, `Channel` (OpenRTB 2.6 §3.2.13 to 3.2.17, 3.2.23, 3.2.24, 3.2.32).
//!
//! `keywords` and `kwarray`: "Only one of `keywords` or `kwarray` may be present" (site, app,
//! content, user).

use super::lists::{AMOUNT, CODE, FLAG};
use super::schema::{opt, Combo, Field, Kind::*, Spec};
use super::user::DATA;

/// The keywords rule shared by site, app, content and user.
pub(crate) const ONE_KEYWORD_FORM: Combo =
    Combo::AtMostOne(&["keywords", "kwarray"], "only one of keywords, kwarray");

/// §3.2.13.
pub(crate) static SITE: Spec = Spec::new(SITE_FIELDS, &[ONE_KEYWORD_FORM], None);
const SITE_FIELDS: &[Field] = &[
    opt("id", Str),
    opt("name", Str),
    opt("domain", Str),
    opt("cattax", Int(CODE)),
    opt("cat", StrList),
    opt("sectioncat", StrList),
    opt("pagecat", StrList),
    opt("page", Str),
    opt("ref", Str),
    opt("search", Str),
    opt("mobile", Int(FLAG)),
    opt("privacypolicy", Int(FLAG)),
    opt("publisher", Obj(&PUBLISHER)),
    opt("content", Obj(&CONTENT)),
    opt("keywords", Str),
    opt("kwarray", StrList),
    opt("inventorypartnerdomain", Str),
    opt("ext", Ext),
];

/// §3.2.14.
pub(crate) static APP: Spec = Spec::new(APP_FIELDS, &[ONE_KEYWORD_FORM], None);
const APP_FIELDS: &[Field] = &[
    opt("id", Str),
    opt("name", Str),
    opt("bundle", Str),
    opt("domain", Str),
    opt("storeurl", Str),
    opt("cattax", Int(CODE)),
    opt("cat", StrList),
    opt("sectioncat", StrList),
    opt("pagecat", StrList),
    opt("ver", Str),
    opt("privacypolicy", Int(FLAG)),
    opt("paid", Int(FLAG)),
    opt("publisher", Obj(&PUBLISHER)),
    opt("content", Obj(&CONTENT)),
    opt("keywords", Str),
    opt("kwarray", StrList),
    opt("inventorypartnerdomain", Str),
    opt("ext", Ext),
];

/// §3.2.32.
pub(crate) static DOOH: Spec = Spec::new(
    &[
        opt("id", Str),
        opt("name", Str),
        opt("venuetype", StrList),
        opt("venuetypetax", Int(CODE)),
        opt("publisher", Obj(&PUBLISHER)),
        opt("domain", Str),
        opt("keywords", Str),
        opt("content", Obj(&CONTENT)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// The fields `Publisher` and `Producer` share (§3.2.15, §3.2.17).
const ENTITY_FIELDS: &[Field] = &[
    opt("id", Str),
    opt("name", Str),
    opt("cattax", Int(CODE)),
    opt("cat", StrList),
    opt("domain", Str),
    opt("ext", Ext),
];

/// §3.2.15.
static PUBLISHER: Spec = Spec::new(ENTITY_FIELDS, &[], None);
/// §3.2.17.
static PRODUCER: Spec = Spec::new(ENTITY_FIELDS, &[], None);

/// The fields `Network` and `Channel` share (§3.2.23, §3.2.24).
const OUTLET_FIELDS: &[Field] = &[
    opt("id", Str),
    opt("name", Str),
    opt("domain", Str),
    opt("ext", Ext),
];

/// §3.2.23.
static NETWORK: Spec = Spec::new(OUTLET_FIELDS, &[], None);
/// §3.2.24.
static CHANNEL: Spec = Spec::new(OUTLET_FIELDS, &[], None);

/// §3.2.16.
static CONTENT: Spec = Spec::new(CONTENT_FIELDS, &[ONE_KEYWORD_FORM], None);
const CONTENT_FIELDS: &[Field] = &[
    opt("id", Str),
    opt("episode", Int(AMOUNT)),
    opt("title", Str),
    opt("series", Str),
    opt("season", Str),
    opt("artist", Str),
    opt("genre", Str),
    opt("gtax", Int(CODE)),
    opt("genres", StrList),
    opt("album", Str),
    opt("isrc", Str),
    opt("producer", Obj(&PRODUCER)),
    opt("url", Str),
    opt("cattax", Int(CODE)),
    opt("cat", StrList),
    opt("prodq", Int(CODE)),
    opt("context", Int(CODE)),
    opt("contentrating", Str),
    opt("userrating", Str),
    opt("qagmediarating", Int(CODE)),
    opt("keywords", Str),
    opt("kwarray", StrList),
    opt("livestream", Int(FLAG)),
    opt("sourcerelationship", Int(FLAG)),
    opt("len", Int(AMOUNT)),
    opt("language", Str),
    opt("langb", Str),
    opt("embeddable", Int(FLAG)),
    opt("data", ObjList(&DATA)),
    opt("network", Obj(&NETWORK)),
    opt("channel", Obj(&CHANNEL)),
    opt("realtime", Int(FLAG)),
    opt("firstbroadcast", Int(FLAG)),
    opt("ext", Ext),
];
