//! Every table's columns, in the order of [`super::LakeTable`]'s definitions.

use arrow::datatypes::{DataType, Field, TimeUnit};

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn required_text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn time(name: &str) -> Field {
    Field::new(name, timestamp(), true)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

/// The fields of [`Delivery::COLUMNS`].
pub(super) fn delivery_fields() -> [Field; 3] {
    [
        Field::new("source_object", DataType::Utf8, false),
        Field::new("source_modified_at", timestamp(), false),
        Field::new("source_line", DataType::Int64, false),
    ]
}

fn with_delivery(mut fields: Vec<Field>) -> Vec<Field> {
    fields.extend(delivery_fields());
    fields
}

pub(super) fn fact_interactions_schema() -> Vec<Field> {
    with_delivery(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("event_timestamp", timestamp(), false),
        Field::new("interaction_type", DataType::Utf8, true),
        Field::new("direction", DataType::Utf8, true),
        Field::new("state", DataType::Utf8, true),
        Field::new("duration_seconds", DataType::Int64, true),
        Field::new("queue_name", DataType::Utf8, true),
        Field::new("agent_id", DataType::Utf8, true),
        Field::new("source_system", DataType::Utf8, false),
        Field::new("created_at", timestamp(), false),
        Field::new("event_date", DataType::Date32, false),
        Field::new("caller_number_masked", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        // 64-bit hash of event_id: finding which partitions already hold a batch's events
        // reads this one narrow column instead of the string ids.
        Field::new("event_key", DataType::Int64, false),
    ])
}

pub(super) fn call_recordings_schema() -> Vec<Field> {
    with_delivery(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("event_timestamp", timestamp(), false),
        Field::new("recording_url", DataType::Utf8, true),
        Field::new("event_date", DataType::Date32, false),
        Field::new("event_key", DataType::Int64, false),
    ])
}

pub(super) fn quarantine_schema() -> Vec<Field> {
    let mut fields = delivery_fields().to_vec();
    fields.extend([
        Field::new("reason", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
    ]);
    fields
}

pub(super) fn ingest_log_schema() -> Vec<Field> {
    vec![
        Field::new("source_object", DataType::Utf8, false),
        Field::new("source_size", DataType::Int64, false),
        Field::new("source_etag", DataType::Utf8, false),
        Field::new("source_modified_at", timestamp(), false),
        Field::new("format", DataType::Utf8, true),
        Field::new("gzipped", DataType::Boolean, false),
        Field::new("records_read", DataType::Int64, false),
        Field::new("records_valid", DataType::Int64, false),
        Field::new("records_quarantined", DataType::Int64, false),
        Field::new("fact_version", DataType::Int64, false),
        Field::new("committed_at", timestamp(), false),
        // Null: the row completes the object. A count: a part of a large object, committed
        // with the object's records up to that many; a pass that finds no completing row
        // resumes after them.
        Field::new("through_record", DataType::Int64, true),
    ]
}

fn conversation_date() -> Field {
    Field::new("conversation_date", DataType::Date32, false)
}

pub(super) fn conversations_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("conversation_id"),
        Field::new("conversation_start", timestamp(), false),
        // Null while the conversation is active.
        time("conversation_end"),
        text("originating_direction"),
        // Comma-separated: BI tools over JDBC read text more reliably than lists.
        text("division_ids"),
        text("media_types"),
        Field::new("min_mos", DataType::Float64, true),
        Field::new("min_r_factor", DataType::Float64, true),
        text("external_tag"),
        conversation_date(),
    ])
}

pub(super) fn participant_sessions_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("conversation_id"),
        required_text("participant_id"),
        required_text("session_id"),
        text("participant_name"),
        text("purpose"),
        text("user_id"),
        text("external_contact_id"),
        text("media_type"),
        text("direction"),
        text("ani"),
        text("dnis"),
        text("session_dnis"),
        text("remote"),
        text("remote_name_displayable"),
        text("address_from"),
        text("address_to"),
        Field::new("recording", DataType::Boolean, true),
        text("provider"),
        // The first queue among the session's segments (Genesys puts queues on segments).
        text("queue_id"),
        text("flow_id"),
        text("flow_name"),
        text("flow_type"),
        text("flow_entry_reason"),
        text("flow_exit_reason"),
        text("flow_transfer_type"),
        // The last segment's disconnect type.
        text("disconnect_type"),
        time("session_start"),
        time("session_end"),
        Field::new("conversation_start", timestamp(), false),
        conversation_date(),
    ])
}

