//! Synthetic Genesys Cloud exports (GENESYS.md §2, §3): conversation-detail pages (details
//! query pages, async job pages, gzipped NDJSON), EventBridge events, and queue, user and
//! wrap-up code exports, with a manifest of the KPIs Genesys would report.
//!
//! Conversations go IVR → queue → agent: answered (some after a missed alert whose agent
//! still gets a forced wrap-up, some transferred to a second queue), abandoned, or flowed out
//! to voicemail; with holds and after-call work. Some are exported first while active and
//! again after wrap-up (the later export must replace the first); some are known only from
//! EventBridge events (still live). EventBridge re-delivers a few envelopes.
//!
//! The manifest is worked out from the generator's own model of each conversation (integer
//! milliseconds, its own day arithmetic), never with cclake's parsing or views: it is the
//! independent answer the tests compare `queue_daily_metrics` with.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::files::{gzip, iso};
use super::genesys_center::*;
pub use super::genesys_manifest::{GenesysManifest, QueueDay};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenesysOptions {
    pub conversations: usize,
    /// Write details exports (and the queue, user and wrap-up code exports).
    pub details: bool,
    /// Write EventBridge events.
    pub eventbridge: bool,
    pub days: u32,
    pub seed: u64,
    pub start: NaiveDate,
}

impl Default for GenesysOptions {
    fn default() -> Self {
        Self { conversations: 2000, details: true, eventbridge: true, days: 3, seed: 1, start: NaiveDate::from_ymd_opt(2024, 3, 4).unwrap_or_default() }
    }
}


/// One metric of one session, in the generator's model.
struct Metric {
    name: &'static str,
    value: i64,
    at: i64,
}

/// One session of the model, with what it adds to the KPIs.
struct Session {
    participant: &'static str,
    user: Option<String>,
    queue: Option<usize>,
    media: &'static str,
    start: i64,
    end: i64,
    segments: Vec<Value>,
    metrics: Vec<Metric>,
    flow: Option<Value>,
}

struct Conversation {
    id: String,
    start: i64,
    end: i64,
    caller: String,
    sessions: Vec<Session>,
    queue_name_of: Vec<&'static str>,
}

impl Conversation {
    /// The detail record as a details export would show it at `as_of` (the whole record
    /// after the conversation ended): metrics emitted later and segments started later are
    /// not there yet, nor is the end.
    fn record(&self, as_of: i64) -> Value {
        let mut participants: Vec<Value> = Vec::new();
        for (i, s) in self.sessions.iter().enumerate() {
            if s.start > as_of {
                continue;
            }
            let metrics: Vec<Value> = s
                .metrics
                .iter()
                .filter(|m| m.at <= as_of)
                .map(|m| json!({"name": m.name, "value": m.value, "emitDate": iso(m.at)}))
                .collect();
            let cut = (as_of < i64::MAX).then(|| iso(as_of));
            let segments: Vec<Value> = s
                .segments
                .iter()
                .filter(|g| cut.as_deref().is_none_or(|cut| g["segmentStart"].as_str().is_some_and(|t| t <= cut)))
                .cloned()
                .map(|mut g| {
                    // A segment still running at the export has no end yet.
                    if cut.as_deref().is_some_and(|cut| g["segmentEnd"].as_str().is_some_and(|t| t > cut)) {
                        g.as_object_mut().map(|o| o.remove("segmentEnd"));
                    }
                    g
                })
                .collect();
            let mut session = json!({"sessionId": format!("s{i}"), "mediaType": s.media, "segments": segments});
            if !metrics.is_empty() {
                session["metrics"] = Value::Array(metrics);
            }
            if s.participant == "customer" {
                session["direction"] = json!("inbound");
                match s.media {
                    "email" => {
                        session["addressFrom"] = json!(format!("caller{}@example.org", &self.caller[self.caller.len() - 4..]));
                    }
                    "chat" => session["remoteNameDisplayable"] = json!(self.caller.clone()),
                    _ => {
                        session["ani"] = json!(format!("tel:{}", self.caller));
                        session["dnis"] = json!("tel:+18005550100");
                        session["remote"] = json!(self.caller.clone());
                    }
                }
            }
            if let Some(flow) = &s.flow {
                session["flow"] = flow.clone();
            }
            let mut participant = json!({"participantId": format!("p{i}"), "purpose": s.participant, "sessions": [session]});
            match s.participant {
                "customer" => participant["participantName"] = json!(self.caller.clone()),
                "acd" => participant["participantName"] = json!(s.queue.map_or("", |q| self.queue_name_of[q])),
                "ivr" => participant["participantName"] = json!("Main IVR"),
                _ => {}
            }
            if let Some(user) = &s.user {
                participant["userId"] = json!(user);
            }
            participants.push(participant);
        }
        let mut record = json!({
            "conversationId": self.id,
            "conversationStart": iso(self.start),
            "originatingDirection": "inbound",
            "divisionIds": ["d0000000-0000-4000-8000-000000000001"],
            "participants": participants,
        });
        if self.end <= as_of {
            record["conversationEnd"] = json!(iso(self.end));
        }
        record
    }
}

