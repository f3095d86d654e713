//! What every input format shares: a JSON scalar as it arrived ([`Flex`]), the coercions a
//! staging step would make (numbers from text, timestamps in every ISO-8601 form and epoch
//! numbers to UTC microseconds, enumerations to lower case), the masking of text fields and
//! ids, and why a record cannot be used ([`Rejection`], with its field).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::mask::{holds_personal_data, mask_field};

/// Why a record cannot be used. `code()` groups them in the ingest summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    InvalidJson(String),
    NotAnObject,
    MissingField(&'static str),
    WrongType { field: &'static str, found: &'static str },
    InvalidTimestamp(String),
    DurationNotInteger(String),
    DurationNegative(i64),
    /// An id holds a phone number, URL or IP address: masking it could merge distinct ids,
    /// storing it would expose it.
    PersonalDataInId(&'static str),
    /// The whole object could not be read (corrupt gzip, unreadable bytes).
    UnreadableObject(String),
    /// A date-time field of an export other than the flat event.
    InvalidTime { field: &'static str, value: String },
    /// A count or duration that is not an integer.
    NotAnInteger { field: &'static str, value: String },
    /// A page of `entities` that says neither by its URIs nor by its fields which export it
    /// is (queues, users, wrap-up codes).
    UnknownExport(String),
    /// A date-time outside [`PLAUSIBLE_FROM`]..[`PLAUSIBLE_UNTIL`]: a unit mix-up or a
    /// placeholder, which Delta readers could not read back (year 0, year 30,000).
    TimestampOutOfRange { field: &'static str, value: String },
    /// A partition value longer than a folder name may be, once percent-encoded.
    PartitionValueTooLong { field: &'static str, bytes: usize },
    /// A new partition of a day that holds as many as it may
    /// ([`crate::ingest::queue_partitions`]).
    TooManyPartitions { field: &'static str, limit: usize },
}

/// The earliest date-time accepted: 1990-01-01T00:00:00Z (µs since the epoch).
pub const PLAUSIBLE_FROM: i64 = 631_152_000_000_000;
/// The first date-time refused past the window: 2100-01-01T00:00:00Z.
pub const PLAUSIBLE_UNTIL: i64 = 4_102_444_800_000_000;

impl Rejection {
    /// A stable code for summaries and the quarantine table's `reason` column.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingField(_) => "missing_field",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::InvalidTimestamp(_) => "invalid_timestamp",
            Rejection::DurationNotInteger(_) => "duration_not_integer",
            Rejection::DurationNegative(_) => "duration_negative",
            Rejection::PersonalDataInId(_) => "personal_data_in_id",
            Rejection::UnreadableObject(_) => "unreadable_object",
            Rejection::InvalidTime { .. } => "invalid_timestamp",
            Rejection::NotAnInteger { .. } => "not_an_integer",
            Rejection::UnknownExport(_) => "unknown_export",
            Rejection::TimestampOutOfRange { .. } => "timestamp_out_of_range",
            Rejection::PartitionValueTooLong { .. } => "partition_value_too_long",
            Rejection::TooManyPartitions { .. } => "too_many_partitions",
        }
    }

    /// The field at fault, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Rejection::MissingField(f)
            | Rejection::WrongType { field: f, .. }
            | Rejection::PersonalDataInId(f)
            | Rejection::InvalidTime { field: f, .. }
            | Rejection::NotAnInteger { field: f, .. }
            | Rejection::TimestampOutOfRange { field: f, .. }
            | Rejection::PartitionValueTooLong { field: f, .. }
            | Rejection::TooManyPartitions { field: f, .. } => Some(f),
            Rejection::InvalidTimestamp(_) => Some("timestamp"),
            Rejection::DurationNotInteger(_) | Rejection::DurationNegative(_) => {
                Some("duration_seconds")
            }
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            Rejection::NotAnObject => write!(f, "record is not a JSON object"),
            Rejection::MissingField(field) => write!(f, "{field} is missing or empty"),
            Rejection::WrongType { field, found } => {
                write!(f, "{field} has the wrong type: found {found}")
            }
            Rejection::InvalidTimestamp(v) => {
                write!(f, "timestamp is not an ISO-8601 date-time: {v:?}")
            }
            Rejection::DurationNotInteger(v) => {
                write!(f, "duration_seconds is not an integer: {v}")
            }
            Rejection::DurationNegative(v) => write!(f, "duration_seconds is negative: {v}"),
            Rejection::PersonalDataInId(field) => {
                write!(f, "{field} holds a phone number, URL or IP address, which an id may not")
            }
            Rejection::UnreadableObject(e) => write!(f, "object cannot be read: {e}"),
            Rejection::InvalidTime { field, value } => {
                write!(f, "{field} is not an ISO-8601 date-time or epoch number: {value:?}")
            }
            Rejection::NotAnInteger { field, value } => write!(f, "{field} is not an integer: {value}"),
            Rejection::UnknownExport(why) => write!(f, "unknown export: {why}"),
            Rejection::TimestampOutOfRange { field, value } => {
                write!(f, "{field} is outside 1990-01-01 .. 2100-01-01, the date-times cclake accepts: {value:?}")
            }
            Rejection::PartitionValueTooLong { field, bytes } => write!(
                f,
                "{field} is {bytes} bytes once percent-encoded for its partition folder, more than the {MAX_PARTITION_VALUE_BYTES} a folder name may hold"
            ),
            Rejection::TooManyPartitions { field, limit } => write!(
                f,
                "{field} would open a partition past the {limit} a day of fact_interactions may hold (--max-queues-per-day): a queue-name explosion is a data error"
            ),
        }
    }
}

/// A JSON scalar as it arrived, before coercion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Flex<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Object,
    Array,
}

impl Flex<'_> {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Flex::Null => "null",
            Flex::Bool(_) => "boolean",
            Flex::Int(_) | Flex::UInt(_) => "integer",
            Flex::Float(_) => "number",
            Flex::Str(_) => "string",
            Flex::Object => "object",
            Flex::Array => "array",
        }
    }
}

