//! The lake: Delta tables under one root, and the write primitives that fill them.
//!
//! [`Lake`] holds the tables and one writer per process; passes, compactions and repairs take
//! turns on it under the lake's writer lease ([`lease`]). An ingest pass is
//! [`crate::pipeline`]'s: it reads the exports and hands each batch to [`commit`], which
//! applies each table's merge policy ([`crate::model::MergePolicy`]) and commits `ingest_log`
//! last. Below it: [`merge`] (aggregates replaced whole, "latest delivery wins" decided),
//! [`upsert`] (keyed MERGE), [`append`] (partitioned appends), [`stored`] (what a table holds
//! of a batch's keys), [`writing`] (Parquet settings, batch numbers), [`work`] (CPU work
//! shared out). None of these imports one above it.
//!
//! The writer keeps its tables and what it knows of `ingest_log` between passes
//! ([`ingest_log::IngestLog`]), so a pass costs O(new data), not O(history).

mod append;
pub mod check;
pub(crate) mod commit;
pub mod compact;
pub mod erase;
pub mod error;
mod follow;
pub(crate) mod ingest_log;
pub mod lease;
mod merge;
mod options;
pub(crate) mod pass_keys;
pub mod pseudonym_key;
mod stored;
pub(crate) mod tables;
pub mod retention;
mod upsert;
mod work;
mod writing;

use std::sync::Arc;

use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use arrow::array::RecordBatch;
use deltalake::DeltaTable;
use tracing::info;

use crate::catalog::Catalog;
use crate::ingest::pseudonym::PseudonymKey;
use crate::ingest::source::Listings;
use crate::storage::Location;
pub use compact::{CompactOutcome, CompactReport};
pub use crate::model::LakeTable;
use crate::model::MergePolicy;
pub use error::{LakeError, WriteFailure};
use error::delta_err;
use ingest_log::IngestLog;
pub use options::LakeOptions;
use tables::Tables;
pub use upsert::UpsertOutcome;
pub use writing::BATCH_APP_ID;

/// A cclake lake: its Delta tables under one root, and the write side that fills them.
#[derive(Debug)]
pub struct Lake {
    catalog: Catalog,
    options: LakeOptions,
    /// One writer per process: passes and compactions take turns, and what one pass learnt
    /// of the tables serves the next.
    pub(crate) writer: tokio::sync::Mutex<Writer>,
    /// What this process's attempts saw of the lake's lease ([`lease::LeaseWatch`]).
    lease_watch: lease::LeaseWatch,
}

/// What the writer keeps between passes, so that a pass costs O(new data), not O(history):
/// each piece is dropped when a pass fails, and read again by the next.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// Every table as this process last loaded or committed it; brought up to date
    /// incrementally (only newer log entries are read).
    pub(crate) tables: Option<Tables>,
    /// What `ingest_log` holds, and the batch numbers.
    pub(crate) ingest_log: Option<IngestLog>,
    /// How far each remote source was listed.
    pub(crate) listings: Listings,
    /// The lake's agent pseudonym key, read (or made) on the first pass.
    pub(crate) agent_key: Option<Arc<PseudonymKey>>,
}

impl Lake {
    /// Opens the existing lake at a local path or URL. Creates nothing: a path that holds no
    /// lake (a typo, an unmounted bucket) is [`CatalogError::NoLake`].
    pub async fn open(location: &str) -> Result<Self, LakeError> {
        Self::open_with(location, LakeOptions::default()).await
    }

    pub async fn open_with(location: &str, options: LakeOptions) -> Result<Self, LakeError> {
        Ok(Self::at(Catalog::open(location).await?, options))
    }

    /// Opens the lake at a local path or URL, creating its tables when missing: the write
    /// side's entry (`cclake ingest`, the demo).
    pub async fn open_or_create(location: &str) -> Result<Self, LakeError> {
        Self::open_or_create_with(location, LakeOptions::default()).await
    }