struct Generator {
    rng: StdRng,
    manifest: GenesysManifest,
}

impl Generator {
    fn uuid(&mut self) -> String {
        let a: u128 = self.rng.random();
        format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", (a >> 96) as u32, (a >> 80) as u16, (a >> 68) as u16 & 0xfff, (a >> 56) as u16 & 0xfff, a as u64 & 0xffff_ffff_ffff)
    }

    fn agent(&mut self) -> String {
        format!("u-{:04}", self.rng.random_range(0..AGENTS))
    }

    /// An agent's handling of a conversation offered at `offered` in `queue`, answered after
    /// `wait` µs: alert, talk with maybe a hold, after-call work.
    fn handled(&mut self, queue: usize, media: &'static str, answered: i64, transfer: bool) -> (Session, i64) {
        let q = QUEUES[queue].id;
        // Minutes of talk (an e-mail's "talk" is the time its reply takes to write); holds
        // on calls only.
        let talk = match media {
            "voice" => self.rng.random_range(90..480),
            "chat" => self.rng.random_range(120..900),
            _ => self.rng.random_range(120..1200),
        } * SECOND;
        let held = if media == "voice" && self.rng.random_bool(0.3) { self.rng.random_range(10..120) * SECOND } else { 0 };
        let acw = self.rng.random_range(10..90) * SECOND;
        let talk_end = answered + talk + held;
        let end = talk_end + acw;
        let mut metrics = vec![
            Metric { name: "tTalkComplete", value: talk / 1000, at: talk_end },
            Metric { name: "tHeldComplete", value: held / 1000, at: talk_end },
            Metric { name: "tAcw", value: acw / 1000, at: end },
            Metric { name: "tHandle", value: (talk + held + acw) / 1000, at: end },
        ];
        if transfer {
            metrics.push(Metric { name: "nTransferred", value: 1, at: talk_end });
        }
        let code = WRAPUP_CODES[self.rng.random_range(0..WRAPUP_CODES.len())].0;
        let mut segments = vec![segment("interact", answered, answered + talk, Some(q), json!({}))];
        if held > 0 {
            segments.push(segment("hold", answered + talk, talk_end, Some(q), json!({})));
        }
        segments.push(segment(
            "wrapup",
            talk_end,
            end,
            None,
            json!({"wrapUpCode": code, "disconnectType": if transfer { "transfer" } else { "peer" }}),
        ));
        let session = Session {
            participant: "agent",
            user: Some(self.agent()),
            queue: Some(queue),
            media,
            start: answered - 5 * SECOND,
            end,
            segments,
            metrics,
            flow: None,
        };
        (session, end)
    }

