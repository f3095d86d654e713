//! `cclake`: parses the command line, starts tracing, calls the library.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cclake::catalog::Catalog;
use cclake::generate::genesys::{generate_genesys, GenesysOptions};
use cclake::generate::{generate, GenerateOptions};
use cclake::ingest::pseudonym::{KeyTooShort, PseudonymKey};
use cclake::ingest::ExpansionLimits;
use cclake::query::read_model::{load_views, ReadModel};
use cclake::access::{AccessConfig, Role};
use cclake::server::{self, ScheduledIngest, ServeOptions};
use cclake::lake::lease::{LeaseError, LeaseOptions};
use cclake::storage::Location;
use cclake::demo::{demo_password, read_model, DEMO_PASSWORD_FILE, DEMO_USER};
use cclake::{Lake, LakeOptions, OutputFormat};

/// The read model for contact-center exports: JSON exports in, Delta Lake tables and SQL out.
#[derive(Debug, Parser)]
#[command(name = "cclake", version, about, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write synthetic exports (and a manifest of what a correct lake reports) to a local
    /// folder: flat events, Genesys conversation details (with queue, user and wrap-up code
    /// exports), EventBridge events, or all of them.
    Generate {
        /// Folder to write the exports into.
        #[arg(long, env = "CCLAKE_OUT")]
        out: PathBuf,
        /// Which export shapes to write.
        #[arg(long, env = "CCLAKE_SHAPE", value_enum, default_value_t = Shape::Flat)]
        shape: Shape,
        /// Number of interactions (two flat events each) or conversations (Genesys shapes).
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
        /// Rows per commit, all tables together (a flat event is two rows: its fact and its
        /// recording; a conversation one row per session, segment and metric); bounds memory
        /// whatever the input size.
        #[arg(long, env = "CCLAKE_BATCH_ROWS", default_value_t = 1_000_000)]
        batch_rows: usize,
        /// Compact a partition after the pass once it holds this many files.
        #[arg(long, env = "CCLAKE_COMPACT_MIN_FILES", default_value_t = 16)]
        compact_min_files: usize,
        /// Do not compact automatically after the pass.
        #[arg(long, env = "CCLAKE_NO_AUTO_COMPACT")]
        no_auto_compact: bool,
        #[command(flatten)]
        expansion: ExpansionArgs,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Run read-only SQL over the lake and print the result.
    Query {
        #[command(flatten)]
        lake: LakeArgs,
        /// The SQL query (read-only: DDL, DML, COPY and SET are refused).
        sql: String,
        /// How to print the result: an aligned table, CSV, a JSON array, or JSON Lines.
        #[arg(long, env = "CCLAKE_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Folder of view definitions (`<name>.sql`); default: the built-in views.
        #[arg(long, env = "CCLAKE_VIEWS")]
        views: Option<PathBuf>,
    },
    /// Compact every partition holding more than one file into large sorted files.
    Compact {
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Check the lake's invariants: every key held once per table (an aggregate's rows from
    /// one delivery), every live file present. Exits 3 when the lake is damaged.
    Check {
        #[command(flatten)]
        lake: LakeArgs,
        /// Repair what two writers damaged: each key keeps its latest delivery by its table's
        /// merge policy, in one commit per damaged table (takes the writer lease).
        #[arg(long, env = "CCLAKE_REPAIR")]
        repair: bool,
        #[command(flatten)]
        writer: WriterArgs,
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
        /// Number of interactions to generate (two events each) when the demo has no exports yet.
        #[arg(long, env = "CCLAKE_INTERACTIONS", default_value_t = 5000)]
        interactions: usize,
        /// Address to serve on; checked before anything is generated.
        #[arg(long, env = "CCLAKE_ADDR", default_value = "127.0.0.1:50051", value_parser = parse_addr)]
        addr: SocketAddr,
        /// Ingest and print KPIs, then exit instead of serving.
        #[arg(long, env = "CCLAKE_NO_SERVE")]
        no_serve: bool,
    },
}

/// Export shapes `cclake generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shape {
    /// Flat interaction events.
    Flat,
    /// Genesys conversation-detail pages, and queue, user and wrap-up code exports.
    Details,
    /// EventBridge envelopes of streaming detail events.
    Eventbridge,
    /// Every shape, in one folder.
    All,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user (creating the config file when missing). On a terminal the password is
    /// asked for twice, without echo; never give it on the command line.
    Add {
        /// The config file (TOML).
        #[arg(long, env = "CCLAKE_CONFIG")]
        config: PathBuf,
        /// The user name clients sign in with.
        #[arg(long)]
        name: String,
        /// What the user may read: analyst (everything but call_recordings, user_contacts and agent_identities) or auditor (everything).
        #[arg(long, value_enum)]
        role: Role,
        /// Read the password from standard input (a pipe or a file) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Replace a user of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// List the users: names and roles (never the password hashes).
    List {
        /// The config file (TOML).
        #[arg(long, env = "CCLAKE_CONFIG")]
        config: PathBuf,
    },
    /// Remove a user.
    Remove {
        /// The config file (TOML).
        #[arg(long, env = "CCLAKE_CONFIG")]
        config: PathBuf,
        /// The user to remove.
        #[arg(long)]
        name: String,
    },
    /// Set a new password for a user (asked for twice on a terminal; never on the command line).
    Passwd {
        /// The config file (TOML).
        #[arg(long, env = "CCLAKE_CONFIG")]
        config: PathBuf,
        /// The user whose password changes.
        #[arg(long)]
        name: String,
        /// Read the password from standard input (a pipe or a file) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The config file with users, roles and server limits (TOML).
    #[arg(long, env = "CCLAKE_CONFIG")]
    config: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, env = "CCLAKE_ADDR", default_value = "127.0.0.1:50051", value_parser = parse_addr)]
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
    #[command(flatten)]
    expansion: ExpansionArgs,
    /// How long a scheduled pass waits for another writer of the lake (a manual
    /// `cclake ingest`) before it skips its turn; default: the interval.
    #[arg(long, env = "CCLAKE_WAIT", value_parser = parse_interval)]
    wait: Option<Duration>,
    /// A writer lease not renewed for this long is taken over (see `cclake ingest --help`).
    #[arg(long, env = "CCLAKE_LEASE_TTL", default_value = "30s", value_parser = parse_interval)]
    lease_ttl: Duration,
    /// Rows per commit of a scheduled pass, all tables together (as `cclake ingest`).
    #[arg(long, env = "CCLAKE_BATCH_ROWS", default_value_t = 1_000_000)]
    batch_rows: usize,
}

