//! Errors of decoding and validation: small `Copy` values with static messages (no allocation
//! on the hot path), naming the field path and the rule, e.g. `imp[1].id: missing`.
//! Mapping to HTTP statuses and no-bid reasons happens at the edge (exchange-bin).

use std::fmt;

/// Longest field path kept, bytes. A longer one (never seen with the OpenRTB object model: the
/// deepest, `imp[63].native.request.eventtrackers[63].methods[63]`, is 52) is cut, ending `...`.
/// The size keeps a [`RequestError`] under 128 bytes, so `Result`s carrying it stay cheap.
pub const FIELD_PATH_BYTES_MAX: usize = 94;

/// Where in a bid request (or response) a problem was found, rendered like the OpenRTB object
/// model: `imp[1].pmp.deals[0].id`, `imp[0].banner.format[1].w`, `device.geo.lat`.
///
/// Two forms behind one type: the auction's own checks name a field of the request, of
/// `imp[i]` or of `imp[i].pmp.deals[j]` with a static name (cheap to build on the hot path);
/// the full validation renders the path from the tape when it fails (any depth).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FieldPath(Repr);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Repr {
    Named {
        imp: Option<u16>,
        deal: Option<u16>,
        name: &'static str,
    },
    Text {
        len: u8,
        bytes: [u8; FIELD_PATH_BYTES_MAX],
    },
}

impl FieldPath {
    /// A top-level field such as `tmax` (the whole request with an empty name).
    pub const fn top(name: &'static str) -> Self {
        Self(Repr::Named {
            imp: None,
            deal: None,
            name,
        })
    }

    /// A field of `imp[index]` (or the impression itself with an empty name).
    pub fn imp(index: usize, name: &'static str) -> Self {
        Self(Repr::Named {
            imp: Some(clamp_index(index)),
            deal: None,
            name,
        })
    }

    /// A field of `imp[imp].pmp.deals[deal]`.
    pub fn deal(imp: usize, deal: usize, name: &'static str) -> Self {
        Self(Repr::Named {
            imp: Some(clamp_index(imp)),
            deal: Some(clamp_index(deal)),
            name,
        })
    }

    /// Whether this is the request itself (no field named).
    pub fn is_root(&self) -> bool {
        match self.0 {
            Repr::Named { imp, name, .. } => imp.is_none() && name.is_empty(),
            Repr::Text { len, .. } => len == 0,
        }
    }

    /// `inner`, a path inside an embedded document (the Native request string), placed under
    /// `self`: `imp[0].native.request` + `assets[2].img` = `imp[0].native.request.assets[2].img`.
    pub fn join(self, inner: FieldPath) -> FieldPath {
        let mut out = PathBuilder::new();
        // Writing into a PathBuilder cannot fail: it truncates instead.
        let _ = fmt::write(&mut out, format_args!("{self}"));
        if !inner.is_root() {
            out.key("");
            let _ = fmt::write(&mut out, format_args!("{inner}"));
        }
        out.finish()
    }
}

fn clamp_index(index: usize) -> u16 {
    u16::try_from(index).unwrap_or(u16::MAX)
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Named {
                imp: None, name, ..
            } => f.write_str(name),
            Repr::Named {
                imp: Some(imp),
                deal,
                name,
            } => {
                write!(f, "imp[{imp}]")?;
                if let Some(deal) = deal {
                    write!(f, ".pmp.deals[{deal}]")?;
                }
                if !name.is_empty() {
                    write!(f, ".{name}")?;
                }
                Ok(())
            }
            // Built only from `&str` pieces and ASCII, cut on a char boundary: valid UTF-8.
            Repr::Text { len, bytes } => {
                f.write_str(std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("?"))
            }
        }
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({self})")
    }
}

/// Builds a rendered [`FieldPath`] piece by piece, without allocating: keys joined by `.`,
/// array indexes as `[i]`, cut at [`FIELD_PATH_BYTES_MAX`] with a trailing `...`.
#[derive(Clone, Copy)]
pub(crate) struct PathBuilder {
    len: usize,
    bytes: [u8; FIELD_PATH_BYTES_MAX],
    truncated: bool,
}

/// What a cut path ends with.
const TRUNCATION_MARK: &str = "...";