    /// One conversation: customer, IVR (voice), then a queue and its outcome.
    /// Long: the participants and their sessions in the order the export nests them, each
    /// outcome's branch beside the others; split, one conversation's shape would be read
    /// across functions.
    fn conversation(&mut self, start: i64) -> Conversation {
        let media = ["voice", "voice", "voice", "chat", "email"][self.rng.random_range(0..5)];
        let caller = format!("+1555{:07}", self.rng.random_range(0..10_000_000));
        let mut queue = self.rng.random_range(0..QUEUES.len());
        let mut sessions = Vec::new();
        let mut offered = start + 2 * SECOND;
        if media == "voice" {
            let ivr = self.rng.random_range(10..60) * SECOND;
            offered = start + ivr;
            sessions.push(Session {
                participant: "ivr",
                user: None,
                queue: None,
                media,
                start,
                end: offered,
                segments: vec![segment("ivr", start, offered, None, json!({"disconnectType": "transfer"}))],
                metrics: vec![Metric { name: "tIvr", value: ivr / 1000, at: offered }],
                flow: Some(json!({"flowId": "f-main", "flowName": "Main IVR", "flowType": "INBOUNDCALL",
                    "entryReason": "tel:+18005550100", "exitReason": "TRANSFER", "transferType": "ACD"})),
            });
        }
        let mut end;
        let mut hops = 0;
        loop {
            let q = QUEUES[queue].id;
            let roll: f64 = self.rng.random();
            // A center that mostly meets its targets: a few percent of calls and chats
            // abandon, e-mails do not; a few flow out to voicemail.
            let (abandon, flow_out) = match media {
                "voice" => (0.04, 0.06),
                "chat" => (0.06, 0.07),
                _ => (0.0, 0.02),
            };
            let wait = self.wait(media);
            let mut acd_metrics = vec![Metric { name: "nOffered", value: 1, at: offered }];
            if roll < abandon && hops == 0 {
                // Abandoned while waiting: callers give up within a minute or two.
                let wait = self.rng.random_range(5..120) * SECOND;
                end = offered + wait;
                acd_metrics.push(Metric { name: "tAbandon", value: wait / 1000, at: end });
                sessions.push(self.acd(queue, media, offered, end, acd_metrics, "peer"));
                break;
            }
            if roll < flow_out && hops == 0 {
                // Flowed out to voicemail: offered, neither answered nor abandoned.
                end = offered + wait;
                acd_metrics.push(Metric { name: "tFlowOut", value: wait / 1000, at: end });
                sessions.push(self.acd(queue, media, offered, end, acd_metrics, "transfer"));
                break;
            }
            let answered = offered + wait;
            acd_metrics.push(Metric { name: "tAcd", value: wait / 1000, at: answered });
            if self.rng.random_bool(0.08) && wait > 12 * SECOND {
                // A missed alert: the first agent did not respond; Genesys still gives that
                // session a forced wrap-up with tAcw and tHandle.
                let alerted = answered - 12 * SECOND;
                let forced = self.rng.random_range(1..10) * SECOND;
                sessions.push(Session {
                    participant: "agent",
                    user: Some(self.agent()),
                    queue: Some(queue),
                    media,
                    start: alerted,
                    end: alerted + 8 * SECOND + forced,
                    segments: vec![
                        segment("alert", alerted, alerted + 8 * SECOND, Some(q), json!({"disconnectType": "timeout"})),
                        segment("wrapup", alerted + 8 * SECOND, alerted + 8 * SECOND + forced, None, json!({"wrapUpCode": "ININ-WRAP-UP-TIMEOUT"})),
                    ],
                    metrics: vec![
                        Metric { name: "tAlert", value: 8000, at: alerted + 8 * SECOND },
                        Metric { name: "tNotResponding", value: 8000, at: alerted + 8 * SECOND },
                        Metric { name: "tAcw", value: forced / 1000, at: alerted + 8 * SECOND + forced },
                        Metric { name: "tHandle", value: forced / 1000, at: alerted + 8 * SECOND + forced },
                    ],
                    flow: None,
                });
            }
            sessions.push(self.acd(queue, media, offered, answered, acd_metrics, "transfer"));
            let transfer = hops == 0 && self.rng.random_bool(0.1);
            let (mut agent, done) = self.handled(queue, media, answered, transfer);
            agent.metrics.insert(0, Metric { name: "tAnswered", value: wait / 1000, at: answered });
            let talk_end = agent.metrics.iter().find(|m| m.name == "tTalkComplete").map_or(done, |m| m.at);
            sessions.push(agent);
            end = done;
            if !transfer {
                break;
            }
            hops += 1;
            queue = (queue + 1) % QUEUES.len();
            offered = talk_end;
        }
        let customer = Session {
            participant: "customer",
            user: None,
            queue: None,
            media,
            start,
            end,
            segments: vec![segment("interact", start, end, None, json!({"disconnectType": "endpoint"}))],
            metrics: Vec::new(),
            flow: None,
        };
        sessions.insert(0, customer);
        let id = self.uuid();
        Conversation { id, start, end, caller, sessions, queue_name_of: QUEUES.iter().map(|q| q.name).collect() }
    }

