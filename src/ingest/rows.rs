//! Rows of the model's tables as a format decodes them: one Arrow builder per column, filled
//! in the table's schema order, with every row's delivery appended by [`TableRows::push`].
//! A format stages a record's rows in [`RecordRows`] and pushes them only once the whole
//! record decoded, so a record is either whole in the lake or whole in quarantine.

use std::borrow::Cow;
use std::collections::BTreeMap;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};

use crate::model::{Delivery, LakeTable};

/// One value of a row, in its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
    /// Microseconds since the epoch, UTC.
    Time(Option<i64>),
    /// Days since the epoch.
    Date(i32),
}

impl<'a> Cell<'a> {
    pub fn text(value: Option<&'a str>) -> Self {
        Cell::Text(value.map(Cow::Borrowed))
    }

    pub fn owned(value: Option<String>) -> Self {
        Cell::Text(value.map(Cow::Owned))
    }
}

/// A row: each cell with the column it is meant for, checked against the schema.
pub type Row<'a> = Vec<(&'static str, Cell<'a>)>;

/// The rows one record yields, staged until the whole record has decoded.
#[derive(Debug, Default)]
pub struct RecordRows<'a> {
    pub rows: Vec<(LakeTable, Row<'a>)>,
}

impl<'a> RecordRows<'a> {
    pub fn add(&mut self, table: LakeTable, row: Row<'a>) {
        self.rows.push((table, row));
    }
}

/// Rows of several tables, built column by column.
#[derive(Debug, Default)]
pub struct TableRows {
    tables: BTreeMap<LakeTable, TableBuilder>,
}

struct TableBuilder {
    schema: SchemaRef,
    columns: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

impl std::fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder").field("rows", &self.rows).finish()
    }
}

impl TableBuilder {
    fn new(table: LakeTable) -> Self {
        let schema = table.schema();
        let columns = schema.fields().iter().map(|f| builder_for(f.data_type())).collect();
        Self { schema, columns, rows: 0 }
    }
}

fn builder_for(data_type: &DataType) -> Box<dyn ArrayBuilder> {
    match data_type {
        DataType::Utf8 => Box::new(StringBuilder::new()),
        DataType::Int64 => Box::new(Int64Builder::new()),
        DataType::Float64 => Box::new(Float64Builder::new()),
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Date32 => Box::new(Date32Builder::new()),
        DataType::Timestamp(_, tz) => Box::new(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone())),
        other => unreachable!("no table of the model has a {other} column"),
    }
}

fn append(builder: &mut dyn ArrayBuilder, cell: &Cell<'_>) -> bool {
    let any = builder.as_any_mut();
    match cell {
        Cell::Text(v) => any.downcast_mut::<StringBuilder>().map(|b| b.append_option(v.as_deref())).is_some(),
        Cell::Int(v) => any.downcast_mut::<Int64Builder>().map(|b| b.append_option(*v)).is_some(),
        Cell::Float(v) => any.downcast_mut::<Float64Builder>().map(|b| b.append_option(*v)).is_some(),
        Cell::Bool(v) => any.downcast_mut::<BooleanBuilder>().map(|b| b.append_option(*v)).is_some(),
        Cell::Time(v) => any.downcast_mut::<TimestampMicrosecondBuilder>().map(|b| b.append_option(*v)).is_some(),
        Cell::Date(v) => any.downcast_mut::<Date32Builder>().map(|b| b.append_value(*v)).is_some(),
    }
}

impl TableRows {
    /// Appends one row and its delivery. The cells must name the table's columns in schema
    /// order (the delivery columns excepted): a format that does not is a bug, caught by its
    /// tests.
    pub fn push(&mut self, table: LakeTable, row: &Row<'_>, delivery: &Delivery<'_>) {
        let builder = self.tables.entry(table).or_insert_with(|| TableBuilder::new(table));
        let fields = builder.schema.fields();
        assert_eq!(row.len() + Delivery::COLUMNS.len(), fields.len(), "{}: cells for every column", table.name());
        let delivery_cells = [
            ("source_object", Cell::text(Some(&delivery.object))),
            ("source_modified_at", Cell::Time(Some(delivery.modified_at))),
            ("source_line", Cell::Int(Some(delivery.line))),
        ];
        for (i, (name, cell)) in row.iter().chain(delivery_cells.iter()).enumerate() {
            // Names are checked in debug builds (every test): the hot path skips the compare.
            debug_assert_eq!(fields[i].name(), name, "{}: column {i}", table.name());
            let appended = append(builder.columns[i].as_mut(), cell);
            assert!(appended, "{}.{name}: wrong cell type", table.name());
        }
        builder.rows += 1;
    }

    pub fn push_record(&mut self, record: &RecordRows<'_>, delivery: &Delivery<'_>) {
        for (table, row) in &record.rows {
            self.push(*table, row, delivery);
        }
    }

    /// Rows staged for every table.
    pub fn len(&self) -> usize {
        self.tables.values().map(|b| b.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The built batches, one per table that has rows.
    pub fn finish(self) -> Result<BTreeMap<LakeTable, RecordBatch>, arrow::error::ArrowError> {
        self.tables
            .into_iter()
            .map(|(table, mut builder)| {
                let columns: Vec<ArrayRef> = builder.columns.iter_mut().map(|c| c.finish()).collect();
                Ok((table, RecordBatch::try_new(builder.schema, columns)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_build_batches_in_schema_order_with_their_delivery() {
        let mut rows = TableRows::default();
        let delivery = Delivery { modified_at: 5, object: "memory://x/a.json".into(), line: 3 };
        let row: Row<'_> = vec![
            ("wrapup_code_id", Cell::text(Some("w1"))),
            ("wrapup_code_name", Cell::text(Some("Resolved"))),
            ("division_id", Cell::Text(None)),
        ];
        rows.push(LakeTable::WrapupCodes, &row, &delivery);
        assert_eq!(rows.len(), 1);
        let batches = rows.finish().unwrap();
        let batch = &batches[&LakeTable::WrapupCodes];
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), LakeTable::WrapupCodes.schema());
    }

    #[test]
    #[should_panic(expected = "column 1")]
    fn a_cell_for_the_wrong_column_is_caught() {
        let mut rows = TableRows::default();
        let delivery = Delivery { modified_at: 5, object: "x".into(), line: 3 };
        let row: Row<'_> = vec![
            ("wrapup_code_id", Cell::text(Some("w1"))),
            ("division_id", Cell::Text(None)),
            ("wrapup_code_name", Cell::text(Some("Resolved"))),
        ];
        rows.push(LakeTable::WrapupCodes, &row, &delivery);
    }
}
