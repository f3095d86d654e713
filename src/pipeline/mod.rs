//! One ingest pass: list the source → fetch and parse ahead ([`fetch`], [`lookahead`]) →
//! batch → commit ([`crate::lake::commit`]) → compact. The pass is [`Lake::ingest`]'s: this
//! module adds it to [`Lake`] so that `lake/` (the tables and their write primitives) never
//! imports the pass that drives it.
//!
//! Each batch commits every table and then `ingest_log`; a pass stopped anywhere (a crash,
//! a signal, a lost lease) leaves the lake at a commit boundary, and the next pass reads
//! exactly the objects (or the records of a large object) not yet logged.

mod fetch;
mod lookahead;
mod source_check;

use std::sync::Arc;
use std::time::Instant;

use deltalake::DeltaTable;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ingest::queue_partitions::QueuePartitions;
use crate::ingest::{IngestReport, ParseOptions, ParsedObject, SourceObject};
use crate::lake::commit::commit_batch;
use crate::lake::erase::ErasedIds;
use crate::lake::error::delta_err;
use crate::lake::ingest_log::IngestLog;
use crate::lake::lease::WriterLease;
use crate::lake::pass_keys::PassKeys;
use crate::lake::pseudonym_key;
use crate::lake::tables::Tables;
use crate::lake::{Lake, LakeError, LakeOptions, LakeTable, Writer};
use crate::storage::Location;
use fetch::{object_parts, Fetched};
use lookahead::LookAhead;
pub use source_check::check_source_location;

/// Objects one commit takes at most, whatever their rows: each object staged costs tens of
/// KB until its commit (its own small batches, its log row), so without this bound a pass
/// over a million one-event objects would hold them all at once (figures in benches/README).
pub const MAX_OBJECTS_PER_COMMIT: usize = 4096;

impl Lake {
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
        let result = self.pass(&mut writer, source, &lease, stop).await;
        lease.release().await;
        result
    }

    async fn pass(&self, writer: &mut Writer, source: &str, lease: &WriterLease, stop: &CancellationToken) -> Result<IngestReport, LakeError> {
        // The pass's parsers stop when it ends, however it ends (done, failed, interrupted):
        // none keeps reading objects behind a pass that will not take their rows.
        let parsers = stop.child_token();
        let _stop_parsers = parsers.clone().drop_guard();
        let started = Instant::now();
        let mut report = IngestReport::default();
        let source = Location::parse(source, false)?;
        // Checked on a source's first pass: what a source is does not change between passes
        // (and on object storage the check is a dozen requests).
        if !writer.listings.knows(&source) {
            self.check_source(&source).await?;
        }
        let (store, prefix) = source.object_store()?;
        let (listed, listed_upto) = writer
            .listings
            .list(store.as_ref(), &source, &prefix)
            .await
            .map_err(|e| LakeError::ListSource { location: source.to_string(), source: e })?;
        for entry in &listed.skipped {
            warn!(source = %source, entry = %entry, "source entry skipped: it cannot be listed");
        }
        report.entries_skipped = listed.skipped;
        // Taken out of the writer: a pass that fails leaves nothing half-updated behind.
        let mut tables = self.load_tables(writer.tables.take()).await?;
        let mut log = IngestLog::load(&tables, writer.ingest_log.take()).await?;
        report.objects_listed = listed.objects.len() as u64;
        // Each object still to read, and how many of its records earlier passes committed.
        let todo: Vec<(SourceObject, u64)> =
            listed.objects.into_iter().filter_map(|o| log.still_to_read(&o).map(|resume_after| (o, resume_after))).collect();
        report.objects_skipped = report.objects_listed - todo.len() as u64;
        info!(source = %source, objects = todo.len(), skipped = report.objects_skipped, "ingest pass started");

        let parse = Arc::new(self.parse_options(writer, &tables, parsers).await?);
        let local = source.url().scheme() == "file";
        let progress = progress_bar(self.options(), todo.iter().map(|(o, _)| o.size).sum());
        // Objects are read and parsed ahead (each by a task of its own), their parts taken
        // in listing order.
        let ahead = LookAhead { objects: self.options().parallel_objects.max(1), bytes: self.options().lookahead_bytes };
        let parts = ahead
            .started(todo, |(object, _)| object.size, |(object, resume_after)| {
                object_parts(self.options(), Arc::clone(&store), Arc::clone(&parse), object, resume_after, local)
            })
            .flatten();
        // Rows of erased conversations are dropped before any commit: a re-delivery of them
        // from the source does not bring them back.
        let erased = match &writer.agent_key {
            Some(key) => ErasedIds::load(self.root(), Arc::clone(key)).await?,
            None => None,
        };
        let known = PassKeys::new(&tables);
        let mut batches = Batches { tables: &mut tables, known, log: &mut log, lease, options: self.options(), erased: erased.as_ref() };
        batches.commit_all(parts, stop, &progress, &mut report).await?;
        progress.finish_and_clear();

        if self.options().auto_compact && !report.interrupted {
            let before = tables.get(LakeTable::IngestLog)?.version();
            let outcome = self.compact_tables(&mut tables, self.options().compact_min_files, lease).await?;
            report.partitions_compacted = outcome.total().partitions_compacted;
            // Compaction rewrites files, not what the log holds.
            log.rewritten(before, tables.get(LakeTable::IngestLog)?.version());
        }
        log.leave(&tables);
        writer.tables = Some(tables);
        writer.ingest_log = Some(log);
        if let Some(listed_upto) = listed_upto.filter(|_| !report.interrupted) {
            writer.listings.keep(&source, listed_upto);
        }
        report.elapsed = started.elapsed();
        log_summary(&report);
        Ok(report)
    }

    /// How this pass parses: the lake's agent key (read, or made on the lake's first pass),
    /// the queue partitions `fact_interactions` holds, and the pass's stop.
    async fn parse_options(&self, writer: &mut Writer, tables: &Tables, stop: CancellationToken) -> Result<ParseOptions, LakeError> {
        let agent_key = match &writer.agent_key {
            Some(key) => Arc::clone(key),
            None => pseudonym_key::lake_key(self.root(), self.options().pseudonym_key.as_ref()).await?,
        };
        writer.agent_key = Some(Arc::clone(&agent_key));
        let queue_partitions = queue_partitions(tables.get(LakeTable::FactInteractions)?, self.options().max_queues_per_day)?;
        Ok(ParseOptions {
            limits: self.options().expansion,
            agent_key: Some(agent_key),
            queue_partitions: Some(Arc::new(queue_partitions)),
            stop: Some(stop),
            partition_sizes: Default::default(),
        })
    }
}

