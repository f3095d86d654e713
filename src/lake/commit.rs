//! One batch's commit to every table, `ingest_log` last: each table by its merge policy
//! ([`MergePolicy`]), then the quarantined records, then the log. Every commit is atomic and
//! every write before the `ingest_log` commit is idempotent, so a crash anywhere leaves each
//! table as it was before or after a commit, and the next pass re-reads exactly the objects
//! not yet logged.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use deltalake::DeltaTable;
use tracing::{debug, info};

use super::erase::ErasedIds;
use super::error::{delta_err, LakeError, WriteFailure};
use super::ingest_log::IngestLog;
use super::lease::WriterLease;
use super::pass_keys::PassKeys;
use super::tables::{ingest_log_batch, quarantine_batch, Tables};
use super::upsert::{insert_quarantined, upsert_events, UpsertOutcome};
use super::work::blocking;
use super::{append, follow, merge, stored};
use crate::ingest::{IngestReport, ParsedObject};
use crate::model::{LakeTable, MergePolicy};

/// One table's rows of a batch, and the table as last committed.
struct TableRows {
    table: LakeTable,
    key: &'static str,
    batches: Vec<RecordBatch>,
    delta: DeltaTable,
}

/// What an upsert committed to one table.
struct Committed {
    /// The rows written.
    written: Vec<RecordBatch>,
    table: LakeTable,
    delta: DeltaTable,
    outcome: UpsertOutcome,
    rows: usize,
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Commits one batch of whole objects (or parts of large ones) to every table, under the
/// writer's lease; `log` learns what the `ingest_log` commit completed, `report` what each
/// commit did, `known` where the keys committed are.
pub(crate) async fn commit_batch(
    tables: &mut Tables,
    known: &mut PassKeys,
    objects: &[ParsedObject],
    log: &mut IngestLog,
    report: &mut IngestReport,
    lease: &WriterLease,
    erased: Option<&ErasedIds>,
) -> Result<(), LakeError> {
    lease.ensure_held().await?;
    let number = log.next_batch();
    debug!(objects = objects.len(), batch = number, "committing a batch");
    // Each table's rows as the objects' parts hold them: not copied into one batch.
    let mut rows: HashMap<LakeTable, Vec<RecordBatch>> = HashMap::new();
    for parsed in objects {
        for (table, batches) in &parsed.rows {
            rows.entry(*table).or_default().extend(batches.iter().cloned());
        }
    }
    if let Some(erased) = erased {
        for (table, batches) in rows.iter_mut() {
            for batch in batches.iter_mut() {
                *batch = erased.keep(*table, batch)?;
            }
        }
    }
    commit_aggregates(tables, &mut rows, report).await?;
    known.index_written();
    commit_keyed(tables, known, rows, report).await?;
    let quarantined = commit_quarantined(tables, objects, number, log, erased).await?;

    // The commit that makes the batch done: only while the lease is still this writer's.
    lease.ensure_held().await?;
    let logged_version = tables.get(LakeTable::LOGGED_VERSION_OF)?.version().unwrap_or(0) as i64;
    let committed_at = chrono::Utc::now().timestamp_micros();
    let log_rows: Vec<&ParsedObject> = objects.iter().collect();
    let log_batch = ingest_log_batch(&log_rows, logged_version, committed_at)?;
    let before = tables.get(LakeTable::IngestLog)?;
    let was = before.version();
    let next = append::append(before.clone(), LakeTable::IngestLog, vec![log_batch], Some(number))
        .await
        .map_err(delta_err(LakeTable::IngestLog))?;
    log.logged(number, was, next.version(), objects);
    tables.set(LakeTable::IngestLog, next);
    info!(
        objects = objects.len(),
        records = objects.iter().map(ParsedObject::valid_records).sum::<u64>(),
        quarantined,
        "batch committed"
    );
    Ok(())
}

/// Aggregates (every row of a conversation) replace their earlier versions whole; their
/// tables' rows are taken out of `rows`.
async fn commit_aggregates(
    tables: &mut Tables,
    rows: &mut HashMap<LakeTable, Vec<RecordBatch>>,
    report: &mut IngestReport,
) -> Result<(), LakeError> {
    let mut roots = Vec::new();
    for table in LakeTable::ALL {
        if let MergePolicy::ReplaceAggregate { root, key } = table.merge_policy() {
            if !roots.contains(&(root, key)) {
                roots.push((root, key));
            }
        }
    }
    for (root, key) in roots {
        let outcome = merge::replace_aggregates(&mut tables.0, root, key, rows)
            .await
            .map_err(|(table, e)| delta_err(table)(e))?;
        if outcome.aggregates_written + outcome.aggregates_older > 0 {
            debug!(?outcome, root = root.name(), "aggregates replaced");
        }
        report.records_upserted += outcome.aggregates_written as u64;
        for (table, n) in outcome.rows_written {
            report.commits += 1;
            *report.rows_committed.entry(table.name().to_string()).or_default() += n as u64;
            rows.remove(&table);
        }
    }
    Ok(())
}

/// Keyed rows: the latest delivery of each key wins, in the tables that decide for
/// themselves and then in the tables they decide for. Each deciding table and its
/// followers touch no other table: the groups run at once.
async fn commit_keyed(
    tables: &mut Tables,
    known: &mut PassKeys,
    mut rows: HashMap<LakeTable, Vec<RecordBatch>>,
    report: &mut IngestReport,
) -> Result<(), LakeError> {
    let mut groups = Vec::new();
    for table in LakeTable::ALL {
        let MergePolicy::UpsertLatest { key, decided_by: None, .. } = table.merge_policy() else { continue };
        let Some(batches) = rows.remove(&table) else { continue };
        let deciding = TableRows { table, key, batches, delta: tables.get(table)?.clone() };
        let mut followers = Vec::new();
        for follower in table.decides_for() {
            // A follower whose rows exist only while a column is set may have none staged
            // and still lose rows: the winners without one delete its stored row.
            let batches = match rows.remove(&follower) {
                Some(batches) => batches,
                None if follower.merge_policy().present_when().is_some() => Vec::new(),
                None => continue,
            };
            let MergePolicy::UpsertLatest { key, .. } = follower.merge_policy() else { continue };
            followers.push(TableRows { table: follower, key, batches, delta: tables.get(follower)?.clone() });
        }
        groups.push(upsert_latest(&*known, deciding, followers));
    }
    for group in futures::future::join_all(groups).await {
        let (deciding, committed) = group?;
        for Committed { table, delta, outcome, rows, written } in committed {
            tables.set(table, delta);
            known.wrote(table, &written).map_err(delta_err(table))?;
            report.commits += u64::from(outcome.committed);
            if table == deciding {
                report.files_scanned += outcome.files_scanned as u64;
                report.files_rewritten += outcome.files_removed as u64;
                report.records_upserted += rows as u64;
                *report.rows_committed.entry(table.name().to_string()).or_default() += rows as u64;
            }
        }
    }
    Ok(())
}

/// A deciding table's batch and its followers' ([`LakeTable::decides_for`]):
/// the latest delivery of each key, decided against what the deciding table holds, upserted
/// into each table, the partitions holding the keys found through `known`. Returns the
/// deciding table and what was committed to each table.
async fn upsert_latest(known: &PassKeys, deciding: TableRows, followers: Vec<TableRows>) -> Result<(LakeTable, Vec<Committed>), LakeError> {
    let TableRows { table, key, batches, delta } = deciding;
    let tie = table.merge_policy().key_hash().unwrap_or(key);
    let delivered = rows(&batches);
    // The followers' latest rows are found while the deciding table's are sorted, on
    // blocking threads: the runtime's own threads stay free for the other groups.
    let followers: Vec<_> = followers
        .into_iter()
        .map(|TableRows { table: follower, key, batches, delta }| {
            let hash = follower.merge_policy().key_hash();
            let latest = blocking(follower, move || merge::latest_by_key(&batches, key, hash));
            (follower, latest, delta)
        })
        .collect();
    let latest = blocking(table, move || merge::latest_sorted(&batches, table, key, tie)).await.map_err(delta_err(table))?;
    // Some key was delivered more than once in the batch (its latest row is one of them).
    let repeated = rows(&latest) < delivered;
    let keys = stored::key_batch(table, &latest).map_err(delta_err(table))?;
    if followers.is_empty() {
        let holding = known.partitions_holding(table, &delta, keys).await.map_err(delta_err(table))?;
        let upserts = vec![(table, latest, Some(holding), delta)];
        return Ok((table, upsert_all(upserts).await?));
    }
    let stored = known.stored_events(table, &delta, keys).await.map_err(delta_err(table))?;
    let decision = merge::decide(&latest, key, &stored).map_err(delta_err(table))?;
    let winners = decision.winners;
    // A delivery equal to the stored one was applied to the deciding table by an earlier,
    // interrupted pass: it skips that table but still goes to the others, whose commit may
    // be the one the crash prevented. Older deliveries go nowhere.
    let mut upserts = vec![(table, decision.to_write, Some(decision.replaced_partitions), delta)];
    for (follower, follower_latest, delta) in followers {
        let follower_latest = follower_latest.await.map_err(delta_err(follower))?;
        let (kept, holding) =
            follow::decided_rows(known, follower, &delta, follower_latest, &winners, &latest, repeated).await.map_err(delta_err(follower))?;
        upserts.push((follower, kept, Some(holding), delta));
    }
    Ok((table, upsert_all(upserts).await?))
}

/// A table's rows to upsert, with the partitions known to hold some of their keys.
type Upsert = (LakeTable, Vec<RecordBatch>, Option<Vec<Vec<ScalarValue>>>, DeltaTable);

/// Upserts each table's rows decided by [`upsert_latest`].
async fn upsert_all(mut upserts: Vec<Upsert>) -> Result<Vec<Committed>, LakeError> {
    // Every table's rows are decided above, so the commits are independent: they run at
    // once, each on a task of its own (so on every core). Any order of them, or a crash
    // between them, leaves what a re-run completes: ingest_log commits last.
    upserts.retain(|(_, batches, _, _)| rows(batches) > 0);
    let mut runs = Vec::new();
    for (target, batches, replaced, delta) in upserts {
        runs.push((
            target,
            tokio::spawn(async move {
                let written = batches.clone();
                let (delta, outcome) = upsert_events(delta, target, batches, replaced).await.map_err(delta_err(target))?;
                debug!(?outcome, table = target.name(), "upserted");
                Ok::<_, LakeError>(Committed { table: target, delta, outcome, rows: rows(&written), written })
            }),
        ));
    }
    let mut committed = Vec::new();
    for (target, run) in runs {
        committed.push(run.await.map_err(|e| delta_err(target)(WriteFailure::task("upserting", target)(e)))??);
    }
    Ok(committed)
}

/// Appends the batch's quarantined records (batch number `number`); how many.
async fn commit_quarantined(
    tables: &mut Tables,
    objects: &[ParsedObject],
    number: i64,
    log: &mut IngestLog,
    erased: Option<&ErasedIds>,
) -> Result<usize, LakeError> {
    let quarantined: Vec<_> = objects.iter().flat_map(|p| p.quarantined.iter().map(move |q| (&p.object, q))).collect();
    if quarantined.is_empty() {
        return Ok(0);
    }
    let delta = tables.get(LakeTable::Quarantine)?.clone();
    let mut batch = quarantine_batch(&quarantined)?;
    if let Some(erased) = erased {
        batch = erased.keep(LakeTable::Quarantine, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(0);
        }
    }
    let rows = batch.num_rows();
    let next = insert_quarantined(delta, batch, number, log.last_logged())
        .await
        .map_err(delta_err(LakeTable::Quarantine))?;
    tables.set(LakeTable::Quarantine, next);
    log.quarantined(number);
    Ok(rows)
}
