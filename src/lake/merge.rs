//! The merge policies of [`crate::model::MergePolicy`] applied to rows of any table, read
//! from the table definitions: latest delivery per key within a batch, what a stored delivery
//! decides for a batch's rows ([`decide`]), and the replacement of whole aggregates (every
//! row of a conversation in every table of it).
//!
//! Replacing an aggregate, for the keys of one commit batch:
//! 1. keep each key's latest delivery in the batch ([`Delivery`]'s order);
//! 2. read the stored delivery of those keys from the root table (`conversations`); a batch
//!    delivery older than the stored one goes nowhere, an equal one is applied again (an
//!    interrupted pass may have written only some of the aggregate's tables);
//! 3. in each table of the aggregate, one Delta commit (`replaceWhere` on exactly the
//!    partitions involved) rewrites those partitions without any row of those keys (an
//!    anti-join with the keys, never a literal list of them) and with the new rows: no row of
//!    an earlier version stays, whatever order the versions were read in.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::logical_expr::{col, Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};

use super::append::append;
use super::error::WriteFailure;
use super::stored::{keys, partition_values, stored_deliveries, DeliveryColumns, StoredEvent};
use super::work::{blocking, cores, share_out};
use super::writing::writer_properties;
use crate::model::{Delivery, LakeTable};

/// The row (batch, row) of each `key`'s latest delivery among `batches` (a tie keeps the
/// first row), in the batches' order. With `hash`, the column of the key's hash
/// ([`crate::model::key_hash`]), rows are told apart by their hashes, 8 bytes each, and their
/// keys compared only when hashes meet (a delivery of a key seen before); should two keys
/// share a hash, the keys themselves decide.
fn latest_rows(batches: &[RecordBatch], key: &str, hash: Option<&str>) -> Result<Vec<(usize, usize)>, DeltaTableError> {
    let ids = batches.iter().map(|b| keys(b, key)).collect::<Result<Vec<_>, _>>()?;
    let deliveries = batches.iter().map(DeliveryColumns::of).collect::<Result<Vec<_>, _>>()?;
    let newer = |(b, i): (usize, usize), (k, j): (usize, usize)| deliveries[b].get(i) > deliveries[k].get(j);
    if let Some(hashes) = hash.map(|hash| hash_values(batches, hash)).transpose()?.flatten() {
        let same_key = |(b, i): (usize, usize), (k, j): (usize, usize)| ids[b].value(i) == ids[k].value(j);
        if let Some(latest) = best_rows(batches, |b, i| hashes[b][i], same_key, newer) {
            return Ok(latest);
        }
    }
    // One entry per key: DataFusion's map (foldhash) hashes short keys several times faster
    // than the standard library's SipHash.
    Ok(best_rows(batches, |b, i| ids[b].value(i), |_, _| true, newer).unwrap_or_else(|| unreachable!("a key is always the same as itself")))
}

/// Each batch's `hash` column, when every batch has one without nulls.
fn hash_values<'b>(batches: &'b [RecordBatch], hash: &str) -> Result<Option<Vec<&'b [i64]>>, DeltaTableError> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let mut hashes = Vec::with_capacity(batches.len());
    for batch in batches {
        match batch.column(batch.schema().index_of(hash)?).as_primitive_opt::<Int64Type>() {
            Some(values) if values.null_count() == 0 => hashes.push(&values.values()[..]),
            _ => return Ok(None),
        }
    }
    Ok(Some(hashes))
}

/// The row (batch, row) that is `newer` than every other row of its key, keys given by
/// `key_at`, in the batches' order; `None` when two rows of one key are not `same` (keys
/// given as hashes that collide).
fn best_rows<K: std::hash::Hash + Eq>(
    batches: &[RecordBatch],
    key_at: impl Fn(usize, usize) -> K,
    same: impl Fn((usize, usize), (usize, usize)) -> bool,
    newer: impl Fn((usize, usize), (usize, usize)) -> bool,
) -> Option<Vec<(usize, usize)>> {
    use datafusion::common::hash_map::Entry;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut best: datafusion::common::HashMap<K, (usize, usize)> = datafusion::common::HashMap::with_capacity(rows);
    for (b, batch) in batches.iter().enumerate() {
        for i in 0..batch.num_rows() {
            match best.entry(key_at(b, i)) {
                Entry::Vacant(new) => {
                    new.insert((b, i));
                }
                Entry::Occupied(mut seen) => {
                    let kept = *seen.get();
                    if !same(kept, (b, i)) {
                        return None;
                    }
                    if newer((b, i), kept) {
                        seen.insert((b, i));
                    }
                }
            }
        }
    }
    if best.len() == rows {
        return Some(batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |i| (b, i))).collect());
    }
    let mut kept: Vec<(usize, usize)> = best.into_values().collect();
    kept.sort_unstable();
    Some(kept)
}

