//! Synthetic exports in the flat event shape, for the demo, the tests and the benches.
//!
//! Interactions (voice, chat, email; inbound and outbound) are spread over `days` with a
//! business-hours peak; each has a `started` event and a `completed` or `abandoned` one, some
//! straddling midnight. Events go to 4-hour export files (NDJSON, JSON arrays, gzip) whose
//! last-modified time is when the window's export would have been delivered.
//!
//! With faults, the exports also hold re-deliveries, corrections (some moving an event to
//! another date or queue), a late file of old events, drifted types, unknown fields, malformed
//! records, unmasked phone numbers, and files whose extension lies. `_manifest.json` (skipped
//! by ingest, like every `_` file) says what a correct lake holds: the number of distinct
//! valid events, the final values of corrected events, and the quarantine count by reason.
//!
//! Generation streams: memory stays flat whatever `--interactions` (one thread generates,
//! another writes).

use files::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

mod files;
pub use files::FlatStyle;
pub mod genesys;
mod genesys_center;
mod genesys_manifest;

/// Queue names with the characters that break naive partition paths.
pub const QUEUES: &[&str] = &[
    "Billing",
    "Sales / Renewals",
    "Support=Tier 2",
    "Retention & Loyalty",
    "Atención al Cliente",
    "Réclamations",
    "Tech Support",
    "VIP Line",
    "Collections 50%",
    "Onboarding",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub interactions: usize,
    pub days: u32,
    pub seed: u64,
    pub faults: bool,
    /// First day of the exports (UTC).
    pub start: NaiveDate,
    /// How the records and files are written.
    pub style: FlatStyle,
}


impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            interactions: 5000,
            days: 3,
            seed: 1,
            faults: false,
            start: NaiveDate::from_ymd_opt(2024, 3, 4).unwrap_or_default(),
            style: FlatStyle::Compact,
        }
    }
}

/// The expected final values of a corrected event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub event_id: String,
    pub queue_name: String,
    pub event_date: String,
    pub duration_seconds: i64,
}

/// What was generated, and what a correct lake made from it holds (`_manifest.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: usize,
    pub bytes: u64,
    /// Event records written in readable objects, counting every delivery (what `ingest`
    /// reports as records read).
    pub records: usize,
    /// Objects written unreadable on purpose (a truncated gzip): `ingest` quarantines each
    /// as one row and counts none of its records.
    #[serde(default)]
    pub unreadable_objects: usize,
    /// Distinct `event_id`s among valid records: rows `fact_interactions` must hold.
    pub distinct_valid_events: usize,
    pub corrections: Vec<Correction>,
    /// Quarantined records by reason code.
    pub quarantined: BTreeMap<String, usize>,
    /// Some of the unmasked numbers written: none may appear in the lake.
    pub unmasked_numbers: Vec<String>,
    /// Distinct event ids with a recording URL in their final delivery.
    pub recordings: usize,
}

impl Manifest {
    /// One line saying what was written, in the terms `ingest` reports.
    pub fn summary(&self, folder: &Path) -> String {
        let mut line = format!(
            "wrote {} files ({:.1} MB, {} records) to {}",
            self.files,
            self.bytes as f64 / 1e6,
            self.records,
            folder.display()
        );
        if self.unreadable_objects > 0 {
            line.push_str(&format!(
                "; {} of the files is unreadable on purpose (a truncated gzip: quarantined whole, its records not counted)",
                self.unreadable_objects
            ));
        }
        line
    }
}

struct Generator {
    rng: StdRng,
    out: PathBuf,
    faults: bool,
    style: FlatStyle,
    /// Numeric interaction ids handed out so far (seed style).
    interactions: u64,
    manifest: Manifest,
    /// Valid events with an id of their own (each generated event gets a fresh random UUID,
    /// so counting them counts distinct ids; re-deliveries and corrections reuse ids and are
    /// not counted), and those of them with a recording.
    valid_events: usize,
    recordings: usize,
}

/// One interaction's two events, before they are written.
struct Interaction {
    started: Map<String, Value>,
    ended: Map<String, Value>,
}

