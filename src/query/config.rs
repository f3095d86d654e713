//! The configuration every read-only session starts from.

use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionConfig;

/// The catalog and schema every table and view is registered under.
pub const CATALOG: &str = "cclake";
pub const SCHEMA: &str = "cc_analytics";

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
