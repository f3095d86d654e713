//! A Delta snapshot's live files scanned as plain Parquet: the file list, partition values
//! and row counts are taken from the snapshot once, when the read model plans a snapshot,
//! instead of on every query.
//!
//! delta-rs's table provider replays the snapshot's file actions through delta-kernel on
//! every scan, and adds partition columns (and a file id) to every batch as dictionaries
//! that [`super::plain_types`] then casts back. For the KPI suite (80 small files) that
//! per-query work cost more than reading the data. The tables cclake writes are plain
//! Parquet under Delta reader version 1 (no deletion vectors, no column mapping), so the
//! snapshot's `add` actions say everything a reader needs: a table that needs more (written
//! by another tool with reader version 2 or 3) is read through delta-rs instead
//! ([`SnapshotTable::try_new`] returns `None`).
//!
//! Files are pruned by partition values (filters over partition columns only are exact);
//! other filters are pushed into the Parquet scan by DataFusion's optimizer for row-group
//! pruning and evaluated again above it.
//!
//! A server keeps the newest snapshot's files decoded in memory ([`DecodedFiles`], up to
//! `decoded_cache_mb`): a data file never changes under its name, so its decoded batches
//! stay valid until a commit removes the file. A snapshot's files are decoded in the
//! background once it is planned; until a file is in memory (or when the budget is full)
//! it is read from Parquet, so a query always sees exactly its snapshot's files.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, ScalarValue, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};
use object_store::path::Path;
use object_store::ObjectStore;
use tracing::{debug, warn};

use super::key_grouped::KeyGroupedExec;
use super::plain_types::plain_schema;

/// The newest delta-rs reader version whose files are plain Parquet: version 2 adds column
/// mapping, version 3 deletion vectors and other reader features.
const PLAIN_PARQUET_READER_VERSION: i32 = 1;

/// One snapshot of a Delta table, as a DataFusion table of its Parquet files.
#[derive(Debug)]
pub struct SnapshotTable {
    /// The table's columns in its own order, with plain types (what clients see).
    schema: SchemaRef,
    /// The files' columns (the table's without its partition columns), then the partition
    /// columns: the order a Parquet scan produces them in.
    scan_schema: TableSchema,
    /// For each column of `schema`, its index among `scan_schema`'s columns.
    scan_index: Vec<usize>,
    /// Partition columns, in the table's partition order (that of each file's values).
    partition_columns: Vec<FieldRef>,
    /// Every live file of the snapshot, with its partition values and row count.
    files: Vec<PartitionedFile>,
    /// The files' partition values as columns, a row per file: what partition filters are
    /// evaluated on (built once per snapshot, not per query).
    partition_values: RecordBatch,
    /// Where the files are, relative to the table's root: registered in each session.
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    /// Decoded files shared by every snapshot the read model plans, if it keeps any.
    decoded: Option<Arc<DecodedFiles>>,
}

