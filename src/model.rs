//! The lake's tables as definitions: each table's folder name under the lake root, Arrow
//! schema, partition columns, sort columns, merge policy and sensitivity. The writer,
//! compaction, the read side and the access policy read these; none of them is below another.
//!
//! Every row of a table that is not append-only carries its delivery (`source_object`,
//! `source_modified_at`, `source_line`): merges compare them so the latest delivery wins
//! whatever order objects are read in.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Where a row was delivered, and the one home of "latest delivery wins": a later
/// last-modified time of the source object wins, then (same time) the greater object name,
/// then the later position in the object. The derived order is that rule (fields in that
/// order); [`Delivery::SOURCE_IS_NEWER`] is the same rule in SQL for MERGE conditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Delivery<'a> {
    /// The source object's last-modified time, µs since the epoch (`source_modified_at`).
    pub modified_at: i64,
    /// The source object's URL (`source_object`).
    pub object: Cow<'a, str>,
    /// The 1-based line the record starts on (`source_line`).
    pub line: i64,
}

impl Delivery<'_> {
    /// The columns every delivered row carries.
    pub const COLUMNS: [&'static str; 3] = ["source_object", "source_modified_at", "source_line"];

    /// The ordering as a MERGE condition: the `source` row is a later delivery than `target`.
    pub const SOURCE_IS_NEWER: &'static str = "source.source_modified_at > target.source_modified_at \
        OR (source.source_modified_at = target.source_modified_at \
            AND (source.source_object > target.source_object \
                 OR (source.source_object = target.source_object \
                     AND source.source_line > target.source_line)))";

    pub fn into_owned(self) -> Delivery<'static> {
        Delivery { modified_at: self.modified_at, object: Cow::Owned(self.object.into_owned()), line: self.line }
    }
}

/// FNV-1a of a key: stable across releases and platforms, which a stored hash must be.
/// Collisions only widen the set of partitions a merge reads; the match itself is on the key.
pub fn key_hash(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Columns of codes (states, types, directions, purposes, metric names), in whichever
/// tables have them: their values are a closed vocabulary by shape
/// ([`crate::ingest::coerce::closed_token`]), and the ingest report counts the values that
/// were not kept.
pub const CODE_COLUMNS: &[&str] = &[
    "interaction_type",
    "direction",
    "state",
    "purpose",
    "media_type",
    "originating_direction",
    "disconnect_type",
    "segment_type",
    "flow_type",
    "acd_outcome",
    "event_type",
    "name",
];

/// Who may read a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sensitivity {
    /// Masked at ingest: every role reads it.
    Analytics,
    /// Holds personal or company data kept unmasked (recording URLs, agents' e-mail
    /// addresses): auditors only, not even listed to others.
    Restricted,
}

/// How a commit merges new rows into a table: what "latest delivery wins" means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergePolicy {
    /// Rows are only added; a re-run after a crash adds nothing twice (quarantined records
    /// are keyed by their delivery, `ingest_log` rows are written once per object version).
    AppendOnly,
    /// One row per `key`: the latest delivery of it wins, whatever order objects are read
    /// in. `key_hash` is a 64-bit hash of the key stored beside it, so that finding which
    /// partitions hold a batch's keys reads one narrow column. With `present_when`, a row
    /// exists only while that column is not null in the winning delivery (a later delivery
    /// without a recording URL removes the recording). With `decided_by`, which delivery wins
    /// is decided by that table (keyed alike), not by this one: a key this table holds no
    /// row of (its winner had no recording) must not take an older delivery's row.
    UpsertLatest {
        key: &'static str,
        key_hash: Option<&'static str>,
        present_when: Option<&'static str>,
        decided_by: Option<LakeTable>,
    },
    /// Rows belong to an aggregate identified by `key` (every row of a conversation): the
    /// latest delivery of the aggregate, as recorded in its `root` table, replaces all of the
    /// aggregate's rows in every table of it at once, so no row of an earlier version stays.
    ReplaceAggregate { root: LakeTable, key: &'static str },
}

/// One of the lake's tables. The definitions (name, schema, partitioning, sort columns,
/// merge policy, sensitivity) are data the writer, compaction, the catalog and the access
/// policy read; none of them names a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LakeTable {
    FactInteractions,
    CallRecordings,
    Quarantine,
    IngestLog,
    Conversations,
    ParticipantSessions,
    SessionSegments,
    SessionMetrics,
    ConversationEvents,
    Queues,
    Users,
    UserContacts,
    WrapupCodes,
    AgentIdentities,
}

