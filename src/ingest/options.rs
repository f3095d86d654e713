//! How export objects are parsed: the pass's options, and how often a parse looks at the
//! pass's stop.

use std::sync::Arc;

use super::source::ExpansionLimits;
use super::{pseudonym, queue_partitions, rows};

/// How export objects are parsed.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// How far a gzipped object may expand before it is refused.
    pub limits: ExpansionLimits,
    /// An agent id holding an e-mail address becomes its pseudonym under this key
    /// ([`pseudonym`]); without a key it is masked to its domain, and agents of one domain
    /// become one. [`crate::Lake`] always has the lake's key.
    pub agent_key: Option<Arc<pseudonym::PseudonymKey>>,
    /// The queues each day of `fact_interactions` holds and may hold
    /// ([`queue_partitions`]); without it, any number.
    pub queue_partitions: Option<Arc<queue_partitions::QueuePartitions>>,
    /// Parsing stops within a few records ([`StopCheck`]) once this is cancelled (the pass
    /// ended or was interrupted); the part being parsed is not handed over.
    pub stop: Option<tokio_util::sync::CancellationToken>,
    /// The room a part's partitions start with, learnt from the parts before it.
    pub partition_sizes: Arc<rows::PartitionSizes>,
}

impl ParseOptions {
    pub(super) fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
    }
}

/// When a parse looks at its [`ParseOptions::stop`] again: after [`StopCheck::RECORDS`]
/// records or [`StopCheck::BYTES`] of them, whichever comes first. The token takes a lock,
/// too dear to read per record (benches/README.md, "Why the code is so").
#[derive(Default)]
pub(super) struct StopCheck {
    records: u32,
    bytes: usize,
}

impl StopCheck {
    const RECORDS: u32 = 64;
    const BYTES: usize = 1 << 20;

    pub(super) fn stopped(&mut self, options: &ParseOptions, record_bytes: usize) -> bool {
        self.records += 1;
        self.bytes += record_bytes;
        if self.records < Self::RECORDS && self.bytes < Self::BYTES {
            return false;
        }
        *self = Self::default();
        options.stopped()
    }
}

