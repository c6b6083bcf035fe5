//! The media objects of an impression: `Banner` (also a video or audio companion), `Format`,
//! `Video` and `Audio` (OpenRTB 2.6 §3.2.6 to §3.2.10).
//!
//! Rules beyond types, from the object tables: `mimes` is required on video and audio; a
//! format is either a size (`w`, `h`) or a flexible ratio (`wratio`, `hratio`, `wmin`), never
//! both; `rqddurs` "must not" come with `minduration`/`maxduration` (§3.2.7, §3.2.8); and a
//! minimum above its maximum (duration, bitrate) describes no ad at all.

use super::imp::DUR_FLOORS;
use super::lists::{AMOUNT, CODE, EXTENSION, FLAG, MONEY, POD_POSITION, RATIO, SIZE, START_DELAY};
use super::schema::{opt, req, Combo, Failure, Field, Kind::*, Members, Spec};
use super::walk::ordered;

/// §3.2.6; also the type of `video.companionad` and `audio.companionad`.
pub(crate) static BANNER: Spec = Spec::new(BANNER_FIELDS, &[], None);
const BANNER_FIELDS: &[Field] = &[
    opt("format", ObjList(&FORMAT)),
    opt("w", Int(SIZE)),
    opt("h", Int(SIZE)),
    opt("btype", IntList(CODE)),
    opt("battr", IntList(CODE)),
    opt("pos", Int(CODE)),
    opt("mimes", StrList),
    opt("topframe", Int(FLAG)),
    opt("expdir", IntList(CODE)),
    opt("api", IntList(CODE)),
    opt("id", Str),
    opt("vcm", Int(FLAG)),
    opt("ext", Ext),
];

/// §3.2.10.
static FORMAT: Spec = Spec::new(
    &[
        opt("w", Int(SIZE)),
        opt("h", Int(SIZE)),
        opt("wratio", Int(RATIO)),
        opt("hratio", Int(RATIO)),
        opt("wmin", Int(SIZE)),
        opt("ext", Ext),
    ],
    &[Combo::EitherAll(
        &["w", "h"],
        &["wratio", "hratio", "wmin"],
        "needs w and h, or wratio, hratio and wmin, not both",
    )],
    None,
);

const RQDDURS_ALONE: Combo = Combo::Excludes(
    &["rqddurs"],
    &["minduration", "maxduration"],
    "rqddurs excludes minduration and maxduration",
);

/// §3.2.7.
pub(crate) static VIDEO: Spec = Spec::new(VIDEO_FIELDS, &[RQDDURS_ALONE], Some(ranges));
const VIDEO_FIELDS: &[Field] = &[
    req("mimes", StrList),
    opt("minduration", Int(AMOUNT)),
    opt("maxduration", Int(AMOUNT)),
    opt("startdelay", Int(START_DELAY)),
    opt("maxseq", Int(AMOUNT)),
    opt("poddur", Int(AMOUNT)),
    opt("protocols", IntList(CODE)),
    opt("w", Int(SIZE)),
    opt("h", Int(SIZE)),
    opt("podid", Str),
    opt("podseq", Int(POD_POSITION)),
    opt("rqddurs", IntList(AMOUNT)),
    opt("placement", Int(CODE)),
    opt("plcmt", Int(CODE)),
    opt("linearity", Int(CODE)),
    opt("skip", Int(FLAG)),
    opt("skipmin", Int(AMOUNT)),
    opt("skipafter", Int(AMOUNT)),
    opt("sequence", Int(AMOUNT)),
    opt("slotinpod", Int(POD_POSITION)),
    opt("mincpmpersec", Num(MONEY)),
    opt("battr", IntList(CODE)),
    opt("maxextended", Int(EXTENSION)),
    opt("minbitrate", Int(AMOUNT)),
    opt("maxbitrate", Int(AMOUNT)),
    opt("boxingallowed", Int(FLAG)),
    opt("playbackmethod", IntList(CODE)),
    opt("playbackend", Int(CODE)),
    opt("delivery", IntList(CODE)),
    opt("pos", Int(CODE)),
    opt("companionad", ObjList(&BANNER)),
    opt("api", IntList(CODE)),
    opt("companiontype", IntList(CODE)),
    opt("poddedupe", IntList(CODE)),
    opt("durfloors", ObjList(&DUR_FLOORS)),
    opt("ext", Ext),
];

/// §3.2.8.
pub(crate) static AUDIO: Spec = Spec::new(AUDIO_FIELDS, &[RQDDURS_ALONE], Some(ranges));
const AUDIO_FIELDS: &[Field] = &[
    req("mimes", StrList),
    opt("minduration", Int(AMOUNT)),
    opt("maxduration", Int(AMOUNT)),
    opt("poddur", Int(AMOUNT)),
    opt("protocols", IntList(CODE)),
    opt("startdelay", Int(START_DELAY)),
    opt("rqddurs", IntList(AMOUNT)),
    opt("podid", Str),
    opt("podseq", Int(POD_POSITION)),
    opt("sequence", Int(AMOUNT)),
    opt("slotinpod", Int(POD_POSITION)),
    opt("mincpmpersec", Num(MONEY)),
    opt("battr", IntList(CODE)),
    opt("maxextended", Int(EXTENSION)),
    opt("minbitrate", Int(AMOUNT)),
    opt("maxbitrate", Int(AMOUNT)),
    opt("delivery", IntList(CODE)),
    opt("companionad", ObjList(&BANNER)),
    opt("api", IntList(CODE)),
    opt("companiontype", IntList(CODE)),
    opt("maxseq", Int(AMOUNT)),
    opt("feed", Int(CODE)),
    opt("stitched", Int(FLAG)),
    opt("nvol", Int(CODE)),
    opt("durfloors", ObjList(&DUR_FLOORS)),
    opt("ext", Ext),
];

/// Minimums not above maximums, for video and audio alike.
fn ranges(members: &Members<'_, '_, '_>) -> Result<(), Failure> {
    ordered(
        members,
        "minduration",
        "maxduration",
        "minduration above maxduration",
    )?;
    ordered(
        members,
        "minbitrate",
        "maxbitrate",
        "minbitrate above maxbitrate",
    )
}