/// A table's definition.
#[derive(Debug)]
pub struct TableDefinition {
    pub name: &'static str,
    pub partition_columns: &'static [&'static str],
    /// The columns compaction sorts a partition's rows by; none: files are only merged.
    pub sort_columns: &'static [&'static str],
    pub merge: MergePolicy,
    pub sensitivity: Sensitivity,
    /// Columns whose values are nearly all distinct (ids, hashes, exact times): written
    /// without a Parquet dictionary, which would be built only to be given up.
    pub plain_columns: &'static [&'static str],
    /// Columns of random values (UUIDs, hashes): each file's minimum and maximum of them
    /// span nearly all values and prune nothing, so they are written without statistics.
    pub random_columns: &'static [&'static str],
    schema: fn() -> Vec<Field>,
}

const EVENT_ID: MergePolicy =
    MergePolicy::UpsertLatest { key: "event_id", key_hash: Some("event_key"), present_when: None, decided_by: None };
const CONVERSATION: MergePolicy = MergePolicy::ReplaceAggregate { root: LakeTable::Conversations, key: "conversation_id" };
const fn dimension(key: &'static str) -> MergePolicy {
    MergePolicy::UpsertLatest { key, key_hash: None, present_when: None, decided_by: None }
}

/// In the order of [`LakeTable`]'s variants.
static DEFINITIONS: [TableDefinition; 14] = [
    TableDefinition {
        name: "fact_interactions",
        partition_columns: &["event_date", "queue_name"],
        sort_columns: &["event_timestamp"],
        merge: EVENT_ID,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["event_id", "interaction_id", "event_key", "event_timestamp", "created_at"],
        random_columns: &["event_id", "interaction_id", "event_key"],
        schema: fact_interactions_schema,
    },
    TableDefinition {
        name: "call_recordings",
        partition_columns: &["event_date"],
        sort_columns: &["event_timestamp"],
        merge: MergePolicy::UpsertLatest {
            key: "event_id",
            key_hash: Some("event_key"),
            present_when: Some("recording_url"),
            decided_by: Some(LakeTable::FactInteractions),
        },
        sensitivity: Sensitivity::Restricted,
        plain_columns: &["event_id", "interaction_id", "event_key", "event_timestamp"],
        random_columns: &["event_id", "interaction_id", "event_key"],
        schema: call_recordings_schema,
    },
    TableDefinition {
        name: "quarantine",
        partition_columns: &[],
        sort_columns: &[],
        merge: MergePolicy::AppendOnly,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &[],
        random_columns: &[],
        schema: quarantine_schema,
    },
    TableDefinition {
        name: "ingest_log",
        partition_columns: &[],
        sort_columns: &[],
        merge: MergePolicy::AppendOnly,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &[],
        random_columns: &[],
        schema: ingest_log_schema,
    },
    // Conversation tables are partitioned by the conversation's start date: it never changes
    // between exports of a conversation, so a replacement finds the earlier version's rows in
    // the same partition, and reports over a date range prune by it (metrics are emitted
    // within hours of the start; views bucket them by emit_date).
    TableDefinition {
        name: "conversations",
        partition_columns: &["conversation_date"],
        sort_columns: &["conversation_start"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "conversation_start", "conversation_end"],
        random_columns: &[],
        schema: conversations_schema,
    },
    TableDefinition {
        name: "participant_sessions",
        partition_columns: &["conversation_date"],
        sort_columns: &["conversation_start", "conversation_id"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "participant_id", "session_id", "session_start", "session_end", "conversation_start"],
        random_columns: &[],
        schema: participant_sessions_schema,
    },
    TableDefinition {
        name: "session_segments",
        partition_columns: &["conversation_date"],
        sort_columns: &["segment_start"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "participant_id", "session_id", "segment_start", "segment_end"],
        random_columns: &[],
        schema: session_segments_schema,
    },
    TableDefinition {
        name: "session_metrics",
        partition_columns: &["conversation_date"],
        sort_columns: &["emit_date"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "participant_id", "session_id", "emit_date"],
        random_columns: &[],
        schema: session_metrics_schema,
    },
    TableDefinition {
        name: "conversation_events",
        partition_columns: &["event_date"],
        sort_columns: &["event_time"],
        merge: EVENT_ID,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["event_id", "event_time"],
        random_columns: &[],
        schema: conversation_events_schema,
    },
    TableDefinition {
        name: "queues",
        partition_columns: &[],
        sort_columns: &[],
        merge: dimension("queue_id"),
        sensitivity: Sensitivity::Analytics,
        plain_columns: &[],
        random_columns: &[],
        schema: queues_schema,
    },
    TableDefinition {
        name: "users",
        partition_columns: &[],
        sort_columns: &[],
        merge: dimension("user_id"),
        sensitivity: Sensitivity::Analytics,
        plain_columns: &[],
        random_columns: &[],
        schema: users_schema,
    },
    // Agents' e-mail addresses are company data, kept for auditors only: a table of their
    // own, so the table-level access policy covers them.
    TableDefinition {
        name: "user_contacts",
        partition_columns: &[],
        sort_columns: &[],
        merge: dimension("user_id"),
        sensitivity: Sensitivity::Restricted,
        plain_columns: &[],
        random_columns: &[],
        schema: user_contacts_schema,
    },
    TableDefinition {
        name: "wrapup_codes",
        partition_columns: &[],
        sort_columns: &[],
        merge: dimension("wrapup_code_id"),
        sensitivity: Sensitivity::Analytics,
        plain_columns: &[],
        random_columns: &[],
        schema: wrapup_codes_schema,
    },
    // The agent behind each pseudonym of an e-mail-shaped `agent_id` (ingest::pseudonym):
    // auditors only, as `user_contacts`.
    TableDefinition {
        name: "agent_identities",
        partition_columns: &[],
        sort_columns: &[],
        merge: dimension("agent_id"),
        sensitivity: Sensitivity::Restricted,
        plain_columns: &[],
        random_columns: &[],
        schema: agent_identities_schema,
    },
];

