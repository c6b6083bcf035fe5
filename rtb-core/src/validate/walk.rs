//! The walk: one pass over a tape, checking every known field of every object against its
//! [`Spec`]; unknown fields are skipped by their tape span.
//!
//! Failures carry a tape index, not a path: the path is rendered once, when the walk fails
//! (see [`super::path`]), so a valid request builds no paths at all. The failure itself waits
//! in the walker while the recursion unwinds with a zero-sized [`Stop`]: every call on the hot
//! path returns a flag in a register, not a 48-byte `Result`. The walk recurses once per
//! object level; simd-json already refused documents nested deeper than
//! [`crate::json::JSON_DEPTH_MAX`], which bounds the recursion.

use simd_json::{Node, StaticNode};

use super::native::NativeParser;
use super::path;
use super::schema::{Failure, Field, Ints, Kind, Members, Nums, Spec};
use crate::error::{FieldPath, RequestError, Rule};
use crate::json::{as_f64, object_entries};

pub(crate) const MUST_BE_STRING: &str = "must be a string";
pub(crate) const MUST_BE_INTEGER: &str = "must be an integer";
pub(crate) const MUST_BE_NUMBER: &str = "must be a number";
pub(crate) const MUST_BE_OBJECT: &str = "must be an object";
pub(crate) const MUST_BE_ARRAY: &str = "must be an array";
pub(crate) const MUST_BE_STRING_OR_OBJECT: &str = "must be a string or an object";

/// The walk stopped at a failure, which the walker holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stop;

/// Walks one tape. Holds the parser for embedded Native requests (absent while walking one).
pub(crate) struct Walker<'t, 'a, 's> {
    nodes: &'t [Node<'a>],
    native: Option<NativeParser<'s>>,
    /// Why the walk stopped.
    failure: Failure,
    /// The failing path inside an embedded Native request, placed under the `request` field
    /// when the failure is rendered.
    nested: Option<FieldPath>,
}

