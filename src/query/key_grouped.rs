//! Scans laid out by a partition column, and aggregates grouped by it in one stage.
//!
//! A Delta table's files are partitioned: every row of a file has the same `queue_name`
//! (say). When the scan puts all files of one value in the same output partition
//! ([`KeyGroupedExec`]), an aggregate grouped by that column needs no hash repartitioning
//! between its partial and final stages: each partition already holds whole groups.
//! DataFusion's plan still has both stages ([`AggregateMode::Partial`], a hash
//! `RepartitionExec`, then [`AggregateMode::FinalPartitioned`]), because the scan does not
//! declare the layout as hash partitioning: a declared `Hash` would let a partitioned join
//! pair these partitions with really hashed ones, row for row in the wrong partition.
//! [`OneStageAggregateByKey`] instead runs after DataFusion's own rules and replaces the
//! two stages by one `SinglePartitioned` aggregate where it can prove the layout holds: the
//! group keys include the scan's column (traced through projections and filters only), and
//! nothing above the aggregate depends on how its output is partitioned.
//!
//! For `count(DISTINCT ...)` next to other aggregates (which DataFusion cannot turn into a
//! group by) this halves the work: the partial stage's distinct sets are not sent on and
//! merged again.

use std::sync::Arc;

use datafusion::common::stats::NdvFallback;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::combine_partial_final_agg::CombinePartialFinalAggregate;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties, ReplaceChildrenOptions,
    SendableRecordBatchStream, StatisticsArgs,
};
use futures::StreamExt;

/// Inputs with the same number of partitions, read partition by partition: output partition
/// `i` is each input's partition `i` in turn. Every row with a given value of column `key`
/// is in one output partition (the inputs put a value's files in the same partition).
#[derive(Debug)]
pub struct KeyGroupedExec {
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    /// The column, by index in the output, whose values never span two partitions.
    key: usize,
    properties: Arc<PlanProperties>,
}

impl KeyGroupedExec {
    /// Inputs of one schema and one partition count, laid out by `key`; a [`UnionExec`]
    /// of them (no layout claimed) when they are not.
    pub fn over(inputs: Vec<Arc<dyn ExecutionPlan>>, key: usize) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(first) = inputs.first() else { return internal_err!("KeyGroupedExec needs an input") };
        let schema = first.schema();
        let partitions = first.output_partitioning().partition_count();
        let aligned = inputs
            .iter()
            .all(|i| i.schema() == schema && i.output_partitioning().partition_count() == partitions);
        if !aligned || key >= schema.fields().len() {
            return UnionExec::try_new(inputs);
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(Self { inputs, key, properties: Arc::new(properties) }))
    }

    /// The column whose values never span two partitions.
    pub fn key(&self) -> usize {
        self.key
    }
}

impl DisplayAs for KeyGroupedExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "KeyGroupedExec: key={}", self.schema().field(self.key).name())
    }
}

impl ExecutionPlan for KeyGroupedExec {
    fn name(&self) -> &'static str {
        "KeyGroupedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.iter().collect()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false; self.inputs.len()]
    }

    /// Splitting or round-robin below would break the layout.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.inputs.len()]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Self::over(children, self.key)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Self::over(children, self.key)
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let streams = self
            .inputs
            .iter()
            .map(|input| input.execute(partition, Arc::clone(&context)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), futures::stream::iter(streams).flatten())))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition); self.inputs.len()]
    }

    fn statistics_from_inputs(&self, input_stats: &[Arc<Statistics>], _args: &StatisticsArgs) -> Result<Arc<Statistics>> {
        Ok(Arc::new(Statistics::try_merge_iter_with_ndv_fallback(
            input_stats.iter().map(|s| s.as_ref()),
            self.schema().as_ref(),
            NdvFallback::Sum,
        )?))
    }
}

/// Replaces a two-stage aggregate by a one-stage one where its input is laid out by one of
/// its group keys (see the module's documentation). Runs last, after DataFusion's checks:
/// it proves what it relies on itself.
#[derive(Debug, Default)]
pub struct OneStageAggregateByKey;

