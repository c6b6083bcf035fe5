//! Errors of decoding and validation: small `Copy` values with static messages (no allocation
//! on the hot path), naming the field path and the rule, e.g. `imp[1].id: missing`.
//! Mapping to HTTP statuses and no-bid reasons happens at the edge (exchange-bin).

use std::fmt;

/// Where in a bid request (or response) a problem was found.
///
/// Rendered as `imp[1].pmp.deals[0].id`: `imp`/`deal` are indexes when the field sits inside an
/// impression or a deal, `name` is the field's own name relative to that object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPath {
    /// Index of the impression, when the field is inside `imp[i]`.
    pub imp: Option<u16>,
    /// Index of the deal, when the field is inside `imp[i].pmp.deals[j]`.
    pub deal: Option<u16>,
    /// Field name relative to the innermost object; empty for the object itself.
    pub name: &'static str,
}

impl FieldPath {
    /// A top-level field such as `tmax`.
    pub const fn top(name: &'static str) -> Self {
        Self {
            imp: None,
            deal: None,
            name,
        }
    }

    /// A field of `imp[index]` (or the impression itself with an empty name).
    pub fn imp(index: usize, name: &'static str) -> Self {
        Self {
            imp: Some(clamp_index(index)),
            deal: None,
            name,
        }
    }

    /// A field of `imp[imp].pmp.deals[deal]`.
    pub fn deal(imp: usize, deal: usize, name: &'static str) -> Self {
        Self {
            imp: Some(clamp_index(imp)),
            deal: Some(clamp_index(deal)),
            name,
        }
    }
}

fn clamp_index(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.imp {
            None => f.write_str(self.name),
            Some(imp) => {
                write!(f, "imp[{imp}]")?;
                if let Some(deal) = self.deal {
                    write!(f, ".pmp.deals[{deal}]")?;
                }
                if !self.name.is_empty() {
                    write!(f, ".{}", self.name)?;
                }
                Ok(())
            }
        }
    }
}

/// The rule a bid request broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Not JSON at all; the byte offset where the parser gave up.
    MalformedJson {
        /// Byte offset into the body.
        offset: usize,
    },
    /// The body is JSON but not an object.
    NotAnObject,
    /// A required field is absent.
    Missing,
    /// A field has the wrong JSON type; the static string names the expected one.
    WrongType(&'static str),
    /// A required string or list is empty.
    Empty,
    /// A number that must be positive is zero or negative.
    MustBePositive,
    /// A number that must not be negative is.
    MustNotBeNegative,
    /// An impression offers no media type the exchange can auction.
    NeedsMediaType,
    /// An identifier that must be unique appears twice.
    Duplicate,
    /// More items than the exchange accepts (see the `*_MAX` constants).
    TooMany,
    /// More than one of mutually exclusive objects (`site`, `app`, `dooh`).
    OnlyOneOf(&'static str),
    /// A value outside its allowed set, e.g. `test` not 0 or 1.
    OutOfRange,
}

impl Rule {
    /// The rule as a short static message.
    pub fn message(self) -> &'static str {
        match self {
            Rule::MalformedJson { .. } => "malformed JSON",
            Rule::NotAnObject => "must be a JSON object",
            Rule::Missing => "missing",
            Rule::WrongType(expected) => expected,
            Rule::Empty => "must not be empty",
            Rule::MustBePositive => "must be > 0",
            Rule::MustNotBeNegative => "must be >= 0",
            Rule::NeedsMediaType => "needs one of banner, video, audio, native",
            Rule::Duplicate => "duplicate",
            Rule::TooMany => "too many items",
            Rule::OnlyOneOf(which) => which,
            Rule::OutOfRange => "out of range",
        }
    }
}

/// A bid request that cannot be auctioned: which field, which rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// Where.
    pub field: FieldPath,
    /// What.
    pub rule: Rule,
}

impl RequestError {
    pub(crate) fn new(field: FieldPath, rule: Rule) -> Self {
        Self { field, rule }
    }

    pub(crate) fn malformed(error: &simd_json::Error) -> Self {
        Self {
            field: FieldPath::top(""),
            rule: Rule::MalformedJson {
                offset: error.index(),
            },
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Rule::MalformedJson { offset } => write!(f, "malformed JSON at byte {offset}"),
            rule if self.field.name.is_empty() && self.field.imp.is_none() => {
                f.write_str(rule.message())
            }
            rule => write!(f, "{}: {}", self.field, rule.message()),
        }
    }
}

impl std::error::Error for RequestError {}

/// A DSP's bid response that cannot be used at all (as opposed to single bids rejected by the
/// auction, see [`crate::auction::Rejection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// Not JSON; byte offset where the parser gave up.
    MalformedJson {
        /// Byte offset into the body.
        offset: usize,
    },
    /// Valid JSON with the wrong shape; names the field.
    Shape(&'static str),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::MalformedJson { offset } => {
                write!(f, "malformed JSON at byte {offset}")
            }
            ResponseError::Shape(field) => write!(f, "bad shape at {field}"),
        }
    }
}

impl std::error::Error for ResponseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_the_openrtb_object_model() {
        assert_eq!(FieldPath::top("tmax").to_string(), "tmax");
        assert_eq!(FieldPath::imp(1, "id").to_string(), "imp[1].id");
        assert_eq!(FieldPath::imp(0, "").to_string(), "imp[0]");
        assert_eq!(
            FieldPath::deal(2, 0, "bidfloor").to_string(),
            "imp[2].pmp.deals[0].bidfloor"
        );
    }

    #[test]
    fn errors_render_field_then_rule() {
        let e = RequestError::new(FieldPath::imp(0, ""), Rule::NeedsMediaType);
        assert_eq!(
            e.to_string(),
            "imp[0]: needs one of banner, video, audio, native"
        );
        let e = RequestError::new(FieldPath::top("tmax"), Rule::MustBePositive);
        assert_eq!(e.to_string(), "tmax: must be > 0");
        let e = RequestError::new(FieldPath::top(""), Rule::MalformedJson { offset: 7 });
        assert_eq!(e.to_string(), "malformed JSON at byte 7");
    }
}