impl PathBuilder {
    pub(crate) fn new() -> Self {
        Self {
            len: 0,
            bytes: [0; FIELD_PATH_BYTES_MAX],
            truncated: false,
        }
    }

    /// Appends `.key` (just `key` at the start).
    pub(crate) fn key(&mut self, key: &str) {
        if self.len > 0 {
            self.push(".");
        }
        self.push(key);
    }

    /// Appends `[index]`.
    pub(crate) fn index(&mut self, index: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = index;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push("[");
        self.push(std::str::from_utf8(&digits[at..]).unwrap_or("?"));
        self.push("]");
    }

    fn push(&mut self, piece: &str) {
        if self.truncated {
            return;
        }
        let room = FIELD_PATH_BYTES_MAX - TRUNCATION_MARK.len() - self.len;
        if piece.len() <= room {
            self.bytes[self.len..self.len + piece.len()].copy_from_slice(piece.as_bytes());
            self.len += piece.len();
            return;
        }
        let mut cut = room;
        while !piece.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bytes[self.len..self.len + cut].copy_from_slice(&piece.as_bytes()[..cut]);
        self.len += cut;
        self.bytes[self.len..self.len + TRUNCATION_MARK.len()]
            .copy_from_slice(TRUNCATION_MARK.as_bytes());
        self.len += TRUNCATION_MARK.len();
        self.truncated = true;
    }

    pub(crate) fn finish(self) -> FieldPath {
        debug_assert!(self.len <= FIELD_PATH_BYTES_MAX);
        FieldPath(Repr::Text {
            len: u8::try_from(self.len).unwrap_or(0),
            bytes: self.bytes,
        })
    }
}

impl fmt::Write for PathBuilder {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
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
    /// A value outside its allowed range, e.g. `test` not 0 or 1, `device.geo.lat` above 90.
    OutOfRange,
    /// A value outside a list the specification closes (e.g. `at` 3: only 1, 2 and the
    /// exchange-specific 500+ exist); see [`crate::validate::lists`].
    NotAllowed,
    /// Fields that must (not) appear together; the static string says how.
    Conflict(&'static str),
    /// A string that must hold a JSON document (`imp.native.request`) does not parse.
    NotJson,
    /// The `x-openrtb-version` header names a version the exchange does not speak (see
    /// [`crate::version`]).
    UnsupportedVersion,
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
            Rule::NotAllowed => "not an allowed value",
            Rule::Conflict(how) => how,
            Rule::NotJson => "not valid JSON",
            Rule::UnsupportedVersion => "OpenRTB version not spoken (2.5 and 2.6 are)",
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
            rule if self.field.is_root() => f.write_str(rule.message()),
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

    #[test]
    fn built_paths_index_lists_and_join_embedded_documents() {
        let mut b = PathBuilder::new();
        b.key("imp");
        b.index(0);
        b.key("native");
        b.key("request");
        let outer = b.finish();
        let mut b = PathBuilder::new();
        b.key("assets");
        b.index(12);
        b.key("img");
        let inner = b.finish();
        assert_eq!(
            outer.join(inner).to_string(),
            "imp[0].native.request.assets[12].img"
        );
        assert_eq!(outer.join(PathBuilder::new().finish()), outer);
        assert_eq!(
            FieldPath::imp(3, "id").join(inner).to_string(),
            "imp[3].id.assets[12].img"
        );
        assert!(PathBuilder::new().finish().is_root());
        assert!(FieldPath::top("").is_root() && !FieldPath::imp(0, "").is_root());
    }

    #[test]
    fn long_paths_are_cut_with_a_mark_and_errors_stay_small() {
        let mut b = PathBuilder::new();
        for _ in 0..40 {
            b.key("abc");
            b.index(7);
        }
        let text = b.finish().to_string();
        assert_eq!(text.len(), FIELD_PATH_BYTES_MAX);
        assert!(
            text.starts_with("abc[7].abc[7]") && text.ends_with("..."),
            "{text}"
        );
        // Cut inside a multi-byte character: still valid UTF-8.
        let mut b = PathBuilder::new();
        b.key(&"\u{e9}".repeat(FIELD_PATH_BYTES_MAX));
        assert!(b.finish().to_string().ends_with("..."));
        assert!(std::mem::size_of::<RequestError>() <= 128);
    }
}
