//! Rows of the model's tables as a format decodes them: one Arrow builder per column, filled
//! in the table's schema order, with every row's delivery appended by [`TableRows::push`].
//! A format stages a record's rows in [`RecordRows`] and pushes them only once the whole
//! record decoded, so a record is either whole in the lake or whole in quarantine (a flat
//! event, whole once parsed, pushes its two rows straight from the stack).
//!
//! Each partition of a table (its rows with equal values of the table's partition columns)
//! has builders of its own: an object's rows come out grouped by partition, and a commit
//! writes each partition's batches as they are, without copying rows to group them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
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

    /// The same value, owning its text.
    pub fn to_static(&self) -> Cell<'static> {
        match self {
            Cell::Text(v) => Cell::Text(v.as_deref().map(|t| Cow::Owned(t.to_string()))),
            Cell::Int(v) => Cell::Int(*v),
            Cell::Float(v) => Cell::Float(*v),
            Cell::Bool(v) => Cell::Bool(*v),
            Cell::Time(v) => Cell::Time(*v),
            Cell::Date(v) => Cell::Date(*v),
        }
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

/// Rows of several tables, built column by column, partition by partition.
#[derive(Debug, Default)]
pub struct TableRows {
    tables: BTreeMap<LakeTable, PartitionedRows>,
    sizes: Option<Arc<PartitionSizes>>,
}

/// How many partitions of each table the last part built had, how many rows each held on
/// average and how many bytes each text column took a row, shared by the parses of a pass:
/// a new partition's builders start with room for about that much instead of growing to it
/// from a few rows (regrowing them, and faulting in the fresh pages each growth takes, was a
/// large share of a flat ingest's CPU: benches/README.md, "Why the code is so"). Only as
/// many partitions as the last part had (twice over) start so
/// large, so the room made stays within a few times the last part's, whatever the next
/// object holds.
#[derive(Debug, Default)]
pub struct PartitionSizes {
    last: std::sync::Mutex<BTreeMap<LakeTable, (usize, Room)>>,
}

/// The room a partition's builders start with.
#[derive(Debug, Clone)]
struct Room {
    rows: usize,
    /// Bytes a row of each column takes (text columns; 0 for the others).
    bytes: Vec<usize>,
}

impl Room {
    /// A few rows, of 16 bytes of text each.
    const FEW: usize = 8;

    fn few() -> Self {
        Self { rows: Self::FEW, bytes: Vec::new() }
    }

    /// Room for `rows` rows of column `column`'s text.
    fn text_bytes(&self, column: usize) -> usize {
        self.rows * self.bytes.get(column).copied().unwrap_or(16).max(1)
    }
}

impl PartitionSizes {
    /// Room the `nth` new partition of `table` in a part starts with: the last part's (a
    /// quarter more rows, at most 4,096) for as many partitions as twice the last part
    /// had, a few rows beyond.
    fn room(&self, table: LakeTable, nth: usize) -> Room {
        match self.last.lock().unwrap_or_else(|e| e.into_inner()).get(&table) {
            Some((partitions, room)) if nth < partitions * 2 => {
                Room { rows: (room.rows + room.rows / 4).clamp(Room::FEW, 4096), bytes: room.bytes.clone() }
            }
            _ => Room::few(),
        }
    }

    fn record(&self, table: LakeTable, rows: &PartitionedRows) {
        let partitions = rows.partitions.len();
        if partitions == 0 || rows.rows == 0 {
            return;
        }
        let columns = rows.schema.fields().len();
        let bytes = (0..columns)
            .map(|c| rows.partitions.iter().map(|(_, b)| b.columns[c].text_bytes()).sum::<usize>().div_ceil(rows.rows))
            .collect();
        let room = Room { rows: rows.rows / partitions, bytes };
        self.last.lock().unwrap_or_else(|e| e.into_inner()).insert(table, (partitions, room));
    }
}

/// One table's rows: builders per partition, in the order of each partition's first row.
struct PartitionedRows {
    schema: SchemaRef,
    /// Where the partition columns are among a row's cells.
    key_cells: Vec<usize>,
    /// Each partition's values of the partition columns, and its builders.
    partitions: Vec<(Vec<Cell<'static>>, TableBuilder)>,
    /// The partitions by the hash of their values.
    by_hash: datafusion::common::HashMap<u64, Vec<usize>>,
    /// The partition of the last row (consecutive rows often share one).
    last: usize,
    rows: usize,
}

impl std::fmt::Debug for PartitionedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedRows").field("partitions", &self.partitions.len()).field("rows", &self.rows).finish()
    }
}

impl PartitionedRows {
    fn new(table: LakeTable) -> Self {
        let schema = table.schema();
        let key_cells = table
            .partition_columns()
            .iter()
            .map(|c| schema.index_of(c).unwrap_or_else(|_| unreachable!("{}: partition column {c} in the schema", table.name())))
            .collect();
        Self {
            schema,
            key_cells,
            partitions: Vec::new(),
            by_hash: Default::default(),
            last: 0,
            rows: 0,
        }
    }