/// Rows gathered by one thread before [`gather`] shares the columns out between threads.
const ROWS_PER_GATHER_THREAD: usize = 64 * 1024;

/// Rows `at` of `batches`, as one batch of `table`'s schema: one copy. A large gather shares
/// the columns out between the machine's cores (the commit has nothing else to run then),
/// each column whole to one thread, the columns' sizes balanced.
fn gather(batches: &[RecordBatch], table: LakeTable, at: &[(usize, usize)]) -> Result<RecordBatch, DeltaTableError> {
    let Some(first) = batches.first() else { return Ok(RecordBatch::new_empty(table.schema())) };
    let width = first.num_columns();
    let threads = (at.len() / ROWS_PER_GATHER_THREAD).min(width);
    // The core count is looked up once (it reads cgroup files), and only for large gathers.
    let threads = if threads > 1 { threads.min(cores()) } else { threads };
    if threads <= 1 {
        let sources: Vec<&RecordBatch> = batches.iter().collect();
        return Ok(arrow::compute::interleave_record_batch(&sources, at)?);
    }
    let column = |c: usize| {
        let sources: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
        arrow::compute::interleave(&sources, at)
    };
    // Columns balanced by size between the threads.
    let size = |c: usize| batches.iter().map(|b| b.column(c).get_buffer_memory_size()).sum::<usize>();
    let shares = share_out((0..width).map(|c| (size(c), c)).collect(), threads);
    let mut columns: Vec<Option<Arc<dyn Array>>> = vec![None; width];
    std::thread::scope(|scope| -> Result<(), DeltaTableError> {
        let runs: Vec<_> = shares
            .iter()
            .map(|share| scope.spawn(|| share.iter().map(|&c| Ok((c, column(c)?))).collect::<Result<Vec<_>, DeltaTableError>>()))
            .collect();
        for run in runs {
            let gathered = run.join().map_err(|_| WriteFailure::Thread { step: "gathering rows", table: table.name() })??;
            for (c, array) in gathered {
                columns[c] = Some(array);
            }
        }
        Ok(())
    })?;
    let columns = columns.into_iter().flatten().collect();
    Ok(RecordBatch::try_new(first.schema(), columns)?)
}

/// At most one row per `key` among `batches` (a tie keeps the first row), in the batches'
/// order, batch by batch: a batch keeps its rows without a copy when they all win.
pub(super) fn latest_by_key(batches: &[RecordBatch], key: &str, hash: Option<&str>) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let latest = latest_rows(batches, key, hash)?;
    let all: Vec<usize> = (0..batches.len()).collect();
    kept_batches(batches, &all, &rows_by_batch(&latest, batches.len()))
}

/// Rows (batch, row) in the batches' order, split by batch.
fn rows_by_batch(rows: &[(usize, usize)], batches: usize) -> Vec<&[(usize, usize)]> {
    let mut by_batch: Vec<&[(usize, usize)]> = vec![&[]; batches];
    for run in rows.chunk_by(|x, y| x.0 == y.0) {
        by_batch[run[0].0] = run;
    }
    by_batch
}

/// The batches (their positions) of each partition of `table`, in the order of each
/// partition's first batch, when every batch holds one partition only (as an object's
/// parse yields them, [`crate::ingest::rows::TableRows`]); `None` when one does not.
fn batches_by_partition(batches: &[RecordBatch], table: LakeTable) -> Result<Option<Vec<Vec<usize>>>, DeltaTableError> {
    let columns = table.partition_columns();
    let mut partitions: indexmap::IndexMap<Vec<ScalarValue>, Vec<usize>> = indexmap::IndexMap::new();
    for (b, batch) in batches.iter().enumerate().filter(|(_, b)| b.num_rows() > 0) {
        let values = columns.iter().map(|c| Ok(Arc::clone(batch.column(batch.schema().index_of(c)?)))).collect::<Result<Vec<_>, DeltaTableError>>()?;
        if !values.is_empty() && arrow::compute::partition(&values)?.len() > 1 {
            return Ok(None);
        }
        let key = values.iter().map(|a| ScalarValue::try_from_array(a, 0)).collect::<Result<Vec<_>, _>>()?;
        partitions.entry(key).or_default().push(b);
    }
    Ok(Some(partitions.into_values().collect()))
}

