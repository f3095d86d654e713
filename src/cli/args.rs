//! The command line: every command, its flags and their environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cclake::ingest::pseudonym::{KeyTooShort, PseudonymKey};
use cclake::access::Role;
use cclake::ingest::ExpansionLimits;
use cclake::lake::lease::LeaseOptions;
use cclake::query::as_of::AsOf;
use cclake::{LakeOptions, OutputFormat};

use super::exit::EXIT_CODES_HELP;

/// The read model for contact-center exports: JSON exports in, Delta Lake tables and SQL out.
#[derive(Debug, Parser)]
#[command(name = "cclake", version, about, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// Answer from the lake as it stood at a lake version (a version of `ingest_log`,
        /// committed last by each ingest batch) or an RFC 3339 time; refused, never answered
        /// from the newest data, when a vacuum deleted the files of that state.
        #[arg(long, env = "CCLAKE_AS_OF")]
        as_of: Option<AsOf>,
    },
    /// Delete the files no snapshot within the retention needs (Delta VACUUM): files that
    /// compaction, corrections, erasure or retention removed from the tables longer ago than
    /// `--retain`. Never a file of the newest snapshot. Reports as of a time before
    /// now - retain are refused afterwards.
    Vacuum {
        #[command(flatten)]
        lake: LakeArgs,
        /// Keep the files every snapshot of this last period needs (e.g. 7d, 12h); 0d deletes
        /// every file the newest snapshot does not hold (after an erasure it is the point;
        /// queries running on an older snapshot then fail).
        #[arg(long, default_value = "7d", value_parser = parse_interval)]
        retain: Duration,
        /// Say which files would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Drop the rows dated before a horizon from every dated table (whole date partitions;
    /// quarantine by its objects' delivery time), one commit per table. The files stay until
    /// `cclake vacuum`.
    Retain {
        #[command(flatten)]
        lake: LakeArgs,
        /// Keep this many days back from today (UTC), e.g. 400d.
        #[arg(long, value_parser = parse_interval, required_unless_present = "before", conflicts_with = "before")]
        older_than: Option<Duration>,
        /// Drop rows dated before this day (YYYY-MM-DD).
        #[arg(long)]
        before: Option<chrono::NaiveDate>,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Erase customers: every row of these conversations (Genesys) or interactions (flat
    /// events) leaves every table, quarantined records that name them too, in commits that
    /// rewrite only the files involved. The erasure is recorded in the lake (when, by whom,
    /// the ids as keyed hashes), and later deliveries of these ids are dropped at ingest.
    /// The old files stay until `cclake vacuum`.
    Erase {
        #[command(flatten)]
        lake: LakeArgs,
        /// A Genesys conversation id (repeatable).
        #[arg(long = "conversation-id")]
        conversation_ids: Vec<String>,
        /// A flat event's interaction id (repeatable).
        #[arg(long = "interaction-id")]
        interaction_ids: Vec<String>,
        /// A file of ids, one per line (blank lines and `#` comments skipped).
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// Who asked for the erasure, for the record (default: the user running cclake).
        #[arg(long, env = "CCLAKE_ERASED_BY")]
        by: Option<String>,
        /// The lake's pseudonym key, when it was given to `ingest` rather than made by the
        /// lake: erased ids are recorded as hashes under it.
        #[arg(long, env = "CCLAKE_PSEUDONYM_KEY", hide_env_values = true)]
        pseudonym_key: Option<String>,
        #[command(flatten)]
        writer: WriterArgs,
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
pub(crate) enum Shape {
    /// Flat interaction events.
    Flat,
    /// Flat events shaped like the design card's example: e-mail agent ids, `source_ip` and
    /// `campaign_id` in every record, recordings on every answered contact, spaced JSON,
    /// numeric interaction ids, a fifth of the objects gzipped.
    Seed,
    /// Genesys conversation-detail pages, and queue, user and wrap-up code exports.
    Details,
    /// EventBridge envelopes of streaming detail events.
    Eventbridge,
    /// Every shape, in one folder.
    All,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
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
pub(crate) struct ServeArgs {
    /// The config file with users, roles and server limits (TOML).
    #[arg(long, env = "CCLAKE_CONFIG")]
    pub(crate) config: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, env = "CCLAKE_ADDR", default_value = "127.0.0.1:50051", value_parser = parse_addr)]
    pub(crate) addr: SocketAddr,
    /// PEM certificate chain: serve TLS (grpc+tls://).
    #[arg(long, env = "CCLAKE_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<String>,
    /// PEM private key of the certificate.
    #[arg(long, env = "CCLAKE_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<String>,
    /// Allow plaintext on a non-loopback address (a warning is logged).
    #[arg(long, env = "CCLAKE_ALLOW_PLAINTEXT")]
    pub(crate) allow_plaintext: bool,
    /// Run an ingest pass over this source on a schedule, in the same process.
    #[arg(long, env = "CCLAKE_INGEST_FROM")]
    pub(crate) ingest_from: Option<String>,
    /// With --ingest-from, once a day drop rows older than this many days (as `cclake
    /// retain --older-than`, e.g. 400d).
    #[arg(long, env = "CCLAKE_RETAIN_FOR", value_parser = parse_interval, requires = "ingest_from")]
    pub(crate) retain_for: Option<Duration>,
    /// With --ingest-from, once a day vacuum files no snapshot of this last period needs (as
    /// `cclake vacuum --retain`, e.g. 7d).
    #[arg(long, env = "CCLAKE_VACUUM_RETAIN", value_parser = parse_interval, requires = "ingest_from")]
    pub(crate) vacuum_retain: Option<Duration>,
    /// Time between scheduled ingest passes (e.g. 30s, 5m, 1h).
    #[arg(long, env = "CCLAKE_INTERVAL", default_value = "60s", value_parser = parse_interval)]
    pub(crate) interval: Duration,
    /// Folder of view definitions (`<name>.sql`); default: the built-in views.
    #[arg(long, env = "CCLAKE_VIEWS")]
    pub(crate) views: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) expansion: ExpansionArgs,
    /// How long a scheduled pass waits for another writer of the lake (a manual
    /// `cclake ingest`) before it skips its turn; default: the interval.
    #[arg(long, env = "CCLAKE_WAIT", value_parser = parse_interval)]
    pub(crate) wait: Option<Duration>,
    /// A writer lease not renewed for this long is taken over (see `cclake ingest --help`).
    #[arg(long, env = "CCLAKE_LEASE_TTL", default_value = "30s", value_parser = parse_interval)]
    pub(crate) lease_ttl: Duration,
    /// Rows per commit of a scheduled pass, all tables together (as `cclake ingest`).
    #[arg(long, env = "CCLAKE_BATCH_ROWS", default_value_t = 1_000_000)]
    pub(crate) batch_rows: usize,
}

/// One writer at a time: every write to a lake holds its writer lease, kept in the lake's own
/// store (`_cclake/writer/`), so it holds across processes and hosts.
#[derive(Debug, clap::Args)]
pub(crate) struct WriterArgs {
    /// How long to wait for another writer of the lake (another ingest, a compaction, a
    /// server's scheduled pass) to finish; then exit with code 75.
    #[arg(long, env = "CCLAKE_WAIT", default_value = "5m", value_parser = parse_interval)]
    pub(crate) wait: Duration,
    /// A writer renews its lease every third of this; a lease not renewed for this long (its
    /// writer was killed or its host lost) is taken over by the next writer, and a writer
    /// paused past it commits nothing more.
    #[arg(long, env = "CCLAKE_LEASE_TTL", default_value = "30s", value_parser = parse_interval)]
    pub(crate) lease_ttl: Duration,
}

impl WriterArgs {
    pub(crate) fn lease(&self) -> LeaseOptions {
        LeaseOptions { ttl: self.lease_ttl, wait: self.wait }
    }
}

/// How export objects are read: how far a gzipped one may expand before it is quarantined
/// unread, and which are streamed.
#[derive(Debug, clap::Args)]
pub(crate) struct ExpansionArgs {
    /// Largest size a gzipped object may expand to, in MB.
    #[arg(long, env = "CCLAKE_MAX_EXPANDED_MB", default_value_t = 1024)]
    pub(crate) max_expanded_mb: u64,
    /// Largest ratio of expanded to compressed size (JSON exports compress 5-20 times).
    #[arg(long, env = "CCLAKE_MAX_EXPANSION_RATIO", default_value_t = 100)]
    pub(crate) max_expansion_ratio: u64,
    /// Objects larger than this (MB, as stored) are read as a stream and committed in parts
    /// of a quarter of --batch-rows, never held whole; `ingest_log` records how far each got,
    /// and an interrupted object resumes after its last committed part. 0 streams every one.
    #[arg(long, env = "CCLAKE_STREAM_ABOVE_MB", default_value_t = 64)]
    pub(crate) stream_above_mb: u64,
    /// The key agent ids holding an e-mail address are pseudonymised with (HMAC-SHA256, at
    /// least 32 characters): the same key gives the same pseudonyms in every lake. Give it
    /// in the environment, not on a command line others can see. Without it, a lake makes
    /// its own key on its first pass and keeps it.
    #[arg(long, env = "CCLAKE_PSEUDONYM_KEY", hide_env_values = true)]
    pub(crate) pseudonym_key: Option<String>,
    /// Queues (partitions of fact_interactions) a day may hold: a record of a further queue
    /// is quarantined as too_many_partitions. A real center has tens to a few thousand; an
    /// export whose queue names explode (ids or text in the field) would make a folder and a
    /// file per value.
    #[arg(long, env = "CCLAKE_MAX_QUEUES_PER_DAY", default_value_t = cclake::ingest::queue_partitions::DEFAULT_MAX_QUEUES_PER_DAY)]
    pub(crate) max_queues_per_day: usize,
}

impl ExpansionArgs {
    pub(crate) fn pseudonym_key(&self) -> Result<Option<Arc<PseudonymKey>>, KeyTooShort> {
        self.pseudonym_key.as_deref().map(|secret| PseudonymKey::new(secret).map(Arc::new)).transpose()
    }

    pub(crate) fn limits(&self) -> ExpansionLimits {
        ExpansionLimits { max_bytes: self.max_expanded_mb.saturating_mul(1 << 20), max_ratio: self.max_expansion_ratio.max(1) }
    }

    /// The write side's options as every writing command (`ingest`, `serve --ingest-from`)
    /// takes them from the command line.
    pub(crate) fn lake_options(&self, lease: LeaseOptions, batch_rows: usize, progress: bool) -> Result<LakeOptions, KeyTooShort> {
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
pub(crate) fn peak_memory_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// `host:port`, with a host name (`localhost:50051`) or an address (`127.0.0.1:0`,
/// `[::1]:50051`); a name is looked up, and its first address taken.
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|e| format!("'{text}' is not host:port (e.g. 127.0.0.1:50051 or localhost:50051): {e}"))?;
    addresses.next().ok_or_else(|| format!("'{text}': the host name has no address"))
}

pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration like 30s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("'{text}': unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

#[derive(Debug, clap::Args)]
pub(crate) struct LakeArgs {
    /// The lake root: a local folder or a URL (file://, s3://, gs://, az://).
    #[arg(long, env = "CCLAKE_LAKE")]
    pub(crate) lake: String,
}
