//! Property tests of strict validation: requests a generator builds by the OpenRTB 2.6 object
//! model and the Native 1.2 request (every optional object, every value range, the Native
//! request as a string, as an object or wrapped Native 1.0 style, unknown fields anywhere
//! they are tolerated) are never refused, and one violation planted in such a request is
//! refused with the field path it was planted at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::ValidationMode;
use serde_json::{json, Map, Value};

/// An object of the fields that are `Some`.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(map)
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ./:\"\\\\\u{e9}-]{1,12}"
}

fn texts(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..max)
}

/// An integer code of an open list.
fn code() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..20, 500i64..600]
}

fn codes() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(code(), 0..4)
}

fn flag() -> impl Strategy<Value = i64> {
    0i64..=1
}

/// Anything JSON, for `ext` members and unknown fields.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn ext() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop::collection::btree_map("[a-z]{1,6}", any_json(), 0..3))
        .prop_map(|m| m.map(|m| Value::Object(m.into_iter().collect())))
}

fn format() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..2000, 0i64..2000, ext()).prop_map(|(w, h, ext)| object(vec![
            ("w", Some(w.into())),
            ("h", Some(h.into())),
            ("ext", ext)
        ])),
        (1i64..30, 1i64..30, 0i64..1000)
            .prop_map(|(wr, hr, wmin)| json!({"wratio": wr, "hratio": hr, "wmin": wmin})),
    ]
}

fn banner() -> impl Strategy<Value = Value> {
    (
        prop::option::of((0i64..2000, 0i64..2000)),
        prop::collection::vec(format(), 0..3),
        codes(),
        prop::option::of(code()),
        texts(3),
        prop::option::of(flag()),
        prop::option::of(flag()),
        ext(),
    )
        .prop_map(|(size, formats, battr, pos, mimes, topframe, vcm, ext)| {
            object(vec![
                ("w", size.map(|s| s.0.into())),
                ("h", size.map(|s| s.1.into())),
                ("format", (!formats.is_empty()).then(|| formats.into())),
                ("battr", Some(battr.into())),
                ("pos", pos.map(Value::from)),
                ("mimes", Some(mimes.into())),
                ("topframe", topframe.map(Value::from)),
                ("vcm", vcm.map(Value::from)),
                ("ext", ext),
            ])
        })
}

/// Either `minduration` <= `maxduration` (each optional) or `rqddurs`, never both.
fn durations() -> impl Strategy<Value = Vec<(&'static str, Option<Value>)>> {
    prop_oneof![
        (prop::option::of(0i64..60), prop::option::of(0i64..60)).prop_map(|(a, b)| {
            let (lo, hi) = match (a, b) {
                (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                other => other,
            };
            vec![
                ("minduration", lo.map(Value::from)),
                ("maxduration", hi.map(Value::from)),
            ]
        }),
        prop::collection::vec(1i64..120, 1..4).prop_map(|d| vec![("rqddurs", Some(d.into()))]),
    ]
}

fn dur_floors() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        (
            prop::option::of(0i64..60),
            prop::option::of(0i64..60),
            0.0f64..10.0,
        )
            .prop_map(|(lo, hi, floor)| {
                let lo = if lo.is_none() && hi.is_none() {
                    Some(0)
                } else {
                    lo
                };
                object(vec![
                    ("mindur", lo.map(Value::from)),
                    ("maxdur", hi.map(Value::from)),
                    ("bidfloor", Some(floor.into())),
                ])
            }),
        0..3,
    )
}

