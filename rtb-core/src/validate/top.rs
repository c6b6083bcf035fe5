//! The top of the request: `BidRequest`, `Source` with its `SupplyChain` and nodes, and `Regs`
//! (OpenRTB 2.6 §3.2.1 to 3.2.3, 3.2.25, 3.2.26).
//!
//! "A bid request must not contain more than one of a `Site`, `App` or `DOOH` object" (§3.2.13).

use super::device::DEVICE;
use super::imp::IMP;
use super::lists::{AUCTION_TYPE, CODE, FLAG, POSITIVE};
use super::schema::{opt, req, Combo, Field, Kind::*, Spec};
use super::site_app::{APP, DOOH, SITE};
use super::user::USER;

/// §3.2.1, the root of every request.
pub(crate) static BID_REQUEST: Spec = Spec::new(
    BID_REQUEST_FIELDS,
    &[Combo::AtMostOne(
        &["site", "app", "dooh"],
        "only one of site, app, dooh",
    )],
    None,
);
const BID_REQUEST_FIELDS: &[Field] = &[
    req("id", Str),
    req("imp", ObjList(&IMP)),
    opt("site", Obj(&SITE)),
    opt("app", Obj(&APP)),
    opt("dooh", Obj(&DOOH)),
    opt("device", Obj(&DEVICE)),
    opt("user", Obj(&USER)),
    opt("test", Int(FLAG)),
    opt("at", Int(AUCTION_TYPE)),
    opt("tmax", Int(POSITIVE)),
    opt("wseat", StrList),
    opt("bseat", StrList),
    opt("allimps", Int(FLAG)),
    opt("cur", StrList),
    opt("wlang", StrList),
    opt("wlangb", StrList),
    opt("acat", StrList),
    opt("bcat", StrList),
    opt("cattax", Int(CODE)),
    opt("badv", StrList),
    opt("bapp", StrList),
    opt("source", Obj(&SOURCE)),
    opt("regs", Obj(&REGS)),
    opt("ext", Ext),
];

/// §3.2.2.
static SOURCE: Spec = Spec::new(
    &[
        opt("fd", Int(FLAG)),
        opt("tid", Str),
        opt("pchain", Str),
        opt("schain", Obj(&SUPPLY_CHAIN)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.25.
static SUPPLY_CHAIN: Spec = Spec::new(
    &[
        req("complete", Int(FLAG)),
        req("nodes", ObjList(&SUPPLY_CHAIN_NODE)),
        req("ver", Str),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.26.
static SUPPLY_CHAIN_NODE: Spec = Spec::new(
    &[
        req("asi", Str),
        req("sid", Str),
        opt("rid", Str),
        opt("name", Str),
        opt("domain", Str),
        opt("hp", Int(FLAG)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.3.
static REGS: Spec = Spec::new(
    &[
        opt("coppa", Int(FLAG)),
        opt("gdpr", Int(FLAG)),
        opt("us_privacy", Str),
        opt("gpp", Str),
        opt("gpp_sid", IntList(CODE)),
        opt("ext", Obj(&REGS_EXT)),
    ],
    &[],
    None,
);

/// `regs.ext` as OpenRTB 2.5 requests carry it (IAB's GDPR and CCPA extensions, which 2.6
/// moved into `regs`): the same fields with the same rules, so a 2.5 request's `gdpr` of 7 is
/// refused like a 2.6 one's. Other keys of `ext` pass untouched, as in every `ext`.
static REGS_EXT: Spec = Spec::new(&[opt("gdpr", Int(FLAG)), opt("us_privacy", Str)], &[], None);
