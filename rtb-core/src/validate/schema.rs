//! The shape of the object model tables: a [`Spec`] per OpenRTB (or Native) object lists its
//! fields with their [`Kind`], which are required, which combinations are refused
//! ([`Combo`]), and an optional check over values ([`Check`]).
//!
//! Key lookup is the hot operation (every key of a 3 KB request, about 150 of them), so each
//! spec carries a perfect hash of its field names computed at compile time: a key is found with
//! two word loads, a multiply, one table load and a word compare, whatever the field count. A
//! spec whose names would collide under every seed tried is a compile error, not a slow path.

use simd_json::Node;

use crate::error::Rule;

/// How an integer field is checked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ints {
    /// At least this (0: a size, a duration; 1: a count that must be positive; -1 or -2 where
    /// the spec gives negative values a meaning).
    AtLeast(i64),
    /// Within `lo..=hi` (flags: `0..=1`).
    Between(i64, i64),
    /// One of `values` (sorted), or at least `vendor_from` (the exchange-specific range, 500+
    /// in OpenRTB and Native; `i64::MAX` when the list has none).
    Listed {
        values: &'static [i64],
        vendor_from: i64,
    },
}

impl Ints {
    /// The rule `value` breaks, if any.
    #[inline]
    pub(crate) fn check(self, value: i64) -> Result<(), Rule> {
        match self {
            Ints::AtLeast(min) if value < min => Err(match min {
                0 => Rule::MustNotBeNegative,
                1 => Rule::MustBePositive,
                _ => Rule::OutOfRange,
            }),
            Ints::AtLeast(_) => Ok(()),
            Ints::Between(lo, hi) if value < lo || value > hi => Err(Rule::OutOfRange),
            Ints::Between(..) => Ok(()),
            Ints::Listed {
                values,
                vendor_from,
            } => {
                if value >= vendor_from || values.binary_search(&value).is_ok() {
                    Ok(())
                } else {
                    Err(Rule::NotAllowed)
                }
            }
        }
    }
}

/// How a number field (integer or float) is checked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Nums {
    /// At least 0 (floors, prices, timestamps).
    NotNegative,
    /// Above 0 (a multiplier).
    Positive,
    /// Within `lo..=hi` (latitude, longitude).
    Between(f64, f64),
    /// Any finite number.
    Any,
}

impl Nums {
    /// The rule `value` breaks, if any.
    #[inline]
    pub(crate) fn check(self, value: f64) -> Result<(), Rule> {
        if !value.is_finite() {
            return Err(Rule::OutOfRange);
        }
        match self {
            Nums::NotNegative if value < 0.0 => Err(Rule::MustNotBeNegative),
            Nums::Positive if value <= 0.0 => Err(Rule::MustBePositive),
            Nums::Between(lo, hi) if value < lo || value > hi => Err(Rule::OutOfRange),
            _ => Ok(()),
        }
    }
}

/// What a field's value must be. `null` counts as absent for every kind.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A string.
    Str,
    /// An integer (`120.0` counts), checked by the rule.
    Int(Ints),
    /// A number, checked by the rule.
    Num(Nums),
    /// An object of this spec.
    Obj(&'static Spec),
    /// An object of any shape (`ext`).
    Ext,
    /// An array of strings; non-empty when the field is required.
    StrList,
    /// An array of integers, each checked by the rule; non-empty when required.
    IntList(Ints),
    /// An array of objects of this spec; non-empty when required.
    ObjList(&'static Spec),
    /// `imp.native.request`: a JSON string holding a Native request, or the object itself.
    NativeRequest,
}

/// One field of an object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) required: bool,
}

/// An optional field.
pub(crate) const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// A required field (present, not null; a list also non-empty).
pub(crate) const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

/// A rule over which fields of one object are present, given by name.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Combo {
    /// At most one of these.
    AtMostOne(&'static [&'static str], &'static str),
    /// At least one of these.
    AtLeastOne(&'static [&'static str], &'static str),
    /// Exactly one of these.
    ExactlyOne(&'static [&'static str], &'static str),
    /// None of the first group together with any of the second.
    Excludes(
        &'static [&'static str],
        &'static [&'static str],
        &'static str,
    ),
    /// All of the first group and none of the second, or the other way round.
    EitherAll(
        &'static [&'static str],
        &'static [&'static str],
        &'static str,
    ),
}

