//! What `quarantine.record` keeps of a refused record: masked, and cut when it is huge.

/// A quarantined item of a tree format, masked field by field (and cut like any record).
pub(crate) fn masked_json_text(item: &super::formats::Value<'_>) -> String {
    let mut value = item.to_serde();
    super::mask::mask_json(&mut value);
    let text = value.to_string();
    if text.len() > MAX_QUARANTINED_RECORD_BYTES {
        masked_record_text(text.as_bytes())
    } else {
        text
    }
}

/// The longest record kept whole in `quarantine.record`; a longer one keeps its first
/// [`KEPT_PREFIX_BYTES`], its length and its SHA-256, so that one 200 MB line cannot make a
/// row no client can fetch.
pub const MAX_QUARANTINED_RECORD_BYTES: usize = 64 * 1024;
const KEPT_PREFIX_BYTES: usize = 4096;

/// A quarantined record as it can be stored: masked field by field when it is JSON, scrubbed
/// as text when it is not; cut when it is longer than [`MAX_QUARANTINED_RECORD_BYTES`].
pub(crate) fn masked_record_text(raw: &[u8]) -> String {
    use sha2::Digest;
    if raw.len() > MAX_QUARANTINED_RECORD_BYTES {
        let prefix = String::from_utf8_lossy(&raw[..KEPT_PREFIX_BYTES]);
        // A number or address cut in two at the end would escape masking: drop its rest.
        let prefix = prefix.trim_end_matches(|c: char| c.is_ascii_hexdigit() || "+-.:() ".contains(c));
        let digest: String = sha2::Sha256::digest(raw).iter().map(|b| format!("{b:02x}")).collect();
        return format!(
            "{}... [cut: {} bytes in all, sha256 {digest}]",
            super::mask::scrub_text(prefix.trim_start()),
            raw.len()
        );
    }
    match serde_json::from_slice::<serde_json::Value>(raw) {
        Ok(mut value) => {
            super::mask::mask_json(&mut value);
            value.to_string()
        }
        Err(_) => super::mask::scrub_text(String::from_utf8_lossy(raw).trim()),
    }
}
