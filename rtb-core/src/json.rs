//! The JSON layer under the OpenRTB views: reusable simd-json buffers, the padded document
//! copy that simd-json unescapes in place, and helpers that walk simd-json's tape directly.
//!
//! Why the tape and not serde: measured on this project's 2-core machine, a partial borrowed
//! view decoded through serde costs 1.9-3.5 us per 3 KB request whatever the JSON library.
//! Filling a reused tape with `fill_tape_padded` (no per-call copy into simd-json's own buffer,
//! no tape allocation) and walking it, skipping unneeded subtrees by their node counts, is what
//! gets below that. See BENCHMARKS.md for the figures.
//!
//! Ownership: [`Decoder`] owns simd-json's scratch buffers (one per worker). [`Document`] owns a
//! padded copy of one JSON body plus a spare tape; a decoded view borrows the document's bytes
//! and borrows the tape (`TapeLoan`); dropping the view gives the tape back, so the next
//! decode allocates nothing.

use simd_json::{Node, StaticNode, Tape};

/// Deepest nesting accepted in any JSON body. OpenRTB needs about 8 levels; a hostile body of a
/// million `[` must be refused early and cheaply, not recursed into.
pub const JSON_DEPTH_MAX: usize = 64;

/// simd-json's parse buffers, reused for every document a worker decodes.
pub struct Decoder {
    pub(crate) buffers: simd_json::Buffers,
}

/// Reused buffers for parsing `imp.native.request` strings (a JSON document inside a string):
/// a padded copy and a tape. Kept in the [`Document`] so they live as long as the tape does;
/// `validate::native` fills them.
#[derive(Debug)]
pub(crate) struct NativeScratch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) tape: Tape<'static>,
}

impl Default for NativeScratch {
    fn default() -> Self {
        Self {
            bytes: Vec::new(),
            tape: Tape(Vec::new()),
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// Buffers sized for the usual 4 KB body; they grow once if a larger one arrives.
    pub fn new() -> Self {
        Self {
            buffers: simd_json::Buffers::with_max_depth(4096, JSON_DEPTH_MAX),
        }
    }
}

/// A reusable, padded copy of one JSON document and the tape that indexes it.
///
/// simd-json rewrites the bytes it decodes (it unescapes strings in place), so the caller keeps
/// the raw body for forwarding and decodes this copy.
pub struct Document {
    pub(crate) bytes: Vec<u8>,
    /// An untouched copy of the body, kept for bid responses only: the winning ad markup is
    /// forwarded still JSON-escaped from here instead of being unescaped and escaped again.
    pub(crate) pristine: Vec<u8>,
    pub(crate) spare_tape: Tape<'static>,
    /// Buffers for the Native request string inside a request, grown on first use.
    pub(crate) native: NativeScratch,
}

impl Default for Document {
    fn default() -> Self {
        Self {
            bytes: Vec::with_capacity(4096 + simd_json::INPUT_PADDING),
            // Sized like `bytes`: a bid response larger than any seen before would otherwise
            // grow it on the auction's path (the allocation test saw it about once per 4,000
            // auctions).
            pristine: Vec::with_capacity(4096),
            spare_tape: Tape(Vec::with_capacity(512)),
            native: NativeScratch::default(),
        }
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("bytes_capacity", &self.bytes.capacity())
            .field("tape_capacity", &self.spare_tape.0.capacity())
            .finish()
    }
}

/// A document's tape, lent to the view decoded from it. Dropping the view gives the tape back
/// to its document (emptied, capacity kept), so the next decode into the same document
/// allocates nothing and no caller has to remember to return it.
pub(crate) struct TapeLoan<'a> {
    tape: Tape<'a>,
    home: &'a mut Tape<'static>,
}

impl<'a> TapeLoan<'a> {
    /// The tape's nodes.
    #[inline]
    pub(crate) fn nodes(&self) -> &[Node<'a>] {
        &self.tape.0
    }
}

impl Drop for TapeLoan<'_> {
    fn drop(&mut self) {
        let tape = std::mem::replace(&mut self.tape, Tape(Vec::new()));
        *self.home = tape.reset();
    }
}

