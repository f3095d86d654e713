//! Where an ingest pass's keys are, so that its batches do not read back what it wrote.
//!
//! Deciding "latest delivery wins" starts from the partitions holding a batch's keys
//! ([`stored::partitions_holding`]): a narrow read of the key hash column of the whole table.
//! A pass of many batches would read, at each batch, every key its earlier batches wrote,
//! and its cost would grow with the square of its size (benches/README, "Issue 28, fourth
//! round": 16% of a 400k ingest's samples in 100k-row batches). Here the pass reads only the
//! table as it found it, and looks the keys it wrote itself up in memory: the partition each
//! was written to, by its 8-byte hash.
//!
//! The partitions found are a superset of those holding the keys now, which is all a lookup
//! needs (the rows themselves are then read in those partitions only, as the table is now):
//! a key the pass never wrote is where the table held it before the pass (only this pass
//! writes while it holds the lease), and a key it wrote is in a partition it wrote it to. A
//! hash met in two partitions (a key that moved, or two keys sharing a hash) keeps both.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::common::ScalarValue;
use deltalake::{DeltaTable, DeltaTableError};
use indexmap::IndexSet;
use rustc_hash::{FxHashMap, FxHashSet};

use super::append::partition_runs;
use super::error::WriteFailure;
use super::stored::{self, KeyColumns};
use super::tables::Tables;
use crate::model::LakeTable;

/// Keys a pass remembers of one table at most (about 20 bytes each): past them, its
/// lookups read the whole table again, as a pass without this memory does.
pub(crate) const MAX_KEYS: usize = 1 << 25;

/// What a pass knows of where its keys are, for each partitioned table keyed by a hash.
pub(crate) struct PassKeys {
    tables: HashMap<LakeTable, TableKeys>,
    max_keys: usize,
}

struct TableKeys {
    /// The table as the pass found it.
    before: DeltaTable,
    partitions: IndexSet<Vec<ScalarValue>>,
    /// The partition each key hash was written to, by number in `partitions`.
    keys: FxHashMap<i64, u32>,
    /// The further partitions of hashes written to more than one.
    more: FxHashMap<i64, Vec<u32>>,
    /// Key hashes written, by partition number, not yet in `keys`: they are put there when
    /// the next batch is committed, so a pass of one batch never hashes them.
    unindexed: Vec<(Int64Array, u32)>,
    /// Keys written so far, indexed or not.
    written: usize,
    /// More than the pass may remember were written: lookups read the table as it is now.
    given_up: bool,
}

impl TableKeys {
    fn new(before: DeltaTable) -> Self {
        Self {
            before,
            partitions: IndexSet::new(),
            keys: FxHashMap::default(),
            more: FxHashMap::default(),
            unindexed: Vec::new(),
            written: 0,
            given_up: false,
        }
    }

    fn index(&mut self) {
        for (hashes, number) in std::mem::take(&mut self.unindexed) {
            self.keys.reserve(hashes.len());
            for &hash in hashes.values() {
                match self.keys.entry(hash) {
                    Entry::Vacant(new) => {
                        new.insert(number);
                    }
                    Entry::Occupied(first) if *first.get() != number => {
                        let more = self.more.entry(hash).or_default();
                        if !more.contains(&number) {
                            more.push(number);
                        }
                    }
                    Entry::Occupied(_) => {}
                }
            }
        }
    }
}

impl PassKeys {
    /// At the start of a pass: the tables as it finds them.
    pub(crate) fn new(tables: &Tables) -> Self {
        Self::with_limit(tables, MAX_KEYS)
    }

    pub(crate) fn with_limit(tables: &Tables, max_keys: usize) -> Self {
        let tables = LakeTable::ALL
            .into_iter()
            .filter(|t| t.merge_policy().key_hash().is_some() && !t.partition_columns().is_empty())
            .filter_map(|t| Some((t, TableKeys::new(tables.get(t).ok()?.clone()))))
            .collect();
        Self { tables, max_keys }
    }

    /// The partitions of `table` (now `now`) that may hold any of `keys`, a batch of its
    /// join column ([`KeyColumns::join`]): all that do, and maybe others.
    pub(crate) async fn partitions_holding(
        &self,
        table: LakeTable,
        now: &DeltaTable,
        keys: RecordBatch,
    ) -> Result<Vec<Vec<ScalarValue>>, DeltaTableError> {
        // The scan hands partition values back dictionary-encoded, as Delta's provider
        // reads them; the rows written hold them plain.
        let scanned = |partitions: Vec<Vec<ScalarValue>>| partitions.into_iter().map(|values| values.into_iter().map(plain).collect());
        let known = match self.tables.get(&table) {
            Some(known) if !known.given_up => known,
            _ => return Ok(scanned(stored::partitions_holding(now, table, keys).await?).collect()),
        };
        let mut found: IndexSet<Vec<ScalarValue>> = scanned(stored::partitions_holding(&known.before, table, keys.clone()).await?).collect();
        let join = KeyColumns::of(table)?.join();
        let hashes = key_hashes(&keys, 0, join, table)?;
        let mut numbers = Vec::new();
        for hash in hashes.values().iter() {
            if let Some(&first) = known.keys.get(hash) {
                numbers.push(first);
                numbers.extend(known.more.get(hash).into_iter().flatten());
            }
        }
        // Keys written since the last [`Self::index_written`], looked through one by one.
        if !known.unindexed.is_empty() {
            let wanted: FxHashSet<i64> = hashes.values().iter().copied().collect();
            numbers.extend(known.unindexed.iter().filter(|(written, _)| written.values().iter().any(|h| wanted.contains(h))).map(|(_, n)| *n));
        }
        numbers.sort_unstable();
        numbers.dedup();
        found.extend(numbers.into_iter().filter_map(|n| known.partitions.get_index(n as usize).cloned()));
        Ok(found.into_iter().collect())
    }

