//! Idempotent upsert by `event_id` into a partitioned Delta table, in one atomic commit.
//!
//! 1. Find the partitions that already hold any of the batch's events by joining the batch's
//!    `event_key`s with the table's `event_key` column: one narrow column is read, and
//!    partition values come from the Delta log. This is also how an event whose corrected
//!    timestamp or queue moved it to another partition is found.
//! 2. No such partition: every event is new, and the batch is appended.
//! 3. Otherwise MERGE with `target.event_id = source.event_id` restricted to exactly those
//!    partitions, so only their files are scanned and only files with a match are rewritten.
//!    A matched row is replaced only by a *later* delivery, so re-applying a batch (a re-run
//!    after a crash) or reading an older object late changes nothing.

use arrow::array::RecordBatch;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::prelude::SessionContext;
use deltalake::operations::merge::MergeMetrics;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};

use super::tables::LakeTable;

/// The delivery comparison: the source row is a later delivery than the target row.
const SOURCE_IS_NEWER: &str = "source.source_modified_at > target.source_modified_at \
    OR (source.source_modified_at = target.source_modified_at \
        AND (source.source_object > target.source_object \
             OR (source.source_object = target.source_object \
                 AND source.source_line > target.source_line)))";

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
            committed: true,
        }
    }
}

/// Parquet settings for every file cclake writes: row groups small enough that statistics on
/// the time-sorted `event_timestamp` prune time ranges.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
}

fn qualified(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

/// The partitions (values of `table`'s partition columns) holding any of `keys`.
pub async fn partitions_holding(
    delta: &DeltaTable,
    table: LakeTable,
    keys: RecordBatch,
) -> Result<Vec<Vec<ScalarValue>>, DeltaTableError> {
    if delta.version().is_none() || delta.get_file_uris()?.next().is_none() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    delta.update_datafusion_session(&ctx.state())?;
    ctx.register_table("target", delta.table_provider().await?)?;
    ctx.register_batch("batch_keys", keys)?;
    let partition_cols = table.partition_columns();
    let select = partition_cols
        .iter()
        .map(|c| format!("t.\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT DISTINCT {select} FROM target t JOIN batch_keys k ON t.event_key = k.event_key"
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

/// `(target.p1 = v1 AND target.p2 = v2) OR ...` over exactly the given partitions, as a
/// balanced tree so that thousands of partitions do not make a deep expression.
fn partitions_filter(columns: &[&str], partitions: &[Vec<ScalarValue>]) -> Expr {
    let terms: Vec<Expr> = partitions
        .iter()
        .map(|values| {
            columns
                .iter()
                .zip(values)
                .map(|(c, v)| {
                    if v.is_null() {
                        qualified("target", c).is_null()
                    } else {
                        qualified("target", c).eq(lit(v.clone()))
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

fn key_batch(batch: &RecordBatch) -> Result<RecordBatch, DeltaTableError> {
    Ok(batch.project(&[batch.schema().index_of("event_key")?])?)
}

/// Upserts a batch of `fact_interactions` or `call_recordings` rows (at most one row per
/// `event_id`). For `call_recordings`, a winning row without `recording_url` deletes the
/// event's recording row and is itself not stored.
pub async fn upsert_events(
    delta: DeltaTable,
    table: LakeTable,
    batch: RecordBatch,
) -> Result<(DeltaTable, UpsertOutcome), DeltaTableError> {
    let partition_cols = table.partition_columns();
    let matched = partitions_holding(&delta, table, key_batch(&batch)?).await?;
    let recordings = table == LakeTable::CallRecordings;
    if matched.is_empty() {
        let batch = if recordings { with_recording_url(&batch)? } else { batch };
        if batch.num_rows() == 0 {
            return Ok((delta, UpsertOutcome::default()));
        }
        let rows = batch.num_rows();
        let delta = delta
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_partition_columns(partition_cols.iter().map(|c| c.to_string()))
            .with_writer_properties(writer_properties())
            .await?;
        let outcome = UpsertOutcome {
            rows_inserted: rows,
            committed: true,
            ..Default::default()
        };
        return Ok((delta, outcome));
    }

    let ctx = SessionContext::new();
    let source = ctx.read_batch(batch.clone())?;
    let predicate = qualified("target", "event_id")
        .eq(qualified("source", "event_id"))
        .and(partitions_filter(partition_cols, &matched));
    let columns: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut merge = delta
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_writer_properties(writer_properties());
    if recordings {
        merge = merge.when_matched_delete(|delete| {
            delete.predicate(format!("({SOURCE_IS_NEWER}) AND source.recording_url IS NULL"))
        })?;
    }
    merge = merge.when_matched_update(|update| {
        columns
            .iter()
            .fold(update.predicate(SOURCE_IS_NEWER), |u, c| {
                u.update(c.as_str(), col(format!("source.{c}")))
            })
    })?;
    merge = merge.when_not_matched_insert(|insert| {
        let insert = if recordings {
            insert.predicate("source.recording_url IS NOT NULL")
        } else {
            insert
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

fn with_recording_url(batch: &RecordBatch) -> Result<RecordBatch, DeltaTableError> {
    let urls = batch.column(batch.schema().index_of("recording_url")?);
    let keep = arrow::compute::is_not_null(urls)?;
    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
}

/// Inserts quarantined records not yet stored, keyed by object version and line, so a re-run
/// after a crash does not store them twice.
pub async fn insert_quarantined(
    delta: DeltaTable,
    batch: RecordBatch,
) -> Result<DeltaTable, DeltaTableError> {
    if batch.num_rows() == 0 {
        return Ok(delta);
    }
    if delta.version().is_none() || delta.get_file_uris()?.next().is_none() {
        return delta
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties())
            .await;
    }
    let ctx = SessionContext::new();
    let columns: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let source = ctx.read_batch(batch)?;
    let predicate = ["source_object", "source_modified_at", "source_line"]
        .iter()
        .map(|c| qualified("target", c).eq(qualified("source", c)))
        .reduce(Expr::and)
        .unwrap_or(lit(true));
    let (delta, _metrics) = delta
        .merge(source, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_writer_properties(writer_properties())
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
        let s = partitions_filter(&["event_date", "queue_name"], &parts).to_string();
        assert!(s.contains("target.queue_name IS NULL"), "{s}");
        assert!(s.contains("Billing / A=1"), "{s}");
        assert_eq!(s.matches(" OR ").count(), 2, "{s}");
        assert_eq!(balanced_or(vec![]).to_string(), "Boolean(false)");
    }
}
