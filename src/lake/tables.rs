//! The tables as the writer holds them ([`Tables`]), and the rows of the append-only tables
//! it fills itself: `quarantine` (the records formats refused) and `ingest_log` (the objects
//! a commit completed). The formats build every other table's rows ([`crate::ingest::rows`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};

use crate::ingest::{ParsedObject, QuarantinedRecord, SourceObject};
use deltalake::kernel::Version;
use deltalake::{DeltaTable, DeltaTableError};

use super::error::{delta_err, LakeError};
use crate::model::LakeTable;

/// The tables as of the start of a pass, each replaced by its commits' results.
#[derive(Debug)]
pub(crate) struct Tables(pub(crate) HashMap<LakeTable, DeltaTable>);

impl Tables {
    pub(crate) fn get(&self, table: LakeTable) -> Result<&DeltaTable, LakeError> {
        self.0.get(&table).ok_or_else(|| delta_err(table)(DeltaTableError::NotATable(table.name().into())))
    }

    pub(crate) fn set(&mut self, table: LakeTable, delta: DeltaTable) {
        self.0.insert(table, delta);
    }

    /// The versions of the two tables whose commits carry batch numbers.
    pub(crate) fn batch_versions(&self) -> (Option<Version>, Option<Version>) {
        let version = |t| self.0.get(&t).and_then(DeltaTable::version);
        (version(LakeTable::Quarantine), version(LakeTable::IngestLog))
    }
}


fn utc(values: Vec<i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from(values).with_timezone("UTC")
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

pub(crate) fn quarantine_batch(
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

/// One `ingest_log` row per object (or part of a large object) a commit completed.
pub(crate) fn ingest_log_batch(
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
        Arc::new(objects.iter().map(|p| p.through_record.map(|l| l as i64)).collect::<Int64Array>()),
    ];
    RecordBatch::try_new(LakeTable::IngestLog.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_partition_on_existing_columns() {
        for table in LakeTable::ALL {
            for col in table.partition_columns() {
                assert!(table.schema().field_with_name(col).is_ok(), "{col}");
            }
        }
    }
}
