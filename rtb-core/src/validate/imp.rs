//! The impression and what hangs off it besides media: `Imp`, `Metric`, `Pmp`, `Deal`, `Qty`,
//! `Refresh`, `RefSettings` and `DurFloors` (OpenRTB 2.6 §3.2.4, 3.2.5, 3.2.11, 3.2.12, 3.2.31,
//! 3.2.33 to 3.2.35).
//!
//! `imp.id` uniqueness, the need for one media object, and deal ids (required, unique) are the
//! auction's own rules, checked by the request view in every mode.

use super::lists::{AMOUNT, CODE, FLAG, MONEY, POSITIVE};
use super::media::{AUDIO, BANNER, VIDEO};
use super::native::NATIVE;
use super::schema::{opt, req, Combo, Failure, Field, Kind::*, Members, Nums, Spec};
use crate::error::Rule;

/// §3.2.4.
pub(crate) static IMP: Spec = Spec::new(IMP_FIELDS, &[], None);
const IMP_FIELDS: &[Field] = &[
    req("id", Str),
    opt("metric", ObjList(&METRIC)),
    opt("banner", Obj(&BANNER)),
    opt("video", Obj(&VIDEO)),
    opt("audio", Obj(&AUDIO)),
    opt("native", Obj(&NATIVE)),
    opt("pmp", Obj(&PMP)),
    opt("displaymanager", Str),
    opt("displaymanagerver", Str),
    opt("instl", Int(FLAG)),
    opt("tagid", Str),
    opt("bidfloor", Num(MONEY)),
    opt("bidfloorcur", Str),
    opt("clickbrowser", Int(FLAG)),
    opt("secure", Int(FLAG)),
    opt("iframebuster", StrList),
    opt("rwdd", Int(FLAG)),
    opt("ssai", Int(CODE)),
    opt("exp", Int(AMOUNT)),
    opt("qty", Obj(&QTY)),
    opt("dt", Num(MONEY)),
    opt("refresh", Obj(&REFRESH)),
    opt("ext", Ext),
];

/// §3.2.5. (Probabilities "must be in the range 0.0 - 1.0", but which metric is one is
/// exchange-curated, so `value` is any number.)
static METRIC: Spec = Spec::new(
    &[
        req("type", Str),
        req("value", Num(Nums::Any)),
        opt("vendor", Str),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.11.
static PMP: Spec = Spec::new(
    &[
        opt("private_auction", Int(FLAG)),
        opt("deals", ObjList(&DEAL)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.12. `at` may be any exchange-defined type, so only its sign is checked.
static DEAL: Spec = Spec::new(DEAL_FIELDS, &[], None);
const DEAL_FIELDS: &[Field] = &[
    req("id", Str),
    opt("bidfloor", Num(MONEY)),
    opt("bidfloorcur", Str),
    opt("at", Int(POSITIVE)),
    opt("wseat", StrList),
    opt("wadomain", StrList),
    opt("guar", Int(FLAG)),
    opt("mincpmpersec", Num(MONEY)),
    opt("durfloors", ObjList(&DUR_FLOORS)),
    opt("ext", Ext),
];

/// §3.2.31: `vendor` is "required if sourcetype is present and type = 1".
static QTY: Spec = Spec::new(
    &[
        req("multiplier", Num(Nums::Positive)),
        opt("sourcetype", Int(CODE)),
        opt("vendor", Str),
        opt("ext", Ext),
    ],
    &[],
    Some(vendor_when_measured),
);

/// AdCOM DOOH Multiplier Measurement Source Types: 1 is "Measurement Vendor Provided".
const SOURCE_MEASUREMENT_VENDOR: i64 = 1;

fn vendor_when_measured(members: &Members<'_, '_, '_>) -> Result<(), Failure> {
    if members.int("sourcetype") == Some(SOURCE_MEASUREMENT_VENDOR)
        && members.get("vendor").is_none()
    {
        return Err(Failure {
            at: members.index,
            leaf: "vendor",
            rule: Rule::Missing,
        });
    }
    Ok(())
}

/// §3.2.33.
static REFRESH: Spec = Spec::new(
    &[
        opt("refsettings", ObjList(&REF_SETTINGS)),
        opt("count", Int(AMOUNT)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.34.
static REF_SETTINGS: Spec = Spec::new(
    &[
        opt("reftype", Int(CODE)),
        opt("minint", Int(AMOUNT)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.35. The table says "Either mindur or maxdur is required, but not both", but the
/// object's own description gives ranges with both ends ("1-15 seconds at a floor of $5"), so
/// only "at least one" is enforced.
pub(crate) static DUR_FLOORS: Spec = Spec::new(
    &[
        opt("mindur", Int(AMOUNT)),
        opt("maxdur", Int(AMOUNT)),
        opt("bidfloor", Num(MONEY)),
        opt("ext", Ext),
    ],
    &[Combo::AtLeastOne(
        &["mindur", "maxdur"],
        "needs mindur or maxdur",
    )],
    None,
);
