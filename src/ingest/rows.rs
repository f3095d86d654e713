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
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

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
    /// Records the part is expected to hold (0: not known).
    records: usize,
}

/// How many partitions of each table the last part built had, how many rows each held on
/// average, how many bytes each text column took a row and how many records the part held,
/// shared by the parses of a pass:
/// a new partition's builders start with room for about that much instead of growing to it
/// from a few rows (regrowing them, and faulting in the fresh pages each growth takes, was a
/// large share of a flat ingest's CPU: benches/README.md, "Why the code is so"). A part whose
/// records are counted before it is parsed (an object read whole) scales the rows by its
/// records against the last part's: objects of one export differ in size tenfold (an hour of
/// night against an hour of the day's peak). Only as
/// many partitions as the last part had (twice over) start so
/// large, so the room made stays within a few times the last part's, whatever the next
/// object holds.
#[derive(Debug, Default)]
pub struct PartitionSizes {
    last: std::sync::Mutex<BTreeMap<LakeTable, (usize, Room, usize)>>,
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
    /// Room the `nth` new partition of `table` in a part of `records` records (0: not known)
    /// starts with: the last part's (a quarter more rows, scaled by the parts' records when
    /// both are known, at most 4,096) for as many partitions as twice the last part had, a
    /// few rows beyond.
    fn room(&self, table: LakeTable, nth: usize, records: usize) -> Room {
        match self.last.lock().unwrap_or_else(|e| e.into_inner()).get(&table) {
            Some((partitions, room, last_records)) if nth < partitions * 2 => {
                let rows = match (records, *last_records) {
                    (0, _) | (_, 0) => room.rows,
                    (records, last) => room.rows.saturating_mul(records.min(last * 16)) / last,
                };
                Room { rows: (rows + rows / 4).clamp(Room::FEW, 4096), bytes: room.bytes.clone() }
            }
            _ => Room::few(),
        }
    }

    fn record(&self, table: LakeTable, rows: &PartitionedRows, records: usize) {
        let partitions = rows.partitions.len();
        if partitions == 0 || rows.rows == 0 {
            return;
        }
        let columns = rows.schema.fields().len();
        let bytes = (0..columns)
            .map(|c| rows.partitions.iter().map(|(_, b)| b.columns[c].text_bytes()).sum::<usize>().div_ceil(rows.rows))
            .collect();
        let room = Room { rows: rows.rows / partitions, bytes };
        self.last.lock().unwrap_or_else(|e| e.into_inner()).insert(table, (partitions, room, records));
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
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, f)| match f.name().as_str() {
                name if name == Delivery::COLUMNS[0] => ColumnBuilder::Repeated(Repeated::default()),
                _ => ColumnBuilder::new(f.data_type(), room.rows, room.text_bytes(c)),
            })
            .collect();
        Self { columns, rows: 0, room: room.rows }
    }
}

/// A column's builder, by the model's column types: a cell goes to its builder with one
/// match, not through `dyn ArrayBuilder` and a downcast (a row is 20 cells, a pass millions of
/// rows).
enum ColumnBuilder {
    Text(StringBuilder),
    /// `source_object`: the same text on every row of a part (its object's URL, 80 bytes
    /// and more), kept once with a count instead of copied per row.
    Repeated(Repeated),
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

    /// Bytes of text appended so far (0 for other types, and for a repeated text: it takes
    /// no room per row until it differs).
    fn text_bytes(&self) -> usize {
        match self {
            Self::Text(b) => b.values_slice().len(),
            Self::Repeated(Repeated { differs: Some(b), .. }) => b.values_slice().len(),
            _ => 0,
        }
    }

    /// Appends `cell`; false when it is not of the column's type.
    fn append(&mut self, cell: &Cell<'_>) -> bool {
        match (self, cell) {
            (Self::Text(b), Cell::Text(v)) => b.append_option(v.as_deref()),
            (Self::Repeated(r), Cell::Text(v)) => r.append(v.as_deref()),
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
    fn finish(&mut self, shrink: bool) -> Result<ArrayRef, ArrowError> {
        fn done<A: Array + 'static>(mut array: A, shrink: bool) -> ArrayRef {
            if shrink {
                array.shrink_to_fit();
            }
            Arc::new(array)
        }
        Ok(match self {
            Self::Text(b) => done(b.finish(), shrink),
            Self::Repeated(r) => r.finish()?,
            Self::Int(b) => done(b.finish(), shrink),
            Self::Float(b) => done(b.finish(), shrink),
            Self::Bool(b) => done(b.finish(), shrink),
            Self::Date(b) => done(b.finish(), shrink),
            Self::Time(b) => done(b.finish(), shrink),
        })
    }
}

/// A text column whose rows are expected to repeat one value: the value and how many rows
/// had it, until a row differs (or is null); from then on a builder like any other column's.
#[derive(Default)]
struct Repeated {
    value: Option<String>,
    rows: usize,
    differs: Option<StringBuilder>,
}

impl Repeated {
    fn append(&mut self, cell: Option<&str>) {
        if let Some(builder) = &mut self.differs {
            return builder.append_option(cell);
        }
        match (&self.value, cell) {
            (Some(value), Some(text)) if value == text => self.rows += 1,
            (None, Some(text)) if self.rows == 0 => {
                self.value = Some(text.to_string());
                self.rows = 1;
            }
            _ => {
                let value = self.value.take().unwrap_or_default();
                let mut builder = StringBuilder::with_capacity(self.rows + 1, value.len() * self.rows);
                for _ in 0..self.rows {
                    builder.append_value(&value);
                }
                builder.append_option(cell);
                self.differs = Some(builder);
            }
        }
    }

