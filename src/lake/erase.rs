//! Erasure of customers' conversations (GDPR's right to erasure): every row of the given
//! conversation or interaction ids leaves every table that holds one, and a later
//! re-delivery of them from the source (outside cclake's control) is not let back in.
//!
//! - Each table with an id column (`interaction_id`, `conversation_id`) loses the rows of
//!   those ids, and `quarantine` the records whose text mentions one, in one Delta DELETE per
//!   table that rewrites only the files holding such rows. The predicate is a function of
//!   the id column (`cclake_erased(interaction_id)`), so the Delta log, which records every
//!   commit's predicate, never holds the ids themselves.
//! - The erasure is recorded first, in `_cclake/erasures/` of the lake: when, by whom, and
//!   the ids as keyed hashes (HMAC-SHA-256 under the lake's pseudonym key, never in clear).
//!   Every ingest pass reads those records and drops the rows of erased ids before any
//!   commit: a re-delivered export changes nothing. A crash between the record and the
//!   deletes leaves the ids recorded; running `erase` again completes it.
//! - The old files stay until `cclake vacuum` (with `--retain 0d`, at once).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use chrono::Utc;
use datafusion::logical_expr::{col, create_udf, ColumnarValue, Expr, Volatility};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

use crate::ingest::pseudonym::PseudonymKey;
use crate::model::LakeTable;
use crate::storage::Location;
use super::error::LakeError;
use super::lease::WriterLease;
use super::retention::delete_where;
use super::tables::Tables;
use super::{pseudonym_key, Lake};

/// Where erasure records are kept, under the lake's root.
const ERASURES: [&str; 2] = ["_cclake", "erasures"];

/// The column holding the conversation a row belongs to, in tables that have one.
pub(crate) fn id_column(table: LakeTable) -> Option<&'static str> {
    let schema = table.schema();
    ["interaction_id", "conversation_id"].into_iter().find(|c| schema.index_of(c).is_ok())
}

/// One erasure as recorded in the lake.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ErasureRecord {
    at: String,
    by: String,
    /// The erased ids' keyed hashes ([`PseudonymKey::erasure_hash`]).
    hashes: Vec<String>,
}

/// What `erase` removed from each table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EraseReport {
    pub ids: usize,
    /// Per table: rows deleted (when delta-rs counts them) and files rewritten.
    pub tables: Vec<(LakeTable, Option<usize>, usize)>,
}

impl std::fmt::Display for EraseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "erased {} ids (recorded, hashed, in _cclake/erasures: later deliveries of them are dropped)", self.ids)?;
        for (table, rows, files) in &self.tables {
            let rows = rows.map_or_else(|| "rows".to_string(), |n| format!("{n} rows"));
            write!(f, "\n{}: {rows} deleted, {files} files rewritten", table.name())?;
        }
        write!(f, "\nthe old files stay until `cclake vacuum` (`--retain 0d` deletes them now)")
    }
}

/// The erased ids an ingest pass drops, as keyed hashes.
#[derive(Debug)]
pub(crate) struct ErasedIds {
    key: Arc<PseudonymKey>,
    hashes: HashSet<String>,
}

impl ErasedIds {
    /// Every erasure recorded in the lake at `root`; none when there is none.
    pub(crate) async fn load(root: &Location, key: Arc<PseudonymKey>) -> Result<Option<Self>, LakeError> {
        let (store, base) = root.object_store()?;
        let prefix = ERASURES.iter().fold(base, |p, s| p.join(*s));
        let listed: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| LakeError::ErasureStore { object: prefix.to_string(), source })?;
        let mut hashes = HashSet::new();
        for meta in listed {
            let read = |source| LakeError::ErasureStore { object: meta.location.to_string(), source };
            let bytes = store.get(&meta.location).await.map_err(read)?.bytes().await.map_err(read)?;
            let record: ErasureRecord = serde_json::from_slice(&bytes).map_err(|e| LakeError::ErasureRecord {
                object: meta.location.to_string(),
                reason: e.to_string(),
            })?;
            hashes.extend(record.hashes);
        }
        Ok((!hashes.is_empty()).then_some(Self { key, hashes }))
    }

    fn erased(&self, id: &str) -> bool {
        self.hashes.contains(&self.key.erasure_hash(id))
    }

    /// `batch` without the rows of erased ids (a table with an id column), or without the
    /// quarantined records that name one in an id field.
    pub(crate) fn keep(&self, table: LakeTable, batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
        let (column, ids_in): (&str, fn(&str) -> Vec<&str>) = match (table, id_column(table)) {
            (LakeTable::Quarantine, _) => ("record", ids_in_record),
            (_, Some(column)) => (column, just),
            _ => return Ok(batch.clone()),
        };
        let Ok(index) = batch.schema().index_of(column) else { return Ok(batch.clone()) };
        let values = cast(batch.column(index), &DataType::Utf8)?;
        let keep: BooleanArray = values
            .as_string::<i32>()
            .iter()
            .map(|v| Some(!v.is_some_and(|text| ids_in(text).into_iter().any(|id| self.erased(id)))))
            .collect();
        if keep.true_count() == batch.num_rows() {
            return Ok(batch.clone());
        }
        filter_record_batch(batch, &keep)
    }
}