/// `at` (rows of `batches`) ordered by the table's partition columns, then its sort columns
/// and then `tie`, compared as one byte string per row in Arrow's row format: a plain sort
/// of indices, without a dynamic comparator per column and comparison.
fn sort_rows(batches: &[RecordBatch], table: LakeTable, tie: &str, at: &mut Vec<(usize, usize)>) -> Result<(), DeltaTableError> {
    let schema = table.schema();
    let columns: Vec<usize> = table
        .partition_columns()
        .iter()
        .chain(table.sort_columns())
        .chain(std::iter::once(&tie))
        .filter_map(|c| schema.index_of(c).ok())
        .collect();
    if columns.is_empty() || at.len() < 2 {
        return Ok(());
    }
    let fields = columns.iter().map(|&c| SortField::new(schema.field(c).data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let used: BTreeSet<usize> = at.iter().map(|&(b, _)| b).collect();
    let mut encoded = converter.empty_rows(at.len(), at.len() * 16);
    let mut starts = vec![0; batches.len()];
    for &b in &used {
        starts[b] = encoded.num_rows();
        let values: Vec<_> = columns.iter().map(|&c| Arc::clone(batches[b].column(c))).collect();
        converter.append(&mut encoded, &values)?;
    }
    // Rows are distinct after the key: an unstable sort orders them all the same.
    let mut order: Vec<(&[u8], (usize, usize))> = at.iter().map(|&(b, i)| (encoded.row(starts[b] + i).data(), (b, i))).collect();
    order.sort_unstable_by(|x, y| x.0.cmp(y.0));
    *at = order.into_iter().map(|(_, at)| at).collect();
    Ok(())
}

/// The latest delivery of each `key` among `batches` (a tie keeps the first row), as
/// batches that each hold one partition's rows ([`super::append`] writes each partition's
/// batches to its files as they are).
///
/// A partition whose rows fill more than one Parquet page of the sort column
/// ([`WriterProperties::data_page_row_count_limit`], 20,000 rows) is sorted by the table's
/// sort columns, then `tie` (the key or its hash), and copied once into one batch: its file
/// then has pages (and row groups) of disjoint time ranges, which page and row-group
/// statistics prune. A smaller partition is written as its rows arrived, without a copy: its
/// file holds one page per column, whose statistics do not depend on the order of its rows
/// (compaction sorts a partition's files when it merges them). Batches that each hold one
/// partition (an object's, as parsed) are kept as they are; any others are sorted and
/// copied whole.
///
/// [`WriterProperties::data_page_row_count_limit`]: deltalake::parquet::file::properties::WriterProperties::data_page_row_count_limit
pub(super) fn latest_sorted(batches: &[RecordBatch], table: LakeTable, key: &str, tie: &str) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let mut latest = latest_rows(batches, key, table.merge_policy().key_hash())?;
    let Some(partitions) = batches_by_partition(batches, table)? else {
        sort_rows(batches, table, tie, &mut latest)?;
        return Ok(vec![gather(batches, table, &latest)?]);
    };
    let sort_above = if table.sort_columns().is_empty() { usize::MAX } else { writer_properties(table).data_page_row_count_limit() };
    let by_batch = rows_by_batch(&latest, batches.len());
    let mut out = Vec::with_capacity(batches.len());
    for partition in partitions {
        let mut rows: Vec<(usize, usize)> = partition.iter().flat_map(|&b| by_batch[b].iter().copied()).collect();
        if rows.len() > sort_above {
            sort_rows(batches, table, tie, &mut rows)?;
            out.push(gather(batches, table, &rows)?);
        } else {
            out.extend(kept_batches(batches, &partition, &by_batch)?);
        }
    }
    Ok(out)
}

/// The batches at `positions`, each cut down to its kept rows (`by_batch`): a batch that
/// keeps every row is shared as it is, the others are copied (their kept rows only), and
/// those that keep none are left out.
fn kept_batches(batches: &[RecordBatch], positions: &[usize], by_batch: &[&[(usize, usize)]]) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let mut out = Vec::with_capacity(positions.len());
    for &b in positions {
        let (batch, kept) = (&batches[b], by_batch[b]);
        if kept.len() == batch.num_rows() {
            out.push(batch.clone());
        } else if !kept.is_empty() {
            let rows: arrow::array::UInt32Array = kept.iter().map(|&(_, i)| i as u32).collect();
            out.push(arrow::compute::take_record_batch(batch, &rows)?);
        }
    }
    Ok(out)
}

