//! Writing generated exports: time formats, NDJSON and gzip, and the files of each delivery window.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::mpsc;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};


/// How flat events are written: the generator's compact records, or records shaped like the
/// design card's own example event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FlatStyle {
    /// Compact JSON, UUID interaction ids, `agent-NNN` agents, recordings on voice calls;
    /// NDJSON, JSON arrays and gzip in turn.
    #[default]
    Compact,
    /// As the seed's example: `agent_id` is `user:agentNNN@company.com` (the masker's e-mail
    /// path on every record), `metadata` holds `source_ip` and `campaign_id`, every answered
    /// contact has a `recording_url` (about half the events), a space after every `:` and
    /// `,`, numeric interaction ids, NDJSON with a fifth of the objects gzipped.
    Seed,
}

pub(super) fn iso(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The generator's own reading of the times it wrote (chrono, not the ingest's parser: the
/// generator is the tests' oracle).
pub(super) fn rfc3339_micros(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_micros())
}

pub(super) fn date_of(micros: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .date_naive()
}

pub(super) const HOUR: i64 = 3_600_000_000;
pub(super) const DAY: i64 = 24 * HOUR;


pub(super) fn ndjson(events: &[Map<String, Value>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(Value::Object(e.clone()).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

pub(super) fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes)?;
    enc.finish()
}

/// One 4-hour window's export file, written as its events are generated: NDJSON, a JSON
/// array or gzipped NDJSON, and with faults some windows a second time (a re-delivery).
pub(super) struct WindowFile {
    path: PathBuf,
    delivered_at: i64,
    framing: WindowFraming,
    events: usize,
    redelivery: Option<(PathBuf, i64, BufWriter<File>)>,
}

pub(super) enum WindowFraming {
    Ndjson(BufWriter<File>),
    Array(BufWriter<File>),
    Gzip(Box<flate2::write::GzEncoder<BufWriter<File>>>),
}

pub(super) fn create(path: &Path) -> std::io::Result<BufWriter<File>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(BufWriter::with_capacity(1 << 20, File::create(path)?))
}

/// Stamps a written file with its delivery time; returns its size.
pub(super) fn delivered(path: &Path, at: i64) -> std::io::Result<u64> {
    let file = File::options().write(true).open(path)?;
    file.set_modified(UNIX_EPOCH + Duration::from_micros(at.max(0) as u64))?;
    Ok(file.metadata()?.len())
}

/// One record as the style writes it: compact with sorted keys, or as the seed's example
/// (its key order, a space after every `:` and `,`).
pub(super) fn record_text(record: &Value, style: FlatStyle) -> String {
    match style {
        FlatStyle::Compact => record.to_string(),
        FlatStyle::Seed => {
            let mut out = String::with_capacity(512);
            spaced(record, &mut out);
            out
        }
    }
}

/// The seed example's key order; keys it does not list follow in their own order.
const SEED_KEY_ORDER: &[&str] = &[
    "event_id", "timestamp", "interaction_id", "type", "direction", "state", "duration_seconds",
    "queue_name", "agent_id", "caller_number_masked", "recording_url", "metadata", "source_ip",
    "campaign_id",
];

