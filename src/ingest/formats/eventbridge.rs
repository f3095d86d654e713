//! Streaming detail events as Amazon EventBridge delivers them (GENESYS.md §3): an envelope
//! (`id`, `detail-type`, `time`, `detail`) around `detail.topicName` and `detail.eventBody`.
//! One row of `conversation_events` per envelope `id` (a re-delivery replaces it). Every
//! topic lands, known or not: the body is kept whole (masked) in `event_body`, and the
//! fields of the documented topics get columns of their own.


use super::fields::{child, contact, enumeration, id, integer, object, required_id, text, time, utc_day};
use super::tree::{Object, Value};
use super::tree_format::{Decoded, TreeFormat};
use std::borrow::Cow;

use crate::ingest::coerce::Rejection;
use crate::ingest::mask::mask_json;
use crate::ingest::rows::{Cell, RecordRows};
use crate::model::{key_hash, LakeTable};

#[derive(Debug)]
pub struct EventBridge;

impl TreeFormat for EventBridge {
    fn name(&self) -> &'static str {
        "eventbridge"
    }

    fn sniff(&self, top: &Object<'_>) -> bool {
        top.contains_key("detail-type") && top.contains_key("detail")
    }

    fn decode<'v>(&self, record: &'v Value<'v>, each: &mut dyn FnMut(Decoded<'v>)) {
        each(Decoded { position: None, outcome: event(record), item: record });
    }
}

/// The part of a topic after the conversation id: `v2.detail.events.conversation.{id}.user.end`
/// → `user.end`. A topic of another shape is its own type.
fn event_type<'t>(topic: &'t str, conversation_id: Option<&str>) -> &'t str {
    const PREFIX: &str = "v2.detail.events.conversation.";
    let Some(rest) = topic.strip_prefix(PREFIX) else { return topic };
    match conversation_id.and_then(|id| rest.strip_prefix(id)) {
        Some(after) => after.trim_start_matches('.'),
        // No id to strip by: the id is the segment after the prefix.
        None => rest.split_once('.').map_or(rest, |(_, after)| after),
    }
}

fn event<'v>(value: &'v Value<'v>) -> Result<RecordRows<'v>, Rejection> {
    let envelope = object(value, "envelope")?;
    let event_id = required_id(envelope, "id", "id")?;
    let detail = child(envelope, "detail", "detail")?.ok_or(Rejection::MissingField("detail"))?;
    let topic = match text(detail, "topicName", "detail.topicName")? {
        Some(topic) => topic,
        None => text(envelope, "detail-type", "detail-type")?.ok_or(Rejection::MissingField("detail.topicName"))?,
    };
    // A topic without a body still lands, with the envelope's time.
    static NO_BODY: Object<'static> = Object::new();
    let body = child(detail, "eventBody", "detail.eventBody")?.unwrap_or(&NO_BODY);
    let event_time = match time(body, "eventTime", "detail.eventBody.eventTime")? {
        Some(t) => t,
        None => match time(detail, "timestamp", "detail.timestamp")? {
            Some(t) => t,
            None => time(envelope, "time", "time")?.ok_or(Rejection::MissingField("detail.eventBody.eventTime"))?,
        },
    };
    let conversation_id = id(body, "conversationId", "eventBody.conversationId")?;
    let event_type = crate::ingest::coerce::closed_token(Cow::Borrowed(event_type(&topic, conversation_id.as_deref()))).into_owned();
    // The topic holds the conversation id between codes: scrubbed as free text.
    let topic = match crate::ingest::mask::mask_field(&topic) {
        Cow::Borrowed(_) => topic,
        Cow::Owned(masked) => Cow::Owned(masked),
    };
    let body_text = {
        let mut masked = serde_json::Value::Object(body.to_serde());
        mask_json(&mut masked);
        masked.to_string()
    };
    let field = |key: &str, name: &'static str| id(body, key, name);
    let mut rows = RecordRows::default();
    rows.add(
        LakeTable::ConversationEvents,
        vec![
            ("event_id", Cell::Text(Some(event_id.clone()))),
            ("event_type", Cell::owned(Some(event_type))),
            ("topic_name", Cell::Text(Some(topic.clone()))),
            ("event_time", Cell::Time(Some(event_time))),
            ("event_date", Cell::Date(utc_day(event_time))),
            ("conversation_id", Cell::Text(conversation_id)),
            ("participant_id", Cell::Text(field("participantId", "eventBody.participantId")?)),
            ("session_id", Cell::Text(field("sessionId", "eventBody.sessionId")?)),
            ("media_type", Cell::Text(enumeration(body, "mediaType", "eventBody.mediaType")?)),
            ("direction", Cell::Text(enumeration(body, "direction", "eventBody.direction")?)),
            ("ani", Cell::Text(contact(body, "ani", "eventBody.ani")?)),
            ("dnis", Cell::Text(contact(body, "dnis", "eventBody.dnis")?)),
            ("user_id", Cell::Text(field("userId", "eventBody.userId")?)),
            ("queue_id", Cell::Text(field("queueId", "eventBody.queueId")?)),
            ("disconnect_type", Cell::Text(enumeration(body, "disconnectType", "eventBody.disconnectType")?)),
            ("acd_outcome", Cell::Text(enumeration(body, "acdOutcome", "eventBody.acdOutcome")?)),
            ("answered_user_id", Cell::Text(field("answeredUserId", "eventBody.answeredUserId")?)),
            ("wrapup_code", Cell::Text(field("wrapupCode", "eventBody.wrapupCode")?)),
            ("interacting_duration_ms", Cell::Int(integer(body, "interactingDurationMs", "eventBody.interactingDurationMs")?)),
            ("held_duration_ms", Cell::Int(integer(body, "heldDurationMs", "eventBody.heldDurationMs")?)),
            ("alerting_duration_ms", Cell::Int(integer(body, "alertingDurationMs", "eventBody.alertingDurationMs")?)),
            ("wrapup_duration_ms", Cell::Int(integer(body, "wrapupDurationMs", "eventBody.wrapupDurationMs")?)),
            ("event_body", Cell::owned(Some(body_text))),
            ("event_key", Cell::Int(Some(key_hash(&event_id)))),
        ],
    );
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_type_follows_the_conversation_id() {
        let topic = "v2.detail.events.conversation.c-1.user.end";
        assert_eq!(event_type(topic, Some("c-1")), "user.end");
        assert_eq!(event_type(topic, None), "user.end");
        assert_eq!(event_type("v2.detail.events.conversation.c-1.acw", Some("c-1")), "acw");
        assert_eq!(event_type("v2.something.else", None), "v2.something.else");
    }
}