fn video() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(text(), 1..3),
        durations(),
        (
            -2i64..60,
            codes(),
            prop::option::of((0i64..2000, 0i64..2000)),
        ),
        (
            code(),
            flag(),
            0i64..30,
            -1i64..60,
            (0i64..5000, 0i64..5000),
        ),
        (-1i64..3, -1i64..3, prop::collection::vec(banner(), 0..2)),
        (dur_floors(), ext()),
    )
        .prop_map(
            |(mimes, durs, (delay, protocols, size), more, pod, (floors, ext))| {
                let (plcmt, skip, skipmin, maxextended, rates) = more;
                let (podseq, slotinpod, companions) = pod;
                let mut fields = vec![
                    ("mimes", Some(mimes.into())),
                    ("startdelay", Some(delay.into())),
                    ("protocols", Some(protocols.into())),
                    ("w", size.map(|s| s.0.into())),
                    ("h", size.map(|s| s.1.into())),
                    ("plcmt", Some(plcmt.into())),
                    ("skip", Some(skip.into())),
                    ("skipmin", Some(skipmin.into())),
                    ("maxextended", Some(maxextended.into())),
                    ("minbitrate", Some(rates.0.min(rates.1).into())),
                    ("maxbitrate", Some(rates.0.max(rates.1).into())),
                    ("podseq", Some(podseq.into())),
                    ("slotinpod", Some(slotinpod.into())),
                    ("companionad", Some(companions.into())),
                    ("durfloors", Some(floors.into())),
                    ("ext", ext),
                ];
                fields.extend(durs);
                object(fields)
            },
        )
}

fn audio() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(text(), 1..3),
        durations(),
        (codes(), prop::option::of(code()), prop::option::of(flag())),
        ext(),
    )
        .prop_map(|(mimes, durs, (protocols, feed, stitched), ext)| {
            let mut fields = vec![
                ("mimes", Some(mimes.into())),
                ("protocols", Some(protocols.into())),
                ("feed", feed.map(Value::from)),
                ("stitched", stitched.map(Value::from)),
                ("ext", ext),
            ];
            fields.extend(durs);
            object(fields)
        })
}

/// One Native asset body: exactly one of title, img, video, data.
fn asset_body() -> impl Strategy<Value = (&'static str, Value)> {
    prop_oneof![
        (1i64..140).prop_map(|len| ("title", json!({ "len": len }))),
        (code(), 0i64..1000, 0i64..1000, texts(2)).prop_map(|(t, w, h, mimes)| (
            "img",
            json!({"type": t, "wmin": w, "hmin": h, "mimes": mimes})
        )),
        (prop::collection::vec(text(), 1..2), 0i64..30, 0i64..30, prop::collection::vec(code(), 1..3))
            .prop_map(|(mimes, a, b, protocols)| (
                "video",
                json!({"mimes": mimes, "minduration": a.min(b), "maxduration": a.max(b), "protocols": protocols})
            )),
        (code(), prop::option::of(0i64..200)).prop_map(|(t, len)| (
            "data",
            object(vec![("type", Some(t.into())), ("len", len.map(Value::from))])
        )),
    ]
}

fn native_request() -> impl Strategy<Value = Value> {
    let context = prop_oneof![
        (1i64..=3).prop_flat_map(|c| (Just(c), prop::option::of(c * 10..c * 10 + 3))),
        (500i64..510).prop_map(|c| (c, Some(21))),
    ];
    let tracker = (
        prop_oneof![1i64..=4, 500i64..505],
        prop::collection::vec(prop_oneof![1i64..=2, 500i64..505], 1..3),
    )
        .prop_map(|(event, methods)| json!({"event": event, "methods": methods}));
    (
        prop::collection::vec((asset_body(), flag(), ext()), 1..5),
        prop::option::of(context),
        prop::option::of(prop_oneof![1i64..=4, 500i64..505]),
        prop::collection::vec(tracker, 0..3),
        (prop::option::of(1i64..5), prop::option::of(flag())),
    )
        .prop_map(
            |(assets, context, plcmttype, trackers, (plcmtcnt, privacy))| {
                let assets: Vec<Value> = assets
                    .into_iter()
                    .enumerate()
                    .map(|(id, ((kind, body), required, ext))| {
                        object(vec![
                            ("id", Some(id.into())),
                            ("required", Some(required.into())),
                            (kind, Some(body)),
                            ("ext", ext),
                        ])
                    })
                    .collect();
                object(vec![
                    ("ver", Some("1.2".into())),
                    ("context", context.map(|c| c.0.into())),
                    ("contextsubtype", context.and_then(|c| c.1).map(Value::from)),
                    ("plcmttype", plcmttype.map(Value::from)),
                    ("plcmtcnt", plcmtcnt.map(Value::from)),
                    ("privacy", privacy.map(Value::from)),
                    ("assets", Some(assets.into())),
                    ("eventtrackers", Some(trackers.into())),
                    ("layout", Some(1.into())),
                ])
            },
        )
}