/// A [`Combo`] with its names resolved to field bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Masks {
    pub(crate) kind: ComboKind,
    pub(crate) a: u64,
    pub(crate) b: u64,
    pub(crate) message: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ComboKind {
    AtMostOne,
    AtLeastOne,
    ExactlyOne,
    Excludes,
    EitherAll,
}

impl Masks {
    /// Whether the fields present (`seen`) satisfy this rule.
    #[inline]
    pub(crate) fn holds(&self, seen: u64) -> bool {
        let (a, b) = ((seen & self.a).count_ones(), (seen & self.b).count_ones());
        match self.kind {
            ComboKind::AtMostOne => a <= 1,
            ComboKind::AtLeastOne => a >= 1,
            ComboKind::ExactlyOne => a == 1,
            ComboKind::Excludes => a == 0 || b == 0,
            ComboKind::EitherAll => {
                let (all_a, all_b) = (seen & self.a == self.a, seen & self.b == self.b);
                (all_a && b == 0) || (all_b && a == 0)
            }
        }
    }
}

/// Where a check found a problem: the tape index of the offending value (or of the object,
/// with the name of a missing field as `leaf`), and the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) at: usize,
    pub(crate) leaf: &'static str,
    pub(crate) rule: Rule,
}

impl Failure {
    pub(crate) fn at(at: usize, rule: Rule) -> Self {
        Self { at, leaf: "", rule }
    }
}

/// The members of one object as the walk found them, for checks over their values.
pub(crate) struct Members<'m, 't, 'a> {
    pub(crate) nodes: &'t [Node<'a>],
    /// Tape index of the object.
    pub(crate) index: usize,
    spec: &'static Spec,
    seen: u64,
    at: &'m [u32; 64],
}

impl<'m, 't, 'a> Members<'m, 't, 'a> {
    pub(crate) fn new(
        nodes: &'t [Node<'a>],
        index: usize,
        spec: &'static Spec,
        seen: u64,
        at: &'m [u32; 64],
    ) -> Self {
        Self {
            nodes,
            index,
            spec,
            seen,
            at,
        }
    }

    /// Tape index of the value of field `name`, when present and not null.
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        let field = self.spec.find(name)?;
        (self.seen & (1 << field) != 0).then(|| self.at[field] as usize)
    }

    /// The integer value of field `name`, when present and an integer.
    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.get(name)
            .and_then(|at| crate::json::as_i64(self.nodes, at))
    }
}

/// A check over an object's values, run after its fields passed.
pub(crate) type Check = fn(&Members<'_, '_, '_>) -> Result<(), Failure>;

/// Most combination rules per object.
const COMBOS_MAX: usize = 3;
/// Slots of a spec's key table: at most 64 fields (one bit each in a `u64`) in 256 slots, so a
/// collision-free seed is found within a few dozen tries.
const SLOTS: usize = 256;
const SLOT_BITS: u32 = 8;
/// Seeds tried before giving up (at compile time).
const SEEDS_TRIED: u64 = 4096;

/// The fields of one object and the rules over them.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) fields: &'static [Field],
    pub(crate) required: u64,
    pub(crate) combos: [Option<Masks>; COMBOS_MAX],
    pub(crate) check: Option<Check>,
    seed: u64,
    /// Field index + 1 per slot; 0 is empty.
    slots: [u8; SLOTS],
    /// Each field name as (first 8 bytes, last 8 bytes, length), compared in place of the bytes.
    words: [KeyWords; 64],
}

/// A key reduced to two little-endian words and its length: equal for equal keys, and for keys
/// up to 16 bytes long only for equal keys (overlapping loads cover every byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyWords {
    head: u64,
    tail: u64,
    len: usize,
}

/// Little-endian load of `N` bytes of `key` from `at` (the caller checked the length).
#[inline(always)]
const fn load<const N: usize>(key: &[u8], at: usize) -> u64 {
    let mut word = 0u64;
    let mut i = 0;
    while i < N {
        word |= (key[at + i] as u64) << (8 * i);
        i += 1;
    }
    word
}