impl<'de> Deserialize<'de> for Flex<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FlexVisitor;
        impl<'de> Visitor<'de> for FlexVisitor {
            type Value = Flex<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Flex::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Flex::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Flex::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Flex::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Flex::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Flex::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Flex::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Flex::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Flex::Str(Cow::Owned(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Flex::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Flex::Array)
            }
        }
        d.deserialize_any(FlexVisitor)
    }
}

/// A JSON string borrowed from the input when it has no escapes (serde's own `Cow<str>`
/// always copies): object keys, read once per field of every record.
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// Text fields analysts read are masked ([`mask_field`]); unchanged values are not copied.
pub(crate) fn masked(value: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    value.map(|v| match mask_field(&v) {
        Cow::Borrowed(_) => v,
        Cow::Owned(m) => Cow::Owned(m),
    })
}

/// `text` without its leading and trailing white space; text from the input stays borrowed.
fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    if !may_need_trimming(&text) {
        return text;
    }
    match text {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

/// Whether `text` may begin or end with white space. Every white space character is either
/// ASCII white space or starts with a byte above 0x7f: text that begins and ends with
/// printable ASCII (most values) has none to trim, and is not decoded from both ends to find
/// that out.
fn may_need_trimming(text: &str) -> bool {
    let printable = |b: Option<&u8>| b.is_some_and(|&b| b > b' ' && b < 0x7f);
    !(printable(text.as_bytes().first()) && printable(text.as_bytes().last()))
}

/// `text` without its leading and trailing white space ([`str::trim`]).
pub(crate) fn trim(text: &str) -> &str {
    if may_need_trimming(text) {
        text.trim()
    } else {
        text
    }
}

/// An id, trimmed; one holding personal data is refused (masking could merge two ids).
pub(crate) fn required_id<'a>(value: Option<Flex<'a>>, field: &'static str) -> Result<Cow<'a, str>, Rejection> {
    let id = unchecked_id(value, field)?;
    if holds_personal_data(&id) {
        return Err(Rejection::PersonalDataInId(field));
    }
    Ok(id)
}

pub(crate) fn unchecked_id<'a>(value: Option<Flex<'a>>, field: &'static str) -> Result<Cow<'a, str>, Rejection> {
    match value {
        None | Some(Flex::Null) => Err(Rejection::MissingField(field)),
        Some(Flex::Str(s)) => {
            let s = trimmed(s);
            if s.is_empty() {
                Err(Rejection::MissingField(field))
            } else {
                Ok(s)
            }
        }
        Some(Flex::Int(i)) => Ok(Cow::Owned(i.to_string())),
        Some(Flex::UInt(u)) => Ok(Cow::Owned(u.to_string())),
        Some(other) => Err(Rejection::WrongType {
            field,
            found: other.type_name(),
        }),
    }
}

/// Scalars become text (a drifted number or boolean is still the value); objects and arrays
/// cannot be. Text from the input stays borrowed.
pub(crate) fn scalar_text<'a>(value: Flex<'a>, field: &'static str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match value {
        Flex::Null => Ok(None),
        Flex::Str(s) => {
            let s = trimmed(s);
            Ok((!s.is_empty()).then_some(s))
        }
        Flex::Int(i) => Ok(Some(Cow::Owned(i.to_string()))),
        Flex::UInt(u) => Ok(Some(Cow::Owned(u.to_string()))),
        Flex::Float(f) => Ok(Some(Cow::Owned(f.to_string()))),
        Flex::Bool(b) => Ok(Some(Cow::Owned(b.to_string()))),
        Flex::Object | Flex::Array => Err(Rejection::WrongType {
            field,
            found: value.type_name(),
        }),
    }
}