impl<'t, 'a, 's> Walker<'t, 'a, 's> {
    pub(crate) fn new(nodes: &'t [Node<'a>], native: Option<NativeParser<'s>>) -> Self {
        Self {
            nodes,
            native,
            failure: Failure::at(0, Rule::NotAnObject),
            nested: None,
        }
    }

    /// Validates the object at `index` (the root of the tape for a whole request) and
    /// everything under it; on failure, the error with its path rendered from the tape.
    pub(crate) fn validate(
        &mut self,
        index: usize,
        spec: &'static Spec,
    ) -> Result<(), RequestError> {
        match self.object(index, spec) {
            Ok(()) => Ok(()),
            Err(Stop) => Err(self.render(self.failure)),
        }
    }

    /// Keeps `failure` and stops the walk.
    fn stop(&mut self, failure: Failure) -> Stop {
        self.failure = failure;
        Stop
    }

    fn object(&mut self, index: usize, spec: &'static Spec) -> Result<(), Stop> {
        let nodes = self.nodes;
        let Some(&Node::Object { len, .. }) = nodes.get(index) else {
            return Err(self.stop(Failure::at(index, Rule::WrongType(MUST_BE_OBJECT))));
        };
        let Some(check) = spec.check else {
            let seen = self.members(index, len, spec, None)?;
            return self.presence(index, spec, seen);
        };
        // Only objects with a check over values record where each member is.
        let mut at = [0u32; 64];
        let seen = self.members(index, len, spec, Some(&mut at))?;
        self.presence(index, spec, seen)?;
        match check(&Members::new(nodes, index, spec, seen, &at)) {
            Ok(()) => Ok(()),
            Err(failure) => Err(self.stop(failure)),
        }
    }

    /// Walks the `len` members of the object at `index`; returns the fields present (not
    /// null), recording where each is when `at` is given.
    fn members(
        &mut self,
        index: usize,
        len: usize,
        spec: &'static Spec,
        mut at: Option<&mut [u32; 64]>,
    ) -> Result<u64, Stop> {
        let nodes = self.nodes;
        let mut seen = 0u64;
        let mut cursor = index + 1;
        for _ in 0..len {
            let (Some(Node::String(key)), Some(node)) = (nodes.get(cursor), nodes.get(cursor + 1))
            else {
                break;
            };
            let value = cursor + 1;
            cursor = value + span_of(node);
            let Some(field) = spec.find(key) else {
                continue;
            };
            if matches!(node, Node::Static(StaticNode::Null)) {
                continue;
            }
            let bit = 1u64 << field;
            if seen & bit != 0 {
                return Err(self.stop(Failure::at(value, Rule::Duplicate)));
            }
            seen |= bit;
            if let Some(at) = at.as_deref_mut() {
                // Tape indexes fit u32: a tape has at most one node per input byte.
                at[field] = value as u32;
            }
            self.value(value, node, &spec.fields[field])?;
        }
        Ok(seen)
    }

    fn value(&mut self, index: usize, node: &Node<'_>, field: &Field) -> Result<(), Stop> {
        let checked = match field.kind {
            Kind::Str => string(node),
            Kind::Int(ints) => int(node, ints),
            Kind::Num(nums) => num(node, nums),
            Kind::Obj(spec) => return self.object(index, spec),
            Kind::Ext if matches!(node, Node::Object { .. }) => Ok(()),
            Kind::Ext => Err(Rule::WrongType(MUST_BE_OBJECT)),
            Kind::StrList => return self.list(index, node, field.required, string),
            Kind::IntList(ints) => {
                return self.list(index, node, field.required, |item| int(item, ints))
            }
            Kind::ObjList(spec) => return self.objects(index, node, field.required, spec),
            Kind::NativeRequest => return self.native_request(index, node),
        };
        match checked {
            Ok(()) => Ok(()),
            Err(rule) => Err(self.stop(Failure::at(index, rule))),
        }
    }

    /// An array (non-empty when `required`) whose every scalar item passes `item_ok`.
    fn list(
        &mut self,
        index: usize,
        node: &Node<'_>,
        required: bool,
        item_ok: impl Fn(&Node<'_>) -> Result<(), Rule>,
    ) -> Result<(), Stop> {
        self.items(index, node, required, |walker, at, item| {
            match item_ok(item) {
                Ok(()) => Ok(()),
                Err(rule) => Err(walker.stop(Failure::at(at, rule))),
            }
        })
    }

    /// An array (non-empty when `required`) of objects of `spec`.
    fn objects(
        &mut self,
        index: usize,
        node: &Node<'_>,
        required: bool,
        spec: &'static Spec,
    ) -> Result<(), Stop> {
        self.items(index, node, required, |walker, at, _| {
            walker.object(at, spec)
        })
    }

    /// Runs `each` on every item (tape index and node) of the array `node` at `index`, which
    /// must be non-empty when `required`.
    fn items(
        &mut self,
        index: usize,
        node: &Node<'_>,
        required: bool,
        mut each: impl FnMut(&mut Self, usize, &Node<'_>) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let len = self.array_len(index, node, required)?;
        let nodes = self.nodes;
        let mut cursor = index + 1;
        for _ in 0..len {
            let Some(item) = nodes.get(cursor) else {
                break;
            };
            each(self, cursor, item)?;
            cursor += span_of(item);
        }
        Ok(())
    }

    fn array_len(&mut self, index: usize, node: &Node<'_>, required: bool) -> Result<usize, Stop> {
        match *node {
            Node::Array { len: 0, .. } if required => {
                Err(self.stop(Failure::at(index, Rule::Empty)))
            }
            Node::Array { len, .. } => Ok(len),
            _ => Err(self.stop(Failure::at(index, Rule::WrongType(MUST_BE_ARRAY)))),
        }
    }

    /// `imp.native.request`: a JSON string (OpenRTB 2.x) parsed and walked on its own tape, or
    /// the Native object itself, which Native 1.2 §4.1 says "many exchanges" send.
    fn native_request(&mut self, index: usize, node: &Node<'_>) -> Result<(), Stop> {
        match node {
            Node::String(text) => {
                let Some(parser) = self.native.as_mut() else {
                    return Ok(());
                };
                match parser.validate(text) {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        self.nested = Some(error.field);
                        Err(self.stop(Failure::at(index, error.rule)))
                    }
                }
            }
            Node::Object { .. } => {
                let root = super::native::request_root(self.nodes, index);
                self.object(root, &super::native::NATIVE_REQUEST)
            }
            _ => Err(self.stop(Failure::at(
                index,
                Rule::WrongType(MUST_BE_STRING_OR_OBJECT),
            ))),
        }
    }

    /// The rules over which members are present, once they passed: required fields and
    /// combinations.
    fn presence(&mut self, index: usize, spec: &'static Spec, seen: u64) -> Result<(), Stop> {
        let missing = spec.required & !seen;
        if missing != 0 {
            return Err(self.stop(Failure {
                at: index,
                leaf: spec.fields[missing.trailing_zeros() as usize].name,
                rule: Rule::Missing,
            }));
        }
        for masks in spec.combos.iter().flatten() {
            if !masks.holds(seen) {
                return Err(self.stop(Failure::at(index, Rule::Conflict(masks.message))));
            }
        }
        Ok(())
    }

    /// The error a failure of this walk means, its path rendered from the tape.
    fn render(&mut self, failure: Failure) -> RequestError {
        let mut field = path::render(self.nodes, failure.at, failure.leaf);
        if let Some(inner) = self.nested.take() {
            field = field.join(inner);
        }
        RequestError::new(field, failure.rule)
    }
}

