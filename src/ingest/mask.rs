//! PII masking: phone numbers keep at most their last four digits, URLs and IP addresses are
//! redacted. Applied to every value that lands in a table the analyst role can read: each text
//! field of an event ([`mask_field`]), and a quarantined record and the reason it was refused
//! ([`scrub_text`], [`mask_json`]), which keep the rest of the record so it can be repaired.
//!
//! Digits of any script (full-width `１`, Arabic-Indic `١`, ...) and full-width `＋`, `－`,
//! `（` `）` are read as their ASCII forms first ([`normalize_digits`]): a number written
//! with them is still a number.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// What an IP address becomes.
pub const REDACTED_IP: &str = "[ip redacted]";
/// What a URL becomes.
pub const REDACTED_URL: &str = "[url redacted]";

/// Field names that carry a raw phone number (flat events and Genesys sessions).
pub const PHONE_FIELDS: &[&str] = &[
    "caller_number",
    "caller_number_masked",
    "ani",
    "dnis",
    "phone",
    "phone_number",
    "customer_number",
    "callback_number",
    "caller_id",
    "from_number",
    "to_number",
];

/// Zero of each block of ten decimal digits in Unicode (general category Nd), besides ASCII.
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
    0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
    0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0,
    0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11C50, 0x11D50, 0x11DA0, 0x16A60,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The ASCII form of a digit of another script, or of full-width punctuation that numbers
/// are written with.
fn ascii_form(c: char) -> Option<char> {
    let code = c as u32;
    if code < 0x80 {
        return None;
    }
    match c {
        '\u{FF0B}' => return Some('+'),
        '\u{FF0D}' | '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2212}' => return Some('-'),
        '\u{FF08}' => return Some('('),
        '\u{FF09}' => return Some(')'),
        '\u{FF0E}' => return Some('.'),
        '\u{3000}' | '\u{00A0}' | '\u{2007}' | '\u{202F}' => return Some(' '),
        '\u{FF1A}' => return Some(':'),
        '\u{FF20}' => return Some('@'),
        // Invisible characters inside a number or an address separate nothing.
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' => return Some(' '),
        '\u{FF0F}' => return Some('/'),
        _ => {}
    }
    DIGIT_ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&code))
        .and_then(|zero| char::from_digit(code - zero, 10))
}

/// `text` with digits of every script as ASCII digits (and full-width `＋－（）．：／` and odd
/// spaces as their ASCII forms); borrowed when there is nothing to change.
pub fn normalize_digits(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || !text.chars().any(|c| ascii_form(c).is_some()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| ascii_form(c).unwrap_or(c)).collect())
}

/// Masks one text field of an event before it is stored where analysts read it. A value
/// that is an IP address is redacted; URLs, IP addresses and phone numbers inside it are
/// masked as in [`scrub_text`], except that a bare run of digits is left alone: it is an id
/// in many exports (`agent_id` 5551234), and a phone number needs a `+`, a `tel:`/`sip:`
/// scheme or separators (`555-123-4567`) to be taken for one here. Unchanged values are
/// borrowed.
pub fn mask_field(value: &str) -> Cow<'_, str> {
    // Called on every text field of every event: ASCII text with no `:`, `.` or `@` holds
    // no URL, IP address or e-mail address, and with fewer than 7 digits no phone number
    // (`scrub`): it skips the regular expressions (ids such as `agent-041` come here).
    if value.is_ascii() {
        // Counted and searched apart: each loop is vectorised, the fold of both was not (2 ns
        // a byte, 3% of a flat ingest).
        let digits = value.bytes().filter(u8::is_ascii_digit).count();
        let marks = memchr::memchr3(b':', b'.', b'@', value.as_bytes()).is_some();
        if digits < 7 && !marks {
            return Cow::Borrowed(value);
        }
        // A bare run of up to 12 digits (a numeric id such as the seed's `1234567890`) is no
        // phone number here (no `+`, scheme or separator) and too short for a card: the
        // patterns below would all leave it as is.
        if digits == value.len() && digits < 13 {
            return Cow::Borrowed(value);
        }
    }
    // Ids are mostly UUIDs, which hold nothing (as in `scrub`): checked before any copy.
    if is_uuid(value) {
        return Cow::Borrowed(value);
    }
    let normalized = normalize_digits(value);
    // An IP address has a `.` (v4) or a `:` (v6).
    if normalized.contains(['.', ':']) && normalized.trim().parse::<IpAddr>().is_ok() {
        return Cow::Owned(REDACTED_IP.to_string());
    }
    match scrub(&normalized, true) {
        Cow::Owned(scrubbed) if scrubbed != *normalized => Cow::Owned(scrubbed),
        _ => Cow::Borrowed(value),
    }
}

