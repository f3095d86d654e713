//! The generated contact center's fixed parts: its queues (with their service-level
//! targets), agents and wrap-up codes, the exports that list them, and the files the
//! generator writes with their delivery times.

use std::path::Path;

use chrono::{DateTime, Utc};

use serde_json::{json, Value};

use super::files::iso;

pub(super) const SECOND: i64 = 1_000_000;
pub(super) const MINUTE: i64 = 60 * SECOND;
pub(super) const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;

/// A queue of the generated contact center.
pub(super) struct Queue {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    /// Service-level targets for voice, chat and e-mail (ms); none: the media's default
    /// ([`default_target_ms`]) applies.
    pub(super) voice_target_ms: Option<i64>,
    pub(super) chat_target_ms: Option<i64>,
    pub(super) email_target_ms: Option<i64>,
    /// Whether the queues export lists it; else its name comes from the acd participant.
    pub(super) exported: bool,
}

pub(super) const fn queue(id: &'static str, name: &'static str, targets: [Option<i64>; 3], exported: bool) -> Queue {
    Queue { id, name, voice_target_ms: targets[0], chat_target_ms: targets[1], email_target_ms: targets[2], exported }
}

pub(super) const QUEUES: &[Queue] = &[
    queue("q-billing", "Billing", [None, None, None], true),
    queue("q-sales", "Sales / Renewals", [Some(30_000), Some(60_000), Some(4 * 3_600_000)], true),
    queue("q-support", "Support=Tier 2", [Some(15_000), Some(45_000), None], true),
    queue("q-atencion", "Atención al Cliente", [Some(20_000), Some(60_000), Some(8 * 3_600_000)], true),
    queue("q-retention", "Retention & Loyalty", [None, None, None], false),
];

/// The service-level target of a media when the queue's configuration gives none, as README
/// documents them (written out here again, not taken from cclake's views): 20 s for voice
/// and callbacks, 30 s for chat, 1 hour for messages, 24 hours for e-mail.
pub(super) fn default_target_ms(media: &str) -> i64 {
    match media {
        "chat" => 30_000,
        "message" => 3_600_000,
        "email" => 86_400_000,
        _ => 20_000,
    }
}
pub(super) const AGENTS: usize = 24;
pub(super) const WRAPUP_CODES: &[(&str, &str)] = &[("w-resolved", "Resolved"), ("w-callback", "Callback promised"), ("w-sale", "Sale")];


/// Queue, user and wrap-up code exports, delivered before the first day.
pub(super) fn write_dimensions(files: &mut Files<'_>, dims: i64) -> std::io::Result<()> {
    let queues: Vec<Value> = QUEUES
        .iter()
        .filter(|q| q.exported)
        .map(|Queue { id, name, voice_target_ms: voice, chat_target_ms: chat, email_target_ms: email, .. }| {
            let mut media = json!({"call": {"serviceLevel": {"percentage": 0.8}}, "chat": {"serviceLevel": {"percentage": 0.8}},
                "email": {"serviceLevel": {"percentage": 0.8}}});
            for (settings, target) in [("call", voice), ("chat", chat), ("email", email)] {
                if let Some(target) = target {
                    media[settings]["serviceLevel"]["durationMs"] = json!(target);
                }
            }
            json!({"id": id, "name": name, "division": {"id": "d0000000-0000-4000-8000-000000000001"}, "mediaSettings": media})
        })
        .collect();
    let page = |entities: Vec<Value>, uri: &str| json!({"entities": entities, "pageSize": 100, "pageNumber": 1, "selfUri": uri});
    files.write("dimensions/queues.json", page(queues, "/api/v2/routing/queues?pageSize=100&pageNumber=1").to_string().as_bytes(), dims)?;
    let users: Vec<Value> = (0..AGENTS - 2)
        .map(|i| json!({"id": format!("u-{i:04}"), "name": format!("Agent {i:02}"), "email": format!("agent{i:02}@acme.example"), "state": "active"}))
        .collect();
    files.write("dimensions/users.json", page(users, "/api/v2/users?pageSize=100&pageNumber=1").to_string().as_bytes(), dims)?;
    let codes: Vec<Value> = WRAPUP_CODES.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
    files.write("dimensions/wrapupcodes.json", page(codes, "/api/v2/routing/wrapupcodes?pageSize=100").to_string().as_bytes(), dims)
}

pub(super) struct Files<'a> {
    pub(super) out: &'a Path,
    pub(super) files: usize,
    pub(super) bytes: u64,
}

impl Files<'_> {
    pub(super) fn write(&mut self, name: &str, contents: &[u8], delivered_at: i64) -> std::io::Result<()> {
        let path = self.out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        let file = std::fs::File::options().write(true).open(&path)?;
        file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_micros(delivered_at.max(0) as u64))?;
        self.files += 1;
        self.bytes += contents.len() as u64;
        Ok(())
    }
}

pub(super) fn day_of(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default().format("%Y-%m-%d").to_string()
}

pub(super) fn segment(kind: &str, start: i64, end: i64, queue: Option<&str>, extra: Value) -> Value {
    let mut g = json!({"segmentType": kind, "segmentStart": iso(start), "segmentEnd": iso(end)});
    if let Some(q) = queue {
        g["queueId"] = json!(q);
    }
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            g[k] = v;
        }
    }
    g
}