/// `imp.native`: the request as a JSON string (plain or Native 1.0 wrapped) or an object.
fn native() -> impl Strategy<Value = Value> {
    (native_request(), 0u8..3, codes()).prop_map(|(request, form, api)| {
        let request = match form {
            0 => Value::from(request.to_string()),
            1 => Value::from(json!({ "native": request }).to_string()),
            _ => request,
        };
        json!({"request": request, "ver": "1.2", "api": api})
    })
}

fn deals() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        (0.0f64..10.0, prop::option::of(1i64..=3), texts(2), flag()),
        0..3,
    )
    .prop_map(|deals| {
        deals
            .into_iter()
            .enumerate()
            .map(|(n, (floor, at, wseat, guar))| {
                object(vec![
                    ("id", Some(format!("deal-{n}").into())),
                    ("bidfloor", Some(floor.into())),
                    ("at", at.map(Value::from)),
                    ("wseat", Some(wseat.into())),
                    ("guar", Some(guar.into())),
                ])
            })
            .collect()
    })
}

fn imp(n: usize) -> impl Strategy<Value = Value> {
    let media = (
        prop::option::of(banner()),
        prop::option::of(video()),
        prop::option::of(audio()),
        prop::option::of(native()),
    )
        .prop_map(|(b, v, a, n)| {
            // At least one media object: a banner when the draw gave none.
            let b = b.or_else(|| (v.is_none() && a.is_none() && n.is_none()).then(|| json!({})));
            vec![("banner", b), ("video", v), ("audio", a), ("native", n)]
        });
    let extras = (
        (0.0f64..20.0, flag(), flag(), 0i64..4, 0i64..3600),
        prop::option::of((0.5f64..50.0, code())),
        prop::collection::vec((text(), -1.0f64..2.0), 0..2),
        prop::option::of((flag(), deals())),
        ext(),
    );
    (media, extras).prop_map(move |(media, extras)| {
        let ((floor, instl, secure, ssai, exp), qty, metrics, pmp, ext) = extras;
        let qty = qty.map(|(m, source)| {
            json!({"multiplier": m, "sourcetype": source, "vendor": "vendor.example"})
        });
        let metrics: Vec<Value> = metrics
            .into_iter()
            .map(|(t, v)| json!({"type": t, "value": v}))
            .collect();
        let pmp = pmp.map(|(private, deals)| json!({"private_auction": private, "deals": deals}));
        let mut fields = vec![
            ("id", Some(format!("imp-{n}").into())),
            ("bidfloor", Some(floor.into())),
            ("instl", Some(instl.into())),
            ("secure", Some(secure.into())),
            ("ssai", Some(ssai.into())),
            ("exp", Some(exp.into())),
            ("qty", qty),
            ("metric", Some(metrics.into())),
            ("pmp", pmp),
            ("ext", ext),
        ];
        fields.extend(media);
        object(fields)
    })
}

fn geo() -> impl Strategy<Value = Value> {
    (
        -90.0f64..=90.0,
        -180.0f64..=180.0,
        code(),
        0i64..5000,
        -720i64..=840,
        text(),
    )
        .prop_map(|(lat, lon, t, accuracy, utcoffset, country)| {
            json!({"lat": lat, "lon": lon, "type": t, "accuracy": accuracy, "lastfix": 0,
                   "utcoffset": utcoffset, "country": country})
        })
}