/// Whether `value` holds a URL, an IP address or a phone number (as [`mask_field`] reads
/// them): such a value may not be an id, since masking would merge distinct ids.
pub fn holds_personal_data(value: &str) -> bool {
    matches!(mask_field(value), Cow::Owned(_))
}

/// Masks every digit but the last four with `*`, keeping the punctuation so the shape stays
/// recognisable: `+1 555-123-4567` → `+* ***-***-4567`. A SIP URI loses its host part, which
/// may hold an address. Values with four digits or fewer are already as masked as this makes
/// them.
pub fn mask_phone_number(raw: &str) -> String {
    let raw = normalize_digits(raw);
    let number = match raw.split_once('@') {
        Some((user, _host)) => user,
        None => &raw,
    };
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let mut keep_from = digits.saturating_sub(4);
    let mut masked = String::with_capacity(number.len());
    for c in number.chars() {
        if c.is_ascii_digit() {
            if keep_from > 0 {
                masked.push('*');
                keep_from -= 1;
            } else {
                masked.push(c);
            }
        } else {
            masked.push(c);
        }
    }
    masked
}

/// A caller's number as stored: [`mask_field`], then [`mask_phone_number`]. A number the
/// export already masked (ASCII, no `@`, four digits or fewer: `+*******4434`) comes out as
/// it went in, and is kept without a copy (one allocation less per flat event).
pub fn mask_caller_number(number: Cow<'_, str>) -> Cow<'_, str> {
    // What `mask_phone_number` leaves as it is: ASCII, no SIP host, at most four digits.
    let phone_masked = number.is_ascii() && !number.contains('@') && number.bytes().filter(u8::is_ascii_digit).count() <= 4;
    match mask_field(&number) {
        Cow::Borrowed(_) if phone_masked => number,
        field => Cow::Owned(mask_phone_number(&field)),
    }
}

/// True for strings shaped like a phone number: an optional `tel:`/`sip:` scheme, then only
/// digits, `+`, spaces, dots, dashes and parentheses, with 7 to 15 digits (E.164's range).
pub fn looks_like_phone_number(value: &str) -> bool {
    let value = normalize_digits(value);
    let lower = value.trim();
    let rest = lower
        .strip_prefix("tel:")
        .or_else(|| lower.strip_prefix("sip:"))
        .map(|r| r.split('@').next().unwrap_or(r))
        .unwrap_or(lower);
    // An area code with its trunk 0 and a slash (`089/8650005`, as written in Germany and
    // Austria); a date (`03/04/2024`) has no leading 0 area of its own and two slashes.
    let rest = match rest.split_once('/') {
        Some((area, number))
            if area.len() >= 2 && area.len() <= 6 && area.starts_with('0') && area.bytes().all(|b| b.is_ascii_digit()) && !number.contains('/') =>
        {
            number
        }
        _ => rest,
    };
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '.' | '-' | '(' | ')'))
    {
        return false;
    }
    let digits = rest.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&digits) && !is_date_like(rest)
}

fn is_date_like(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b[..4].iter().chain(&b[5..7]).chain(&b[8..10]).all(u8::is_ascii_digit)
}

