//! Reading a tree format's fields: each helper coerces one field (shared coercions of
//! [`crate::ingest::coerce`]), masks what may hold personal data ([`crate::ingest::mask`]),
//! and names the field in its rejection.

use std::borrow::Cow;

use super::tree::{Object, Value};
use super::tree_format::Decoded;
use crate::ingest::coerce::{closed_token, coerce_timestamp, truncate, Flex, Rejection};
use crate::ingest::mask::{holds_personal_data, looks_like_phone_number, mask_contact, mask_field, mask_phone_number};
use crate::ingest::rows::RecordRows;

/// A JSON value as the shared coercions take it.
fn flex<'v>(value: &'v Value<'_>) -> Flex<'v> {
    match value {
        Value::Null => Flex::Null,
        Value::Bool(b) => Flex::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Flex::Int(i),
            (_, Some(u), _) => Flex::UInt(u),
            (_, _, Some(f)) => Flex::Float(f),
            _ => Flex::Null,
        },
        Value::String(s) => Flex::Str(Cow::Borrowed(s)),
        Value::Object(_) => Flex::Object,
        Value::Array(_) => Flex::Array,
    }
}

/// `value` as an object, or the rejection naming `field`.
pub(crate) fn object<'v>(value: &'v Value<'v>, field: &'static str) -> Result<&'v Object<'v>, Rejection> {
    value.as_object().ok_or(Rejection::WrongType { field, found: flex(value).type_name() })
}

/// An optional nested object.
pub(crate) fn child<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Option<&'v Object<'v>>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v, field).map(Some),
    }
}

/// An optional array; missing or null is empty.
pub(crate) fn array<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<&'v [Value<'v>], Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(*items),
        Some(other) => Err(Rejection::WrongType { field, found: flex(other).type_name() }),
    }
}

/// A scalar as text (numbers and booleans too: drifted exports change types); empty is none.
pub(crate) fn text<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Option<Cow<'v, str>>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = crate::ingest::coerce::trim(s);
            Ok((!s.is_empty()).then_some(Cow::Borrowed(s)))
        }
        Some(Value::Number(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(Value::Bool(b)) => Ok(Some(Cow::Owned(b.to_string()))),
        Some(other) => Err(Rejection::WrongType { field, found: flex(other).type_name() }),
    }
}

/// An enumeration, lower case: detail records write `voice`, EventBridge `VOICE`.
pub(crate) fn enumeration<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Option<Cow<'v, str>>, Rejection> {
    Ok(text(obj, key, field)?.map(|t| {
        closed_token(if t.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(t.to_ascii_lowercase()) } else { t })
    }))
}

/// A text field analysts read, masked as [`mask_field`] does.
pub(crate) fn masked_text<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Option<Cow<'v, str>>, Rejection> {
    Ok(text(obj, key, field)?.map(|t| match mask_field(&t) {
        Cow::Borrowed(_) => t,
        Cow::Owned(m) => Cow::Owned(m),
    }))
}

/// A field holding the customer's side (numbers, addresses, names), masked as
/// [`mask_contact`] does; `ani`/`dnis` style fields are phone numbers whatever their form.
pub(crate) fn contact<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Option<Cow<'v, str>>, Rejection> {
    Ok(text(obj, key, field)?.map(|t| {
        let masked = if looks_like_phone_number(&t) { Cow::Owned(mask_phone_number(&t)) } else { mask_contact(&t) };
        match masked {
            Cow::Borrowed(_) => t,
            Cow::Owned(m) => Cow::Owned(m),
        }
    }))
}

/// An optional id: trimmed, and refused when it holds personal data (masking could merge
/// two ids).
pub(crate) fn id<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Option<Cow<'v, str>>, Rejection> {
    let value = text(obj, key, field)?;
    if value.as_deref().is_some_and(holds_personal_data) {
        return Err(Rejection::PersonalDataInId(field));
    }
    Ok(value)
}