fn device() -> impl Strategy<Value = Value> {
    (
        (text(), code(), 0i64..4000, 0i64..4000, 0i64..600),
        (0.5f64..4.0, flag(), flag(), flag(), code()),
        prop::option::of(geo()),
        prop::option::of((
            prop::collection::vec((text(), texts(3)), 0..3),
            flag(),
            code(),
        )),
        ext(),
    )
        .prop_map(|(a, b, geo, sua, ext)| {
            let (ua, devicetype, w, h, ppi) = a;
            let (pxratio, js, dnt, lmt, connectiontype) = b;
            let sua = sua.map(|(browsers, mobile, source)| {
                let browsers: Vec<Value> = browsers
                    .into_iter()
                    .map(|(brand, version)| json!({"brand": brand, "version": version}))
                    .collect();
                json!({"browsers": browsers, "mobile": mobile, "source": source,
                       "platform": {"brand": "Android"}})
            });
            object(vec![
                ("ua", Some(ua.into())),
                ("devicetype", Some(devicetype.into())),
                ("w", Some(w.into())),
                ("h", Some(h.into())),
                ("ppi", Some(ppi.into())),
                ("pxratio", Some(pxratio.into())),
                ("js", Some(js.into())),
                ("dnt", Some(dnt.into())),
                ("lmt", Some(lmt.into())),
                ("connectiontype", Some(connectiontype.into())),
                ("geo", geo),
                ("sua", sua),
                ("ext", ext),
            ])
        })
}

/// `keywords` or `kwarray`, never both.
fn keywords() -> impl Strategy<Value = Vec<(&'static str, Option<Value>)>> {
    prop_oneof![
        Just(vec![]),
        text().prop_map(|k| vec![("keywords", Some(k.into()))]),
        texts(3).prop_map(|k| vec![("kwarray", Some(k.into()))]),
    ]
}

fn data() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        (text(), prop::collection::vec((text(), text()), 0..3)).prop_map(|(name, segments)| {
            let segments: Vec<Value> = segments
                .into_iter()
                .map(|(id, value)| json!({"id": id, "value": value}))
                .collect();
            json!({"name": name, "segment": segments})
        }),
        0..3,
    )
}

fn user() -> impl Strategy<Value = Value> {
    (
        text(),
        prop::option::of(geo()),
        data(),
        keywords(),
        prop::collection::vec(code(), 0..2),
    )
        .prop_map(|(id, geo, data, kw, atypes)| {
            let uids: Vec<Value> = atypes
                .iter()
                .map(|a| json!({"id": "u", "atype": a}))
                .collect();
            let mut fields = vec![
                ("id", Some(id.into())),
                ("geo", geo),
                ("data", Some(data.into())),
                (
                    "eids",
                    Some(json!([{"source": "id.example", "uids": uids}])),
                ),
            ];
            fields.extend(kw);
            object(fields)
        })
}

/// `site`, `app` or `dooh` (or none), with publisher and content.
fn channel() -> impl Strategy<Value = Option<(&'static str, Value)>> {
    let content = (
        text(),
        prop::option::of(0i64..100),
        flag(),
        data(),
        keywords(),
    )
        .prop_map(|(title, episode, livestream, data, kw)| {
            let mut fields = vec![
                ("title", Some(title.into())),
                ("episode", episode.map(Value::from)),
                ("livestream", Some(livestream.into())),
                ("data", Some(data.into())),
                ("producer", Some(json!({"name": "p", "cat": ["IAB1"]}))),
                ("network", Some(json!({"id": "n"}))),
            ];
            fields.extend(kw);
            object(fields)
        });
    let publisher = (text(), texts(2)).prop_map(|(id, cat)| json!({"id": id, "cat": cat}));
    (
        0u8..4,
        text(),
        publisher,
        prop::option::of(content),
        keywords(),
        flag(),
    )
        .prop_map(|(kind, id, publisher, content, kw, flag)| {
            let mut fields = vec![
                ("id", Some(id.into())),
                ("publisher", Some(publisher)),
                ("content", content),
            ];
            match kind {
                0 => None,
                1 => {
                    fields.extend(kw);
                    fields.push(("mobile", Some(flag.into())));
                    Some(("site", object(fields)))
                }
                2 => {
                    fields.extend(kw);
                    fields.push(("paid", Some(flag.into())));
                    Some(("app", object(fields)))
                }
                _ => {
                    fields.push(("venuetype", Some(json!(["transit"]))));
                    Some(("dooh", object(fields)))
                }
            }
        })
}