/// What the lake already holds decides, for the latest row of each key in a batch, where it
/// goes (see [`decide`]).
#[derive(Debug)]
pub(super) struct Decision {
    /// Rows later than the stored delivery, or of keys the table does not hold.
    pub to_write: Vec<RecordBatch>,
    /// Partitions holding the stored rows that `to_write` replaces.
    pub replaced_partitions: Vec<Vec<ScalarValue>>,
    /// Keys whose batch delivery is as late as the stored one or later: the tables this one
    /// decides for take these keys' rows.
    pub winners: Winners,
}

/// The keys that won a [`Decision`]: rows (batch, row) of the decided batches' key columns
/// (shared with them, not copied).
#[derive(Debug)]
pub(super) struct Winners {
    keys: Vec<StringArray>,
    rows: Vec<(usize, usize)>,
}

impl Winners {
    /// Whether every key decided won.
    fn all(&self) -> bool {
        self.rows.len() == self.keys.iter().map(Array::len).sum::<usize>()
    }

    fn set(&self) -> datafusion::common::HashSet<&str> {
        self.rows.iter().map(|&(b, i)| self.keys[b].value(i)).collect()
    }

    /// The winning rows (batch, row) of the decided batches.
    pub(super) fn rows(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.rows.iter().copied()
    }

    /// The key of a winning row.
    pub(super) fn key(&self, batch: usize, row: usize) -> &str {
        self.keys[batch].value(row)
    }
}

/// Compares each row's delivery with the stored one of its key: later (or new) rows are
/// written; an equal one was written by an earlier, interrupted pass, and only wins; an older
/// one goes nowhere.
pub(super) fn decide(latest: &[RecordBatch], key: &str, stored: &HashMap<String, StoredEvent>) -> Result<Decision, DeltaTableError> {
    let mut keys_of = Vec::with_capacity(latest.len());
    let mut to_write = Vec::with_capacity(latest.len());
    let mut replaced_partitions: Vec<Vec<ScalarValue>> = Vec::new();
    let mut winners = Vec::new();
    for (b, batch) in latest.iter().enumerate() {
        let ids = keys(batch, key)?;
        let columns = DeliveryColumns::of(batch)?;
        let mut write = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let (id, delivery) = (ids.value(i), columns.get(i));
            let order = stored.get(id).map(|s| (delivery.cmp(&s.delivery), &s.partition));
            match order {
                None => write.push(true),
                Some((Ordering::Greater, partition)) => {
                    if !replaced_partitions.contains(partition) {
                        replaced_partitions.push(partition.clone());
                    }
                    write.push(true);
                }
                Some((Ordering::Equal, _)) => write.push(false),
                Some((Ordering::Less, _)) => {
                    write.push(false);
                    continue;
                }
            }
            winners.push((b, i));
        }
        // A batch of new keys only (a cold lake, a day's first export) is written as it is.
        if write.iter().all(|w| *w) {
            to_write.push(batch.clone());
        } else if write.iter().any(|w| *w) {
            to_write.push(filter_record_batch(batch, &BooleanArray::from(write))?);
        }
        keys_of.push(ids);
    }
    Ok(Decision { to_write, replaced_partitions, winners: Winners { keys: keys_of, rows: winners } })
}

/// The rows of keys among `winners` (all rows without a set), of batches whose keys are all
/// among those the winners were decided from (a follower's rows of the same records).
pub(super) fn rows_of(batches: Vec<RecordBatch>, key: &str, winners: Option<&Winners>) -> Result<Vec<RecordBatch>, DeltaTableError> {
    // Every key decided won (a cold lake, a day's first export): a follower's rows come from
    // the same records as the deciding table's, so their keys are all among the winners.
    let Some(winners) = winners.filter(|w| !w.all()) else { return Ok(batches) };
    let winners = winners.set();
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let ids = keys(&batch, key)?;
        let keep: BooleanArray = (0..batch.num_rows()).map(|i| Some(winners.contains(ids.value(i)))).collect();
        let batch = filter_record_batch(&batch, &keep)?;
        if batch.num_rows() > 0 {
            kept.push(batch);
        }
    }
    Ok(kept)
}

/// Each key's latest delivery, looked up for every row of an aggregate's tables
/// ([`rows_of_winners`]): hashed with DataFusion's hasher, not SipHash.
pub(crate) type LatestDeliveries = datafusion::common::HashMap<String, Delivery<'static>>;

