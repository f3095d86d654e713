//! The read side: a DataFusion session over the lake's Delta tables that only runs queries,
//! in catalog `cclake`, schema `cc_analytics` (the default, so unqualified names work).

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::{DeltaTable, DeltaTableError};

pub mod read_model;

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
    #[error("cannot format results: {0}")]
    Format(#[from] arrow::error::ArrowError),
}

/// How `cclake query` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

/// Statements, DDL and DML are refused at plan level, whichever way SQL arrives.
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// A session with each table registered under `cclake.cc_analytics`.
pub async fn read_only_session(
    tables: Vec<(&str, DeltaTable)>,
) -> Result<SessionContext, QueryError> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(true)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    for (name, delta) in tables {
        let delta_error = |source| QueryError::Delta {
            table: name.to_string(),
            source,
        };
        delta.update_datafusion_session(&ctx.state()).map_err(delta_error)?;
        let provider = delta.table_provider().await?;
        ctx.register_table(name, provider)?;
    }
    Ok(ctx)
}

/// Plans `sql` under [`read_only_options`] and collects the result.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let df = ctx
        .sql_with_options(sql, read_only_options())
        .await
        .map_err(read_only_error)?;
    Ok(df.collect().await?)
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

/// Renders batches as a text table, CSV with a header, or a JSON array of objects.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    match format {
        OutputFormat::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string()),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in batches {
                    writer.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs)?;
            writer.finish()?;
            let mut out = String::from_utf8_lossy(&writer.into_inner()).into_owned();
            if out.is_empty() {
                out.push_str("[]");
            }
            Ok(out)
        }
    }
}
