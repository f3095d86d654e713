//! The ingest stage: export objects in, validated and masked events (or quarantined records
//! with their reasons) out. Nothing here writes to the lake; [`crate::Lake`] commits what
//! this stage produces.

mod options;
mod quarantine_text;
pub mod coerce;
pub mod formats;
pub mod mask;
pub mod pseudonym;
pub mod queue_partitions;
pub mod rows;
pub mod source;

use quarantine_text::{masked_json_text, masked_record_text};
pub use quarantine_text::MAX_QUARANTINED_RECORD_BYTES;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;

use crate::model::{Delivery, LakeTable};
use rows::TableRows;

pub use coerce::Rejection;
pub use options::ParseOptions;
use options::StopCheck;
pub use formats::flat_event::{parse_flat_event, FlatEvent};
pub use source::{ExpansionLimits, Framing, SourceObject};

/// A record that could not be used, kept with its position and masked text.
#[derive(Debug, Clone)]
pub struct QuarantinedRecord {
    /// 1-based line the record starts on (0 when the whole object was unreadable).
    pub line: u64,
    /// Where in the record, for an item of a page: `conversations[3]`, `entities[0]`.
    pub position: Option<String>,
    pub rejection: Rejection,
    /// The record's text with PII masked.
    pub record: String,
}

/// Everything one export object yielded.
#[derive(Debug)]
pub struct ParsedObject {
    pub object: SourceObject,
    pub framing: Option<Framing>,
    pub gzipped: bool,
    /// Rows of the tables each valid record feeds, each row with its delivery: per table,
    /// one batch per partition ([`rows::TableRows`]).
    pub rows: BTreeMap<LakeTable, Vec<RecordBatch>>,
    /// Valid records (conversations, events, entities, flat events) by format.
    pub valid_by_format: BTreeMap<&'static str, u64>,
    pub quarantined: Vec<QuarantinedRecord>,
    pub unknown_fields: BTreeMap<String, u64>,
    /// `Some(n)`: a part of the object, ending with its `n`-th record (more parts follow);
    /// `None`: the object's last (or only) part.
    pub through_record: Option<u64>,
}

impl ParsedObject {
    /// Records read: page items count one each.
    pub fn records(&self) -> u64 {
        self.valid_records() + self.quarantined.len() as u64
    }

    pub fn valid_records(&self) -> u64 {
        self.valid_by_format.values().sum()
    }

    /// Rows this object adds to the next commit, for batching.
    pub fn row_count(&self) -> usize {
        self.rows.values().flatten().map(RecordBatch::num_rows).sum::<usize>()
    }
}

/// Parses one export object's bytes. Never fails: an unreadable object becomes one
/// quarantined record, and each bad record is quarantined on its own while the rest land.
pub fn parse_object(object: SourceObject, bytes: &[u8], options: &ParseOptions) -> ParsedObject {
    let mut parts = Vec::new();
    parse_object_in_parts(object, bytes, options, 0, usize::MAX, |part| parts.push(part));
    parts.pop().unwrap_or_else(|| unreachable!("the last part is always handed over"))
}

/// [`parse_object`] that hands over a part each time `part_rows` rows are staged (the last
/// part completes the object), skipping the object's first `resume_after` records (parts an
/// earlier pass committed).
pub fn parse_object_in_parts(
    object: SourceObject,
    bytes: &[u8],
    options: &ParseOptions,
    resume_after: u64,
    part_rows: usize,
    mut part: impl FnMut(ParsedObject),
) {
    let (text, gzipped) = match source::decompress(bytes, options.limits) {
        Ok(decompressed) => decompressed,
        Err(e) => {
            let mut parser = ObjectParser::new(object, None, bytes.starts_with(&[0x1f, 0x8b]), options);
            parser.unreadable(e.to_string());
            return part(parser.finish(None));
        }
    };
    parse_text_in_parts(object, &text, gzipped, options, resume_after, part_rows, part);
}

/// [`parse_object_in_parts`] of text already decompressed.
fn parse_text_in_parts(
    object: SourceObject,
    text: &[u8],
    gzipped: bool,
    options: &ParseOptions,
    resume_after: u64,
    part_rows: usize,
    mut part: impl FnMut(ParsedObject),
) {
    let (framing, spans) = source::split_records(text);
    let mut parser = ObjectParser::new(object, Some(framing), gzipped, options);
    parser.rows.expect_records(spans.len().saturating_sub(resume_after as usize).min(part_rows));
    // Checked as UTF-8 once, whole, rather than string by string in each record.
    let whole = std::str::from_utf8(text).ok();
    let mut stop = StopCheck::default();
    for (n, span) in (1u64..).zip(spans).skip(resume_after as usize) {
        let (start, end) = (span.start, span.end);
        if stop.stopped(options, end - start) {
            return;
        }
        parser.record_checked(span.line, &text[start..end], whole.and_then(|w| w.get(start..end)));
        if parser.staged_rows() >= part_rows {
            part(parser.take_part(n));
        }
    }
    part(parser.finish(None));
}

