//! A parsed JSON record as the tree formats read it: strings and keys borrowed from the
//! record's bytes, an object as its list of fields, all of it in an arena ([`Bump`]) that
//! the parser resets for each record.
//!
//! `serde_json::Value` copies every key and string and builds a B-tree per object: for a
//! conversation-detail record (hundreds of fields) that was most of the ingest's time, in
//! `malloc` and `free`. A tree of `Vec`s still cost an allocation per object and array and
//! a walk to free them (a fifth of a details ingest's samples in `malloc`, `free` and the
//! tree's drop); in the arena, strings with escapes, arrays and objects are bump
//! allocations and nothing is dropped. Quarantine keeps a refused item as
//! `serde_json::Value` text ([`Value::to_serde`]): the same JSON, keys in the same (sorted)
//! order as before.

use std::borrow::Cow;
use std::fmt;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::ingest::coerce::Text;

/// A JSON value borrowing from the text it was parsed from and from the arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'a str),
    Array(&'a [Value<'a>]),
    Object(Object<'a>),
}

// The arena never runs destructors: a number holding heap memory (serde_json's
// `arbitrary_precision`, should a dependency turn it on) would leak with every record.
const _: () = assert!(!std::mem::needs_drop::<Number>(), "serde_json::Number must own no heap memory");

/// A JSON object: its fields in the order they came. A key given twice means its last
/// value, as `serde_json` reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a> {
    fields: &'a [(&'a str, Value<'a>)],
}

impl<'a> Object<'a> {
    pub const fn new() -> Self {
        Self { fields: &[] }
    }

    /// The value of `key` (its last, should the object repeat it).
    pub fn get(&self, key: &str) -> Option<&'a Value<'a>> {
        self.fields.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The object as `serde_json` holds it (keys sorted, each once).
    pub fn to_serde(&self) -> serde_json::Map<String, serde_json::Value> {
        self.fields.iter().map(|(k, v)| (k.to_string(), v.to_serde())).collect()
    }
}

impl<'a> Value<'a> {
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` when this is an object.
    pub fn get(&self, key: &str) -> Option<&'a Value<'a>> {
        self.as_object()?.get(key)
    }

    /// The value as `serde_json` holds it.
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(Value::to_serde).collect()),
            Value::Object(o) => serde_json::Value::Object(o.to_serde()),
        }
    }
}

/// Parses one record's JSON text (the whole of it: trailing text is an error) into `arena`;
/// `text` is the same record when it is known to be UTF-8 (its strings are then not checked
/// again).
pub fn parse<'a>(raw: &'a [u8], text: Option<&'a str>, arena: &'a Bump) -> Result<Value<'a>, serde_json::Error> {
    fn whole<'a, R: serde_json::de::Read<'a>>(mut de: serde_json::Deserializer<R>, arena: &'a Bump) -> Result<Value<'a>, serde_json::Error> {
        let value = InArena(arena).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
    match text {
        Some(text) => whole(serde_json::Deserializer::from_str(text), arena),
        None => whole(serde_json::Deserializer::from_slice(raw), arena),
    }
}

/// Deserializes a value into the arena it holds.
#[derive(Clone, Copy)]
struct InArena<'a>(&'a Bump);

impl<'a> DeserializeSeed<'a> for InArena<'a> {
    type Value = Value<'a>;
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> Visitor<'a> for InArena<'a> {
    type Value = Value<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<Self::Value, E> {
        Ok(Value::String(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Value::String(self.0.alloc_str(v)))
    }
    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = BumpVec::with_capacity_in(seq.size_hint().unwrap_or(0).min(64), self.0);
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items.into_bump_slice()))
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = BumpVec::with_capacity_in(map.size_hint().unwrap_or(0).min(64), self.0);
        while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
            // Borrowed unless it holds escapes (seldom): then copied into the arena.
            let key = match key {
                Cow::Borrowed(key) => key,
                Cow::Owned(key) => &*self.0.alloc_str(&key),
            };
            fields.push((key, map.next_value_seed(self)?));
        }
        Ok(Value::Object(Object { fields: fields.into_bump_slice() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped_and_the_last_repeated_key_counts() {
        let raw = br#"{"a":"plain","b":"esc\"aped","a":"again","n":[1,-2,1.5,18446744073709551615],"o":{"t":true,"z":null},"k\u0065y":1}"#;
        let text = std::str::from_utf8(raw).unwrap();
        let in_raw = |s: &str| raw.as_ptr_range().contains(&s.as_ptr());
        for known_text in [None, Some(text)] {
            let arena = Bump::new();
            let value = parse(raw, known_text, &arena).unwrap();
            let o = value.as_object().unwrap();
            assert_eq!(o.get("a").and_then(Value::as_str), Some("again"));
            assert!(in_raw(o.get("a").and_then(Value::as_str).unwrap()));
            assert_eq!(o.get("b").and_then(Value::as_str), Some("esc\"aped"));
            assert!(!in_raw(o.get("b").and_then(Value::as_str).unwrap()), "an escaped string is a copy");
            assert_eq!(o.get("key"), Some(&Value::Number(1.into())), "a key with escapes, undone");
            assert_eq!(value.get("o").and_then(|o| o.get("t")), Some(&Value::Bool(true)));
            let expected: serde_json::Value = serde_json::from_slice(raw).unwrap();
            assert_eq!(value.to_serde(), expected);
            let numbers: Vec<String> = value.get("n").map(|n| match n {
                Value::Array(items) => items.iter().map(|i| i.to_serde().to_string()).collect(),
                _ => Vec::new(),
            }).unwrap();
            assert_eq!(numbers, ["1", "-2", "1.5", "18446744073709551615"]);
        }
        let arena = Bump::new();
        assert!(parse(br#"{"a":1} x"#, None, &arena).is_err());
        assert!(parse(b"{\"a\":\"\xff\"}", None, &arena).is_err(), "invalid UTF-8 in a string");
    }
}