pub(crate) fn optional_text<'a>(value: Option<Flex<'a>>, field: &'static str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match value {
        None => Ok(None),
        Some(v) => scalar_text(v, field),
    }
}

/// Enumerations (`type`, `direction`, `state`) are lower case in flat events and detail
/// records but upper case in EventBridge events: normalised to lower case (copied only
/// when that changes them).
pub(crate) fn optional_enum<'a>(value: Option<Flex<'a>>, field: &'static str) -> Result<Option<Cow<'a, str>>, Rejection> {
    Ok(optional_text(value, field)?.map(|s| {
        if is_lower_case_code(s.as_bytes()) {
            // Most values: what the two steps below would keep as it is, found in one pass.
            s
        } else if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            closed_token(s)
        } else {
            closed_token(Cow::Owned(s.to_lowercase()))
        }
    }))
}

/// Whether `b` is a code ([`closed_token`]) without upper-case letters.
fn is_lower_case_code(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 64 || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut digits = 0;
    for &c in b {
        match c {
            b'a'..=b'z' | b'_' | b'.' | b':' | b'-' => {}
            b'0'..=b'9' => digits += 1,
            _ => return false,
        }
    }
    digits <= 4
}

/// What a value of a column of codes becomes when it is not a code.
pub const OTHER_VALUE: &str = "[other]";

/// A value of a column of codes (states, types, directions, purposes, metric names): kept
/// when it has a code's shape — an ASCII letter, then letters, digits and `_ . : -`, at most
/// 64 characters of which at most 4 digits — else [`OTHER_VALUE`]. So a column of codes is a
/// closed vocabulary by construction: no address, number, URL or name, listed or not, gets
/// through it, and a code Genesys adds tomorrow still does.
pub fn closed_token(value: Cow<'_, str>) -> Cow<'_, str> {
    let b = value.as_bytes();
    let shaped = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.:-".contains(c))
        && b.iter().filter(|c| c.is_ascii_digit()).count() <= 4;
    if shaped {
        value
    } else {
        Cow::Borrowed(OTHER_VALUE)
    }
}

pub(crate) fn coerce_duration(value: &Flex<'_>) -> Result<i64, Rejection> {
    let from_float = |f: f64, shown: String| {
        if !f.is_finite() || f.fract() != 0.0 {
            Err(Rejection::DurationNotInteger(shown))
        } else if f < 0.0 {
            Err(Rejection::DurationNegative(f as i64))
        } else if f > i64::MAX as f64 {
            Err(Rejection::DurationNotInteger(shown))
        } else {
            Ok(f as i64)
        }
    };
    match value {
        Flex::Int(i) if *i < 0 => Err(Rejection::DurationNegative(*i)),
        Flex::Int(i) => Ok(*i),
        Flex::UInt(u) => i64::try_from(*u).map_err(|_| Rejection::DurationNotInteger(u.to_string())),
        Flex::Float(f) => from_float(*f, f.to_string()),
        Flex::Str(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                if i < 0 {
                    Err(Rejection::DurationNegative(i))
                } else {
                    Ok(i)
                }
            } else if let Ok(f) = t.parse::<f64>() {
                from_float(f, format!("{t:?}"))
            } else {
                Err(Rejection::DurationNotInteger(format!("{:?}", truncate(t))))
            }
        }
        other => Err(Rejection::DurationNotInteger(other.type_name().to_string())),
    }
}

