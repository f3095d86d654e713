//! `cclake check`: the lake's invariants, verified from its own tables, and the repair of a
//! lake two writers damaged before writes held the lease ([`super::lease`]).
//!
//! What is checked, table by table:
//! - a table kept latest by key ([`MergePolicy::UpsertLatest`]) holds each key once;
//! - an aggregate's root (`conversations`) holds each key once, and every other table of the
//!   aggregate holds each key's rows from one delivery only, and no row twice;
//! - `quarantine` holds each delivered record (object, time, line) once;
//! - every live file of the Delta log is present in the store, and carries a value (or a
//!   null) for each partition column.
//!
//! The repair rewrites, in one commit per damaged table, exactly the partitions that hold a
//! repeated key: each key keeps its latest delivery by the table's own merge policy (for an
//! aggregate, the rows of the root's latest delivery, each once). Missing files are reported,
//! not invented.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::logical_expr::{col, Expr};
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use object_store::ObjectStoreExt;

use super::merge;
use super::error::WriteFailure;
use super::stored::{distinct_partitions, partitions_filter};
use super::writing::writer_properties;
use crate::model::{Delivery, LakeTable, MergePolicy};

/// What checking one table found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCheck {
    pub rows: u64,
    /// Keys held more than once (for an aggregate's other tables: keys with rows of more
    /// than one delivery, or a row twice).
    pub repeated_keys: u64,
    /// Rows beyond what one row per key (one delivery per key, each row once) leaves.
    pub extra_rows: u64,
    /// Live files of the log missing from the store.
    pub missing_files: Vec<String>,
    /// Live files lacking a value for some partition column.
    pub files_without_partition_values: u64,
    /// Rows removed by the repair, when one ran.
    pub repaired_rows: Option<u64>,
}

impl TableCheck {
    /// Whether the table is sound now: nothing found, or its repeated keys repaired.
    pub fn is_sound(&self) -> bool {
        (self.repeated_keys == 0 || self.repaired_rows.is_some()) && self.missing_files.is_empty() && self.files_without_partition_values == 0
    }
}

/// What `cclake check` found, per table.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub tables: Vec<(LakeTable, TableCheck)>,
}

impl CheckReport {
    pub fn is_sound(&self) -> bool {
        self.tables.iter().all(|(_, t)| t.is_sound())
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (table, check) in &self.tables {
            let mut problems = Vec::new();
            if check.repeated_keys > 0 {
                problems.push(format!("{} keys held more than once ({} extra rows)", check.repeated_keys, check.extra_rows));
            }
            if !check.missing_files.is_empty() {
                problems.push(format!("{} live files missing: {}", check.missing_files.len(), check.missing_files.join(", ")));
            }
            if check.files_without_partition_values > 0 {
                problems.push(format!("{} files without partition values", check.files_without_partition_values));
            }
            let state = if problems.is_empty() { "ok".to_string() } else { problems.join("; ") };
            let state = if check.repaired_rows.is_some() { format!("{state} -> repaired: {} rows removed in one commit", check.extra_rows) } else { state };
            writeln!(f, "{:<22} {:>10} rows  {state}", table.name(), check.rows)?;
        }
        let repaired = self.tables.iter().any(|(_, t)| t.repaired_rows.is_some());
        match (self.is_sound(), repaired) {
            (true, false) => write!(f, "the lake is sound"),
            (true, true) => write!(f, "the lake was repaired"),
            (false, _) => write!(f, "the lake is damaged: `cclake check --repair` keeps each key's latest delivery (missing files cannot be repaired)"),
        }
    }
}

/// The key a table is checked by, and whether its rows belong to an aggregate (where a key
/// has many rows, all from one delivery).
fn checked_key(table: LakeTable) -> Option<(&'static str, bool)> {
    match table.merge_policy() {
        MergePolicy::UpsertLatest { key, .. } => Some((key, false)),
        MergePolicy::ReplaceAggregate { root, key } => Some((key, root != table)),
        _ => None,
    }
}