    /// How long an answered conversation waited in queue: calls mostly within their 20 s,
    /// ASA in tens of seconds; chats a little longer; e-mails hours, mostly within the day.
    fn wait(&mut self, media: &str) -> i64 {
        let roll: f64 = self.rng.random();
        let seconds = match media {
            "voice" if roll < 0.80 => self.rng.random_range(2..20),
            "voice" if roll < 0.95 => self.rng.random_range(20..60),
            "voice" => self.rng.random_range(60..150),
            "chat" if roll < 0.75 => self.rng.random_range(5..30),
            "chat" if roll < 0.95 => self.rng.random_range(30..90),
            "chat" => self.rng.random_range(90..240),
            _ if roll < 0.85 => self.rng.random_range(600..4 * 3600),
            _ if roll < 0.97 => self.rng.random_range(4 * 3600..20 * 3600),
            _ => self.rng.random_range(20 * 3600..36 * 3600),
        };
        seconds * SECOND
    }

    fn acd(&mut self, queue: usize, media: &'static str, offered: i64, left: i64, metrics: Vec<Metric>, disconnect: &str) -> Session {
        Session {
            participant: "acd",
            user: None,
            queue: Some(queue),
            media,
            start: offered,
            end: left,
            segments: vec![segment("interact", offered, left, Some(QUEUES[queue].id), json!({"disconnectType": disconnect}))],
            metrics,
            flow: None,
        }
    }

    /// Adds a final version's metrics to the expected KPIs, by the rules of GENESYS.md.
    fn count(&mut self, c: &Conversation) {
        for s in &c.sessions {
            self.manifest.metrics += s.metrics.len();
            let Some(queue) = s.queue else { continue };
            let Queue { name, voice_target_ms, chat_target_ms, email_target_ms, .. } = &QUEUES[queue];
            let target = match s.media {
                "voice" => *voice_target_ms,
                "chat" => *chat_target_ms,
                "email" => *email_target_ms,
                _ => None,
            }
            .unwrap_or_else(|| default_target_ms(s.media));
            for m in &s.metrics {
                let day = self
                    .manifest
                    .queue_daily
                    .entry(name.to_string())
                    .or_default()
                    .entry(s.media.to_string())
                    .or_default()
                    .entry(day_of(m.at))
                    .or_default();
                match m.name {
                    "nOffered" => day.n_offered += m.value,
                    "tAnswered" => {
                        day.n_answered += 1;
                        day.t_answered_ms += m.value;
                        day.n_answered_in_target += i64::from(m.value <= target);
                    }
                    "tAbandon" => day.n_abandoned += 1,
                    "tHandle" => {
                        day.n_handled += 1;
                        day.t_handle_ms += m.value;
                    }
                    "nTransferred" => day.n_transferred += m.value,
                    _ => {}
                }
            }
        }
    }