pub(super) fn session_segments_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("conversation_id"),
        required_text("participant_id"),
        required_text("session_id"),
        Field::new("segment_index", DataType::Int64, false),
        text("purpose"),
        text("user_id"),
        text("media_type"),
        text("segment_type"),
        Field::new("segment_start", timestamp(), false),
        time("segment_end"),
        text("queue_id"),
        text("wrapup_code"),
        text("disconnect_type"),
        Field::new("conference", DataType::Boolean, true),
        text("error_code"),
        conversation_date(),
    ])
}

pub(super) fn session_metrics_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("conversation_id"),
        required_text("participant_id"),
        required_text("session_id"),
        text("purpose"),
        text("user_id"),
        text("queue_id"),
        text("media_type"),
        // Any name Genesys sends lands: a metric added tomorrow needs no code change.
        required_text("name"),
        // `t*` milliseconds, `n*` counts.
        Field::new("value", DataType::Int64, false),
        // When Genesys counts the metric (its `emitDate`): KPIs are bucketed by it.
        Field::new("emit_date", timestamp(), false),
        conversation_date(),
    ])
}

pub(super) fn conversation_events_schema() -> Vec<Field> {
    with_delivery(vec![
        // The EventBridge envelope's id: re-deliveries of an event share it.
        required_text("event_id"),
        // The topic's last parts (`user.end`, `acw`); unknown topics are kept as they are.
        text("event_type"),
        required_text("topic_name"),
        Field::new("event_time", timestamp(), false),
        Field::new("event_date", DataType::Date32, false),
        text("conversation_id"),
        text("participant_id"),
        text("session_id"),
        text("media_type"),
        text("direction"),
        text("ani"),
        text("dnis"),
        text("user_id"),
        text("queue_id"),
        text("disconnect_type"),
        text("acd_outcome"),
        text("answered_user_id"),
        text("wrapup_code"),
        int("interacting_duration_ms"),
        int("held_duration_ms"),
        int("alerting_duration_ms"),
        int("wrapup_duration_ms"),
        // The whole event body as JSON, masked: fields of topics cclake does not model yet.
        text("event_body"),
        Field::new("event_key", DataType::Int64, false),
    ])
}

pub(super) fn queues_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("queue_id"),
        text("queue_name"),
        text("division_id"),
        // `mediaSettings.<media>.serviceLevel.durationMs`: the queue's service-level target
        // per media; null when the export does not say (views use the default then).
        int("service_level_call_ms"),
        int("service_level_callback_ms"),
        int("service_level_chat_ms"),
        int("service_level_email_ms"),
        int("service_level_message_ms"),
    ])
}

pub(super) fn users_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("user_id"),
        text("user_name"),
        text("department"),
        text("title"),
        text("division_id"),
        text("state"),
    ])
}

pub(super) fn user_contacts_schema() -> Vec<Field> {
    with_delivery(vec![required_text("user_id"), text("email")])
}

/// `agent_id` is the pseudonym `fact_interactions.agent_id` holds; `identity` the id as
/// exported.
pub(super) fn agent_identities_schema() -> Vec<Field> {
    with_delivery(vec![required_text("agent_id"), text("identity")])
}

pub(super) fn access_log_schema() -> Vec<Field> {
    vec![
        Field::new("accessed_at", timestamp(), false),
        Field::new("access_date", DataType::Date32, false),
        required_text("user_name"),
        required_text("role"),
        required_text("protocol"),
        required_text("statement"),
        text("tables_read"),
        Field::new("rows_returned", DataType::Int64, false),
        Field::new("bytes_returned", DataType::Int64, false),
        required_text("outcome"),
        text("error"),
        Field::new("duration_ms", DataType::Int64, false),
    ]
}

pub(super) fn wrapup_codes_schema() -> Vec<Field> {
    with_delivery(vec![required_text("wrapup_code_id"), text("wrapup_code_name"), text("division_id")])
}
