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
use deltalake::operations::delete::DeleteMetrics;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{col, lit, Expr};
use serde_json::json;
use tracing::{info, warn};

use crate::model::LakeTable;
use super::error::{delta_err, LakeError};
use super::tables::Tables;
use super::lease::WriterLease;
use super::Lake;

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
        self.upkeep("retain", async |mut tables: Tables, lease: &WriterLease| {
            let mut report = RetainReport { before, tables: Vec::new() };
            let metadata = ("cclake.retain", json!({ "before": before.to_string() }));
            for table in LakeTable::ALL {
                let Some((column, _)) = retention_column(table) else { continue };
                lease.ensure_held().await?;
                let Some(metrics) = delete_where(&mut tables, table, older_than(table, column, before), &metadata).await? else { continue };
                if metrics.num_removed_files > 0 {
                    info!(table = table.name(), files = metrics.num_removed_files, before = %before, "retention dropped old rows");
                    report.tables.push((table, metrics.num_removed_files, metrics.num_deleted_rows));
                }
            }
            Ok((report, tables))
        })
        .await
    }

    /// Deletes the files of every table that no snapshot of the last `retain` needs (`cclake
    /// vacuum`); with `dry_run`, only says which. A retention of zero is allowed (after an
    /// erasure it is the point), but readers holding an older snapshot then fail.
    pub async fn vacuum(&self, retain: Duration, dry_run: bool) -> Result<VacuumReport, LakeError> {
        if retain.is_zero() && !dry_run {
            warn!("vacuum with a retention of 0: queries running on an older snapshot will fail, and no report can be run as of an earlier time");
        }
        self.upkeep("vacuum", async |mut tables: Tables, lease: &WriterLease| {
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
            Ok((report, tables))
        })
        .await
    }

    /// Runs `work` on the lake's tables under the writer lease (`operation` names it to other
    /// writers), and keeps the tables it leaves for the writer's next pass (on failure the
    /// next pass loads them again). What the writer knew of `ingest_log` is read again by the
    /// next pass: these operations are rare, and a stale view of the log would re-ingest
    /// objects.
    pub(super) async fn upkeep<R>(
        &self,
        operation: &str,
        work: impl AsyncFnOnce(Tables, &WriterLease) -> Result<(R, Tables), LakeError>,
    ) -> Result<R, LakeError> {
        let mut writer = self.writer.lock().await;
        let lease = self.lease(operation).await?;
        let outcome = match self.load_tables(writer.tables.take()).await {
            Ok(tables) => work(tables, &lease).await,
            Err(e) => Err(e),
        };
        writer.ingest_log = None;
        let outcome = outcome.map(|(report, tables)| {
            writer.tables = Some(tables);
            report
        });
        lease.release().await;
        outcome
    }
}

/// `column < before`, `before` as a value of the column's type (a date, or the day's first
/// microsecond, UTC).
fn older_than(table: LakeTable, column: &str, before: NaiveDate) -> Expr {
    let days = (before - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days();
    let is_date = table.schema().field_with_name(column).is_ok_and(|f| f.data_type() == &arrow::datatypes::DataType::Date32);
    let horizon = if is_date {
        ScalarValue::Date32(Some(days as i32))
    } else {
        ScalarValue::TimestampMicrosecond(Some(days * 86_400_000_000), Some("UTC".into()))
    };
    col(column).lt(lit(horizon))
}

/// Deletes the rows of `table` matching `predicate` in one commit carrying `metadata` (the
/// operation's record); none when the table was never written.
pub(super) async fn delete_where(
    tables: &mut Tables,
    table: LakeTable,
    predicate: Expr,
    metadata: &(&str, serde_json::Value),
) -> Result<Option<DeleteMetrics>, LakeError> {
    let delta = tables.get(table)?.clone();
    if delta.version().is_none() {
        return Ok(None);
    }
    let properties = CommitProperties::default().with_metadata([(metadata.0.to_string(), metadata.1.clone())]);
    let (next, metrics) = delta
        .delete()
        .with_predicate(predicate)
        .with_commit_properties(properties)
        .await
        .map_err(delta_err(table))?;
    tables.set(table, next);
    Ok(Some(metrics))
}
