//! The lake's tables as definitions: each table's folder name under the lake root, Arrow
//! schema, partition columns, sort columns, merge policy and sensitivity. The writer,
//! compaction, the read side and the access policy read these; none of them is below another.
//!
//! Every row of a table that is not append-only carries its delivery (`source_object`,
//! `source_modified_at`, `source_line`): merges compare them so the latest delivery wins
//! whatever order objects are read in.

mod schemas;

use schemas::*;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{Field, Schema, SchemaRef};

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

impl MergePolicy {
    /// The column holding the hash of an upserted table's key, if it has one.
    pub fn key_hash(self) -> Option<&'static str> {
        match self {
            MergePolicy::UpsertLatest { key_hash, .. } => key_hash,
            _ => None,
        }
    }

    /// The column without which an upserted table's row does not exist, if it has one.
    pub fn present_when(self) -> Option<&'static str> {
        match self {
            MergePolicy::UpsertLatest { present_when, .. } => present_when,
            _ => None,
        }
    }
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
    AccessLog,
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
/// Genesys' conversation, participant and session ids: random UUIDs (a table without some of
/// them ignores their settings).
const CONVERSATION_IDS: &[&str] = &["conversation_id", "participant_id", "session_id"];
const fn dimension(key: &'static str) -> MergePolicy {
    MergePolicy::UpsertLatest { key, key_hash: None, present_when: None, decided_by: None }
}

/// In the order of [`LakeTable`]'s variants.
static DEFINITIONS: [TableDefinition; 15] = [
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
        // A recording's URL is its own (nearly distinct), and its minimum and maximum would
        // put URLs in the Delta log's statistics.
        plain_columns: &["event_id", "interaction_id", "event_key", "event_timestamp", "recording_url"],
        random_columns: &["event_id", "interaction_id", "event_key", "recording_url"],
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
        random_columns: CONVERSATION_IDS,
        schema: conversations_schema,
    },
    TableDefinition {
        name: "participant_sessions",
        partition_columns: &["conversation_date"],
        sort_columns: &["conversation_start", "conversation_id"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "participant_id", "session_id", "session_start", "session_end", "conversation_start"],
        random_columns: CONVERSATION_IDS,
        schema: participant_sessions_schema,
    },
    TableDefinition {
        name: "session_segments",
        partition_columns: &["conversation_date"],
        sort_columns: &["segment_start"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "participant_id", "session_id", "segment_start", "segment_end"],
        random_columns: CONVERSATION_IDS,
        schema: session_segments_schema,
    },
    TableDefinition {
        name: "session_metrics",
        partition_columns: &["conversation_date"],
        sort_columns: &["emit_date"],
        merge: CONVERSATION,
        sensitivity: Sensitivity::Analytics,
        plain_columns: &["conversation_id", "participant_id", "session_id", "emit_date"],
        random_columns: CONVERSATION_IDS,
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
    // Who read what over Flight SQL (server::access_log): auditors only. Written by the
    // server, not by ingest; dropped by retention with the other dated tables.
    TableDefinition {
        name: "access_log",
        partition_columns: &["access_date"],
        sort_columns: &["accessed_at"],
        merge: MergePolicy::AppendOnly,
        sensitivity: Sensitivity::Restricted,
        plain_columns: &["accessed_at", "statement"],
        random_columns: &[],
        schema: access_log_schema,
    },
];

impl LakeTable {
    pub const ALL: [LakeTable; 15] = [
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
        LakeTable::AccessLog,
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