/// One writer at a time: every write to a lake holds its writer lease, kept in the lake's own
/// store (`_cclake/writer/`), so it holds across processes and hosts.
#[derive(Debug, clap::Args)]
struct WriterArgs {
    /// How long to wait for another writer of the lake (another ingest, a compaction, a
    /// server's scheduled pass) to finish; then exit with code 75.
    #[arg(long, env = "CCLAKE_WAIT", default_value = "5m", value_parser = parse_interval)]
    wait: Duration,
    /// A writer renews its lease every third of this; a lease not renewed for this long (its
    /// writer was killed or its host lost) is taken over by the next writer, and a writer
    /// paused past it commits nothing more.
    #[arg(long, env = "CCLAKE_LEASE_TTL", default_value = "30s", value_parser = parse_interval)]
    lease_ttl: Duration,
}

impl WriterArgs {
    fn lease(&self) -> LeaseOptions {
        LeaseOptions { ttl: self.lease_ttl, wait: self.wait }
    }
}

/// The exit code of `cclake check` on a damaged lake.
const EXIT_LAKE_DAMAGED: u8 = 3;

/// `cclake check` found damage (the report says what).
#[derive(Debug, thiserror::Error)]
#[error("the lake is damaged (see above)")]
struct LakeDamaged;

/// The exit code of a write refused because another writer holds the lake, or of a writer
/// that lost its lease (EX_TEMPFAIL: try again later).
const EXIT_LAKE_BUSY: u8 = 75;

