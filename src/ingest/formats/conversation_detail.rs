//! Analytics conversation-detail records (GENESYS.md §2): a conversation, its participants,
//! their sessions, and each session's segments and metrics. A page of a details query
//! (`{"conversations":[...],"totalHits":N}`) or of an async job (`{"conversations":[...],
//! "cursor":...}`) yields one item per conversation; NDJSON exports have one conversation a
//! line.
//!
//! A conversation is one aggregate: rows in `conversations`, `participant_sessions`,
//! `session_segments` and `session_metrics`, which a later export of it replaces as a whole.
//! One bad field refuses the whole conversation (half a conversation would give wrong KPIs).

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::fields::{array, boolean, child, contact, decode_items, enumeration, float, id, integer, masked_text, object, required_id, required_time, text, time, utc_day};
use super::tree::{Object, Value};
use super::tree_format::{Decoded, TreeFormat};
use crate::ingest::coerce::Rejection;
use crate::ingest::mask::holds_personal_data;
use crate::ingest::rows::{Cell, RecordRows};
use crate::model::LakeTable;

#[derive(Debug)]
pub struct ConversationDetail;

impl TreeFormat for ConversationDetail {
    fn name(&self) -> &'static str {
        "conversation_detail"
    }

    fn sniff(&self, top: &Object<'_>) -> bool {
        matches!(top.get("conversations"), Some(Value::Array(_)))
            || (top.contains_key("conversationId") && (top.contains_key("participants") || top.contains_key("conversationStart")))
    }

    fn decode<'v>(&self, record: &'v Value<'v>, each: &mut dyn FnMut(Decoded<'v>)) {
        match record.get("conversations") {
            Some(Value::Array(items)) => {
                // Items of one page share its delivery: should a page list a conversation
                // twice, the later item is the one kept (two would both land). A page
                // without repeats (every page, nearly) hands each item out as it decodes;
                // one with repeats is decoded whole first, its items marked from the last.
                let mut ids = datafusion::common::HashSet::with_capacity(items.len());
                let repeats = items.iter().any(|c| c.get("conversationId").and_then(Value::as_str).is_some_and(|id| !ids.insert(id)));
                if !repeats {
                    return decode_items(items, "conversations", conversation, each);
                }
                let mut decoded = Vec::with_capacity(items.len());
                decode_items(items, "conversations", conversation, &mut |item| decoded.push(item));
                let mut seen = datafusion::common::HashSet::with_capacity(decoded.len());
                let mut keep: Vec<bool> = decoded
                    .iter()
                    .rev()
                    .map(|d| {
                        let id = d.item.get("conversationId").and_then(Value::as_str);
                        d.outcome.is_err() || id.is_none_or(|id| seen.insert(id))
                    })
                    .collect();
                keep.reverse();
                decoded.into_iter().zip(keep).filter(|(_, keep)| *keep).for_each(|(item, _)| each(item));
            }
            _ => each(Decoded { position: None, outcome: conversation(record), item: record }),
        }
    }
}