/// An e-mail address keeps its domain: `jane.doe@example.com` → `***@example.com`.
/// Whether `value` holds an e-mail address (`user:agent7@company.com` does).
pub fn holds_email(value: &str) -> bool {
    value.contains(['@', '\u{FF20}']) && email_pattern().is_match(&normalize_digits(value))
}

/// An address: a local part of any characters but spaces and the punctuation around
/// addresses (`josé.álvarez`, `jane!doe`), `@`, and a domain of the same (`localhost`,
/// `bücher.example`) or an address literal (`[192.0.2.1]`). `user:` before it is a scheme.
fn email_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r#"[^\s@<>()\[\],;:"'`]+@(?P<domain>\[[^\]\s]*\]|[^\s@<>()\[\],;:"'`/\\]*[^\s@<>()\[\],;:"'`/\\.])"#).expect("static regex")
    })
}

/// Every address in `text` keeps only its domain (`***@example.org`); an address literal
/// (an IP address) keeps nothing.
fn mask_emails(text: &str) -> String {
    email_pattern()
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let domain = &caps["domain"];
            if domain.starts_with('[') {
                "***@[address redacted]".to_string()
            } else {
                format!("***@{domain}")
            }
        })
        .into_owned()
}

/// Masks a field that holds the customer's side of a conversation (`ani`, `remote`,
/// `participantName`, `addressFrom`, a flow's `entryReason`): unlike [`mask_field`], a bare
/// run of 7 to 15 digits is taken for a phone number here, since these fields hold numbers
/// in every written form; a `tel:`/`sip:` number keeps its last four digits and loses its
/// host; e-mail addresses keep only their domain.
pub fn mask_contact(value: &str) -> Cow<'_, str> {
    if value.is_ascii() && !value.bytes().any(|b| b.is_ascii_digit() || b == b':' || b == b'.' || b == b'@') {
        return Cow::Borrowed(value);
    }
    if looks_like_phone_number(value) {
        return Cow::Owned(mask_phone_number(value));
    }
    let scrubbed = scrub_text(value);
    if scrubbed == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(scrubbed)
    }
}

fn url_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>,}\]]+|\bwww\.[^\s"'<>,}\]]+"#)
            .expect("static regex")
    })
}

/// Fields of a flat event that are numbers and never personal data: kept as numbers in
/// quarantined records.
const NUMERIC_FIELDS: &[&str] = &["duration_seconds", "timestamp", "event_timestamp", "created_at"];

/// Numbers that are times, durations or counts by their key (`eventTime` in epoch
/// milliseconds, `interactingDurationMs`, Genesys's `t*`/`n*` metric values sit under
/// `value` beside a `name`, which is not a phone field either).
fn is_numeric_field(key: &str) -> bool {
    NUMERIC_FIELDS.contains(&key)
        || ["ms", "time", "timestamp", "date", "count", "total", "seconds"].iter().any(|s| key.ends_with(s))
        || matches!(key, "value" | "pagesize" | "pagenumber" | "pagecount" | "totalhits" | "version")
}

/// Masks one JSON value in place: phone-number fields are masked, URL and IP fields redacted,
/// and any other string that looks like a phone number, URL or IP address is treated the
/// same, since drifted exports put numbers in fields nobody planned for. So is a JSON integer
/// of 7 to 15 digits (`{"mobile": 15551230007}`), outside the event's own numeric fields.
pub fn mask_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                match field {
                    // A number field holding something else (a URL, an address) is scrubbed
                    // first, then keeps at most four digits.
                    Value::String(s) if PHONE_FIELDS.contains(&key.as_str()) => {
                        *s = mask_phone_number(&scrub_text(s));
                    }
                    Value::Number(n) if PHONE_FIELDS.contains(&key.as_str()) => {
                        *field = Value::String(mask_phone_number(&n.to_string()));
                    }
                    Value::Number(n) if is_card_number(n.to_string().as_bytes()) => {
                        *field = Value::String(scrub_text(&n.to_string()));
                    }
                    Value::Number(_) if is_numeric_field(&key) => {}
                    Value::Number(n) if looks_like_phone_number(&n.to_string()) => {
                        *field = Value::String(mask_phone_number(&n.to_string()));
                    }
                    Value::String(s) if key.contains("url") => *s = REDACTED_URL.to_string(),
                    Value::String(s) if key.ends_with("ip") || key.contains("ip_address") => {
                        *s = REDACTED_IP.to_string();
                    }
                    other => mask_json(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        Value::String(s) => {
            if normalize_digits(s).trim().parse::<IpAddr>().is_ok() {
                *s = REDACTED_IP.to_string();
            } else {
                *s = scrub_text(s);
            }
        }
        Value::Number(n) if is_card_number(n.to_string().as_bytes()) => {
            *value = Value::String(scrub_text(&n.to_string()));
        }
        Value::Number(n) if looks_like_phone_number(&n.to_string()) => {
            *value = Value::String(mask_phone_number(&n.to_string()));
        }
        _ => {}
    }
}

