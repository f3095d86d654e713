//! The lake's tables opened by URL, read-only: what the read side (and any other reader,
//! such as a distributed executor) needs. Opening creates nothing and needs no write access;
//! a location that holds no lake is [`CatalogError::NoLake`].

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};

use crate::model::LakeTable;
use crate::storage::{has_objects_under, Location, StorageError};

/// Errors of opening the lake's tables.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("Delta table {table}: {source}")]
    Delta { table: &'static str, source: DeltaTableError },
    #[error("no cclake lake at {location}: {missing} missing (`cclake ingest --source EXPORTS --lake {location}` makes one)")]
    NoLake { location: String, missing: String },
}

/// The tables of one lake root.
#[derive(Debug, Clone)]
pub struct Catalog {
    root: Location,
}

impl Catalog {
    /// Opens the existing lake at a local path or URL: the tables of every lake (those of
    /// the first release) must have their Delta logs. A table added by a later release is
    /// created by the next ingest; until then readers see it empty ([`Catalog::snapshot`]).
    pub async fn open(location: &str) -> Result<Self, CatalogError> {
        let catalog = Self::at(Location::parse(location, false)?);
        let mut missing = Vec::new();
        for table in LakeTable::IN_EVERY_LAKE {
            if !catalog.table_exists(table).await? {
                missing.push(format!("{}/_delta_log", table.name()));
            }
        }
        if !missing.is_empty() {
            return Err(CatalogError::NoLake { location: location.to_string(), missing: missing.join(", ") });
        }
        Ok(catalog)
    }

    /// The tables under `root`, unchecked (the writer creates them).
    pub(crate) fn at(root: Location) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Location {
        &self.root
    }

    /// Whether `table` has a Delta log under the root. Reads a listing; creates nothing.
    pub async fn table_exists(&self, table: LakeTable) -> Result<bool, CatalogError> {
        Ok(has_objects_under(&self.root, &[table.name(), "_delta_log"]).await?)
    }

    pub fn table_builder(&self, table: LakeTable) -> Result<DeltaTableBuilder, CatalogError> {
        let delta = |source| CatalogError::Delta { table: table.name(), source };
        let location = self.root.join(table.name());
        let mut builder = DeltaTableBuilder::from_url(location.url().clone()).map_err(delta)?;
        if location.is_memory() {
            let (store, _) = location.object_store()?;
            builder = builder.with_storage_backend(store, location.url().clone());
        }
        Ok(builder)
    }

    /// The newest snapshot of one table, or none when the table has not been created yet.
    pub async fn snapshot(&self, table: LakeTable) -> Result<Option<DeltaTable>, CatalogError> {
        if !self.table_exists(table).await? {
            return Ok(None);
        }
        self.table(table).await.map(Some)
    }

    /// The newest snapshot of every table of the lake ([`Catalog::snapshot`]), loaded
    /// concurrently: on object storage each is a few round trips.
    pub async fn snapshots(&self) -> Result<Vec<(LakeTable, Option<DeltaTable>)>, CatalogError> {
        futures::future::try_join_all(
            LakeTable::ALL.into_iter().map(|table| async move { Ok((table, self.snapshot(table).await?)) }),
        )
        .await
    }

    /// The newest snapshot of one table.
    pub async fn table(&self, table: LakeTable) -> Result<DeltaTable, CatalogError> {
        self.table_builder(table)?
            .load()
            .await
            .map_err(|source| CatalogError::Delta { table: table.name(), source })
    }
}