impl Document {
    /// A document whose buffers are pre-sized for bodies of `bytes_expected`.
    pub fn with_capacity(bytes_expected: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes_expected + simd_json::INPUT_PADDING),
            pristine: Vec::new(),
            spare_tape: Tape(Vec::with_capacity(bytes_expected / 8)),
            native: NativeScratch::default(),
        }
    }

    /// Copies `raw` in, pads it and fills a tape over it. On failure the tape stays here; on
    /// success it is lent to the caller's view and comes back when the view is dropped.
    pub(crate) fn parse<'a, 'd>(
        &'a mut self,
        raw: &[u8],
        decoder: &'d mut Decoder,
        keep_pristine: bool,
    ) -> Result<Parsed<'a, 'd>, simd_json::Error> {
        let Document {
            bytes,
            pristine,
            spare_tape,
            native,
        } = self;
        bytes.clear();
        bytes.extend_from_slice(raw);
        bytes.resize(raw.len() + simd_json::INPUT_PADDING, 0);
        pristine.clear();
        if keep_pristine {
            pristine.extend_from_slice(raw);
        }
        let base_address = bytes.as_ptr() as usize;
        let mut tape = std::mem::replace(spare_tape, Tape(Vec::new())).reset::<'a>();
        match simd_json::fill_tape_padded(bytes, raw.len(), &mut decoder.buffers, &mut tape) {
            Ok(()) => Ok(Parsed {
                tape: TapeLoan {
                    tape,
                    home: spare_tape,
                },
                source: Source {
                    structurals: decoder.buffers.structural_indexes(),
                    pristine,
                    base_address,
                },
                native,
            }),
            Err(error) => {
                *spare_tape = tape.reset();
                Err(error)
            }
        }
    }
}

/// A freshly filled tape (lent by its document) and the structural indexes of the document.
pub(crate) struct Parsed<'a, 'd> {
    pub(crate) tape: TapeLoan<'a>,
    pub(crate) source: Source<'a, 'd>,
    pub(crate) native: &'a mut NativeScratch,
}

/// Where decoded values came from in the body.
pub(crate) struct Source<'a, 'd> {
    pub(crate) structurals: &'d [u32],
    /// The body as received (empty unless asked for).
    pub(crate) pristine: &'a [u8],
    /// Address of the decoded bytes: a decoded string's offset is its address minus this.
    pub(crate) base_address: usize,
}

impl<'a> Source<'a, '_> {
    /// The JSON-escaped text of a decoded string as it was in the body, between its quotes.
    ///
    /// simd-json unescapes a string in place, starting where its raw text started, so the
    /// string's offset locates the raw text; the raw text ends at the closing quote just before
    /// the next structural character.
    pub(crate) fn raw_text(&self, decoded: &str) -> Option<&'a [u8]> {
        let start = (decoded.as_ptr() as usize).checked_sub(self.base_address)?;
        let opening_quote = u32::try_from(start.checked_sub(1)?).ok()?;
        let k = self.structurals.binary_search(&opening_quote).ok()?;
        let next = *self.structurals.get(k + 1)? as usize;
        let before_next = self.pristine.get(start..next)?;
        let closing = before_next.iter().rposition(|&b| b == b'"')?;
        let text = &before_next[..closing];
        (text.len() >= decoded.len()).then_some(text)
    }
}