fn request() -> impl Strategy<Value = Value> {
    let imps = (1usize..4).prop_flat_map(|n| (0..n).map(imp).collect::<Vec<_>>());
    let top = (
        (
            text(),
            flag(),
            prop_oneof![1i64..=2, 500i64..510],
            1i64..1000,
            texts(4),
        ),
        (
            prop::option::of(device()),
            prop::option::of(user()),
            channel(),
        ),
        prop::option::of((flag(), flag(), codes())),
        prop::option::of((flag(), 1usize..4)),
        prop::collection::btree_map("zz[a-z]{1,5}", any_json(), 0..3),
    );
    (imps, top).prop_map(|(imps, top)| {
        let ((id, test, at, tmax, bcat), (device, user, channel), regs, source, unknown) = top;
        let regs = regs.map(|(coppa, gdpr, sid)| {
            json!({"coppa": coppa, "gdpr": gdpr, "gpp_sid": sid, "us_privacy": "1YNN"})
        });
        let source = source.map(|(complete, n)| {
            let nodes: Vec<Value> = (0..n)
                .map(|i| json!({"asi": "ssp.example", "sid": i.to_string(), "hp": 1}))
                .collect();
            json!({"fd": complete, "tid": "t", "schain": {"complete": complete, "ver": "1.0", "nodes": nodes}})
        });
        let mut fields = vec![
            ("id", Some(id.into())),
            ("imp", Some(imps.into())),
            ("test", Some(test.into())),
            ("at", Some(at.into())),
            ("tmax", Some(tmax.into())),
            ("bcat", Some(bcat.into())),
            ("cur", Some(json!(["USD"]))),
            ("device", device),
            ("user", user),
            ("regs", regs),
            ("source", source),
        ];
        if let Some((name, value)) = channel {
            fields.push((name, Some(value)));
        }
        let mut request = object(fields);
        for (key, value) in unknown {
            request[key] = value;
        }
        request
    })
}

fn strict(json: &[u8]) -> Result<(), String> {
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    BidRequest::decode_with(json, &mut doc, &mut decoder, ValidationMode::Strict)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Plants one strict-only violation at a place every generated request has.
fn plant(mut request: Value, which: u8) -> (Value, &'static str) {
    let imp = &mut request["imp"][0];
    match which {
        0 => {
            imp["exp"] = json!(-1);
            (request, "imp[0].exp: must be >= 0")
        }
        1 => {
            imp["secure"] = json!(2);
            (request, "imp[0].secure: out of range")
        }
        2 => {
            imp["metric"] = json!([{"value": 1.0}]);
            (request, "imp[0].metric[0].type: missing")
        }
        3 => {
            request["at"] = json!(7);
            (request, "at: not an allowed value")
        }
        _ => {
            request["regs"] = json!({"gdpr": 7});
            (request, "regs.gdpr: out of range")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn generated_valid_requests_are_never_refused(request in request()) {
        let body = serde_json::to_vec(&request).unwrap();
        prop_assert_eq!(strict(&body), Ok(()), "{}", request);
    }

    #[test]
    fn a_planted_violation_is_refused_where_it_was_planted(
        request in request(),
        which in 0u8..5,
    ) {
        let (request, expected) = plant(request, which);
        let body = serde_json::to_vec(&request).unwrap();
        prop_assert_eq!(strict(&body), Err(expected.to_string()), "{}", request);
    }
}
