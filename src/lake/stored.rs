//! What a table holds now of a batch's keys: the partitions holding them, and where and by
//! which delivery each is stored. The one lookup both merge policies decide "latest wins"
//! against ([`crate::model::Delivery`]); stored rows are read by column name.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};

use super::error::WriteFailure;
use crate::model::{Delivery, LakeTable, MergePolicy};

/// The columns an [`MergePolicy::UpsertLatest`] table is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyColumns {
    pub key: &'static str,
    /// The 8-byte hash of the key lookups join on, when the table has one.
    pub key_hash: Option<&'static str>,
    /// A column whose null in a winning row deletes the key.
    pub present_when: Option<&'static str>,
}

impl KeyColumns {
    pub(crate) fn of(table: LakeTable) -> Result<Self, DeltaTableError> {
        match table.merge_policy() {
            MergePolicy::UpsertLatest { key, key_hash, present_when, .. } => Ok(Self { key, key_hash, present_when }),
            _ => Err(WriteFailure::WrongPolicy { table: table.name(), expected: "upserted by key" }.into()),
        }
    }

    /// The column lookups join on.
    pub(crate) fn join(&self) -> &'static str {
        self.key_hash.unwrap_or(self.key)
    }
}

/// Where and by which delivery a key is stored now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvent {
    /// The values of the table's partition columns.
    pub partition: Vec<ScalarValue>,
    pub delivery: Delivery<'static>,
}

/// The delivery columns of a batch that carries [`Delivery::COLUMNS`], read row by row
/// without copying the object names. The columns are taken typed once: `get` runs per row
/// of every batch a commit decides.
pub(crate) struct DeliveryColumns {
    objects: StringArray,
    modified: Int64Array,
    lines: Int64Array,
}

impl DeliveryColumns {
    pub(crate) fn of(batch: &RecordBatch) -> Result<Self, DeltaTableError> {
        Ok(Self {
            objects: column(batch, "source_object", &DataType::Utf8)?.as_string::<i32>().clone(),
            modified: column(batch, "source_modified_at", &DataType::Int64)?.as_primitive::<Int64Type>().clone(),
            lines: column(batch, "source_line", &DataType::Int64)?.as_primitive::<Int64Type>().clone(),
        })
    }

    pub(crate) fn get(&self, row: usize) -> Delivery<'_> {
        Delivery {
            modified_at: self.modified.value(row),
            object: std::borrow::Cow::Borrowed(self.objects.value(row)),
            line: self.lines.value(row),
        }
    }
}

/// Column `name` of `batch`, cast (DataFusion may hand strings back as views).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<Arc<dyn Array>, DeltaTableError> {
    Ok(cast(batch.column(batch.schema().index_of(name)?), to)?)
}

/// Column `key` of `batch` as plain strings.
pub(crate) fn keys(batch: &RecordBatch, key: &str) -> Result<StringArray, DeltaTableError> {
    Ok(column(batch, key, &DataType::Utf8)?.as_string::<i32>().clone())
}