impl Generator {
    fn uuid(&mut self) -> String {
        let a: u128 = self.rng.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 96) as u32,
            (a >> 80) as u16,
            (a >> 68) as u16 & 0xfff,
            (a >> 56) as u16 & 0xfff,
            a as u64 & 0xffff_ffff_ffff
        )
    }

    fn phone(&mut self) -> String {
        format!("+1555{:07}", self.rng.random_range(0..10_000_000))
    }

    fn interaction(&mut self, day_start: i64) -> Interaction {
        let peak = self.rng.random_bool(0.7);
        let offset = if peak {
            8 * HOUR + self.rng.random_range(0..12 * HOUR)
        } else {
            self.rng.random_range(0..DAY)
        };
        let start = day_start + offset;
        let kind = ["voice", "voice", "voice", "chat", "email"][self.rng.random_range(0..5)];
        let direction = if self.rng.random_bool(0.8) { "inbound" } else { "outbound" };
        let queue = QUEUES[self.rng.random_range(0..QUEUES.len())];
        let seed_style = self.style == FlatStyle::Seed;
        let agent_number = self.rng.random_range(1..=60);
        let agent = if seed_style {
            format!("user:agent{agent_number:03}@company.com")
        } else {
            format!("agent-{agent_number:03}")
        };
        let interaction_id = if seed_style {
            // Ten digits, as the seed's `1234567890`; distinct by construction.
            self.interactions += 1;
            (1_000_000_000 + self.interactions * 7_919).to_string()
        } else {
            self.uuid()
        };
        // A center that mostly meets its targets: a few percent of inbound contacts abandon
        // (within a minute or two), calls last minutes.
        let abandoned = direction == "inbound" && self.rng.random_bool(0.05);
        let duration: i64 = if abandoned {
            self.rng.random_range(5..120)
        } else {
            match kind {
                "voice" => self.rng.random_range(120..600),
                "chat" => self.rng.random_range(180..1200),
                _ => self.rng.random_range(300..2400),
            }
        };
        let number = self.phone();
        // As exporters mask it (`+*******4567`); written here, not by cclake's masking.
        let masked = format!("+{}{}", "*".repeat(number.len() - 5), &number[number.len() - 4..]);
        let mut metadata = Map::new();
        metadata.insert(
            "source_ip".into(),
            json!(format!("10.{}.{}.{}", self.rng.random_range(0..255), self.rng.random_range(0..255), self.rng.random_range(1..255))),
        );
        if direction == "outbound" || seed_style {
            metadata.insert("campaign_id".into(), json!(format!("cmp-{:02}", self.rng.random_range(1..20))));
        }
        let base = |event_id: String, ts: i64, state: &str| {
            let mut m = Map::new();
            m.insert("event_id".into(), json!(event_id));
            m.insert("timestamp".into(), json!(iso(ts)));
            m.insert("interaction_id".into(), json!(interaction_id));
            m.insert("type".into(), json!(kind));
            m.insert("direction".into(), json!(direction));
            m.insert("state".into(), json!(state));
            m.insert("queue_name".into(), json!(queue));
            m.insert("caller_number_masked".into(), json!(masked));
            m.insert("metadata".into(), Value::Object(metadata.clone()));
            m
        };
        let mut started = base(self.uuid(), start, "started");
        started.insert("duration_seconds".into(), json!(0));
        let end_state = if abandoned { "abandoned" } else { "completed" };
        let mut ended = base(self.uuid(), start + duration * 1_000_000, end_state);
        ended.insert("duration_seconds".into(), json!(duration));
        if !abandoned {
            ended.insert("agent_id".into(), json!(agent));
            if kind == "voice" || seed_style {
                ended.insert(
                    "recording_url".into(),
                    json!(format!("https://recordings.example.com/{interaction_id}.wav")),
                );
            }
        }
        if self.faults {
            self.drift(&mut ended, number);
        }
        Interaction { started, ended }
    }

    /// Drifted types, unknown fields and unmasked numbers, as real exports have them.
    fn drift(&mut self, event: &mut Map<String, Value>, number: String) {
        let roll: f64 = self.rng.random();
        if roll < 0.02 {
            let d = event["duration_seconds"].as_i64().unwrap_or(0);
            event.insert("duration_seconds".into(), json!(d.to_string()));
        } else if roll < 0.04 {
            let d = event["duration_seconds"].as_i64().unwrap_or(0);
            event.insert("duration_seconds".into(), json!(d as f64));
        } else if roll < 0.06 {
            // Same instant, written with a +02:00 offset.
            let ts = event["timestamp"].as_str().and_then(rfc3339_micros);
            if let (Some(ts), Some(offset)) = (ts, chrono::FixedOffset::east_opt(2 * 3600)) {
                let local = DateTime::<Utc>::from_timestamp_micros(ts).unwrap_or_default();
                event.insert("timestamp".into(), json!(local.with_timezone(&offset).to_rfc3339()));
            }
        } else if roll < 0.08 {
            let t = event["type"].as_str().unwrap_or("voice").to_uppercase();
            event.insert("type".into(), json!(t));
        } else if roll < 0.10 {
            event.insert("sentiment_score".into(), json!(0.4));
            if let Some(Value::Object(meta)) = event.get_mut("metadata") {
                meta.insert("dialer".into(), json!("predictive"));
            }
        } else if roll < 0.12 {
            event.insert("caller_number_masked".into(), json!(number.clone()));
            self.remember_number(number);
        } else if roll < 0.14 {
            event.insert("caller_number".into(), json!(number.clone()));
            event.insert("ani".into(), json!(format!("tel:{number}")));
            self.remember_number(number);
        }
    }

    fn remember_number(&mut self, number: String) {
        if self.manifest.unmasked_numbers.len() < 50 {
            self.manifest.unmasked_numbers.push(number);
        }
    }

    /// Counts a freshly generated valid event.
    fn valid(&mut self, event: &Map<String, Value>) {
        if event.get("recording_url").is_some() {
            self.recordings += 1;
        }
        self.valid_events += 1;
        self.manifest.records += 1;
    }

    fn write(&mut self, name: &str, contents: &[u8], delivered_at: i64) -> std::io::Result<()> {
        let path = self.out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&path)?;
        file.write_all(contents)?;
        file.set_modified(UNIX_EPOCH + Duration::from_micros(delivered_at.max(0) as u64))?;
        self.manifest.files += 1;
        self.manifest.bytes += contents.len() as u64;
        Ok(())
    }
}

