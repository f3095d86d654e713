//! Idempotent upsert by key ([`MergePolicy::UpsertLatest`]: `event_id` for events, the id of
//! a dimension) into a Delta table, in one atomic commit.
//!
//! 1. Find the partitions that already hold any of the batch's keys by joining the batch's
//!    key hashes (`event_key`) with the table's: one narrow column is read, and
//!    partition values come from the Delta log. This is also how an event whose corrected
//!    timestamp or queue moved it to another partition is found.
//! 2. No such partition: every event is new, and the batch is appended.
//! 3. Otherwise MERGE with `target.event_id = source.event_id` restricted to exactly those
//!    partitions, so only their files are scanned and only files with a match are rewritten.
//!    A matched row is replaced only by a *later* delivery, so re-applying a batch (a re-run
//!    after a crash) or reading an older object late changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::prelude::SessionContext;
use deltalake::operations::merge::MergeMetrics;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::{DeltaTable, DeltaTableError};

use crate::model::{Delivery, LakeTable, MergePolicy};

/// The key, key-hash and presence columns of an upsert table.
fn upsert_columns(table: LakeTable) -> Result<(&'static str, Option<&'static str>, Option<&'static str>), DeltaTableError> {
    match table.merge_policy() {
        MergePolicy::UpsertLatest { key, key_hash, present_when, .. } => Ok((key, key_hash, present_when)),
        other => Err(DeltaTableError::Generic(format!("{} is not upserted by key but {other:?}", table.name()))),
    }
}


/// What one upsert did, for the summary, logs and tests that pin pruning down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Partitions that already held some of the batch's events.
    pub partitions_matched: usize,
    pub rows_inserted: usize,
    pub rows_updated: usize,
    pub rows_deleted: usize,
    pub files_scanned: usize,
    pub files_skipped: usize,
    pub files_removed: usize,
    /// Whether a commit was made.
    pub committed: bool,
}

impl From<&MergeMetrics> for UpsertOutcome {
    fn from(m: &MergeMetrics) -> Self {
        Self {
            partitions_matched: 0,
            rows_inserted: m.num_target_rows_inserted,
            rows_updated: m.num_target_rows_updated,
            rows_deleted: m.num_target_rows_deleted,
            files_scanned: m.num_target_files_scanned,
            files_skipped: m.num_target_files_skipped_during_scan,
            files_removed: m.num_target_files_removed,
            committed: true,
        }
    }
}

/// Parquet settings for every file cclake writes of `table`: row groups small enough that
/// statistics on the time-sorted `event_timestamp` prune time ranges, and no dictionary for
/// the table's nearly distinct columns ([`LakeTable::plain_columns`]: a dictionary of them
/// is built only to be given up). Random ids and hashes ([`LakeTable::random_columns`]) get
/// no statistics: their minimum and maximum prune nothing, and computing them compares
/// every value.
///
/// Snappy compresses every column but an upsert table's key and key hash: a random id or
/// a 64-bit hash per row is what it cannot shrink, so compressing them costs CPU for
/// nothing (benches/README.md, "Why the code is so").
pub fn writer_properties(table: LakeTable) -> WriterProperties {
    let builder = table
        .plain_columns()
        .iter()
        .fold(WriterProperties::builder(), |b, c| b.set_column_dictionary_enabled(ColumnPath::from(*c), false));
    let builder = table
        .random_columns()
        .iter()
        .fold(builder, |b, c| b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None))
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024));
    let keys = match table.merge_policy() {
        MergePolicy::UpsertLatest { key, key_hash, .. } => [Some(key), key_hash],
        _ => [None, None],
    };
    keys.into_iter()
        .flatten()
        .fold(builder, |b, c| b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED))
        .build()
}

fn qualified(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

/// Where and by which delivery an event is stored now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub partition: Vec<ScalarValue>,
    pub delivery: Delivery<'static>,
}

