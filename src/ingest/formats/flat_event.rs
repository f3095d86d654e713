//! One flat interaction event (GENESYS.md §1): parsed in a single pass with serde, coerced
//! the way a staging step would, or rejected with the field and the reason.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::ingest::coerce::{
    coerce_duration, coerce_timestamp, encoded_partition_bytes, MAX_PARTITION_VALUE_BYTES, masked, optional_enum, optional_text, required_id, scalar_text, Flex, Rejection, Text,
};
use crate::ingest::mask::{holds_email, mask_caller_number};
use crate::ingest::pseudonym::AgentPseudonyms;
use crate::ingest::rows::{Cell, TableRows};
use crate::model::{key_hash, Delivery, LakeTable};

/// `source_system` when the export does not say.
pub const DEFAULT_SOURCE_SYSTEM: &str = "GENESYS_CLOUD";

/// A usable event, with PII already masked and `recording_url` kept apart.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatEvent<'a> {
    pub event_id: Cow<'a, str>,
    pub interaction_id: Cow<'a, str>,
    /// Microseconds since the epoch, UTC.
    pub event_timestamp: i64,
    pub interaction_type: Option<Cow<'a, str>>,
    pub direction: Option<Cow<'a, str>>,
    pub state: Option<Cow<'a, str>>,
    pub duration_seconds: Option<i64>,
    pub queue_name: Option<Cow<'a, str>>,
    /// The agent's id, or its pseudonym when the id holds an e-mail address and the parser
    /// has the lake's key ([`crate::ingest::pseudonym`]).
    pub agent_id: Option<Cow<'a, str>>,
    /// The agent's id as exported, when `agent_id` is its pseudonym and this parser met the
    /// agent for the first time: the `agent_identities` row to stage (auditors only).
    pub new_agent_identity: Option<Cow<'a, str>>,
    pub source_system: Cow<'a, str>,
    pub caller_number_masked: Option<Cow<'a, str>>,
    pub campaign_id: Option<Cow<'a, str>>,
    /// Goes to `call_recordings` only, whose access can be restricted.
    pub recording_url: Option<Cow<'a, str>>,
    /// `created_at` when the export carries one (microseconds, UTC).
    pub created_at: Option<i64>,
}

impl FlatEvent<'_> {
    /// Days since the epoch of the event's UTC date: the `event_date` partition.
    pub fn event_date(&self) -> i32 {
        self.event_timestamp.div_euclid(86_400_000_000) as i32
    }
}

impl FlatEvent<'_> {
    /// Stages the event's rows: one of `fact_interactions`, one of `call_recordings` (whose
    /// null `recording_url` removes an earlier delivery's recording). `created_at` is the
    /// export's own, else the source object's last-modified time, so that a re-run writes
    /// identical rows. Pushed straight from the stack: the flat path is the bulk one, and a
    /// flat event is always whole (it has decoded before it yields rows).
    pub fn push_rows(&self, object_modified_at: i64, rows: &mut TableRows, delivery: &Delivery<'_>) {
        fn text<'r>(value: &'r Option<Cow<'_, str>>) -> Cell<'r> {
            Cell::text(value.as_deref())
        }
        let key = key_hash(&self.event_id);
        rows.push(
            LakeTable::FactInteractions,
            &[
                ("event_id", Cell::text(Some(&*self.event_id))),
                ("interaction_id", Cell::text(Some(&*self.interaction_id))),
                ("event_timestamp", Cell::Time(Some(self.event_timestamp))),
                ("interaction_type", text(&self.interaction_type)),
                ("direction", text(&self.direction)),
                ("state", text(&self.state)),
                ("duration_seconds", Cell::Int(self.duration_seconds)),
                ("queue_name", text(&self.queue_name)),
                ("agent_id", text(&self.agent_id)),
                ("source_system", Cell::text(Some(&*self.source_system))),
                ("created_at", Cell::Time(Some(self.created_at.unwrap_or(object_modified_at)))),
                ("event_date", Cell::Date(self.event_date())),
                ("caller_number_masked", text(&self.caller_number_masked)),
                ("campaign_id", text(&self.campaign_id)),
                ("event_key", Cell::Int(Some(key))),
            ],
            delivery,
        );
        // An event without a recording stages no row: a commit deletes a stored recording
        // its winning delivery no longer has (lake/follow.rs).
        if self.recording_url.is_some() {
            rows.push(
                LakeTable::CallRecordings,
                &[
                    ("event_id", Cell::text(Some(&*self.event_id))),
                    ("interaction_id", Cell::text(Some(&*self.interaction_id))),
                    ("event_timestamp", Cell::Time(Some(self.event_timestamp))),
                    ("recording_url", text(&self.recording_url)),
                    ("event_date", Cell::Date(self.event_date())),
                    ("event_key", Cell::Int(Some(key))),
                ],
                delivery,
            );
        }
    }
}

