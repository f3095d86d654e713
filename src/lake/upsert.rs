//! Idempotent upsert by key ([`crate::model::MergePolicy::UpsertLatest`]: `event_id` for events, the id of
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

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::prelude::SessionContext;
use deltalake::operations::merge::MergeMetrics;
use deltalake::{DeltaTable, DeltaTableError};

use super::append::append;
use super::stored::{key_batch, partitions_filter, partitions_holding, qualified, table_is_empty, KeyColumns};
use super::writing::{batch_commit, batch_number, writer_properties};
use crate::model::{Delivery, LakeTable};

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

/// Upserts a batch of rows of an [`crate::model::MergePolicy::UpsertLatest`] table (at most one row per
/// key). `matched` are the partitions already holding some of the batch's keys, when the
/// caller knows them. With a `present_when` column, a winning row where it is null deletes
/// the key's row and is itself not stored.
pub(super) async fn upsert_events(
    delta: DeltaTable,
    table: LakeTable,
    batches: Vec<RecordBatch>,
    matched: Option<Vec<Vec<ScalarValue>>>,
) -> Result<(DeltaTable, UpsertOutcome), DeltaTableError> {
    let partition_cols = table.partition_columns();
    let KeyColumns { key, present_when, .. } = KeyColumns::of(table)?;
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
        let delta = append(delta, table, batches, None).await?;
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

/// The rows of `batch` where `column` is not null. A batch as staged has the column in every
/// row (a format stages no row without it; the deletions are made at commit time, see
/// `lake/follow.rs`): it is kept whole, without a copy.
fn rows_present(batch: &RecordBatch, column: &str) -> Result<RecordBatch, DeltaTableError> {
    let values = batch.column(batch.schema().index_of(column)?);
    match values.logical_null_count() {
        0 => return Ok(batch.clone()),
        nulls if nulls == values.len() => return Ok(batch.slice(0, 0)),
        _ => {}
    }
    let keep = arrow::compute::is_not_null(values)?;
    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
}

/// Appends quarantined records as batch number `batch` of the writer, whose `ingest_log`
/// stands at batch number `logged`. Plain appends cost O(new records). Only when the table
/// holds records of a batch the log never completed (a crash between the two commits), or
/// records from before batches were numbered, is the batch merged on its delivery columns
/// instead, so that records re-read after that crash are not kept twice.
pub(super) async fn insert_quarantined(
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
        return append(delta, LakeTable::Quarantine, vec![batch], Some(number)).await;
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