pub(crate) fn qualified(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

pub(crate) fn table_is_empty(delta: &DeltaTable) -> Result<bool, DeltaTableError> {
    Ok(delta.version().is_none() || delta.get_file_uris()?.next().is_none())
}

async fn session_with_target(delta: &DeltaTable) -> Result<SessionContext, DeltaTableError> {
    let ctx = SessionContext::new();
    delta.update_datafusion_session(&ctx.state())?;
    ctx.register_table("target", delta.table_provider().await?)?;
    Ok(ctx)
}

/// The values of `table`'s partition columns in row `row` of `batch`.
pub(crate) fn partition_values(batch: &RecordBatch, table: LakeTable, row: usize) -> Result<Vec<ScalarValue>, DeltaTableError> {
    table
        .partition_columns()
        .iter()
        .map(|c| Ok(ScalarValue::try_from_array(batch.column(batch.schema().index_of(c)?), row)?))
        .collect()
}

/// The partitions (values of `table`'s partition columns) holding any of `keys` (a batch
/// of the table's join column, [`KeyColumns::join`]). Reads only that column; partition
/// values come from the Delta log.
pub(crate) async fn partitions_holding(
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
    let join = KeyColumns::of(table)?.join();
    let ctx = session_with_target(delta).await?;
    let holding = ctx.table("target").await?.join(ctx.read_batch(keys)?, JoinType::LeftSemi, &[join], &[join], None)?;
    distinct_partitions(holding, table).await
}

/// The distinct values of `table`'s partition columns among the rows of `rows`.
pub(crate) async fn distinct_partitions(rows: DataFrame, table: LakeTable) -> Result<Vec<Vec<ScalarValue>>, DeltaTableError> {
    let columns: Vec<Expr> = table.partition_columns().iter().map(|c| col(*c)).collect();
    let found = rows.select(columns)?.distinct()?.collect().await?;
    let mut partitions = Vec::new();
    for batch in &found {
        for row in 0..batch.num_rows() {
            partitions.push(partition_values(batch, table, row)?);
        }
    }
    Ok(partitions)
}

/// Where and by which delivery each key of `keys` (a one-column batch named like the column
/// it joins on, `join`) is stored in `table` now, by key. With `within`, only those
/// partitions are read.
pub(crate) async fn stored_deliveries(
    delta: &DeltaTable,
    table: LakeTable,
    key: &str,
    join: &str,
    keys: RecordBatch,
    within: Option<&[Vec<ScalarValue>]>,
) -> Result<HashMap<String, StoredEvent>, DeltaTableError> {
    let mut stored = HashMap::new();
    if keys.num_rows() == 0 || table_is_empty(delta)? || within.is_some_and(<[_]>::is_empty) {
        return Ok(stored);
    }
    let ctx = session_with_target(delta).await?;
    let mut columns = vec![col(key)];
    columns.extend(Delivery::COLUMNS.iter().map(|c| col(*c)));
    columns.extend(table.partition_columns().iter().map(|c| col(*c)));
    let mut target = ctx.table("target").await?;
    if let Some(partitions) = within {
        target = target.filter(partitions_filter(None, table.partition_columns(), partitions))?;
    }
    let found = target
        .join(ctx.read_batch(keys)?, JoinType::LeftSemi, &[join], &[join], None)?
        .select(columns)?
        .collect()
        .await?;
    for batch in &found {
        let (ids, deliveries) = (self::keys(batch, key)?, DeliveryColumns::of(batch)?);
        for row in 0..batch.num_rows() {
            let event = StoredEvent { partition: partition_values(batch, table, row)?, delivery: deliveries.get(row).into_owned() };
            stored.insert(ids.value(row).to_string(), event);
        }
    }
    Ok(stored)
}

/// `(target.p1 = v1 AND target.p2 = v2) OR ...` over exactly the given partitions, as a
/// balanced tree so that thousands of partitions do not make a deep expression.
pub(crate) fn partitions_filter(relation: Option<&str>, columns: &[&str], partitions: &[Vec<ScalarValue>]) -> Expr {
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
                .map(|(c, v)| if v.is_null() { column(c).is_null() } else { column(c).eq(lit(v.clone())) })
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

/// The join column of batches of `table` ([`KeyColumns::join`]), as one batch, as the
/// lookups take it.
pub(crate) fn key_batch(table: LakeTable, batches: &[RecordBatch]) -> Result<RecordBatch, DeltaTableError> {
    let column = table.schema().index_of(KeyColumns::of(table)?.join())?;
    let keys = batches.iter().map(|b| b.project(&[column])).collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(table.schema().project(&[column])?);
    Ok(arrow::compute::concat_batches(&schema, &keys)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LakeTable;

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

    #[test]
    fn delivery_columns_and_partitions_are_read_by_name_whatever_their_order() {
        use arrow::array::{Date32Array, Int64Array, TimestampMicrosecondArray};
        use arrow::datatypes::{Field, Schema};
        // The columns in an order no table has: decoding must not depend on positions.
        let schema = Arc::new(Schema::new(vec![
            Field::new("queue_name", DataType::Utf8, true),
            Field::new("source_line", DataType::Int64, false),
            Field::new("event_id", DataType::Utf8, false),
            Field::new("source_modified_at", DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("event_date", DataType::Date32, false),
            Field::new("source_object", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("Billing"), None])),
                Arc::new(Int64Array::from(vec![7, 1])),
                Arc::new(StringArray::from(vec!["e1", "e2"])),
                Arc::new(TimestampMicrosecondArray::from(vec![1_000, 2_000]).with_timezone("UTC")),
                Arc::new(Date32Array::from(vec![20_000, 20_001])),
                Arc::new(StringArray::from(vec!["s3://b/a.json", "s3://b/b.json"])),
            ],
        )
        .unwrap();
        let deliveries = DeliveryColumns::of(&batch).unwrap();
        let second = deliveries.get(1);
        assert_eq!((second.modified_at, second.object.as_ref(), second.line), (2_000, "s3://b/b.json", 1));
        assert_eq!(keys(&batch, "event_id").unwrap().value(0), "e1");
        // fact_interactions is partitioned by (event_date, queue_name), in that order.
        assert_eq!(
            partition_values(&batch, LakeTable::FactInteractions, 0).unwrap(),
            vec![ScalarValue::Date32(Some(20_000)), ScalarValue::Utf8(Some("Billing".into()))]
        );
        assert_eq!(partition_values(&batch, LakeTable::FactInteractions, 1).unwrap()[1], ScalarValue::Utf8(None));
        assert!(DeliveryColumns::of(&batch.project(&[0, 1, 2]).unwrap()).is_err());
    }

    #[test]
    fn key_columns_name_the_join_column_and_refuse_tables_not_keyed() {
        let facts = KeyColumns::of(LakeTable::FactInteractions).unwrap();
        assert_eq!((facts.key, facts.join()), ("event_id", "event_key"));
        let error = KeyColumns::of(LakeTable::IngestLog).unwrap_err();
        assert!(matches!(WriteFailure::find(&error), Some(WriteFailure::WrongPolicy { table: "ingest_log", .. })), "{error}");
    }
}
