//! The lake's errors ([`LakeError`]), and the write side's own failures as types: a script (through the exit code) and the
//! Flight service (through its status) act on the kind, and the message names the step and
//! the table. Inside the write primitives, which speak `DeltaTableError`, they travel as its
//! `GenericError` source and are found again with [`WriteFailure::find`].

use datafusion::error::DataFusionError;
use deltalake::DeltaTableError;

use crate::catalog::CatalogError;
use crate::model::LakeTable;
use crate::storage::StorageError;

/// Errors of the lake and its ingest passes.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot list source objects under {location}: {source}")]
    ListSource {
        location: String,
        source: object_store::Error,
    },
    #[error("cannot read source object {object}: {source}")]
    ReadSource {
        object: String,
        source: object_store::Error,
    },
    #[error("Delta table {table}: {source}")]
    Delta {
        table: &'static str,
        source: DeltaTableError,
    },
    #[error("cannot build Arrow rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Boxed: DataFusion's errors are large and this enum travels through every result.
    #[error("reading the ingest log: {0}")]
    DataFusion(Box<DataFusionError>),
    #[error("a parse task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Opening the tables; a location holding no lake is [`CatalogError::NoLake`].
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Another writer holds the lake, or this one lost it ([`lease`]).
    #[error(transparent)]
    Lease(#[from] super::lease::LeaseError),
    /// The lake's agent pseudonym key ([`pseudonym_key`]).
    #[error(transparent)]
    PseudonymKey(#[from] super::pseudonym_key::KeyError),
    #[error("erasure record {object} cannot be read: {reason}")]
    ErasureRecord { object: String, reason: String },
    #[error("cannot read or write erasure records at {object}: {source}")]
    ErasureStore { object: String, source: object_store::Error },
    #[error("source {source_location} does not exist")]
    SourceMissing { source_location: String },
    #[error("no export objects under {source_location}: nothing to ingest (check --source)")]
    SourceEmpty { source_location: String },
    #[error("source {source_location} is itself a lake (it holds {marker}): did you swap --source and --lake?")]
    SourceIsALake { source_location: String, marker: String },
    #[error("source {source_location} and lake {lake} overlap: the exports must not lie inside the lake, nor the lake inside the exports")]
    SourceOverlapsLake { source_location: String, lake: String },
}

impl From<DataFusionError> for LakeError {
    fn from(e: DataFusionError) -> Self {
        LakeError::DataFusion(Box::new(e))
    }
}

pub(crate) fn delta_err(table: LakeTable) -> impl FnOnce(DeltaTableError) -> LakeError {
    move |source| LakeError::Delta {
        table: table.name(),
        source,
    }
}


#[derive(Debug, thiserror::Error)]
pub enum WriteFailure {
    /// A task of the commit (sorting rows, writing Parquet) panicked or was cancelled.
    #[error("{step} for table {table} failed: {source}")]
    Task {
        step: &'static str,
        table: &'static str,
        source: tokio::task::JoinError,
    },
    /// A thread of the commit panicked.
    #[error("{step} for table {table}: a thread panicked")]
    Thread { step: &'static str, table: &'static str },
    /// A table's definition and the operation asked of it disagree (a release's defect).
    #[error("table {table} is not {expected}")]
    WrongPolicy { table: &'static str, expected: &'static str },
    /// A value the write needs is missing from rows that should carry it.
    #[error("table {table}: column {column} has no readable partition value")]
    PartitionValue { table: &'static str, column: String },
    /// A key hash column that is not 64-bit integers, or holds a null.
    #[error("table {table}: column {column} does not hold a 64-bit key hash in every row")]
    KeyHash { table: &'static str, column: &'static str },
    /// A table decided by another ([`crate::model::MergePolicy::UpsertLatest`]'s
    /// `decided_by`) has a column the deciding table's rows lack (a release's defect).
    #[error("table {table}: column {column} is not among its deciding table's columns")]
    FollowerColumn { table: &'static str, column: String },
}

impl WriteFailure {
    pub(crate) fn task(step: &'static str, table: LakeTable) -> impl FnOnce(tokio::task::JoinError) -> DeltaTableError {
        move |source| WriteFailure::Task { step, table: table.name(), source }.into()
    }

    /// The failure inside a Delta error, when it is one of these.
    pub fn find(error: &DeltaTableError) -> Option<&WriteFailure> {
        match error {
            DeltaTableError::GenericError { source } => source.downcast_ref(),
            _ => None,
        }
    }
}

impl From<WriteFailure> for DeltaTableError {
    fn from(failure: WriteFailure) -> Self {
        DeltaTableError::GenericError { source: Box::new(failure) }
    }
}
