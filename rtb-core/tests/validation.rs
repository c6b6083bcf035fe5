//! Validation rules through the public decoder (`BidRequest::decode_with`): one case per
//! rule, each checking the field path and the rule in the message, and that lenient mode lets
//! every strict-only violation through.

use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::validate::{ValidationMode, NATIVE_ASSETS_MAX};

fn check(json: &str, mode: ValidationMode) -> Result<(), String> {
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    BidRequest::decode_with(json.as_bytes(), &mut doc, &mut decoder, mode)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A request with one impression whose body is `imp` (without braces) and top-level extras.
fn with_imp(imp: &str, top: &str) -> String {
    let top = if top.is_empty() {
        String::new()
    } else {
        format!(",{top}")
    };
    format!(r#"{{"id":"r","imp":[{{"id":"1",{imp}}}]{top}}}"#)
}

fn banner(top: &str) -> String {
    with_imp(r#""banner":{"w":300,"h":250}"#, top)
}

/// A native impression whose request string holds `request` (JSON, escaped here).
fn native(request: &str) -> String {
    let escaped = request.replace('"', "\\\"");
    with_imp(&format!(r#""native":{{"request":"{escaped}"}}"#), "")
}

const TITLE: &str = r#"{"id":1,"title":{"len":25}}"#;

fn native_assets(assets: &str, extra: &str) -> String {
    native(&format!(r#"{{"ver":"1.2"{extra},"assets":[{assets}]}}"#))
}

/// Types, `ext`, duplicates of any known key.
fn type_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(
        with_imp(r#""banner":{"w":"300"}"#, ""),
        "imp[0].banner.w: must be an integer",
    );
    add(
        with_imp(r#""banner":{"w":300.5}"#, ""),
        "imp[0].banner.w: must be an integer",
    );
    add(banner(r#""ext":[]"#), "ext: must be an object");
    add(
        with_imp(r#""banner":{},"ext":"x""#, ""),
        "imp[0].ext: must be an object",
    );
    add(banner(r#""device":{"w":1,"w":2}"#), "device.w: duplicate");
    add(
        banner(r#""device":{"ua":7}"#),
        "device.ua: must be a string",
    );
    add(banner(r#""wlang":"en""#), "wlang: must be an array");
    add(
        banner(r#""dooh":{"venuetype":"x"}"#),
        "dooh.venuetype: must be an array",
    );
    add(
        banner(r#""user":{"data":[{"segment":[{"id":"a"},{"id":5}]}]}"#),
        "user.data[0].segment[1].id: must be a string",
    );
    add(
        banner(r#""site":{"content":{"producer":{"cat":"IAB1"}}}"#),
        "site.content.producer.cat: must be an array",
    );
    add(
        banner(r#""app":{"publisher":[]}"#),
        "app.publisher: must be an object",
    );
    cases
}

/// Ranges of impression and media fields: sizes, durations, bitrates.
fn media_range_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(
        with_imp(r#""banner":{"w":-300,"h":250}"#, ""),
        "imp[0].banner.w: must be >= 0",
    );
    add(
        with_imp(
            r#""banner":{"format":[{"w":300,"h":250},{"w":-1,"h":50}]}"#,
            "",
        ),
        "imp[0].banner.format[1].w: must be >= 0",
    );
    add(
        with_imp(
            r#""banner":{"format":[{"wratio":0,"hratio":9,"wmin":300}]}"#,
            "",
        ),
        "imp[0].banner.format[0].wratio: must be > 0",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4"],"maxduration":-30}"#, ""),
        "imp[0].video.maxduration: must be >= 0",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4"],"minbitrate":-1}"#, ""),
        "imp[0].video.minbitrate: must be >= 0",
    );
    add(
        with_imp(r#""audio":{"mimes":["audio/mp4"],"maxbitrate":-1}"#, ""),
        "imp[0].audio.maxbitrate: must be >= 0",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4"],"startdelay":-3}"#, ""),
        "imp[0].video.startdelay: out of range",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4"],"maxextended":-2}"#, ""),
        "imp[0].video.maxextended: out of range",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4"],"protocols":[2,-3]}"#, ""),
        "imp[0].video.protocols[1]: must be >= 0",
    );
    add(
        with_imp(
            r#""video":{"mimes":["video/mp4"],"companionad":[{"w":-300}]}"#,
            "",
        ),
        "imp[0].video.companionad[0].w: must be >= 0",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4"],"rqddurs":[15,-30]}"#, ""),
        "imp[0].video.rqddurs[1]: must be >= 0",
    );
    add(
        with_imp(r#""banner":{},"exp":-1"#, ""),
        "imp[0].exp: must be >= 0",
    );
    add(
        with_imp(r#""banner":{},"dt":-1.5"#, ""),
        "imp[0].dt: must be >= 0",
    );
    cases
}

/// Ranges of device, geo, content and impression extras: ppi, accuracy, coordinates.
fn context_range_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(
        with_imp(r#""banner":{},"ssai":-1"#, ""),
        "imp[0].ssai: must be >= 0",
    );
    add(
        banner(r#""device":{"ppi":-72}"#),
        "device.ppi: must be >= 0",
    );
    add(banner(r#""device":{"h":-1}"#), "device.h: must be >= 0");
    add(
        banner(r#""device":{"pxratio":-2}"#),
        "device.pxratio: must be >= 0",
    );
    add(
        banner(r#""device":{"geo":{"accuracy":-5}}"#),
        "device.geo.accuracy: must be >= 0",
    );
    add(
        banner(r#""device":{"geo":{"lat":91.0}}"#),
        "device.geo.lat: out of range",
    );
    add(
        banner(r#""device":{"geo":{"lon":-180.5}}"#),
        "device.geo.lon: out of range",
    );
    add(
        banner(r#""user":{"geo":{"utcoffset":900}}"#),
        "user.geo.utcoffset: out of range",
    );
    add(
        banner(r#""device":{"devicetype":-1}"#),
        "device.devicetype: must be >= 0",
    );
    add(
        banner(r#""site":{"content":{"len":-10}}"#),
        "site.content.len: must be >= 0",
    );
    add(
        with_imp(r#""banner":{},"refresh":{"count":-1}"#, ""),
        "imp[0].refresh.count: must be >= 0",
    );
    add(
        with_imp(
            r#""banner":{},"refresh":{"refsettings":[{"minint":-1}]}"#,
            "",
        ),
        "imp[0].refresh.refsettings[0].minint: must be >= 0",
    );
    add(
        with_imp(r#""banner":{},"qty":{"multiplier":0}"#, ""),
        "imp[0].qty.multiplier: must be > 0",
    );
    add(
        with_imp(
            r#""banner":{},"pmp":{"deals":[{"id":"d","mincpmpersec":-1}]}"#,
            "",
        ),
        "imp[0].pmp.deals[0].mincpmpersec: must be >= 0",
    );
    cases
}

/// Closed enumerations.
fn enumeration_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(banner(r#""regs":{"gdpr":7}"#), "regs.gdpr: out of range");
    add(banner(r#""regs":{"coppa":2}"#), "regs.coppa: out of range");
    add(
        banner(r#""regs":{"ext":{"gdpr":7,"other":"kept"}}"#),
        "regs.ext.gdpr: out of range",
    );
    add(
        banner(r#""user":{"ext":{"consent":1}}"#),
        "user.ext.consent: must be a string",
    );
    add(banner(r#""at":3"#), "at: not an allowed value");
    add(banner(r#""allimps":2"#), "allimps: out of range");
    add(banner(r#""device":{"dnt":-1}"#), "device.dnt: out of range");
    add(
        with_imp(r#""banner":{},"secure":2"#, ""),
        "imp[0].secure: out of range",
    );
    add(
        with_imp(r#""banner":{},"pmp":{"deals":[{"id":"d","guar":2}]}"#, ""),
        "imp[0].pmp.deals[0].guar: out of range",
    );
    add(banner(r#""source":{"fd":3}"#), "source.fd: out of range");
    cases
}

/// Required fields and combinations of media objects.
fn media_required_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(
        with_imp(r#""video":{"w":640}"#, ""),
        "imp[0].video.mimes: missing",
    );
    add(
        with_imp(r#""video":{"mimes":null}"#, ""),
        "imp[0].video.mimes: missing",
    );
    add(
        with_imp(r#""video":{"mimes":[]}"#, ""),
        "imp[0].video.mimes: must not be empty",
    );
    add(
        with_imp(r#""video":{"mimes":["video/mp4",7]}"#, ""),
        "imp[0].video.mimes[1]: must be a string",
    );
    add(
        with_imp(r#""audio":{"maxduration":30}"#, ""),
        "imp[0].audio.mimes: missing",
    );
    add(
        with_imp(
            r#""video":{"mimes":["v"],"rqddurs":[15],"minduration":5}"#,
            "",
        ),
        "imp[0].video: rqddurs excludes minduration and maxduration",
    );
    add(
        with_imp(
            r#""video":{"mimes":["v"],"minduration":30,"maxduration":15}"#,
            "",
        ),
        "imp[0].video: minduration above maxduration",
    );
    add(
        with_imp(r#""banner":{"format":[{"w":300}]}"#, ""),
        "imp[0].banner.format[0]: needs w and h, or wratio, hratio and wmin, not both",
    );
    add(
        with_imp(r#""banner":{"format":[{"w":300,"h":250,"wratio":1}]}"#, ""),
        "imp[0].banner.format[0]: needs w and h, or wratio, hratio and wmin, not both",
    );
    cases
}

/// Required fields and combinations of the other objects.
fn other_required_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(
        with_imp(r#""banner":{"format":[{}]}"#, ""),
        "imp[0].banner.format[0]: needs w and h, or wratio, hratio and wmin, not both",
    );
    add(
        with_imp(r#""native":{"ver":"1.2"}"#, ""),
        "imp[0].native.request: missing",
    );
    add(
        with_imp(r#""banner":{},"metric":[{"type":"viewability"}]"#, ""),
        "imp[0].metric[0].value: missing",
    );
    add(
        with_imp(r#""banner":{},"qty":{"multiplier":2,"sourcetype":1}"#, ""),
        "imp[0].qty.vendor: missing",
    );
    add(
        with_imp(
            r#""video":{"mimes":["v"],"durfloors":[{"bidfloor":1}]}"#,
            "",
        ),
        "imp[0].video.durfloors[0]: needs mindur or maxdur",
    );
    add(
        banner(r#""source":{"schain":{"complete":1,"ver":"1.0"}}"#),
        "source.schain.nodes: missing",
    );
    add(
        banner(r#""source":{"schain":{"complete":1,"ver":"1.0","nodes":[{"sid":"1"}]}}"#),
        "source.schain.nodes[0].asi: missing",
    );
    add(
        banner(r#""device":{"sua":{"browsers":[{"version":["1"]}]}}"#),
        "device.sua.browsers[0].brand: missing",
    );
    add(
        banner(r#""user":{"keywords":"a,b","kwarray":["a"]}"#),
        "user: only one of keywords, kwarray",
    );
    add(
        banner(r#""site":{"content":{"keywords":"a","kwarray":["a"]}}"#),
        "site.content: only one of keywords, kwarray",
    );
    cases
}

/// The Native 1.2 request: parsing and its assets.
fn native_asset_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(native("{"), "imp[0].native.request: not valid JSON");
    add(native("[1]"), "imp[0].native.request: must be an object");
    add(
        with_imp(r#""native":{"request":5}"#, ""),
        "imp[0].native.request: must be a string or an object",
    );
    add(
        native(r#"{"ver":"1.2"}"#),
        "imp[0].native.request.assets: missing",
    );
    add(
        native_assets("", ""),
        "imp[0].native.request.assets: must not be empty",
    );
    add(
        native_assets(r#"{"id":1,"title":{"len":25},"img":{"w":100,"h":100}}"#, ""),
        "imp[0].native.request.assets[0]: needs exactly one of title, img, video, data",
    );
    add(
        native_assets(r#"{"id":1}"#, ""),
        "imp[0].native.request.assets[0]: needs exactly one of title, img, video, data",
    );
    add(
        native_assets(&format!(r#"{TITLE},{{"id":1,"data":{{"type":1}}}}"#), ""),
        "imp[0].native.request.assets[1].id: duplicate",
    );
    add(
        native_assets(r#"{"title":{"len":25}}"#, ""),
        "imp[0].native.request.assets[0].id: missing",
    );
    add(
        native_assets(r#"{"id":1,"title":{}}"#, ""),
        "imp[0].native.request.assets[0].title.len: missing",
    );
    add(
        native_assets(r#"{"id":1,"title":{"len":0}}"#, ""),
        "imp[0].native.request.assets[0].title.len: must be > 0",
    );
    add(
        native_assets(r#"{"id":1,"img":{"w":-1}}"#, ""),
        "imp[0].native.request.assets[0].img.w: must be >= 0",
    );
    cases
}

/// The Native 1.2 request: assets, context, placement and event trackers.
fn native_request_cases() -> Vec<(String, &'static str)> {
    let mut cases = Vec::new();
    let mut add = |json: String, expected: &'static str| cases.push((json, expected));
    add(
        native_assets(
            r#"{"id":1,"video":{"mimes":["v"],"minduration":1,"maxduration":30}}"#,
            "",
        ),
        "imp[0].native.request.assets[0].video.protocols: missing",
    );
    add(
        native_assets(r#"{"id":1,"data":{"len":20}}"#, ""),
        "imp[0].native.request.assets[0].data.type: missing",
    );
    add(
        native_assets(TITLE, r#","context":4"#),
        "imp[0].native.request.context: not an allowed value",
    );
    add(
        native_assets(TITLE, r#","plcmttype":5"#),
        "imp[0].native.request.plcmttype: not an allowed value",
    );
    add(
        native_assets(TITLE, r#","context":1,"contextsubtype":21"#),
        "imp[0].native.request.contextsubtype: contextsubtype is not in the group of context",
    );
    add(
        native_assets(TITLE, r#","plcmtcnt":0"#),
        "imp[0].native.request.plcmtcnt: must be > 0",
    );
    add(
        native_assets(TITLE, r#","eventtrackers":[{"event":7,"methods":[1]}]"#),
        "imp[0].native.request.eventtrackers[0].event: not an allowed value",
    );
    add(
        native_assets(TITLE, r#","eventtrackers":[{"event":1,"methods":[1,3]}]"#),
        "imp[0].native.request.eventtrackers[0].methods[1]: not an allowed value",
    );
    add(
        native_assets(TITLE, r#","eventtrackers":[{"event":1,"methods":[]}]"#),
        "imp[0].native.request.eventtrackers[0].methods: must not be empty",
    );
    add(
        native_assets(TITLE, r#","eventtrackers":[{"event":1}]"#),
        "imp[0].native.request.eventtrackers[0].methods: missing",
    );
    add(
        native(r#"{"native":{"assets":[{"id":1,"title":{"len":-1}}]}}"#),
        "imp[0].native.request.native.assets[0].title.len: must be > 0",
    );
    add(
        with_imp(
            r#""native":{"request":{"assets":[{"id":1,"img":{"h":-1}}]}}"#,
            "",
        ),
        "imp[0].native.request.assets[0].img.h: must be >= 0",
    );
    cases
}

/// `(request, expected message)`: each breaks exactly one strict rule.
fn strict_only_cases() -> Vec<(String, &'static str)> {
    [
        type_cases(),
        media_range_cases(),
        context_range_cases(),
        enumeration_cases(),
        media_required_cases(),
        other_required_cases(),
        native_asset_cases(),
        native_request_cases(),
    ]
    .concat()
}

#[test]
fn every_strict_rule_names_its_field_and_lenient_lets_it_through() {
    for (json, expected) in strict_only_cases() {
        assert_eq!(
            check(&json, ValidationMode::Strict),
            Err(expected.to_string()),
            "for {json}"
        );
        assert_eq!(
            check(&json, ValidationMode::Lenient),
            Ok(()),
            "lenient, for {json}"
        );
    }
}

#[test]
fn the_default_mode_is_strict() {
    assert_eq!(ValidationMode::default(), ValidationMode::Strict);
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let json = with_imp(r#""banner":{"w":-1}"#, "");
    let error = BidRequest::decode(json.as_bytes(), &mut doc, &mut decoder).unwrap_err();
    assert_eq!(error.to_string(), "imp[0].banner.w: must be >= 0");
    assert_eq!(
        (
            "strict".parse(),
            "lenient".parse::<ValidationMode>(),
            "x".parse::<ValidationMode>().is_err()
        ),
        (
            Ok(ValidationMode::Strict),
            Ok(ValidationMode::Lenient),
            true
        )
    );
}

#[test]
fn lenient_rules_still_come_first_and_hold_in_both_modes() {
    for (json, expected) in [
        (
            banner(r#""site":{},"app":{}"#),
            "app: only one of site, app, dooh",
        ),
        (banner(r#""test":2"#), "test: out of range"),
        (
            banner(r#""bcat":["IAB1",2]"#),
            "bcat: must be an array of strings",
        ),
        (
            with_imp(r#""banner":{},"pmp":{"deals":[{"id":"d","at":0}]}"#, ""),
            "imp[0].pmp.deals[0].at: out of range",
        ),
        (
            r#"{"id":"r","imp":[{"id":"1"}]}"#.to_string(),
            "imp[0]: needs one of banner, video, audio, native",
        ),
    ] {
        for mode in [ValidationMode::Strict, ValidationMode::Lenient] {
            assert_eq!(
                check(&json, mode),
                Err(expected.to_string()),
                "{mode} {json}"
            );
        }
    }
}

#[test]
fn valid_requests_pass_strict() {
    let title = TITLE;
    let full_native = format!(
        r#"{{"ver":"1.2","context":2,"contextsubtype":21,"plcmttype":1,"plcmtcnt":1,"seq":0,"aurlsupport":0,"durlsupport":0,"privacy":1,"assets":[{title},{{"id":2,"required":1,"img":{{"type":3,"wmin":300,"hmin":250,"mimes":["image/png"]}}}},{{"id":3,"video":{{"mimes":["video/mp4"],"minduration":5,"maxduration":30,"protocols":[2,3]}}}},{{"id":4,"data":{{"type":2,"len":90}}}}],"eventtrackers":[{{"event":1,"methods":[1,2]}},{{"event":501,"methods":[501]}}],"ext":{{}}}}"#
    );
    for json in [
        banner(""),
        banner(
            r#""at":501,"device":{"devicetype":42,"geo":{"lat":-90,"lon":180,"utcoffset":-720}}"#,
        ),
        with_imp(
            r#""banner":{"format":[{"w":300,"h":250},{"wratio":16,"hratio":9,"wmin":320}],"w":null}"#,
            "",
        ),
        with_imp(
            r#""video":{"mimes":["video/mp4"],"plcmt":99,"startdelay":-2,"maxextended":-1,"podseq":-1,"rqddurs":[15,30],"future":{"x":[1]}}"#,
            r#""future":[{"y":null}]"#,
        ),
        with_imp(
            r#""audio":{"mimes":["audio/mp4"],"minduration":5,"maxduration":5}"#,
            "",
        ),
        with_imp(
            r#""banner":{},"qty":{"multiplier":14.2,"sourcetype":1,"vendor":"route.org.uk"}"#,
            "",
        ),
        native(&full_native),
        native(&format!(r#"{{"native":{{"assets":[{title}]}}}}"#)),
        native(&format!(
            r#"{{"assets":[{title}],"context":500,"contextsubtype":21}}"#
        )),
        with_imp(
            &format!(r#""native":{{"request":{{"assets":[{title}]}}}}"#),
            "",
        ),
        banner(
            r#""source":{"schain":{"complete":1,"ver":"1.0","nodes":[{"asi":"a.com","sid":"1","hp":1}]}}"#,
        ),
    ] {
        assert_eq!(check(&json, ValidationMode::Strict), Ok(()), "for {json}");
    }
}

#[test]
fn too_many_native_assets_are_refused() {
    let assets: Vec<String> = (0..=NATIVE_ASSETS_MAX)
        .map(|i| format!(r#"{{"id":{i},"title":{{"len":10}}}}"#))
        .collect();
    assert_eq!(
        check(
            &native_assets(&assets.join(","), ""),
            ValidationMode::Strict
        ),
        Err("imp[0].native.request.assets: too many items".to_string())
    );
}