pub(crate) fn coerce_timestamp(value: &Flex<'_>, field: &'static str) -> Result<i64, Rejection> {
    let micros = any_timestamp(value, field)?;
    if !(PLAUSIBLE_FROM..PLAUSIBLE_UNTIL).contains(&micros) {
        let shown = match value {
            Flex::Str(s) => truncate(s).to_string(),
            Flex::Int(i) => i.to_string(),
            Flex::UInt(u) => u.to_string(),
            Flex::Float(f) => f.to_string(),
            other => other.type_name().to_string(),
        };
        return Err(Rejection::TimestampOutOfRange { field, value: shown });
    }
    Ok(micros)
}

/// The most bytes a partition value may take once percent-encoded: a folder name holds 255,
/// less the column's name and `=`, with room to spare.
pub const MAX_PARTITION_VALUE_BYTES: usize = 200;

/// The bytes `value` takes in a partition folder's name, counting every byte but ASCII
/// letters, digits and `-_.~` as percent-encoded (three bytes): at least what Delta writers
/// take.
pub fn encoded_partition_bytes(value: &str) -> usize {
    value.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { 1 } else { 3 }).sum()
}

fn any_timestamp(value: &Flex<'_>, field: &'static str) -> Result<i64, Rejection> {
    match value {
        Flex::Str(s) => parse_timestamp(s.trim())
            .ok_or_else(|| Rejection::InvalidTimestamp(truncate(s).to_string())),
        // Epoch numbers: milliseconds when large (EventBridge's eventTime), else seconds.
        Flex::Int(i) => Ok(epoch_to_micros(*i as f64)),
        Flex::UInt(u) => Ok(epoch_to_micros(*u as f64)),
        Flex::Float(f) if f.is_finite() => Ok(epoch_to_micros(*f)),
        other => Err(Rejection::WrongType {
            field,
            found: other.type_name(),
        }),
    }
}

fn epoch_to_micros(v: f64) -> i64 {
    if v.abs() >= 1e11 {
        (v * 1_000.0) as i64
    } else {
        (v * 1_000_000.0) as i64
    }
}

/// ISO-8601 / RFC 3339 with `Z` or an offset, with or without fractions or seconds, `T` or
/// space, any letter case; an offset without colon; a local time without offset is taken as
/// UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    utc_timestamp(s.as_bytes()).or_else(|| parse_timestamp_by_chrono(s))
}

/// The form nearly every export writes, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, read without
/// chrono (its RFC 3339 parse and calendar checks were a twentieth of a details ingest's
/// samples); anything else, or a date or time out of range, is `None` and left to chrono.
/// A unit test holds it to chrono's answers.
fn utc_timestamp(b: &[u8]) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        b.get(range)?.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let fraction = &b[19..b.len() - 1];
    let nanos = match fraction {
        [] => 0,
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => digits(20..20 + f.len())? * 10i64.pow(9 - f.len() as u32),
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + nanos / 1000)
}

