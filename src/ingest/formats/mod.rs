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

/// Whether a top-level key is one only a tree format's record has: only a record holding
/// one can be a tree format ([`TreeFormat::sniff`] looks at these), so flat events (the
/// high-volume path) are parsed once, as flat events, and told apart by that parse
/// ([`flat_event::parse_flat_event_or_tree`]).
pub fn is_tree_key(key: &str) -> bool {
    matches!(key, "conversations" | "conversationId" | "detail-type" | "entities")
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
    fn only_records_with_a_tree_format_s_key_are_parsed_as_trees() {
        let arena = bumpalo::Bump::new();
        use flat_event::{parse_flat_event_or_tree, FlatOrTree};
        let is_flat = |json: &str| matches!(parse_flat_event_or_tree(json.as_bytes(), None, None), FlatOrTree::Flat(_));
        assert!(is_flat(r#"{"event_id":"e1","interaction_id":"i1"}"#));
        assert!(is_flat(r#"{"event_id": "e1", "note": "conversationId", "data": {"conversations": []}}"#), "only top-level keys");
        assert!(is_flat("[1, 2]") && is_flat("{not json"));
        assert!(!is_flat(r#"{"conversations":[]}"#));
        assert!(!is_flat(r#"{"version": "0", "detail-type":"x","detail":{}}"#));
        assert!(!is_flat(r#"{"event_id": "e1", "entities": 3}"#));
        assert!(!is_flat(r#"{"conversation\u0049d": "c1"}"#), "a key as parsed, escapes undone");
        // Every key a format's sniff looks for is a tree key: a record of any tree format
        // is given to the tree parse.
        for record in [r#"{"conversations":[]}"#, r#"{"conversationId":"c","participants":[]}"#, r#"{"detail-type":"x","detail":{}}"#, r#"{"entities":[]}"#] {
            assert!(tree_format_of(&tree::parse(record.as_bytes(), None, &arena).unwrap()).is_some(), "{record}");
            assert!(!is_flat(record), "{record}");
        }
        let flat = tree::parse(br#"{"event_id": "e1", "note": "conversationId"}"#, None, &arena).unwrap();
        assert!(tree_format_of(&flat).is_none());
    }
}
