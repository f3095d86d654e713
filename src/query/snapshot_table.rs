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
//! A server keeps columns of the lake's files decoded in memory ([`DecodedFiles`], up to
//! `decoded_cache_mb`; which columns: [`super::decoded`]). A snapshot's files are decoded in
//! the background once it is planned; a file whose columns a scan reads are not all in
//! memory is read from Parquet (and its missing columns are decoded for the next scans), so
//! a query always sees exactly its snapshot's files.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use arrow::array::{new_empty_array, Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
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

use super::decoded::{DecodedFiles, FileKey};
use super::key_grouped::KeyGroupedExec;
use super::plain_types::plain_schema;

/// A decoded partition column holds its file's value for this many rows (or the file's
/// rows, if fewer), sliced for every batch: the value is the same on every row.
const PARTITION_VALUE_ROWS: usize = 8192;

/// One scan's reading of decoded files: the columns it reads (table order of its
/// projection), which of them are partition columns (a value kept for one batch), the batch
/// rows, its output schema, and its tick on the cache's clock.
struct DecodedRead<'a> {
    decoded: &'a DecodedFiles,
    names: Vec<&'a str>,
    repeated: Vec<bool>,
    schema: SchemaRef,
    chunk: usize,
    now: u64,
}

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
    /// Decoded columns shared by every snapshot the read model plans, if it keeps any.
    decoded: Option<Arc<DecodedFiles>>,
    /// This table, for the decoding jobs its scans queue.
    me: Weak<SnapshotTable>,
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
        Ok(Some(Arc::new_cyclic(|me| Self {
            schema,
            scan_schema: TableSchema::builder(file_schema).with_table_partition_cols(partition_columns.clone()).build(),
            scan_index,
            partition_columns,
            partition_values,
            files,
            store_url: log_store.object_store_url(),
            store: log_store.object_store(None),
            decoded,
            me: me.clone(),
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

    /// Decodes the files no earlier snapshot of this table held into [`DecodedFiles`] in the
    /// background: the columns queries have read from this table, or every column while no
    /// query has (and while the budget lasts); forgets this table's files that the snapshot no
    /// longer holds. Queries meanwhile read those files from Parquet.
    pub fn decode_files(self: &Arc<Self>) {
        let Some(decoded) = &self.decoded else { return };
        let live: HashSet<Path> = self.files.iter().map(|f| f.object_meta.location.clone()).collect();
        let new = decoded.follow_snapshot(self.store_url.as_str(), &live);
        if new.is_empty() {
            return;
        }
        let table = Arc::clone(self);
        decoded.enqueue(Box::pin(async move {
            let Some(decoded) = &table.decoded else { return };
            let wanted = decoded.wanted(table.store_url.as_str());
            let (names, asked_at) = match wanted {
                Some(names) => (names, Some(decoded.tick())),
                None => (table.schema.fields().iter().map(|f| f.name().clone()).collect(), None),
            };
            let files = table
                .files
                .iter()
                .filter(|f| new.contains(&f.object_meta.location))
                .map(|f| (f.clone(), names.clone()))
                .collect();
            table.decode_columns(files, asked_at).await;
        }));
    }

    /// Decodes each file's named columns that are not in memory yet, and keeps them
    /// ([`DecodedFiles::insert`]; `asked_at`: the tick of the scan that asked, if one did).
    async fn decode_columns(&self, files: Vec<(PartitionedFile, Vec<String>)>, asked_at: Option<u64>) {
        let Some(decoded) = &self.decoded else { return };
        let config = match super::config::session_config() {
            Ok(config) => config,
            Err(e) => return warn!(error = %e, "decoded files: no session to decode with"),
        };
        let ctx = SessionContext::new_with_config(config);
        for (file, names) in files {
            let key = self.key(&file);
            let names = decoded.claim(&key, &names, asked_at.is_some());
            if names.is_empty() {
                continue;
            }
            match self.decode(&ctx, file, &names).await {
                Ok((rows, columns)) => decoded.insert(&key, rows, names.into_iter().zip(columns).collect(), asked_at),
                Err(e) => {
                    debug!(file = %key.1, error = %e, "file not decoded; read from Parquet");
                    decoded.release(&key, &names);
                }
            }
        }
    }

    /// One file's row count and its named columns: a data column as one array of the file's
    /// rows, a partition column as its value repeated for [`PARTITION_VALUE_ROWS`] rows at most.
    async fn decode(&self, ctx: &SessionContext, file: PartitionedFile, names: &[String]) -> Result<(usize, Vec<ArrayRef>)> {
        let indices = names.iter().map(|name| self.schema.index_of(name)).collect::<Result<Vec<_>, _>>()?;
        let file_count = self.scan_schema.file_schema().fields().len();
        let data: Vec<usize> = indices.iter().map(|&i| self.scan_index[i]).filter(|&s| s < file_count).collect();
        let partition_values = file.partition_values.clone();
        let plan = self.parquet_scan(&ctx.state(), vec![FileGroup::new(vec![file])], false, data.clone(), None).await?;
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let columns = indices
            .iter()
            .map(|&i| {
                let field = self.schema.field(i);
                let scan = self.scan_index[i];
                let array = match data.iter().position(|&d| d == scan) {
                    Some(c) => {
                        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
                        match batches.as_slice() {
                            [] => new_empty_array(field.data_type()),
                            [one] => Arc::clone(one.column(c)),
                            _ => arrow::compute::concat(&parts)?,
                        }
                    }
                    None => partition_values[scan - file_count].to_array_of_size(rows.min(PARTITION_VALUE_ROWS))?,
                };
                if array.data_type() != field.data_type() {
                    return Err(datafusion::error::DataFusionError::Internal(format!(
                        "column {} decoded as {}, the table says {}",
                        field.name(),
                        array.data_type(),
                        field.data_type()
                    )));
                }
                Ok(array)
            })
            .collect::<Result<_>>()?;
        Ok((rows, columns))
    }

    /// What a scan reading `projection` (table columns) needs to take each file's rows
    /// from `decoded`, worked out once for the scan.
    fn decoded_read<'a>(&'a self, decoded: &'a DecodedFiles, projection: &[usize], schema: SchemaRef, batch_size: usize) -> DecodedRead<'a> {
        let names: Vec<&str> = projection.iter().map(|&c| self.schema.field(c).name().as_str()).collect();
        let file_count = self.scan_schema.file_schema().fields().len();
        let repeated: Vec<bool> = projection.iter().map(|&c| self.scan_index[c] >= file_count).collect();
        let mut chunk = batch_size.max(1);
        if repeated.contains(&true) {
            chunk = chunk.min(PARTITION_VALUE_ROWS);
        }
        let now = decoded.scan_started(self.store_url.as_str(), &names);
        DecodedRead { decoded, names, repeated, schema, chunk, now }
    }

    /// A file's rows from its decoded columns, in batches of `read.chunk` rows at most; or the
    /// names of the columns not in memory.
    fn decoded_batches(&self, read: &DecodedRead<'_>, file: &PartitionedFile) -> Result<Vec<RecordBatch>, Vec<String>> {
        let (rows, columns) = read.decoded.columns(&self.key(file), &read.names, read.now)?;
        let chunk = read.chunk;
        // Columns of a file decoded at different times have its one row count; should one not,
        // the file is read from Parquet.
        let whole = columns.iter().zip(&read.repeated).all(|(a, &r)| if r { a.len() >= rows.min(chunk) } else { a.len() == rows });
        if !whole {
            return Err(Vec::new());
        }
        let mut batches = Vec::with_capacity(rows.div_ceil(chunk));
        for offset in (0..rows).step_by(chunk) {
            let n = chunk.min(rows - offset);
            let arrays: Vec<ArrayRef> = columns
                .iter()
                .zip(&read.repeated)
                .map(|(array, &repeated)| if repeated { array.slice(0, n) } else { array.slice(offset, n) })
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(n));
            batches.push(RecordBatch::try_new_with_options(Arc::clone(&read.schema), arrays, &options).map_err(|_| Vec::new())?);
        }
        Ok(batches)
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
        let projected = Arc::new(self.schema.project(&projection)?);
        let read = self
            .decoded
            .as_deref()
            .map(|decoded| self.decoded_read(decoded, &projection, Arc::clone(&projected), state.config().batch_size()));
        let mut in_memory: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        let mut from_parquet: Vec<Vec<PartitionedFile>> = vec![Vec::new(); partitions];
        let mut missing: Vec<(PartitionedFile, Vec<String>)> = Vec::new();
        let mut cached = 0;
        for (file, bucket) in files.into_iter().zip(buckets) {
            let held = match &read {
                Some(read) => self.decoded_batches(read, &file),
                None => Err(Vec::new()),
            };
            match held {
                Ok(batches) => {
                    in_memory[bucket].extend(batches);
                    cached += 1;
                }
                Err(names) => {
                    if !names.is_empty() {
                        missing.push((file.clone(), names));
                    }
                    from_parquet[bucket].push(file);
                }
            }
        }
        // The columns this scan found missing are decoded for the next ones.
        if let (Some(decoded), Some(table), false) = (&self.decoded, self.me.upgrade(), missing.is_empty()) {
            let asked_at = read.as_ref().map(|r| r.now);
            decoded.enqueue(Box::pin(async move { table.decode_columns(missing, asked_at).await }));
        }
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if cached > 0 {
            if layout.is_none() {
                in_memory.retain(|p| !p.is_empty());
            }
            if !in_memory.is_empty() {
                plans.push(MemorySourceConfig::try_new_exec(&in_memory, Arc::clone(&projected), None)?);
            }
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
            (None, 0) => Ok(Arc::new(EmptyExec::new(projected))),
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