impl SnapshotTable {
    /// The snapshot of `delta` as a plain Parquet table; `None` when the table needs the Delta
    /// reader (a reader feature beyond plain Parquet files).
    /// `decoded`: where decoded files are kept and looked up (see [`SnapshotTable::decode_files`]).
    pub fn try_new(delta: &DeltaTable, decoded: Option<Arc<DecodedFiles>>) -> Result<Option<Arc<Self>>, DeltaTableError> {
        let state = delta.snapshot()?;
        if state.protocol().min_reader_version() > PLAIN_PARQUET_READER_VERSION {
            return Ok(None);
        }
        let schema = plain_schema(&state.snapshot().arrow_schema());
        let partition_names = state.metadata().partition_columns();
        let partition_columns: Vec<FieldRef> = partition_names
            .iter()
            .map(|name| schema.field_with_name(name).map(|f| Arc::new(f.clone())))
            .collect::<Result<_, _>>()?;
        let file_fields: Vec<FieldRef> =
            schema.fields().iter().filter(|f| !partition_names.contains(f.name())).cloned().collect();
        let file_count = file_fields.len();
        let scan_index = schema
            .fields()
            .iter()
            .map(|f| match partition_names.iter().position(|p| p == f.name()) {
                Some(p) => file_count + p,
                None => file_fields.iter().position(|g| g.name() == f.name()).unwrap_or_default(),
            })
            .collect();
        let file_schema = Arc::new(Schema::new(file_fields));

        let mut files = Vec::new();
        for view in state.log_data().iter() {
            let values = view.partition_values_map();
            let partition_values = partition_columns
                .iter()
                .map(|field| match values.get(field.name()).cloned().flatten() {
                    Some(text) => ScalarValue::try_from_string(text, field.data_type()),
                    None => ScalarValue::try_from(field.data_type()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            // From the path as the log holds it: `PartitionedFile::new` would encode it again.
            let mut file = PartitionedFile::from(object_store::ObjectMeta {
                location: view.object_store_path(),
                last_modified: chrono::DateTime::from_timestamp_millis(view.modification_time()).unwrap_or_default(),
                size: view.size().max(0) as u64,
                e_tag: None,
                version: None,
            });
            file.partition_values = partition_values;
            if let Some(rows) = view.num_records() {
                let mut statistics = Statistics::new_unknown(&file_schema);
                statistics.num_rows = Precision::Exact(rows);
                file = file.with_statistics(Arc::new(statistics));
            }
            files.push(file);
        }
        let partition_schema = Arc::new(Schema::new(partition_columns.clone()));
        let partition_values = if files.is_empty() || partition_columns.is_empty() {
            RecordBatch::new_empty(partition_schema)
        } else {
            let columns = (0..partition_columns.len())
                .map(|i| ScalarValue::iter_to_array(files.iter().map(|f| f.partition_values[i].clone())))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(partition_schema, columns)?
        };
        let log_store = delta.log_store();
        Ok(Some(Arc::new(Self {
            schema,
            scan_schema: TableSchema::builder(file_schema).with_table_partition_cols(partition_columns.clone()).build(),
            scan_index,
            partition_columns,
            partition_values,
            files,
            store_url: log_store.object_store_url(),
            store: log_store.object_store(None),
            decoded,
        })))
    }

    /// The key of a file in [`DecodedFiles`]: the store (one per table) and the path.
    fn key(&self, file: &PartitionedFile) -> FileKey {
        (self.store_url.as_str().to_string(), file.object_meta.location.clone())
    }

    /// Reads `files` from Parquet: `projection` indexes the scan's columns (the files', then
    /// the partition columns).
    /// `groups`: the files each output partition reads, in order. With `fixed`, each file
    /// stays in its group (no splitting, no work stealing): the groups are a layout.
    async fn parquet_scan(
        &self,
        state: &dyn Session,
        groups: Vec<FileGroup>,
        fixed: bool,
        projection: Vec<usize>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Each session has a runtime of its own (for its memory pool): the table's store is
        // registered in it on first use.
        let runtime = state.runtime_env();
        if runtime.object_store(&self.store_url).is_err() {
            runtime.register_object_store(self.store_url.as_ref(), Arc::clone(&self.store));
        }
        let mut statistics = Statistics::new_unknown(self.scan_schema.table_schema());
        let rows: Option<usize> = groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|f| f.statistics.as_ref().and_then(|s| s.num_rows.get_value().copied()))
            .sum();
        if let Some(rows) = rows {
            statistics.num_rows = Precision::Exact(rows);
        }
        // Declared partitioning (as unknown: no hash claimed) keeps the groups as they are.
        let declared = fixed.then(|| Partitioning::UnknownPartitioning(groups.len()));
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = Arc::new(ParquetSource::new(self.scan_schema.clone()));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups)
            .with_output_partitioning(declared)
            .with_statistics(statistics)
            .with_projection_indices(Some(projection))?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }

    /// Decodes the snapshot's files that are not in memory yet into [`DecodedFiles`] (while
    /// its budget lasts), and forgets this table's files that the snapshot no longer holds.
    /// Runs in the background, on the decoding thread: queries meanwhile read those files
    /// from Parquet.
    pub fn decode_files(self: &Arc<Self>) {
        let Some(decoded) = &self.decoded else { return };
        let live: HashSet<Path> = self.files.iter().map(|f| f.object_meta.location.clone()).collect();
        decoded.retain(self.store_url.as_str(), &live);
        decoded.enqueue(Arc::clone(self));
    }

    /// [`SnapshotTable::decode_files`]' work, file by file.
    async fn decode_all(&self) {
        let Some(decoded) = &self.decoded else { return };
        let config = match super::config::session_config() {
            Ok(config) => config,
            Err(e) => return warn!(error = %e, "decoded files: no session to decode with"),
        };
        let ctx = SessionContext::new_with_config(config);
        for file in &self.files {
            let key = self.key(file);
            if !decoded.claim(&key) {
                continue;
            }
            match self.decode(&ctx, file.clone()).await {
                Ok(batches) => decoded.insert(key, batches),
                Err(e) => {
                    debug!(file = %key.1, error = %e, "file not decoded; read from Parquet");
                    decoded.release(&key);
                }
            }
        }
    }

    /// One file's rows, every column in the table's order and types.
    async fn decode(&self, ctx: &SessionContext, file: PartitionedFile) -> Result<Vec<RecordBatch>> {
        let state = ctx.state();
        let plan = self.parquet_scan(&state, vec![FileGroup::new(vec![file])], false, self.scan_index.clone(), None).await?;
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
        batches
            .into_iter()
            .map(|b| Ok(RecordBatch::try_new(Arc::clone(&self.schema), b.columns().to_vec())?))
            .collect()
    }

    /// The partition column scans lay their partitions out by, as (its index in the table,
    /// its index among a file's partition values): the last one, the finest (a table
    /// partitioned by day and queue is laid out by queue).
    fn layout_column(&self) -> Option<(usize, usize)> {
        let column = self.partition_columns.last()?;
        let table_index = self.schema.index_of(column.name()).ok()?;
        Some((table_index, self.partition_columns.len() - 1))
    }

    fn partition_names(&self) -> Vec<&str> {
        self.partition_columns.iter().map(|f| f.name().as_str()).collect()
    }

    /// Whether `filter` reads partition columns only, so that a file's values decide it.
    fn decided_by_partitions(&self, filter: &Expr) -> bool {
        let names = self.partition_names();
        !names.is_empty() && expr_applicable_for_cols(&names, filter)
    }

    /// The files whose partition values can satisfy every filter (a filter that is false or
    /// null for a file's values holds for none of its rows).
    fn files_matching(&self, filters: &[Expr]) -> Result<Vec<PartitionedFile>> {
        let Some(filter) = conjunction(filters.iter().cloned()) else { return Ok(self.files.clone()) };
        if self.files.is_empty() {
            return Ok(Vec::new());
        }
        let values = &self.partition_values;
        let df_schema = DFSchema::try_from(values.schema())?;
        let predicate = datafusion::physical_expr::create_physical_expr(
            &filter,
            &df_schema,
            &datafusion::logical_expr::execution_props::ExecutionProps::new(),
            &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
        )?;
        let matches = predicate.evaluate(values)?.into_array(values.num_rows())?;
        let matches = matches.as_boolean();
        Ok(self
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| matches.is_valid(*i) && matches.value(*i))
            .map(|(_, f)| f.clone())
            .collect())
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scan_projection: Vec<usize> = match projection {
            Some(columns) => columns.iter().map(|&c| self.scan_index[c]).collect(),
            None => self.scan_index.clone(),
        };
        let partition_filters: Vec<Expr> = filters.iter().filter(|f| self.decided_by_partitions(f)).cloned().collect();
        let files = self.files_matching(&partition_filters)?;
        if files.is_empty() {
            let projected = match projection {
                Some(columns) => Arc::new(self.schema.project(columns)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // Files in memory are served from there, the rest from Parquet.
        let partitions = state.config().target_partitions().max(1);
        let projection = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        // With the layout column among the output, each partition reads whole values of it.
        let layout = self.layout_column().and_then(|(table_index, value_index)| {
            let output = projection.iter().position(|&c| c == table_index)?;
            (partitions > 1).then_some((output, value_index))
        });
        let buckets = match layout {
            Some((_, value_index)) => balanced_buckets(&files, value_index, partitions),
            None => (0..files.len()).map(|i| i % partitions).collect(),
        };
        let mut in_memory: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        let mut from_parquet: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
        let mut cached = 0;
        for (file, bucket) in files.into_iter().zip(buckets) {
            match self.decoded.as_ref().and_then(|d| d.get(&self.key(&file))) {
                Some(batches) => {
                    in_memory[bucket].extend(batches.iter().cloned());
                    cached += 1;
                }
                None => from_parquet[bucket].push(file),
            }
        }
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if cached > 0 {
            if layout.is_none() {
                in_memory.retain(|p| !p.is_empty());
            }
            plans.push(MemorySourceConfig::try_new_exec(&in_memory, Arc::clone(&self.schema), Some(projection))?);
        }
        if from_parquet.iter().any(|g| !g.is_empty()) {
            let groups = match layout {
                Some(_) => from_parquet.into_iter().map(FileGroup::new).collect(),
                None => FileGroup::new(from_parquet.concat()).split_files(partitions),
            };
            plans.push(self.parquet_scan(state, groups, layout.is_some(), scan_projection, limit).await?);
        }
        match (layout, plans.len()) {
            (Some((key, _)), _) => KeyGroupedExec::over(plans, key),
            (None, 1) => Ok(plans.remove(0)),
            (None, _) => UnionExec::try_new(plans),
        }
    }

    /// Filters over partition columns only are exact: whole files are kept or dropped by
    /// their values. The rest prune row groups in the Parquet scan and run again above it.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.decided_by_partitions(f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }
}

/// For each file, the partition it is read in: files with the same partition value at
/// `value_index` share one, and the values go largest first (by rows) to the partition with
/// the fewest rows so far, so partitions end up about even.
fn balanced_buckets(files: &[PartitionedFile], value_index: usize, partitions: usize) -> Vec<usize> {
    let rows = |f: &PartitionedFile| {
        f.statistics
            .as_ref()
            .and_then(|s| s.num_rows.get_value().copied())
            .unwrap_or(f.object_meta.size as usize)
    };
    let mut values: HashMap<&ScalarValue, usize> = HashMap::new();
    for file in files {
        *values.entry(&file.partition_values[value_index]).or_default() += rows(file);
    }
    let mut values: Vec<(&ScalarValue, usize)> = values.into_iter().collect();
    values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.partial_cmp(b.0).unwrap_or(std::cmp::Ordering::Equal)));
    let mut load = vec![0usize; partitions];
    let mut bucket_of: HashMap<&ScalarValue, usize> = HashMap::new();
    for (value, rows) in values {
        let bucket = (0..partitions).min_by_key(|&b| (load[b], b)).unwrap_or_default();
        load[bucket] += rows;
        bucket_of.insert(value, bucket);
    }
    files.iter().map(|f| bucket_of.get(&f.partition_values[value_index]).copied().unwrap_or_default()).collect()
}

/// A file in [`DecodedFiles`]: its table's store and its path there.
type FileKey = (String, Path);

/// Files of the lake decoded into Arrow batches, shared by the read model's snapshots, up to
/// a budget of bytes (the batches' memory as Arrow reports it).
#[derive(Debug)]
pub struct DecodedFiles {
    budget_bytes: usize,
    state: Mutex<DecodedState>,
    /// Decoding tasks queued or running, and a signal when one ends: [`DecodedFiles::settled`].
    tasks: tokio::sync::watch::Sender<usize>,
    /// Snapshots whose files are to be decoded, taken one at a time by a thread of its own:
    /// decoding keeps at most one core busy, and never a thread that answers RPCs or runs
    /// queries. The thread ends once this sender is dropped and the queue is empty.
    queue: std::sync::mpsc::Sender<(Arc<SnapshotTable>, DecodingTask)>,
}

/// One running decoding task; dropping it (the task ended, or panicked) counts it out.
#[derive(Debug)]
struct DecodingTask(tokio::sync::watch::Sender<usize>);

impl Drop for DecodingTask {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[derive(Debug, Default)]
struct DecodedState {
    files: HashMap<FileKey, (Arc<[RecordBatch]>, usize)>,
    /// Files being decoded now: a second snapshot planned meanwhile does not decode them too.
    loading: HashSet<FileKey>,
    used_bytes: usize,
}

impl DecodedFiles {
    /// A cache of at most `budget_bytes`, with its decoding thread; `None` for a budget of 0
    /// (every file read from Parquet), or when no thread can be started.
    pub fn new(budget_bytes: usize) -> Option<Arc<Self>> {
        if budget_bytes == 0 {
            return None;
        }
        let (queue, jobs) = std::sync::mpsc::channel::<(Arc<SnapshotTable>, DecodingTask)>();
        let started = std::thread::Builder::new().name("cclake-decode".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return warn!(error = %e, "decoded files: no runtime; every file is read from Parquet"),
            };
            while let Ok((table, _task)) = jobs.recv() {
                runtime.block_on(table.decode_all());
            }
        });
        if let Err(e) = started {
            warn!(error = %e, "decoded files: no thread; every file is read from Parquet");
            return None;
        }
        Some(Arc::new(Self {
            budget_bytes,
            state: Mutex::new(DecodedState::default()),
            tasks: tokio::sync::watch::Sender::new(0),
            queue,
        }))
    }