/// Bytes of text read before a streamed object's framing is decided.
const STREAM_HEAD_BYTES: u64 = 1 << 20;

/// Parses a large object as it is read, never holding it whole: NDJSON (gzipped or not) is
/// cut into lines as it arrives, and a part is handed over each time `part_rows` rows are
/// staged (the last part completes the object). A JSON array or a stream of pretty-printed
/// objects needs its whole text to be cut into records: it is read whole, then parsed in
/// parts. The first `resume_after` records are skipped. Should the object turn
/// unreadable part-way (a cut gzip, a bomb), the parts before stay and the last part holds
/// one quarantined row saying where and why.
pub fn parse_stream_in_parts(
    object: SourceObject,
    raw: impl std::io::Read + 'static,
    options: &ParseOptions,
    resume_after: u64,
    part_rows: usize,
    mut part: impl FnMut(ParsedObject),
) {
    use std::io::{BufRead, Read};
    let unreadable = |object: SourceObject, gzipped: bool, why: String| {
        let mut parser = ObjectParser::new(object, None, gzipped, options);
        parser.unreadable(why);
        parser.finish(None)
    };
    let (mut text, gzipped) = match source::streaming_text(raw, options.limits) {
        Ok(text) => text,
        Err(e) => return part(unreadable(object, false, e.to_string())),
    };
    let mut head = Vec::new();
    if let Err(e) = (&mut text).take(STREAM_HEAD_BYTES).read_to_end(&mut head) {
        return part(unreadable(object, gzipped, e.to_string()));
    }
    let bom = if head.starts_with(&[0xef, 0xbb, 0xbf]) { 3 } else { 0 };
    let first = head[bom..].iter().position(|b| !b.is_ascii_whitespace()).map(|i| i + bom);
    let ndjson = match first.map(|i| head[i]) {
        Some(b'[') => false,
        Some(b'{') => first.is_some_and(|i| source::looks_like_ndjson(&head[i..])),
        _ => true,
    };
    if !ndjson {
        if let Err(e) = text.read_to_end(&mut head) {
            return part(unreadable(object, gzipped, e.to_string()));
        }
        return parse_text_in_parts(object, &head, gzipped, options, resume_after, part_rows, part);
    }
    let mut parser = ObjectParser::new(object, Some(Framing::Ndjson), gzipped, options);
    let mut reader = std::io::Cursor::new(head).chain(text);
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut records = 0u64;
    let mut stop = StopCheck::default();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                parser.unreadable(if number == 0 { e.to_string() } else { format!("after line {number}: {e}") });
                break;
            }
        }
        if stop.stopped(options, line.len()) {
            return;
        }
        number += 1;
        let record = line.strip_suffix(b"\n").unwrap_or(&line);
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records += 1;
        if records <= resume_after {
            continue;
        }
        parser.record(number, record);
        if parser.staged_rows() >= part_rows {
            part(parser.take_part(records));
        }
    }
    part(parser.finish(None));
}

/// Turns an object's records into rows (and quarantined records), one part at a time.
pub struct ObjectParser {
    part: ParsedObject,
    rows: TableRows,
    agents: Option<pseudonym::AgentPseudonyms>,
    queues: Option<Arc<queue_partitions::QueuePartitions>>,
    /// The queue partitions this parser saw admitted, by day: an admitted partition stays
    /// admitted, so they are not asked of the pass's shared (locked) set again (events of
    /// one object mostly fall in a few tens of partitions, not in runs of one).
    /// DataFusion's maps (foldhash): an event's lookup hashes its queue name, several times
    /// faster than the standard library's SipHash.
    admitted: datafusion::common::HashMap<i32, datafusion::common::HashSet<Box<str>>>,
    /// Where a tree format's record is parsed ([`formats::tree`]): emptied for each record,
    /// its memory kept for the next.
    arena: bumpalo::Bump,
}

