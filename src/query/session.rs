//! Read-only sessions over table snapshots, and how a statement is planned and started in
//! one: guarded text, queries only, a memory pool of its own.

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryLimit, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

use super::config::session_config;
use super::error::{refuse_writes, QueryError, ReadOnlyRefusal};
use super::{key_grouped, limits, plain_types, snapshot_table, sql_guard, utc_date_cast, utc_date_trunc};
use crate::model::LakeTable;

/// A session with each table registered under `cclake.cc_analytics`; a table not created yet
/// (a lake from an earlier release) is an empty table of its schema.
/// With `decoded`, the snapshots' files are decoded into it in the background and read from
/// there once they are.
pub async fn read_only_session(
    tables: Vec<(LakeTable, Option<DeltaTable>)>,
    decoded: Option<&Arc<super::decoded::DecodedFiles>>,
) -> Result<SessionContext, QueryError> {
    // Aggregates grouped by a table's layout column run in one stage (query/key_grouped.rs).
    let state = SessionStateBuilder::new_from_existing(SessionContext::new_with_config(session_config()?).state())
        .with_physical_optimizer_rule(Arc::new(key_grouped::OneStageAggregateByKey))
        // Casts of UTC timestamps to dates by arithmetic (query/utc_date_cast.rs).
        .with_optimizer_rule(Arc::new(utc_date_cast::UtcDateCasts))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // UTC timestamps (every one cclake writes) truncated by arithmetic (query/utc_date_trunc.rs).
    if let Ok(date_trunc) = datafusion::execution::FunctionRegistry::udf(&ctx, "date_trunc") {
        ctx.register_udf(utc_date_trunc::UtcDateTrunc::wrap(date_trunc));
    }
    let state = Arc::new(ctx.state());
    for (table, delta) in tables {
        let name = table.name();
        let Some(delta) = delta else {
            ctx.register_table(name, Arc::new(datafusion::datasource::empty::EmptyTable::new(table.schema())))?;
            continue;
        };
        let delta_error = |source| QueryError::Delta {
            table: name.to_string(),
            source,
        };
        if let Some(provider) = snapshot_table::SnapshotTable::try_new(&delta, decoded.cloned()).map_err(&delta_error)? {
            provider.decode_files();
            ctx.register_table(name, provider)?;
            continue;
        }
        delta.update_datafusion_session(state.as_ref()).map_err(delta_error)?;
        // The session's options (plain strings) decide how the Delta scan reads Parquet.
        let provider = delta.table_provider().with_session(Arc::clone(&state)).await?;
        ctx.register_table(name, plain_types::PlainTypesTable::wrap(provider))?;
    }
    Ok(ctx)
}

/// Plans read-only SQL: its text within `limits` ([`sql_guard`]: long `OR` chains of
/// equalities planned as `IN` lists, depth bounded), then queries only.
pub async fn plan_sql(ctx: &SessionContext, sql: &str, limits: sql_guard::SqlLimits) -> Result<DataFrame, QueryError> {
    let statement = parse_sql(ctx, sql, limits)?;
    plan_statement(ctx, statement).await.map_err(|e| match ReadOnlyRefusal::find(&e) {
        Some(refusal) => QueryError::ReadOnly(refusal.clone()),
        None => QueryError::DataFusion(e),
    })
}

/// The first step of [`plan_sql`]: the statement, parsed and guarded.
pub fn parse_sql(ctx: &SessionContext, sql: &str, limits: sql_guard::SqlLimits) -> Result<datafusion::sql::parser::Statement, QueryError> {
    sql_guard::parse(&ctx.state(), sql, limits).map_err(|e| match e {
        sql_guard::SqlRefused::Parse(e) => QueryError::DataFusion(e),
        refused => QueryError::Refused(refused.to_string()),
    })
}

/// The second step of [`plan_sql`]: a statement that is not a query is refused
/// ([`ReadOnlyRefusal`], inside the DataFusion error).
pub async fn plan_statement(ctx: &SessionContext, statement: datafusion::sql::parser::Statement) -> Result<DataFrame, DataFusionError> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    refuse_writes(&plan)?;
    ctx.execute_logical_plan(plan).await
}

/// Plans and starts `df` with a memory pool of its own, as large as its session's: the limit
/// holds per query, and the session (shared by the queries of a snapshot and role) is not
/// rebuilt for each one. The query shares its session's disk manager, caches and object
/// stores.
pub async fn execute_in_own_pool(df: DataFrame) -> Result<SendableRecordBatchStream, DataFusionError> {
    let (mut state, logical) = df.into_parts();
    let session_runtime = Arc::clone(state.runtime_env());
    let mut runtime = None;
    if let MemoryLimit::Finite(bytes) = session_runtime.memory_pool.memory_limit() {
        let pool: Arc<dyn MemoryPool> = Arc::new(FairSpillPool::new(bytes));
        runtime = Some(RuntimeEnvBuilder::from_runtime_env(&session_runtime).with_memory_pool(Arc::clone(&pool)).build_arc()?);
        // The functions the plan calls check what they produce against this query's pool.
        state.config_mut().options_mut().extensions.insert(limits::QueryMemory(Some(pool)));
    }
    // (Unbounded, or a pool that bounds nothing per query: nothing to hold apart.)
    let plan = state.create_physical_plan(&logical).await?;
    let task_ctx = TaskContext::from(&state);
    let task_ctx = match runtime {
        Some(runtime) => task_ctx.with_runtime(runtime),
        None => task_ctx,
    };
    datafusion::physical_plan::execute_stream(plan, Arc::new(task_ctx))
}