/// Each key's latest delivery in some batches (the rows [`latest_rows`] finds).
pub(crate) fn latest_deliveries(batches: &[RecordBatch], key: &str) -> Result<LatestDeliveries, DeltaTableError> {
    let ids = batches.iter().map(|b| keys(b, key)).collect::<Result<Vec<_>, _>>()?;
    let deliveries = batches.iter().map(DeliveryColumns::of).collect::<Result<Vec<_>, _>>()?;
    Ok(latest_rows(batches, key, None)?
        .into_iter()
        .map(|(b, i)| (ids[b].value(i).to_string(), deliveries[b].get(i).into_owned()))
        .collect())
}

/// Where and by which delivery each of `ids` is stored in `table` now.
async fn stored(delta: &DeltaTable, table: LakeTable, key: &str, ids: Vec<String>) -> Result<HashMap<String, StoredEvent>, DeltaTableError> {
    let schema = Arc::new(Schema::new(vec![Field::new(key, DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(ids))])?;
    stored_deliveries(delta, table, key, key, batch, None).await
}

/// What replacing a batch's aggregates did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ReplaceOutcome {
    /// Aggregates whose delivery in the batch won (new ones included).
    pub aggregates_written: usize,
    /// Of those, aggregates the lake already held: their earlier rows were removed.
    pub aggregates_replaced: usize,
    /// Aggregates left as stored: the lake holds a later delivery.
    pub aggregates_older: usize,
    /// Rows written, by table.
    pub rows_written: Vec<(LakeTable, usize)>,
}

/// Applies a batch's aggregates rooted at `root` (rows of each member table in `rows`) to
/// the lake, replacing earlier versions. `tables` holds every member's newest snapshot and
/// receives the committed ones.
pub(super) async fn replace_aggregates(
    tables: &mut HashMap<LakeTable, DeltaTable>,
    root: LakeTable,
    key: &'static str,
    rows: &HashMap<LakeTable, Vec<RecordBatch>>,
) -> Result<ReplaceOutcome, (LakeTable, DeltaTableError)> {
    let mut outcome = ReplaceOutcome::default();
    let Some(root_rows) = rows.get(&root) else { return Ok(outcome) };
    let mut winners = latest_deliveries(root_rows, key).map_err(|e| (root, e))?;
    let delta = tables.get(&root).ok_or((root, DeltaTableError::NotATable(root.name().into())))?;
    let stored = stored(delta, root, key, winners.keys().cloned().collect()).await.map_err(|e| (root, e))?;
    winners.retain(|id, delivery| match stored.get(id) {
        Some(kept) if *delivery < kept.delivery => {
            outcome.aggregates_older += 1;
            false
        }
        _ => true,
    });
    if winners.is_empty() {
        return Ok(outcome);
    }
    outcome.aggregates_written = winners.len();
    outcome.aggregates_replaced = winners.keys().filter(|id| stored.contains_key(*id)).count();
    let winners = Arc::new(winners);

    // The other tables' rows are sorted out on threads of their own while the root's are
    // written: the work of each table overlaps the root's commit.
    let mut members = Vec::new();
    for member in root.aggregate_members().into_iter().filter(|m| *m != root) {
        let batches = rows.get(&member).cloned().unwrap_or_default();
        let winners = Arc::clone(&winners);
        members.push((member, blocking(member, move || rows_of_winners(&batches, key, &winners))));
    }
    let root_kept = rows_of_winners(root_rows, key, &winners).map_err(|e| (root, e))?;
    let replace = if outcome.aggregates_replaced > 0 {
        // The partitions to clear: where the winners' rows go, and where earlier versions lie.
        let mut partitions: HashSet<Vec<ScalarValue>> = HashSet::new();
        for batch in &root_kept {
            for i in 0..batch.num_rows() {
                partitions.insert(partition_values(batch, root, i).map_err(|e| (root, e))?);
            }
        }
        for (id, kept) in &stored {
            if winners.contains_key(id) {
                partitions.insert(kept.partition.clone());
            }
        }
        let keys = StringArray::from_iter_values(winners.keys().map(String::as_str));
        Some(Replacement { key, partitions: partitions.into_iter().collect(), keys: Arc::new(keys) })
    } else {
        None
    };

    // The root commits first: the re-run after a crash must find the root's delivery equal
    // to decide to replace (not append to) what the other tables already got. Their rows are
    // decided above, so their commits are independent of each other and run at once, each
    // on a task of its own.
    let (written, next) = write_aggregate_rows(delta.clone(), root, root_kept, replace.clone()).await;
    tables.insert(root, next.map_err(|e| (root, e))?);
    outcome.rows_written.push((root, written));
    let mut writes = Vec::new();
    for (member, kept) in members {
        let kept = kept.await.map_err(|e| (member, e))?;
        let delta = tables.get(&member).ok_or((member, DeltaTableError::NotATable(member.name().into())))?.clone();
        let replace = replace.clone();
        writes.push(tokio::spawn(async move { (member, write_aggregate_rows(delta, member, kept, replace).await) }));
    }
    for joined in futures::future::join_all(writes).await {
        let (member, (written, next)) = joined.map_err(|e| (root, WriteFailure::task("writing aggregate rows", root)(e)))?;
        tables.insert(member, next.map_err(|e| (member, e))?);
        outcome.rows_written.push((member, written));
    }
    Ok(outcome)
}

