//! The write side's tunables.

use std::sync::Arc;

use super::lease::LeaseOptions;
use crate::ingest::pseudonym::PseudonymKey;
use crate::ingest::queue_partitions::DEFAULT_MAX_QUEUES_PER_DAY;
use crate::ingest::ExpansionLimits;

/// Tunables of the write side.
#[derive(Debug, Clone)]
pub struct LakeOptions {
    /// Rows per commit, all tables together (a flat event is two rows). Bounds the memory of
    /// a pass, whatever the input size.
    pub batch_rows: usize,
    /// Objects parsed at once (each on a blocking thread). Twice the cores by default: with
    /// one per core, a core sits idle whenever the next objects have finished and wait for
    /// a larger one.
    pub parallel_objects: usize,
    /// More objects are parsed ahead, up to 64 at once, while those ahead add up to less
    /// than this many bytes: many small objects keep both cores busy while a large one
    /// parses, and large objects stay at `parallel_objects` (memory bounded either way).
    pub lookahead_bytes: u64,
    /// Compact a partition automatically after a pass once it holds this many files.
    pub compact_min_files: usize,
    pub auto_compact: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// How far a gzipped object may expand before it is refused.
    pub expansion: ExpansionLimits,
    /// Objects larger than this are read as a stream and committed in parts of a quarter
    /// of `batch_rows` rows (`ingest_log` records how far each got), never held whole.
    pub stream_above_bytes: u64,
    /// The writer lease: how long a second writer waits, and how soon an abandoned lease
    /// expires.
    pub lease: LeaseOptions,
    /// The key of agent pseudonyms (`CCLAKE_PSEUDONYM_KEY`); without one, the lake makes
    /// its own on its first pass and keeps it ([`super::pseudonym_key`]).
    pub pseudonym_key: Option<Arc<PseudonymKey>>,
    /// Queues a day of `fact_interactions` may hold; a record of a queue past them is
    /// quarantined ([`crate::ingest::queue_partitions`]).
    pub max_queues_per_day: usize,
}

impl LakeOptions {
    /// Rows of one part of a streamed object.
    pub(crate) fn part_rows(&self) -> usize {
        (self.batch_rows / 4).max(1)
    }
}

impl Default for LakeOptions {
    fn default() -> Self {
        Self {
            batch_rows: 1_000_000,
            parallel_objects: std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
            lookahead_bytes: 32 << 20,
            compact_min_files: 16,
            auto_compact: true,
            progress: false,
            expansion: ExpansionLimits::default(),
            stream_above_bytes: 64 << 20,
            lease: LeaseOptions::default(),
            pseudonym_key: None,
            max_queues_per_day: DEFAULT_MAX_QUEUES_PER_DAY,
        }
    }
}