/// How export objects are read: how far a gzipped one may expand before it is quarantined
/// unread, and which are streamed.
#[derive(Debug, clap::Args)]
struct ExpansionArgs {
    /// Largest size a gzipped object may expand to, in MB.
    #[arg(long, env = "CCLAKE_MAX_EXPANDED_MB", default_value_t = 1024)]
    max_expanded_mb: u64,
    /// Largest ratio of expanded to compressed size (JSON exports compress 5-20 times).
    #[arg(long, env = "CCLAKE_MAX_EXPANSION_RATIO", default_value_t = 100)]
    max_expansion_ratio: u64,
    /// Objects larger than this (MB, as stored) are read as a stream and committed in parts
    /// of a quarter of --batch-rows, never held whole; `ingest_log` records how far each got,
    /// and an interrupted object resumes after its last committed part. 0 streams every one.
    #[arg(long, env = "CCLAKE_STREAM_ABOVE_MB", default_value_t = 64)]
    stream_above_mb: u64,
    /// The key agent ids holding an e-mail address are pseudonymised with (HMAC-SHA256, at
    /// least 32 characters): the same key gives the same pseudonyms in every lake. Give it
    /// in the environment, not on a command line others can see. Without it, a lake makes
    /// its own key on its first pass and keeps it.
    #[arg(long, env = "CCLAKE_PSEUDONYM_KEY", hide_env_values = true)]
    pseudonym_key: Option<String>,
    /// Queues (partitions of fact_interactions) a day may hold: a record of a further queue
    /// is quarantined as too_many_partitions. A real center has tens to a few thousand; an
    /// export whose queue names explode (ids or text in the field) would make a folder and a
    /// file per value.
    #[arg(long, env = "CCLAKE_MAX_QUEUES_PER_DAY", default_value_t = cclake::ingest::queue_partitions::DEFAULT_MAX_QUEUES_PER_DAY)]
    max_queues_per_day: usize,
}

impl ExpansionArgs {
    fn pseudonym_key(&self) -> Result<Option<Arc<PseudonymKey>>, KeyTooShort> {
        self.pseudonym_key.as_deref().map(|secret| PseudonymKey::new(secret).map(Arc::new)).transpose()
    }

    fn limits(&self) -> ExpansionLimits {
        ExpansionLimits { max_bytes: self.max_expanded_mb.saturating_mul(1 << 20), max_ratio: self.max_expansion_ratio.max(1) }
    }

    /// The write side's options as every writing command (`ingest`, `serve --ingest-from`)
    /// takes them from the command line.
    fn lake_options(&self, lease: LeaseOptions, batch_rows: usize, progress: bool) -> Result<LakeOptions, KeyTooShort> {
        Ok(LakeOptions {
            batch_rows: batch_rows.max(1),
            progress,
            expansion: self.limits(),
            stream_above_bytes: self.stream_above_mb.saturating_mul(1 << 20),
            pseudonym_key: self.pseudonym_key()?,
            max_queues_per_day: self.max_queues_per_day,
            lease,
            ..Default::default()
        })
    }
}

/// The process's peak resident memory (VmHWM), where the system says it (Linux).
fn peak_memory_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// `host:port`, with a host name (`localhost:50051`) or an address (`127.0.0.1:0`,
/// `[::1]:50051`); a name is looked up, and its first address taken.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|e| format!("'{text}' is not host:port (e.g. 127.0.0.1:50051 or localhost:50051): {e}"))?;
    addresses.next().ok_or_else(|| format!("'{text}': the host name has no address"))
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