    /// EventBridge envelopes for a conversation's sessions up to `until`.
    fn events(&mut self, c: &Conversation, until: i64) -> Vec<Value> {
        let mut events = Vec::new();
        for (i, s) in c.sessions.iter().enumerate() {
            let purpose = match s.participant {
                "agent" => "user",
                other => other,
            };
            let topics: Vec<(&str, i64)> = match purpose {
                "ivr" => vec![("flow.start", s.start), ("flow.end", s.end)],
                "voicemail" => Vec::new(),
                _ => vec![(if purpose == "user" { "user.start" } else { "start" }, s.start), ("end", s.end)],
            };
            for (topic, at) in topics {
                if at > until {
                    continue;
                }
                let topic = if topic.contains('.') { topic.to_string() } else { format!("{purpose}.{topic}") };
                let mut body = json!({"eventTime": at / 1000, "conversationId": c.id, "participantId": format!("p{i}"),
                    "sessionId": format!("s{i}"), "mediaType": s.media.to_uppercase(), "direction": "INBOUND",
                    "ani": format!("tel:{}", c.caller), "dnis": "tel:+18005550100"});
                if let Some(user) = &s.user {
                    body["userId"] = json!(user);
                }
                if let Some(q) = s.queue {
                    body["queueId"] = json!(QUEUES[q].id);
                }
                let id = self.uuid();
                events.push(json!({"version": "0", "id": id,
                    "detail-type": format!("v2.detail.events.conversation.{{id}}.{topic}"),
                    "source": "aws.partner/genesys.com/cloud/org-1/cclake", "account": "000000000000",
                    "time": iso(at), "region": "us-east-1", "resources": [],
                    "detail": {"topicName": format!("v2.detail.events.conversation.{}.{topic}", c.id), "version": "2",
                        "timestamp": iso(at), "metadata": {"CorrelationId": id}, "eventBody": body}}));
            }
        }
        events
    }
}

