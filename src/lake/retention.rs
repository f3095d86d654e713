//! How long data and history are kept: `retain` drops the rows of every dated table past a
//! horizon (whole date partitions, removed from the Delta log without rewriting a file),
//! `vacuum` deletes the files no snapshot within a retention needs (Delta VACUUM: only files
//! the log removed longer ago than the retention, never a file of the newest snapshot).
//!
//! Both run under the writer lease and commit through delta-rs, so a reader sees the lake
//! before or after each table's commit. Vacuum records itself in each table's log (`VACUUM
//! START` with the retention it was given): that record is what
//! [`crate::query::as_of::vacuum_horizon`] reads to
//! refuse a report "as of" a time whose files are gone.

use std::time::Duration;

use chrono::NaiveDate;
use deltalake::kernel::transaction::CommitProperties;
use serde_json::json;
use tracing::{info, warn};

use crate::model::LakeTable;
use super::error::{delta_err, LakeError};
use super::tables::Tables;
use super::{Lake, Writer};

/// The date column a table's rows are dropped by, and whether it is a partition column
/// (dropping whole files) or read from each row (quarantine: the time its object was
/// delivered). `ingest_log` is kept: it holds no customer data, and without it the next
/// pass would read the dropped exports again.
pub(crate) fn retention_column(table: LakeTable) -> Option<(&'static str, bool)> {
    match table {
        LakeTable::Quarantine => Some(("source_modified_at", false)),
        _ => table.partition_columns().first().filter(|c| c.ends_with("_date")).map(|c| (*c, true)),
    }
}

/// What `retain` removed from each table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainReport {
    pub before: NaiveDate,
    /// Per table: files removed and rows deleted (when delta-rs knows the count).
    pub tables: Vec<(LakeTable, usize, Option<usize>)>,
}

impl std::fmt::Display for RetainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dropped rows dated before {}", self.before)?;
        for (table, files, rows) in &self.tables {
            let rows = rows.map_or_else(|| "whole files".to_string(), |n| format!("{n} rows"));
            write!(f, "\n{}: {files} files removed ({rows})", table.name())?;
        }
        Ok(())
    }
}

/// What `vacuum` deleted (or, in a dry run, would delete) from each table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    pub dry_run: bool,
    pub retain: Duration,
    pub tables: Vec<(LakeTable, Vec<String>)>,
}

impl std::fmt::Display for VacuumReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        let total: usize = self.tables.iter().map(|(_, files)| files.len()).sum();
        write!(f, "vacuum {verb} {total} files no snapshot of the last {} needs", days_or_seconds(self.retain))?;
        for (table, files) in &self.tables {
            write!(f, "\n{}: {} files", table.name(), files.len())?;
            if self.dry_run {
                for file in files {
                    write!(f, "\n  {file}")?;
                }
            }
        }
        Ok(())
    }
}

/// `7d`, `12h` or `90s`: a retention as the command line takes it.
fn days_or_seconds(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

impl Lake {
    /// Drops every row dated before `before` from the dated tables (`cclake retain`), one
    /// commit per table that holds any, logged in the commit (`cclake.retain`).
    pub async fn retain(&self, before: NaiveDate) -> Result<RetainReport, LakeError> {
        let mut writer = self.writer.lock().await;
        let lease = self.lease("retain").await?;
        let outcome = async {
            let mut tables = self.load_tables(writer.tables.take()).await?;
            let mut report = RetainReport { before, tables: Vec::new() };
            for table in LakeTable::ALL {
                let Some((column, _)) = retention_column(table) else { continue };
                lease.ensure_held().await?;
                let delta = tables.get(table)?.clone();
                if delta.version().is_none() {
                    continue;
                }
                let predicate = format!("{column} < '{before}'");
                let properties = CommitProperties::default()
                    .with_metadata([("cclake.retain".to_string(), json!({ "before": before.to_string() }))]);
                let (next, metrics) = delta
                    .delete()
                    .with_predicate(predicate)
                    .with_commit_properties(properties)
                    .await
                    .map_err(delta_err(table))?;
                if metrics.num_removed_files > 0 {
                    info!(table = table.name(), files = metrics.num_removed_files, before = %before, "retention dropped old rows");
                    report.tables.push((table, metrics.num_removed_files, metrics.num_deleted_rows));
                }
                tables.set(table, next);
            }
            Ok::<_, LakeError>((report, tables))
        }
        .await;
        let outcome = self.keep_tables(&mut writer, outcome);
        lease.release().await;
        outcome
    }

    /// Deletes the files of every table that no snapshot of the last `retain` needs (`cclake
    /// vacuum`); with `dry_run`, only says which. A retention of zero is allowed (after an
    /// erasure it is the point), but readers holding an older snapshot then fail.
    pub async fn vacuum(&self, retain: Duration, dry_run: bool) -> Result<VacuumReport, LakeError> {
        if retain.is_zero() && !dry_run {
            warn!("vacuum with a retention of 0: queries running on an older snapshot will fail, and no report can be run as of an earlier time");
        }
        let mut writer = self.writer.lock().await;
        let lease = self.lease("vacuum").await?;
        let outcome = async {
            let mut tables = self.load_tables(writer.tables.take()).await?;
            let mut report = VacuumReport { dry_run, retain, tables: Vec::new() };
            let period = chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
            for table in LakeTable::ALL {
                lease.ensure_held().await?;
                let delta = tables.get(table)?.clone();
                if delta.version().is_none() {
                    continue;
                }
                let (next, metrics) = delta
                    .vacuum()
                    .with_retention_period(period)
                    .with_enforce_retention_duration(false)
                    .with_dry_run(dry_run)
                    .await
                    .map_err(delta_err(table))?;
                report.tables.push((table, metrics.files_deleted));
                tables.set(table, next);
            }
            Ok::<_, LakeError>((report, tables))
        }
        .await;
        let outcome = self.keep_tables(&mut writer, outcome);
        lease.release().await;
        outcome
    }

    /// Keeps the tables an operation left for the writer's next pass (on failure the next
    /// pass loads them again). What the writer knew of `ingest_log` is read again by the next
    /// pass: these operations are rare, and a stale view of the log would re-ingest objects.
    pub(super) fn keep_tables<R>(&self, writer: &mut Writer, outcome: Result<(R, Tables), LakeError>) -> Result<R, LakeError> {
        writer.ingest_log = None;
        let (report, tables) = outcome?;
        writer.tables = Some(tables);
        Ok(report)
    }
}
