//! `cclake`: parses the command line, starts tracing, calls the library.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cclake::generate::{generate, GenerateOptions};
use cclake::query::read_model::{load_views, ReadModel};
use cclake::server::access::{AccessConfig, Role};
use cclake::server::{self, ScheduledIngest, ServeOptions};
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
    /// Manage the users of the server's config file.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Serve the lake over Arrow Flight SQL (read-only), with users and roles from the config.
    Serve {
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Generate demo exports, ingest them into a lake on local disk, create a demo analyst,
    /// and serve the lake over Flight SQL until Ctrl-C.
    Demo {
        /// Folder for the demo's exports, lake and config.
        #[arg(long, env = "CCLAKE_DEMO_DIR", default_value = "demo")]
        dir: PathBuf,
        #[arg(long, env = "CCLAKE_INTERACTIONS", default_value_t = 5000)]
        interactions: usize,
        /// Address to serve on.
        #[arg(long, env = "CCLAKE_ADDR", default_value = "127.0.0.1:50051")]
        addr: SocketAddr,
        /// Ingest and print KPIs, then exit instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user (creating the config file when missing), the password read from stdin.
    Add {
        /// The config file (TOML).
        #[arg(long, env = "CCLAKE_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Read the password from standard input (the only way: never on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Replace a user of the same name.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The config file with users, roles and server limits (TOML).
    #[arg(long, env = "CCLAKE_CONFIG")]
    config: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, env = "CCLAKE_ADDR", default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    /// PEM certificate chain: serve TLS (grpc+tls://).
    #[arg(long, env = "CCLAKE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<String>,
    /// PEM private key of the certificate.
    #[arg(long, env = "CCLAKE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<String>,
    /// Allow plaintext on a non-loopback address (a warning is logged).
    #[arg(long, env = "CCLAKE_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
    /// Run an ingest pass over this source on a schedule, in the same process.
    #[arg(long, env = "CCLAKE_INGEST_FROM")]
    ingest_from: Option<String>,
    /// Time between scheduled ingest passes (e.g. 30s, 5m, 1h).
    #[arg(long, env = "CCLAKE_INTERVAL", default_value = "60s", value_parser = parse_interval)]
    interval: Duration,
    /// Folder of view definitions (`<name>.sql`); default: the built-in views.
    #[arg(long, env = "CCLAKE_VIEWS")]
    views: Option<PathBuf>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration like 30s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("'{text}': unit must be ms, s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
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
    // rustls is built with two crypto providers in this tree: choose one for TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        Command::User { command: UserCommand::Add { config, name, role, password_stdin: _, replace } } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let mut access = AccessConfig::load(&config)?;
            access.add_user(&name, role, password, replace)?;
            access.save(&config)?;
            println!("user {name} ({}) saved in {}", role.as_str(), config.display());
        }
        Command::Serve { lake, serve } => {
            let lake = Lake::open_with(&lake.lake, LakeOptions { progress: false, ..Default::default() }).await?;
            let access = AccessConfig::load(&serve.config)?;
            if access.users.is_empty() {
                return Err(format!("{} has no users: add one with `cclake user add`", serve.config.display()).into());
            }
            let options = ServeOptions {
                tls: serve.tls_cert.clone().zip(serve.tls_key.clone()),
                allow_plaintext: serve.allow_plaintext,
                ingest: serve.ingest_from.clone().map(|source| ScheduledIngest { source, interval: serve.interval }),
            };
            run_server(Arc::new(lake), access, serve.addr, options, serve.views.as_deref()).await?;
        }
        Command::Demo { dir, interactions, addr, no_serve } => demo(dir, interactions, addr, no_serve, progress).await?,
    }
    Ok(())
}

/// Serves until SIGINT or SIGTERM; prints the bound address first (tests read it).
async fn run_server(
    lake: Arc<Lake>,
    access: AccessConfig,
    addr: SocketAddr,
    options: ServeOptions,
    views: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    let memory = access.server.query_memory_limit_mb.max(64) * 1024 * 1024;
    let model = Arc::new(ReadModel::new(lake, load_views(views)?, memory).await?);
    let listener = server::bind(addr, &options).await?;
    let bound = listener.local_addr()?;
    let scheme = if options.tls.is_some() { "grpc+tls" } else { "grpc" };
    println!("listening on {scheme}://{bound}");
    server::serve(model, access, listener, options, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    eprintln!("shutting down: finishing the current ingest pass, then stopping");
}

/// The embedded default end to end: exports → lake on local disk → Flight SQL.
async fn demo(
    dir: PathBuf,
    interactions: usize,
    addr: SocketAddr,
    no_serve: bool,
    progress: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let exports = dir.join("exports");
    if !exports.join("_manifest.json").exists() {
        let options = GenerateOptions { interactions, days: 3, faults: true, ..Default::default() };
        let manifest = generate(&exports, &options)?;
        println!("generated {} export files ({} records) in {}", manifest.files, manifest.records, exports.display());
    }
    let lake_dir = dir.join("lake");
    let lake_path = lake_dir.to_string_lossy().into_owned();
    let lake = Lake::open_with(&lake_path, LakeOptions { progress, ..Default::default() }).await?;
    let report = lake.ingest(&exports.to_string_lossy()).await?;
    println!("{report}\n");
    let kpis = [
        ("Queue KPIs by day (view kpi_queue_daily)", "SELECT date, queue_name, offered, completed, abandoned, \
            round(abandon_rate, 3) AS abandon_rate, round(aht_seconds, 1) AS aht_seconds \
            FROM kpi_queue_daily ORDER BY date, queue_name LIMIT 10"),
        ("Quarantine by reason", "SELECT reason, field, count(*) AS records FROM quarantine GROUP BY 1, 2 ORDER BY 3 DESC, 1"),
    ];
    let model = ReadModel::new(Arc::new(lake), load_views(None)?, 1 << 30).await?;
    let ctx = model.session(Role::Auditor).await?;
    for (title, sql) in kpis {
        let batches = cclake::query::run_sql(&ctx, sql).await?;
        println!("{title}:\n{}", cclake::query::format_batches(&batches, OutputFormat::Table)?);
    }
    if no_serve {
        return Ok(());
    }

    let config = dir.join("cclake.toml");
    let password: String = {
        use rand::Rng;
        let bytes: [u8; 12] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let mut access = AccessConfig::load(&config)?;
    access.add_user("demo", Role::Analyst, &password, true)?;
    access.save(&config)?;
    let lake = model.lake().clone();
    let url = format!("grpc://{addr}");
    println!(
        "\nServing the demo lake over Flight SQL (read-only) on {url} as analyst `demo`, password `{password}`.\n\n\
         Python (pip install adbc-driver-flightsql pyarrow):\n\
         \x20 import adbc_driver_flightsql.dbapi as flightsql\n\
         \x20 conn = flightsql.connect(\"{url}\", db_kwargs={{\"username\": \"demo\", \"password\": \"{password}\"}})\n\
         \x20 cur = conn.cursor(); cur.execute(\"SELECT * FROM kpi_queue_daily ORDER BY date LIMIT 5\"); print(cur.fetch_arrow_table())\n\n\
         JDBC / DBeaver (Arrow Flight SQL driver):\n\
         \x20 jdbc:arrow-flight-sql://{addr}?useEncryption=false&user=demo&password={password}\n\n\
         In-process, without the server:\n\
         \x20 cargo run -- query --lake {lake_path} \"SELECT * FROM kpi_queue_daily ORDER BY date LIMIT 5\"\n\n\
         Ctrl-C stops the server."
    );
    run_server(lake, access, addr, ServeOptions { tls: None, allow_plaintext: false, ingest: None }, None).await
}