/// A parsed record: the event or why not, plus the field names the event did not define
/// (schema drift, counted in the summary).
#[derive(Debug)]
pub struct ParsedRecord<'a> {
    pub outcome: Result<FlatEvent<'a>, Rejection>,
    pub unknown_fields: Vec<String>,
}

/// Parses and validates one record's JSON text. An `agent_id` holding an e-mail address is
/// masked to its domain: [`parse_flat_event_with`] makes it a pseudonym instead.
pub fn parse_flat_event(json: &[u8]) -> ParsedRecord<'_> {
    parse_flat_event_with(json, None, None)
}

/// [`parse_flat_event`], given the record as text too when it is known to be UTF-8 (a whole
/// object checked at once: each string is not checked again), and the parser's agent
/// pseudonyms.
pub fn parse_flat_event_with<'a>(json: &'a [u8], text: Option<&'a str>, agents: Option<&mut AgentPseudonyms>) -> ParsedRecord<'a> {
    match text {
        Some(text) => parse_with(serde_json::Deserializer::from_str(text), agents, None),
        None => parse_with(serde_json::Deserializer::from_slice(json), agents, None),
    }
}

/// A record parsed as a flat event, or one whose top level has a key only a tree format has
/// (parsed no further: it is for [`super::tree_format_of`] to say what it is).
// One per record, returned by value; boxing the record would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum FlatOrTree<'a> {
    Flat(ParsedRecord<'a>),
    MaybeTree,
}

/// [`parse_flat_event_with`], stopping at a tree format's key: the bulk of records, flat
/// events, are told from tree formats by the one parse that reads them.
pub fn parse_flat_event_or_tree<'a>(json: &'a [u8], text: Option<&'a str>, agents: Option<&mut AgentPseudonyms>) -> FlatOrTree<'a> {
    let tree_key = std::cell::Cell::new(false);
    let record = match text {
        Some(text) => parse_with(serde_json::Deserializer::from_str(text), agents, Some(&tree_key)),
        None => parse_with(serde_json::Deserializer::from_slice(json), agents, Some(&tree_key)),
    };
    if tree_key.get() {
        FlatOrTree::MaybeTree
    } else {
        FlatOrTree::Flat(record)
    }
}

fn parse_with<'a, R: serde_json::de::Read<'a>>(
    mut de: serde_json::Deserializer<R>,
    agents: Option<&mut AgentPseudonyms>,
    tree_key: Option<&std::cell::Cell<bool>>,
) -> ParsedRecord<'a> {
    // Filled in place: the fields (about 500 bytes) were moved four times a record on their
    // way out of the parse, a memcpy call each (benches/README.md, "seventh round").
    let mut raw = RawFields::default();
    let read = de.deserialize_any(RecordVisitor { fields: &mut raw, tree_key }).and_then(|object| de.end().map(|()| object));
    let rejected = |rejection| ParsedRecord { outcome: Err(rejection), unknown_fields: Vec::new() };
    match read {
        Ok(true) => {
            let unknown_fields = std::mem::take(&mut raw.unknown);
            ParsedRecord { outcome: raw.validate(agents), unknown_fields }
        }
        Ok(false) => rejected(Rejection::NotAnObject),
        // Stopped at a tree format's key: the record goes to the tree parse, and the error's
        // text (an allocation per page of a details export) is never read.
        Err(_) if tree_key.is_some_and(std::cell::Cell::get) => rejected(Rejection::NotAnObject),
        Err(e) => rejected(Rejection::InvalidJson(e.to_string())),
    }
}

