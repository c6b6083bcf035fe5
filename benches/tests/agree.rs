//! The four decoders the `decode/*` benches compare must read the same fields from every sample
//! they accept, or the comparison is not apples to apples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use benches::{
    decode_owned, decode_view_serde_json, decode_view_sonic, imp_ids_unique, request_samples,
    ViewFields,
};
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;

#[test]
fn all_decoders_agree_on_the_view_fields() {
    // The built-in fallback requests test less than the samples: not enough for CI.
    test_support::ci::require_samples_in_ci("all_decoders_agree_on_the_view_fields");
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let samples = request_samples();
    assert!(!samples.is_empty());
    let mut owned_decoded = 0;
    for sample in &samples {
        let raw = sample.bytes.as_slice();
        let request = BidRequest::decode(raw, &mut doc, &mut decoder)
            .unwrap_or_else(|e| panic!("{}: rtb-core refused: {e}", sample.stem));
        let reference = ViewFields::from_rtb_core(&request);
        drop(request);
        assert!(imp_ids_unique(&reference), "{}", sample.stem);

        let view = decode_view_serde_json(raw)
            .unwrap_or_else(|e| panic!("{}: serde_json view refused: {e}", sample.stem));
        assert_eq!(
            ViewFields::from_view(&view),
            reference,
            "{}: serde_json view",
            sample.stem
        );

        let view = decode_view_sonic(raw)
            .unwrap_or_else(|e| panic!("{}: sonic-rs view refused: {e}", sample.stem));
        assert_eq!(
            ViewFields::from_view(&view),
            reference,
            "{}: sonic-rs view",
            sample.stem
        );

        match decode_owned(raw) {
            Ok(owned) => {
                owned_decoded += 1;
                assert_eq!(
                    ViewFields::from_owned(&owned),
                    reference,
                    "{}: openrtb26",
                    sample.stem
                );
            }
            Err(e) => println!(
                "{}: openrtb26 cannot decode it ({e}), not compared",
                sample.stem
            ),
        }
    }
    println!(
        "{} samples, {owned_decoded} also decoded by openrtb26",
        samples.len()
    );
}

#[test]
fn the_baselines_apply_the_same_rules() {
    let cases: [(&str, bool); 7] = [
        (r#"{"id":"a","imp":[{"id":"1","banner":{}}]}"#, true),
        (r#"{"id":"","imp":[{"id":"1","banner":{}}]}"#, false),
        (r#"{"id":"a","imp":[]}"#, false),
        (
            r#"{"id":"a","imp":[{"id":"1","banner":{}},{"id":"1","video":{}}]}"#,
            false,
        ),
        (r#"{"id":"a","imp":[{"id":"1"}]}"#, false),
        (
            r#"{"id":"a","tmax":0,"imp":[{"id":"1","native":{}}]}"#,
            false,
        ),
        (
            r#"{"id":"a\"b","tmax":5,"imp":[{"id":"x\u0041","audio":{"mimes":["audio/mp4"]}}]}"#,
            true,
        ),
    ];
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    for (json, valid) in cases {
        let raw = json.as_bytes();
        let core = BidRequest::decode(raw, &mut doc, &mut decoder)
            .ok()
            .map(drop);
        let core_ok = core.is_some();
        assert_eq!(core_ok, valid, "rtb-core on {json}");
        assert_eq!(
            decode_view_serde_json(raw).is_ok(),
            valid,
            "serde view on {json}"
        );
        assert_eq!(
            decode_view_sonic(raw).is_ok(),
            valid,
            "sonic view on {json}"
        );
        assert_eq!(decode_owned(raw).is_ok(), valid, "openrtb26 on {json}");
    }
}
