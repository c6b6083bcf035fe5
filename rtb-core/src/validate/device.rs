//! The device and where it is: `Device`, `Geo`, `UserAgent`, `BrandVersion` (OpenRTB 2.6
//! §3.2.18, 3.2.19, 3.2.29, 3.2.30). `Geo` also serves `user.geo`.

use super::lists::{AMOUNT, CODE, FLAG, LATITUDE, LONGITUDE, SIZE, UTC_OFFSET};
use super::schema::{opt, req, Field, Kind::*, Nums, Spec};

/// §3.2.18.
pub(crate) static DEVICE: Spec = Spec::new(DEVICE_FIELDS, &[], None);
const DEVICE_FIELDS: &[Field] = &[
    opt("geo", Obj(&GEO)),
    opt("dnt", Int(FLAG)),
    opt("lmt", Int(FLAG)),
    opt("ua", Str),
    opt("sua", Obj(&USER_AGENT)),
    opt("ip", Str),
    opt("ipv6", Str),
    opt("devicetype", Int(CODE)),
    opt("make", Str),
    opt("model", Str),
    opt("os", Str),
    opt("osv", Str),
    opt("hwv", Str),
    opt("h", Int(SIZE)),
    opt("w", Int(SIZE)),
    opt("ppi", Int(SIZE)),
    opt("pxratio", Num(Nums::NotNegative)),
    opt("js", Int(FLAG)),
    opt("geofetch", Int(FLAG)),
    opt("flashver", Str),
    opt("language", Str),
    opt("langb", Str),
    opt("carrier", Str),
    opt("mccmnc", Str),
    opt("connectiontype", Int(CODE)),
    opt("ifa", Str),
    opt("didsha1", Str),
    opt("didmd5", Str),
    opt("dpidsha1", Str),
    opt("dpidmd5", Str),
    opt("macsha1", Str),
    opt("macmd5", Str),
    opt("ext", Ext),
];

/// §3.2.19.
pub(crate) static GEO: Spec = Spec::new(GEO_FIELDS, &[], None);
const GEO_FIELDS: &[Field] = &[
    opt("lat", Num(LATITUDE)),
    opt("lon", Num(LONGITUDE)),
    opt("type", Int(CODE)),
    opt("accuracy", Int(AMOUNT)),
    opt("lastfix", Int(AMOUNT)),
    opt("ipservice", Int(CODE)),
    opt("country", Str),
    opt("region", Str),
    opt("regionfips104", Str),
    opt("metro", Str),
    opt("city", Str),
    opt("zip", Str),
    opt("utcoffset", Int(UTC_OFFSET)),
    opt("ext", Ext),
];

/// §3.2.29.
static USER_AGENT: Spec = Spec::new(
    &[
        opt("browsers", ObjList(&BRAND_VERSION)),
        opt("platform", Obj(&BRAND_VERSION)),
        opt("mobile", Int(FLAG)),
        opt("architecture", Str),
        opt("bitness", Str),
        opt("model", Str),
        opt("source", Int(CODE)),
        opt("ext", Ext),
    ],
    &[],
    None,
);

/// §3.2.30.
static BRAND_VERSION: Spec = Spec::new(
    &[req("brand", Str), opt("version", StrList), opt("ext", Ext)],
    &[],
    None,
);