/// The known fields of a flat event, each as it arrived.
#[derive(Default)]
struct RawFields<'a> {
    event_id: Option<Flex<'a>>,
    interaction_id: Option<Flex<'a>>,
    timestamp: Option<Flex<'a>>,
    interaction_type: Option<Flex<'a>>,
    direction: Option<Flex<'a>>,
    state: Option<Flex<'a>>,
    duration_seconds: Option<Flex<'a>>,
    queue_name: Option<Flex<'a>>,
    agent_id: Option<Flex<'a>>,
    source_system: Option<Flex<'a>>,
    caller_number_masked: Option<Flex<'a>>,
    /// First raw number seen (`caller_number`, `ani`, ...): masked, used when no masked
    /// number came, never stored as it is.
    raw_caller_number: Option<Flex<'a>>,
    recording_url: Option<Flex<'a>>,
    campaign_id: Option<Flex<'a>>,
    created_at: Option<Flex<'a>>,
    unknown: Vec<String>,
}

/// Reads a record's top level into `fields`, saying whether it is an object; with
/// `tree_key`, stops at the first key only a tree format has ([`super::is_tree_key`]), with
/// an error, and says so there.
struct RecordVisitor<'f, 'de> {
    fields: &'f mut RawFields<'de>,
    tree_key: Option<&'f std::cell::Cell<bool>>,
}

impl<'de> Visitor<'de> for RecordVisitor<'_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let raw = self.fields;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if let Some(found) = self.tree_key.filter(|_| super::is_tree_key(&key)) {
                found.set(true);
                return Err(serde::de::Error::custom("a tree format's key"));
            }
            let slot = match key.as_ref() {
                "event_id" => &mut raw.event_id,
                "interaction_id" => &mut raw.interaction_id,
                "timestamp" | "event_timestamp" => &mut raw.timestamp,
                "type" | "interaction_type" => &mut raw.interaction_type,
                "direction" => &mut raw.direction,
                "state" => &mut raw.state,
                "duration_seconds" => &mut raw.duration_seconds,
                "queue_name" => &mut raw.queue_name,
                "agent_id" => &mut raw.agent_id,
                "source_system" => &mut raw.source_system,
                "caller_number_masked" => &mut raw.caller_number_masked,
                "recording_url" => &mut raw.recording_url,
                "created_at" => &mut raw.created_at,
                "campaign_id" => &mut raw.campaign_id,
                "metadata" => {
                    let meta: Metadata<'de> = map.next_value()?;
                    if meta.campaign_id.is_some() {
                        raw.campaign_id = meta.campaign_id;
                    }
                    raw.unknown.extend(meta.unknown);
                    continue;
                }
                name if crate::ingest::mask::PHONE_FIELDS.contains(&name) => {
                    let value: Flex<'de> = map.next_value()?;
                    if raw.raw_caller_number.is_none() {
                        raw.raw_caller_number = Some(value);
                    }
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    raw.unknown.push(key.into_owned());
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(false)
    }
}

/// `metadata{}`: `campaign_id` is kept, `source_ip` is dropped unread, anything else is drift.
struct Metadata<'a> {
    campaign_id: Option<Flex<'a>>,
    unknown: Vec<String>,
}

impl<'de> Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Metadata<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metadata object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut meta = Metadata {
                    campaign_id: None,
                    unknown: Vec::new(),
                };
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    match key.as_ref() {
                        "campaign_id" => meta.campaign_id = Some(map.next_value()?),
                        "source_ip" => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            meta.unknown.push(format!("metadata.{key}"));
                        }
                    }
                }
                Ok(meta)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Metadata {
                    campaign_id: None,
                    unknown: Vec::new(),
                })
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Metadata {
                    campaign_id: None,
                    unknown: Vec::new(),
                })
            }
        }
        d.deserialize_any(MetadataVisitor)
    }
}

