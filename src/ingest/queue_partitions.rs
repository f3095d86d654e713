//! How many queues a day of `fact_interactions` may hold. Queue names are partition values:
//! each queue of each day is a folder and at least one file, and the commit's log names every
//! file. A real contact center has tens to a few thousand queues; an export whose queue names
//! explode (a conversation id or a customer's text in the field) would otherwise make a lake
//! of 100,000 folders, every later commit and query paying for them. So a pass admits a queue
//! partition that the day already holds, or a new one while the day holds fewer than the
//! limit; a record of a queue past it is quarantined (`too_many_partitions`), kept whole, and
//! the rest lands.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Queues a day may hold by default (`--max-queues-per-day`).
pub const DEFAULT_MAX_QUEUES_PER_DAY: usize = 5_000;

/// The queue partitions of `fact_interactions`, by day (days since the epoch), shared by the
/// parsers of a pass.
#[derive(Debug)]
pub struct QueuePartitions {
    limit: usize,
    days: Mutex<HashMap<i32, HashSet<Box<str>>>>,
}

impl QueuePartitions {
    /// The partitions a table already holds (each file's `event_date` and `queue_name`).
    pub fn new(limit: usize, existing: impl IntoIterator<Item = (i32, String)>) -> Self {
        let mut days: HashMap<i32, HashSet<Box<str>>> = HashMap::new();
        for (day, queue) in existing {
            days.entry(day).or_default().insert(queue.into_boxed_str());
        }
        Self { limit, days: Mutex::new(days) }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether a row of `queue` on `day` may be stored: its partition exists, or the day has
    /// room for one more (which is counted). A row without a queue is always stored.
    pub fn admit(&self, day: i32, queue: Option<&str>) -> bool {
        let Some(queue) = queue else { return true };
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let queues = days.entry(day).or_default();
        if queues.contains(queue) {
            return true;
        }
        if queues.len() >= self.limit {
            return false;
        }
        queues.insert(queue.into());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_admits_its_queues_and_new_ones_up_to_the_limit() {
        let partitions = QueuePartitions::new(3, [(1, "A".to_string()), (1, "B".to_string()), (2, "A".to_string())]);
        assert!(partitions.admit(1, Some("A")), "a queue the day holds");
        assert!(partitions.admit(1, Some("C")), "the third queue of day 1");
        assert!(!partitions.admit(1, Some("D")), "a fourth is past the limit");
        assert!(partitions.admit(1, Some("C")), "an admitted queue stays admitted");
        assert!(partitions.admit(1, None), "no queue: always stored");
        assert!(partitions.admit(2, Some("D")) && partitions.admit(2, Some("E")), "another day has its own room");
        assert!(!partitions.admit(2, Some("F")));
    }
}
