//! `ingest_log` as the writer knows it: which object versions are in the lake (whole, or
//! through which record of a large object), and the batch numbers the last `quarantine`
//! and `ingest_log` commits carry ([`super::writing::BATCH_APP_ID`]).
//!
//! Kept between passes so a pass costs O(new data): the versions as long as `ingest_log`
//! moves only by this writer's commits, the numbers as long as neither table moved since
//! this writer left them. Either is read again from the tables otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;
use deltalake::kernel::Version;
use deltalake::DeltaTable;

use super::error::{delta_err, LakeError};
use super::tables::Tables;
use super::writing::batch_number;
use crate::ingest::source::ObjectVersion;
use crate::ingest::{ParsedObject, SourceObject};
use crate::model::LakeTable;

#[derive(Debug)]
pub(crate) struct IngestLog {
    /// The `ingest_log` version `versions` and `partial` are as of.
    as_of: Option<Version>,
    /// Objects ingested whole.
    versions: HashSet<ObjectVersion>,
    /// Large objects committed in part: how many of their records the parts hold.
    partial: HashMap<ObjectVersion, u64>,
    numbers: BatchNumbers,
    /// The versions of `quarantine` and `ingest_log` this writer left the lake at.
    left_at: (Option<Version>, Option<Version>),
}

#[derive(Debug, Clone, Copy, Default)]
struct BatchNumbers {
    quarantined: Option<i64>,
    logged: Option<i64>,
}

impl IngestLog {
    /// The log as of `tables`: `kept` (what this writer knew) where the tables have not
    /// moved since, the rest read from them.
    pub(crate) async fn load(tables: &Tables, kept: Option<IngestLog>) -> Result<Self, LakeError> {
        let log = tables.get(LakeTable::IngestLog)?;
        let left_at = tables.batch_versions();
        let (versions, numbers) = match kept {
            Some(kept) => {
                let numbers = (kept.left_at == left_at).then_some(kept.numbers);
                let versions = (kept.as_of == log.version()).then_some((kept.versions, kept.partial));
                (versions, numbers)
            }
            None => (None, None),
        };
        let (versions, partial) = match versions {
            Some(known) => known,
            None => read_versions(log).await?,
        };
        let numbers = match numbers {
            Some(known) => known,
            None => {
                let number = |table: LakeTable| async move { batch_number(tables.get(table)?).await.map_err(delta_err(table)) };
                BatchNumbers { quarantined: number(LakeTable::Quarantine).await?, logged: number(LakeTable::IngestLog).await? }
            }
        };
        Ok(Self { as_of: log.version(), versions, partial, numbers, left_at })
    }

    /// Whether `object` is still to read, and then how many of its records earlier passes
    /// committed.
    pub(crate) fn still_to_read(&self, object: &SourceObject) -> Option<u64> {
        let version = object.version();
        (!self.versions.contains(&version)).then(|| self.partial.get(&version).copied().unwrap_or(0))
    }

    /// The number the next batch's commits carry.
    pub(crate) fn next_batch(&self) -> i64 {
        self.numbers.quarantined.max(self.numbers.logged).unwrap_or(0) + 1
    }

    /// The number of the last batch `ingest_log` completed.
    pub(crate) fn last_logged(&self) -> Option<i64> {
        self.numbers.logged
    }

    pub(crate) fn quarantined(&mut self, batch: i64) {
        self.numbers.quarantined = Some(batch);
    }

    /// Records batch `batch`'s `ingest_log` commit, which took the table from `before` to
    /// `after`, of `objects`.
    pub(crate) fn logged(&mut self, batch: i64, before: Option<Version>, after: Option<Version>, objects: &[ParsedObject]) {
        self.numbers.logged = Some(batch);
        // The versions are known still only when the log stood where this writer last saw it.
        if self.as_of != before {
            return;
        }
        self.as_of = after;
        for part in objects {
            let version = part.object.version();
            match part.through_record {
                Some(line) => {
                    let through = self.partial.entry(version).or_default();
                    *through = (*through).max(line);
                }
                None => {
                    self.partial.remove(&version);
                    self.versions.insert(version);
                }
            }
        }
    }

    /// Records a commit that rewrote files of `ingest_log` (compaction), not what it holds.
    pub(crate) fn rewritten(&mut self, before: Option<Version>, after: Option<Version>) {
        if self.as_of == before {
            self.as_of = after;
        }
    }

