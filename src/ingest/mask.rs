//! PII masking: phone numbers keep at most their last four digits, URLs and IP addresses are
//! redacted. Applied to every value that lands in a table the analyst role can read and to
//! quarantined records, which keep the rest of the record so it can be repaired.

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

/// Masks every digit but the last four with `*`, keeping the punctuation so the shape stays
/// recognisable: `+1 555-123-4567` → `+* ***-***-4567`. A SIP URI loses its host part, which
/// may hold an address. Values with four digits or fewer are already as masked as this makes
/// them.
pub fn mask_phone_number(raw: &str) -> String {
    let number = match raw.split_once('@') {
        Some((user, _host)) => user,
        None => raw,
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

/// True for strings shaped like a phone number: an optional `tel:`/`sip:` scheme, then only
/// digits, `+`, spaces, dots, dashes and parentheses, with 7 to 15 digits (E.164's range).
pub fn looks_like_phone_number(value: &str) -> bool {
    let lower = value.trim();
    let rest = lower
        .strip_prefix("tel:")
        .or_else(|| lower.strip_prefix("sip:"))
        .map(|r| r.split('@').next().unwrap_or(r))
        .unwrap_or(lower);
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

fn url_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(r#"(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>,}\]]+|\bwww\.[^\s"'<>,}\]]+"#)
            .expect("static regex")
    })
}

/// Masks one JSON value in place: phone-number fields are masked, URL and IP fields redacted,
/// and any other string that looks like a phone number, URL or IP address is treated the
/// same, since drifted exports put numbers in fields nobody planned for.
pub fn mask_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                match field {
                    Value::String(s) if PHONE_FIELDS.contains(&key.as_str()) => {
                        *s = mask_phone_number(s);
                    }
                    Value::Number(n) if PHONE_FIELDS.contains(&key.as_str()) => {
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
            if s.trim().parse::<IpAddr>().is_ok() {
                *s = REDACTED_IP.to_string();
            } else {
                *s = scrub_text(s);
            }
        }
        _ => {}
    }
}

/// Scrubs free text (an unparseable line): URLs and IP addresses are redacted and runs of
/// digits that look like phone numbers keep their last four digits.
pub fn scrub_text(text: &str) -> String {
    static IP_CANDIDATE: OnceLock<Regex> = OnceLock::new();
    static PHONE_CANDIDATE: OnceLock<Regex> = OnceLock::new();
    let ip = IP_CANDIDATE.get_or_init(|| {
        Regex::new(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|[0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f.]*")
            .expect("static regex")
    });
    let phone = PHONE_CANDIDATE
        .get_or_init(|| Regex::new(r"\+?\d[\d ().-]{5,}\d").expect("static regex"));
    let text = url_pattern().replace_all(text, REDACTED_URL);
    let text = ip.replace_all(&text, |caps: &regex::Captures<'_>| {
        let m = &caps[0];
        if m.parse::<IpAddr>().is_ok() {
            REDACTED_IP.to_string()
        } else {
            m.to_string()
        }
    });
    phone
        .replace_all(&text, |caps: &regex::Captures<'_>| {
            let m = &caps[0];
            if looks_like_phone_number(m) {
                mask_phone_number(m)
            } else {
                m.to_string()
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_keep_last_four_digits() {
        assert_eq!(mask_phone_number("+15551234567"), "+*******4567");
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
