//! `cclake`: parses the command line, starts tracing, calls the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cclake::generate::{generate, GenerateOptions};
use cclake::{Lake, LakeOptions, OutputFormat};

/// The read model for contact-center exports: JSON exports in, Delta Lake tables and SQL out.
#[derive(Debug, Parser)]
#[command(name = "cclake", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write synthetic flat-event exports (and `_manifest.json`) to a local folder.
    Generate {
        /// Folder to write the exports into.
        #[arg(long, env = "CCLAKE_OUT")]
        out: PathBuf,
        /// Number of interactions (two events each).
        #[arg(long, env = "CCLAKE_INTERACTIONS", default_value_t = 5000)]
        interactions: usize,
        /// Number of days the interactions spread over.
        #[arg(long, env = "CCLAKE_DAYS", default_value_t = 3)]
        days: u32,
        /// Seed: the same seed writes the same exports.
        #[arg(long, env = "CCLAKE_SEED", default_value_t = 1)]
        seed: u64,
        /// Add re-deliveries, corrections, late files, drifted types, unknown fields,
        /// malformed records and unmasked numbers.
        #[arg(long, env = "CCLAKE_FAULTS")]
        faults: bool,
    },
    /// Ingest every export object under the source not yet in the lake.
    Ingest {
        #[command(flatten)]
        lake: LakeArgs,
        /// Exports: a local folder or a URL (file://, s3://, gs://, az://).
        #[arg(long, env = "CCLAKE_SOURCE")]
        source: String,
        /// Valid events per commit; bounds memory whatever the input size.
        #[arg(long, env = "CCLAKE_BATCH_ROWS", default_value_t = 500_000)]
        batch_rows: usize,
        /// Compact a partition after the pass once it holds this many files.
        #[arg(long, env = "CCLAKE_COMPACT_MIN_FILES", default_value_t = 16)]
        compact_min_files: usize,
        /// Do not compact automatically after the pass.
        #[arg(long, env = "CCLAKE_NO_AUTO_COMPACT")]
        no_auto_compact: bool,
    },
    /// Run read-only SQL over the lake and print the result.
    Query {
        #[command(flatten)]
        lake: LakeArgs,
        /// The SQL query.
        sql: String,
        #[arg(long, env = "CCLAKE_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Compact every partition holding more than one file into large sorted files.
    Compact {
        #[command(flatten)]
        lake: LakeArgs,
    },
    /// Generate demo exports, ingest them into a lake on local disk, print KPIs.
    Demo {
        /// Folder for the demo's exports and lake.
        #[arg(long, env = "CCLAKE_DEMO_DIR", default_value = "demo")]
        dir: PathBuf,
        #[arg(long, env = "CCLAKE_INTERACTIONS", default_value_t = 5000)]
        interactions: usize,
    },
}

#[derive(Debug, clap::Args)]
struct LakeArgs {
    /// The lake root: a local folder or a URL (file://, s3://, gs://, az://).
    #[arg(long, env = "CCLAKE_LAKE")]
    lake: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // CCLAKE_LOG sets cclake's own level. Dependencies stay at `warn`: delta-rs logs file
    // statistics (column minima and maxima, recording URLs among them) at debug level.
    let level = std::env::var("CCLAKE_LOG").unwrap_or_else(|_| "warn".to_string());
    let filter = EnvFilter::try_new(format!("warn,cclake={level}"))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let progress = std::io::stderr().is_terminal();
    match cli.command {
        Command::Generate { out, interactions, days, seed, faults } => {
            let options = GenerateOptions { interactions, days, seed, faults, ..Default::default() };
            let manifest = generate(&out, &options)?;
            println!(
                "wrote {} files ({:.1} MB, {} records) to {}",
                manifest.files,
                manifest.bytes as f64 / 1e6,
                manifest.records,
                out.display()
            );
        }
        Command::Ingest { lake, source, batch_rows, compact_min_files, no_auto_compact } => {
            let options = LakeOptions {
                batch_rows,
                compact_min_files,
                auto_compact: !no_auto_compact,
                progress,
                ..Default::default()
            };
            let lake = Lake::open_with(&lake.lake, options).await?;
            let report = lake.ingest(&source).await?;
            println!("{report}");
        }
        Command::Query { lake, sql, format } => {
            let lake = Lake::open(&lake.lake).await?;
            let batches = lake.sql(&sql).await?;
            println!("{}", cclake::query::format_batches(&batches, format)?);
        }
        Command::Compact { lake } => {
            let lake = Lake::open(&lake.lake).await?;
            let outcome = lake.compact().await?;
            println!(
                "fact_interactions: {} partitions compacted, {} files replaced by {}",
                outcome.partitions_compacted, outcome.files_removed, outcome.files_added
            );
        }
        Command::Demo { dir, interactions } => demo(dir, interactions, progress).await?,
    }
    Ok(())
}

/// Until the Flight SQL server exists the demo ends with KPIs printed from the lake.
async fn demo(dir: PathBuf, interactions: usize, progress: bool) -> Result<(), Box<dyn std::error::Error>> {
    let exports = dir.join("exports");
    if !exports.join("_manifest.json").exists() {
        let options = GenerateOptions { interactions, days: 3, faults: true, ..Default::default() };
        let manifest = generate(&exports, &options)?;
        println!("generated {} export files ({} records) in {}", manifest.files, manifest.records, exports.display());
    }
    let lake_dir = dir.join("lake");
    let lake_path = lake_dir.to_string_lossy();
    let lake = Lake::open_with(&lake_path, LakeOptions { progress, ..Default::default() }).await?;
    let report = lake.ingest(&exports.to_string_lossy()).await?;
    println!("{report}\n");
    let kpis = [
        ("Interactions by queue and day", "SELECT event_date, queue_name, count(DISTINCT interaction_id) AS interactions, \
            sum(CASE WHEN state = 'abandoned' THEN 1 ELSE 0 END) AS abandoned, \
            round(avg(CASE WHEN state = 'completed' THEN duration_seconds END), 1) AS aht_seconds \
            FROM fact_interactions GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 12"),
        ("Quarantine by reason", "SELECT reason, field, count(*) AS records FROM quarantine GROUP BY 1, 2 ORDER BY 3 DESC"),
    ];
    for (title, sql) in kpis {
        println!("{title}:\n{}", cclake::query::format_batches(&lake.sql(sql).await?, OutputFormat::Table)?);
    }
    println!(
        "\nlake: {}\ntry:  cargo run -- query --lake {} \"SELECT queue_name, avg(duration_seconds) FROM fact_interactions GROUP BY 1\"",
        lake.root(),
        lake_path
    );
    Ok(())
}
