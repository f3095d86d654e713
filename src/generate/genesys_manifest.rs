//! What the Genesys-shaped generator wrote, and what a correct lake made from it reports:
//! the oracle the tests compare cclake's tables and KPI views with.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Genesys's queue KPIs for one queue name and UTC day (of each metric's emitDate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDay {
    pub n_offered: i64,
    pub n_answered: i64,
    pub n_answered_in_target: i64,
    pub n_abandoned: i64,
    pub n_handled: i64,
    pub n_transferred: i64,
    pub t_handle_ms: i64,
    pub t_answered_ms: i64,
}

/// What was written and what a correct lake made from it reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenesysManifest {
    pub files: usize,
    pub bytes: u64,
    /// Distinct conversations in details exports: rows of `conversations`.
    pub conversations: usize,
    /// Of those, exported first while active and again after wrap-up.
    pub exported_twice: usize,
    /// Conversations known only from EventBridge: rows of `conversations_live`.
    pub live_conversations: usize,
    /// Distinct EventBridge envelope ids: rows of `conversation_events`.
    pub events: usize,
    /// Envelopes delivered twice.
    pub redelivered_events: usize,
    /// Metrics of the final versions: rows of `session_metrics`.
    pub metrics: usize,
    /// `queue_daily_metrics` by queue name, media type, then UTC day (`YYYY-MM-DD`).
    pub queue_daily: BTreeMap<String, BTreeMap<String, BTreeMap<String, QueueDay>>>,
    /// Some of the callers' numbers written unmasked: none may appear in the lake.
    pub unmasked_numbers: Vec<String>,
}

impl GenesysManifest {
    pub fn summary(&self, folder: &Path) -> String {
        format!(
            "wrote {} Genesys-shaped files ({:.1} MB: {} conversations, {} exported twice, {} live, {} EventBridge events) to {}",
            self.files,
            self.bytes as f64 / 1e6,
            self.conversations,
            self.exported_twice,
            self.live_conversations,
            self.events,
            folder.display()
        )
    }
}
