//! Who read what: every query a client runs is recorded in the lake's `access_log` table
//! (auditors only) with its user, role, time, statement text (literals kept: they are what an
//! auditor looks for), the tables it read, the rows and bytes it returned, how long it took
//! and how it ended.
//!
//! Never on the query's path: a query hands its entry to a channel and goes on; a task
//! appends what gathered every [`FLUSH_EVERY`] (and when the server stops). A crash loses at
//! most the entries of the last interval. When the channel is full (the store is down or
//! slow), entries are dropped and the count is logged, rather than queries waiting.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Utc};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::access::Principal;
use crate::catalog::Catalog;
use crate::lake::append_access_log;
use crate::model::LakeTable;

/// How often gathered entries are appended.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Entries waiting to be appended, at most.
const QUEUED: usize = 100_000;

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused or failed, with the message the client got.
    Failed(String),
    /// The client went away before the last row.
    Cancelled,
}

/// One query, as recorded.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub at: DateTime<Utc>,
    pub user: String,
    pub role: &'static str,
    pub statement: String,
    pub tables: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    pub outcome: Outcome,
    pub duration: Duration,
}

/// The sending side, shared by every RPC; a disabled one records nothing.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    sender: Option<mpsc::Sender<AccessEntry>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts the task that appends entries to `catalog`'s `access_log`; it ends, after a
    /// last append, once every [`AccessLog`] clone is dropped.
    pub fn start(catalog: Catalog) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUED);
        let log = Self { sender: Some(sender), dropped: Arc::default() };
        let task = tokio::spawn(append_gathered(catalog, receiver, Arc::clone(&log.dropped)));
        (log, task)
    }

    /// Records a query; never waits.
    pub fn record(&self, entry: AccessEntry) {
        if let Some(sender) = &self.sender {
            if sender.try_send(entry).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An entry begun now for `principal`'s `statement` over `tables`, recorded when the
    /// returned guard is dropped (as cancelled, unless it was finished first).
    pub fn begin(&self, principal: &Principal, statement: &str, tables: Vec<String>) -> QueryRecord {
        QueryRecord {
            log: self.clone(),
            started: Instant::now(),
            entry: Some(AccessEntry {
                at: Utc::now(),
                user: principal.user.clone(),
                role: principal.role.as_str(),
                statement: statement.to_string(),
                tables,
                rows: 0,
                bytes: 0,
                outcome: Outcome::Cancelled,
                duration: Duration::ZERO,
            }),
        }
    }
}

/// A query being answered: counts what it returns, and records itself when dropped.
#[derive(Debug)]
pub struct QueryRecord {
    log: AccessLog,
    started: Instant,
    entry: Option<AccessEntry>,
}

impl QueryRecord {
    pub fn returned(&mut self, rows: usize, bytes: usize) {
        if let Some(entry) = &mut self.entry {
            entry.rows += rows as u64;
            entry.bytes += bytes as u64;
        }
    }

    pub fn ended(&mut self, outcome: Outcome) {
        if let Some(entry) = &mut self.entry {
            entry.outcome = outcome;
        }
    }
}

impl Drop for QueryRecord {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.duration = self.started.elapsed();
            self.log.record(entry);
        }
    }
}

/// The lake tables `plan` reads (views resolved to their tables), sorted.
pub fn tables_read(plan: &LogicalPlan) -> Vec<String> {
    let mut tables = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.insert(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables.into_iter().collect()
}

async fn append_gathered(catalog: Catalog, mut receiver: mpsc::Receiver<AccessEntry>, dropped: Arc<AtomicU64>) {
    let mut open = true;
    while open {
        let mut gathered = Vec::new();
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        loop {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some(entry) => gathered.push(entry),
                    None => { open = false; break; }
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            warn!(entries = lost, "access log entries dropped: the store did not keep up");
        }
        if gathered.is_empty() {
            continue;
        }
        let appended = match batch(&gathered) {
            Ok(batch) => append_access_log(&catalog, batch).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = appended {
            error!(entries = gathered.len(), error = %e, "access log entries could not be appended");
        }
    }
}

fn batch(entries: &[AccessEntry]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: &dyn Fn(&AccessEntry) -> Option<String>| Arc::new(entries.iter().map(f).collect::<StringArray>()) as ArrayRef;
    let number = |f: &dyn Fn(&AccessEntry) -> i64| Arc::new(entries.iter().map(f).collect::<Int64Array>()) as ArrayRef;
    let columns = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(entries.iter().map(|e| e.at.timestamp_micros())).with_timezone("UTC")) as ArrayRef,
        Arc::new(Date32Array::from_iter_values(entries.iter().map(|e| (e.at.timestamp().div_euclid(86_400)) as i32))),
        text(&|e| Some(e.user.clone())),
        text(&|e| Some(e.role.to_string())),
        text(&|_| Some("flight-sql".to_string())),
        text(&|e| Some(e.statement.clone())),
        text(&|e| (!e.tables.is_empty()).then(|| e.tables.join(","))),
        number(&|e| e.rows as i64),
        number(&|e| e.bytes as i64),
        text(&|e| {
            Some(match e.outcome {
                Outcome::Ok => "ok",
                Outcome::Failed(_) => "failed",
                Outcome::Cancelled => "cancelled",
            }
            .to_string())
        }),
        text(&|e| match &e.outcome {
            Outcome::Failed(message) => Some(message.clone()),
            _ => None,
        }),
        number(&|e| e.duration.as_millis() as i64),
    ];
    RecordBatch::try_new(LakeTable::AccessLog.schema(), columns)
}