    /// The column: the value written out once per row in one buffer.
    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        if let Some(builder) = &mut self.differs {
            return Ok(Arc::new(builder.finish()));
        }
        let value = self.value.take().unwrap_or_default();
        let rows = std::mem::take(&mut self.rows);
        let too_long = || ArrowError::ComputeError(format!("{rows} rows of a {}-byte text exceed a string column's 2 GiB", value.len()));
        let end = i32::try_from(value.len().checked_mul(rows).ok_or_else(too_long)?).map_err(|_| too_long())?;
        let step = value.len() as i32;
        let offsets = OffsetBuffer::new(ScalarBuffer::from_iter((0..=rows as i32).map(|i| i * step)));
        debug_assert_eq!(offsets.last().copied(), Some(end));
        let values = Buffer::from_vec(value.repeat(rows).into_bytes());
        Ok(Arc::new(StringArray::try_new(offsets, values, None)?))
    }
}

impl TableRows {
    /// Rows whose partitions start as large as those `sizes` last saw.
    pub fn sized_by(sizes: Arc<PartitionSizes>) -> Self {
        Self { tables: BTreeMap::new(), sizes: Some(sizes), records: 0 }
    }

    /// No rows yet, sized as these are (for records not known yet).
    pub fn fresh(&self) -> Self {
        Self { tables: BTreeMap::new(), sizes: self.sizes.clone(), records: 0 }
    }

    /// The part will hold about `records` records: its partitions start with room scaled to
    /// them ([`PartitionSizes`]).
    pub fn expect_records(&mut self, records: usize) {
        self.records = records;
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
        let records = self.records;
        let room = || self.sizes.as_ref().map_or_else(Room::few, |sizes| sizes.room(table, nth, records));
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
        let (sizes, records) = (self.sizes, self.records);
        self.tables
            .into_iter()
            .map(|(table, rows)| {
                if let Some(sizes) = &sizes {
                    sizes.record(table, &rows, records);
                }
                let batches = rows
                    .partitions
                    .into_iter()
                    .map(|(_, mut builder)| {
                        // Below half its room (as made, or as grown from 8 rows), most of
                        // each buffer is empty.
                        let shrink = builder.rows * 2 < builder.room.max(1024);
                        let columns: Vec<ArrayRef> = builder.columns.iter_mut().map(|c| c.finish(shrink)).collect::<Result<_, _>>()?;
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
    fn the_source_object_is_each_row_s_own_when_objects_differ_within_a_part() {
        let source_objects = |objects: &[&str]| {
            let mut rows = TableRows::default();
            for (line, object) in objects.iter().enumerate() {
                let delivery = Delivery { modified_at: 5, object: (*object).into(), line: line as i64 };
                let row: Row<'_> =
                    vec![("wrapup_code_id", Cell::text(Some("w1"))), ("wrapup_code_name", Cell::Text(None)), ("division_id", Cell::Text(None))];
                rows.push(LakeTable::WrapupCodes, &row, &delivery);
            }
            let batch = rows.finish().unwrap().remove(&LakeTable::WrapupCodes).unwrap().remove(0);
            let array = batch.column_by_name("source_object").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
            array.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
        };
        let objects = ["s3://b/a.json", "s3://b/a.json", "s3://b/a.json", "s3://b/longer-name.json", "s3://b/a.json"];
        assert_eq!(source_objects(&objects), objects);
        let one = ["file:///exports/2024-03-04/x.jsonl"; 3];
        assert_eq!(source_objects(&one), one);
        assert_eq!(source_objects(&[""; 2]), ["", ""]);
    }

    #[test]
    fn a_part_starts_its_partitions_as_large_as_the_last_part_s() {
        let sizes = Arc::new(PartitionSizes::default());
        // A part of `n` wrap-up codes (no partition columns: one partition), ids of 5
        // bytes, names of `name`, no division, said to hold `records` records.
        let part = |n: usize, name: Option<&str>, records: Option<usize>| {
            let delivery = Delivery { modified_at: 5, object: "x".into(), line: 3 };
            let mut rows = TableRows::sized_by(Arc::clone(&sizes));
            if let Some(records) = records {
                rows.expect_records(records);
            }
            for i in 0..n {
                let id = format!("w{i:04}");
                let row: Row<'_> = vec![("wrapup_code_id", Cell::text(Some(&id))), ("wrapup_code_name", Cell::text(name)), ("division_id", Cell::Text(None))];
                rows.push(LakeTable::WrapupCodes, &row, &delivery);
            }
            rows.finish().unwrap();
        };
        part(100, Some("Resolved"), None);
        // 100 rows a quarter more; two partitions' worth (twice the last part's one), then few.
        let room = sizes.room(LakeTable::WrapupCodes, 0, 0);
        assert_eq!(room.rows, 125);
        assert_eq!((room.text_bytes(0), room.text_bytes(1)), (125 * 5, 125 * 8));
        assert_eq!(room.text_bytes(2), 125, "an all-null column keeps a byte a row");
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 1, 0).rows, 125);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 2, 0).rows, Room::FEW);
        assert_eq!(sizes.room(LakeTable::Queues, 0, 0).rows, Room::FEW, "a table not seen starts small");
        // A part of 100 rows whose records were counted: the next part's room is scaled by
        // its own count (the last part's unknown count scales nothing), at most 16 times
        // and 4,096 rows, at least a few.
        part(100, None, Some(100));
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 0).rows, 125);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 100).rows, 125);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 400).rows, 500);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 20).rows, 25);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 1).rows, Room::FEW);
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 3000).rows, 2000, "16 times the last part at most");
        part(10_000, None, Some(100));
        assert_eq!(sizes.room(LakeTable::WrapupCodes, 0, 100).rows, 4096);
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
