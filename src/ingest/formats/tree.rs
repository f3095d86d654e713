//! A parsed JSON record as the tree formats read it: strings and keys borrowed from the
//! record's bytes (copied only when they hold escapes), an object as its list of fields.
//!
//! `serde_json::Value` copies every key and string and builds a B-tree per object: for a
//! conversation-detail record (hundreds of fields) that was most of the ingest's time, in
//! `malloc` and `free`. This tree costs one allocation per object and array. Quarantine
//! keeps a refused item as `serde_json::Value` text ([`Value::to_serde`]): the same JSON,
//! keys in the same (sorted) order as before.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Number;

use crate::ingest::coerce::Text;

/// A JSON value borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Object<'a>),
}

/// A JSON object: its fields in the order they came. A key given twice means its last
/// value, as `serde_json` reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Object<'a> {
    pub const fn new() -> Self {
        Self { fields: Vec::new() }
    }

    /// The value of `key` (its last, should the object repeat it).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
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

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` when this is an object.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
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

/// Parses one record's JSON text (the whole of it: trailing text is an error).
pub fn parse(raw: &[u8]) -> Result<Value<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = Value<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Value::deserialize(d)
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
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Value::String(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Value::String(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Value::String(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(Value::Object(Object { fields }))
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped_and_the_last_repeated_key_counts() {
        let raw = br#"{"a":"plain","b":"esc\"aped","a":"again","n":[1,-2,1.5,18446744073709551615],"o":{"t":true,"z":null}}"#;
        let value = parse(raw).unwrap();
        let o = value.as_object().unwrap();
        assert_eq!(o.get("a").and_then(Value::as_str), Some("again"));
        assert!(matches!(o.get("a"), Some(Value::String(Cow::Borrowed(_)))));
        assert!(matches!(o.get("b"), Some(Value::String(Cow::Owned(_)))));
        assert_eq!(value.get("o").and_then(|o| o.get("t")), Some(&Value::Bool(true)));
        let expected: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(value.to_serde(), expected);
        assert!(parse(br#"{"a":1} x"#).is_err());
    }
}