impl fmt::Debug for ObjectParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectParser").field("object", &self.part.object.url).field("staged_rows", &self.rows.len()).finish()
    }
}

impl ObjectParser {
    pub fn new(object: SourceObject, framing: Option<Framing>, gzipped: bool, options: &ParseOptions) -> Self {
        let agents = options.agent_key.as_ref().map(|key| pseudonym::AgentPseudonyms::new(Arc::clone(key)));
        let rows = TableRows::sized_by(Arc::clone(&options.partition_sizes));
        Self::with_agents(object, framing, gzipped, agents, options.queue_partitions.clone(), rows)
    }

    fn with_agents(
        object: SourceObject,
        framing: Option<Framing>,
        gzipped: bool,
        agents: Option<pseudonym::AgentPseudonyms>,
        queues: Option<Arc<queue_partitions::QueuePartitions>>,
        rows: TableRows,
    ) -> Self {
        Self {
            part: ParsedObject {
                object,
                framing,
                gzipped,
                rows: BTreeMap::new(),
                valid_by_format: BTreeMap::new(),
                quarantined: Vec::new(),
                unknown_fields: BTreeMap::new(),
                through_record: None,
            },
            rows,
            agents,
            queues,
            admitted: Default::default(),
            arena: bumpalo::Bump::new(),
        }
    }

    /// Whether `event`'s queue partition may be stored ([`queue_partitions`]), remembering
    /// those admitted in `admitted`.
    fn admits(
        queues: Option<&queue_partitions::QueuePartitions>,
        admitted: &mut datafusion::common::HashMap<i32, datafusion::common::HashSet<Box<str>>>,
        event: &formats::flat_event::FlatEvent<'_>,
    ) -> bool {
        let (Some(queues), Some(queue)) = (queues, event.queue_name.as_deref()) else { return true };
        let day = event.event_timestamp.div_euclid(86_400_000_000) as i32;
        if admitted.get(&day).is_some_and(|queues| queues.contains(queue)) {
            return true;
        }
        let admit = queues.admit(day, Some(queue));
        if admit {
            admitted.entry(day).or_default().insert(queue.into());
        }
        admit
    }

    /// Rows staged since the last part.
    pub fn staged_rows(&self) -> usize {
        self.rows.len()
    }

    /// The object cannot be read (on): one quarantined row says why.
    pub fn unreadable(&mut self, why: String) {
        self.part.quarantined.push(QuarantinedRecord {
            line: 0,
            position: None,
            rejection: Rejection::UnreadableObject(why),
            record: String::new(),
        });
    }

    /// Parses one record, starting on `line`.
    pub fn record(&mut self, line: u64, raw: &[u8]) {
        self.record_checked(line, raw, None);
    }

    /// [`Self::record`], given the record as text too when it is known to be UTF-8.
    fn record_checked(&mut self, line: u64, raw: &[u8], text: Option<&str>) {
        let parsed = &mut self.part;
        let delivery = Delivery {
            modified_at: parsed.object.last_modified,
            object: parsed.object.url.as_str().into(),
            line: line as i64,
        };
        let record = match formats::flat_event::parse_flat_event_or_tree(raw, text, self.agents.as_mut()) {
            formats::flat_event::FlatOrTree::Flat(record) => record,
            formats::flat_event::FlatOrTree::MaybeTree => {
                self.arena.reset();
                let tree = formats::tree::parse(raw, text, &self.arena);
                if let Ok(record) = &tree {
                    if let Some(format) = formats::tree_format_of(record) {
                        let rows = &mut self.rows;
                        format.decode(record, &mut |item| match item.outcome {
                            Ok(record_rows) => {
                                rows.push_record(&record_rows, &delivery);
                                *parsed.valid_by_format.entry(format.name()).or_default() += 1;
                            }
                            Err(rejection) => parsed.quarantined.push(QuarantinedRecord {
                                line,
                                position: item.position,
                                rejection,
                                record: masked_json_text(item.item),
                            }),
                        });
                        return;
                    }
                }
                let mut record = formats::flat_event::parse_flat_event_with(raw, text, self.agents.as_mut());
                // Not JSON to the tree parse (nested past serde_json's 128 levels, which the
                // flat parse skips unread) and no flat event either: the parse error is the
                // reason to give, not the flat event's first missing field.
                if let (Err(e), Err(_)) = (&tree, &record.outcome) {
                    record.outcome = Err(Rejection::InvalidJson(e.to_string()));
                }
                record
            }
        };
        for field in record.unknown_fields {
            *parsed.unknown_fields.entry(field).or_default() += 1;
        }
        let outcome = match record.outcome {
            Ok(event) if !Self::admits(self.queues.as_deref(), &mut self.admitted, &event) => Err(Rejection::TooManyPartitions {
                field: "queue_name",
                limit: self.queues.as_ref().map_or(0, |q| q.limit()),
            }),
            outcome => outcome,
        };
        match outcome {
            Ok(event) => {
                event.push_rows(parsed.object.last_modified, &mut self.rows, &delivery);
                if let (Some(identity), Some(pseudonym)) = (&event.new_agent_identity, &event.agent_id) {
                    self.rows.push(
                        LakeTable::AgentIdentities,
                        &[("agent_id", rows::Cell::text(Some(pseudonym))), ("identity", rows::Cell::text(Some(identity)))],
                        &delivery,
                    );
                }
                *parsed.valid_by_format.entry("flat_event").or_default() += 1;
            }
            Err(rejection) => parsed.quarantined.push(QuarantinedRecord {
                line,
                position: None,
                record: masked_record_text(raw),
                rejection,
            }),
        }
    }

