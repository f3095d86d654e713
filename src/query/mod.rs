//! The read side: a DataFusion session over the lake's Delta tables that only runs queries,
//! in catalog `cclake`, schema `cc_analytics` (the default, so unqualified names work).

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::FormatOptions;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryLimit, MemoryPool};
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;

use crate::catalog::Catalog;
use crate::model::LakeTable;

pub mod executor;
pub mod key_grouped;
pub mod limits;
pub mod plain_types;
pub mod read_model;
pub mod snapshot_table;
pub mod sql_guard;

pub const CATALOG: &str = "cclake";
pub const SCHEMA: &str = "cc_analytics";

/// Errors of the read side.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the lake is read-only here: {0}")]
    ReadOnly(String),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    #[error("cannot read Delta table {table}: {source}")]
    Delta {
        table: String,
        source: DeltaTableError,
    },
    #[error("views: {0}")]
    Views(String),
    #[error(transparent)]
    Catalog(Box<crate::catalog::CatalogError>),
    /// SQL text refused before planning: too long, or nested too deep ([`sql_guard`]).
    #[error("{0}")]
    Refused(String),
    #[error("cannot format results: {0}")]
    Format(#[from] arrow::error::ArrowError),
    /// Writing results failed; a closed pipe (`| head`) is [`std::io::ErrorKind::BrokenPipe`].
    #[error("cannot write results: {0}")]
    Output(#[from] std::io::Error),
}

/// How `cclake query` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table (NULL printed as `NULL`); buffers the whole result.
    #[default]
    Table,
    /// CSV with a header row, streamed batch by batch.
    Csv,
    /// One JSON array of objects (NULL fields kept as `null`), streamed batch by batch.
    Json,
    /// JSON Lines: one object per line (NULL fields kept as `null`), streamed.
    Jsonl,
}

/// Statements, DDL and DML are refused at plan level, whichever way SQL arrives.
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The configuration of every read-only session: DataFusion's options from `DATAFUSION_*`
/// environment variables (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`, ...), then cclake's:
/// strings are plain `Utf8` everywhere (the type results, `information_schema` and Flight
/// SQL metadata all report), not `Utf8View`.
pub(crate) fn session_config() -> Result<SessionConfig, DataFusionError> {
    let mut config = SessionConfig::from_env()?
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(true)
        .with_information_schema(true);
    let options = config.options_mut();
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.map_string_types_to_utf8view = false;
    // A file's page index costs a read per file and prunes nothing for aggregates over a
    // partition's one row group; cclake writes no bloom filters. Both stay settable through
    // their DATAFUSION_* variables. (More target partitions than cores would let two
    // CPU-bound queries starve a `SELECT 1` on the query runtime.) Figures:
    // benches/README.md, "Why the code is so".
    let unset = |name: &str| std::env::var_os(name).is_none();
    if unset("DATAFUSION_EXECUTION_PARQUET_ENABLE_PAGE_INDEX") {
        options.execution.parquet.enable_page_index = false;
    }
    if unset("DATAFUSION_EXECUTION_PARQUET_BLOOM_FILTER_ON_READ") {
        options.execution.parquet.bloom_filter_on_read = false;
    }
    Ok(config)
}

/// A session with each table registered under `cclake.cc_analytics`; a table not created yet
/// (a lake from an earlier release) is an empty table of its schema.
/// With `decoded`, the snapshots' files are decoded into it in the background and read from
/// there once they are.
pub async fn read_only_session(
    tables: Vec<(LakeTable, Option<DeltaTable>)>,
    decoded: Option<&Arc<snapshot_table::DecodedFiles>>,
) -> Result<SessionContext, QueryError> {
    // Aggregates grouped by a table's layout column run in one stage (query/key_grouped.rs).
    let state = SessionStateBuilder::new_from_existing(SessionContext::new_with_config(session_config()?).state())
        .with_physical_optimizer_rule(Arc::new(key_grouped::OneStageAggregateByKey))
        .build();
    let ctx = SessionContext::new_with_state(state);
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

/// A read-only session over the newest snapshot of every table of a lake, with the built-in
/// views (`queue_daily_metrics`, `kpi_queue_daily`, ...), as `cclake query` serves them; no
/// role: the embedding program reads what its process can read. `Lake::catalog` gives the
/// catalog of a lake just written; `Catalog::open` opens one by URL.
pub async fn catalog_session(catalog: &Catalog) -> Result<SessionContext, QueryError> {
    catalog_session_with_views(catalog, &read_model::load_views(None)?).await
}

/// [`catalog_session`] with other views (`read_model::load_views(Some(dir))` reads a folder
/// of `<name>.sql` files, as `--views` does; an empty list gives the tables alone).
pub async fn catalog_session_with_views(catalog: &Catalog, views: &[read_model::ViewDefinition]) -> Result<SessionContext, QueryError> {
    let tables = catalog.snapshots().await.map_err(|e| QueryError::Catalog(Box::new(e)))?;
    let ctx = read_only_session(tables, None).await?;
    read_model::register_views(&ctx, views, true).await;
    Ok(ctx)
}

/// Runs read-only SQL over a lake's tables and built-in views and collects the result: the
/// embedding API's one call.
pub async fn sql(catalog: &Catalog, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = catalog_session(catalog).await?;
    run_sql(&ctx, sql).await
}

/// Plans `sql` under [`read_only_options`] and collects the result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let (_, stream) = stream_sql(ctx, sql).await?;
    Ok(datafusion::physical_plan::common::collect(stream).await?)
}

