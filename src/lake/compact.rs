//! Compaction: many small micro-batch files in a partition become few large files, sorted by
//! the table's sort columns (`event_timestamp` for the event tables, see [`crate::model`]),
//! in commits that change no row (Delta `dataChange = false`).

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use deltalake::{FilterOp, FilterValue};
use deltalake::operations::optimize::OptimizeType;
use deltalake::{DeltaTable, DeltaTableError};

use crate::model::LakeTable;
use super::error::WriteFailure;
use super::writing::writer_properties;

/// Files of up to this size are written by compaction.
const TARGET_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// What compaction did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactOutcome {
    pub partitions_compacted: u64,
    pub files_removed: u64,
    pub files_added: u64,
}

impl std::ops::AddAssign for CompactOutcome {
    fn add_assign(&mut self, other: Self) {
        self.partitions_compacted += other.partitions_compacted;
        self.files_removed += other.files_removed;
        self.files_added += other.files_added;
    }
}

/// What compaction did to each table of a lake, in the model's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub tables: Vec<(LakeTable, CompactOutcome)>,
}

impl CompactReport {
    /// Over every table.
    pub fn total(&self) -> CompactOutcome {
        let mut total = CompactOutcome::default();
        for (_, outcome) in &self.tables {
            total += outcome.clone();
        }
        total
    }
}

impl std::fmt::Display for CompactReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (table, o)) in self.tables.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {} partitions compacted, {} files replaced by {}", table.name(), o.partitions_compacted, o.files_removed, o.files_added)?;
        }
        Ok(())
    }
}

/// A partition's values as Delta writes them in the log (`None` for a null value).
type PartitionKey = Vec<Option<String>>;

/// Counts the live files of each partition, from the Delta log (never by listing folders).
pub fn files_per_partition(
    delta: &DeltaTable,
    table: LakeTable,
) -> Result<BTreeMap<PartitionKey, usize>, DeltaTableError> {
    let mut counts = BTreeMap::new();
    if delta.version().is_none() {
        return Ok(counts);
    }
    let actions = delta.snapshot()?.add_actions_table(true)?;
    let mut columns = Vec::new();
    for name in table.partition_columns() {
        let column = actions
            .column_by_name(&format!("partition.{name}"))
            .ok_or_else(|| WriteFailure::PartitionValue { table: table.name(), column: name.to_string() })?;
        columns.push(cast(column, &DataType::Utf8)?);
    }
    for row in 0..actions.num_rows() {
        let key = columns
            .iter()
            .map(|c| (!c.is_null(row)).then(|| c.as_string::<i32>().value(row).to_string()))
            .collect();
        *counts.entry(key).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Rewrites every partition holding at least `min_files` files. Partitions are grouped by
/// their first partition value (the date), one commit per group.
pub async fn compact_table(
    mut delta: DeltaTable,
    table: LakeTable,
    min_files: usize,
) -> Result<(DeltaTable, CompactOutcome), DeltaTableError> {
    let mut outcome = CompactOutcome::default();
    let crowded: Vec<PartitionKey> = files_per_partition(&delta, table)?
        .into_iter()
        .filter(|(_, files)| *files >= min_files.max(2))
        .map(|(key, _)| key)
        .collect();
    if crowded.is_empty() {
        return Ok((delta, outcome));
    }
    let columns = table.partition_columns();
    // Group by the first partition value; the rest go into an IN list.
    let mut groups: BTreeMap<Option<String>, Vec<Option<String>>> = BTreeMap::new();
    for key in &crowded {
        let first = key.first().cloned().flatten();
        groups.entry(first).or_default().push(key.get(1).cloned().flatten());
    }
    let sort_columns = table.sort_columns();
    if columns.is_empty() {
        groups = BTreeMap::from([(None, Vec::new())]);
    }
    for (first, rest) in &groups {
        let mut filters = Vec::new();
        if let (Some(col), Some(value)) = (columns.first(), first.as_deref()) {
            filters.push((*col, FilterOp::Eq, FilterValue::Scalar(value)));
        }
        // A null second value cannot be named in a filter: then the whole date is compacted.
        if let Some(col) = columns.get(1) {
            if rest.iter().all(Option::is_some) {
                let values = rest.iter().flatten().map(String::as_str).collect();
                filters.push((*col, FilterOp::In, FilterValue::Set(values)));
            }
        }
        let optimize_type = if sort_columns.is_empty() {
            OptimizeType::Compact
        } else {
            OptimizeType::ZOrder(sort_columns.iter().map(|c| c.to_string()).collect())
        };
        let (next, metrics) = delta
            .optimize()
            .with_filters(&filters)
            .with_type(optimize_type)
            .with_target_size(NonZeroU64::new(TARGET_FILE_SIZE).unwrap_or(NonZeroU64::MIN))
            .with_writer_properties(writer_properties(table))
            .await?;
        delta = next;
        outcome += CompactOutcome {
            partitions_compacted: metrics.partitions_optimized,
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
        };
    }
    Ok((delta, outcome))
}