/// Tape nodes a value occupies, itself included.
#[inline]
fn span_of(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

#[inline]
fn string(node: &Node<'_>) -> Result<(), Rule> {
    match node {
        Node::String(_) => Ok(()),
        _ => Err(Rule::WrongType(MUST_BE_STRING)),
    }
}

/// An integer (an integral float such as `120.0` too), checked by `ints`.
#[inline]
fn int(node: &Node<'_>, ints: Ints) -> Result<(), Rule> {
    let value = match *node {
        Node::Static(StaticNode::I64(v)) => Some(v),
        Node::Static(StaticNode::U64(v)) => i64::try_from(v).ok(),
        Node::Static(StaticNode::F64(_)) => crate::json::as_i64(std::slice::from_ref(node), 0),
        _ => None,
    };
    ints.check(value.ok_or(Rule::WrongType(MUST_BE_INTEGER))?)
}

#[inline]
fn num(node: &Node<'_>, nums: Nums) -> Result<(), Rule> {
    let value = match *node {
        Node::Static(StaticNode::I64(v)) => v as f64,
        Node::Static(StaticNode::U64(v)) => v as f64,
        Node::Static(StaticNode::F64(v)) => v,
        _ => return Err(Rule::WrongType(MUST_BE_NUMBER)),
    };
    nums.check(value)
}

/// The value of the first key `name` of the object at `index` (not null).
pub(crate) fn member(nodes: &[Node<'_>], index: usize, name: &str) -> Option<usize> {
    object_entries(nodes, index)
        .find(|&(key, value)| {
            key == name && !matches!(nodes.get(value), Some(Node::Static(StaticNode::Null)))
        })
        .map(|(_, value)| value)
}

/// Refuses `low > high` when both members are present (`minduration` above `maxduration`).
pub(crate) fn ordered(
    members: &Members<'_, '_, '_>,
    low: &str,
    high: &str,
    message: &'static str,
) -> Result<(), Failure> {
    let value = |name| members.get(name).and_then(|v| as_f64(members.nodes, v));
    match (value(low), value(high)) {
        (Some(lo), Some(hi)) if lo > hi => Err(Failure::at(members.index, Rule::Conflict(message))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{span, Decoder, Document};

    #[test]
    fn spans_match_the_tape_helpers() {
        let mut decoder = Decoder::new();
        let mut doc = Document::default();
        let parsed = doc
            .parse(
                br#"{"a":[1,{"b":null}],"c":"x","d":{}}"#,
                &mut decoder,
                false,
            )
            .unwrap();
        let nodes = parsed.tape.nodes();
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(span_of(node), span(nodes, i));
        }
    }
}
