//! The embedded default end to end, as `cclake demo` runs it and an embedding program or a
//! test can: generated exports (flat events and Genesys shapes) → a lake on local disk →
//! the KPI views → a demo analyst to serve them to. Serving is the caller's (the binary
//! serves over Flight SQL until a signal).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::access::{AccessConfig, Role};
use crate::catalog::Catalog;
use crate::generate::genesys::{generate_genesys, GenesysOptions};
use crate::generate::{generate, GenerateOptions};
use crate::query::read_model::{load_views, ReadModel};
use crate::query::OutputFormat;
use crate::{Lake, LakeOptions};

/// The demo analyst's user name, and the file beside the config that keeps its password, so
/// that running the demo again keeps saved connections working.
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD_FILE: &str = "demo-password.txt";

/// What a prepared demo hands its caller.
#[derive(Debug)]
pub struct Demo {
    pub lake: Lake,
    /// The lake's folder, as given to `cclake query --lake`.
    pub lake_path: String,
    /// `cclake.toml` in the demo folder, holding the demo analyst.
    pub config: PathBuf,
    /// The read model the server serves.
    pub model: Arc<ReadModel>,
}

/// The read model a server built from `access` serves: its memory limit and decoded cache.
pub async fn read_model(catalog: Catalog, access: &AccessConfig, views: Option<&Path>) -> Result<Arc<ReadModel>, Box<dyn std::error::Error>> {
    let memory = access.server.query_memory_limit_mb.max(64) * 1024 * 1024;
    let decoded = access.server.decoded_cache_mb.saturating_mul(1024 * 1024);
    Ok(Arc::new(ReadModel::new_with_decoded_cache(catalog, load_views(views)?, memory, decoded).await?))
}

/// Writes the demo's exports under `dir/exports` (unless there already), ingests them into
/// `dir/lake`, and writes the KPI views' first rows and the quarantine by reason to `out`.
pub async fn prepare(dir: &Path, interactions: usize, progress: bool, out: &mut dyn Write) -> Result<Demo, Box<dyn std::error::Error>> {
    let exports = dir.join("exports");
    if !exports.join("_manifest.json").exists() {
        let options = GenerateOptions { interactions, days: 3, faults: true, ..Default::default() };
        let manifest = generate(&exports, &options)?;
        writeln!(out, "{}", manifest.summary(&exports))?;
    }
    if !exports.join("_genesys_manifest.json").exists() {
        // A quarter as many conversations as flat interactions: each conversation is a tree
        // of sessions, segments and metrics and about seven EventBridge events.
        let options = GenesysOptions { conversations: (interactions / 4).max(1), ..Default::default() };
        let manifest = generate_genesys(&exports, &options)?;
        writeln!(out, "{}", manifest.summary(&exports))?;
    }
    let lake_path = dir.join("lake").to_string_lossy().into_owned();
    let lake = Lake::open_or_create_with(&lake_path, LakeOptions { progress, ..Default::default() }).await?;
    let report = lake.ingest(&exports.to_string_lossy()).await?;
    writeln!(out, "{report}")?;
    let config = dir.join("cclake.toml");
    let model = read_model(lake.catalog().clone(), &AccessConfig::load(&config)?, None).await?;
    show_kpis(&model, out).await?;
    Ok(Demo { lake, lake_path, config, model })
}

/// Each KPI view's first rows under the view's own column names (rounded), how many rows
/// there are in all, and the quarantine by reason.
async fn show_kpis(model: &ReadModel, out: &mut dyn Write) -> Result<(), Box<dyn std::error::Error>> {
    const SHOWN: usize = 10;
    let kpis = [
        ("Queue KPIs by day and media, Genesys conversation details", "queue_daily_metrics", "date, queue_name, media_type, n_offered, \
            n_answered, n_abandoned, round(aht_seconds, 1) AS aht_seconds, round(asa_seconds, 1) AS asa_seconds, \
            service_level_target_seconds, round(service_level, 3) AS service_level, round(abandon_rate, 3) AS abandon_rate",
            "date, queue_name, media_type DESC"),
        ("Queue KPIs by day, flat events", "kpi_queue_daily", "date, queue_name, offered, completed, abandoned, \
            round(abandon_rate, 3) AS abandon_rate, round(aht_seconds, 1) AS aht_seconds", "date, queue_name"),
    ];
    let ctx = model.session(Role::Auditor).await?;
    for (title, view, columns, order) in kpis {
        let total = crate::query::run_sql(&ctx, &format!("SELECT count(*) FROM {view}")).await?;
        let total = total.first().filter(|b| b.num_rows() > 0).map_or(0, |b| {
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64)
                .map_or(0, |c| arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&c).value(0))
        });
        let shown = if total as usize > SHOWN { format!("first {SHOWN} of {total} rows") } else { format!("{total} rows") };
        writeln!(out, "\n{title} (view {view}, {shown}; all: SELECT * FROM {view}):")?;
        let sql = format!("SELECT {columns} FROM {view} ORDER BY {order} LIMIT {SHOWN}");
        let (schema, stream) = crate::query::stream_sql(&ctx, &sql).await?;
        crate::query::write_results(schema, stream, OutputFormat::Table, out).await?;
    }
    let (schema, stream) =
        crate::query::stream_sql(&ctx, "SELECT reason, field, count(*) AS records FROM quarantine GROUP BY 1, 2 ORDER BY 3 DESC, 1").await?;
    writeln!(out, "\nQuarantine by reason:")?;
    crate::query::write_results(schema, stream, OutputFormat::Table, out).await?;
    Ok(())
}

/// The demo analyst's password: the kept one when the config still holds the user, else a
/// new random one (saved with the user, and in a file only its owner can read).
pub fn demo_password(dir: &Path, config: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut access = AccessConfig::load(config)?;
    let kept = std::fs::read_to_string(dir.join(DEMO_PASSWORD_FILE)).ok().map(|p| p.trim().to_string());
    if let Some(password) = kept {
        if access.verify(DEMO_USER, &password).is_some() {
            return Ok(password);
        }
    }
    let password: String = {
        use rand::Rng;
        let bytes: [u8; 12] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    access.add_user(DEMO_USER, Role::Analyst, &password, true)?;
    access.save(config)?;
    write_private_file(&dir.join(DEMO_PASSWORD_FILE), &password)?;
    Ok(password)
}

/// Writes a file only its owner can read.
fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