    /// The partition of `row` (its position in `partitions`), made on its first row with
    /// builders of room for `room()` rows.
    fn partition(&mut self, row: &[(&'static str, Cell<'_>)], room: impl FnOnce() -> Room) -> usize {
        let is_its = |key: &[Cell<'static>]| key.iter().zip(&self.key_cells).all(|(k, &c)| row.get(c).is_some_and(|(_, v)| k == v));
        if let Some((key, _)) = self.partitions.get(self.last) {
            if is_its(key) {
                return self.last;
            }
        }
        let mut hasher = self.by_hash.hasher().build_hasher();
        for &c in &self.key_cells {
            if let Some((_, cell)) = row.get(c) {
                hash_cell(cell, &mut hasher);
            }
        }
        let candidates = self.by_hash.entry(hasher.finish()).or_default();
        let found = candidates.iter().copied().find(|&p| is_its(&self.partitions[p].0));
        self.last = match found {
            Some(p) => p,
            None => {
                let key = self.key_cells.iter().filter_map(|&c| row.get(c)).map(|(_, v)| v.to_static()).collect();
                candidates.push(self.partitions.len());
                self.partitions.push((key, TableBuilder::new(&self.schema, &room())));
                self.partitions.len() - 1
            }
        };
        self.last
    }
}

/// Hashes a partition value (a float has none: its bits stand in).
fn hash_cell(cell: &Cell<'_>, hasher: &mut impl Hasher) {
    std::mem::discriminant(cell).hash(hasher);
    match cell {
        Cell::Text(v) => v.hash(hasher),
        Cell::Int(v) | Cell::Time(v) => v.hash(hasher),
        Cell::Float(v) => v.map(f64::to_bits).hash(hasher),
        Cell::Bool(v) => v.hash(hasher),
        Cell::Date(v) => v.hash(hasher),
    }
}

struct TableBuilder {
    columns: Vec<ColumnBuilder>,
    rows: usize,
    /// The rows it had room for when made.
    room: usize,
}

impl TableBuilder {
    fn new(schema: &SchemaRef, room: &Room) -> Self {
        let columns =
            schema.fields().iter().enumerate().map(|(c, f)| ColumnBuilder::new(f.data_type(), room.rows, room.text_bytes(c))).collect();
        Self { columns, rows: 0, room: room.rows }
    }
}

/// A column's builder, by the model's column types: a cell goes to its builder with one
/// match, not through `dyn ArrayBuilder` and a downcast (a row is 20 cells, a pass millions of
/// rows).
enum ColumnBuilder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Time(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    /// A builder with room for `rows` rows that grows as more come: a partition's builders
    /// start small unless the pass's last part had large ones ([`PartitionSizes`]), so an
    /// object spread over 100,000 partitions (a queue-name explosion) costs its rows, not
    /// 100,000 times a builder's default room for 1,024 values.
    fn new(data_type: &DataType, rows: usize, text_bytes: usize) -> Self {
        match data_type {
            DataType::Utf8 => Self::Text(StringBuilder::with_capacity(rows, text_bytes)),
            DataType::Int64 => Self::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Self::Float(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Date32 => Self::Date(Date32Builder::with_capacity(rows)),
            DataType::Timestamp(_, tz) => Self::Time(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(tz.clone())),
            other => unreachable!("no table of the model has a {other} column"),
        }
    }

    /// Bytes of text appended so far (0 for other types).
    fn text_bytes(&self) -> usize {
        match self {
            Self::Text(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    /// Appends `cell`; false when it is not of the column's type.
    fn append(&mut self, cell: &Cell<'_>) -> bool {
        match (self, cell) {
            (Self::Text(b), Cell::Text(v)) => b.append_option(v.as_deref()),
            (Self::Int(b), Cell::Int(v)) => b.append_option(*v),
            (Self::Float(b), Cell::Float(v)) => b.append_option(*v),
            (Self::Bool(b), Cell::Bool(v)) => b.append_option(*v),
            (Self::Time(b), Cell::Time(v)) => b.append_option(*v),
            (Self::Date(b), Cell::Date(v)) => b.append_value(*v),
            _ => return false,
        }
        true
    }

    /// The column built; with `shrink`, its buffers cut to what it holds (a one-event
    /// partition made with room for 4,096 rows would hold ~600 KB).
    fn finish(&mut self, shrink: bool) -> ArrayRef {
        fn done<A: Array + 'static>(mut array: A, shrink: bool) -> ArrayRef {
            if shrink {
                array.shrink_to_fit();
            }
            Arc::new(array)
        }
        match self {
            Self::Text(b) => done(b.finish(), shrink),
            Self::Int(b) => done(b.finish(), shrink),
            Self::Float(b) => done(b.finish(), shrink),
            Self::Bool(b) => done(b.finish(), shrink),
            Self::Date(b) => done(b.finish(), shrink),
            Self::Time(b) => done(b.finish(), shrink),
        }
    }
}

impl TableRows {
    /// Rows whose partitions start as large as those `sizes` last saw.
    pub fn sized_by(sizes: Arc<PartitionSizes>) -> Self {
        Self { tables: BTreeMap::new(), sizes: Some(sizes) }
    }

    /// No rows yet, sized as these are.
    pub fn fresh(&self) -> Self {
        Self { tables: BTreeMap::new(), sizes: self.sizes.clone() }
    }

    /// Appends one row and its delivery. The cells must name the table's columns in schema
    /// order (the delivery columns excepted): a format that does not is a bug, caught by its
    /// tests.
    pub fn push(&mut self, table: LakeTable, row: &[(&'static str, Cell<'_>)], delivery: &Delivery<'_>) {
        let rows = self.tables.entry(table).or_insert_with(|| PartitionedRows::new(table));
        let columns = rows.schema.fields().len();
        assert_eq!(row.len() + Delivery::COLUMNS.len(), columns, "{}: cells for every column", table.name());
        rows.rows += 1;
        let nth = rows.partitions.len();
        let room = || self.sizes.as_ref().map_or_else(Room::few, |sizes| sizes.room(table, nth));
        let partition = rows.partition(row, room);
        let (schema, builder) = (&rows.schema, &mut rows.partitions[partition].1);
        let delivery_cells = [
            ("source_object", Cell::text(Some(&delivery.object))),
            ("source_modified_at", Cell::Time(Some(delivery.modified_at))),
            ("source_line", Cell::Int(Some(delivery.line))),
        ];
        for (i, (name, cell)) in row.iter().chain(delivery_cells.iter()).enumerate() {
            // Names are checked in debug builds (every test): the hot path skips the compare.
            debug_assert_eq!(schema.fields()[i].name(), name, "{}: column {i}", table.name());
            let appended = builder.columns[i].append(cell);
            assert!(appended, "{}.{name}: wrong cell type", table.name());
        }
        builder.rows += 1;
    }

    pub fn push_record(&mut self, record: &RecordRows<'_>, delivery: &Delivery<'_>) {
        for (table, row) in &record.rows {
            self.push(*table, row, delivery);
        }
    }

    /// Partitions staged, over every table (a batch each when built).
    pub fn partitions(&self) -> usize {
        self.tables.values().map(|t| t.partitions.len()).sum()
    }

    /// Rows staged for every table.
    pub fn len(&self) -> usize {
        self.tables.values().map(|b| b.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The built batches of each table that has rows: one per partition, in the order of
    /// each partition's first row.
    pub fn finish(self) -> Result<BTreeMap<LakeTable, Vec<RecordBatch>>, arrow::error::ArrowError> {
        let sizes = self.sizes;
        self.tables
            .into_iter()
            .map(|(table, rows)| {
                if let Some(sizes) = &sizes {
                    sizes.record(table, &rows);
                }
                let batches = rows
                    .partitions
                    .into_iter()
                    .map(|(_, mut builder)| {
                        // Below half its room (as made, or as grown from 8 rows), most of
                        // each buffer is empty.
                        let shrink = builder.rows * 2 < builder.room.max(1024);
                        let columns: Vec<ArrayRef> = builder.columns.iter_mut().map(|c| c.finish(shrink)).collect();
                        RecordBatch::try_new(SchemaRef::clone(&rows.schema), columns)
                    })
                    .collect::<Result<_, _>>()?;
                Ok((table, batches))
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
        let batch = &batches[&LakeTable::WrapupCodes][0];
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), LakeTable::WrapupCodes.schema());
    }

    #[test]
    fn a_part_starts_its_partitions_as_large_as_the_last_part_s() {
        let sizes = Arc::new(PartitionSizes::default());
        let delivery = Delivery { modified_at: 5, object: "x".into(), line: 3 };
        let mut rows = TableRows::sized_by(Arc::clone(&sizes));
        // Wrap-up codes have no partition columns: one partition of 100 rows, ids of 4
        // bytes, names of 8, no division.
        for i in 0..100 {
            let id = format!("w{i:03}");
            let row: Row<'_> = vec![
                ("wrapup_code_id", Cell::text(Some(&id))),
                ("wrapup_code_name", Cell::text(Some("Resolved"))),
                ("division_id", Cell::Text(None)),
            ];
            rows.push(LakeTable::WrapupCodes, &row, &delivery);
        }
        rows.finish().unwrap();
        // 100 rows a quarter more; two partitions' worth (twice the last part's one), then few.
        let room = sizes.room(LakeTable::WrapupCodes, 0);
        assert_eq!(room.rows, 125);
        assert_eq!((room.text_bytes(0), room.text_bytes(1)), (125 * 4, 125 * 8));
        assert_eq!(room.text_bytes(2), 125, "an all-null column keeps a byte a row");
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 1).rows, 125);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 2).rows, Room::FEW);
        assert_eq!(sizes.room(LakeTable::Queues, 0).rows, Room::FEW, "a table not seen starts small");
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