fn table_is_empty(delta: &DeltaTable) -> Result<bool, DeltaTableError> {
    Ok(delta.version().is_none() || delta.get_file_uris()?.next().is_none())
}

async fn session_with_target(delta: &DeltaTable) -> Result<SessionContext, DeltaTableError> {
    let ctx = SessionContext::new();
    delta.update_datafusion_session(&ctx.state())?;
    ctx.register_table("target", delta.table_provider().await?)?;
    Ok(ctx)
}

/// The partitions (values of `table`'s partition columns) holding any of `keys` (a batch
/// with the table's key-hash column, or its key column when it has no hash). Reads only that
/// column; partition values come from the Delta log.
pub async fn partitions_holding(
    delta: &DeltaTable,
    table: LakeTable,
    keys: RecordBatch,
) -> Result<Vec<Vec<ScalarValue>>, DeltaTableError> {
    if table_is_empty(delta)? {
        return Ok(Vec::new());
    }
    if table.partition_columns().is_empty() {
        // One partition, the whole table (dimensions: small).
        return Ok(vec![Vec::new()]);
    }
    let (key, key_hash, _) = upsert_columns(table)?;
    let join_column = key_hash.unwrap_or(key);
    let ctx = session_with_target(delta).await?;
    ctx.register_batch("batch_keys", keys)?;
    let select = table
        .partition_columns()
        .iter()
        .map(|c| format!("t.\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT DISTINCT {select} FROM target t JOIN batch_keys k ON t.\"{join_column}\" = k.\"{join_column}\""
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut partitions = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let values = (0..batch.num_columns())
                .map(|c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<Result<Vec<_>, _>>()?;
            partitions.push(values);
        }
    }
    Ok(partitions)
}

/// The stored row of each of the batch's events that the table already holds, by
/// `event_id`. Reads the narrow `event_key` column everywhere, then only the partitions
/// found.
pub async fn stored_events(
    delta: &DeltaTable,
    table: LakeTable,
    keys: RecordBatch,
) -> Result<HashMap<String, StoredEvent>, DeltaTableError> {
    let partitions = partitions_holding(delta, table, keys.clone()).await?;
    let mut stored = HashMap::new();
    if partitions.is_empty() {
        return Ok(stored);
    }
    let ctx = session_with_target(delta).await?;
    let partition_cols = table.partition_columns();
    let (key, key_hash, _) = upsert_columns(table)?;
    let join_column = key_hash.unwrap_or(key);
    let mut columns = vec![
        col(key),
        col("source_modified_at"),
        col("source_object"),
        col("source_line"),
    ];
    columns.extend(partition_cols.iter().map(|c| col(*c)));
    let found = ctx
        .table("target")
        .await?
        .filter(partitions_filter(None, partition_cols, &partitions))?
        .join(ctx.read_batch(keys)?, JoinType::LeftSemi, &[join_column], &[join_column], None)?
        .select(columns)?
        .collect()
        .await?;
    for batch in &found {
        let text = |i: usize| cast(batch.column(i), &DataType::Utf8);
        let number = |i: usize| cast(batch.column(i), &DataType::Int64);
        let (ids, objects) = (text(0)?, text(2)?);
        let (modified, lines) = (number(1)?, number(3)?);
        let (ids, objects) = (ids.as_string::<i32>(), objects.as_string::<i32>());
        let (modified, lines) = (modified.as_primitive::<Int64Type>(), lines.as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            let partition = (4..batch.num_columns())
                .map(|c| ScalarValue::try_from_array(batch.column(c), row))
                .collect::<Result<Vec<_>, _>>()?;
            let delivery = Delivery {
                modified_at: modified.value(row),
                object: objects.value(row).to_string().into(),
                line: lines.value(row),
            };
            stored.insert(ids.value(row).to_string(), StoredEvent { partition, delivery });
        }
    }
    Ok(stored)
}

/// `(target.p1 = v1 AND target.p2 = v2) OR ...` over exactly the given partitions, as a
/// balanced tree so that thousands of partitions do not make a deep expression.
pub(super) fn partitions_filter(
    relation: Option<&str>,
    columns: &[&str],
    partitions: &[Vec<ScalarValue>],
) -> Expr {
    let column = |name: &str| match relation {
        Some(r) => qualified(r, name),
        None => col(name),
    };
    let terms: Vec<Expr> = partitions
        .iter()
        .map(|values| {
            columns
                .iter()
                .zip(values)
                .map(|(c, v)| {
                    if v.is_null() {
                        column(c).is_null()
                    } else {
                        column(c).eq(lit(v.clone()))
                    }
                })
                .reduce(Expr::and)
                .unwrap_or(lit(true))
        })
        .collect();
    balanced_or(terms)
}

fn balanced_or(mut terms: Vec<Expr>) -> Expr {
    match terms.len() {
        0 => lit(false),
        1 => terms.remove(0),
        n => {
            let right = terms.split_off(n / 2);
            balanced_or(terms).or(balanced_or(right))
        }
    }
}

/// The key-hash column of batches of `table` (the key column when the table has no hash),
/// as one batch, as the lookups take it.
pub fn key_batch(table: LakeTable, batches: &[RecordBatch]) -> Result<RecordBatch, DeltaTableError> {
    let (key, key_hash, _) = upsert_columns(table)?;
    let column = table.schema().index_of(key_hash.unwrap_or(key))?;
    let keys = batches.iter().map(|b| b.project(&[column])).collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(table.schema().project(&[column])?);
    Ok(arrow::compute::concat_batches(&schema, &keys)?)
}

/// Upserts a batch of rows of an [`MergePolicy::UpsertLatest`] table (at most one row per
/// key). `matched` are the partitions already holding some of the batch's keys, when the
/// caller knows them. With a `present_when` column, a winning row where it is null deletes
/// the key's row and is itself not stored.
pub async fn upsert_events(
    delta: DeltaTable,
    table: LakeTable,
    batches: Vec<RecordBatch>,
    matched: Option<Vec<Vec<ScalarValue>>>,
) -> Result<(DeltaTable, UpsertOutcome), DeltaTableError> {
    let partition_cols = table.partition_columns();
    let (key, _, present_when) = upsert_columns(table)?;
    let matched = match matched {
        Some(known) => known,
        None => partitions_holding(&delta, table, key_batch(table, &batches)?).await?,
    };
    if matched.is_empty() {
        let batches = match present_when {
            Some(column) => batches.iter().map(|b| rows_present(b, column)).collect::<Result<Vec<_>, _>>()?,
            None => batches,
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok((delta, UpsertOutcome::default()));
        }
        let delta = super::append::append(delta, table, batches, None).await?;
        let outcome = UpsertOutcome {
            rows_inserted: rows,
            committed: true,
            ..Default::default()
        };
        return Ok((delta, outcome));
    }

    let ctx = SessionContext::new();
    let source = ctx.read_batches(batches)?;
    let predicate = qualified("target", key)
        .eq(qualified("source", key))
        .and(partitions_filter(Some("target"), partition_cols, &matched));
    let columns: Vec<String> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut merge = delta
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_writer_properties(writer_properties(table));
    if let Some(column) = present_when {
        merge = merge.when_matched_delete(|delete| {
            delete.predicate(format!("({}) AND source.\"{column}\" IS NULL", Delivery::SOURCE_IS_NEWER))
        })?;
    }
    merge = merge.when_matched_update(|update| {
        columns
            .iter()
            .fold(update.predicate(Delivery::SOURCE_IS_NEWER), |u, c| {
                u.update(c.as_str(), col(format!("source.{c}")))
            })
    })?;
    merge = merge.when_not_matched_insert(|insert| {
        let insert = match present_when {
            Some(column) => insert.predicate(format!("source.\"{column}\" IS NOT NULL")),
            None => insert,
        };
        columns
            .iter()
            .fold(insert, |i, c| i.set(c.as_str(), col(format!("source.{c}"))))
    })?;
    let (delta, metrics) = merge.await?;
    let mut outcome = UpsertOutcome::from(&metrics);
    outcome.partitions_matched = matched.len();
    Ok((delta, outcome))
}

fn rows_present(batch: &RecordBatch, column: &str) -> Result<RecordBatch, DeltaTableError> {
    let values = batch.column(batch.schema().index_of(column)?);
    let keep = arrow::compute::is_not_null(values)?;
    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
}

/// Inserts quarantined records not yet stored, keyed by object version and line, so a re-run
/// after a crash does not store them twice.
/// The application id under which the writer numbers its batches in the Delta log
/// (`txn` actions): each batch's `quarantine` commit and `ingest_log` commit carry the same
/// number, so a `quarantine` commit whose log commit never happened (a crash between the two)
/// shows as a `quarantine` number past the `ingest_log` one.
pub const BATCH_APP_ID: &str = "cclake-ingest-batch";

/// The last batch number a table's commits carry (see [`BATCH_APP_ID`]).
pub async fn batch_number(delta: &DeltaTable) -> Result<Option<i64>, DeltaTableError> {
    if delta.version().is_none() {
        return Ok(None);
    }
    delta.snapshot()?.transaction_version(delta.log_store().as_ref(), BATCH_APP_ID).await
}

/// Commit properties that stamp a commit with batch number `batch`.
pub fn batch_commit(batch: i64) -> CommitProperties {
    CommitProperties::default().with_application_transaction(Transaction::new(BATCH_APP_ID, batch))
}

/// Appends quarantined records as batch number `batch` of the writer, whose `ingest_log`
/// stands at batch number `logged`. Plain appends cost O(new records). Only when the table
/// holds records of a batch the log never completed (a crash between the two commits), or
/// records from before batches were numbered, is the batch merged on its delivery columns
/// instead, so that records re-read after that crash are not kept twice.
pub async fn insert_quarantined(
    delta: DeltaTable,
    batch: RecordBatch,
    number: i64,
    logged: Option<i64>,
) -> Result<DeltaTable, DeltaTableError> {
    if batch.num_rows() == 0 {
        return Ok(delta);
    }
    let unlogged = match batch_number(&delta).await? {
        Some(quarantined) => logged.is_none_or(|logged| quarantined > logged),
        // Records written before batches were numbered may lack their log commit too.
        None => !table_is_empty(&delta)?,
    };
    if !unlogged {
        return super::append::append(delta, LakeTable::Quarantine, vec![batch], Some(number)).await;
    }
    let ctx = SessionContext::new();
    let columns: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let source = ctx.read_batch(batch)?;
    let predicate = Delivery::COLUMNS
        .iter()
        .map(|c| qualified("target", c).eq(qualified("source", c)))
        .reduce(Expr::and)
        .unwrap_or(lit(true));
    let (delta, _metrics) = delta
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_writer_properties(writer_properties(LakeTable::Quarantine))
        .with_commit_properties(batch_commit(number))
        .when_not_matched_insert(|insert| {
            columns
                .iter()
                .fold(insert, |i, c| i.set(c.as_str(), col(format!("source.{c}"))))
        })?
        .await?;
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_filter_is_exact_and_handles_null_queues() {
        let parts = vec![
            vec![ScalarValue::Date32(Some(1)), ScalarValue::Utf8(Some("Billing / A=1".into()))],
            vec![ScalarValue::Date32(Some(2)), ScalarValue::Utf8(None)],
            vec![ScalarValue::Date32(Some(3)), ScalarValue::Utf8(Some("x".into()))],
        ];
        let s = partitions_filter(Some("target"), &["event_date", "queue_name"], &parts).to_string();
        assert!(s.contains("target.queue_name IS NULL"), "{s}");
        assert!(s.contains("Billing / A=1"), "{s}");
        assert_eq!(s.matches(" OR ").count(), 2, "{s}");
        assert_eq!(balanced_or(vec![]).to_string(), "Boolean(false)");
    }
}
