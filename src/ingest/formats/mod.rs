//! Input formats, detected by content, not by file name: each turns one record into rows of
//! the model's tables, or a rejection with its reason and field.
//!
//! - [`flat_event`]: the simplified flat event (GENESYS.md §1), the default.
//! - [`conversation_detail`]: analytics conversation-detail records, alone (one a line) or in
//!   pages (`{"conversations":[...]}` of details queries and async jobs).
//! - [`eventbridge`]: Amazon EventBridge envelopes of streaming detail events.
//! - [`dimension`]: queue, user and wrap-up code exports (`{"entities":[...]}` pages).
//!
//! The flat event has a serde parser of its own (one pass, borrowed strings: it is the
//! high-volume path). The Genesys shapes are trees: they implement [`TreeFormat`] over a
//! parsed [`tree::Value`], with the helpers of [`fields`] for coercion and masking, shared with
//! the flat parser through [`crate::ingest::coerce`] and [`crate::ingest::mask`].

pub mod conversation_detail;
pub mod dimension;
pub mod eventbridge;
pub(crate) mod fields;
pub mod flat_event;
pub mod tree;
mod tree_format;

pub use tree::{Object, Value};
pub use tree_format::{Decoded, TreeFormat};

/// The tree formats, tried in order; a record none of them claims is a flat event.
pub static TREE_FORMATS: [&dyn TreeFormat; 3] = [
    &conversation_detail::ConversationDetail,
    &eventbridge::EventBridge,
    &dimension::DimensionExport,
];

/// A cheap look at the bytes before anything is parsed: only a record holding one of these
/// keys can be a tree format, so flat events (the high-volume path) are never parsed twice.
pub fn may_be_tree_format(raw: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::OnceLock;
    // Every flat record passes here: SIMD substring search, the finders built once; one
    // finds both `"conversations"` and `"conversationId"` (a third pass less per record).
    static MARKERS: OnceLock<[Finder<'static>; 3]> = OnceLock::new();
    let markers = MARKERS.get_or_init(|| {
        [Finder::new(b"\"conversation"), Finder::new(b"\"detail-type\""), Finder::new(b"\"entities\"")]
    });
    markers.iter().any(|m| m.find(raw).is_some())
}

/// The tree format a parsed record is in, if any.
pub fn tree_format_of(record: &Value<'_>) -> Option<&'static dyn TreeFormat> {
    let top = record.as_object()?;
    TREE_FORMATS.iter().copied().find(|f| f.sniff(top))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_with_a_marker_key_are_parsed_as_trees() {
        assert!(!may_be_tree_format(br#"{"event_id":"e1","interaction_id":"i1"}"#));
        assert!(may_be_tree_format(br#"{"conversations":[]}"#));
        assert!(may_be_tree_format(br#"{"detail-type":"x","detail":{}}"#));
        let flat = tree::parse(br#"{"event_id": "e1", "note": "conversationId"}"#).unwrap();
        assert!(tree_format_of(&flat).is_none());
    }
}
