//! Reports "as of" a past state of the lake: every table a query reads pinned to what it held
//! at a time, or at a lake version.
//!
//! A lake version is a version of `ingest_log`: each ingest batch commits it last, after the
//! batch's other tables, so its commits mark the states a reader could have seen between
//! batches. Version `v` means "the lake when `ingest_log` version `v` was committed", and every
//! table is pinned to its newest commit no later than that (Delta's own timestamp, the commit
//! file's time). A time before a vacuum's horizon is refused: the files of that state may be
//! gone, and an empty or partial answer must never pass for the old report.

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use object_store::ObjectStoreExt;

use crate::catalog::Catalog;
use crate::model::LakeTable;

/// The Flight SQL call header that pins a query (ADBC:
/// `adbc.flight.sql.rpc.call_header.cclake-as-of`; JDBC: a connection property of that name).
pub const AS_OF_HEADER: &str = "cclake-as-of";

/// A past state of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsOf {
    /// A version of `ingest_log` (see the module's note).
    Version(i64),
    Time(DateTime<Utc>),
}

/// Why a query cannot be answered as of the state asked for.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error("'{0}' is neither a lake version (a whole number) nor an RFC 3339 time (2024-03-05T12:00:00Z)")]
    Unreadable(String),
    #[error("the lake has no version {version} (its ingest_log is at version {newest})")]
    NoSuchVersion { version: i64, newest: i64 },
    #[error("the lake held nothing yet at {time} (its first commit is later)")]
    BeforeTheLake { time: DateTime<Utc> },
    #[error("the history of table {table} as of {time} is no longer kept (its older log entries expired)")]
    HistoryExpired { time: DateTime<Utc>, table: &'static str },
    #[error("{time} is before the vacuum horizon of table {table} ({horizon}): the files of that state are deleted; ask for a later time")]
    Vacuumed { time: DateTime<Utc>, table: &'static str, horizon: DateTime<Utc> },
    #[error("cannot read table {table} as of {time}: {source}")]
    Delta { table: &'static str, time: DateTime<Utc>, source: deltalake::DeltaTableError },
}

impl std::str::FromStr for AsOf {
    type Err = AsOfError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(version) = text.parse::<i64>() {
            if version >= 0 {
                return Ok(AsOf::Version(version));
            }
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| AsOf::Time(t.with_timezone(&Utc)))
            .map_err(|_| AsOfError::Unreadable(text.to_string()))
    }
}

impl AsOf {
    /// The time this state stands for: a version is its `ingest_log` commit's time.
    async fn time(&self, catalog: &Catalog) -> Result<DateTime<Utc>, AsOfError> {
        match *self {
            AsOf::Time(time) => Ok(time),
            AsOf::Version(version) => match commit_time(catalog, LakeTable::IngestLog, version).await? {
                Some(time) => Ok(time),
                None => {
                    let newest = catalog.table(LakeTable::IngestLog).await.map_err(catalog_err(LakeTable::IngestLog, Utc::now()))?;
                    Err(AsOfError::NoSuchVersion { version, newest: newest.version().map_or(-1, |v| v as i64) })
                }
            },
        }
    }

    /// Every table of the lake as it stood at this state (none for a table created later),
    /// refused when a vacuum since deleted files of that state.
    pub async fn snapshots(&self, catalog: &Catalog) -> Result<Vec<(LakeTable, Option<DeltaTable>)>, AsOfError> {
        let time = self.time(catalog).await?;
        let pinned = LakeTable::ALL.into_iter().map(|table| async move {
            let Some(newest) = catalog.snapshot(table).await.map_err(catalog_err(table, time))? else {
                return Ok((table, None));
            };
            if let Some(horizon) = vacuum_horizon(&newest).await.map_err(|source| AsOfError::Delta { table: table.name(), time, source })? {
                if time < horizon {
                    return Err(AsOfError::Vacuumed { time, table: table.name(), horizon });
                }
            }
            let pinned = catalog
                .table_builder(table)
                .map_err(catalog_err(table, time))?
                .with_timestamp(time)
                .load()
                .await
                .map_err(|source| AsOfError::Delta { table: table.name(), time, source })?;
            // delta-rs gives the oldest version it knows for a time before it: check.
            let version = pinned.version().map_or(0, |v| v as i64);
            let committed = commit_time(catalog, table, version).await?;
            if committed.is_some_and(|at| at.timestamp_millis() <= time.timestamp_millis()) {
                Ok((table, Some(pinned)))
            } else if version == 0 && !LakeTable::IN_EVERY_LAKE.contains(&table) {
                // Made by a later release's first ingest: empty then.
                Ok((table, None))
            } else if version == 0 {
                Err(AsOfError::BeforeTheLake { time })
            } else {
                Err(AsOfError::HistoryExpired { time, table: table.name() })
            }
        });
        futures::future::try_join_all(pinned).await
    }
}

fn catalog_err(table: LakeTable, time: DateTime<Utc>) -> impl FnOnce(crate::catalog::CatalogError) -> AsOfError {
    move |e| AsOfError::Delta { table: table.name(), time, source: deltalake::DeltaTableError::Generic(e.to_string()) }
}

/// When `version` of `table` was committed: its commit file's time, as Delta's time travel
/// reads it (none when the log no longer holds it).
async fn commit_time(catalog: &Catalog, table: LakeTable, version: i64) -> Result<Option<DateTime<Utc>>, AsOfError> {
    let storage = |e: &dyn std::fmt::Display| AsOfError::Delta {
        table: table.name(),
        time: Utc::now(),
        source: deltalake::DeltaTableError::Generic(e.to_string()),
    };
    let (store, base) = catalog.root().join(table.name()).object_store().map_err(|e| storage(&e))?;
    let path = base.join("_delta_log").join(format!("{version:020}.json").as_str());
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.last_modified)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(storage(&e)),
    }
}

/// The oldest time a snapshot of `delta` can still be read whole: the latest vacuum's start
/// minus the retention it was given (from the table's own log), or none when it was never
/// vacuumed.
pub async fn vacuum_horizon(delta: &DeltaTable) -> Result<Option<DateTime<Utc>>, deltalake::DeltaTableError> {
    use futures::StreamExt;
    let mut history = delta.history(None);
    while let Some(commit) = history.next().await {
        let commit = commit?;
        if commit.operation.as_deref() != Some("VACUUM START") {
            continue;
        }
        let parameters = commit.operation_parameters.unwrap_or_default();
        let retention_ms = parameters
            .get("specifiedRetentionMillis")
            .or_else(|| parameters.get("defaultRetentionMillis"))
            .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(0);
        let started = commit.timestamp.and_then(DateTime::from_timestamp_millis);
        return Ok(started.map(|t| t - chrono::Duration::milliseconds(retention_ms)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_times_are_read_and_anything_else_is_refused() {
        assert_eq!("12".parse::<AsOf>().unwrap(), AsOf::Version(12));
        let t: AsOf = "2024-03-05T12:00:00+01:00".parse().unwrap();
        assert_eq!(t, AsOf::Time(DateTime::parse_from_rfc3339("2024-03-05T11:00:00Z").unwrap().with_timezone(&Utc)));
        for bad in ["-1", "yesterday", "2024-03-05", ""] {
            let error = bad.parse::<AsOf>().unwrap_err().to_string();
            assert!(error.contains("RFC 3339"), "{bad}: {error}");
        }
    }
}