    /// Records where this writer leaves the lake's tables.
    pub(crate) fn leave(&mut self, tables: &Tables) {
        self.left_at = tables.batch_versions();
    }
}

/// The columns of `ingest_log` an object version and its progress are read from: only these
/// are read, however many the table has.
const VERSION_COLUMNS: [&str; 5] = ["source_object", "source_size", "source_modified_at", "source_etag", "through_record"];

/// The object versions `ingest_log` holds whole, and how far it holds the others.
async fn read_versions(log: &DeltaTable) -> Result<(HashSet<ObjectVersion>, HashMap<ObjectVersion, u64>), LakeError> {
    let mut versions = HashSet::new();
    let mut partial: HashMap<ObjectVersion, u64> = HashMap::new();
    if log.get_file_uris().map_err(delta_err(LakeTable::IngestLog))?.next().is_none() {
        return Ok((versions, partial));
    }
    // Read here, with a context of its own: the writer does not need the read side.
    let ctx = SessionContext::new();
    let provider = log.table_provider().with_session(Arc::new(ctx.state())).await?;
    let batches = ctx.read_table(provider)?.select_columns(&VERSION_COLUMNS)?.collect().await?;
    for batch in &batches {
        for (version, through) in decode_versions(batch)? {
            match through {
                None => {
                    versions.insert(version);
                }
                Some(line) => {
                    let through = partial.entry(version).or_default();
                    *through = (*through).max(line);
                }
            }
        }
    }
    partial.retain(|version, _| !versions.contains(version));
    Ok((versions, partial))
}

/// Each row's object version and `through_record` (null: the whole object), by column name.
fn decode_versions(batch: &RecordBatch) -> Result<Vec<(ObjectVersion, Option<u64>)>, LakeError> {
    // Cast: DataFusion may hand strings back as views, timestamps with any unit.
    let column = |name: &str, to: &DataType| -> Result<Arc<dyn Array>, LakeError> {
        let found = batch.column_by_name(name).ok_or_else(|| arrow::error::ArrowError::SchemaError(format!("ingest_log has no column {name}")))?;
        Ok(cast(found, to)?)
    };
    let (url, size) = (column("source_object", &DataType::Utf8)?, column("source_size", &DataType::Int64)?);
    let (modified, etag) = (column("source_modified_at", &DataType::Int64)?, column("source_etag", &DataType::Utf8)?);
    let through = column("through_record", &DataType::Int64)?;
    let (url, size) = (url.as_string::<i32>(), size.as_primitive::<Int64Type>());
    let (modified, etag) = (modified.as_primitive::<Int64Type>(), etag.as_string::<i32>());
    let through = through.as_primitive::<Int64Type>();
    Ok((0..batch.num_rows())
        .map(|i| {
            let version = ObjectVersion { url: url.value(i).to_string(), size: size.value(i), modified_at: modified.value(i), etag: etag.value(i).to_string() };
            (version, (!through.is_null(i)).then(|| through.value(i) as u64))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str, modified_at: i64, through_record: Option<u64>) -> ParsedObject {
        let object = SourceObject { path: url.into(), url: url.to_string(), size: 10, e_tag: Some("e".into()), last_modified: modified_at };
        ParsedObject {
            object,
            framing: None,
            gzipped: false,
            rows: Default::default(),
            valid_by_format: Default::default(),
            quarantined: Vec::new(),
            unknown_fields: Default::default(),
            through_record,
        }
    }

    #[test]
    fn ingest_log_rows_round_trip_to_the_versions_they_were_made_of() {
        let (whole, part) = (parsed("s3://b/whole.json", 1_000, None), parsed("s3://b/large.json", 2_000, Some(500)));
        let rows = super::super::tables::ingest_log_batch(&[&whole, &part], 3, 4_000).unwrap();
        let decoded = decode_versions(&rows).unwrap();
        let expected = |url: &str, modified_at| ObjectVersion { url: url.into(), size: 10, modified_at, etag: "e".into() };
        assert_eq!(decoded, vec![(expected("s3://b/whole.json", 1_000), None), (expected("s3://b/large.json", 2_000), Some(500))]);
        // The columns are found by name: reordered, the same versions come back.
        let reversed: Vec<usize> = (0..rows.num_columns()).rev().collect();
        assert_eq!(decode_versions(&rows.project(&reversed).unwrap()).unwrap(), decoded);
    }
}