async fn session(delta: &DeltaTable) -> Result<SessionContext, DeltaTableError> {
    let ctx = SessionContext::new();
    delta.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", delta.table_provider().await?)?;
    Ok(ctx)
}

async fn one_number(ctx: &SessionContext, sql: &str) -> Result<u64, DeltaTableError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let value = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| ScalarValue::try_from_array(b.column(0), 0))
        .transpose()?;
    Ok(match value {
        Some(ScalarValue::Int64(Some(n))) => n.max(0) as u64,
        Some(ScalarValue::UInt64(Some(n))) => n,
        _ => 0,
    })
}

/// The SQL of the keys of `t` held wrongly: more than once, or (in an aggregate's other
/// tables) with rows of more than one delivery or a row twice.
fn repeated_keys_sql(table: LakeTable) -> Option<String> {
    let (key, member) = checked_key(table)?;
    let quoted = |columns: &mut dyn Iterator<Item = &str>| columns.map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    Some(if member {
        let delivery = quoted(&mut Delivery::COLUMNS.into_iter());
        let schema = table.schema();
        let every = quoted(&mut schema.fields().iter().map(|f| f.name().as_str()));
        format!(
            "SELECT \"{key}\" FROM (SELECT DISTINCT \"{key}\", {delivery} FROM t) GROUP BY 1 HAVING count(*) > 1 \
             UNION SELECT \"{key}\" FROM t GROUP BY {every} HAVING count(*) > 1"
        )
    } else {
        format!("SELECT \"{key}\" FROM t GROUP BY 1 HAVING count(*) > 1")
    })
}

/// Checks one table; with `repair`, rewrites the partitions holding repeated keys and returns
/// the table as committed.
pub async fn check_table(
    delta: DeltaTable,
    table: LakeTable,
    root: Option<&DeltaTable>,
    repair: bool,
) -> Result<(DeltaTable, TableCheck), DeltaTableError> {
    let mut check = TableCheck::default();
    if delta.version().is_none() || delta.get_file_uris()?.next().is_none() {
        return Ok((delta, check));
    }
    let store = delta.object_store();
    for add in delta.snapshot()?.log_data() {
        let path = add.object_store_path();
        match store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => check.missing_files.push(path.to_string()),
            Err(e) => return Err(e.into()),
        }
        let values = add.partition_values_map();
        if table.partition_columns().iter().any(|c| !values.contains_key(*c)) {
            check.files_without_partition_values += 1;
        }
    }
    if !check.missing_files.is_empty() {
        // Rows cannot be read past a missing file: report it alone.
        return Ok((delta, check));
    }
    let ctx = session(&delta).await?;
    check.rows = one_number(&ctx, "SELECT count(*) FROM t").await?;
    let repeated = match (repeated_keys_sql(table), table) {
        (Some(sql), _) => sql,
        (None, LakeTable::Quarantine) => {
            let columns = Delivery::COLUMNS.map(|c| format!("\"{c}\"")).join(", ");
            check.repeated_keys = one_number(&ctx, &format!("SELECT count(*) FROM (SELECT {columns} FROM t GROUP BY {columns} HAVING count(*) > 1)")).await?;
            check.extra_rows = check.rows - one_number(&ctx, &format!("SELECT count(*) FROM (SELECT DISTINCT {columns} FROM t)")).await?;
            return Ok((delta, check));
        }
        (None, _) => return Ok((delta, check)),
    };
    let repeated_keys: Vec<RecordBatch> = ctx.sql(&repeated).await?.collect().await?;
    check.repeated_keys = repeated_keys.iter().map(|b| b.num_rows() as u64).sum();
    if check.repeated_keys == 0 {
        return Ok((delta, check));
    }
    let (key, _) = checked_key(table).ok_or(WriteFailure::WrongPolicy { table: table.name(), expected: "keyed" })?;
    let keys = key_batch(&repeated_keys, key)?;
    let partitions = partitions_of(&ctx, table, key, keys.clone()).await?;
    let columns: Vec<Expr> = table.schema().fields().iter().map(|f| col(f.name())).collect();
    let within = partitions_filter(None, table.partition_columns(), &partitions);
    let stored = ctx.table("t").await?.filter(within.clone())?.select(columns)?.collect().await?;
    let stored_rows: usize = stored.iter().map(RecordBatch::num_rows).sum();
    let kept = kept_rows(key, stored, root, keys).await?;
    let kept_rows: usize = kept.iter().map(RecordBatch::num_rows).sum();
    check.extra_rows = (stored_rows - kept_rows) as u64;
    if !repair {
        return Ok((delta, check));
    }
    let kept = if kept.is_empty() { vec![RecordBatch::new_empty(table.schema())] } else { kept };
    let next = delta
        .write(kept)
        .with_partition_columns(table.partition_columns().iter().map(|c| c.to_string()))
        .with_writer_properties(writer_properties(table))
        .with_save_mode(SaveMode::Overwrite)
        .with_replace_where(within)
        .await?;
    check.repaired_rows = Some(check.extra_rows);
    Ok((next, check))
}