fn main() -> ExitCode {
    tune_allocator();
    // `cclake query` plans on these threads: their stacks hold the deepest expression the
    // SQL guard lets through, as the server's query threads do.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(cclake::query::executor::QUERY_THREAD_STACK_BYTES)
        .enable_all()
        .build();
    match runtime {
        // On a thread with the query threads' stack, not on the main thread's 8 MB.
        Ok(runtime) => {
            let main = std::thread::Builder::new()
                .name("cclake-main".into())
                .stack_size(cclake::query::executor::QUERY_THREAD_STACK_BYTES)
                .spawn(move || runtime.block_on(cli_main()));
            match main.map(std::thread::JoinHandle::join) {
                Ok(Ok(code)) => code,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(e) => {
                    eprintln!("error: cannot start the main thread: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives each thread an arena that it grows, and hands back to the system,
/// 128 KB at a time: an ingest that builds and frees hundreds of MB of Arrow buffers spends
/// much of its time in the kernel, growing arenas and faulting their pages in again. A 64 MB
/// pad grows and trims them in larger steps. Setting the pad stops glibc from raising its
/// mmap threshold as it does by default (from 128 KB up to 32 MB, as large blocks are
/// freed), so the threshold is set too, or every query buffer over 128 KB is a fresh mmap.
/// Each arena keeps its pad when it trims, so the arenas are capped at two per core (glibc's
/// default allows eight, and a long ingest's blocking threads spread over more of them as it
/// goes, each holding its pad). A `MALLOC_ARENA_MAX` in the environment is left to rule. Set
/// before any thread starts. Figures: benches/README.md, "Why the code is so".
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(2);
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets malloc's parameters, under malloc's own lock.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
}

async fn cli_main() -> ExitCode {
    // CCLAKE_LOG sets cclake's own level. Dependencies stay at `warn`: delta-rs logs file
    // statistics (column minima and maxima, recording URLs among them) at debug level.
    let chosen = std::env::var("CCLAKE_LOG").ok();
    // Scheduled ingest passes say what they committed unless a level was chosen.
    let schedule = if chosen.is_none() { format!(",{}=info", server::SCHEDULE_LOG) } else { String::new() };
    let level = chosen.unwrap_or_else(|| "warn".to_string());
    // delta-rs's MERGE warns, on every merge that prunes files, that a metric of its own
    // is derived: nothing a user can act on.
    let filter = EnvFilter::try_new(format!("warn,deltalake_core::operations::merge=error,cclake={level}{schedule}"))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into files or pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // rustls is built with two crypto providers in this tree: choose one for TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`cclake query ... | head`): nothing more to say to anyone.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) if e.is::<LakeDamaged>() => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_LAKE_DAMAGED)
        }
        Err(e) if is_lease_refusal(e.as_ref()) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_LAKE_BUSY)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(e.as_ref()))
        }
    }
}

/// What `--help` says of exit codes.
const EXIT_CODES_HELP: &str = "Exit codes: 0 done (an ingest stopped by SIGINT/SIGTERM too, at a commit boundary); \
1 any other failure; 2 bad usage (a flag, or a location that cannot be one); 3 `check` found damage; \
65 refused (a statement the lake will not run, a pseudonym key that is not the lake's); \
66 no lake, or a source that is missing, empty or the lake itself; 74 a store or file that cannot be read or written; \
75 another writer holds the lake (try again later).";

/// Exit codes by class of failure (sysexits.h where one fits), in README and `--help`.
const EXIT_USAGE: u8 = 2;
const EXIT_DATA_REFUSED: u8 = 65;
const EXIT_NO_INPUT: u8 = 66;
const EXIT_IO: u8 = 74;

/// The exit code of a failure: a location that cannot be one is bad usage (2); no lake, or a
/// source that is missing, empty or the lake itself (66); a statement or key the lake
/// refuses (65); a store or file that cannot be read or written (74); anything else 1.
fn exit_code(error: &(dyn std::error::Error + 'static)) -> u8 {
    use cclake::catalog::CatalogError;
    use cclake::lake::pseudonym_key::KeyError;
    use cclake::query::QueryError;
    use cclake::storage::StorageError;
    use datafusion::error::DataFusionError;
    use cclake::LakeError;
    fn storage(e: &StorageError) -> u8 {
        match e {
            StorageError::InvalidLocation(..) | StorageError::UnsupportedScheme(_) => EXIT_USAGE,
            _ => EXIT_IO,
        }
    }
    fn catalog(e: &CatalogError) -> u8 {
        match e {
            CatalogError::NoLake { .. } => EXIT_NO_INPUT,
            CatalogError::Storage(e) => storage(e),
            CatalogError::Delta { .. } => 1,
        }
    }
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(e) = e.downcast_ref::<LakeError>() {
            return match e {
                LakeError::SourceMissing { .. } | LakeError::SourceEmpty { .. } | LakeError::SourceIsALake { .. } | LakeError::SourceOverlapsLake { .. } => {
                    EXIT_NO_INPUT
                }
                LakeError::ListSource { .. } | LakeError::ReadSource { .. } => EXIT_IO,
                LakeError::Storage(e) => storage(e),
                LakeError::Catalog(e) => catalog(e),
                LakeError::PseudonymKey(KeyError::Store { .. }) => EXIT_IO,
                LakeError::PseudonymKey(KeyError::Storage(e)) => storage(e),
                LakeError::PseudonymKey(_) => EXIT_DATA_REFUSED,
                _ => 1,
            };
        }
        if let Some(e) = e.downcast_ref::<CatalogError>() {
            return catalog(e);
        }
        if let Some(e) = e.downcast_ref::<StorageError>() {
            return storage(e);
        }
        if let Some(e) = e.downcast_ref::<QueryError>() {
            return match e {
                QueryError::Catalog(e) => catalog(e),
                QueryError::Output(_) => EXIT_IO,
                QueryError::DataFusion(DataFusionError::ObjectStore(_) | DataFusionError::IoError(_)) => EXIT_IO,
                QueryError::ReadOnly(_) | QueryError::Refused(_) | QueryError::DataFusion(_) => EXIT_DATA_REFUSED,
                _ => 1,
            };
        }
        if e.downcast_ref::<object_store::Error>().is_some() || e.downcast_ref::<std::io::Error>().is_some() {
            return EXIT_IO;
        }
        current = e.source();
    }
    1
}