fn spaced(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let rank = |key: &str| SEED_KEY_ORDER.iter().position(|k| *k == key).unwrap_or(SEED_KEY_ORDER.len());
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| rank(key));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                spaced(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                spaced(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

impl WindowFile {
    pub(super) fn open(out: &Path, first_day: i64, w: usize, redeliver: bool, style: FlatStyle) -> std::io::Result<Self> {
        let window_start = first_day + w as i64 * 4 * HOUR;
        let stamp = DateTime::<Utc>::from_timestamp_micros(window_start).unwrap_or_default();
        let base = format!("{}/interactions-{}", stamp.format("%Y-%m-%d"), stamp.format("%Y%m%dT%H"));
        let delivered_at = window_start + 4 * HOUR + 5 * 60_000_000;
        let (name, framing) = match (style, w % 6, w % 5) {
            (FlatStyle::Seed, _, 4) => (format!("{base}.jsonl.gz"), 5),
            (FlatStyle::Seed, _, _) => (format!("{base}.jsonl"), 0),
            (FlatStyle::Compact, 4, _) => (format!("{base}.json"), 4),
            (FlatStyle::Compact, 5, _) => (format!("{base}.jsonl.gz"), 5),
            (FlatStyle::Compact, _, _) => (format!("{base}.jsonl"), 0),
        };
        let path = out.join(name);
        let file = create(&path)?;
        let framing = match framing {
            4 => WindowFraming::Array(file),
            5 => WindowFraming::Gzip(Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))),
            _ => WindowFraming::Ndjson(file),
        };
        // A re-delivery of the same window, a day later: must change nothing.
        let redelivery = if redeliver && w % 6 == 2 {
            let path = out.join(format!("redeliveries/{}.jsonl", stamp.format("%Y%m%dT%H")));
            let file = create(&path)?;
            Some((path, delivered_at + DAY, file))
        } else {
            None
        };
        Ok(Self { path, delivered_at, framing, events: 0, redelivery })
    }

    pub(super) fn push(&mut self, line: &str) -> std::io::Result<()> {
        match &mut self.framing {
            WindowFraming::Ndjson(f) => writeln!(f, "{line}")?,
            WindowFraming::Gzip(f) => writeln!(f, "{line}")?,
            WindowFraming::Array(f) => {
                f.write_all(if self.events == 0 { b"[" } else { b"," })?;
                f.write_all(line.as_bytes())?;
            }
        }
        if let Some((_, _, f)) = &mut self.redelivery {
            writeln!(f, "{line}")?;
        }
        self.events += 1;
        Ok(())
    }

    /// Closes the files; returns (files, bytes, re-delivered records).
    pub(super) fn finish(self) -> std::io::Result<(usize, u64, usize)> {
        match self.framing {
            WindowFraming::Ndjson(f) => f.into_inner().map_err(|e| e.into_error())?.sync_data()?,
            WindowFraming::Gzip(f) => f.finish()?.into_inner().map_err(|e| e.into_error())?.sync_data()?,
            WindowFraming::Array(mut f) => {
                f.write_all(b"]")?;
                f.into_inner().map_err(|e| e.into_error())?.sync_data()?;
            }
        }
        let mut bytes = delivered(&self.path, self.delivered_at)?;
        let mut files = 1;
        let mut redelivered = 0;
        if let Some((path, at, f)) = self.redelivery {
            f.into_inner().map_err(|e| e.into_error())?.sync_data()?;
            bytes += delivered(&path, at)?;
            files += 1;
            redelivered = self.events;
        }
        Ok((files, bytes, redelivered))
    }
}

/// What the generating thread hands the writing one.
pub(super) enum ToWrite {
    /// Serialized events, each with its window.
    Events(Vec<(usize, String)>),
    /// Every window before this one is complete.
    CloseBefore(usize),
}

/// Writes the windows' files as events arrive; returns (files, bytes, re-delivered records).
pub(super) fn write_windows(out: &Path, first_day: i64, windows: usize, redeliver: bool, style: FlatStyle, rx: mpsc::Receiver<ToWrite>) -> std::io::Result<(usize, u64, usize)> {
    let mut open: BTreeMap<usize, WindowFile> = BTreeMap::new();
    let mut totals = (0, 0, 0);
    let close = |file: WindowFile, totals: &mut (usize, u64, usize)| -> std::io::Result<()> {
        let (files, bytes, redelivered) = file.finish()?;
        totals.0 += files;
        totals.1 += bytes;
        totals.2 += redelivered;
        Ok(())
    };
    for message in rx {
        match message {
            ToWrite::Events(events) => {
                for (w, line) in events {
                    let file = match open.entry(w.min(windows)) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => e.insert(WindowFile::open(out, first_day, w.min(windows), redeliver, style)?),
                    };
                    file.push(&line)?;
                }
            }
            ToWrite::CloseBefore(w) => {
                let later = open.split_off(&w);
                for (_, file) in std::mem::replace(&mut open, later) {
                    close(file, &mut totals)?;
                }
            }
        }
    }
    for (_, file) in open {
        close(file, &mut totals)?;
    }
    Ok(totals)
}
