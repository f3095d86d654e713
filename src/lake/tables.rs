//! How the rows of the lake's tables (defined in [`crate::model`]) are built from ingested
//! events.
//!
//! Every row of `fact_interactions` and `call_recordings` carries its delivery
//! ([`crate::model::Delivery`]): the upsert compares them so the latest delivery wins
//! whatever order objects are read in, and a re-run after a crash changes nothing.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};

use crate::ingest::{FlatEvent, ParsedObject, QuarantinedRecord, SourceObject};
use arrow::datatypes::{DataType, Field, Schema};

use crate::model::{Delivery, LakeTable};

/// The stored hash of an `event_id` ([`crate::model::key_hash`]).
pub fn event_key(event_id: &str) -> i64 {
    crate::model::key_hash(event_id)
}

/// An event together with where it was delivered.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub event: &'a FlatEvent,
    pub object: &'a SourceObject,
    pub line: u64,
}

impl Delivered<'_> {
    /// Where the event was delivered; the greatest delivery of an event wins.
    pub fn delivery(&self) -> Delivery<'_> {
        Delivery { modified_at: self.object.last_modified, object: self.object.url.as_str().into(), line: self.line as i64 }
    }
}

fn utc(values: Vec<i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from(values).with_timezone("UTC")
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn delivery_columns(rows: &[Delivered<'_>]) -> [ArrayRef; 3] {
    [
        strings(rows.iter().map(|r| Some(r.object.url.as_str()))),
        Arc::new(utc(rows.iter().map(|r| r.object.last_modified).collect())),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.line as i64))),
    ]
}

/// `fact_interactions` rows; `rows` should already be sorted by event time so each written
/// file is, which keeps row-group statistics tight for time-range pruning.
pub fn fact_batch(rows: &[Delivered<'_>]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let e = |f: fn(&FlatEvent) -> Option<&str>| strings(rows.iter().map(|r| f(r.event)));
    let mut columns: Vec<ArrayRef> = vec![
        e(|ev| Some(&ev.event_id)),
        e(|ev| Some(&ev.interaction_id)),
        Arc::new(utc(rows.iter().map(|r| r.event.event_timestamp).collect())),
        e(|ev| ev.interaction_type.as_deref()),
        e(|ev| ev.direction.as_deref()),
        e(|ev| ev.state.as_deref()),
        Arc::new(rows.iter().map(|r| r.event.duration_seconds).collect::<Int64Array>()),
        e(|ev| ev.queue_name.as_deref()),
        e(|ev| ev.agent_id.as_deref()),
        e(|ev| Some(&ev.source_system)),
        // created_at: the export's own value, else the object's last-modified time, so a
        // re-run writes identical rows.
        Arc::new(utc(rows
            .iter()
            .map(|r| r.event.created_at.unwrap_or(r.object.last_modified))
            .collect())),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.event.event_date()))),
        e(|ev| ev.caller_number_masked.as_deref()),
        e(|ev| ev.campaign_id.as_deref()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| event_key(&r.event.event_id)))),
    ];
    columns.extend(delivery_columns(rows));
    RecordBatch::try_new(LakeTable::FactInteractions.schema(), columns)
}

/// A one-column batch of the rows' `event_key`s, as the upsert lookups take it.
pub fn event_keys(rows: &[Delivered<'_>]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(vec![Field::new("event_key", DataType::Int64, false)]));
    let keys = Int64Array::from_iter_values(rows.iter().map(|r| event_key(&r.event.event_id)));
    RecordBatch::try_new(schema, vec![Arc::new(keys)])
}

/// `call_recordings` rows; a null `recording_url` means "this delivery has no recording",
/// which removes an older delivery's row when it wins.
pub fn recordings_batch(rows: &[Delivered<'_>]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| Some(r.event.event_id.as_str()))),
        strings(rows.iter().map(|r| Some(r.event.interaction_id.as_str()))),
        Arc::new(utc(rows.iter().map(|r| r.event.event_timestamp).collect())),
        strings(rows.iter().map(|r| r.event.recording_url.as_deref())),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.event.event_date()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| event_key(&r.event.event_id)))),
    ];
    columns.extend(delivery_columns(rows));
    RecordBatch::try_new(LakeTable::CallRecordings.schema(), columns)
}

pub fn quarantine_batch(
    rows: &[(&SourceObject, &QuarantinedRecord)],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(o, _)| Some(o.url.as_str()))),
        Arc::new(utc(rows.iter().map(|(o, _)| o.last_modified).collect())),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, q)| q.line as i64))),
        strings(rows.iter().map(|(_, q)| Some(q.rejection.code()))),
        strings(rows.iter().map(|(_, q)| q.rejection.field())),
        // The reason can quote the value it refused: masked like the record beside it.
        Arc::new(
            rows.iter()
                .map(|(_, q)| {
                    let reason = crate::ingest::mask::scrub_text(&q.rejection.to_string());
                    Some(match &q.position {
                        Some(position) => format!("{position}: {reason}"),
                        None => reason,
                    })
                })
                .collect::<StringArray>(),
        ),
        strings(rows.iter().map(|(_, q)| Some(q.record.as_str()))),
    ];
    RecordBatch::try_new(LakeTable::Quarantine.schema(), columns)
}

/// One `ingest_log` row per object completed by a commit.
pub fn ingest_log_batch(
    objects: &[&ParsedObject],
    fact_version: i64,
    committed_at: i64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        strings(objects.iter().map(|p| Some(p.object.url.as_str()))),
        Arc::new(Int64Array::from_iter_values(objects.iter().map(|p| p.object.size as i64))),
        strings(objects.iter().map(|p| Some(p.object.e_tag.as_deref().unwrap_or("")))),
        Arc::new(utc(objects.iter().map(|p| p.object.last_modified).collect())),
        strings(objects.iter().map(|p| p.framing.map(|f| f.as_str()))),
        Arc::new(objects.iter().map(|p| Some(p.gzipped)).collect::<BooleanArray>()),
        Arc::new(Int64Array::from_iter_values(objects.iter().map(|p| p.records() as i64))),
        Arc::new(Int64Array::from_iter_values(objects.iter().map(|p| p.valid_records() as i64))),
        Arc::new(Int64Array::from_iter_values(objects.iter().map(|p| p.quarantined.len() as i64))),
        Arc::new(Int64Array::from_iter_values(objects.iter().map(|_| fact_version))),
        Arc::new(utc(objects.iter().map(|_| committed_at).collect())),
    ];
    RecordBatch::try_new(LakeTable::IngestLog.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_key_is_stable() {
        // Pinned: stored keys must never change meaning between releases.
        assert_eq!(event_key(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(event_key("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
        assert_ne!(event_key("e1"), event_key("e2"));
    }

    #[test]
    fn schemas_partition_on_existing_columns() {
        for table in LakeTable::ALL {
            for col in table.partition_columns() {
                assert!(table.schema().field_with_name(col).is_ok(), "{col}");
            }
        }
    }
}