/// Whether `error`, or any error behind it, is another writer holding the lake.
fn is_lease_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(LeaseError::Busy { .. } | LeaseError::Lost { .. }) = e.downcast_ref::<LeaseError>() {
            return true;
        }
        if let Some(cclake::LakeError::Lease(LeaseError::Busy { .. } | LeaseError::Lost { .. })) = e.downcast_ref::<cclake::LakeError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether `error`, or any error behind it, is a write to a closed pipe.
fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// Standard output, buffered; every write returns its error (a closed pipe ends the program
/// quietly instead of panicking as `println!` does).
fn stdout() -> std::io::BufWriter<std::io::Stdout> {
    std::io::BufWriter::new(std::io::stdout())
}

/// Memory a query run by the CLI may use before sorts and aggregations spill to disk.
const CLI_QUERY_MEMORY_BYTES: usize = 2048 * 1024 * 1024;

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let progress = std::io::stderr().is_terminal();
    let mut out = stdout();
    match cli.command {
        Command::Generate { out: folder, shape, interactions, days, seed, faults } => {
            if matches!(shape, Shape::Flat | Shape::All) {
                let options = GenerateOptions { interactions, days, seed, faults, ..Default::default() };
                let manifest = generate(&folder, &options)?;
                writeln!(out, "{}", manifest.summary(&folder))?;
            }
            if shape != Shape::Flat {
                let options = GenesysOptions {
                    conversations: interactions,
                    details: shape != Shape::Eventbridge,
                    eventbridge: shape != Shape::Details,
                    days,
                    seed,
                    ..Default::default()
                };
                std::fs::create_dir_all(&folder)?;
                let manifest = generate_genesys(&folder, &options)?;
                writeln!(out, "{}", manifest.summary(&folder))?;
            }
        }
        Command::Ingest { lake, source, batch_rows, compact_min_files, no_auto_compact, expansion, writer } => {
            // Checked before the lake is opened, since opening creates it: swapped flags or a
            // mistyped source must not leave a lake behind.
            let source_location = Location::parse(&source, false)?;
            let lake_location = Location::parse(&lake.lake, false)?;
            cclake::pipeline::check_source_location(&source_location, &lake_location, true).await?;
            let options = LakeOptions {
                compact_min_files,
                auto_compact: !no_auto_compact,
                ..expansion.lake_options(writer.lease(), batch_rows, progress)?
            };
            let lake = Lake::open_or_create_with(&lake.lake, options).await?;
            // SIGINT or SIGTERM: the commit in flight finishes, no further object is taken,
            // and the pass ends with what it committed (exit 0).
            let stop = tokio_util::sync::CancellationToken::new();
            let signal = shutdown_signal()?;
            let stopping = stop.clone();
            tokio::spawn(async move {
                signal.await;
                stopping.cancel();
            });
            let report = lake.ingest_until(&source, &stop).await?;
            writeln!(out, "{report}")?;
            if let Some(mb) = peak_memory_mb() {
                writeln!(out, "peak memory: {mb} MB")?;
            }
        }
        Command::Query { lake, sql, format, views } => {
            let catalog = Catalog::open(&lake.lake).await?;
            let model = ReadModel::new(catalog, load_views(views.as_deref())?, CLI_QUERY_MEMORY_BYTES).await?;
            // Whoever can read the lake's files reads every table: the CLI runs as auditor.
            let ctx = model.session(Role::Auditor).await?;
            let (schema, stream) = cclake::query::stream_sql(&ctx, &sql).await?;
            cclake::query::write_results(schema, stream, format, &mut out).await?;
        }
        Command::Compact { lake, writer } => {
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), ..Default::default() }).await?;
            let report = lake.compact().await?;
            writeln!(out, "{report}")?;
        }
        Command::Check { lake, repair, writer } => {
            let lake = Lake::open_with(&lake.lake, LakeOptions { lease: writer.lease(), ..Default::default() }).await?;
            let report = lake.check(repair).await?;
            writeln!(out, "{report}")?;
            out.flush()?;
            if !report.is_sound() {
                return Err(LakeDamaged.into());
            }
        }
        Command::User { command: UserCommand::Add { config, name, role, password_stdin, replace } } => {
            let password = read_new_password(&name, password_stdin)?;
            let mut access = AccessConfig::load(&config)?;
            access.add_user(&name, role, &password, replace)?;
            access.save(&config)?;
            writeln!(out, "user {name} ({}) saved in {}", role.as_str(), config.display())?;
        }
        Command::User { command: UserCommand::List { config } } => {
            let access = AccessConfig::load(&existing_config(&config)?)?;
            writeln!(out, "{:<24} role", "name")?;
            for user in &access.users {
                writeln!(out, "{:<24} {}", user.name, user.role.as_str())?;
            }
        }
        Command::User { command: UserCommand::Remove { config, name } } => {
            let mut access = AccessConfig::load(&existing_config(&config)?)?;
            access.remove_user(&config, &name)?;
            access.save(&config)?;
            writeln!(out, "user {name} removed from {} (a running server keeps it until restarted)", config.display())?;
        }
        Command::User { command: UserCommand::Passwd { config, name, password_stdin } } => {
            let mut access = AccessConfig::load(&existing_config(&config)?)?;
            let Some(role) = access.users.iter().find(|u| u.name == name).map(|u| u.role) else {
                return Err(cclake::access::AccessError::NoSuchUser { path: config.display().to_string(), name }.into());
            };
            let password = read_new_password(&name, password_stdin)?;
            access.add_user(&name, role, &password, true)?;
            access.save(&config)?;
            writeln!(out, "password of {name} ({}) changed in {}", role.as_str(), config.display())?;
        }
        Command::Serve { lake, serve } => {
            let mut options = ServeOptions {
                tls: serve.tls_cert.clone().zip(serve.tls_key.clone()),
                allow_plaintext: serve.allow_plaintext,
                ingest: None,
            };
            // The address first: a taken port or a refused plaintext address is said at once.
            let listener = server::bind(serve.addr, &options).await?;
            // The read side opens the tables read-only; the writer only with --ingest-from.
            let catalog = Catalog::open(&lake.lake).await?;
            if let Some(source) = serve.ingest_from.clone() {
                let lease = LeaseOptions { ttl: serve.lease_ttl, wait: serve.wait.unwrap_or(serve.interval) };
                let lake_options = serve.expansion.lake_options(lease, serve.batch_rows, false)?;
                let writer = Arc::new(Lake::open_with(&lake.lake, lake_options).await?);
                writer.check_source(&Location::parse(&source, false)?).await?;
                options.ingest = Some(ScheduledIngest { lake: writer, source, interval: serve.interval });
            }
            let access = AccessConfig::load(&existing_config(&serve.config)?)?;
            if access.users.is_empty() {
                return Err(format!("{} has no users: add one with `cclake user add`", serve.config.display()).into());
            }
            let model = read_model(catalog, &access, serve.views.as_deref()).await?;
            run_server(model, access, listener, options, &mut out).await?;
        }
        Command::Demo { dir, interactions, addr, no_serve } => {
            demo(dir, interactions, addr, no_serve, progress, &mut out).await?
        }
    }
    out.flush()?;
    Ok(())
}