fn just(id: &str) -> Vec<&str> {
    vec![id]
}

/// The values of the id fields a quarantined record's text names (it may not parse as
/// JSON: it was quarantined), in every shape's spelling.
fn ids_in_record(text: &str) -> Vec<&str> {
    static ID_FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#""(?:interaction_id|conversation_id|conversationId|interactionId)"\s*:\s*"?([^",}\s]+)"#)
            .unwrap_or_else(|e| unreachable!("a fixed pattern: {e}"))
    });
    ID_FIELD.captures_iter(text).filter_map(|c| c.get(1).map(|m| m.as_str())).collect()
}

/// A predicate true for rows whose `column` is one of `ids` (or, for quarantine's record,
/// mentions one), that shows as `cclake_erased(column)` wherever it is printed.
fn erased_rows(column: &str, ids: Arc<HashSet<String>>, mentions: bool) -> Expr {
    let udf = create_udf(
        "cclake_erased",
        vec![DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let values = cast(&arrays[0], &DataType::Utf8)?;
            let matched: BooleanArray = values
                .as_string::<i32>()
                .iter()
                .map(|v| {
                    Some(v.is_some_and(|text| {
                        if mentions {
                            ids.iter().any(|id| text.contains(id.as_str()))
                        } else {
                            ids.contains(text.trim())
                        }
                    }))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(matched)))
        }),
    );
    udf.call(vec![col(column)])
}

impl Lake {
    /// Erases every row of `ids` (conversation or interaction ids) from every table, and keeps
    /// later deliveries of them out (`cclake erase`); `by` names who asked, for the record.
    pub async fn erase(&self, ids: &[String], by: &str) -> Result<EraseReport, LakeError> {
        let ids: HashSet<String> = ids.iter().map(|id| id.trim().to_string()).filter(|id| !id.is_empty()).collect();
        self.upkeep("erase", async |mut tables: Tables, lease: &WriterLease| {
            let key = pseudonym_key::lake_key(self.root(), self.options().pseudonym_key.as_ref()).await?;
            let at = Utc::now();
            let mut hashes: Vec<String> = ids.iter().map(|id| key.erasure_hash(id)).collect();
            hashes.sort();
            let record = ErasureRecord { at: at.to_rfc3339(), by: by.to_string(), hashes };
            self.record_erasure(&record, at.timestamp_micros()).await?;
            let ids = Arc::new(ids);
            let mut report = EraseReport { ids: ids.len(), tables: Vec::new() };
            let metadata = ("cclake.erase", json!({ "at": record.at, "by": record.by, "ids": ids.len() }));
            for table in LakeTable::ALL {
                let predicate = match (table, id_column(table)) {
                    (LakeTable::Quarantine, _) => erased_rows("record", Arc::clone(&ids), true),
                    (_, Some(column)) => erased_rows(column, Arc::clone(&ids), false),
                    _ => continue,
                };
                lease.ensure_held().await?;
                let Some(metrics) = delete_where(&mut tables, table, predicate, &metadata).await? else { continue };
                if metrics.num_removed_files > 0 {
                    report.tables.push((table, metrics.num_deleted_rows, metrics.num_removed_files));
                }
            }
            info!(ids = ids.len(), by, "erased");
            Ok((report, tables))
        })
        .await
    }

    /// Writes an erasure record, named by its time (microseconds) and a random suffix.
    async fn record_erasure(&self, record: &ErasureRecord, micros: i64) -> Result<(), LakeError> {
        let (store, base) = self.root().object_store()?;
        let name = format!("{micros:020}-{:08x}.json", rand::random::<u32>());
        let path = ERASURES.iter().fold(base, |p, s| p.join(*s)).join(name.as_str());
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| LakeError::ErasureStore { object: path.to_string(), source })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_quarantined_text_in_every_spelling() {
        let text = r#"{"event_id":"e","interaction_id": "1234567890","x":1} {"conversationId":"c-1"} bad"#;
        assert_eq!(ids_in_record(text), vec!["1234567890", "c-1"]);
        assert!(ids_in_record("not json at all, call 1234567890").is_empty());
    }
}