/// Whether `digits` (ASCII digits) is a payment card number: 13 to 19 digits, an issuer's
/// first digit (2 to 6: Mastercard's 2-series, Amex, Diners, JCB, Visa, Mastercard,
/// Discover) and a valid Luhn check digit. Epoch timestamps and most numeric ids start with 1.
pub fn is_card_number(digits: &[u8]) -> bool {
    if !(13..=19).contains(&digits.len()) || !(b'2'..=b'6').contains(&digits[0]) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `text` with every payment card number masked to its last four digits (PCI DSS): runs of
/// digit groups separated by single spaces or dashes, any run of whole groups holding a card
/// number ([`is_card_number`]), `4111 1111 1111 1111` → `**** **** **** 1111`.
fn mask_cards(text: Cow<'_, str>) -> Cow<'_, str> {
    static RUN: OnceLock<Regex> = OnceLock::new();
    let run = RUN.get_or_init(|| Regex::new(r"\d+(?:[ -]\d+)*").expect("static regex"));
    let mut masked: Option<Vec<u8>> = None;
    for m in run.find_iter(&text) {
        if m.as_str().bytes().filter(u8::is_ascii_digit).count() < 13 {
            continue;
        }
        // The groups of the run: (start, end) byte offsets in `text`.
        let groups: Vec<(usize, usize)> = {
            let mut groups = Vec::new();
            let mut start = None;
            for (i, b) in m.as_str().bytes().enumerate() {
                match (b.is_ascii_digit(), start) {
                    (true, None) => start = Some(i),
                    (false, Some(from)) => {
                        groups.push((m.start() + from, m.start() + i));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(from) = start {
                groups.push((m.start() + from, m.end()));
            }
            groups
        };
        for first in 0..groups.len() {
            let mut digits: Vec<u8> = Vec::with_capacity(19);
            for &(from, to) in &groups[first..] {
                digits.extend_from_slice(&text.as_bytes()[from..to]);
                if digits.len() > 19 {
                    break;
                }
                if is_card_number(&digits) {
                    let out = masked.get_or_insert_with(|| text.as_bytes().to_vec());
                    let mut keep = 4;
                    for i in (groups[first].0..to).rev() {
                        if out[i].is_ascii_digit() || out[i] == b'*' {
                            if keep > 0 {
                                keep -= 1;
                            } else {
                                out[i] = b'*';
                            }
                        }
                    }
                }
            }
        }
    }
    match masked {
        // Only ASCII digits were replaced by `*`: still UTF-8.
        Some(bytes) => Cow::Owned(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        None => text,
    }
}

/// Scrubs free text (an unparseable line, the reason a record was refused): URLs and IP
/// addresses are redacted and runs of digits that look like phone numbers keep their last
/// four digits. Digits of other scripts are read as ASCII first.
pub fn scrub_text(text: &str) -> String {
    scrub(&normalize_digits(text), false).into_owned()
}

/// Whether `text` is exactly one UUID (8-4-4-4-12 hexadecimal digits). Every id of every
/// record comes here, so the bytes are checked without a branch each.
fn is_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 36 {
        return false;
    }
    b.iter().enumerate().fold(true, |ok, (i, &c)| {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        let hex = c.is_ascii_digit() | matches!(c | 0x20, b'a'..=b'f');
        ok & if dash { c == b'-' } else { hex }
    })
}

/// Whether `bytes` hold `www.` in any case (the URL pattern's second form).
fn contains_www(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w.eq_ignore_ascii_case(b"www."))
}

/// [`scrub_text`] of normalized text; with `strict`, a bare run of digits is no phone number.
/// Borrowed when nothing was masked.
fn scrub(text: &str, strict: bool) -> Cow<'_, str> {
    static IP_CANDIDATE: OnceLock<Regex> = OnceLock::new();
    static PHONE_CANDIDATE: OnceLock<Regex> = OnceLock::new();
    let ip = IP_CANDIDATE.get_or_init(|| {
        Regex::new(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|[0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f.]*")
            .expect("static regex")
    });
    static UUID: OnceLock<Regex> = OnceLock::new();
    let phone = PHONE_CANDIDATE
        .get_or_init(|| Regex::new(r"\b0\d{1,5}/\d[\d ().-]{3,}\d|\+?\d[\d ().-]{5,}\d").expect("static regex"));
    let uuid = UUID.get_or_init(|| {
        Regex::new(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}").expect("static regex")
    });
    // Every pass below runs only where its pattern can match (checked on bytes first: this
    // runs on most text fields of every record). A value that is one UUID holds nothing.
    if is_uuid(text) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let text = if memchr::memmem::find(bytes, b"://").is_some() || contains_www(bytes) {
        url_pattern().replace_all(text, REDACTED_URL)
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let text = if text.contains('@') { Cow::Owned(mask_emails(&text)) } else { text };
    let count = |byte: u8| text.bytes().filter(|b| *b == byte).count();
    // An IPv4 address has three dots, an IPv6 one two colons.
    let text = if count(b'.') >= 3 || count(b':') >= 2 {
        ip.replace_all(&text, |caps: &regex::Captures<'_>| {
            let m = &caps[0];
            if m.parse::<IpAddr>().is_ok() {
                REDACTED_IP.to_string()
            } else {
                m.to_string()
            }
        })
        .into_owned()
        .into()
    } else {
        text
    };
    // A phone number holds 7 to 15 digits (`looks_like_phone_number`), a card 13 to 19.
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if digits < 7 {
        return text;
    }
    let text = if digits >= 13 { mask_cards(text) } else { text };
    // Runs of digits and dashes inside a UUID (`4a00-0069-98d7`) are hex, not numbers.
    let uuids: Vec<(usize, usize)> = uuid.find_iter(&text).map(|m| (m.start(), m.end())).collect();
    let masked = phone.replace_all(&text, |caps: &regex::Captures<'_>| {
            let m = &caps[0];
            let formatted = m.starts_with('+') || m.contains(|c: char| !c.is_ascii_digit());
            let (start, end) = caps.get(0).map_or((0, 0), |g| (g.start(), g.end()));
            let scheme = text[..start].ends_with("tel:") || text[..start].ends_with("sip:");
            let in_uuid = uuids.iter().any(|&(from, to)| start < to && from < end);
            // Longer than one number (`555-863-0003 555-864-0004`, a number with an
            // extension run on): every digit but the last four is masked.
            let run_together = m.bytes().filter(u8::is_ascii_digit).count() > 15;
            if !in_uuid && (looks_like_phone_number(m) || run_together) && (!strict || formatted || scheme) {
                mask_phone_number(m)
            } else {
                m.to_string()
            }
        });
    if let Cow::Owned(masked) = masked {
        return Cow::Owned(masked);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_digit_runs_take_the_short_path_only_where_the_patterns_keep_them() {
        // Every length from 7 to 12 digits, numbers that look like phone numbers and ids
        // alike: the full path (`scrub`, strict) keeps each, as the short path does.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 7..=12 {
            for _ in 0..200 {
                let digits: String = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        char::from(b'0' + (seed % 10) as u8)
                    })
                    .collect();
                assert_eq!(scrub(&digits, true), digits.as_str(), "{digits}");
                assert!(matches!(mask_field(&digits), Cow::Borrowed(_)), "{digits}");
            }
        }
        for id in ["1234567890", "5551234567", "4155550123", "0123456789012"[..12].as_ref()] {
            assert!(matches!(mask_field(id), Cow::Borrowed(_)), "{id}");
        }
        // From 13 digits the long path runs: a card number is masked, a Unix epoch kept.
        assert_eq!(mask_field("4111111111111111"), "************1111");
        assert_eq!(mask_field("1709542800000"), "1709542800000");
    }

    #[test]
    fn an_address_with_no_dot_nor_digit_is_masked_as_any_other() {
        // Nothing but the `@` marks these for the patterns (no `.`, `:` or digit): the short
        // path must not take them. Each keeps only its domain, as README.md says.
        assert_eq!(mask_field("jane@localhost"), "***@localhost");
        assert_eq!(mask_field("bob@host"), "***@host");
        // An id with no `@` (nor anything else the patterns read) takes the short path.
        assert!(matches!(mask_field("agent-041"), Cow::Borrowed(_)));
    }

    #[test]
    fn card_numbers_keep_their_last_four_digits() {
        // Luhn worked by hand for 4111 1111 1111 1111: the doubled digits give 8 + 7 * 2 = 22,
        // the others 8, 30 in all.
        assert!(is_card_number(b"4111111111111111"));
        assert!(!is_card_number(b"4111111111111112"));
        assert!(!is_card_number(b"1709542800000"), "an epoch in milliseconds is no card");
        assert_eq!(scrub_text("card 4111 1111 1111 1111 exp 12/29"), "card **** **** **** 1111 exp 12/29");
        assert_eq!(scrub_text("4111-1111-1111-1111"), "****-****-****-1111");
        assert_eq!(scrub_text("x4111111111111111y"), "x************1111y");
        // Followed by more digit groups, the card is still found (and what is left, 8 digits
        // in groups, is then taken for a phone number).
        assert_eq!(scrub_text("4111 1111 1111 1111 2024"), "**** **** **** **** 2024");
        assert_eq!(scrub_text("ref 12 4111 1111 1111 1111"), "ref 12 **** **** **** 1111");
        // Two numbers in a row, and a number run into more digits.
        assert_eq!(mask_field("call 555-863-0003 555-864-0004"), "call ***-***-**** ***-***-0004");
        assert_eq!(mask_field("+44 20 7946 0958 1234 5678"), "+** ** **** **** **** 5678");
        // An area code written with a slash; dates with slashes are no numbers.
        assert_eq!(mask_field("089/8650005"), "***/***0005");
        assert_eq!(mask_field("ruf 0221/123 45 67 an"), "ruf ****/*** 45 67 an");
        assert_eq!(mask_field("due 03/04/2024, ref 12/29"), "due 03/04/2024, ref 12/29");
    }

    #[test]
    fn addresses_of_every_shape_keep_only_their_domain() {
        for (raw, masked) in [
            ("jane.roe@localhost", "***@localhost"),
            ("josé.álvarez@example.org", "***@example.org"),
            ("jane!doe@example.org", "***@example.org"),
            ("john@[192.0.2.1]", "***@[address redacted]"),
            ("ｊａｎｅ＠example.org", "***@example.org"),
            ("write to jane@example.org.", "write to ***@example.org."),
            ("user:agent7@company.com", "user:***@company.com"),
        ] {
            assert_eq!(mask_field(raw), masked, "{raw}");
            assert!(holds_email(raw), "{raw}");
        }
        // A zero-width space inside a number separates nothing.
        assert_eq!(mask_field("+1 555\u{200B}861\u{200B}0001"), "+* *** *** 0001");
        // Amex, 15 digits.
        assert_eq!(mask_field("378282246310005"), "***********0005");
        assert!(holds_personal_data("4111 1111 1111 1111"));
        let mut json: Value = serde_json::json!({"note": 4111111111111111u64, "pan": "5555 5555 5555 4444"});
        mask_json(&mut json);
        assert_eq!(json, serde_json::json!({"note": "************1111", "pan": "**** **** **** 4444"}));
    }

    #[test]
    fn uuids_are_told_from_near_misses() {
        for uuid in ["8804dd8b-e2a0-4e02-8890-e2745f29cae9", "8804DD8B-E2A0-4E02-8890-E2745F29CAE9", "00000000-0000-0000-0000-000000000000"] {
            assert!(is_uuid(uuid), "{uuid}");
        }
        for not in [
            "",
            "8804dd8b-e2a0-4e02-8890-e2745f29cae",   // 35 characters
            "8804dd8b-e2a0-4e02-8890-e2745f29cae90", // 37
            "8804dd8be-2a0-4e02-8890-e2745f29cae9",  // a dash moved
            "8804dd8b-e2a0-4e02-8890_e2745f29cae9",  // not a dash
            "8804dd8b-e2a0-4e02-8890-e2745f29cag9",  // not hexadecimal
            "8804dd8b-e2a0-4e02-8890-e2745f29ca-9",  // a dash among the digits
            "8804dd8b-e2a0-4e02-8890-e2745f29ca\u{e9}", // 36 bytes, one not ASCII
            "+1-555-123-4567-00000000000000000000", // 36, a phone number first
        ] {
            assert!(!is_uuid(not), "{not}");
        }
        // `@` and `` ` `` sit next to `A` and `a`: not digits.
        assert!(!is_uuid("@804dd8b-e2a0-4e02-8890-e2745f29cae9"));
        assert!(!is_uuid("`804dd8b-e2a0-4e02-8890-e2745f29cae9"));
        assert!(!is_uuid("g804dd8b-e2a0-4e02-8890-e2745f29cae9"));
    }

    #[test]
    fn phone_numbers_keep_last_four_digits() {
        assert_eq!(mask_phone_number("+15551234567"), "+*******4567");
        // Kept as it is only when masking would not change it: worked out by hand, then
        // against the two masks applied in turn on every mix of a few telling pieces.
        assert!(matches!(mask_caller_number(Cow::Borrowed("+*******4434")), Cow::Borrowed("+*******4434")));
        assert_eq!(mask_caller_number(Cow::Borrowed("+15551234567")), "+*******4567");
        let pieces = ["+", "1", "55", "555", "-", "*", "@", "sip:", "x.y", " ", "١", "192.168.0.1", "tel:", "https://r/1"];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let number = format!("{a}{b}{c}");
                    assert_eq!(mask_caller_number(Cow::Borrowed(&number)), mask_phone_number(&mask_field(&number)), "{number}");
                }
            }
        }
        assert_eq!(mask_phone_number("+1 (555) 123-4567"), "+* (***) ***-4567");
        assert_eq!(mask_phone_number("tel:+15551230001"), "tel:+*******0001");
        assert_eq!(mask_phone_number("sip:+15551230001@10.0.0.1"), "sip:+*******0001");
        // Already masked values stay masked; never more than four digits survive.
        assert_eq!(mask_phone_number("+1***-***-1234"), "+****-***-1234");
        assert_eq!(mask_phone_number("1234"), "1234");
    }

    #[test]
    fn phone_shapes_are_recognised_but_dates_and_ids_are_not() {
        assert!(looks_like_phone_number("+15551234567"));
        assert!(looks_like_phone_number("tel:+18005550100"));
        assert!(looks_like_phone_number("555-123-4567"));
        assert!(!looks_like_phone_number("2024-03-04"));
        assert!(!looks_like_phone_number("7f3c2a10-0000-4000-8000-000000000001"));
        assert!(!looks_like_phone_number("345"));
    }

    #[test]
    fn json_records_are_masked_by_field_and_by_shape() {
        let mut v: Value = serde_json::json!({
            "event_id": "e1",
            "caller_number": "+15551234567",
            "ani": 15551230001u64,
            "recording_url": "https://rec.example.com/r/1.wav",
            "metadata": {"source_ip": "10.1.2.3", "campaign_id": "c-1"},
            "note": "call back on +44 20 7946 0018",
            "other": "+15550001111",
            "ip": "2001:db8::1"
        });
        mask_json(&mut v);
        let s = v.to_string();
        for secret in ["5551234567", "15551230001", "rec.example.com", "10.1.2.3", "5550001111", "2001:db8::1"] {
            assert!(!s.contains(secret), "{secret} survived in {s}");
        }
        assert_eq!(v["caller_number"], "+*******4567");
        assert_eq!(v["metadata"]["campaign_id"], "c-1");
        assert_eq!(v["event_id"], "e1");
    }

    #[test]
    fn digits_of_every_script_are_numbers() {
        assert_eq!(normalize_digits("＋１ ５５５－１２３－４５６７"), "+1 555-123-4567");
        assert_eq!(normalize_digits("٠١٢٣٤٥٦٧٨٩"), "0123456789");
        assert!(matches!(normalize_digits("queue-1"), Cow::Borrowed(_)));
        assert_eq!(mask_phone_number("＋１５５５１２３４５６７"), "+*******4567");
        assert_eq!(scrub_text("call ＋１５５５１２３４５６７ now"), "call +*******4567 now");
    }

    #[test]
    fn event_fields_are_masked_but_bare_ids_are_kept() {
        assert_eq!(mask_field("agent-7"), "agent-7");
        assert_eq!(mask_field("5551234567"), "5551234567", "a bare run of digits is an id");
        assert_eq!(mask_field("+15551230004"), "+*******0004");
        assert_eq!(mask_field("tel:5551230004"), "tel:******0004");
        assert_eq!(mask_field("555-123-0004"), "***-***-0004");
        assert_eq!(mask_field("Sales https://crm.example.com/q/1"), "Sales [url redacted]");
        assert_eq!(mask_field("10.0.0.7"), REDACTED_IP);
        assert_eq!(mask_field("＋１５５５１２３０００４"), "+*******0004");
        assert_eq!(mask_field("7f3c2a10-0000-4000-8000-000000000001"), "7f3c2a10-0000-4000-8000-000000000001");
        assert_eq!(mask_field("8ac7dbe4-627c-4a00-0069-98d7f1900000"), "8ac7dbe4-627c-4a00-0069-98d7f1900000");
        assert_eq!(scrub_text("id 8ac7dbe4-627c-4a00-0069-98d7f1900000 +15551230004"), "id 8ac7dbe4-627c-4a00-0069-98d7f1900000 +*******0004");
        assert_eq!(mask_field("2024-03-04T09:00:00Z"), "2024-03-04T09:00:00Z");
        assert!(holds_personal_data("+15551230004") && holds_personal_data("http://x.example/a"));
        assert!(!holds_personal_data("e-000123") && !holds_personal_data("1234567890"));
    }

    #[test]
    fn numbers_sent_as_json_numbers_are_masked_in_records() {
        let mut v: Value = serde_json::json!({"contact": {"mobile": 15551230007u64}, "duration_seconds": 1234567, "n": 42});
        mask_json(&mut v);
        assert_eq!(v["contact"]["mobile"], "*******0007");
        assert_eq!(v["duration_seconds"], 1234567);
        assert_eq!(v["n"], 42);
    }

    #[test]
    fn free_text_is_scrubbed() {
        let line = r#"{"event_id":"e1","timestamp":"2024-03-04T09:00:00Z","caller_number":"+15551234567","recording_url":"s3://bucket/rec.wav","metadata":{"source_ip":"192.168.1.20"}"#;
        let s = scrub_text(line);
        assert!(!s.contains("5551234567"), "{s}");
        assert!(!s.contains("bucket/rec.wav"), "{s}");
        assert!(!s.contains("192.168.1.20"), "{s}");
        assert!(s.contains("2024-03-04T09:00:00Z"), "{s}");
        assert!(s.contains("4567"), "{s}");
    }
}