/// The batching step: parsed objects (and parts of large ones) gathered until a commit's
/// worth, then committed.
struct Batches<'a> {
    tables: &'a mut Tables,
    /// Where the keys this pass committed are.
    known: PassKeys,
    log: &'a mut IngestLog,
    lease: &'a WriterLease,
    options: &'a LakeOptions,
    erased: Option<&'a ErasedIds>,
}

impl Batches<'_> {
    /// Takes every part `parts` hands over, committing batch by batch, until they end or
    /// `stop` is cancelled (then what is pending is left for the next pass).
    async fn commit_all(
        &mut self,
        mut parts: impl futures::Stream<Item = Result<Fetched, LakeError>> + Unpin,
        stop: &CancellationToken,
        progress: &ProgressBar,
        report: &mut IngestReport,
    ) -> Result<(), LakeError> {
        let mut pending: Vec<ParsedObject> = Vec::new();
        let mut pending_rows = 0;
        loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    report.interrupted = true;
                    return Ok(());
                }
                next = parts.next() => next,
            };
            let Some(fetched) = next else { break };
            let parsed = match fetched? {
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
            log_quarantined(&parsed);
            pending_rows += parsed.row_count();
            // A part of a streamed object commits what is pending once a part's worth is:
            // a large object's memory stays at a few parts, whatever the batch size.
            let streaming = parsed.through_record.is_some();
            pending.push(parsed);
            if pending_rows >= self.options.batch_rows
                || pending.len() >= MAX_OBJECTS_PER_COMMIT
                || (streaming && pending_rows >= self.options.part_rows())
            {
                commit_batch(self.tables, &mut self.known, &pending, self.log, report, self.lease, self.erased).await?;
                pending.clear();
                pending_rows = 0;
            }
        }
        if !pending.is_empty() {
            commit_batch(self.tables, &mut self.known, &pending, self.log, report, self.lease, self.erased).await?;
        }
        Ok(())
    }
}

/// Each quarantined record is in the quarantine table; here at debug level only, and with
/// field names and reasons only: record text can hold PII even when masked.
fn log_quarantined(parsed: &ParsedObject) {
    for q in &parsed.quarantined {
        debug!(
            object = %parsed.object.url,
            line = q.line,
            field = q.rejection.field().unwrap_or("-"),
            reason = q.rejection.code(),
            "record quarantined"
        );
    }
}

fn log_summary(report: &IngestReport) {
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
}

fn progress_bar(options: &LakeOptions, total_bytes: u64) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} ingest [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
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
