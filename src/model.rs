//! The lake's tables as definitions: each table's folder name under the lake root, Arrow
//! schema, partition columns, sort columns and sensitivity. The writer, compaction, the read side and the
//! access policy read these; none of them is below another.
//!
//! Every row of `fact_interactions` and `call_recordings` carries its delivery
//! (`source_object`, `source_modified_at`, `source_line`): the upsert compares them so the
//! latest delivery wins whatever order objects are read in.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Where a row was delivered, and the one home of "latest delivery wins": a later
/// last-modified time of the source object wins, then (same time) the greater object name,
/// then the later position in the object. The derived order is that rule (fields in that
/// order); [`Delivery::SOURCE_IS_NEWER`] is the same rule in SQL for MERGE conditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Delivery<'a> {
    /// The source object's last-modified time, µs since the epoch (`source_modified_at`).
    pub modified_at: i64,
    /// The source object's URL (`source_object`).
    pub object: Cow<'a, str>,
    /// The 1-based line the record starts on (`source_line`).
    pub line: i64,
}

impl Delivery<'_> {
    /// The columns every delivered row carries.
    pub const COLUMNS: [&'static str; 3] = ["source_object", "source_modified_at", "source_line"];

    /// The ordering as a MERGE condition: the `source` row is a later delivery than `target`.
    pub const SOURCE_IS_NEWER: &'static str = "source.source_modified_at > target.source_modified_at \
        OR (source.source_modified_at = target.source_modified_at \
            AND (source.source_object > target.source_object \
                 OR (source.source_object = target.source_object \
                     AND source.source_line > target.source_line)))";

    pub fn into_owned(self) -> Delivery<'static> {
        Delivery { modified_at: self.modified_at, object: Cow::Owned(self.object.into_owned()), line: self.line }
    }
}

/// Who may read a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sensitivity {
    /// Masked at ingest: every role reads it.
    Analytics,
    /// Holds unmasked personal data (recording URLs): auditors only, not even listed to others.
    Restricted,
}

/// One of the lake's tables: its folder name under the lake root, schema and partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeTable {
    FactInteractions,
    CallRecordings,
    Quarantine,
    IngestLog,
}

impl LakeTable {
    pub const ALL: [LakeTable; 4] = [
        LakeTable::FactInteractions,
        LakeTable::CallRecordings,
        LakeTable::Quarantine,
        LakeTable::IngestLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LakeTable::FactInteractions => "fact_interactions",
            LakeTable::CallRecordings => "call_recordings",
            LakeTable::Quarantine => "quarantine",
            LakeTable::IngestLog => "ingest_log",
        }
    }

    pub fn sensitivity(self) -> Sensitivity {
        match self {
            LakeTable::CallRecordings => Sensitivity::Restricted,
            LakeTable::FactInteractions | LakeTable::Quarantine | LakeTable::IngestLog => Sensitivity::Analytics,
        }
    }

    /// The columns compaction sorts a partition's rows by; none: files are only merged.
    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            LakeTable::FactInteractions | LakeTable::CallRecordings => &["event_timestamp"],
            LakeTable::Quarantine | LakeTable::IngestLog => &[],
        }
    }

    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            LakeTable::FactInteractions => &["event_date", "queue_name"],
            LakeTable::CallRecordings => &["event_date"],
            LakeTable::Quarantine | LakeTable::IngestLog => &[],
        }
    }

    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 4]> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| {
            [
                fact_interactions_schema(),
                call_recordings_schema(),
                quarantine_schema(),
                ingest_log_schema(),
            ]
        });
        schemas[self as usize].clone()
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The fields of [`Delivery::COLUMNS`].
fn delivery_fields() -> [Field; 3] {
    [
        Field::new("source_object", DataType::Utf8, false),
        Field::new("source_modified_at", timestamp(), false),
        Field::new("source_line", DataType::Int64, false),
    ]
}

fn fact_interactions_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("event_timestamp", timestamp(), false),
        Field::new("interaction_type", DataType::Utf8, true),
        Field::new("direction", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, true),
        Field::new("duration_seconds", DataType::Int64, true),
        Field::new("queue_name", DataType::Utf8, true),
        Field::new("agent_id", DataType::Utf8, true),
        Field::new("source_system", DataType::Utf8, false),
        Field::new("created_at", timestamp(), false),
        Field::new("event_date", DataType::Date32, false),
        Field::new("caller_number_masked", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        // 64-bit hash of event_id: finding which partitions already hold a batch's events
        // reads this one narrow column instead of the string ids.
        Field::new("event_key", DataType::Int64, false),
    ];
    fields.extend(delivery_fields());
    Arc::new(Schema::new(fields))
}

fn call_recordings_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("event_timestamp", timestamp(), false),
        Field::new("recording_url", DataType::Utf8, true),
        Field::new("event_date", DataType::Date32, false),
        Field::new("event_key", DataType::Int64, false),
    ];
    fields.extend(delivery_fields());
    Arc::new(Schema::new(fields))
}

fn quarantine_schema() -> SchemaRef {
    let mut fields = delivery_fields().to_vec();
    fields.extend([
        Field::new("reason", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(fields))
}

fn ingest_log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source_object", DataType::Utf8, false),
        Field::new("source_size", DataType::Int64, false),
        Field::new("source_etag", DataType::Utf8, false),
        Field::new("source_modified_at", timestamp(), false),
        Field::new("format", DataType::Utf8, true),
        Field::new("gzipped", DataType::Boolean, false),
        Field::new("records_read", DataType::Int64, false),
        Field::new("records_valid", DataType::Int64, false),
        Field::new("records_quarantined", DataType::Int64, false),
        Field::new("fact_version", DataType::Int64, false),
        Field::new("committed_at", timestamp(), false),
    ]))
}


#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(modified_at: i64, object: &str, line: i64) -> Delivery<'_> {
        Delivery { modified_at, object: Cow::Borrowed(object), line }
    }

    #[test]
    fn the_latest_delivery_is_the_greatest() {
        // Time first, whatever the name; then the name; then the line.
        assert!(delivery(2, "a", 1) > delivery(1, "z", 9));
        assert!(delivery(1, "b", 1) > delivery(1, "a", 9));
        assert!(delivery(1, "a", 2) > delivery(1, "a", 1));
        assert_eq!(delivery(1, "a", 1), delivery(1, "a", 1).into_owned());
        let fields: Vec<String> = delivery_fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(fields, Delivery::COLUMNS);
    }
}
