//! Exit codes a script can act on: each failure's class found from its error's type.

use cclake::lake::lease::LeaseError;

/// The exit code of `cclake check` on a damaged lake.
pub(crate) const EXIT_LAKE_DAMAGED: u8 = 3;

/// `cclake check` found damage (the report says what).
#[derive(Debug, thiserror::Error)]
#[error("the lake is damaged (see above)")]
pub(crate) struct LakeDamaged;

/// The exit code of a write refused because another writer holds the lake, or of a writer
/// that lost its lease (EX_TEMPFAIL: try again later).
pub(crate) const EXIT_LAKE_BUSY: u8 = 75;

/// What `--help` says of exit codes.
pub(crate) const EXIT_CODES_HELP: &str = "Exit codes: 0 done (an ingest stopped by SIGINT/SIGTERM too, at a commit boundary); \
1 any other failure; 2 bad usage (a flag, or a location that cannot be one); 3 `check` found damage; \
65 refused (a statement the lake will not run, a pseudonym key that is not the lake's, a state --as-of cannot read whole); \
66 no lake, or a source that is missing, empty or the lake itself; 74 a store or file that cannot be read or written; \
75 another writer holds the lake (try again later).";

/// Exit codes by class of failure (sysexits.h where one fits), in README and `--help`.
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_DATA_REFUSED: u8 = 65;
pub(crate) const EXIT_NO_INPUT: u8 = 66;
pub(crate) const EXIT_IO: u8 = 74;

/// The exit code of a failure: a location that cannot be one is bad usage (2); no lake, or a
/// source that is missing, empty or the lake itself (66); a statement or key the lake
/// refuses (65); a store or file that cannot be read or written (74); anything else 1.
pub(crate) fn exit_code(error: &(dyn std::error::Error + 'static)) -> u8 {
    use cclake::catalog::CatalogError;
    use cclake::lake::pseudonym_key::KeyError;
    use cclake::query::as_of::AsOfError;
    use cclake::query::QueryError;
    use cclake::storage::StorageError;
    use datafusion::error::DataFusionError;
    use cclake::LakeError;
    fn storage(e: &StorageError) -> u8 {
        match e {
            StorageError::InvalidLocation(..) | StorageError::UnsupportedScheme(_) => EXIT_USAGE,
            _ => EXIT_IO,
        }
    }
    fn catalog(e: &CatalogError) -> u8 {
        match e {
            CatalogError::NoLake { .. } => EXIT_NO_INPUT,
            CatalogError::Storage(e) => storage(e),
            CatalogError::Delta { .. } => 1,
        }
    }
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(e) = e.downcast_ref::<LakeError>() {
            return match e {
                LakeError::SourceMissing { .. } | LakeError::SourceEmpty { .. } | LakeError::SourceIsALake { .. } | LakeError::SourceOverlapsLake { .. } => {
                    EXIT_NO_INPUT
                }
                LakeError::ListSource { .. } | LakeError::ReadSource { .. } | LakeError::ErasureStore { .. } => EXIT_IO,
                LakeError::Storage(e) => storage(e),
                LakeError::Catalog(e) => catalog(e),
                LakeError::PseudonymKey(KeyError::Store { .. }) => EXIT_IO,
                LakeError::PseudonymKey(KeyError::Storage(e)) => storage(e),
                LakeError::PseudonymKey(_) => EXIT_DATA_REFUSED,
                _ => 1,
            };
        }
        if let Some(e) = e.downcast_ref::<CatalogError>() {
            return catalog(e);
        }
        if let Some(e) = e.downcast_ref::<StorageError>() {
            return storage(e);
        }
        if let Some(e) = e.downcast_ref::<QueryError>() {
            return match e {
                QueryError::Catalog(e) => catalog(e),
                QueryError::Output(_) => EXIT_IO,
                QueryError::DataFusion(DataFusionError::ObjectStore(_) | DataFusionError::IoError(_)) => EXIT_IO,
                QueryError::ReadOnly(_) | QueryError::Refused(_) | QueryError::DataFusion(_) => EXIT_DATA_REFUSED,
                // A state that cannot be read whole (vacuumed, before the lake, no such version).
                QueryError::AsOf(e) if matches!(**e, AsOfError::Delta { .. }) => 1,
                QueryError::AsOf(_) => EXIT_DATA_REFUSED,
                _ => 1,
            };
        }
        if e.downcast_ref::<object_store::Error>().is_some() || e.downcast_ref::<std::io::Error>().is_some() {
            return EXIT_IO;
        }
        current = e.source();
    }
    1
}

/// Whether `error`, or any error behind it, is another writer holding the lake.
pub(crate) fn is_lease_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(LeaseError::Busy { .. } | LeaseError::Lost { .. }) = e.downcast_ref::<LeaseError>() {
            return true;
        }
        if let Some(cclake::LakeError::Lease(LeaseError::Busy { .. } | LeaseError::Lost { .. })) = e.downcast_ref::<cclake::LakeError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether `error`, or any error behind it, is a write to a closed pipe.
pub(crate) fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        current = e.source();
    }
    false
}
