//! How cclake writes every table's files and numbers its ingest commits: the Parquet
//! settings of each table, and the batch number an ingest commit carries in the Delta log.

use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::{DeltaTable, DeltaTableError};

use crate::model::{Delivery, LakeTable, MergePolicy};

/// Parquet settings for every file cclake writes of `table`: row groups small enough that
/// statistics on the time-sorted `event_timestamp` prune time ranges, and no dictionary for
/// the table's nearly distinct columns ([`LakeTable::plain_columns`]: a dictionary of them
/// is built only to be given up). Random ids and hashes ([`LakeTable::random_columns`]) and
/// the source object get no statistics: their minimum and maximum prune nothing, and
/// computing them compares every value.
///
/// Snappy compresses every column but an upsert table's key and key hash: a random id or
/// a 64-bit hash per row is what it cannot shrink, so compressing them costs CPU for
/// nothing (benches/README.md, "Why the code is so").
pub(crate) fn writer_properties(table: LakeTable) -> WriterProperties {
    let builder = table
        .plain_columns()
        .iter()
        .fold(WriterProperties::builder(), |b, c| b.set_column_dictionary_enabled(ColumnPath::from(*c), false));
    let builder = table
        .random_columns()
        .iter()
        // The source object: the same long URL on every row of an object, so its minimum
        // and maximum cost two compares of it per row, and would prune only lookups by
        // object, which nothing makes (benches/README.md, "eighth round"). A table without
        // the column ignores the setting.
        .chain([&Delivery::COLUMNS[0]])
        .fold(builder, |b, c| b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None))
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024));
    let keys = match table.merge_policy() {
        MergePolicy::UpsertLatest { key, key_hash, .. } => [Some(key), key_hash],
        _ => [None, None],
    };
    keys.into_iter()
        .flatten()
        .fold(builder, |b, c| b.set_column_compression(ColumnPath::from(c), Compression::UNCOMPRESSED))
        .build()
}

/// The application id under which the writer numbers its batches in the Delta log
/// (`txn` actions): each batch's `quarantine` commit and `ingest_log` commit carry the same
/// number, so a `quarantine` commit whose log commit never happened (a crash between the two)
/// shows as a `quarantine` number past the `ingest_log` one.
pub const BATCH_APP_ID: &str = "cclake-ingest-batch";

/// The last batch number a table's commits carry (see [`BATCH_APP_ID`]).
pub(crate) async fn batch_number(delta: &DeltaTable) -> Result<Option<i64>, DeltaTableError> {
    if delta.version().is_none() {
        return Ok(None);
    }
    delta.snapshot()?.transaction_version(delta.log_store().as_ref(), BATCH_APP_ID).await
}

/// Commit properties that stamp a commit with batch number `batch`.
pub(crate) fn batch_commit(batch: i64) -> CommitProperties {
    CommitProperties::default().with_application_transaction(Transaction::new(BATCH_APP_ID, batch))
}