impl<'a> RawFields<'a> {
    /// The event the fields make, taking them (each is read once).
    fn validate(&mut self, agents: Option<&mut AgentPseudonyms>) -> Result<FlatEvent<'a>, Rejection> {
        let event_id = required_id(self.event_id.take(), "event_id")?;
        let interaction_id = required_id(self.interaction_id.take(), "interaction_id")?;
        let event_timestamp = match self.timestamp.take() {
            None | Some(Flex::Null) => return Err(Rejection::MissingField("timestamp")),
            Some(v) => coerce_timestamp(&v, "timestamp")?,
        };
        let duration_seconds = match self.duration_seconds.take() {
            None | Some(Flex::Null) => None,
            Some(v) => Some(coerce_duration(&v)?),
        };
        let created_at = match self.created_at.take() {
            None | Some(Flex::Null) => None,
            // A created_at we cannot read is not worth losing the event for.
            Some(v) => coerce_timestamp(&v, "created_at").ok(),
        };
        let caller_number = optional_text(self.caller_number_masked.take(), "caller_number_masked")?
            .or(optional_text(self.raw_caller_number.take(), "caller_number")?)
            .map(mask_caller_number);
        // Queue names are partition values and must round-trip exactly: not trimmed; one too
        // long for a folder name is refused, not left to fail the whole commit.
        let queue_name = match self.queue_name.take() {
            None | Some(Flex::Null) => None,
            Some(Flex::Str(s)) if s.is_empty() => None,
            Some(Flex::Str(s)) => masked(Some(s)),
            Some(v) => masked(scalar_text(v, "queue_name")?),
        };
        // A name of up to a third of the limit fits however many of its bytes are encoded.
        let long = queue_name.as_deref().filter(|q| q.len() * 3 > MAX_PARTITION_VALUE_BYTES);
        if let Some(bytes) = long.map(encoded_partition_bytes).filter(|b| *b > MAX_PARTITION_VALUE_BYTES) {
            return Err(Rejection::PartitionValueTooLong { field: "queue_name", bytes });
        }
        let (agent_id, new_agent_identity) = agent(optional_text(self.agent_id.take(), "agent_id")?, agents);
        Ok(FlatEvent {
            event_id,
            interaction_id,
            event_timestamp,
            interaction_type: optional_enum(self.interaction_type.take(), "type")?,
            direction: optional_enum(self.direction.take(), "direction")?,
            state: optional_enum(self.state.take(), "state")?,
            duration_seconds,
            queue_name,
            agent_id,
            new_agent_identity,
            source_system: masked(optional_text(self.source_system.take(), "source_system")?)
                .unwrap_or(Cow::Borrowed(DEFAULT_SOURCE_SYSTEM)),
            caller_number_masked: caller_number,
            campaign_id: masked(optional_text(self.campaign_id.take(), "metadata.campaign_id")?),
            recording_url: optional_text(self.recording_url.take(), "recording_url")?,
            created_at,
        })
    }
}