/// Events handed to the writing thread at a time.
const CHUNK_EVENTS: usize = 20_000;

/// Writes exports under the local folder `out` and returns the manifest (also written as
/// `out/_manifest.json`). Streams: events are written to their window's file as they are
/// generated (by a second thread), and a window's file is closed once no later interaction
/// can reach it, so memory stays flat whatever the size.
pub fn generate(out: &Path, options: &GenerateOptions) -> std::io::Result<Manifest> {
    let mut g = Generator {
        rng: StdRng::seed_from_u64(options.seed),
        out: out.to_path_buf(),
        faults: options.faults,
        style: options.style,
        interactions: 0,
        manifest: Manifest::default(),
        valid_events: 0,
        recordings: 0,
    };
    let first_day = options.start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros();
    let days = options.days.max(1) as i64;
    // Four-hour export windows; an event belongs to the window of its time.
    let windows = (days * 6) as usize;
    // Completed events that faults correct later: about 60, spread over the whole run.
    let mut completed: Vec<Map<String, Value>> = Vec::new();
    let correct_every = (options.interactions / 60).max(1);
    let (tx, rx) = mpsc::sync_channel::<ToWrite>(4);
    let redeliver = g.faults;
    let style = g.style;
    let written = std::thread::scope(|scope| -> std::io::Result<(usize, u64, usize)> {
        let writer = scope.spawn(move || write_windows(out, first_day, windows, redeliver, style, rx));
        let mut chunk = Vec::with_capacity(CHUNK_EVENTS);
        let mut current_day = 0;
        let send = |message: ToWrite| tx.send(message).map_err(|_| std::io::Error::other("the writing thread stopped"));
        for i in 0..options.interactions {
            let day = (i as i64 * days) / options.interactions.max(1) as i64;
            if day != current_day {
                // Interactions of this day start on it: earlier windows are complete.
                send(ToWrite::Events(std::mem::take(&mut chunk)))?;
                send(ToWrite::CloseBefore(day as usize * 6))?;
                current_day = day;
            }
            let it = g.interaction(first_day + day * DAY);
            for event in [it.started, it.ended] {
                // chrono's own parser, not the ingest's: the generator is the tests' oracle.
                let ts = event["timestamp"].as_str().and_then(rfc3339_micros).unwrap_or(first_day);
                let w = (((ts - first_day) / (4 * HOUR)).max(0) as usize).min(windows);
                if g.faults && event["state"] == "completed" && i % correct_every == 0 && completed.len() < 60 {
                    completed.push(event.clone());
                }
                g.valid(&event);
                chunk.push((w, record_text(&Value::Object(event), style)));
            }
            if chunk.len() >= CHUNK_EVENTS {
                send(ToWrite::Events(std::mem::take(&mut chunk)))?;
            }
        }
        send(ToWrite::Events(chunk))?;
        drop(tx);
        writer.join().map_err(|_| std::io::Error::other("the writing thread panicked"))?
    })?;
    let (files, bytes, redelivered) = written;
    g.manifest.files += files;
    g.manifest.bytes += bytes;
    g.manifest.records += redelivered;
    let last_delivery = first_day + (days + 2) * DAY;
    if g.faults {
        write_faults(&mut g, &completed, first_day, last_delivery)?;
    }
    g.manifest.distinct_valid_events = g.valid_events;
    g.manifest.recordings = g.recordings;
    let manifest = serde_json::to_vec_pretty(&g.manifest).map_err(std::io::Error::other)?;
    std::fs::write(out.join("_manifest.json"), manifest)?;
    Ok(g.manifest)
}

