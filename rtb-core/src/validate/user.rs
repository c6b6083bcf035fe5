//! The audience: `User`, its extended identifiers `EID` and `UID`, and the `Data`/`Segment`
//! pair that both `user.data` and `content.data` carry (OpenRTB 2.6 §3.2.20 to 3.2.22,
//! 3.2.27, 3.2.28).

use super::device::GEO;
use super::lists::{AMOUNT, CODE};
use super::schema::{opt, Field, Kind::*, Spec};
use super::site_app::ONE_KEYWORD_FORM;

/// §3.2.20.
pub(crate) static USER: Spec = Spec::new(USER_FIELDS, &[ONE_KEYWORD_FORM], None);
const USER_FIELDS: &[Field] = &[
    opt("id", Str),
    opt("buyeruid", Str),
    opt("yob", Int(AMOUNT)),
    opt("gender", Str),
    opt("keywords", Str),
    opt("kwarray", StrList),
    opt("customdata", Str),
    opt("geo", Obj(&GEO)),
    opt("data", ObjList(&DATA)),
    opt("consent", Str),
    opt("eids", ObjList(&EID)),
    opt("ext", Obj(&USER_EXT)),
];

/// `user.ext` as OpenRTB 2.5 requests carry it (IAB's GDPR extension: `consent`; the EID
/// extension: `eids`), checked like the 2.6 fields they became; other keys pass untouched.
static USER_EXT: Spec = Spec::new(
    &[opt("consent", Str), opt("eids", ObjList(&EID))],
    &[],
    None,
);

/// §3.2.21.
pub(crate) static DATA: Spec = Spec::new(
    &[
        opt("id", Str),
        opt("name", Str),
        opt("cids", StrList),
        opt("segment", ObjList(&SEGMENT)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.22.
static SEGMENT: Spec = Spec::new(
    &[
        opt("id", Str),
        opt("name", Str),
        opt("value", Str),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.27.
static EID: Spec = Spec::new(
    &[
        opt("inserter", Str),
        opt("source", Str),
        opt("matcher", Str),
        opt("mm", Int(CODE)),
        opt("uids", ObjList(&UID)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.28.
static UID: Spec = Spec::new(
    &[opt("id", Str), opt("atype", Int(CODE)), opt("ext", Ext)],
    &[],
    None,
);