/// Number of tape nodes the value at `index` occupies, itself included.
#[inline]
pub(crate) fn span(nodes: &[Node<'_>], index: usize) -> usize {
    match nodes.get(index) {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        Some(_) => 1,
        None => 0,
    }
}

/// Iterates `(key, value_index)` over the object at `index` (nothing when it is not an object).
#[inline]
pub(crate) fn object_entries<'t, 'a>(
    nodes: &'t [Node<'a>],
    index: usize,
) -> impl Iterator<Item = (&'a str, usize)> + 't {
    let len = match nodes.get(index) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    let mut cursor = index + 1;
    (0..len).filter_map(move |_| {
        let key = match nodes.get(cursor) {
            Some(Node::String(key)) => *key,
            _ => return None,
        };
        let value = cursor + 1;
        cursor = value + span(nodes, value);
        Some((key, value))
    })
}

/// Iterates the value indexes of the array at `index` (nothing when it is not an array).
#[inline]
pub(crate) fn array_items<'t>(
    nodes: &'t [Node<'_>],
    index: usize,
) -> impl Iterator<Item = usize> + 't {
    let len = match nodes.get(index) {
        Some(Node::Array { len, .. }) => *len,
        _ => 0,
    };
    let mut cursor = index + 1;
    (0..len).map(move |_| {
        let item = cursor;
        cursor += span(nodes, item);
        item
    })
}

#[inline]
pub(crate) fn is_object(nodes: &[Node<'_>], index: usize) -> bool {
    matches!(nodes.get(index), Some(Node::Object { .. }))
}

#[inline]
pub(crate) fn is_array(nodes: &[Node<'_>], index: usize) -> bool {
    matches!(nodes.get(index), Some(Node::Array { .. }))
}

#[inline]
pub(crate) fn as_str<'a>(nodes: &[Node<'a>], index: usize) -> Option<&'a str> {
    match nodes.get(index) {
        Some(Node::String(s)) => Some(s),
        _ => None,
    }
}

#[inline]
pub(crate) fn is_null(nodes: &[Node<'_>], index: usize) -> bool {
    matches!(nodes.get(index), Some(Node::Static(StaticNode::Null)))
}

/// A JSON number as f64 (integers included), or `None` for any other type.
#[inline]
pub(crate) fn as_f64(nodes: &[Node<'_>], index: usize) -> Option<f64> {
    match nodes.get(index) {
        Some(Node::Static(StaticNode::F64(v))) => Some(*v),
        Some(Node::Static(StaticNode::I64(v))) => Some(*v as f64),
        Some(Node::Static(StaticNode::U64(v))) => Some(*v as f64),
        _ => None,
    }
}

/// A JSON integer (an integral float such as `120.0` too), or `None`.
#[inline]
pub(crate) fn as_i64(nodes: &[Node<'_>], index: usize) -> Option<i64> {
    match nodes.get(index) {
        Some(Node::Static(StaticNode::I64(v))) => Some(*v),
        Some(Node::Static(StaticNode::U64(v))) => i64::try_from(*v).ok(),
        Some(Node::Static(StaticNode::F64(v)))
            if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 =>
        {
            Some(*v as i64)
        }
        _ => None,
    }
}

/// A list of strings kept as a position on a view's tape: no copy, no allocation, any length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrListRef {
    /// Tape index of the array node; 0 means "absent" (index 0 is always the root).
    pub(crate) array_index: u32,
}

impl StrListRef {
    pub(crate) const ABSENT: StrListRef = StrListRef { array_index: 0 };

    /// Whether the field was present at all.
    pub fn is_present(self) -> bool {
        self.array_index != 0
    }

    pub(crate) fn iter<'t, 'a>(self, nodes: &'t [Node<'a>]) -> StrIter<'t, 'a> {
        if self.array_index == 0 {
            return StrIter {
                nodes,
                cursor: 0,
                remaining: 0,
            };
        }
        let index = self.array_index as usize;
        let remaining = match nodes.get(index) {
            Some(Node::Array { len, .. }) => *len,
            _ => 0,
        };
        StrIter {
            nodes,
            cursor: index + 1,
            remaining,
        }
    }
}

/// Iterator over the strings of a [`StrListRef`]; non-string items (refused when the view was
/// decoded) are skipped.
#[derive(Debug, Clone)]
pub struct StrIter<'t, 'a> {
    nodes: &'t [Node<'a>],
    cursor: usize,
    remaining: usize,
}

