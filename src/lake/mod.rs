//! The lake: Delta tables under one root, and the write side that fills them.
//!
//! An ingest pass lists the source, skips every object version already in `ingest_log`,
//! reads and parses the rest ahead of the commits (`parallel_objects` at once, more while
//! they are small: [`LakeOptions::lookahead_bytes`]), and commits them in batches of
//! `batch_rows` rows. Each batch commits,
//! in this order: `fact_interactions`, `call_recordings` (flat events), each aggregate's
//! tables (the conversation tables, [`merge`]), the other keyed tables by their merge policy
//! (EventBridge events, dimensions), `quarantine`, then `ingest_log`.
//! Every commit is atomic and every write before the `ingest_log` commit is idempotent, so a
//! crash anywhere leaves each table as it was before or after a commit, and the next pass
//! re-reads exactly the objects not yet logged and converges on the lake an uninterrupted run
//! would have written.
//!
//! A pass costs O(new data), not O(history): the writer keeps its tables between passes and
//! brings them up to date from the newer log entries only, keeps the set of ingested object
//! versions for as long as `ingest_log` moves only by its own commits, and appends to
//! `quarantine` without reading it (each batch's `quarantine` and `ingest_log` commits carry
//! the same batch number, so the one case that needs a merge, a crash between the two, shows).

pub mod append;
pub mod check;
pub mod compact;
pub mod lease;
pub mod merge;
pub mod pseudonym_key;
pub mod tables;
pub mod upsert;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::StructType;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{debug, info, warn};

use crate::ingest::source::list_source_objects_after;
use crate::ingest::pseudonym::PseudonymKey;
use crate::ingest::queue_partitions::{QueuePartitions, DEFAULT_MAX_QUEUES_PER_DAY};
use tokio_util::sync::CancellationToken;
use crate::ingest::{parse_object_in_parts, parse_stream_in_parts, ExpansionLimits, IngestReport, ParseOptions, ParsedObject, SourceObject};
use crate::catalog::{Catalog, CatalogError};
use crate::storage::{has_objects_under, Location, StorageError};
pub use compact::{CompactOutcome, CompactReport};
pub use crate::model::LakeTable;
use crate::model::MergePolicy;
use arrow::array::RecordBatch;
pub use upsert::UpsertOutcome;

/// Errors of the lake and its ingest passes.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot list source objects under {location}: {source}")]
    ListSource {
        location: String,
        source: object_store::Error,
    },
    #[error("cannot read source object {object}: {source}")]
    ReadSource {
        object: String,
        source: object_store::Error,
    },
    #[error("Delta table {table}: {source}")]
    Delta {
        table: &'static str,
        source: DeltaTableError,
    },
    #[error("cannot build Arrow rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Boxed: DataFusion's errors are large and this enum travels through every result.
    #[error("reading the ingest log: {0}")]
    DataFusion(Box<DataFusionError>),
    #[error("a parse task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Opening the tables; a location holding no lake is [`CatalogError::NoLake`].
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Another writer holds the lake, or this one lost it ([`lease`]).
    #[error(transparent)]
    Lease(#[from] lease::LeaseError),
    /// The lake's agent pseudonym key ([`pseudonym_key`]).
    #[error(transparent)]
    PseudonymKey(#[from] pseudonym_key::KeyError),
    #[error("source {source_location} does not exist")]
    SourceMissing { source_location: String },
    #[error("no export objects under {source_location}: nothing to ingest (check --source)")]
    SourceEmpty { source_location: String },
    #[error("source {source_location} is itself a lake (it holds {marker}): did you swap --source and --lake?")]
    SourceIsALake { source_location: String, marker: String },
    #[error("source {source_location} and lake {lake} overlap: the exports must not lie inside the lake, nor the lake inside the exports")]
    SourceOverlapsLake { source_location: String, lake: String },
}

impl From<DataFusionError> for LakeError {
    fn from(e: DataFusionError) -> Self {
        LakeError::DataFusion(Box::new(e))
    }
}

fn delta_err(table: LakeTable) -> impl FnOnce(DeltaTableError) -> LakeError {
    move |source| LakeError::Delta {
        table: table.name(),
        source,
    }
}

/// What became of one listed object.
enum Fetched {
    Parsed(ParsedObject),
    /// Deleted between listing and reading.
    Gone,
    /// A local object that cannot be read, with why.
    Skipped(String),
}

/// The queue partitions each day of `fact_interactions` holds (from its files' partition
/// values), and may hold.
fn queue_partitions(delta: &DeltaTable, limit: usize) -> Result<QueuePartitions, LakeError> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let mut existing = Vec::new();
    if delta.version().is_some() {
        for add in delta.snapshot().map_err(delta_err(LakeTable::FactInteractions))?.log_data() {
            let values = add.partition_values_map();
            let day = values.get("event_date").cloned().flatten().and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
            if let (Some(day), Some(Some(queue))) = (day, values.get("queue_name")) {
                existing.push(((day - epoch).num_days() as i32, queue.clone()));
            }
        }
    }
    Ok(QueuePartitions::new(limit, existing))
}

/// The text of a panic's payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "a panic".to_string(), |text| text.to_string()),
    }
}

/// Fault injection for tests of what a pass does when an object's processing panics:
/// `CCLAKE_FAULT_PANIC_OBJECT=<suffix>` makes the parse of every object whose path ends so
/// panic, as a dependency might.
fn fault_injection(object: &SourceObject) {
    if let Some(suffix) = std::env::var_os("CCLAKE_FAULT_PANIC_OBJECT") {
        if !suffix.is_empty() && object.path.as_ref().ends_with(&*suffix.to_string_lossy()) {
            panic!("fault injected into {} by CCLAKE_FAULT_PANIC_OBJECT", object.path);
        }
    }
}

/// A streamed object's body, read on a blocking thread as its chunks arrive. A store error
/// is kept aside: it must fail the read of the object, not make it a bad object.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<object_store::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    failed: Arc<std::sync::Mutex<Option<object_store::Error>>>,
}