/// One conversation's rows.
/// Long: one field per line in the export's nesting (conversation, participants,
/// sessions, segments, metrics; GENESYS.md §2), the hot path of the Genesys shape.
pub fn conversation<'v>(value: &'v Value<'v>) -> Result<RecordRows<'v>, Rejection> {
    let c = object(value, "conversations[]")?;
    let conversation_id = required_id(c, "conversationId", "conversationId")?;
    let start = required_time(c, "conversationStart", "conversationStart")?;
    let end = time(c, "conversationEnd", "conversationEnd")?;
    let date = utc_day(start);
    let divisions = array(c, "divisionIds", "divisionIds")?
        .iter()
        .map(|d| d.as_str().map(str::trim).ok_or(Rejection::WrongType { field: "divisionIds", found: "non-string" }))
        .map(|d| d.and_then(|d| if holds_personal_data(d) { Err(Rejection::PersonalDataInId("divisionIds")) } else { Ok(d) }))
        .collect::<Result<Vec<_>, _>>()?;

    let mut rows = RecordRows::default();
    let mut media_types = BTreeSet::new();
    for p in array(c, "participants", "participants")? {
        let p = object(p, "participants[]")?;
        let participant_id = required_id(p, "participantId", "participants.participantId")?;
        let purpose = enumeration(p, "purpose", "participants.purpose")?;
        let user_id = id(p, "userId", "participants.userId")?;
        let participant_name = contact(p, "participantName", "participants.participantName")?;
        let external_contact_id = id(p, "externalContactId", "participants.externalContactId")?;
        for s in array(p, "sessions", "participants.sessions")? {
            let s = object(s, "participants.sessions[]")?;
            let session = Session {
                conversation_id: conversation_id.clone(),
                participant_id: participant_id.clone(),
                session_id: required_id(s, "sessionId", "sessions.sessionId")?,
                purpose: purpose.clone(),
                user_id: user_id.clone(),
                media_type: enumeration(s, "mediaType", "sessions.mediaType")?,
                date,
            };
            if let Some(media) = &session.media_type {
                media_types.insert(media.to_string());
            }
            let segments = session.segments(s, &mut rows)?;
            session.metrics(s, segments.queue_id.as_ref(), &mut rows)?;
            let flow = child(s, "flow", "sessions.flow")?;
            let flow_text = |key: &str, field: &'static str| -> Result<Option<Cow<'_, str>>, Rejection> {
                flow.map_or(Ok(None), |f| masked_text(f, key, field))
            };
            rows.add(
                LakeTable::ParticipantSessions,
                vec![
                    ("conversation_id", Cell::Text(Some(conversation_id.clone()))),
                    ("participant_id", Cell::Text(Some(participant_id.clone()))),
                    ("session_id", Cell::Text(Some(session.session_id.clone()))),
                    ("participant_name", Cell::Text(participant_name.clone())),
                    ("purpose", Cell::Text(purpose.clone())),
                    ("user_id", Cell::Text(user_id.clone())),
                    ("external_contact_id", Cell::Text(external_contact_id.clone())),
                    ("media_type", Cell::Text(session.media_type.clone())),
                    ("direction", Cell::Text(enumeration(s, "direction", "sessions.direction")?)),
                    ("ani", Cell::Text(contact(s, "ani", "sessions.ani")?)),
                    ("dnis", Cell::Text(contact(s, "dnis", "sessions.dnis")?)),
                    ("session_dnis", Cell::Text(contact(s, "sessionDnis", "sessions.sessionDnis")?)),
                    ("remote", Cell::Text(contact(s, "remote", "sessions.remote")?)),
                    (
                        "remote_name_displayable",
                        Cell::Text(contact(s, "remoteNameDisplayable", "sessions.remoteNameDisplayable")?),
                    ),
                    ("address_from", Cell::Text(contact(s, "addressFrom", "sessions.addressFrom")?)),
                    ("address_to", Cell::Text(contact(s, "addressTo", "sessions.addressTo")?)),
                    ("recording", Cell::Bool(boolean(s, "recording", "sessions.recording")?)),
                    ("provider", Cell::Text(masked_text(s, "provider", "sessions.provider")?)),
                    ("queue_id", Cell::Text(segments.queue_id.clone())),
                    ("flow_id", Cell::Text(flow.map_or(Ok(None), |f| id(f, "flowId", "sessions.flow.flowId"))?)),
                    ("flow_name", Cell::Text(flow_text("flowName", "sessions.flow.flowName")?)),
                    ("flow_type", Cell::Text(flow.map_or(Ok(None), |f| enumeration(f, "flowType", "sessions.flow.flowType"))?)),
                    (
                        "flow_entry_reason",
                        Cell::Text(flow.map_or(Ok(None), |f| contact(f, "entryReason", "sessions.flow.entryReason"))?),
                    ),
                    ("flow_exit_reason", Cell::Text(flow_text("exitReason", "sessions.flow.exitReason")?)),
                    ("flow_transfer_type", Cell::Text(flow_text("transferType", "sessions.flow.transferType")?)),
                    ("disconnect_type", Cell::Text(segments.disconnect_type)),
                    ("session_start", Cell::Time(segments.start)),
                    ("session_end", Cell::Time(segments.end)),
                    ("conversation_start", Cell::Time(Some(start))),
                    ("conversation_date", Cell::Date(date)),
                ],
            );
        }
    }
    rows.add(
        LakeTable::Conversations,
        vec![
            ("conversation_id", Cell::Text(Some(conversation_id))),
            ("conversation_start", Cell::Time(Some(start))),
            ("conversation_end", Cell::Time(end)),
            ("originating_direction", Cell::Text(enumeration(c, "originatingDirection", "originatingDirection")?)),
            ("division_ids", Cell::owned((!divisions.is_empty()).then(|| divisions.join(",")))),
            (
                "media_types",
                Cell::owned((!media_types.is_empty()).then(|| media_types.into_iter().collect::<Vec<_>>().join(","))),
            ),
            ("min_mos", Cell::Float(float(c, "mediaStatsMinConversationMos", "mediaStatsMinConversationMos")?)),
            ("min_r_factor", Cell::Float(float(c, "mediaStatsMinConversationRFactor", "mediaStatsMinConversationRFactor")?)),
            ("external_tag", Cell::Text(contact(c, "externalTag", "externalTag")?)),
            ("conversation_date", Cell::Date(date)),
        ],
    );
    Ok(rows)
}