    /// Where and by which delivery each of `keys` is stored now
    /// ([`stored::stored_deliveries`]), read in the partitions [`Self::partitions_holding`] finds.
    pub(crate) async fn stored_events(
        &self,
        table: LakeTable,
        now: &DeltaTable,
        keys: RecordBatch,
    ) -> Result<HashMap<String, stored::StoredEvent>, DeltaTableError> {
        let partitions = self.partitions_holding(table, now, keys.clone()).await?;
        let columns = KeyColumns::of(table)?;
        stored::stored_deliveries(now, table, columns.key, columns.join(), keys, Some(&partitions)).await
    }

    /// Remembers the partitions of the rows just committed to `table` (`written`, in its
    /// schema).
    pub(crate) fn wrote(&mut self, table: LakeTable, written: &[RecordBatch]) -> Result<(), DeltaTableError> {
        let max_keys = self.max_keys;
        let Some(known) = self.tables.get_mut(&table).filter(|k| !k.given_up) else { return Ok(()) };
        let join = KeyColumns::of(table)?.join();
        let columns: Vec<String> = table.partition_columns().iter().map(|c| c.to_string()).collect();
        for batch in written.iter().filter(|b| b.num_rows() > 0) {
            known.written += batch.num_rows();
            if known.written > max_keys {
                known.given_up = true;
                (known.partitions, known.keys, known.more, known.unindexed) = Default::default();
                return Ok(());
            }
            // Only the columns needed: a batch not grouped by partition is grouped by a copy.
            let schema = batch.schema();
            let needed = columns.iter().map(String::as_str).chain([join]).map(|c| schema.index_of(c)).collect::<Result<Vec<_>, _>>()?;
            let (batch, runs) = partition_runs(batch.project(&needed)?, &columns)?;
            let hashes = key_hashes(&batch, columns.len(), join, table)?;
            for (rows, partition) in runs {
                let partition = partition.into_iter().map(plain).collect();
                let number = known.partitions.insert_full(partition).0 as u32;
                known.unindexed.push((hashes.slice(rows.start, rows.len()), number));
            }
        }
        Ok(())
    }

    /// Before a batch's lookups: indexes the keys earlier batches wrote.
    pub(crate) fn index_written(&mut self) {
        self.tables.values_mut().for_each(TableKeys::index);
    }

    /// Whether `table`'s keys are looked up here (else its lookups read the table as it is).
    #[cfg(test)]
    fn remembers(&self, table: LakeTable) -> bool {
        self.tables.get(&table).is_some_and(|k| !k.given_up)
    }
}

/// `value` without its dictionary encoding.
fn plain(value: ScalarValue) -> ScalarValue {
    match value {
        ScalarValue::Dictionary(_, value) => plain(*value),
        value => value,
    }
}