/// Plans `sql` under [`read_only_options`] and starts it: the result schema and its stream.
pub async fn stream_sql(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
    let df = plan_sql(ctx, sql, sql_guard::SqlLimits::default()).await?;
    let stream = execute_in_own_pool(df).await?;
    Ok((stream.schema(), stream))
}

/// Plans read-only SQL: its text within `limits` ([`sql_guard`]: long `OR` chains of
/// equalities planned as `IN` lists, depth bounded), then under [`read_only_options`].
pub async fn plan_sql(ctx: &SessionContext, sql: &str, limits: sql_guard::SqlLimits) -> Result<DataFrame, QueryError> {
    let statement = parse_sql(ctx, sql, limits)?;
    plan_statement(ctx, statement).await.map_err(read_only_error)
}

/// The first step of [`plan_sql`]: the statement, parsed and guarded.
pub fn parse_sql(ctx: &SessionContext, sql: &str, limits: sql_guard::SqlLimits) -> Result<datafusion::sql::parser::Statement, QueryError> {
    sql_guard::parse(&ctx.state(), sql, limits).map_err(|e| match e {
        sql_guard::SqlRefused::Parse(e) => QueryError::DataFusion(e),
        refused => QueryError::Refused(refused.to_string()),
    })
}

/// The second step of [`plan_sql`]: a statement that is not a query is refused.
pub async fn plan_statement(ctx: &SessionContext, statement: datafusion::sql::parser::Statement) -> Result<DataFrame, DataFusionError> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    read_only_options().verify_plan(&plan)?;
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

/// DataFusion's refusals name the option that blocked them; say what it means instead.
fn read_only_error(e: DataFusionError) -> QueryError {
    let message = e.strip_backtrace();
    if message.contains("not supported") && (message.contains("DDL") || message.contains("DML") || message.contains("Statement")) {
        QueryError::ReadOnly(format!("only queries run; refused: {message}"))
    } else {
        QueryError::DataFusion(e)
    }
}

/// How NULL is shown in a text table, so that it differs from an empty string.
const TABLE_NULL: &str = "NULL";

/// Writes a result to `out` in `format`. CSV and JSON are written batch by batch, so memory
/// stays flat in the row count; a table needs every row for its column widths. An empty
/// result still shows its columns (a CSV header, a table heading, `[]`).
pub async fn write_results(
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), QueryError> {
    // Arrow's writers turn I/O errors into text; this keeps the kind, so that a closed pipe
    // stays recognisable as one.
    let mut out = WatchedOutput { out, failed: None };
    let result = write_formatted(schema, &mut stream, format, &mut out).await;
    match (result, out.failed) {
        (Err(QueryError::Format(_)), Some(kind)) => Err(QueryError::Output(kind.into())),
        (result, _) => result,
    }
}

async fn write_formatted(
    schema: SchemaRef,
    stream: &mut SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut WatchedOutput<'_>,
) -> Result<(), QueryError> {
    match format {
        OutputFormat::Table => {
            let mut batches = vec![RecordBatch::new_empty(Arc::clone(&schema))];
            while let Some(batch) = stream.next().await {
                batches.push(batch?);
            }
            let options = FormatOptions::default().with_null(TABLE_NULL);
            let table = arrow::util::pretty::pretty_format_batches_with_options(&batches, &options)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            // The header is written with the first batch, so an empty one gives it.
            writer.write(&RecordBatch::new_empty(Arc::clone(&schema)))?;
            while let Some(batch) = stream.next().await {
                writer.write(&batch?)?;
            }
        }
        OutputFormat::Json => {
            write_json::<arrow::json::writer::JsonArray>(stream, &mut *out).await?;
            writeln!(out)?;
        }
        OutputFormat::Jsonl => write_json::<arrow::json::writer::LineDelimited>(stream, &mut *out).await?,
    }
    out.flush()?;
    Ok(())
}

/// JSON in framing `F` (one array, or one object a line), NULL fields kept as `null`.
async fn write_json<F: arrow::json::writer::JsonFormat>(
    stream: &mut SendableRecordBatchStream,
    out: &mut WatchedOutput<'_>,
) -> Result<(), QueryError> {
    let mut writer = arrow::json::WriterBuilder::new().with_explicit_nulls(true).build::<_, F>(out);
    while let Some(batch) = stream.next().await {
        writer.write(&batch?)?;
    }
    writer.finish()?;
    Ok(())
}

/// An output that remembers the kind of its first write error.
struct WatchedOutput<'a> {
    out: &'a mut dyn Write,
    failed: Option<std::io::ErrorKind>,
}

impl Write for WatchedOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf).inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }
}

/// Renders collected batches in `format` (the demo's KPI tables, tests).
pub async fn format_batches(batches: Vec<RecordBatch>, schema: SchemaRef, format: OutputFormat) -> Result<String, QueryError> {
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        Arc::clone(&schema),
        futures::stream::iter(batches.into_iter().map(Ok)),
    );
    let mut out = Vec::new();
    write_results(schema, Box::pin(stream), format, &mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