/// `path` when the config file exists; else an error saying so and how to make it.
fn existing_config(path: &Path) -> Result<PathBuf, String> {
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    Err(format!(
        "config file {} does not exist: create it with `cclake user add --config {} --name NAME --role analyst`",
        path.display(),
        path.display()
    ))
}

/// The new user's password: from standard input with `--password-stdin` (without echo when
/// that is a terminal), else asked for twice on the terminal.
fn read_new_password(name: &str, from_stdin: bool) -> Result<String, Box<dyn std::error::Error>> {
    let stdin_is_terminal = std::io::stdin().is_terminal();
    if from_stdin && !stdin_is_terminal {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        return Ok(password.trim_end_matches(['\n', '\r']).to_string());
    }
    if !stdin_is_terminal {
        return Err("no terminal to ask for the password on: pipe it in with --password-stdin".into());
    }
    let password = rpassword::prompt_password(format!("Password for {name}: "))?;
    if !from_stdin {
        let again = rpassword::prompt_password("Repeat the password: ")?;
        if again != password {
            return Err("the two passwords differ; nothing was saved".into());
        }
    }
    if password.is_empty() {
        return Err("the password is empty; nothing was saved".into());
    }
    Ok(password)
}

/// Serves until SIGINT or SIGTERM; prints the bound address first (tests read it).
async fn run_server(
    model: Arc<ReadModel>,
    access: AccessConfig,
    listener: tokio::net::TcpListener,
    options: ServeOptions,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
    let bound = listener.local_addr()?;
    let scheme = if options.tls.is_some() { "grpc+tls" } else { "grpc" };
    writeln!(out, "listening on {scheme}://{bound}")?;
    out.flush()?;
    server::serve(model, access, listener, options, shutdown).await?;
    Ok(())
}