/// The same at compile time (building tables) and at run time (looking keys up): a fixed
/// number of loads per length class, which the optimiser turns into single word loads.
#[inline(always)]
const fn key_words(key: &[u8]) -> KeyWords {
    let len = key.len();
    let (head, tail) = if len >= 8 {
        (load::<8>(key, 0), load::<8>(key, len - 8))
    } else if len >= 4 {
        (load::<4>(key, 0) | (load::<4>(key, len - 4) << 32), 0)
    } else if len >= 2 {
        (load::<2>(key, 0) | (load::<2>(key, len - 2) << 16), 0)
    } else if len == 1 {
        (key[0] as u64, 0)
    } else {
        (0, 0)
    };
    KeyWords { head, tail, len }
}

#[inline]
const fn slot_of(words: KeyWords, seed: u64) -> usize {
    let mixed = words.head ^ words.tail.rotate_left(29) ^ (words.len as u64);
    (mixed.wrapping_mul(seed) >> (64 - SLOT_BITS)) as usize
}

const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn mask_of(fields: &[Field], names: &[&str]) -> u64 {
    let mut mask = 0u64;
    let mut n = 0;
    while n < names.len() {
        let mut i = 0;
        let mut found = false;
        while i < fields.len() {
            if same_name(fields[i].name, names[n]) {
                mask |= 1 << i;
                found = true;
            }
            i += 1;
        }
        assert!(found, "a combination names a field the spec does not have");
        n += 1;
    }
    mask
}

const fn resolve(fields: &[Field], combo: Combo) -> Masks {
    let (kind, a, b, message) = match combo {
        Combo::AtMostOne(a, m) => (ComboKind::AtMostOne, a, &[] as &[&str], m),
        Combo::AtLeastOne(a, m) => (ComboKind::AtLeastOne, a, &[] as &[&str], m),
        Combo::ExactlyOne(a, m) => (ComboKind::ExactlyOne, a, &[] as &[&str], m),
        Combo::Excludes(a, b, m) => (ComboKind::Excludes, a, b, m),
        Combo::EitherAll(a, b, m) => (ComboKind::EitherAll, a, b, m),
    };
    Masks {
        kind,
        a: mask_of(fields, a),
        b: mask_of(fields, b),
        message,
    }
}

/// Fills the slot table with `seed`; `None` on a collision.
const fn table_for(fields: &[Field], seed: u64) -> Option<[u8; SLOTS]> {
    let mut slots = [0u8; SLOTS];
    let mut i = 0;
    while i < fields.len() {
        let slot = slot_of(key_words(fields[i].name.as_bytes()), seed);
        if slots[slot] != 0 {
            return None;
        }
        slots[slot] = (i + 1) as u8;
        i += 1;
    }
    Some(slots)
}

impl Spec {
    /// Builds a spec at compile time; panics (a compile error) on more than 64 fields, a
    /// duplicate name, more than [`COMBOS_MAX`] combinations or an unhashable name set.
    pub(crate) const fn new(
        fields: &'static [Field],
        combos: &[Combo],
        check: Option<Check>,
    ) -> Spec {
        assert!(fields.len() <= 64, "a spec holds at most 64 fields");
        assert!(combos.len() <= COMBOS_MAX, "too many combinations");
        let mut words = [KeyWords {
            head: 0,
            tail: 0,
            len: usize::MAX,
        }; 64];
        let mut required = 0u64;
        let mut i = 0;
        while i < fields.len() {
            let mut j = 0;
            while j < i {
                assert!(
                    !same_name(fields[i].name, fields[j].name),
                    "duplicate field"
                );
                j += 1;
            }
            // Names above 16 bytes compare by their first and last 8 bytes only.
            words[i] = key_words(fields[i].name.as_bytes());
            if fields[i].required {
                required |= 1 << i;
            }
            i += 1;
        }
        let mut resolved = [None; COMBOS_MAX];
        let mut c = 0;
        while c < combos.len() {
            resolved[c] = Some(resolve(fields, combos[c]));
            c += 1;
        }
        let mut attempt = 0u64;
        while attempt < SEEDS_TRIED {
            // Odd multipliers spread over the 64-bit range.
            let seed = 0x9E37_79B9_7F4A_7C15u64
                .wrapping_add(attempt.wrapping_mul(0xD1B5_4A32_D192_ED03))
                | 1;
            if let Some(slots) = table_for(fields, seed) {
                return Spec {
                    fields,
                    required,
                    combos: resolved,
                    check,
                    seed,
                    slots,
                    words,
                };
            }
            attempt += 1;
        }
        panic!("no collision-free key table for this spec");
    }

