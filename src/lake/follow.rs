//! What a deciding table's winners make of a follower's rows
//! ([`crate::model::MergePolicy::UpsertLatest`]'s `decided_by`): the follower's rows of the
//! winning deliveries, and, for a follower whose rows exist only while a column is set
//! (`present_when`: a recording's URL), the rows that delete its stored row of a winning key
//! whose winning delivery has none.
//!
//! A format stages a follower's row only when the record has one (a flat event with a
//! recording), not a row with the column null for every other record: half the events of a
//! seed-shaped export have no recording, and their rows cost a sixth of a pass's page faults
//! only to be dropped by a commit with nothing to delete (benches/README.md, "ninth round").
//! The deletions are made here instead, from the deciding table's winning rows (same key,
//! same delivery), and only when the follower holds one of the winners' keys.

use std::collections::HashMap;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, interleave};
use deltalake::{DeltaTable, DeltaTableError};

use super::error::WriteFailure;
use super::merge::Winners;
use super::pass_keys::PassKeys;
use super::stored::{keys, DeliveryColumns, KeyColumns};
use crate::model::{Delivery, LakeTable};

/// What the winners of the deciding table's batch (`deciding`; some key in it `repeated`)
/// make of a follower's latest rows (`latest`, one per key): the rows to upsert into it (of the
/// winning deliveries, and, for a `present_when` follower, the deletions), and the partitions of
/// it that may hold their keys.
pub(super) async fn decided_rows(
    known: &PassKeys,
    follower: LakeTable,
    now: &DeltaTable,
    latest: Vec<RecordBatch>,
    winners: &Winners,
    deciding: &[RecordBatch],
    repeated: bool,
) -> Result<(Vec<RecordBatch>, Vec<Vec<datafusion::common::ScalarValue>>), DeltaTableError> {
    let key = KeyColumns::of(follower)?.key;
    let mut kept = rows_of_winners(latest, key, winners, deciding, repeated)?;
    let holding = match follower.merge_policy().present_when() {
        // Winners without a row delete the stored one: the keys of every winner are looked
        // for, and the deletions made only when some are held.
        Some(column) => {
            let holding = partitions_holding_winners(known, follower, now, winners, deciding).await?;
            if !holding.is_empty() {
                kept.extend(deletions(follower, column, key, winners, deciding, &kept)?);
            }
            holding
        }
        None if kept.iter().all(|b| b.num_rows() == 0) => Vec::new(),
        None => known.partitions_holding(follower, now, super::stored::key_batch(follower, &kept)?).await?,
    };
    Ok((kept, holding))
}

/// The follower's latest rows (one per key, `latest`) of the winning deliveries. When the
/// deciding table's batch held no key twice (`repeated` false), each follower row comes from
/// the one record of its key, so a winning key's row is of the winning delivery. Otherwise a
/// key's follower row may be of an earlier delivery than its winner (a record with a
/// recording, then a correction without one, in one batch), and is kept only when the
/// deliveries are the same.
fn rows_of_winners(
    latest: Vec<RecordBatch>,
    key: &str,
    winners: &Winners,
    deciding: &[RecordBatch],
    repeated: bool,
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    if !repeated {
        return super::merge::rows_of(latest, key, Some(winners));
    }
    let deliveries = deciding.iter().map(DeliveryColumns::of).collect::<Result<Vec<_>, _>>()?;
    let won: HashMap<&str, Delivery<'_>> = winners.rows().map(|(b, i)| (winners.key(b, i), deliveries[b].get(i))).collect();
    let mut kept = Vec::with_capacity(latest.len());
    for batch in latest {
        let (ids, rows) = (keys(&batch, key)?, DeliveryColumns::of(&batch)?);
        let keep: BooleanArray = (0..batch.num_rows()).map(|i| Some(won.get(ids.value(i)) == Some(&rows.get(i)))).collect();
        let batch = filter_record_batch(&batch, &keep)?;
        if batch.num_rows() > 0 {
            kept.push(batch);
        }
    }
    Ok(kept)
}

/// The partitions of `follower` (now `now`) that may hold a winning key: none in a cold lake,
/// or for a day's first export.
async fn partitions_holding_winners(
    known: &PassKeys,
    follower: LakeTable,
    now: &DeltaTable,
    winners: &Winners,
    deciding: &[RecordBatch],
) -> Result<Vec<Vec<datafusion::common::ScalarValue>>, DeltaTableError> {
    let join = KeyColumns::of(follower)?.join();
    let schema = std::sync::Arc::new(follower.schema().project(&[follower.schema().index_of(join)?])?);
    let column = gathered(follower, join, deciding, &winners.rows().collect::<Vec<_>>())?;
    if column.is_empty() {
        return Ok(Vec::new());
    }
    known.partitions_holding(follower, now, RecordBatch::try_new(schema, vec![column])?).await
}

/// Rows of `follower` deleting its stored row of each winning key that has no row among
/// `kept`: the winner's row of the deciding table cut to the follower's columns, with
/// `present_when` null (so a later delivery's row, as the upsert reads it, without the
/// column). `None` when every winner has a row.
fn deletions(
    follower: LakeTable,
    present_when: &str,
    key: &str,
    winners: &Winners,
    deciding: &[RecordBatch],
    kept: &[RecordBatch],
) -> Result<Option<RecordBatch>, DeltaTableError> {
    let kept_keys = kept.iter().map(|b| keys(b, key)).collect::<Result<Vec<_>, _>>()?;
    let with_row: datafusion::common::HashSet<&str> = kept_keys.iter().flat_map(|ids| ids.iter().flatten()).collect();
    let rows: Vec<(usize, usize)> = winners.rows().filter(|&(b, i)| !with_row.contains(winners.key(b, i))).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let schema = follower.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            name if name == present_when => Ok(new_null_array(field.data_type(), rows.len())),
            name => gathered(follower, name, deciding, &rows),
        })
        .collect::<Result<Vec<_>, DeltaTableError>>()?;
    Ok(Some(RecordBatch::try_new(schema, columns)?))
}

/// Rows `at` of column `name` of `batches` (the deciding table's), for a column of
/// `follower` the deciding table holds too.
fn gathered(follower: LakeTable, name: &str, batches: &[RecordBatch], at: &[(usize, usize)]) -> Result<ArrayRef, DeltaTableError> {
    let sources = batches
        .iter()
        .map(|b| b.column_by_name(name).map(|c| c.as_ref()))
        .collect::<Option<Vec<&dyn Array>>>()
        .ok_or_else(|| WriteFailure::FollowerColumn { table: follower.name(), column: name.to_string() })?;
    if sources.is_empty() {
        let field = follower.schema().field_with_name(name)?.clone();
        return Ok(arrow::array::new_empty_array(field.data_type()));
    }
    Ok(interleave(&sources, at)?)
}