/// What every row of a session carries.
struct Session<'v> {
    conversation_id: Cow<'v, str>,
    participant_id: Cow<'v, str>,
    session_id: Cow<'v, str>,
    purpose: Option<Cow<'v, str>>,
    user_id: Option<Cow<'v, str>>,
    media_type: Option<Cow<'v, str>>,
    date: i32,
}

/// What the segments say about their session.
struct SegmentSummary<'v> {
    /// The first queue among the segments: Genesys puts queues on segments only.
    queue_id: Option<Cow<'v, str>>,
    /// The last segment's disconnect type.
    disconnect_type: Option<Cow<'v, str>>,
    start: Option<i64>,
    end: Option<i64>,
}

impl<'v> Session<'v> {
    fn segments(&self, s: &'v Object<'v>, rows: &mut RecordRows<'v>) -> Result<SegmentSummary<'v>, Rejection> {
        let mut summary = SegmentSummary { queue_id: None, disconnect_type: None, start: None, end: None };
        for (index, g) in array(s, "segments", "sessions.segments")?.iter().enumerate() {
            let g = object(g, "sessions.segments[]")?;
            let start = required_time(g, "segmentStart", "segments.segmentStart")?;
            let end = time(g, "segmentEnd", "segments.segmentEnd")?;
            let queue_id = id(g, "queueId", "segments.queueId")?;
            let disconnect = enumeration(g, "disconnectType", "segments.disconnectType")?;
            summary.start = Some(summary.start.map_or(start, |s: i64| s.min(start)));
            summary.end = match (summary.end, end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if summary.queue_id.is_none() {
                summary.queue_id = queue_id.clone();
            }
            if disconnect.is_some() {
                summary.disconnect_type = disconnect.clone();
            }
            rows.add(
                LakeTable::SessionSegments,
                vec![
                    ("conversation_id", Cell::Text(Some(self.conversation_id.clone()))),
                    ("participant_id", Cell::Text(Some(self.participant_id.clone()))),
                    ("session_id", Cell::Text(Some(self.session_id.clone()))),
                    ("segment_index", Cell::Int(Some(index as i64))),
                    ("purpose", Cell::Text(self.purpose.clone())),
                    ("user_id", Cell::Text(self.user_id.clone())),
                    ("media_type", Cell::Text(self.media_type.clone())),
                    ("segment_type", Cell::Text(enumeration(g, "segmentType", "segments.segmentType")?)),
                    ("segment_start", Cell::Time(Some(start))),
                    ("segment_end", Cell::Time(end)),
                    ("queue_id", Cell::Text(queue_id)),
                    ("wrapup_code", Cell::Text(masked_text(g, "wrapUpCode", "segments.wrapUpCode")?)),
                    ("disconnect_type", Cell::Text(disconnect)),
                    ("conference", Cell::Bool(boolean(g, "conference", "segments.conference")?)),
                    ("error_code", Cell::Text(masked_text(g, "errorCode", "segments.errorCode")?)),
                    ("conversation_date", Cell::Date(self.date)),
                ],
            );
        }
        Ok(summary)
    }

    fn metrics(&self, s: &'v Object<'v>, queue_id: Option<&Cow<'v, str>>, rows: &mut RecordRows<'v>) -> Result<(), Rejection> {
        for m in array(s, "metrics", "sessions.metrics")? {
            let m = object(m, "sessions.metrics[]")?;
            // Metric names are codes (`tAnswered`): anything else is not kept as it is.
            let name = crate::ingest::coerce::closed_token(text(m, "name", "metrics.name")?.ok_or(Rejection::MissingField("metrics.name"))?);
            let value = integer(m, "value", "metrics.value")?.ok_or(Rejection::MissingField("metrics.value"))?;
            let emitted = required_time(m, "emitDate", "metrics.emitDate")?;
            rows.add(
                LakeTable::SessionMetrics,
                vec![
                    ("conversation_id", Cell::Text(Some(self.conversation_id.clone()))),
                    ("participant_id", Cell::Text(Some(self.participant_id.clone()))),
                    ("session_id", Cell::Text(Some(self.session_id.clone()))),
                    ("purpose", Cell::Text(self.purpose.clone())),
                    ("user_id", Cell::Text(self.user_id.clone())),
                    ("queue_id", Cell::Text(queue_id.cloned())),
                    ("media_type", Cell::Text(self.media_type.clone())),
                    ("name", Cell::Text(Some(name))),
                    ("value", Cell::Int(Some(value))),
                    ("emit_date", Cell::Time(Some(emitted))),
                    ("conversation_date", Cell::Date(self.date)),
                ],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_listed_twice_in_a_page_keeps_its_later_item() {
        let arena = bumpalo::Bump::new();
        let record_text = serde_json::json!({"conversations": [
            {"conversationId": "c1", "conversationStart": "2024-03-04T09:00:00Z"},
            {"conversationId": "c1", "conversationStart": "2024-03-04T09:00:00Z", "conversationEnd": "2024-03-04T09:05:00Z"},
        ]}).to_string();
        let record = crate::ingest::formats::tree::parse(record_text.as_bytes(), None, &arena).unwrap();
        let decoded = crate::ingest::formats::tree_format::decoded(&ConversationDetail, &record);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].position.as_deref(), Some("conversations[1]"));
    }

    #[test]
    fn a_missing_emit_date_refuses_the_whole_conversation_and_names_the_field() {
        let arena = bumpalo::Bump::new();
        let record_text = serde_json::json!({"conversations": [
            {"conversationId": "c1", "conversationStart": "2024-03-04T09:00:00Z", "participants": [
                {"participantId": "p1", "purpose": "agent", "sessions": [
                    {"sessionId": "s1", "mediaType": "voice", "metrics": [{"name": "tHandle", "value": 5}]}]}]},
            {"conversationId": "c2", "conversationStart": "2024-03-04T09:00:00Z"}
        ]}).to_string();
        let record = crate::ingest::formats::tree::parse(record_text.as_bytes(), None, &arena).unwrap();
        let decoded = crate::ingest::formats::tree_format::decoded(&ConversationDetail, &record);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].position.as_deref(), Some("conversations[0]"));
        let rejection = decoded[0].outcome.as_ref().unwrap_err();
        assert_eq!((rejection.code(), rejection.field()), ("missing_field", Some("metrics.emitDate")));
        let rows = decoded[1].outcome.as_ref().unwrap();
        assert_eq!(rows.rows.len(), 1);
        assert_eq!(rows.rows[0].0, LakeTable::Conversations);
    }
}