    pub async fn open_or_create_with(location: &str, options: LakeOptions) -> Result<Self, LakeError> {
        let mut lake = Self::at(Catalog::at(Location::parse(location, true)?), options);
        // Creating tables is a write: two writers creating a new lake at once take turns.
        let lease = lake.lease("create").await?;
        let tables = lake.load_tables(None).await;
        lease.release().await;
        let tables = tables?;
        // The writer starts from what was just loaded: its first pass does not load again.
        lake.writer.get_mut().tables = Some(tables);
        Ok(lake)
    }

    fn at(catalog: Catalog, options: LakeOptions) -> Self {
        Self {
            catalog,
            options,
            writer: tokio::sync::Mutex::new(Writer::default()),
            lease_watch: lease::LeaseWatch::default(),
        }
    }

    pub fn root(&self) -> &Location {
        self.catalog.root()
    }

    /// Takes the lake's writer lease for `operation` ([`lease`]).
    pub(crate) async fn lease(&self, operation: &str) -> Result<lease::WriterLease, LakeError> {
        Ok(lease::WriterLease::acquire_watching(self.root(), operation, self.options.lease, &self.lease_watch).await?)
    }

    /// The lake's tables, read-only: what the read side opens.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn options(&self) -> &LakeOptions {
        &self.options
    }

    /// The newest snapshot of one table.
    pub async fn table(&self, table: LakeTable) -> Result<DeltaTable, LakeError> {
        Ok(self.catalog.table(table).await?)
    }

    async fn load_or_create(&self, table: LakeTable) -> Result<DeltaTable, LakeError> {
        load_or_create(&self.catalog, table).await
    }

    /// Every table, newest snapshot: the writer's own, brought up to date, when it has them.
    pub(crate) async fn load_tables(&self, kept: Option<Tables>) -> Result<Tables, LakeError> {
        if let Some(mut tables) = kept {
            futures::future::try_join_all(
                tables.0.iter_mut().map(|(table, delta)| async move { delta.update_incremental(None).await.map_err(delta_err(*table)) }),
            )
            .await?;
            return Ok(tables);
        }
        // A lake written by an earlier release lacks the newer tables: created here. The
        // tables are independent: loaded (or created) at once, not one after another.
        let loaded = futures::future::try_join_all(
            LakeTable::ALL.into_iter().map(|table| async move { Ok::<_, LakeError>((table, self.load_or_create(table).await?)) }),
        )
        .await?;
        Ok(Tables(loaded.into_iter().collect()))
    }

    pub(crate) async fn compact_tables(
        &self,
        tables: &mut Tables,
        min_files: usize,
        lease: &lease::WriterLease,
    ) -> Result<CompactReport, LakeError> {
        let mut report = CompactReport::default();
        for table in LakeTable::ALL {
            lease.ensure_held().await?;
            let (next, outcome) = compact::compact_table(tables.get(table)?.clone(), table, min_files)
                .await
                .map_err(delta_err(table))?;
            tables.set(table, next);
            if outcome.partitions_compacted > 0 {
                info!(
                    table = table.name(),
                    partitions = outcome.partitions_compacted,
                    files_removed = outcome.files_removed,
                    files_added = outcome.files_added,
                    "compacted"
                );
            }
            report.tables.push((table, outcome));
        }
        Ok(report)
    }

    /// Checks the lake's invariants ([`check`]): keys held once, every live file present.
    /// With `repair`, under the writer lease, each damaged table is rewritten in one commit
    /// that keeps each key's latest delivery.
    pub async fn check(&self, repair: bool) -> Result<check::CheckReport, LakeError> {
        let mut writer = self.writer.lock().await;
        if !repair {
            // Read-only: the tables as the catalog opens them; no lease, nothing created.
            let loaded = futures::future::try_join_all(
                LakeTable::ALL.into_iter().map(|table| async move { Ok::<_, LakeError>((table, self.catalog.table(table).await?)) }),
            )
            .await?;
            return self.check_tables(&mut Tables(loaded.into_iter().collect()), false, None).await;
        }
        let lease = self.lease("repair").await?;
        let result = async {
            let mut tables = self.load_tables(writer.tables.take()).await?;
            let report = self.check_tables(&mut tables, true, Some(&lease)).await?;
            writer.tables = Some(tables);
            Ok(report)
        }
        .await;
        lease.release().await;
        result
    }

    async fn check_tables(&self, tables: &mut Tables, repair: bool, lease: Option<&lease::WriterLease>) -> Result<check::CheckReport, LakeError> {
        let mut report = check::CheckReport::default();
        // In `LakeTable::ALL`'s order an aggregate's root comes before its other tables,
        // which keep the root's (repaired) latest delivery.
        for table in LakeTable::ALL {
            if let Some(lease) = lease {
                lease.ensure_held().await?;
            }
            let root = match table.merge_policy() {
                MergePolicy::ReplaceAggregate { root, .. } if root != table => Some(tables.get(root)?.clone()),
                _ => None,
            };
            let (next, found) = check::check_table(tables.get(table)?.clone(), table, root.as_ref(), repair).await.map_err(delta_err(table))?;
            tables.set(table, next);
            report.tables.push((table, found));
        }
        Ok(report)
    }

    /// Compacts every partition of every table that holds more than one file
    /// (`cclake compact`); what it did to each table.
    pub async fn compact(&self) -> Result<CompactReport, LakeError> {
        let mut writer = self.writer.lock().await;
        let lease = self.lease("compact").await?;
        let outcome = self.compact_holding(&mut writer, &lease).await;
        lease.release().await;
        outcome
    }

    async fn compact_holding(&self, writer: &mut Writer, lease: &lease::WriterLease) -> Result<CompactReport, LakeError> {
        let mut tables = self.load_tables(writer.tables.take()).await?;
        let before = tables.get(LakeTable::IngestLog)?.version();
        let outcome = self.compact_tables(&mut tables, 2, lease).await?;
        if let Some(log) = writer.ingest_log.as_mut() {
            log.rewritten(before, tables.get(LakeTable::IngestLog)?.version());
        }
        writer.tables = Some(tables);
        Ok(outcome)
    }
}