/// An agent id holding an e-mail address becomes its pseudonym when there is a key (with
/// the id itself, the first time, for `agent_identities`); any other is masked.
fn agent<'a>(id: Option<Cow<'a, str>>, agents: Option<&mut AgentPseudonyms>) -> (Option<Cow<'a, str>>, Option<Cow<'a, str>>) {
    match (id, agents) {
        // The same agent in most records of an object: its pseudonym is looked up before
        // the address pattern runs again.
        (Some(id), Some(agents)) if agents.known(&id).is_some() => (agents.known(&id).map(|p| Cow::Owned(p.to_string())), None),
        (Some(id), Some(agents)) if holds_email(&id) => {
            let (pseudonym, new) = agents.pseudonym(&id);
            (Some(Cow::Owned(pseudonym.to_string())), new.then_some(id))
        }
        (id, _) => (masked(id), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::coerce::parse_timestamp;

    fn parse(json: &str) -> Result<FlatEvent<'_>, Rejection> {
        parse_flat_event(json.as_bytes()).outcome
    }

    const BASE: &str = r#""event_id":"e1","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z""#;

    #[test]
    fn design_card_event_parses() {
        let json = format!(
            r#"{{{BASE},"type":"voice","direction":"inbound","state":"completed","duration_seconds":345,
            "queue_name":"Billing / Tier=2","agent_id":"a-7","caller_number_masked":"+15551234567",
            "recording_url":"https://r/1","metadata":{{"source_ip":"10.0.0.1","campaign_id":"c9"}}}}"#
        );
        let e = parse(&json).unwrap();
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.event_timestamp, 1_709_542_800_000_000);
        assert_eq!(e.duration_seconds, Some(345));
        assert_eq!(e.queue_name.as_deref(), Some("Billing / Tier=2"));
        assert_eq!(e.caller_number_masked.as_deref(), Some("+*******4567"));
        assert_eq!(e.campaign_id.as_deref(), Some("c9"));
        assert_eq!(e.recording_url.as_deref(), Some("https://r/1"));
        assert_eq!(e.source_system, DEFAULT_SOURCE_SYSTEM);
    }

    #[test]
    fn drifted_types_are_coerced() {
        for (d, want) in [(r#""345""#, 345), ("345.0", 345), (r#""345.0""#, 345), ("0", 0)] {
            let json = format!(r#"{{{BASE},"duration_seconds":{d}}}"#);
            let e = parse(&json).unwrap();
            assert_eq!(e.duration_seconds, Some(want), "{d}");
        }
        let e = parse(r#"{"event_id":17,"interaction_id":"i","timestamp":"2024-03-04T10:00:00.123+01:00","type":"VOICE","queue_name":42}"#).unwrap();
        assert_eq!(e.event_id, "17");
        assert_eq!(e.event_timestamp, 1_709_542_800_123_000);
        assert_eq!(e.interaction_type.as_deref(), Some("voice"));
        assert_eq!(e.queue_name.as_deref(), Some("42"));
        let e = parse(r#"{"event_id":"x","interaction_id":"i","timestamp":1709542800000}"#).unwrap();
        assert_eq!(e.event_timestamp, 1_709_542_800_000_000);
    }

    #[test]
    fn timestamps_in_every_iso_form_become_utc() {
        let want = Some(1_709_542_800_000_000);
        for s in [
            "2024-03-04T09:00:00Z",
            "2024-03-04T09:00:00.000Z",
            "2024-03-04T04:00:00-05:00",
            "2024-03-04T10:00:00+0100",
            "2024-03-04 09:00:00Z",
            "2024-03-04T09:00:00",
            "2024-03-04T09:00Z",
            "2024-03-04t09:00:00z",
            "2024-03-04T10:00+01:00",
            "2024-03-04T10:00:00.000000+0100",
            "2024-03-04 09:00",
        ] {
            assert_eq!(parse_timestamp(s), want, "{s}");
        }
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2024-13-45T09:00:00Z"), None);
    }

    #[test]
    fn unusable_records_say_why() {
        assert_eq!(parse("[1,2]"), Err(Rejection::NotAnObject));
        assert_eq!(parse(r#"{"interaction_id":"i","timestamp":"2024-03-04T09:00:00Z"}"#), Err(Rejection::MissingField("event_id")));
        assert_eq!(parse(r#"{"event_id":" ","interaction_id":"i","timestamp":"2024-03-04T09:00:00Z"}"#), Err(Rejection::MissingField("event_id")));
        assert_eq!(parse(r#"{"event_id":"e","timestamp":"2024-03-04T09:00:00Z"}"#), Err(Rejection::MissingField("interaction_id")));
        assert_eq!(parse(r#"{"event_id":"e","interaction_id":"i"}"#), Err(Rejection::MissingField("timestamp")));
        assert!(matches!(parse(r#"{"event_id":"e","interaction_id":"i","timestamp":"soon"}"#), Err(Rejection::InvalidTimestamp(_))));
        assert!(matches!(parse(&format!(r#"{{{BASE},"duration_seconds":12.5}}"#)), Err(Rejection::DurationNotInteger(_))));
        assert!(matches!(parse(&format!(r#"{{{BASE},"duration_seconds":"abc"}}"#)), Err(Rejection::DurationNotInteger(_))));
        assert_eq!(parse(&format!(r#"{{{BASE},"duration_seconds":-3}}"#)), Err(Rejection::DurationNegative(-3)));
        assert!(matches!(parse(r#"{"event_id":"e","#), Err(Rejection::InvalidJson(_))));
        assert_eq!(Rejection::DurationNegative(-3).field(), Some("duration_seconds"));
    }

    #[test]
    fn raw_numbers_never_survive_and_unknown_fields_are_counted() {
        let json = format!(r#"{{{BASE},"caller_number":"+15551234567","ani":"tel:+15550000000","colour":"red","metadata":{{"source_ip":"1.2.3.4","x":1}}}}"#);
        let parsed = parse_flat_event(json.as_bytes());
        let e = parsed.outcome.unwrap();
        assert_eq!(e.caller_number_masked.as_deref(), Some("+*******4567"));
        assert_eq!(parsed.unknown_fields, vec!["colour".to_string(), "metadata.x".to_string()]);
    }
}