pub(crate) fn required_id<'v>(obj: &'v Object<'v>, key: &str, field: &'static str) -> Result<Cow<'v, str>, Rejection> {
    id(obj, key, field)?.ok_or(Rejection::MissingField(field))
}

/// An optional date-time: ISO-8601 text or epoch numbers (EventBridge's `eventTime` is in
/// milliseconds), as microseconds since the epoch.
pub(crate) fn time(obj: &Object<'_>, key: &str, field: &'static str) -> Result<Option<i64>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => coerce_timestamp(&flex(v), field).map(Some).map_err(|e| match e {
            Rejection::InvalidTimestamp(value) => Rejection::InvalidTime { field, value },
            other => other,
        }),
    }
}

pub(crate) fn required_time(obj: &Object<'_>, key: &str, field: &'static str) -> Result<i64, Rejection> {
    time(obj, key, field)?.ok_or(Rejection::MissingField(field))
}

/// An optional integer: JSON integers, integral floats and numeric text.
pub(crate) fn integer(obj: &Object<'_>, key: &str, field: &'static str) -> Result<Option<i64>, Rejection> {
    let not_integer = |v: &Value<'_>| Rejection::NotAnInteger { field, value: truncate(&v.to_serde().to_string()).to_string() };
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(not_integer(v)),
        },
        Some(v @ Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| not_integer(v)),
        Some(other) => Err(Rejection::WrongType { field, found: flex(other).type_name() }),
    }
}

pub(crate) fn float(obj: &Object<'_>, key: &str, field: &'static str) -> Result<Option<f64>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v @ Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| Rejection::WrongType { field, found: flex(v).type_name() }),
        Some(other) => Err(Rejection::WrongType { field, found: flex(other).type_name() }),
    }
}

pub(crate) fn boolean(obj: &Object<'_>, key: &str, field: &'static str) -> Result<Option<bool>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(Rejection::WrongType { field, found: flex(other).type_name() }),
    }
}

/// Days since the epoch of a UTC timestamp in microseconds: the date partitions.
pub(crate) fn utc_day(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

/// Items of a page, each decoded on its own so that one bad item costs only itself.
pub(crate) fn decode_items<'v>(
    items: &'v [Value<'v>],
    page_key: &str,
    decode: impl Fn(&'v Value<'v>) -> Result<RecordRows<'v>, Rejection>,
    each: &mut dyn FnMut(Decoded<'v>),
) {
    for (i, item) in items.iter().enumerate() {
        each(Decoded { position: Some(format!("{page_key}[{i}]")), outcome: decode(item), item });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::formats::tree;

    #[test]
    fn helpers_coerce_and_name_the_field() {
        let arena = bumpalo::Bump::new();
        let value = tree::parse(
            br#"{"t":"2024-03-04T09:00:00.000Z","ms":1709542800000,"n":"12","f":1.5,"b":"true","bad":"soon","ani":"tel:+15551230001","who":"15551230001"}"#,
            None,
            &arena,
        )
        .unwrap();
        let obj = value.as_object().unwrap();
        assert_eq!(time(obj, "t", "t").unwrap(), Some(1_709_542_800_000_000));
        assert_eq!(time(obj, "ms", "ms").unwrap(), Some(1_709_542_800_000_000));
        assert_eq!(integer(obj, "n", "n").unwrap(), Some(12));
        assert_eq!(integer(obj, "f", "f").unwrap_err().code(), "not_an_integer");
        assert_eq!(boolean(obj, "b", "b").unwrap(), Some(true));
        assert_eq!(time(obj, "bad", "x.bad").unwrap_err().field(), Some("x.bad"));
        assert_eq!(contact(obj, "ani", "ani").unwrap().as_deref(), Some("tel:+*******0001"));
        // A bare number in a customer field is a phone number.
        assert_eq!(contact(obj, "who", "who").unwrap().as_deref(), Some("*******0001"));
        assert_eq!(required_id(obj, "ani", "ani").unwrap_err().code(), "personal_data_in_id");
    }
}