    /// The records parsed so far, the object's first `records`, as a part of it; parsing
    /// goes on.
    pub fn take_part(&mut self, records: u64) -> ParsedObject {
        let agents = self.agents.as_ref().map(pseudonym::AgentPseudonyms::fresh);
        let next = Self::with_agents(
            self.part.object.clone(),
            self.part.framing,
            self.part.gzipped,
            agents,
            self.queues.clone(),
            self.rows.fresh(),
        );
        std::mem::replace(self, next).finish(Some(records))
    }

    /// The records parsed since the last part: the whole object (`through_record` `None`) or a
    /// part of it.
    pub fn finish(self, through_record: Option<u64>) -> ParsedObject {
        let mut parsed = self.part;
        parsed.through_record = through_record;
        match self.rows.finish() {
            Ok(batches) => parsed.rows = batches,
            // The builders follow the schemas by construction; should that ever break, the
            // part is refused whole rather than half-stored.
            Err(e) => {
                parsed.rows.clear();
                parsed.valid_by_format.clear();
                parsed.quarantined = vec![QuarantinedRecord {
                    line: 0,
                    position: None,
                    rejection: Rejection::UnreadableObject(format!("rows do not fit the tables: {e}")),
                    record: String::new(),
                }];
            }
        }
        parsed
    }
}

/// What one `ingest` pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Export objects found under the source.
    pub objects_listed: u64,
    /// Objects already in the ingest log with the same size, time and etag.
    pub objects_skipped: u64,
    pub objects_read: u64,
    /// Objects that could not be read at all (a corrupt gzip): each is one `quarantine` row
    /// (reason `unreadable_object`, line 0) and counts as no record, since its records are
    /// unknown.
    pub objects_unreadable: u64,
    /// Entries of a local source that could not be listed (a symbolic-link loop, a name with
    /// a newline), each with why; the rest of the source was ingested.
    pub entries_skipped: Vec<String>,
    pub bytes_read: u64,
    /// Records split out of readable objects, valid or quarantined.
    pub records_read: u64,
    /// Keyed records (flat events, EventBridge events, dimension entities) inserted or
    /// replaced, and conversations written whole: the latest delivery of each key, when it is
    /// later than the one the lake holds.
    pub records_upserted: u64,
    /// Records (not unreadable objects) sent to `quarantine`.
    pub records_quarantined: u64,
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Valid records by format (`flat_event`, `conversation_detail`, `eventbridge`,
    /// `dimension`); a page's items count one each.
    pub valid_by_format: BTreeMap<String, u64>,
    /// Rows written, by table (a row written again in a later batch of the pass, a
    /// conversation exported twice, counts twice); tables that follow another
    /// (`call_recordings`) are not listed.
    pub rows_committed: BTreeMap<String, u64>,
    pub unknown_fields: BTreeMap<String, u64>,
    /// Values of columns of codes that were no code and were stored as `[other]`, by
    /// `table.column`.
    pub values_not_kept: BTreeMap<String, u64>,
    /// Delta commits of rows (not counting `quarantine` and `ingest_log`).
    pub commits: u64,
    /// Files upserts by key had to read (those of partitions already holding some of a
    /// batch's keys) and files they rewrote, in the tables that decide their own winners.
    pub files_scanned: u64,
    pub files_rewritten: u64,
    /// Partitions rewritten by automatic compaction after the pass.
    pub partitions_compacted: u64,
    /// The pass was stopped (a signal, a shutdown) before it had read every object: the
    /// commits above landed, and the next pass reads the rest.
    pub interrupted: bool,
    pub elapsed: Duration,
    /// The newest modification time (microseconds since the epoch) of the objects read:
    /// how far behind the source the lake is, once committed.
    pub newest_object_modified: Option<i64>,
}