/// The faulty deliveries a real bucket holds, each a few lines with the manifest entry it
/// changes.
/// Long: a list of independent cases, read one after another.
fn write_faults(
    g: &mut Generator,
    completed: &[Map<String, Value>],
    first_day: i64,
    last_delivery: i64,
) -> std::io::Result<()> {
    // Corrections: a later delivery of the same event_id with changed values.
    let mut corrections = Vec::new();
    for (i, original) in completed.iter().enumerate() {
        let mut e = original.clone();
        let ts = e["timestamp"].as_str().and_then(rfc3339_micros).unwrap_or(first_day);
        let duration = match &e["duration_seconds"] {
            Value::String(s) => s.parse::<f64>().unwrap_or(0.0) as i64,
            v => v.as_f64().unwrap_or(0.0) as i64,
        } + 17;
        e.insert("duration_seconds".into(), json!(duration));
        let mut final_ts = ts;
        match i % 3 {
            // Moves to another queue partition.
            1 => {
                let q = e["queue_name"].as_str().unwrap_or_default();
                let other = QUEUES.iter().find(|x| **x != q).copied().unwrap_or("Billing");
                e.insert("queue_name".into(), json!(other));
            }
            // Moves across midnight to the next date partition.
            2 => {
                final_ts = (ts.div_euclid(DAY) + 1) * DAY + 30_000_000;
                e.insert("timestamp".into(), json!(iso(final_ts)));
            }
            _ => {}
        }
        g.manifest.corrections.push(Correction {
            event_id: e["event_id"].as_str().unwrap_or_default().to_string(),
            queue_name: e["queue_name"].as_str().unwrap_or_default().to_string(),
            event_date: date_of(final_ts).to_string(),
            duration_seconds: duration,
        });
        g.manifest.records += 1;
        corrections.push(e);
    }
    // Two files: the later one wins; the earlier holds a stale version of the same ids.
    let mut stale = corrections.clone();
    for e in &mut stale {
        e.insert("duration_seconds".into(), json!(1));
    }
    g.manifest.records += stale.len();
    g.write("corrections/stale.jsonl", &ndjson(&stale), last_delivery - HOUR)?;
    g.write("corrections/final.jsonl", &ndjson(&corrections), last_delivery)?;

    // A late file: new events of the first day, delivered last.
    let mut late = Vec::new();
    for _ in 0..20 {
        let it = g.interaction(first_day);
        for e in [it.started, it.ended] {
            g.valid(&e);
            late.push(e);
        }
    }
    g.write("late/first-day.jsonl", &ndjson(&late), last_delivery + HOUR)?;

    // Malformed records among good ones, in each framing.
    let good = |g: &mut Generator| {
        let it = g.interaction(first_day + DAY / 2);
        g.valid(&it.started);
        Value::Object(it.started).to_string()
    };
    let bad: Vec<(&str, String)> = vec![
        ("invalid_json", r#"{"event_id":"bad-1","interaction_id":"i","timestamp":"2024-03-04T10:00:00Z","caller_number":"+15559990001""#.to_string()),
        ("invalid_json", "this is not json, call +1 555 999 0002".to_string()),
        ("not_an_object", r#"["event_id","bad-3"]"#.to_string()),
        ("missing_field", r#"{"interaction_id":"i","timestamp":"2024-03-04T10:00:00Z"}"#.to_string()),
        ("missing_field", r#"{"event_id":"bad-5","interaction_id":"i"}"#.to_string()),
        ("missing_field", r#"{"event_id":"bad-6","timestamp":"2024-03-04T10:00:00Z"}"#.to_string()),
        ("invalid_timestamp", r#"{"event_id":"bad-7","interaction_id":"i","timestamp":"2024-02-30T25:61:00Z"}"#.to_string()),
        ("duration_negative", r#"{"event_id":"bad-8","interaction_id":"i","timestamp":"2024-03-04T10:00:00Z","duration_seconds":-5}"#.to_string()),
        ("duration_not_integer", r#"{"event_id":"bad-9","interaction_id":"i","timestamp":"2024-03-04T10:00:00Z","duration_seconds":12.5,"recording_url":"https://rec.example.com/x.wav","metadata":{"source_ip":"172.16.0.9"}}"#.to_string()),
        ("duration_not_integer", r#"{"event_id":"bad-10","interaction_id":"i","timestamp":"2024-03-04T10:00:00Z","duration_seconds":"long"}"#.to_string()),
    ];
    let mut lines = Vec::new();
    for (reason, text) in &bad {
        lines.push(good(g));
        lines.push(text.clone());
        *g.manifest.quarantined.entry(reason.to_string()).or_default() += 1;
        g.manifest.records += 1;
    }
    lines.push(good(g));
    g.write("broken/mixed.jsonl", (lines.join("\n") + "\n").as_bytes(), last_delivery)?;
    let array = format!("[\n{},\n{},\n\"just a string\",\n{}\n]\n", good(g), bad[7].1, good(g));
    *g.manifest.quarantined.entry("not_an_object".into()).or_default() += 1;
    *g.manifest.quarantined.entry("duration_negative".into()).or_default() += 1;
    g.manifest.records += 2;
    g.write("broken/array.json", array.as_bytes(), last_delivery)?;
    // A gzip object cut in half: its records are not counted as valid.
    let lost = g.interaction(first_day);
    let truncated = gzip(Value::Object(lost.started).to_string().as_bytes())?;
    *g.manifest.quarantined.entry("unreadable_object".into()).or_default() += 1;
    g.manifest.unreadable_objects += 1;
    g.write("broken/corrupt.jsonl.gz", &truncated[..truncated.len() / 2], last_delivery)?;

    // Extensions that lie: gzipped NDJSON called .json, pretty-printed objects called .jsonl.
    let (a, b) = (good(g), good(g));
    g.write("misc/really-gzip.json", &gzip(format!("{a}\n{b}\n").as_bytes())?, last_delivery)?;
    let pretty: Vec<String> = [good(g), good(g)]
        .iter()
        .filter_map(|s| serde_json::from_str::<Value>(s).ok())
        .filter_map(|v| serde_json::to_string_pretty(&v).ok())
        .collect();
    g.write("misc/pretty.jsonl", pretty.join("\n").as_bytes(), last_delivery)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_exports() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let opts = GenerateOptions { interactions: 200, days: 2, faults: true, ..Default::default() };
        let ma = generate(a.path(), &opts).unwrap();
        let mb = generate(b.path(), &opts).unwrap();
        assert_eq!(ma, mb);
        assert!(!ma.corrections.is_empty() && ma.corrections.len() <= 60, "{}", ma.corrections.len());
        assert_eq!(ma.unreadable_objects, 1);
        assert!(ma.distinct_valid_events >= 400);
        assert_eq!(ma.quarantined.values().sum::<usize>(), 13);
    }
}