impl ChunkReader {
    fn channel() -> (tokio::sync::mpsc::Sender<object_store::Result<bytes::Bytes>>, Self) {
        // A few chunks in flight: the read stays ahead of parsing, within a few MB.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Self { chunks: rx, current: bytes::Bytes::new(), failed: Arc::default() })
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    let message = e.to_string();
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return Err(std::io::Error::other(message));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Tunables of the write side.
#[derive(Debug, Clone)]
pub struct LakeOptions {
    /// Rows per commit, all tables together (a flat event is two rows). Bounds the memory of
    /// a pass, whatever the input size.
    pub batch_rows: usize,
    /// Objects parsed at once (each on a blocking thread). Twice the cores by default: with
    /// one per core, a core sits idle whenever the next objects have finished and wait for
    /// a larger one.
    pub parallel_objects: usize,
    /// More objects are parsed ahead, up to 64 at once, while those ahead add up to less
    /// than this many bytes: many small objects keep both cores busy while a large one
    /// parses, and large objects stay at `parallel_objects` (memory bounded either way).
    pub lookahead_bytes: u64,
    /// Compact a partition automatically after a pass once it holds this many files.
    pub compact_min_files: usize,
    pub auto_compact: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// How far a gzipped object may expand before it is refused.
    pub expansion: ExpansionLimits,
    /// Objects larger than this are read as a stream and committed in parts of a quarter
    /// of `batch_rows` rows (`ingest_log` records how far each got), never held whole.
    pub stream_above_bytes: u64,
    /// The writer lease: how long a second writer waits, and how soon an abandoned lease
    /// expires.
    pub lease: lease::LeaseOptions,
    /// The key of agent pseudonyms (`CCLAKE_PSEUDONYM_KEY`); without one, the lake makes
    /// its own on its first pass and keeps it ([`pseudonym_key`]).
    pub pseudonym_key: Option<Arc<PseudonymKey>>,
    /// Queues a day of `fact_interactions` may hold; a record of a queue past them is
    /// quarantined ([`crate::ingest::queue_partitions`]).
    pub max_queues_per_day: usize,
}

impl LakeOptions {
    /// Rows of one part of a streamed object.
    fn part_rows(&self) -> usize {
        (self.batch_rows / 4).max(1)
    }
}

impl Default for LakeOptions {
    fn default() -> Self {
        Self {
            batch_rows: 1_000_000,
            parallel_objects: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            lookahead_bytes: 32 << 20,
            compact_min_files: 16,
            auto_compact: true,
            progress: false,
            expansion: ExpansionLimits::default(),
            stream_above_bytes: 64 << 20,
            lease: lease::LeaseOptions::default(),
            pseudonym_key: None,
            max_queues_per_day: DEFAULT_MAX_QUEUES_PER_DAY,
        }
    }
}

/// How far ahead a pass starts objects: always `objects`, more (up to 64) while the
/// started ones that wait add up to under `bytes`.
struct LookAhead {
    objects: usize,
    bytes: u64,
}

impl LookAhead {
    /// `start` of each item, in order, each called ahead of its turn as far as allowed.
    fn started<'a, T: 'a, S: 'a>(
        self,
        items: Vec<T>,
        size: impl Fn(&T) -> u64 + 'a,
        start: impl FnMut(T) -> S + 'a,
    ) -> impl futures::Stream<Item = S> + 'a {
        const MOST: usize = 64;
        let state = (items.into_iter().peekable(), std::collections::VecDeque::<(S, u64)>::new(), 0u64, start);
        futures::stream::unfold(state, move |(mut items, mut started, mut bytes, mut start)| {
            while let Some(next) = items.peek() {
                let n = size(next);
                let room = started.len() < self.objects || (started.len() < MOST && bytes + n <= self.bytes);
                if !room {
                    break;
                }
                let Some(item) = items.next() else { break };
                bytes += n;
                started.push_back((start(item), n));
            }
            let next = started.pop_front().map(|(s, n)| {
                bytes -= n;
                (s, (items, started, bytes, start))
            });
            futures::future::ready(next)
        })
    }
}

/// A cclake lake: its Delta tables under one root, and the write side that fills them.
#[derive(Debug)]
pub struct Lake {
    catalog: Catalog,
    options: LakeOptions,
    /// One writer per process: passes and compactions take turns, and what one pass learnt
    /// of the tables serves the next.
    writer: tokio::sync::Mutex<Writer>,
    /// What this process's attempts saw of the lake's lease ([`lease::LeaseWatch`]).
    lease_watch: lease::LeaseWatch,
}

/// An object version as `ingest_log` records it: (url, size, last modified, etag).
type ObjectVersion = (String, i64, i64, String);

/// What the writer keeps between passes, so that a pass costs O(new data), not O(history):
/// each piece is dropped when a pass fails, and read again by the next.
#[derive(Debug, Default)]
struct Writer {
    /// Every table as this process last loaded or committed it; brought up to date
    /// incrementally (only newer log entries are read).
    tables: Option<Tables>,
    /// The object versions `ingest_log` holds, as of one of its versions.
    ingested: Option<Ingested>,
    /// The batch numbers of the last `quarantine` and `ingest_log` commits
    /// ([`upsert::BATCH_APP_ID`]).
    batches: Option<BatchNumbers>,
    /// Per remote source: the greatest key listed, and when it was last listed whole.
    listings: HashMap<String, (object_store::path::Path, Instant)>,
    /// The versions of `quarantine` and `ingest_log` this writer left the lake at: when
    /// they moved since, another writer committed, and `batches` is read again.
    left_at: Option<(Option<deltalake::kernel::Version>, Option<deltalake::kernel::Version>)>,
    /// The lake's agent pseudonym key, read (or made) on the first pass.
    agent_key: Option<Arc<PseudonymKey>>,
}

/// Objects one commit takes at most, whatever their rows: each object staged costs tens of
/// KB until its commit (its own small batches, its log row), so without this bound a pass
/// over a million one-event objects would hold them all at once (figures in benches/README).
pub const MAX_OBJECTS_PER_COMMIT: usize = 4096;