/// Loads `table`, creating it when the lake lacks it (a table a later release added).
async fn load_or_create(catalog: &Catalog, table: LakeTable) -> Result<DeltaTable, LakeError> {
    // A local table folder must exist before Delta will look into it.
    Location::parse(catalog.root().join(table.name()).url().as_str(), true)?;
    let schema: StructType = table
        .schema()
        .as_ref()
        .try_into_kernel()
        .map_err(|e| delta_err(table)(e.into()))?;
    // `Ignore`: a table that exists is loaded as it is (one look at its log, not a check
    // and then a load), a new one is created and handed back loaded.
    let delta = catalog
        .table_builder(table)?
        .build()
        .map_err(delta_err(table))?
        .create()
        .with_table_name(table.name())
        .with_columns(schema.fields().cloned())
        .with_partition_columns(table.partition_columns().iter().map(|c| c.to_string()))
        .with_save_mode(SaveMode::Ignore)
        .await
        .map_err(delta_err(table))?;
    add_missing_columns(table, delta).await
}

/// Adds the nullable columns a newer release defines and a table written by an earlier
/// one lacks (`ingest_log.through_record`): a metadata-only commit.
async fn add_missing_columns(table: LakeTable, delta: DeltaTable) -> Result<DeltaTable, LakeError> {
    let Ok(current) = delta.snapshot().map(|s| s.schema()) else { return Ok(delta) };
    let wanted: StructType = table.schema().as_ref().try_into_kernel().map_err(|e| delta_err(table)(e.into()))?;
    let missing: Vec<_> = wanted
        .fields()
        .filter(|f| f.is_nullable() && current.field(f.name()).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(delta);
    }
    info!(table = table.name(), columns = missing.len(), "adding the columns this release defines");
    delta.add_columns().with_fields(missing).await.map_err(delta_err(table))
}

/// Appends rows to `access_log` (the server's record of who read what), creating it when
/// missing. A blind append: it runs beside whichever writer holds the lease (Delta retries
/// concurrent appends), and never waits for one.
pub async fn append_access_log(catalog: &Catalog, batch: RecordBatch) -> Result<(), LakeError> {
    let table = LakeTable::AccessLog;
    let delta = load_or_create(catalog, table).await?;
    append::append(delta, table, vec![batch], None).await.map_err(delta_err(table))?;
    Ok(())
}