/// `table`'s key hashes in `batch` (its column `column`, at `index`), every one present.
fn key_hashes(batch: &RecordBatch, index: usize, column: &'static str, table: LakeTable) -> Result<Int64Array, DeltaTableError> {
    let not_hashes = || WriteFailure::KeyHash { table: table.name(), column };
    let values = batch.column(index);
    if values.null_count() > 0 {
        return Err(not_hashes().into());
    }
    Ok(values.as_primitive_opt::<Int64Type>().ok_or_else(not_hashes)?.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rows::TableRows;
    use crate::lake::append::append;
    use crate::model::Delivery;
    use std::sync::Arc;

    /// Fact rows of flat events `(id, timestamp, queue)`, as a parse stages them.
    fn facts(events: &[(&str, &str, &str)]) -> Vec<RecordBatch> {
        let mut rows = TableRows::default();
        for (line, (id, at, queue)) in events.iter().enumerate() {
            let json = format!(r#"{{"event_id":"{id}","interaction_id":"i-{id}","timestamp":"{at}","queue_name":"{queue}"}}"#);
            let event = crate::ingest::parse_flat_event(json.as_bytes()).outcome.unwrap();
            let delivery = Delivery { modified_at: 7, object: "file:///x/a.jsonl".into(), line: line as i64 + 1 };
            event.push_rows(7, &mut rows, &delivery);
        }
        rows.finish().unwrap().remove(&LakeTable::FactInteractions).unwrap()
    }

    /// A partition of `fact_interactions`: `(day, queue)`, the day as days since the epoch.
    fn partition(day: &str, queue: &str) -> Vec<ScalarValue> {
        let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        let days = (day - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
        vec![ScalarValue::Date32(Some(days)), ScalarValue::Utf8(Some(queue.into()))]
    }

    fn sorted(mut partitions: Vec<Vec<ScalarValue>>) -> Vec<Vec<ScalarValue>> {
        partitions.sort_by_key(|p| format!("{p:?}"));
        partitions
    }

    #[tokio::test]
    async fn a_pass_finds_the_keys_stored_before_it_and_the_keys_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::lake::Lake::open_or_create(dir.path().to_str().unwrap()).await.unwrap();
        let table = LakeTable::FactInteractions;
        // Before the pass: e1 in (4 March, Billing).
        let before = append(lake.table(table).await.unwrap(), table, facts(&[("e1", "2024-03-04T10:00:00Z", "Billing")]), None).await.unwrap();
        let tables = Tables([(table, before.clone())].into_iter().collect());
        let mut known = PassKeys::new(&tables);
        assert!(known.remembers(table) && !known.remembers(LakeTable::CallRecordings), "only the tables it was given");

        // The pass writes e2 to (5 March, Sales).
        let e2 = facts(&[("e2", "2024-03-05T09:00:00Z", "Sales")]);
        let now = append(before.clone(), table, e2.clone(), None).await.unwrap();
        known.wrote(table, &e2).unwrap();
        let lookup = facts(&[("e1", "2024-03-04T11:00:00Z", "Other"), ("e2", "2024-03-07T09:00:00Z", "Other"), ("e3", "2024-03-04T10:00:00Z", "Billing")]);
        let keys = stored::key_batch(table, &lookup).unwrap();
        let found = known.partitions_holding(table, &now, keys.clone()).await.unwrap();
        assert_eq!(sorted(found), vec![partition("2024-03-04", "Billing"), partition("2024-03-05", "Sales")]);
        // Rows are then read from those partitions as the table is now.
        let stored = known.stored_events(table, &now, keys.clone()).await.unwrap();
        let mut ids: Vec<&str> = stored.keys().map(String::as_str).collect();
        ids.sort();
        assert_eq!(ids, vec!["e1", "e2"]);
        assert_eq!(stored["e2"].partition.iter().cloned().map(plain).collect::<Vec<_>>(), partition("2024-03-05", "Sales"));

        // A later delivery moves e2 to (6 March, Support): both partitions are looked in,
        // whether the keys written are indexed yet or not.
        known.index_written();
        known.wrote(table, &facts(&[("e2", "2024-03-06T09:00:00Z", "Support")])).unwrap();
        let moved = vec![partition("2024-03-04", "Billing"), partition("2024-03-05", "Sales"), partition("2024-03-06", "Support")];
        assert_eq!(sorted(known.partitions_holding(table, &now, keys.clone()).await.unwrap()), moved);
        known.index_written();
        assert_eq!(sorted(known.partitions_holding(table, &now, keys.clone()).await.unwrap()), moved);
        assert!(known.tables[&table].unindexed.is_empty() && known.tables[&table].more.contains_key(&key_hashes(&keys, 0, "event_key", table).unwrap().value(1)));

        // A pass that may remember one key gives up at the second: its lookups read the
        // table as it is now, which holds e2 in (5 March, Sales).
        let mut forgetful = PassKeys::with_limit(&tables, 1);
        forgetful.wrote(table, &facts(&[("e2", "2024-03-05T09:00:00Z", "Sales"), ("e4", "2024-03-05T10:00:00Z", "Sales")])).unwrap();
        assert!(!forgetful.remembers(table));
        let found = forgetful.partitions_holding(table, &now, keys).await.unwrap();
        assert_eq!(sorted(found), vec![partition("2024-03-04", "Billing"), partition("2024-03-05", "Sales")]);
    }

    #[test]
    fn a_key_hash_column_must_hold_a_hash_in_every_row() {
        let keys = RecordBatch::try_from_iter([("event_key", Arc::new(Int64Array::from(vec![Some(1), None])) as _)]).unwrap();
        let error = key_hashes(&keys, 0, "event_key", LakeTable::FactInteractions).unwrap_err();
        assert!(matches!(WriteFailure::find(&error), Some(WriteFailure::KeyHash { table: "fact_interactions", column: "event_key" })), "{error}");
        let text = RecordBatch::try_from_iter([("event_key", Arc::new(arrow::array::StringArray::from(vec!["1"])) as _)]).unwrap();
        assert!(key_hashes(&text, 0, "event_key", LakeTable::FactInteractions).is_err());
    }
}
