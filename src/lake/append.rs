//! Appending rows to a Delta table in one commit, without delta-rs's write plan.
//!
//! delta-rs's `write` takes any batch: it hashes every row into one stream per partition
//! and then splits each stream by partition value again, two copies of every row before
//! Parquet sees it. The write side's batches already hold one partition each (an object's parse
//! builds each partition's rows apart, and [`crate::lake::merge::latest_sorted`] keeps
//! them so), so each partition is a run of whole batches or slices here: they go, balanced
//! by rows, to delta-rs partition writers on every core (one writer per partition, closed
//! before the next), and their files (with delta-rs's own statistics) are committed
//! together as one `WRITE` (append) commit. A batch not grouped by partition is grouped
//! first (one copy), so any batch is appended correctly.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::take_record_batch;
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::Action;
use deltalake::operations::write::WriterStatsConfig;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError};
use indexmap::IndexMap;

use super::error::WriteFailure;
use super::work::{cores, share_out};
use super::writing::{batch_commit, writer_properties};
use crate::model::LakeTable;

/// A partition's key: its values of the partition columns.
type Key = Vec<ScalarValue>;

/// A batch's partitions: the rows of each, and its key.
type Runs = Vec<(Range<usize>, Key)>;

/// The runs of rows with equal `columns` in `batch`, each partition one run, with its key:
/// the batch as it is when it is grouped by them, else grouped (stably) first.
pub(super) fn partition_runs(batch: RecordBatch, columns: &[String]) -> Result<(RecordBatch, Runs), DeltaTableError> {
    let arrays = |batch: &RecordBatch| -> Result<Vec<ArrayRef>, DeltaTableError> {
        columns.iter().map(|c| Ok(Arc::clone(batch.column(batch.schema().index_of(c)?)))).collect()
    };
    let runs = |batch: &RecordBatch| -> Result<Runs, DeltaTableError> {
        if columns.is_empty() || batch.num_rows() == 0 {
            return Ok(vec![(0..batch.num_rows(), Vec::new())]);
        }
        let values = arrays(batch)?;
        arrow::compute::partition(&values)?
            .ranges()
            .into_iter()
            .map(|run| {
                let key = values.iter().map(|a| ScalarValue::try_from_array(a, run.start)).collect::<Result<Key, _>>()?;
                Ok((run, key))
            })
            .collect()
    };
    let found = runs(&batch)?;
    let mut seen = HashSet::with_capacity(found.len());
    if found.iter().all(|(_, key)| seen.insert(key)) {
        return Ok((batch, found));
    }
    // Rows compare as byte strings in Arrow's row format; a stable sort keeps each
    // partition's rows in their order.
    let values = arrays(&batch)?;
    let converter = RowConverter::new(values.iter().map(|a| SortField::new(a.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&values)?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    let grouped = take_record_batch(&batch, &arrow::array::UInt32Array::from(order))?;
    let found = runs(&grouped)?;
    Ok((grouped, found))
}

/// Appends `batches` (rows of `table`, in the Delta table's schema) to `delta` as one commit,
/// stamped with the writer's batch number `batch` when given ([`batch_commit`]), writing each partition's rows (from all batches) to new files, the
/// partitions shared out between the cores. Writes nothing, and makes no commit, when there
/// are no rows.
pub(super) async fn append(
    delta: DeltaTable,
    table: LakeTable,
    batches: Vec<RecordBatch>,
    batch: Option<i64>,
) -> Result<DeltaTable, DeltaTableError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Ok(delta);
    }
    let snapshot = delta.snapshot()?;
    let partition_columns = snapshot.metadata().partition_columns().to_vec();
    let stats = WriterStatsConfig::from_config(snapshot.snapshot().table_configuration());
    let config = WriterConfig::new(
        table.schema(),
        partition_columns.clone(),
        Some(writer_properties(table)),
        Some(snapshot.table_config().target_file_size()),
        None,
        stats.num_indexed_cols,
        stats.stats_columns,
    );

    // Each partition's slices of every batch, and its values as Delta writes them.
    let mut partitions: IndexMap<Key, (usize, Vec<RecordBatch>, IndexMap<String, _>)> = IndexMap::new();
    for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
        let (batch, runs) = partition_runs(batch, &partition_columns)?;
        for (run, key) in runs {
            let slice = batch.slice(run.start, run.len());
            let partition = match partitions.entry(key) {
                indexmap::map::Entry::Occupied(found) => found.into_mut(),
                indexmap::map::Entry::Vacant(new) => {
                    let values = partition_columns
                        .iter()
                        .map(|c| {
                            let column = slice.column(slice.schema().index_of(c)?);
                            let value = ScalarExt::from_array(column.as_ref(), 0)
                                .ok_or_else(|| WriteFailure::PartitionValue { table: table.name(), column: c.clone() })?;
                            Ok((c.clone(), value))
                        })
                        .collect::<Result<IndexMap<_, _>, DeltaTableError>>()?;
                    new.insert((0, Vec::new(), values))
                }
            };
            partition.0 += slice.num_rows();
            partition.1.push(slice);
        }
    }

    // Partitions balanced by rows between the writers.
    let writers = cores().min(partitions.len()).max(1);
    let shares = share_out(partitions.into_values().map(|(rows, slices, values)| (rows, (slices, values))).collect(), writers);
    let store = delta.log_store().object_store(None);
    let mut tasks = Vec::with_capacity(writers);
    for share in shares {
        let (store, config) = (Arc::clone(&store), config.clone());
        tasks.push(tokio::spawn(async move {
            // A writer per partition, closed (its files uploaded, its buffers freed) before
            // the next partition is encoded: memory holds one partition's Parquet per core.
            let mut adds = Vec::new();
            for (slices, values) in share {
                let mut writer = DeltaWriter::new(Arc::clone(&store), config.clone());
                for slice in slices {
                    writer.write_partition(slice, &values).await?;
                }
                adds.extend(writer.close().await?);
            }
            Ok::<_, DeltaTableError>(adds)
        }));
    }
    let mut actions = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let adds = task.map_err(WriteFailure::task("writing Parquet", table))??;
        actions.extend(adds.into_iter().map(Action::Add));
    }
    // A crash before this commit leaves only files no commit names: the table is as it was.
    let files = actions.len();
    let properties = batch.map_or_else(CommitProperties::default, batch_commit).with_metadata([(
        "operationMetrics".to_string(),
        serde_json::json!({ "numFiles": files, "numOutputRows": rows }),
    )]);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!partition_columns.is_empty()).then(|| partition_columns.clone()),
        predicate: None,
    };
    let committed = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), delta.log_store(), operation)
        .await?;
    let mut delta = delta;
    delta.state = Some(committed.snapshot);
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::rows::TableRows;
    use crate::model::Delivery;
    use datafusion::prelude::SessionContext;

    /// Flat events over three partitions (one with no queue, one whose name needs escaping
    /// in a path), their partitions interleaved so that the batch must be grouped first.
    fn events() -> RecordBatch {
        let mut rows = TableRows::default();
        let events = [
            ("e1", "2024-03-04T10:00:00Z", Some("Billing / A=1"), 30),
            ("e2", "2024-03-05T09:00:00Z", None, 40),
            ("e3", "2024-03-04T08:00:00Z", Some("Billing / A=1"), 50),
            ("e4", "2024-03-05T07:00:00Z", None, 60),
            ("e5", "2024-03-04T12:00:00Z", Some("Sales"), 70),
            ("e6", "2024-03-04T11:00:00Z", Some("Billing / A=1"), 80),
        ];
        for (line, (id, at, queue, duration)) in events.into_iter().enumerate() {
            let queue = queue.map_or(String::new(), |q| format!(r#","queue_name":"{q}""#));
            let json = format!(r#"{{"event_id":"{id}","interaction_id":"i-{id}","timestamp":"{at}","duration_seconds":{duration}{queue}}}"#);
            let event = crate::ingest::parse_flat_event(json.as_bytes()).outcome.unwrap();
            let delivery = Delivery { modified_at: 7, object: "file:///x/a.jsonl".into(), line: line as i64 + 1 };
            event.push_rows(7, &mut rows, &delivery);
        }
        let batches = rows.finish().unwrap().remove(&LakeTable::FactInteractions).unwrap();
        assert_eq!(batches.len(), 3, "one batch per partition");
        // Back in the order the events came in: the parse grouped them by partition.
        let all = arrow::compute::concat_batches(&LakeTable::FactInteractions.schema(), &batches).unwrap();
        let lines = all.column(all.schema().index_of("source_line").unwrap());
        let order = arrow::compute::sort_to_indices(lines, None, None).unwrap();
        take_record_batch(&all, &order).unwrap()
    }

    async fn rows_of(delta: &DeltaTable) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        ctx.register_table("t", delta.table_provider().await.unwrap()).unwrap();
        ctx.sql("SELECT * FROM t ORDER BY event_id").await.unwrap().collect().await.unwrap()
    }

    /// Each file's partition values, row count and statistics, by partition path.
    fn files(delta: &DeltaTable) -> Vec<(String, serde_json::Value)> {
        let mut files: Vec<(String, serde_json::Value)> = delta
            .snapshot()
            .unwrap()
            .log_data()
            .into_iter()
            .map(|file| {
                let path = file.path().to_string();
                let partition = path.rsplit_once('/').map_or(String::new(), |(dir, _)| dir.to_string());
                (partition, serde_json::from_str(&file.stats().unwrap_or_default()).unwrap_or_default())
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    #[tokio::test]
    async fn an_append_writes_the_files_and_statistics_delta_rs_writes() {
        let ours = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let ours_lake = crate::lake::Lake::open_or_create(ours.path().to_str().unwrap()).await.unwrap();
        let theirs_lake = crate::lake::Lake::open_or_create(theirs.path().to_str().unwrap()).await.unwrap();
        let table = LakeTable::FactInteractions;

        // Two batches: each partition's rows of both go to one file.
        let (first, second) = (events().slice(0, 4), events().slice(4, 2));
        let appended = append(ours_lake.table(table).await.unwrap(), table, vec![first, second], Some(7)).await.unwrap();
        let written = theirs_lake
            .table(table)
            .await
            .unwrap()
            .write(vec![events()])
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(writer_properties(table))
            .await
            .unwrap();

        let (ours_files, theirs_files) = (files(&appended), files(&written));
        assert_eq!(ours_files.len(), 3, "{ours_files:?}");
        assert_eq!(ours_files, theirs_files);
        assert!(ours_files.iter().all(|(_, stats)| stats["numRecords"].as_i64() > Some(0) && stats["minValues"]["event_timestamp"].is_string()));
        assert_eq!(rows_of(&appended).await, rows_of(&written).await);
        // The commit carries the writer's batch number, as ingest_log's and quarantine's do.
        assert_eq!(crate::lake::writing::batch_number(&appended).await.unwrap(), Some(7));
        assert_eq!(crate::lake::writing::batch_number(&written).await.unwrap(), None);
        // The commit is a plain append that any Delta reader replays.
        assert_eq!(appended.version(), written.version());
        let reopened = deltalake::open_table(appended.table_url().clone()).await.unwrap();
        assert_eq!(rows_of(&reopened).await, rows_of(&written).await);
    }

    #[test]
    fn partitions_are_grouped_keeping_each_one_s_order() {
        let batch = events();
        let columns = vec!["event_date".to_string(), "queue_name".to_string()];
        let (grouped, runs) = partition_runs(batch, &columns).unwrap();
        assert_eq!(runs.len(), 3);
        let ids = arrow::compute::cast(grouped.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let ids: Vec<&str> = ids.as_any().downcast_ref::<arrow::array::StringArray>().unwrap().iter().flatten().collect();
        // Within a partition, the input's order; partitions in key order.
        let mut by_run: Vec<Vec<&str>> = runs.iter().map(|(r, _)| ids[r.clone()].to_vec()).collect();
        by_run.sort();
        assert_eq!(by_run, vec![vec!["e1", "e3", "e6"], vec!["e2", "e4"], vec!["e5"]]);
        // A grouped batch is taken as it is.
        let (again, same) = partition_runs(grouped.clone(), &columns).unwrap();
        assert_eq!((again, same), (grouped, runs));
    }
}