/// What a replacing commit removes: every stored row of `keys`, within `partitions` (where
/// the winners' rows go and where their earlier versions lie).
///
/// The keys are never spelt out in an expression: a batch of thousands of aggregates made a
/// `key IN (...)` list that delta-rs and DataFusion walk recursively (a thread's stack
/// overflowed at a few thousand conversations). The stored rows to keep are found by an
/// anti-join with the keys instead, and the commit replaces exactly the listed partitions.
#[derive(Debug, Clone)]
struct Replacement {
    key: &'static str,
    partitions: Vec<Vec<ScalarValue>>,
    keys: Arc<StringArray>,
}

impl Replacement {
    /// The rows the replaced partitions hold afterwards: their stored rows of other keys,
    /// then `kept` (the winners' rows), as one plan, and the partitions it replaces.
    async fn plan(&self, delta: &DeltaTable, table: LakeTable, kept: Vec<RecordBatch>) -> Result<(LogicalPlan, Expr), DeltaTableError> {
        const REPLACED_KEY: &str = "cclake_replaced_key";
        // Only builds the plan: delta-rs executes it in its own session, where it registers
        // the table's store.
        let ctx = SessionContext::new();
        let within = super::stored::partitions_filter(None, table.partition_columns(), &self.partitions);
        let keys_schema = Arc::new(Schema::new(vec![Field::new(REPLACED_KEY, DataType::Utf8, false)]));
        let keys = RecordBatch::try_new(keys_schema, vec![Arc::clone(&self.keys) as Arc<dyn Array>])?;
        let columns: Vec<Expr> = table.schema().fields().iter().map(|f| col(f.name())).collect();
        let stored_others = ctx
            .read_table(delta.table_provider().await?)?
            .filter(within.clone())?
            .join(ctx.read_batch(keys)?, JoinType::LeftAnti, &[self.key], &[REPLACED_KEY], None)?
            .select(columns.clone())?;
        let kept = if kept.is_empty() { vec![RecordBatch::new_empty(table.schema())] } else { kept };
        let plan = stored_others.union(ctx.read_batches(kept)?.select(columns)?)?.into_unoptimized_plan();
        Ok((plan, within))
    }
}

/// One table's rows of the winning aggregates, in one commit: replacing the earlier versions
/// (`replace`) or appended (new aggregates only).
async fn write_aggregate_rows(
    delta: DeltaTable,
    table: LakeTable,
    kept: Vec<RecordBatch>,
    replace: Option<Replacement>,
) -> (usize, Result<DeltaTable, DeltaTableError>) {
    let started = std::time::Instant::now();
    let written = kept.iter().map(RecordBatch::num_rows).sum();
    if written == 0 && replace.is_none() {
        return (0, Ok(delta));
    }
    let next = match replace {
        Some(replacement) => match replacement.plan(&delta, table, kept).await {
            Ok((plan, within)) => {
                delta
                    .write(Vec::new())
                    .with_input_plan(plan)
                    .with_partition_columns(table.partition_columns().iter().map(|c| c.to_string()))
                    .with_writer_properties(writer_properties(table))
                    .with_save_mode(SaveMode::Overwrite)
                    .with_replace_where(within)
                    .await
            }
            Err(e) => Err(e),
        },
        // New aggregates only: each partition's rows of every object, straight to its file.
        None => append(delta, table, kept, None).await,
    };
    tracing::debug!(table = table.name(), rows = written, seconds = started.elapsed().as_secs_f64(), "aggregate rows written");
    (written, next)
}