    /// Index of the field named `key`.
    #[inline(always)]
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        let words = key_words(key.as_bytes());
        let slot = self.slots[slot_of(words, self.seed)];
        let index = usize::from(slot).checked_sub(1)?;
        let known = self.words.get(index)?;
        // One branch for the three words rather than one each.
        let differs =
            (known.head ^ words.head) | (known.tail ^ words.tail) | (known.len ^ words.len) as u64;
        if differs != 0 {
            return None;
        }
        // Long names agree on their first and last 8 bytes; compare the middle too.
        (words.len <= 16 || self.fields[index].name == key).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        opt("minbitrate", Kind::Int(Ints::AtLeast(0))),
        opt("maxbitrate", Kind::Int(Ints::AtLeast(0))),
        opt("w", Kind::Int(Ints::AtLeast(0))),
        req("inventorypartnerdomain", Kind::Str),
        opt("ext", Kind::Ext),
    ];
    static SPEC: Spec = Spec::new(
        FIELDS,
        &[Combo::Excludes(&["w"], &["ext"], "w or ext")],
        None,
    );

    #[test]
    fn every_field_is_found_and_nothing_else() {
        for (i, field) in FIELDS.iter().enumerate() {
            assert_eq!(SPEC.find(field.name), Some(i), "{}", field.name);
        }
        for other in [
            "",
            "h",
            "minbitrat",
            "minbitratee",
            "inventorypartnerdomaim",
            "inventorypartnerXomain",
            "ex",
            "extx",
            "WW",
        ] {
            assert_eq!(SPEC.find(other), None, "{other}");
        }
        assert_eq!(SPEC.required, 1 << 3);
        let masks = SPEC.combos[0].unwrap();
        assert!(masks.holds(1 << 2) && masks.holds(1 << 4) && !masks.holds(1 << 2 | 1 << 4));
    }

    #[test]
    fn integer_and_number_rules() {
        assert_eq!(Ints::AtLeast(0).check(-1), Err(Rule::MustNotBeNegative));
        assert_eq!(Ints::AtLeast(1).check(0), Err(Rule::MustBePositive));
        assert_eq!(Ints::AtLeast(-2).check(-3), Err(Rule::OutOfRange));
        assert_eq!(Ints::Between(0, 1).check(2), Err(Rule::OutOfRange));
        let at = Ints::Listed {
            values: &[1, 2],
            vendor_from: 500,
        };
        assert_eq!((at.check(2), at.check(501)), (Ok(()), Ok(())));
        assert_eq!(at.check(3), Err(Rule::NotAllowed));
        assert_eq!(Nums::NotNegative.check(-0.5), Err(Rule::MustNotBeNegative));
        assert_eq!(Nums::Positive.check(0.0), Err(Rule::MustBePositive));
        assert_eq!(
            Nums::Between(-90.0, 90.0).check(90.5),
            Err(Rule::OutOfRange)
        );
        assert_eq!(Nums::Any.check(f64::INFINITY), Err(Rule::OutOfRange));
    }

    #[test]
    fn combinations() {
        let either = Masks {
            kind: ComboKind::EitherAll,
            a: 0b0011,
            b: 0b1100,
            message: "",
        };
        assert!(either.holds(0b0011) && either.holds(0b1100));
        assert!(!either.holds(0b0001) && !either.holds(0b0111) && !either.holds(0));
        let one = Masks {
            kind: ComboKind::ExactlyOne,
            a: 0b111,
            b: 0,
            message: "",
        };
        assert!(one.holds(0b010) && !one.holds(0) && !one.holds(0b011));
    }
}