impl<'a> Iterator for StrIter<'_, 'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while self.remaining > 0 {
            self.remaining -= 1;
            let item = self.cursor;
            self.cursor += span(self.nodes, item);
            if let Some(Node::String(s)) = self.nodes.get(item) {
                return Some(s);
            }
        }
        None
    }
}

/// Checks that the value at `index` is an array of strings and returns its reference.
pub(crate) fn str_list(nodes: &[Node<'_>], index: usize) -> Option<StrListRef> {
    if !is_array(nodes, index) {
        return None;
    }
    if array_items(nodes, index).all(|item| as_str(nodes, item).is_some()) {
        Some(StrListRef {
            array_index: u32::try_from(index).ok()?,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tape_of(json: &str) -> Vec<String> {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let parsed = doc.parse(json.as_bytes(), &mut decoder, false).unwrap();
        let nodes = parsed.tape.nodes();
        object_entries(nodes, 0)
            .map(|(k, v)| format!("{k}:{}", span(nodes, v)))
            .collect()
    }

    #[test]
    fn object_entries_skip_nested_values_by_span() {
        assert_eq!(
            tape_of(r#"{"a":1,"b":{"c":[1,2,{"d":3}]},"e":"x"}"#),
            ["a:1", "b:8", "e:1"]
        );
    }

    #[test]
    fn string_lists_skip_absent_and_yield_items() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let tape = doc
            .parse(br#"{"l":["x","y\"z"]}"#, &mut decoder, false)
            .unwrap()
            .tape;
        let list = str_list(tape.nodes(), 2).unwrap();
        assert_eq!(list.iter(tape.nodes()).collect::<Vec<_>>(), ["x", "y\"z"]);
        assert_eq!(StrListRef::ABSENT.iter(tape.nodes()).count(), 0);
        assert!(
            str_list(tape.nodes(), 1).is_none(),
            "a string is not a list"
        );
    }

    #[test]
    fn raw_text_finds_the_escaped_source_of_a_string() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let raw = br#"{"a": "x\"y\u00e9" , "b":"", "c":["q\\w","\u0041"]}"#;
        let parsed = doc.parse(raw, &mut decoder, true).unwrap();
        let texts: Vec<(String, String)> = parsed
            .tape
            .nodes()
            .iter()
            .filter_map(|n| match n {
                Node::String(s) => Some((
                    s.to_string(),
                    String::from_utf8(parsed.source.raw_text(s).unwrap().to_vec()).unwrap(),
                )),
                _ => None,
            })
            .collect();
        let expected = [
            ("a", "a"),
            ("x\"y\u{e9}", r#"x\"y\u00e9"#),
            ("b", "b"),
            ("", ""),
            ("c", "c"),
            ("q\\w", r#"q\\w"#),
            ("A", r#"\u0041"#),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(texts, expected);
        let outside = String::from("x");
        assert_eq!(parsed.source.raw_text(&outside), None);
    }

    #[test]
    fn integers_accept_integral_floats_only() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let tape = doc
            .parse(
                br#"[120, 120.0, 120.5, -3, "7", 18446744073709551615]"#,
                &mut decoder,
                false,
            )
            .unwrap()
            .tape;
        let got: Vec<_> = array_items(tape.nodes(), 0)
            .map(|i| as_i64(tape.nodes(), i))
            .collect();
        assert_eq!(got, [Some(120), Some(120), None, Some(-3), None, None]);
    }

    #[test]
    fn depth_limit_refuses_deep_nesting_without_panicking() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let deep = "[".repeat(100_000);
        assert!(doc.parse(deep.as_bytes(), &mut decoder, false).is_err());
        let ok = format!("{}{}", "[".repeat(10), "]".repeat(10));
        assert!(doc.parse(ok.as_bytes(), &mut decoder, false).is_ok());
    }
}
