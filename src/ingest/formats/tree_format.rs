//! What a Genesys export shape read from a parsed JSON tree implements.

use super::tree::{Object, Value};
use crate::ingest::coerce::Rejection;
use crate::ingest::rows::RecordRows;

/// What a tree format made of one record (a page yields one per element).
#[derive(Debug)]
pub struct Decoded<'v> {
    /// Where in the record: `conversations[3]`, `entities[0]`; none for a record that is
    /// one item.
    pub position: Option<String>,
    pub outcome: Result<RecordRows<'v>, Rejection>,
    /// The item's JSON, kept (masked) in `quarantine` when it is refused.
    pub item: &'v Value<'v>,
}

/// A Genesys export shape read from a parsed JSON tree.
pub trait TreeFormat: Sync {
    /// Its name in summaries (`conversation_detail`).
    fn name(&self) -> &'static str;
    /// Whether a record with these top-level keys is of this format.
    fn sniff(&self, top: &Object<'_>) -> bool;
    /// The record's items, each decoded into rows or refused and handed to `each` before the
    /// next is decoded: an item's rows are staged while they are in the cache, and their
    /// memory is the next item's (a page decoded whole first held hundreds of conversations'
    /// rows at once).
    fn decode<'v>(&self, record: &'v Value<'v>, each: &mut dyn FnMut(Decoded<'v>));
}

/// The items [`TreeFormat::decode`] hands out, in a list.
#[cfg(test)]
pub(super) fn decoded<'v>(format: &dyn TreeFormat, record: &'v Value<'v>) -> Vec<Decoded<'v>> {
    let mut items = Vec::new();
    format.decode(record, &mut |item| items.push(item));
    items
}