    /// Queues `table`'s files for the decoding thread.
    fn enqueue(&self, table: Arc<SnapshotTable>) {
        self.tasks.send_modify(|n| *n += 1);
        // A thread that is gone drops the job, and with it the count.
        let _ = self.queue.send((table, DecodingTask(self.tasks.clone())));
    }

    /// Returns once no snapshot's files are being decoded (every file of the snapshots
    /// planned so far is in memory, or past the budget).
    pub async fn settled(&self) {
        let mut tasks = self.tasks.subscribe();
        // The sender lives in `self`: waiting cannot fail.
        let _ = tasks.wait_for(|n| *n == 0).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DecodedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held now.
    pub fn used_bytes(&self) -> usize {
        self.lock().used_bytes
    }

    fn get(&self, key: &FileKey) -> Option<Arc<[RecordBatch]>> {
        self.lock().files.get(key).map(|(batches, _)| Arc::clone(batches))
    }

    /// Whether the caller should decode `key`: not held, not being decoded, budget left.
    fn claim(&self, key: &FileKey) -> bool {
        let mut state = self.lock();
        if state.files.contains_key(key) || state.loading.contains(key) || state.used_bytes >= self.budget_bytes {
            return false;
        }
        state.loading.insert(key.clone())
    }

    fn release(&self, key: &FileKey) {
        self.lock().loading.remove(key);
    }

    /// Keeps a decoded file if it fits in what is left of the budget.
    fn insert(&self, key: FileKey, batches: Vec<RecordBatch>) {
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let mut state = self.lock();
        state.loading.remove(&key);
        if state.used_bytes + bytes <= self.budget_bytes {
            state.used_bytes += bytes;
            state.files.insert(key, (batches.into(), bytes));
        }
    }

    /// Forgets the files of `store` that are not in `live` (removed by a commit).
    fn retain(&self, store: &str, live: &HashSet<Path>) {
        let mut state = self.lock();
        let mut freed = 0;
        state.files.retain(|(s, path), (_, bytes)| {
            let keep = s != store || live.contains(path);
            if !keep {
                freed += *bytes;
            }
            keep
        });
        state.used_bytes -= freed;
    }
}