/// How often a scheduled pass over a remote source lists it whole. In between, a pass lists
/// only the keys after the greatest one seen: exports named by time (as Genesys and most
/// exporters name them) are found at the next pass; an object written under an earlier
/// name, or overwritten in place, at the next whole listing.
pub const WHOLE_LISTING_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug)]
struct Ingested {
    as_of: Option<deltalake::kernel::Version>,
    /// Objects ingested whole.
    versions: HashSet<ObjectVersion>,
    /// Large objects committed in part: how many of their records the parts hold.
    partial: HashMap<ObjectVersion, u64>,
}

impl Ingested {
    /// Records what a commit logged.
    fn logged(&mut self, part: &ParsedObject) {
        let version = part.object.version_key();
        match part.through_record {
            Some(line) => {
                let through = self.partial.entry(version).or_default();
                *through = (*through).max(line);
            }
            None => {
                self.partial.remove(&version);
                self.versions.insert(version);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct BatchNumbers {
    quarantined: Option<i64>,
    logged: Option<i64>,
}

impl BatchNumbers {
    fn next(self) -> i64 {
        self.quarantined.max(self.logged).unwrap_or(0) + 1
    }
}

/// The tables as of the start of a pass, each replaced by its commits' results.
#[derive(Debug)]
struct Tables(HashMap<LakeTable, DeltaTable>);

impl Tables {
    fn get(&self, table: LakeTable) -> Result<&DeltaTable, LakeError> {
        self.0.get(&table).ok_or_else(|| delta_err(table)(DeltaTableError::NotATable(table.name().into())))
    }

    fn set(&mut self, table: LakeTable, delta: DeltaTable) {
        self.0.insert(table, delta);
    }

    /// The versions of the two tables whose commits carry batch numbers.
    fn batch_versions(&self) -> (Option<deltalake::kernel::Version>, Option<deltalake::kernel::Version>) {
        let version = |t| self.0.get(&t).and_then(DeltaTable::version);
        (version(LakeTable::Quarantine), version(LakeTable::IngestLog))
    }
}

/// One table's rows of a batch and the table as last committed.
type Upsert = (LakeTable, &'static str, Vec<RecordBatch>, DeltaTable);

/// A deciding table's batch and its followers' ([`LakeTable::decides_for`]):
/// the latest delivery of each key, decided against what the deciding table holds, upserted
/// into each table. Returns the deciding table and, per table committed, its new snapshot.
async fn upsert_latest(
    (table, key, batches, delta): Upsert,
    followers: Vec<Upsert>,
) -> Result<(LakeTable, Vec<(LakeTable, DeltaTable, upsert::UpsertOutcome, usize)>), LakeError> {
    let tie = match table.merge_policy() {
        MergePolicy::UpsertLatest { key_hash: Some(hash), .. } => hash,
        _ => key,
    };
    // The followers' latest rows are found while the deciding table's are sorted, on
    // blocking threads: the runtime's own threads stay free for the other groups.
    let followers: Vec<_> = followers
        .into_iter()
        .map(|(follower, key, batches, delta)| {
            let latest = merge::blocking(move || merge::latest_by_key(&batches, key));
            (follower, key, latest, delta)
        })
        .collect();
    let latest = merge::blocking(move || merge::latest_sorted(&batches, table, key, tie)).await.map_err(delta_err(table))?;
    let (to_write, replaced, winners) = if followers.is_empty() {
        (latest, None, None)
    } else {
        let stored = upsert::stored_events(&delta, table, upsert::key_batch(table, &latest).map_err(delta_err(table))?)
            .await
            .map_err(delta_err(table))?;
        let decision = merge::decide(&latest, key, &stored).map_err(delta_err(table))?;
        (decision.to_write, Some(decision.replaced_partitions), Some(decision.winners))
    };
    // A delivery equal to the stored one was applied to the deciding table by an earlier,
    // interrupted pass: it skips that table but still goes to the others, whose commit may
    // be the one the crash prevented. Older deliveries go nowhere.
    let mut upserts = vec![(table, to_write, replaced, delta)];
    for (follower, key, latest, delta) in followers {
        let latest = latest.await.map_err(delta_err(follower))?;
        let kept = merge::rows_of(latest, key, winners.as_ref()).map_err(delta_err(follower))?;
        upserts.push((follower, kept, None, delta));
    }
    // Every table's rows are decided above, so the commits are independent: they run at
    // once, each on a task of its own (so on both cores). Any order of them, or a crash
    // between them, leaves what a re-run completes: ingest_log commits last.
    let rows = |batches: &[RecordBatch]| batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    upserts.retain(|(_, batches, _, _)| rows(batches) > 0);
    let mut runs = Vec::new();
    for (target, batches, replaced, delta) in upserts {
        runs.push(tokio::spawn(async move {
            let written = rows(&batches);
            let (next, outcome) = upsert::upsert_events(delta, target, batches, replaced).await.map_err(delta_err(target))?;
            debug!(?outcome, table = target.name(), "upserted");
            Ok::<_, LakeError>((target, next, outcome, written))
        }));
    }
    let mut committed = Vec::new();
    for joined in futures::future::join_all(runs).await {
        committed.push(joined.map_err(|e| delta_err(table)(DeltaTableError::Generic(format!("writer task: {e}"))))??);
    }
    Ok((table, committed))
}

impl Lake {
    /// Opens the existing lake at a local path or URL. Creates nothing: a path that holds no
    /// lake (a typo, an unmounted bucket) is [`CatalogError::NoLake`].
    pub async fn open(location: &str) -> Result<Self, LakeError> {
        Self::open_with(location, LakeOptions::default()).await
    }

    pub async fn open_with(location: &str, options: LakeOptions) -> Result<Self, LakeError> {
        Ok(Self::at(Catalog::open(location).await?, options))
    }

    /// Opens the lake at a local path or URL, creating its tables when missing: the write
    /// side's entry (`cclake ingest`, the demo).
    pub async fn open_or_create(location: &str) -> Result<Self, LakeError> {
        Self::open_or_create_with(location, LakeOptions::default()).await
    }

    pub async fn open_or_create_with(location: &str, options: LakeOptions) -> Result<Self, LakeError> {
        let mut lake = Self::at(Catalog::at(Location::parse(location, true)?), options);
        // Creating tables is a write: two writers creating a new lake at once take turns.
        let lease = lake.lease("create").await?;
        let tables = lake.load_tables(None).await;
        lease.release().await;
        let tables = tables?;
        // The writer starts from what was just loaded: its first pass does not load again.
        lake.writer.get_mut().tables = Some(tables);
        Ok(lake)
    }

    fn at(catalog: Catalog, options: LakeOptions) -> Self {
        Self {
            catalog,
            options,
            writer: tokio::sync::Mutex::new(Writer::default()),
            lease_watch: lease::LeaseWatch::default(),
        }
    }

    pub fn root(&self) -> &Location {
        self.catalog.root()
    }

    /// Takes the lake's writer lease for `operation` ([`lease`]).
    async fn lease(&self, operation: &str) -> Result<lease::WriterLease, LakeError> {
        Ok(lease::WriterLease::acquire_watching(self.root(), operation, self.options.lease, &self.lease_watch).await?)
    }

    /// The lake's tables, read-only: what the read side opens.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn options(&self) -> &LakeOptions {
        &self.options
    }

    /// The newest snapshot of one table.
    pub async fn table(&self, table: LakeTable) -> Result<DeltaTable, LakeError> {
        Ok(self.catalog.table(table).await?)
    }

    async fn load_or_create(&self, table: LakeTable) -> Result<DeltaTable, LakeError> {
        // A local table folder must exist before Delta will look into it.
        Location::parse(self.root().join(table.name()).url().as_str(), true)?;
        let schema: StructType = table
            .schema()
            .as_ref()
            .try_into_kernel()
            .map_err(|e| delta_err(table)(e.into()))?;
        // `Ignore`: a table that exists is loaded as it is (one look at its log, not a check
        // and then a load), a new one is created and handed back loaded.
        let delta = self
            .catalog
            .table_builder(table)?
            .build()
            .map_err(delta_err(table))?
            .create()
            .with_table_name(table.name())
            .with_columns(schema.fields().cloned())
            .with_partition_columns(table.partition_columns().iter().map(|c| c.to_string()))
            .with_save_mode(SaveMode::Ignore)
            .await
            .map_err(delta_err(table))?;
        self.add_missing_columns(table, delta).await
    }

    /// Adds the nullable columns a newer release defines and a table written by an earlier
    /// one lacks (`ingest_log.through_record`): a metadata-only commit.
    async fn add_missing_columns(&self, table: LakeTable, delta: DeltaTable) -> Result<DeltaTable, LakeError> {
        let Ok(current) = delta.snapshot().map(|s| s.schema()) else { return Ok(delta) };
        let wanted: StructType = table.schema().as_ref().try_into_kernel().map_err(|e| delta_err(table)(e.into()))?;
        let missing: Vec<_> = wanted
            .fields()
            .filter(|f| f.is_nullable() && current.field(f.name()).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(delta);
        }
        info!(table = table.name(), columns = missing.len(), "adding the columns this release defines");
        delta.add_columns().with_fields(missing).await.map_err(delta_err(table))
    }

    /// Every table, newest snapshot: the writer's own, brought up to date, when it has them.
    async fn load_tables(&self, kept: Option<Tables>) -> Result<Tables, LakeError> {
        if let Some(mut tables) = kept {
            futures::future::try_join_all(
                tables.0.iter_mut().map(|(table, delta)| async move { delta.update_incremental(None).await.map_err(delta_err(*table)) }),
            )
            .await?;
            return Ok(tables);
        }
        // A lake written by an earlier release lacks the newer tables: created here. The
        // tables are independent: loaded (or created) at once, not one after another.
        let loaded = futures::future::try_join_all(
            LakeTable::ALL.into_iter().map(|table| async move { Ok::<_, LakeError>((table, self.load_or_create(table).await?)) }),
        )
        .await?;
        Ok(Tables(loaded.into_iter().collect()))
    }

    /// The object versions already ingested: those the writer knows of when `ingest_log`
    /// has not moved since, else read from the table.
    async fn ingested_versions(&self, ingest_log: &DeltaTable, kept: Option<Ingested>) -> Result<Ingested, LakeError> {
        let as_of = ingest_log.version();
        if let Some(kept) = kept.filter(|k| k.as_of == as_of) {
            return Ok(kept);
        }
        let mut versions = HashSet::new();
        let mut partial: HashMap<ObjectVersion, u64> = HashMap::new();
        if ingest_log.get_file_uris().map_err(delta_err(LakeTable::IngestLog))?.next().is_none() {
            return Ok(Ingested { as_of, versions, partial });
        }
        // Read here, with a context of its own: the writer does not need the read side.
        let ctx = SessionContext::new();
        let state = ctx.state();
        let provider = ingest_log.table_provider().with_session(Arc::new(state)).await?;
        let batches = ctx
            .read_table(provider)?
            .select_columns(&["source_object", "source_size", "source_modified_at", "source_etag", "through_record"])?
            .collect()
            .await?;
        for b in &batches {
            // Cast: DataFusion may hand strings back as views, timestamps with any unit.
            let column = |i: usize, to: &DataType| cast(b.column(i), to);
            let url = column(0, &DataType::Utf8)?;
            let size = column(1, &DataType::Int64)?;
            let modified = column(2, &DataType::Int64)?;
            let etag = column(3, &DataType::Utf8)?;
            let through = column(4, &DataType::Int64)?;
            let (url, size) = (url.as_string::<i32>(), size.as_primitive::<Int64Type>());
            let (modified, etag) = (modified.as_primitive::<Int64Type>(), etag.as_string::<i32>());
            let through = through.as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let version = (url.value(i).to_string(), size.value(i), modified.value(i), etag.value(i).to_string());
                if through.is_null(i) {
                    versions.insert(version);
                } else {
                    let line = partial.entry(version).or_default();
                    *line = (*line).max(through.value(i) as u64);
                }
            }
        }
        partial.retain(|version, _| !versions.contains(version));
        Ok(Ingested { as_of, versions, partial })
    }

    /// The batch numbers the tables carry, or the writer's own when it has them.
    async fn batch_numbers(tables: &Tables, kept: Option<BatchNumbers>) -> Result<BatchNumbers, LakeError> {
        if let Some(kept) = kept {
            return Ok(kept);
        }
        let number = |table: LakeTable| async move {
            upsert::batch_number(tables.get(table)?).await.map_err(delta_err(table))
        };
        Ok(BatchNumbers { quarantined: number(LakeTable::Quarantine).await?, logged: number(LakeTable::IngestLog).await? })
    }

    /// One ingest pass over every export object under `source` not yet in the lake.
    /// Holds the lake's writer lease throughout: a second writer waits for it, and a pass
    /// that loses it commits nothing more ([`LakeError::Lease`]).
    pub async fn ingest(&self, source: &str) -> Result<IngestReport, LakeError> {
        self.ingest_until(source, &CancellationToken::new()).await
    }

    /// [`Self::ingest`], stopped early when `stop` is cancelled (a signal, a server shutting
    /// down): no further object is taken, parsing stops at its next record, the commit in
    /// flight finishes, and what was read but not committed is left for the next pass, which
    /// reads exactly the rest. The report says it was interrupted.
    pub async fn ingest_until(&self, source: &str, stop: &CancellationToken) -> Result<IngestReport, LakeError> {
        let mut writer = self.writer.lock().await;
        let lease = self.lease("ingest").await?;
        let result = self.ingest_holding(&mut writer, source, &lease, stop).await;
        lease.release().await;
        result
    }

    async fn ingest_holding(
        &self,
        writer: &mut Writer,
        source: &str,
        lease: &lease::WriterLease,
        stop: &CancellationToken,
    ) -> Result<IngestReport, LakeError> {
        // The pass's parsers stop when it ends, however it ends (done, failed, interrupted):
        // none keeps reading objects behind a pass that will not take their rows.
        let parsers = stop.child_token();
        let _stop_parsers = parsers.clone().drop_guard();
        let started = Instant::now();
        let mut report = IngestReport::default();
        let source = Location::parse(source, false)?;
        // Checked on a source's first pass: what a source is does not change between passes
        // (and on object storage the check is a dozen requests).
        if !writer.listings.contains_key(source.url().as_str()) {
            self.check_source(&source).await?;
        }
        let (store, prefix) = source.object_store()?;
        let previous = writer.listings.get(source.url().as_str()).filter(|(_, whole)| whole.elapsed() < WHOLE_LISTING_EVERY);
        let after = previous.map(|(greatest, _)| greatest.clone());
        let listed = list_source_objects_after(store.as_ref(), &source, &prefix, after.as_ref())
            .await
            .map_err(|e| LakeError::ListSource {
                location: source.to_string(),
                source: e,
            })?;
        // Kept only once the pass has committed what it listed: a pass that fails part-way
        // must not leave unread objects behind the key the next pass starts after.
        let listing = if source.url().scheme() != "file" {
            let whole = previous.map_or_else(Instant::now, |(_, whole)| *whole);
            let greatest = listed.objects.iter().map(|o| &o.path).max().cloned().into_iter().chain(after).max();
            greatest.map(|greatest| (greatest, whole))
        } else {
            None
        };
        for entry in &listed.skipped {
            warn!(source = %source, entry = %entry, "source entry skipped: it cannot be listed");
        }
        report.entries_skipped = listed.skipped;
        // Taken out of the writer: a pass that fails leaves nothing half-updated behind.
        let mut tables = self.load_tables(writer.tables.take()).await?;
        // Another writer may have committed since this one's last pass: its batch numbers
        // are then read again.
        let kept_batches = writer.batches.take().filter(|_| writer.left_at == Some(tables.batch_versions()));
        let mut done = self.ingested_versions(tables.get(LakeTable::IngestLog)?, writer.ingested.take()).await?;
        let mut batches = Self::batch_numbers(&tables, kept_batches).await?;
        report.objects_listed = listed.objects.len() as u64;
        // Each object still to read, and how many of its records earlier passes committed.
        let todo: Vec<(SourceObject, u64)> = listed
            .objects
            .into_iter()
            .filter(|o| !done.versions.contains(&o.version_key()))
            .map(|o| {
                let resume_after = done.partial.get(&o.version_key()).copied().unwrap_or(0);
                (o, resume_after)
            })
            .collect();
        report.objects_skipped = report.objects_listed - todo.len() as u64;
        info!(
            source = %source,
            objects = todo.len(),
            skipped = report.objects_skipped,
            "ingest pass started"
        );

        let agent_key = match &writer.agent_key {
            Some(key) => Arc::clone(key),
            None => pseudonym_key::lake_key(self.root(), self.options.pseudonym_key.as_ref()).await?,
        };
        writer.agent_key = Some(Arc::clone(&agent_key));
        let queue_partitions = queue_partitions(tables.get(LakeTable::FactInteractions)?, self.options.max_queues_per_day)?;
        let parse = Arc::new(ParseOptions {
            limits: self.options.expansion,
            agent_key: Some(agent_key),
            queue_partitions: Some(Arc::new(queue_partitions)),
            stop: Some(parsers.clone()),
        });
        let progress = self.progress_bar(todo.iter().map(|(o, _)| o.size).sum());
        let local = source.url().scheme() == "file";
        // Objects are read and parsed ahead (each by a task of its own), their parts taken
        // in listing order.
        let ahead = LookAhead { objects: self.options.parallel_objects.max(1), bytes: self.options.lookahead_bytes };
        let mut parsed_objects = ahead
            .started(todo, |(object, _)| object.size, |(object, resume_after)| {
                self.object_parts(Arc::clone(&store), Arc::clone(&parse), object, resume_after, local)
            })
            .flatten();

        let mut pending: Vec<ParsedObject> = Vec::new();
        let mut pending_rows = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    report.interrupted = true;
                    break;
                }
                next = parsed_objects.next() => next,
            };
            let Some(parsed) = next else { break };
            let parsed = match parsed? {
                Fetched::Parsed(parsed) => parsed,
                Fetched::Gone => continue,
                Fetched::Skipped(entry) => {
                    warn!(entry = %entry, "source object skipped: it cannot be read");
                    report.entries_skipped.push(entry);
                    continue;
                }
            };
            if parsed.through_record.is_none() {
                progress.inc(parsed.object.size);
            }
            report.add_object(&parsed);
            for q in &parsed.quarantined {
                // Each record is in the quarantine table; here at debug level only, and with
                // field names and reasons only: record text can hold PII even when masked.
                debug!(
                    object = %parsed.object.url,
                    line = q.line,
                    field = q.rejection.field().unwrap_or("-"),
                    reason = q.rejection.code(),
                    "record quarantined"
                );
            }
            pending_rows += parsed.row_count();
            // A part of a streamed object commits what is pending once a part's worth is:
            // a large object's memory stays at a few parts, whatever the batch size.
            let streaming = parsed.through_record.is_some();
            pending.push(parsed);
            if pending_rows >= self.options.batch_rows
                || pending.len() >= MAX_OBJECTS_PER_COMMIT
                || (streaming && pending_rows >= self.options.part_rows())
            {
                self.commit_batch(&mut tables, &pending, (&mut done, &mut batches), &mut report, lease).await?;
                pending.clear();
                pending_rows = 0;
            }
        }
        // Interrupted: what is pending is not committed (the next pass reads it again).
        if !pending.is_empty() && !report.interrupted {
            self.commit_batch(&mut tables, &pending, (&mut done, &mut batches), &mut report, lease).await?;
        }
        progress.finish_and_clear();

        if self.options.auto_compact && !report.interrupted {
            let before = tables.get(LakeTable::IngestLog)?.version();
            let outcome = self
                .compact_tables(&mut tables, self.options.compact_min_files, lease)
                .await?;
            report.partitions_compacted = outcome.total().partitions_compacted;
            // Compaction rewrites files, not what the log holds.
            if done.as_of == before {
                done.as_of = tables.get(LakeTable::IngestLog)?.version();
            }
        }
        writer.left_at = Some(tables.batch_versions());
        writer.tables = Some(tables);
        writer.ingested = Some(done);
        writer.batches = Some(batches);
        if let Some(listing) = listing.filter(|_| !report.interrupted) {
            writer.listings.insert(source.url().to_string(), listing);
        }
        report.elapsed = started.elapsed();
        for (reason, records) in &report.quarantined_by_reason {
            info!(reason = %reason, records, "records quarantined");
        }
        info!(
            objects = report.objects_read,
            records = report.records_read,
            upserted = report.records_upserted,
            quarantined = report.records_quarantined,
            commits = report.commits,
            seconds = report.elapsed.as_secs_f64(),
            "ingest pass finished"
        );
        Ok(report)
    }