impl PhysicalOptimizerRule for OneStageAggregateByKey {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        rewrite(plan, true)
    }

    fn name(&self) -> &str {
        "OneStageAggregateByKey"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` with its two-stage aggregates made one-stage where that is safe.
/// `free`: nothing above `plan` depends on how its output is partitioned.
fn rewrite(plan: Arc<dyn ExecutionPlan>, free: bool) -> Result<Arc<dyn ExecutionPlan>> {
    if free {
        if let Some(one_stage) = one_stage(&plan)? {
            return Ok(one_stage);
        }
    }
    let node = plan.as_ref();
    // Nodes that gather or redistribute their input's partitions free it; row-local nodes
    // pass their parent's partitioning on; any other node (joins, windows, unions, ...)
    // may rely on its input's partitioning.
    let child_free = if node.downcast_ref::<CoalescePartitionsExec>().is_some()
        || node.downcast_ref::<SortPreservingMergeExec>().is_some()
        || node.downcast_ref::<RepartitionExec>().is_some()
        || node.downcast_ref::<GlobalLimitExec>().is_some()
        || node.downcast_ref::<SortExec>().is_some_and(|s| !s.preserve_partitioning())
    {
        true
    } else if node.downcast_ref::<ProjectionExec>().is_some()
        || node.downcast_ref::<FilterExec>().is_some()
        || node.downcast_ref::<SortExec>().is_some()
        || node.downcast_ref::<LocalLimitExec>().is_some()
        || node.downcast_ref::<CooperativeExec>().is_some()
    {
        free
    } else {
        false
    };
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    if children.is_empty() {
        return Ok(plan);
    }
    let mut changed = false;
    let mut rewritten = Vec::with_capacity(children.len());
    for child in children {
        let new = rewrite(Arc::clone(&child), child_free)?;
        changed |= !Arc::ptr_eq(&new, &child);
        rewritten.push(new);
    }
    if !changed {
        return Ok(plan);
    }
    #[allow(deprecated)]
    plan.with_new_children(rewritten)
}

/// `plan` as one `SinglePartitioned` aggregate, if it is a final aggregate over a hash
/// repartition of a partial aggregate whose input is laid out by one of its group keys.
fn one_stage(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(last) = plan.downcast_ref::<AggregateExec>() else { return Ok(None) };
    if *last.mode() != AggregateMode::FinalPartitioned {
        return Ok(None);
    }
    let Some(repartition) = last.input().downcast_ref::<RepartitionExec>() else { return Ok(None) };
    if !matches!(repartition.partitioning(), Partitioning::Hash(..)) {
        return Ok(None);
    }
    let partial_plan = repartition.input();
    let Some(partial) = partial_plan.downcast_ref::<AggregateExec>() else { return Ok(None) };
    if *partial.mode() != AggregateMode::Partial || partial.group_expr().has_grouping_set() {
        return Ok(None);
    }
    let laid_out = partial.group_expr().expr().iter().any(|(expr, _)| {
        expr.downcast_ref::<Column>().is_some_and(|c| layout_key_at(partial.input(), c.index()))
    });
    if !laid_out {
        return Ok(None);
    }
    // The two stages without the repartition between them: DataFusion's own rule merges
    // them (or refuses to, when their expressions do not match).
    #[allow(deprecated)]
    let adjacent = Arc::clone(plan).with_new_children(vec![Arc::clone(partial_plan)])?;
    let combined = CombinePartialFinalAggregate::new().optimize(adjacent, &ConfigOptions::default())?;
    let single = combined
        .downcast_ref::<AggregateExec>()
        .is_some_and(|a| *a.mode() == AggregateMode::SinglePartitioned && a.schema() == plan.schema());
    Ok(single.then_some(combined))
}

/// Whether column `index` of `plan`'s output is a [`KeyGroupedExec`]'s key, passed up
/// unchanged through nodes that keep each row in its partition.
fn layout_key_at(plan: &Arc<dyn ExecutionPlan>, index: usize) -> bool {
    if let Some(scan) = plan.downcast_ref::<KeyGroupedExec>() {
        return scan.key() == index;
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        return projection.expr().get(index).is_some_and(|p| {
            p.expr.downcast_ref::<Column>().is_some_and(|c| layout_key_at(projection.input(), c.index()))
        });
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let index = match filter.projection() {
            Some(projection) => match projection.get(index) {
                Some(&i) => i,
                None => return false,
            },
            None => index,
        };
        return layout_key_at(filter.input(), index);
    }
    if let Some(coop) = plan.downcast_ref::<CooperativeExec>() {
        return layout_key_at(coop.input(), index);
    }
    false
}