/// Writes Genesys-shaped exports under `out` (details, eventbridge, dimensions folders) and
/// returns the manifest (also written as `out/_genesys_manifest.json`).
/// Long: one pass over the days, each conversation's details, events and manifest counts
/// written together, so that the manifest stays what the files hold.
pub fn generate_genesys(out: &Path, options: &GenesysOptions) -> std::io::Result<GenesysManifest> {
    let mut g = Generator { rng: StdRng::seed_from_u64(options.seed), manifest: GenesysManifest::default() };
    let mut files = Files { out, files: 0, bytes: 0 };
    let first_day = options.start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros();
    let days = options.days.max(1) as i64;
    let last = first_day + days * DAY;
    // Four-hour windows: a details export of what ended in the window, delivered 30 minutes
    // after it; an async job page of what was still active at the window's end.
    let windows = (days * 6) as usize;
    let mut finished: Vec<Vec<Value>> = vec![Vec::new(); windows + 1];
    let mut active: Vec<Vec<Value>> = vec![Vec::new(); windows + 1];
    let mut events: Vec<Vec<Value>> = vec![Vec::new(); windows + 1];
    let window_of = |t: i64| (((t - first_day) / (4 * HOUR)).max(0) as usize).min(windows);
    for i in 0..options.conversations {
        let day = (i as i64 * days) / options.conversations.max(1) as i64;
        let offset = if g.rng.random_bool(0.8) { 7 * HOUR + g.rng.random_range(0..13 * HOUR) } else { g.rng.random_range(0..DAY) };
        let c = g.conversation(first_day + day * DAY + offset);
        if g.manifest.unmasked_numbers.len() < 50 {
            g.manifest.unmasked_numbers.push(c.caller[1..].to_string());
        }
        let w = window_of(c.end);
        if c.end >= last - 2 * HOUR && g.rng.random_bool(0.5) {
            // Still live when the exports stop: known from EventBridge only.
            g.manifest.live_conversations += 1;
            let evs = g.events(&c, c.start + (c.end - c.start) / 2);
            events[window_of(c.start)].extend(evs);
            continue;
        }
        let window_end = first_day + (window_of(c.start) as i64 + 1) * 4 * HOUR;
        if c.end > window_end && g.rng.random_bool(0.6) {
            active[window_of(c.start)].push(c.record(window_end));
            g.manifest.exported_twice += 1;
        }
        finished[w].push(c.record(i64::MAX));
        g.count(&c);
        g.manifest.conversations += 1;
        let evs = g.events(&c, c.end);
        events[w].extend(evs);
    }
    for w in 0..=windows {
        let window_start = first_day + w as i64 * 4 * HOUR;
        let stamp = DateTime::<Utc>::from_timestamp_micros(window_start).unwrap_or_default();
        let (day, hour) = (stamp.format("%Y-%m-%d"), stamp.format("%Y%m%dT%H"));
        let delivered = window_start + 4 * HOUR + 30 * MINUTE;
        if !options.details {
            active[w].clear();
            finished[w].clear();
        }
        if !options.eventbridge {
            events[w].clear();
        }
        if !active[w].is_empty() {
            let page = json!({"conversations": active[w], "cursor": format!("cursor-{w}"), "dataAvailabilityDate": iso(window_start + 4 * HOUR)});
            files.write(&format!("details/{day}/async-job-{hour}.json"), page.to_string().as_bytes(), window_start + 4 * HOUR + 5 * MINUTE)?;
        }
        if !finished[w].is_empty() {
            // Alternate the three details shapes: query pages, async job pages, gzipped NDJSON.
            match w % 3 {
                0 => {
                    for (p, chunk) in finished[w].chunks(100).enumerate() {
                        let page = json!({"conversations": chunk, "totalHits": finished[w].len()});
                        files.write(&format!("details/{day}/query-{hour}-{p}.json"), page.to_string().as_bytes(), delivered)?;
                    }
                }
                1 => {
                    let page = json!({"conversations": finished[w], "cursor": null});
                    files.write(&format!("details/{day}/job-{hour}.json"), page.to_string().as_bytes(), delivered)?;
                }
                _ => {
                    let mut lines = Vec::new();
                    for c in &finished[w] {
                        lines.extend_from_slice(c.to_string().as_bytes());
                        lines.push(b'\n');
                    }
                    files.write(&format!("details/{day}/conversations-{hour}.jsonl.gz"), &gzip(&lines)?, delivered)?;
                }
            }
        }
        if !events[w].is_empty() {
            let mut lines = Vec::new();
            for e in &events[w] {
                lines.extend_from_slice(e.to_string().as_bytes());
                lines.push(b'\n');
            }
            g.manifest.events += events[w].len();
            files.write(&format!("eventbridge/{day}/events-{hour}.jsonl"), &lines, window_start + 4 * HOUR)?;
            // EventBridge delivers at least once: every 20th envelope comes again an hour later.
            let again: Vec<&Value> = events[w].iter().step_by(20).collect();
            g.manifest.redelivered_events += again.len();
            let mut lines = Vec::new();
            for e in again {
                lines.extend_from_slice(e.to_string().as_bytes());
                lines.push(b'\n');
            }
            files.write(&format!("eventbridge/{day}/events-{hour}-retry.jsonl"), &lines, window_start + 5 * HOUR)?;
        }
    }
    if options.details {
        write_dimensions(&mut files, first_day - HOUR)?;
    }
    g.manifest.files = files.files;
    g.manifest.bytes = files.bytes;
    let manifest = serde_json::to_vec_pretty(&g.manifest).map_err(std::io::Error::other)?;
    std::fs::write(out.join("_genesys_manifest.json"), manifest)?;
    Ok(g.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_time_is_talk_plus_hold_plus_acw_and_answered_equals_acd() {
        let mut g = Generator { rng: StdRng::seed_from_u64(7), manifest: GenesysManifest::default() };
        for i in 0..200 {
            let c = g.conversation(i * HOUR);
            for s in &c.sessions {
                let get = |n: &str| s.metrics.iter().find(|m| m.name == n).map(|m| m.value);
                if let (Some(h), Some(t), Some(held), Some(acw)) = (get("tHandle"), get("tTalkComplete"), get("tHeldComplete"), get("tAcw")) {
                    assert_eq!(h, t + held + acw);
                }
            }
            let acd: Vec<i64> = c.sessions.iter().flat_map(|s| s.metrics.iter().filter(|m| m.name == "tAcd").map(|m| m.value)).collect();
            let answered: Vec<i64> = c.sessions.iter().flat_map(|s| s.metrics.iter().filter(|m| m.name == "tAnswered").map(|m| m.value)).collect();
            assert_eq!(acd, answered);
        }
    }
}