fn parse_timestamp_by_chrono(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    let mut normal = s.to_ascii_uppercase().replacen(' ', "T", 1);
    if normal.ends_with('Z') {
        normal.pop();
        normal.push_str("+00:00");
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(t) = DateTime::parse_from_str(&normal, format) {
            return Some(t.with_timezone(&Utc).timestamp_micros());
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&normal, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

pub(crate) fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Texts of one to four telling pieces: letters of both cases, digits, the marks a code
    /// may hold, ASCII and Unicode white space (U+0085, U+00A0, U+3000; U+001C, which is not
    /// white space), characters that lower-case to ASCII (the Kelvin sign) or to more than one
    /// character, an e-mail address and a URL.
    fn telling_texts() -> Vec<String> {
        let pieces = [
            "", "a", "Z", "inbound", "ACD", "7", "12345", "_", ".", ":", "-", " ", "\t", "\n", "\u{b}", "\u{c}", "\r", "\u{1c}", "\u{85}",
            "\u{a0}", "\u{3000}", "\u{212a}", "\u{130}", "é", "jane@x.org", "https://r/1", "\0", "\u{7f}",
        ];
        let mut texts = Vec::new();
        for a in pieces {
            for b in pieces {
                texts.push(format!("{a}{b}"));
                for c in ["", "x", " ", "9", "\u{a0}"] {
                    for d in ["", "Q", "\t", "0000"] {
                        texts.push(format!("{c}{a}{d}{b}{c}"));
                    }
                }
            }
        }
        texts
    }

    #[test]
    fn trimming_agrees_with_the_standard_library_s() {
        for text in telling_texts() {
            assert_eq!(trimmed(Cow::Borrowed(&text)), text.trim(), "{text:?}");
            assert_eq!(trimmed(Cow::Owned(text.clone())), text.trim(), "{text:?}");
            assert_eq!(trim(&text), text.trim(), "{text:?}");
        }
    }

    /// The one-pass check of lower-case codes keeps what lower-casing then [`closed_token`]
    /// would make of each value (how codes were read before it).
    #[test]
    fn codes_read_in_one_pass_are_what_lower_casing_and_closing_make_of_them() {
        let two_steps = |s: &str| closed_token(Cow::Owned(s.to_lowercase())).into_owned();
        let mut kept = 0;
        for text in telling_texts() {
            let read = optional_enum(Some(Flex::Str(Cow::Borrowed(&text))), "type").unwrap();
            let expected = Some(text.trim()).filter(|t| !t.is_empty()).map(two_steps);
            assert_eq!(read.as_deref(), expected.as_deref(), "{text:?}");
            kept += usize::from(read.is_some_and(|r| r != OTHER_VALUE));
        }
        assert!(kept > 1000, "{kept} codes kept: the pieces should make many");
    }

    /// The fast path agrees with chrono on every string it reads, and leaves alone what it
    /// cannot: random dates around the calendar's edges (leap days, month ends, years 0 to
    /// 9999), fractions of 0 to 10 digits, and broken variants of each.
    #[test]
    fn utc_timestamps_read_without_chrono_are_chrono_s() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(28);
        let mut read = 0;
        for _ in 0..200_000 {
            let year = if rng.random_bool(0.2) { rng.random_range(0..=9999) } else { rng.random_range(1890..2110) };
            let (month, day) = (rng.random_range(0..=13), rng.random_range(0..=32));
            let (hour, minute, second) = (rng.random_range(0..=24), rng.random_range(0..=60), rng.random_range(0..=60));
            let digits = rng.random_range(0..=10);
            let fraction: String = (0..digits).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
            let dot = if digits > 0 { "." } else { "" };
            let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{dot}{fraction}Z");
            match rng.random_range(0..10) {
                0 => text = text.replace('T', " "),
                1 => text.truncate(rng.random_range(0..text.len())),
                2 => text = text.replacen(|c: char| c.is_ascii_digit(), "x", 1),
                _ => {}
            }
            let chrono = parse_timestamp_by_chrono(&text);
            if let Some(fast) = utc_timestamp(text.as_bytes()) {
                read += 1;
                assert_eq!(Some(fast), chrono, "{text}");
            }
            assert_eq!(parse_timestamp(&text), chrono, "{text}");
        }
        assert!(read > 50_000, "the fast path read {read} of 200,000");
        assert_eq!(utc_timestamp(b"2024-02-29T23:59:59.999999999Z"), Some(1_709_251_199_999_999));
        assert_eq!(utc_timestamp(b"1969-12-31T23:59:59.5Z"), Some(-500_000));
        assert_eq!(utc_timestamp(b"2023-02-29T00:00:00Z"), None);
    }
}
