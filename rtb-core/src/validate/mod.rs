//! Strict validation of a whole bid request by the OpenRTB 2.6 object model, and of the Native
//! 1.2 request inside `imp.native.request`.
//!
//! [`ValidationMode::Strict`] (the default) walks every known field of every object after the
//! request view is decoded: types (`ext` is always an object), required fields, ranges,
//! enumerations the specification closes ([`lists`] says which and why), and the combination
//! rules the object tables state. Unknown fields are skipped, as 2.6 §2.6 requires; a key the
//! model knows given twice is refused, since the exchange and a DSP could read different
//! values. [`ValidationMode::Lenient`] checks only what the auction reads (see
//! [`crate::request`]).
//!
//! Each violation is a [`RequestError`] with the path rendered from the tape, e.g.
//! `imp[0].banner.format[1].w: must be >= 0` or
//! `imp[0].native.request.assets[2]: needs exactly one of title, img, video, data`.
//!
//! Layout: the object tables are split by concern ([`top`], [`imp`], [`media`], [`native`],
//! [`site_app`], [`device`], [`user`]); [`schema`] is their shape, [`walk`] checks a tape
//! against them and [`path`] names the failing field.
//!
//! Cost: one more pass over the tape, a perfect-hash lookup per key, no allocation; measured
//! in BENCHMARKS.md ("Strict validation").

mod device;
mod imp;
pub mod lists;
mod media;
pub(crate) mod native;
mod path;
pub(crate) mod schema;
mod site_app;
mod top;
mod user;
pub(crate) mod walk;

use std::fmt;
use std::str::FromStr;

use simd_json::Node;

use crate::error::RequestError;
use native::NativeParser;
pub use native::NATIVE_ASSETS_MAX;

/// How much of a bid request is validated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ValidationMode {
    /// The whole OpenRTB 2.6 object model and the Native 1.2 request.
    #[default]
    Strict,
    /// Only the fields the auction reads (ids, floors, currencies, deals, seat and block
    /// lists, `tmax`, `at`, `test`, the channel objects): for trusted supply.
    Lenient,
}

impl ValidationMode {
    /// `strict` or `lenient`, as the exchange's `--validation` flag spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationMode::Strict => "strict",
            ValidationMode::Lenient => "lenient",
        }
    }
}

impl fmt::Display for ValidationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--validation` value that is neither `strict` nor `lenient`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownValidationMode;

impl fmt::Display for UnknownValidationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected strict or lenient")
    }
}

impl std::error::Error for UnknownValidationMode {}

impl FromStr for ValidationMode {
    type Err = UnknownValidationMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(ValidationMode::Strict),
            "lenient" => Ok(ValidationMode::Lenient),
            _ => Err(UnknownValidationMode),
        }
    }
}

/// Validates the request on `nodes` (already decoded by the lenient view) against the whole
/// object model.
pub(crate) fn request(nodes: &[Node<'_>], native: NativeParser<'_>) -> Result<(), RequestError> {
    walk::Walker::new(nodes, Some(native)).validate(0, &top::BID_REQUEST)
}