    /// Reads and parses one object on tasks of its own, handing over its parts in order: an
    /// object up to `stream_above_bytes` is read whole and parsed as one part; a larger one
    /// is read as a stream and parsed in parts of a quarter of a batch
    /// ([`crate::ingest::parse_stream_in_parts`]), so memory does not grow with its size.
    fn object_parts(
        &self,
        store: Arc<dyn object_store::ObjectStore>,
        parse: Arc<ParseOptions>,
        object: SourceObject,
        resume_after: u64,
        local: bool,
    ) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<Fetched, LakeError>> + Send + 'static>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Fetched, LakeError>>(1);
        let part_rows = self.options.part_rows();
        let stream_above = self.options.stream_above_bytes;
        tokio::spawn(async move {
            let url = object.url.clone();
            // Deleted between listing and reading: nothing to ingest. One unreadable local
            // file (permissions, a name the store cannot open) does not stop the pass; it is
            // read again next pass. Elsewhere a read error fails the pass.
            let failed = move |object: &SourceObject, e: object_store::Error| match e {
                object_store::Error::NotFound { .. } => {
                    warn!(object = %object.url, "source object disappeared before it was read");
                    Ok(Fetched::Gone)
                }
                e if local => Ok(Fetched::Skipped(format!("{}: {e}", object.url).escape_debug().to_string())),
                source => Err(LakeError::ReadSource { object: object.url.clone(), source }),
            };
            let get = match store.get(&object.path).await {
                Ok(get) => get,
                Err(e) => {
                    let _ = tx.send(failed(&object, e)).await;
                    return;
                }
            };
            let parts = tx.clone();
            let parsed = if object.size <= stream_above {
                let bytes = match get.bytes().await {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let _ = tx.send(failed(&object, e)).await;
                        return;
                    }
                };
                tokio::task::spawn_blocking(move || {
                    fault_injection(&object);
                    parse_object_in_parts(object, &bytes, &parse, resume_after, usize::MAX, |part| {
                        let _ = parts.blocking_send(Ok(Fetched::Parsed(part)));
                    })
                })
                .await
            } else {
                let (chunks, reader) = ChunkReader::channel();
                let mut body = get.into_stream();
                let pump = tokio::spawn(async move {
                    while let Some(chunk) = body.next().await {
                        if chunks.send(chunk).await.is_err() {
                            break;
                        }
                    }
                });
                let parse = tokio::task::spawn_blocking(move || {
                    fault_injection(&object);
                    let failed_read = Arc::clone(&reader.failed);
                    let who = object.clone();
                    parse_stream_in_parts(object, reader, &parse, resume_after, part_rows, |part| {
                        // A store that failed part-way is not a bad object: the completing
                        // part is not handed over, and the object is read again.
                        let store_error = failed_read.lock().unwrap_or_else(|e| e.into_inner()).take();
                        let item = match store_error {
                            Some(e) if part.through_record.is_none() => failed(&who, e),
                            _ => Ok(Fetched::Parsed(part)),
                        };
                        let _ = parts.blocking_send(item);
                    })
                })
                .await;
                pump.abort();
                parse
            };
            match parsed {
                Ok(()) => {}
                // A panic while parsing (ours or a dependency's) costs this object, not the
                // pass: it is named in the summary and the log, and read again next pass.
                Err(e) if e.is_panic() => {
                    let why = panic_message(e.into_panic());
                    let entry = format!("{url}: processing failed unexpectedly ({why}); read again next pass", why = crate::ingest::mask::scrub_text(&why));
                    let _ = tx.send(Ok(Fetched::Skipped(entry.escape_debug().to_string()))).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
    }

    /// Refuses a source that cannot be exports for this lake: a missing local folder, a
    /// lake (the flags swapped), or a folder overlapping the lake (a pass would read the
    /// lake's own files as exports).
    pub async fn check_source(&self, source: &Location) -> Result<(), LakeError> {
        // An empty source is fine here: a scheduled pass may find its folder still empty.
        check_source_location(source, self.root(), false).await
    }

    fn progress_bar(&self, total_bytes: u64) -> ProgressBar {
        if !self.options.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} ingest [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }

    /// Commits one batch of whole objects to every table, `ingest_log` last: each table by
    /// its merge policy ([`MergePolicy`]), then the quarantined records, then the log.
    async fn commit_batch(
        &self,
        tables: &mut Tables,
        objects: &[ParsedObject],
        (done, numbers): (&mut Ingested, &mut BatchNumbers),
        report: &mut IngestReport,
        lease: &lease::WriterLease,
    ) -> Result<(), LakeError> {
        lease.ensure_held().await?;
        let number = numbers.next();
        debug!(objects = objects.len(), batch = number, "committing a batch");
        // Each table's rows as the objects' parts hold them: not copied into one batch.
        let mut rows: HashMap<LakeTable, Vec<RecordBatch>> = HashMap::new();
        for parsed in objects {
            for (table, batches) in &parsed.rows {
                rows.entry(*table).or_default().extend(batches.iter().cloned());
            }
        }

        // Aggregates (every row of a conversation) replace their earlier versions whole.
        let mut roots = Vec::new();
        for table in LakeTable::ALL {
            if let MergePolicy::ReplaceAggregate { root, key } = table.merge_policy() {
                if !roots.contains(&(root, key)) {
                    roots.push((root, key));
                }
            }
        }
        for (root, key) in roots {
            let outcome = merge::replace_aggregates(&mut tables.0, root, key, &rows)
                .await
                .map_err(|(table, e)| delta_err(table)(e))?;
            if outcome.aggregates_written + outcome.aggregates_older > 0 {
                debug!(?outcome, root = root.name(), "aggregates replaced");
            }
            report.records_upserted += outcome.aggregates_written as u64;
            for (table, n) in outcome.rows_written {
                report.commits += 1;
                *report.rows_committed.entry(table.name().to_string()).or_default() += n as u64;
                rows.remove(&table);
            }
        }

        // Keyed rows: the latest delivery of each key wins, in the tables that decide for
        // themselves and then in the tables they decide for. Each deciding table and its
        // followers touch no other table: the groups run at once.
        let mut groups = Vec::new();
        for table in LakeTable::ALL {
            let MergePolicy::UpsertLatest { key, decided_by: None, .. } = table.merge_policy() else { continue };
            let Some(batches) = rows.remove(&table) else { continue };
            let deciding = (table, key, batches, tables.get(table)?.clone());
            let mut followers = Vec::new();
            for follower in table.decides_for() {
                let Some(batches) = rows.remove(&follower) else { continue };
                let MergePolicy::UpsertLatest { key, .. } = follower.merge_policy() else { continue };
                followers.push((follower, key, batches, tables.get(follower)?.clone()));
            }
            groups.push(upsert_latest(deciding, followers));
        }
        for group in futures::future::join_all(groups).await {
            let (table, upserted) = group?;
            for (upserted, next, outcome, written) in upserted {
                tables.set(upserted, next);
                report.commits += u64::from(outcome.committed);
                if upserted == table {
                    report.files_scanned += outcome.files_scanned as u64;
                    report.files_rewritten += outcome.files_removed as u64;
                    report.records_upserted += written as u64;
                    *report.rows_committed.entry(table.name().to_string()).or_default() += written as u64;
                }
            }
        }

        let quarantined: Vec<_> = objects
            .iter()
            .flat_map(|p| p.quarantined.iter().map(move |q| (&p.object, q)))
            .collect();
        if !quarantined.is_empty() {
            let next = upsert::insert_quarantined(
                tables.get(LakeTable::Quarantine)?.clone(),
                tables::quarantine_batch(&quarantined)?,
                number,
                numbers.logged,
            )
            .await
            .map_err(delta_err(LakeTable::Quarantine))?;
            tables.set(LakeTable::Quarantine, next);
            numbers.quarantined = Some(number);
        }

        // The commit that makes the batch done: only while the lease is still this writer's.
        lease.ensure_held().await?;
        let logged_version = tables.get(LakeTable::LOGGED_VERSION_OF)?.version().unwrap_or(0) as i64;
        let committed_at = chrono::Utc::now().timestamp_micros();
        let log_rows: Vec<&ParsedObject> = objects.iter().collect();
        let log_batch = tables::ingest_log_batch(&log_rows, logged_version, committed_at)?;
        let next = append::append(tables.get(LakeTable::IngestLog)?.clone(), LakeTable::IngestLog, vec![log_batch], Some(number))
            .await
            .map_err(delta_err(LakeTable::IngestLog))?;
        numbers.logged = Some(number);
        // The log moved by this commit only when it stood where the writer last saw it.
        if done.as_of == tables.get(LakeTable::IngestLog)?.version() {
            done.as_of = next.version();
            objects.iter().for_each(|p| done.logged(p));
        }
        tables.set(LakeTable::IngestLog, next);
        info!(
            objects = objects.len(),
            records = objects.iter().map(ParsedObject::valid_records).sum::<u64>(),
            quarantined = quarantined.len(),
            "batch committed"
        );
        Ok(())
    }

    async fn compact_tables(
        &self,
        tables: &mut Tables,
        min_files: usize,
        lease: &lease::WriterLease,
    ) -> Result<CompactReport, LakeError> {
        let mut report = CompactReport::default();
        for table in LakeTable::ALL {
            lease.ensure_held().await?;
            let (next, outcome) = compact::compact_table(tables.get(table)?.clone(), table, min_files)
                .await
                .map_err(delta_err(table))?;
            tables.set(table, next);
            if outcome.partitions_compacted > 0 {
                info!(
                    table = table.name(),
                    partitions = outcome.partitions_compacted,
                    files_removed = outcome.files_removed,
                    files_added = outcome.files_added,
                    "compacted"
                );
            }
            report.tables.push((table, outcome));
        }
        Ok(report)
    }

    /// Checks the lake's invariants ([`check`]): keys held once, every live file present.
    /// With `repair`, under the writer lease, each damaged table is rewritten in one commit
    /// that keeps each key's latest delivery.
    pub async fn check(&self, repair: bool) -> Result<check::CheckReport, LakeError> {
        let mut writer = self.writer.lock().await;
        if !repair {
            // Read-only: the tables as the catalog opens them; no lease, nothing created.
            let loaded = futures::future::try_join_all(
                LakeTable::ALL.into_iter().map(|table| async move { Ok::<_, LakeError>((table, self.catalog.table(table).await?)) }),
            )
            .await?;
            return self.check_tables(&mut Tables(loaded.into_iter().collect()), false, None).await;
        }
        let lease = self.lease("repair").await?;
        let result = async {
            let mut tables = self.load_tables(writer.tables.take()).await?;
            let report = self.check_tables(&mut tables, true, Some(&lease)).await?;
            writer.tables = Some(tables);
            Ok(report)
        }
        .await;
        lease.release().await;
        result
    }

    async fn check_tables(&self, tables: &mut Tables, repair: bool, lease: Option<&lease::WriterLease>) -> Result<check::CheckReport, LakeError> {
        let mut report = check::CheckReport::default();
        // In `LakeTable::ALL`'s order an aggregate's root comes before its other tables,
        // which keep the root's (repaired) latest delivery.
        for table in LakeTable::ALL {
            if let Some(lease) = lease {
                lease.ensure_held().await?;
            }
            let root = match table.merge_policy() {
                MergePolicy::ReplaceAggregate { root, .. } if root != table => Some(tables.get(root)?.clone()),
                _ => None,
            };
            let (next, found) = check::check_table(tables.get(table)?.clone(), table, root.as_ref(), repair).await.map_err(delta_err(table))?;
            tables.set(table, next);
            report.tables.push((table, found));
        }
        Ok(report)
    }

    /// Compacts every partition of every table that holds more than one file
    /// (`cclake compact`); what it did to each table.
    pub async fn compact(&self) -> Result<CompactReport, LakeError> {
        let mut writer = self.writer.lock().await;
        let lease = self.lease("compact").await?;
        let outcome = self.compact_holding(&mut writer, &lease).await;
        lease.release().await;
        outcome
    }

    async fn compact_holding(&self, writer: &mut Writer, lease: &lease::WriterLease) -> Result<CompactReport, LakeError> {
        let mut tables = self.load_tables(writer.tables.take()).await?;
        let before = tables.get(LakeTable::IngestLog)?.version();
        let outcome = self.compact_tables(&mut tables, 2, lease).await?;
        if let Some(done) = writer.ingested.as_mut().filter(|d| d.as_of == before) {
            done.as_of = tables.get(LakeTable::IngestLog)?.version();
        }
        writer.tables = Some(tables);
        Ok(outcome)
    }
}

/// See [`Lake::check_source`]; callable before the lake exists, so that swapped flags never
/// create a lake inside the exports. With `require_objects`, a source holding no object at
/// all is [`LakeError::SourceEmpty`] too (a one-off `cclake ingest`).
pub async fn check_source_location(source: &Location, lake: &Location, require_objects: bool) -> Result<(), LakeError> {
    let (source_url, lake_url) = (source.url().as_str(), lake.url().as_str());
    if source_url.starts_with(lake_url) || lake_url.starts_with(source_url) {
        return Err(LakeError::SourceOverlapsLake { source_location: source.to_string(), lake: lake.to_string() });
    }
    if let Ok(path) = source.url().to_file_path() {
        if source.url().scheme() == "file" && !path.exists() {
            return Err(LakeError::SourceMissing { source_location: path.display().to_string() });
        }
    }
    let markers: Vec<Vec<&str>> = std::iter::once(vec!["_delta_log"])
        .chain(LakeTable::ALL.iter().map(|t| vec![t.name(), "_delta_log"]))
        .collect();
    for marker in markers {
        if has_objects_under(source, &marker).await? {
            return Err(LakeError::SourceIsALake { source_location: source.to_string(), marker: marker.join("/") });
        }
    }
    if require_objects && !has_objects_under(source, &[]).await? {
        return Err(LakeError::SourceEmpty { source_location: source.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::LookAhead;
    use futures::StreamExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn small_objects_are_started_behind_a_large_one_within_the_budget_and_come_out_in_order() {
        // Sizes: one large object, then small ones; at least 2 are started, more while the
        // started ones that wait stay within 10 bytes.
        let sizes = [100u64, 3, 3, 3, 3, 50, 1];
        let started = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&started);
        let ahead = LookAhead { objects: 2, bytes: 10 };
        let mut stream = Box::pin(ahead.started((0..sizes.len()).collect(), |i| sizes[*i], move |i| {
            log.lock().unwrap().push(i);
            i
        }));
        let first = futures::executor::block_on(stream.next());
        assert_eq!(first, Some(0));
        // 0 and 1 by count (103 bytes), nothing more: the budget is spent.
        assert_eq!(*started.lock().unwrap(), vec![0, 1]);
        let second = futures::executor::block_on(stream.next());
        assert_eq!(second, Some(1));
        // Before 1 is taken: 1 and 2 wait (2 by count, 6 bytes), 3 fits (9 bytes), 4 would
        // make 12.
        assert_eq!(*started.lock().unwrap(), vec![0, 1, 2, 3]);
        let rest: Vec<usize> = futures::executor::block_on(stream.collect());
        assert_eq!(rest, vec![2, 3, 4, 5, 6]);
        assert_eq!(*started.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
    }
}