/// Registers the SIGINT and SIGTERM handlers now (for a server, before the address is
/// printed: a signal sent as soon as it is seen listening must stop it cleanly, not kill it),
/// and returns the future that resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("stopping: the commit in flight finishes, no further export object is taken");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: the commit in flight finishes, no further export object is taken");
        })
    }
}

/// How to run this very binary again, as the person sees it (relative to the current folder
/// when it lies below it): the demo's printed commands work as printed.
fn this_program() -> String {
    let Ok(exe) = std::env::current_exe() else { return "cclake".to_string() };
    let relative = std::env::current_dir().ok().and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf));
    match relative {
        Some(path) => format!("./{}", path.display()),
        None => exe.display().to_string(),
    }
}

/// Quotes `text` for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The embedded default end to end: exports → lake on local disk → Flight SQL.
async fn demo(
    dir: PathBuf,
    interactions: usize,
    addr: SocketAddr,
    no_serve: bool,
    progress: bool,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error>> {
    let serve_options = ServeOptions { tls: None, allow_plaintext: false, ingest: None };
    // Take the port before any work, so that a busy port costs nothing and says what to do.
    let listener = if no_serve {
        None
    } else {
        Some(server::bind(addr, &serve_options).await.map_err(|e| {
            format!("{e}\n(another program, or another demo, is using it: pass another address, e.g. --addr 127.0.0.1:50052)")
        })?)
    };
    let demo = cclake::demo::prepare(&dir, interactions, progress, out).await?;
    let Some(listener) = listener else {
        return Ok(());
    };

    let password = demo_password(&dir, &demo.config)?;
    let access = AccessConfig::load(&demo.config)?;
    let bound = listener.local_addr()?;
    let url = format!("grpc://{bound}");
    let query_sql = "SELECT * FROM queue_daily_metrics ORDER BY date LIMIT 5";
    writeln!(
        out,
        "\nServing the demo lake over Flight SQL (read-only) on {url} as analyst `{DEMO_USER}`, password `{password}`\n\
         (kept in {} for the next run).\n\n\
         Python (pip install adbc-driver-flightsql pyarrow), the three lines as they are:\n\n\
         import adbc_driver_flightsql.dbapi as flightsql\n\
         conn = flightsql.connect(\"{url}\", db_kwargs={{\"username\": \"{DEMO_USER}\", \"password\": \"{password}\"}}, autocommit=True)\n\
         cur = conn.cursor(); cur.execute(\"{query_sql}\"); print(cur.fetch_arrow_table())\n\n\
         JDBC / DBeaver (Arrow Flight SQL driver), the URL:\n\n\
         jdbc:arrow-flight-sql://{bound}?useEncryption=false&user={DEMO_USER}&password={password}\n\n\
         In-process, without the server (another terminal, same folder):\n\n\
         {} query --lake {} \"{query_sql}\"\n\n\
         Ctrl-C stops the server.",
        dir.join(DEMO_PASSWORD_FILE).display(),
        this_program(),
        shell_quote(&demo.lake_path),
    )?;
    run_server(demo.model, access, listener, serve_options, out).await
}