/// The rows of `batches` that belong to a winning delivery of their key; a batch whose rows
/// all win is kept as it is, one with none left out.
pub(super) fn rows_of_winners(
    batches: &[RecordBatch],
    key: &str,
    winners: &LatestDeliveries,
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let ids = keys(batch, key)?;
        let columns = DeliveryColumns::of(batch)?;
        let rows = batch.num_rows();
        let mut keep = arrow::array::BooleanBufferBuilder::new(rows);
        let mut previous: Option<(usize, bool)> = None;
        for i in 0..rows {
            // An aggregate's rows come together, with one delivery: looked up once per run.
            let kept = match previous {
                Some((p, kept)) if ids.value(p) == ids.value(i) && columns.get(p) == columns.get(i) => kept,
                _ => winners.get(ids.value(i)).is_some_and(|w| *w == columns.get(i)),
            };
            keep.append(kept);
            previous = Some((i, kept));
        }
        let keep = BooleanArray::new(keep.finish(), None);
        match keep.true_count() {
            0 => {}
            n if n == rows => kept.push(batch.clone()),
            _ => kept.push(filter_record_batch(batch, &keep)?),
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};

    fn batch(rows: &[(&str, i64, &str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source_object", DataType::Utf8, false),
            Field::new("source_modified_at", DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("source_line", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1)).with_timezone("UTC")),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_latest_delivery_of_each_key_is_kept() {
        let b = batch(&[("a", 1, "x", 1), ("a", 2, "w", 1), ("b", 1, "x", 2), ("a", 2, "w", 1), ("b", 1, "x", 1)]);
        let latest = latest_by_key(&[b], "id", None).unwrap();
        assert_eq!(latest.len(), 1);
        let latest = &latest[0];
        let ids = keys(latest, "id").unwrap();
        let got: Vec<(String, Delivery<'static>)> =
            {
            let columns = DeliveryColumns::of(latest).unwrap();
            (0..latest.num_rows()).map(|i| (ids.value(i).to_string(), columns.get(i).into_owned())).collect()
        };
        // Newer time wins over a greater name; the later line wins at equal time and object;
        // an exact duplicate is kept once.
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Delivery { modified_at: 2, object: "w".into(), line: 1 }),
                ("b".to_string(), Delivery { modified_at: 1, object: "x".into(), line: 2 }),
            ]
        );
    }

    /// `batch` with a column `h` of hashes given per row.
    fn hashed(rows: &[(&str, i64, &str, i64)], hashes: &[i64]) -> RecordBatch {
        let plain = batch(rows);
        let mut fields = plain.schema().fields().to_vec();
        fields.push(Arc::new(Field::new("h", DataType::Int64, false)));
        let mut columns = plain.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(hashes.to_vec())));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    #[test]
    fn keys_told_apart_by_hash_keep_the_same_rows_as_by_key_even_when_hashes_collide() {
        let rows = [("a", 1, "x", 1), ("b", 1, "x", 2), ("a", 2, "w", 3), ("c", 1, "x", 4), ("b", 1, "x", 1)];
        let ids = |batches: &[RecordBatch]| -> Vec<(String, i64)> {
            let mut got = Vec::new();
            for batch in batches {
                let (ids, lines) = (keys(batch, "id").unwrap(), batch.column(3).as_any().downcast_ref::<Int64Array>().unwrap().clone());
                got.extend((0..batch.num_rows()).map(|i| (ids.value(i).to_string(), lines.value(i))));
            }
            got
        };
        // Worked out by hand: a's later delivery (line 3), b's later line (2), c.
        let expected = vec![("b".to_string(), 2), ("a".to_string(), 3), ("c".to_string(), 4)];
        // Distinct hashes per key; then b and c share one (a collision: the keys decide);
        // then every row a key of its own.
        for hashes in [[10, 20, 10, 30, 20], [10, 20, 10, 20, 20]] {
            let batches = [hashed(&rows[..3], &hashes[..3]), hashed(&rows[3..], &hashes[3..])];
            assert_eq!(ids(&latest_by_key(&batches, "id", Some("h")).unwrap()), expected, "{hashes:?}");
            assert_eq!(ids(&latest_by_key(&batches, "id", None).unwrap()), expected);
        }
        let distinct = [hashed(&[("a", 1, "x", 1), ("b", 1, "x", 2)], &[1, 2])];
        assert_eq!(ids(&latest_by_key(&distinct, "id", Some("h")).unwrap()), vec![("a".to_string(), 1), ("b".to_string(), 2)]);
    }

    #[test]
    fn a_large_gather_shared_between_threads_equals_arrow_s_interleave() {
        // Three batches, 150,000 rows in all: past the size at which the columns are shared
        // out between threads (on a machine with more than one core).
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let rows: Vec<(String, i64, String, i64)> =
                    (0..50_000).map(|i| (format!("k{b}-{i}"), i * 7 % 1000, format!("object-{b}"), i)).collect();
                let rows: Vec<(&str, i64, &str, i64)> = rows.iter().map(|(k, t, o, l)| (k.as_str(), *t, o.as_str(), *l)).collect();
                batch(&rows)
            })
            .collect();
        // Every row, in an order that mixes the batches.
        let at: Vec<(usize, usize)> = (0..50_000).rev().flat_map(|i| [(2, i), (0, i), (1, (i * 13) % 50_000)]).collect();
        let sources: Vec<&RecordBatch> = batches.iter().collect();
        let expected = arrow::compute::interleave_record_batch(&sources, &at).unwrap();
        let got = gather(&batches, LakeTable::Queues, &at).unwrap();
        assert_eq!(got, expected);
        assert_eq!(got.num_rows(), 150_000);
    }

    /// Flat events as an object's parse yields them: `(id, seconds after midnight, queue)`.
    fn parsed(events: &[(String, i64, &str)]) -> Vec<RecordBatch> {
        let mut rows = crate::ingest::rows::TableRows::default();
        for (line, (id, at, queue)) in events.iter().enumerate() {
            let json = format!(
                r#"{{"event_id":"{id}","interaction_id":"i","timestamp":"2024-03-04T{:02}:{:02}:{:02}Z","queue_name":"{queue}"}}"#,
                at / 3600,
                at / 60 % 60,
                at % 60
            );
            let event = crate::ingest::parse_flat_event(json.as_bytes()).outcome.unwrap();
            let delivery = Delivery { modified_at: 7, object: "file:///x/a.jsonl".into(), line: line as i64 + 1 };
            event.push_rows(7, &mut rows, &delivery);
        }
        rows.finish().unwrap().remove(&LakeTable::FactInteractions).unwrap()
    }

    fn column_values(batch: &RecordBatch, name: &str) -> Vec<String> {
        let values = arrow::compute::cast(batch.column(batch.schema().index_of(name).unwrap()), &DataType::Utf8).unwrap();
        arrow::array::AsArray::as_string::<i32>(&values).iter().map(|v| v.unwrap_or_default().to_string()).collect()
    }

    #[test]
    fn only_a_partition_past_one_page_is_sorted_and_copied() {
        let table = LakeTable::FactInteractions;
        let page = writer_properties(table).data_page_row_count_limit();
        // A big partition, latest first, interleaved with a small one also out of time order.
        let mut events = Vec::new();
        for n in 0..=page as i64 {
            events.push((format!("big-{n}"), 80_000 - n, "Big"));
            if n < 3 {
                events.push((format!("small-{n}"), 100 - n, "Small"));
            }
        }
        let batches = parsed(&events);
        assert_eq!(batches.len(), 2, "one batch per partition");
        let small_before = batches[1].clone();
        let latest = latest_sorted(&batches, table, "event_id", "event_key").unwrap();
        assert_eq!(latest.len(), 2);
        let (big, small) = (&latest[0], &latest[1]);
        assert_eq!(big.num_rows(), page + 1);
        let times = column_values(big, "event_timestamp");
        assert!(times.windows(2).all(|w| w[0] < w[1]), "sorted by time: {:?}", &times[..3]);
        assert_eq!(column_values(big, "event_id")[0], format!("big-{page}"));
        // The small partition is the parsed batch itself: as it arrived, not copied.
        assert_eq!(column_values(small, "event_id"), vec!["small-0", "small-1", "small-2"]);
        assert!(small.column(0).to_data().ptr_eq(&small_before.column(0).to_data()));
        // A duplicate delivery (a later line) replaces the earlier row, in place.
        let mut again = events.clone();
        again.push(("small-1".to_string(), 50, "Small"));
        let latest = latest_sorted(&parsed(&again), table, "event_id", "event_key").unwrap();
        let small = &latest[1];
        assert_eq!(column_values(small, "event_id"), vec!["small-0", "small-2", "small-1"]);
        assert!(column_values(small, "event_timestamp")[2].contains("00:00:50"), "{:?}", column_values(small, "event_timestamp"));
    }
}