impl LakeTable {
    pub const ALL: [LakeTable; 14] = [
        LakeTable::FactInteractions,
        LakeTable::CallRecordings,
        LakeTable::Quarantine,
        LakeTable::IngestLog,
        LakeTable::Conversations,
        LakeTable::ParticipantSessions,
        LakeTable::SessionSegments,
        LakeTable::SessionMetrics,
        LakeTable::ConversationEvents,
        LakeTable::Queues,
        LakeTable::Users,
        LakeTable::UserContacts,
        LakeTable::WrapupCodes,
        LakeTable::AgentIdentities,
    ];

    /// The tables of the first release: every lake has them.
    pub const IN_EVERY_LAKE: [LakeTable; 4] =
        [LakeTable::FactInteractions, LakeTable::CallRecordings, LakeTable::Quarantine, LakeTable::IngestLog];

    pub fn definition(self) -> &'static TableDefinition {
        &DEFINITIONS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.definition().name
    }

    pub fn sensitivity(self) -> Sensitivity {
        self.definition().sensitivity
    }

    pub fn sort_columns(self) -> &'static [&'static str] {
        self.definition().sort_columns
    }

    pub fn partition_columns(self) -> &'static [&'static str] {
        self.definition().partition_columns
    }

    pub fn plain_columns(self) -> &'static [&'static str] {
        self.definition().plain_columns
    }

    pub fn random_columns(self) -> &'static [&'static str] {
        self.definition().random_columns
    }

    pub fn merge_policy(self) -> MergePolicy {
        self.definition().merge
    }

    /// The table whose `version` each `ingest_log` row records (`fact_version`): the version
    /// a batch's objects went into.
    pub const LOGGED_VERSION_OF: LakeTable = LakeTable::FactInteractions;

    /// The tables whose winning deliveries `self` decides ([`MergePolicy::UpsertLatest`]'s
    /// `decided_by`).
    pub fn decides_for(self) -> Vec<LakeTable> {
        LakeTable::ALL
            .into_iter()
            .filter(|t| matches!(t.merge_policy(), MergePolicy::UpsertLatest { decided_by: Some(d), .. } if d == self))
            .collect()
    }

    /// The tables whose rows belong to the aggregate rooted at `self` (itself first).
    pub fn aggregate_members(self) -> Vec<LakeTable> {
        LakeTable::ALL
            .into_iter()
            .filter(|t| matches!(t.merge_policy(), MergePolicy::ReplaceAggregate { root, .. } if root == self))
            .collect()
    }

    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| {
            DEFINITIONS.iter().map(|d| Arc::new(Schema::new((d.schema)()))).collect()
        });
        schemas[self as usize].clone()
    }

    pub fn by_name(name: &str) -> Option<LakeTable> {
        LakeTable::ALL.into_iter().find(|t| t.name() == name)
    }
}

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
fn delivery_fields() -> [Field; 3] {
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

fn fact_interactions_schema() -> Vec<Field> {
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

fn call_recordings_schema() -> Vec<Field> {
    with_delivery(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("interaction_id", DataType::Utf8, false),
        Field::new("event_timestamp", timestamp(), false),
        Field::new("recording_url", DataType::Utf8, true),
        Field::new("event_date", DataType::Date32, false),
        Field::new("event_key", DataType::Int64, false),
    ])
}

fn quarantine_schema() -> Vec<Field> {
    let mut fields = delivery_fields().to_vec();
    fields.extend([
        Field::new("reason", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("record", DataType::Utf8, false),
    ]);
    fields
}

fn ingest_log_schema() -> Vec<Field> {
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

fn conversations_schema() -> Vec<Field> {
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

fn participant_sessions_schema() -> Vec<Field> {
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

fn session_segments_schema() -> Vec<Field> {
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

fn session_metrics_schema() -> Vec<Field> {
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

fn conversation_events_schema() -> Vec<Field> {
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

fn queues_schema() -> Vec<Field> {
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

fn users_schema() -> Vec<Field> {
    with_delivery(vec![
        required_text("user_id"),
        text("user_name"),
        text("department"),
        text("title"),
        text("division_id"),
        text("state"),
    ])
}

fn user_contacts_schema() -> Vec<Field> {
    with_delivery(vec![required_text("user_id"), text("email")])
}

/// `agent_id` is the pseudonym `fact_interactions.agent_id` holds; `identity` the id as
/// exported.
fn agent_identities_schema() -> Vec<Field> {
    with_delivery(vec![required_text("agent_id"), text("identity")])
}

fn wrapup_codes_schema() -> Vec<Field> {
    with_delivery(vec![required_text("wrapup_code_id"), text("wrapup_code_name"), text("division_id")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(modified_at: i64, object: &str, line: i64) -> Delivery<'_> {
        Delivery { modified_at, object: Cow::Borrowed(object), line }
    }

    #[test]
    fn the_latest_delivery_is_the_greatest() {
        // Time first, whatever the name; then the name; then the line.
        assert!(delivery(2, "a", 1) > delivery(1, "z", 9));
        assert!(delivery(1, "b", 1) > delivery(1, "a", 9));
        assert!(delivery(1, "a", 2) > delivery(1, "a", 1));
        assert_eq!(delivery(1, "a", 1), delivery(1, "a", 1).into_owned());
        let fields: Vec<String> = delivery_fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(fields, Delivery::COLUMNS);
    }

    #[test]
    fn definitions_are_consistent() {
        for (i, table) in LakeTable::ALL.into_iter().enumerate() {
            assert_eq!(table as usize, i);
            let schema = table.schema();
            let columns = table.partition_columns().iter().chain(table.sort_columns()).chain(table.plain_columns());
            for column in columns {
                assert!(schema.field_with_name(column).is_ok(), "{}.{column}", table.name());
            }
            match table.merge_policy() {
                MergePolicy::AppendOnly => {}
                MergePolicy::UpsertLatest { key, key_hash, present_when, decided_by } => {
                    for column in [Some(key), key_hash, present_when].into_iter().flatten() {
                        assert!(schema.field_with_name(column).is_ok(), "{}.{column}", table.name());
                    }
                    // The deciding table decides for itself, by the same key.
                    if let Some(decider) = decided_by {
                        assert!(matches!(decider.merge_policy(),
                            MergePolicy::UpsertLatest { key: k, decided_by: None, .. } if k == key));
                    }
                }
                MergePolicy::ReplaceAggregate { root, key } => {
                    assert!(schema.field_with_name(key).is_ok());
                    // Members share the root's partitioning, so one predicate finds an
                    // aggregate's rows in all of them.
                    assert_eq!(table.partition_columns(), root.partition_columns());
                }
            }
            if table.merge_policy() != MergePolicy::AppendOnly {
                for column in Delivery::COLUMNS {
                    assert!(schema.field_with_name(column).is_ok(), "{}.{column}", table.name());
                }
            }
            assert_eq!(LakeTable::by_name(table.name()), Some(table));
        }
        assert_eq!(LakeTable::Conversations.aggregate_members()[0], LakeTable::Conversations);
        assert_eq!(LakeTable::Conversations.aggregate_members().len(), 4);
    }
}