impl IngestReport {
    /// Counts a parsed object, or a part of one (the object itself counts with its last).
    pub(crate) fn add_object(&mut self, parsed: &ParsedObject) {
        if parsed.through_record.is_none() {
            self.objects_read += 1;
            self.bytes_read += parsed.object.size;
        }
        self.newest_object_modified = self.newest_object_modified.max(Some(parsed.object.last_modified));
        for q in &parsed.quarantined {
            if matches!(q.rejection, Rejection::UnreadableObject(_)) {
                self.objects_unreadable += 1;
                continue;
            }
            self.records_read += 1;
            self.records_quarantined += 1;
            let reason = match q.rejection.field() {
                Some(field) => format!("{} ({field})", q.rejection.code()),
                None => q.rejection.code().to_string(),
            };
            *self.quarantined_by_reason.entry(reason).or_default() += 1;
        }
        self.records_read += parsed.valid_records();
        for (format, n) in &parsed.valid_by_format {
            *self.valid_by_format.entry(format.to_string()).or_default() += n;
        }
        for (field, n) in &parsed.unknown_fields {
            *self.unknown_fields.entry(field.clone()).or_default() += n;
        }
        // Columns of codes keep only code-shaped values ([`coerce::closed_token`]): how many
        // were not, by table and column.
        for (table, batches) in &parsed.rows {
            for batch in batches {
                for column in crate::model::CODE_COLUMNS {
                    let Some(values) = batch.column_by_name(column).and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>()) else {
                        continue;
                    };
                    let n = values.iter().filter(|v| *v == Some(coerce::OTHER_VALUE)).count() as u64;
                    if n > 0 {
                        *self.values_not_kept.entry(format!("{}.{column}", table.name())).or_default() += n;
                    }
                }
            }
        }
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "objects: {} listed, {} already ingested, {} read ({:.1} MB)",
            self.objects_listed,
            self.objects_skipped,
            self.objects_read,
            self.bytes_read as f64 / 1e6
        )?;
        if !self.entries_skipped.is_empty() {
            writeln!(f, "  skipped entries: {} (cannot be listed; fix or remove them)", self.entries_skipped.len())?;
            for entry in &self.entries_skipped {
                writeln!(f, "    {entry}")?;
            }
        }
        if self.objects_unreadable > 0 {
            writeln!(
                f,
                "  unreadable objects: {} (one quarantine row each, reason unreadable_object; their records are not counted)",
                self.objects_unreadable
            )?;
        }
        writeln!(
            f,
            "records: {} read, {} upserted, {} quarantined",
            self.records_read, self.records_upserted, self.records_quarantined
        )?;
        if self.valid_by_format.keys().any(|f| f != "flat_event") {
            for (format, n) in &self.valid_by_format {
                writeln!(f, "  valid {format}: {n}")?;
            }
        }
        for (reason, n) in &self.quarantined_by_reason {
            writeln!(f, "  quarantined {reason}: {n}")?;
        }
        if self.rows_committed.keys().any(|t| t != "fact_interactions") {
            for (table, n) in &self.rows_committed {
                writeln!(f, "  rows written to {table}: {n}")?;
            }
        }
        if !self.unknown_fields.is_empty() {
            writeln!(f, "unknown fields (ignored):")?;
            for (field, n) in &self.unknown_fields {
                writeln!(f, "  {field}: {n}")?;
            }
        }
        if !self.values_not_kept.is_empty() {
            writeln!(f, "values that are no code, stored as {}:", coerce::OTHER_VALUE)?;
            for (column, n) in &self.values_not_kept {
                writeln!(f, "  {column}: {n}")?;
            }
        }
        writeln!(
            f,
            "commits: {}, files scanned by upserts: {}, rewritten: {}, partitions compacted: {}",
            self.commits, self.files_scanned, self.files_rewritten, self.partitions_compacted
        )?;
        if self.interrupted {
            writeln!(
                f,
                "interrupted: no further object taken; the {} commit(s) above landed, records read after them were not committed, and the next pass reads the rest",
                self.commits
            )?;
        }
        write!(f, "time: {:.2} s", self.elapsed.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> SourceObject {
        SourceObject {
            path: "x.jsonl".into(),
            url: "memory://t/x.jsonl".into(),
            size: 1,
            e_tag: None,
            last_modified: 0,
        }
    }

    #[test]
    fn a_bad_record_is_quarantined_and_the_rest_lands() {
        let text = concat!(
            r#"{"event_id":"e1","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z"}"#, "\n",
            r#"{"event_id":"e2","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z","duration_seconds":"x","caller_number":"+15551234567"}"#, "\n",
            r#"{"event_id":"e3", "caller_number":"+15557654321""#, "\n",
            r#"{"event_id":"e4","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z"}"#, "\n",
        );
        let parsed = parse_object(object(), text.as_bytes(), &ParseOptions::default());
        let fact = &arrow::compute::concat_batches(&LakeTable::FactInteractions.schema(), &parsed.rows[&LakeTable::FactInteractions]).unwrap();
        let column = |name: &str| fact.column(fact.schema().index_of(name).unwrap()).clone();
        let ids: Vec<String> = column("event_id").as_any().downcast_ref::<arrow::array::StringArray>().unwrap().iter().map(|v| v.unwrap().to_string()).collect();
        let lines: Vec<i64> = column("source_line").as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().values().to_vec();
        assert_eq!((ids, lines), (vec!["e1".to_string(), "e4".to_string()], vec![1, 4]));
        assert_eq!(parsed.quarantined.len(), 2);
        assert_eq!(parsed.quarantined[0].line, 2);
        assert_eq!(parsed.quarantined[0].rejection.field(), Some("duration_seconds"));
        assert_eq!(parsed.quarantined[1].line, 3);
        for q in &parsed.quarantined {
            assert!(!q.record.contains("5551234") && !q.record.contains("5557654"), "{}", q.record);
        }
    }

    #[test]
    fn a_huge_bad_record_keeps_a_masked_prefix_its_length_and_its_hash() {
        let mut line = r#"{"event_id":"e1","caller_number":"+15551234567","note":""#.to_string();
        line.push_str(&"x".repeat(200_000));
        line.push_str("+15557654321\n");
        let parsed = parse_object(object(), line.as_bytes(), &ParseOptions::default());
        let record = &parsed.quarantined[0].record;
        // Unterminated, so read as a stream of objects: the record runs to the end.
        let raw = line.as_bytes();
        let digest: String = {
            use sha2::Digest;
            sha2::Sha256::digest(raw).iter().map(|b| format!("{b:02x}")).collect()
        };
        assert!(record.len() < 4300, "{}", record.len());
        let expected = format!("[cut: {} bytes in all, sha256 {digest}]", raw.len());
        assert!(record.ends_with(&expected), "{expected} vs {}", &record[record.len() - 120..]);
        assert!(record.starts_with(r#"{"event_id":"e1","caller_number":"+*******4567""#), "{record}");
        // The cut never leaves part of a number unmasked.
        let cut = format!("{}{}", "1".repeat(4090), "+15551234567");
        assert!(!masked_record_text(format!("{cut}{}", "y".repeat(70_000)).as_bytes()).contains("+1555"));
    }

    #[test]
    fn a_page_nested_too_deep_is_refused_as_invalid_json_and_a_flat_event_beside_it_lands() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let text = format!(
            "{}\n{}\n",
            format_args!(r#"{{"conversations":[{{"conversationId":"c1","conversationStart":"2024-03-04T09:00:00Z","x":{deep}}}]}}"#),
            format_args!(r#"{{"event_id":"e1","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z","entities":{deep}}}"#),
        );
        let parsed = parse_object(object(), text.as_bytes(), &ParseOptions::default());
        assert_eq!(parsed.quarantined.len(), 1);
        let refused = &parsed.quarantined[0];
        assert_eq!((refused.line, refused.rejection.code()), (1, "invalid_json"));
        assert!(refused.rejection.to_string().contains("recursion limit exceeded at line 1"), "{}", refused.rejection);
        // A flat event with a tree format's key and a deep field is kept: it has decoded.
        assert_eq!(parsed.rows[&LakeTable::FactInteractions].iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }

    #[test]
    fn corrupt_gzip_is_one_quarantined_record() {
        let parsed = parse_object(object(), &[0x1f, 0x8b, 0, 1, 2, 3], &ParseOptions::default());
        assert_eq!(parsed.quarantined.len(), 1);
        assert_eq!(parsed.quarantined[0].rejection.code(), "unreadable_object");
    }
}