/// The keys of `batches` (the key column first) as one batch of a column `checked_key`.
fn key_batch(batches: &[RecordBatch], key: &str) -> Result<RecordBatch, DeltaTableError> {
    let mut values = Vec::new();
    for batch in batches {
        let column = cast(batch.column(batch.schema().index_of(key)?), &DataType::Utf8)?;
        values.extend(column.as_string::<i32>().iter().flatten().map(str::to_string));
    }
    values.sort_unstable();
    values.dedup();
    let schema = Arc::new(Schema::new(vec![Field::new("checked_key", DataType::Utf8, false)]));
    Ok(RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values)) as Arc<dyn Array>])?)
}

/// The partitions of `t` holding any of `keys`, read through a join (never a list).
async fn partitions_of(ctx: &SessionContext, table: LakeTable, key: &str, keys: RecordBatch) -> Result<Vec<Vec<ScalarValue>>, DeltaTableError> {
    let partition_columns = table.partition_columns();
    if partition_columns.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    let holding = ctx.table("t").await?.join(ctx.read_batch(keys)?, JoinType::LeftSemi, &[key], &["checked_key"], None)?;
    distinct_partitions(holding, table).await
}

/// The rows of the damaged partitions that the table's merge policy keeps.
async fn kept_rows(
    key: &str,
    stored: Vec<RecordBatch>,
    root: Option<&DeltaTable>,
    keys: RecordBatch,
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let Some(root) = root else {
        // Latest delivery per key; an identical copy is kept once.
        return merge::latest_by_key(&stored, key, None);
    };
    // An aggregate's other table: the rows of the root's latest delivery of each key, once.
    let ctx = session(root).await?;
    let mut columns = vec![col(key)];
    columns.extend(Delivery::COLUMNS.iter().map(|c| col(*c)));
    let root_rows = ctx
        .table("t")
        .await?
        .join(ctx.read_batch(keys)?, JoinType::LeftSemi, &[key], &["checked_key"], None)?
        .select(columns)?
        .collect()
        .await?;
    let winners = merge::latest_deliveries(&root_rows, key)?;
    let damaged: HashSet<String> = winners.keys().cloned().collect();
    // Rows of undamaged keys in these partitions stay as they are.
    let (mut kept, mut to_decide) = (Vec::new(), Vec::new());
    for batch in stored {
        let ids = cast(batch.column(batch.schema().index_of(key)?), &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let mask: arrow::array::BooleanArray = (0..batch.num_rows()).map(|i| Some(damaged.contains(ids.value(i)))).collect();
        to_decide.push(arrow::compute::filter_record_batch(&batch, &mask)?);
        kept.push(arrow::compute::filter_record_batch(&batch, &arrow::compute::not(&mask)?)?);
    }
    let winning = merge::rows_of_winners(&to_decide, key, &winners)?;
    let once = SessionContext::new().read_batches(winning)?.distinct()?.collect().await?;
    kept.extend(once);
    kept.retain(|b| b.num_rows() > 0);
    Ok(kept)
}
