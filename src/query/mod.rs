//! The read side: a DataFusion session over the lake's Delta tables that only runs queries,
//! in catalog `cclake`, schema `cc_analytics` (the default, so unqualified names work).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;

use crate::catalog::Catalog;

pub mod as_of;
pub mod concat;
pub mod config;
pub mod decoded;
pub mod error;
pub mod executor;
pub mod key_grouped;
pub mod limits;
pub mod output;
pub mod plain_types;
pub mod read_model;
pub mod session;
pub mod snapshot_table;
pub mod sql_guard;
pub mod utc_date_cast;
pub mod utc_date_trunc;

pub use config::{read_only_options, CATALOG, SCHEMA};
pub use error::{QueryError, ReadOnlyRefusal};
pub use output::{format_batches, write_results, OutputFormat};
pub use session::{execute_in_own_pool, parse_sql, plan_sql, plan_statement, read_only_session};

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

/// Plans `sql` queries only and collects the result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let (_, stream) = stream_sql(ctx, sql).await?;
    Ok(datafusion::physical_plan::common::collect(stream).await?)
}

/// Plans `sql` queries only and starts it: the result schema and its stream.
pub async fn stream_sql(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
    let df = plan_sql(ctx, sql, sql_guard::SqlLimits::default()).await?;
    let stream = execute_in_own_pool(df).await?;
    Ok((stream.schema(), stream))
}
