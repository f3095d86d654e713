//! Statements planned per role, snapshot and SQL text, so dashboards that repeat a query
//! skip planning; bounded by count and by SQL bytes whatever clients send.

use datafusion::logical_expr::LogicalPlan;

use crate::access::Role;
use crate::query::read_model::SnapshotVersions;

/// Planned statements kept (per role, snapshot and SQL text).
const MAX_CACHED_PLANS: usize = 1024;
/// SQL text of the planned statements kept, all together: a plan takes tens of times its
/// text, so this bounds the cache at a few hundred MB whatever clients send.
const MAX_CACHED_SQL_BYTES: usize = 4 << 20;
/// A statement longer than this is planned each time: dashboards repeat short queries.
const MAX_CACHED_STATEMENT_BYTES: usize = 64 << 10;

/// A planned statement's key: the role, the snapshot versions it was planned against, its SQL.
pub(super) type PlanKey = (Role, SnapshotVersions, String);

/// Planned statements by role, snapshot and SQL, bounded by count and by SQL bytes.
#[derive(Debug, Default)]
pub(super) struct PlanCache(std::sync::Mutex<std::collections::HashMap<PlanKey, LogicalPlan>>);

impl PlanCache {
    pub(super) fn get(&self, key: &PlanKey) -> Option<LogicalPlan> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Keeps `plan` for `key`: plans of other snapshots go (they are not asked for again, and
    /// hold those snapshots); a statement past [`MAX_CACHED_STATEMENT_BYTES`] is not kept;
    /// past [`MAX_CACHED_PLANS`] plans or [`MAX_CACHED_SQL_BYTES`] of SQL the cache starts over.
    pub(super) fn keep(&self, key: PlanKey, plan: LogicalPlan) {
        let mut plans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        plans.retain(|(_, versions, _), _| *versions == key.1);
        if key.2.len() > MAX_CACHED_STATEMENT_BYTES {
            return;
        }
        let cached_bytes: usize = plans.keys().map(|(_, _, sql)| sql.len()).sum();
        if plans.len() >= MAX_CACHED_PLANS || cached_bytes + key.2.len() > MAX_CACHED_SQL_BYTES {
            plans.clear();
        }
        plans.insert(key, plan);
    }

    /// Plans kept, and the bytes of their SQL.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let plans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (plans.len(), plans.keys().map(|(_, _, sql)| sql.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::EmptyRelation;
    use std::sync::Arc;

    fn plan() -> LogicalPlan {
        LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: true, schema: Arc::new(datafusion::common::DFSchema::empty()) })
    }

    #[test]
    fn the_plan_cache_is_bounded_by_statement_and_total_sql_bytes_and_keeps_one_snapshot() {
        let cache = PlanCache::default();
        let v1 = vec![Some(1)];
        cache.keep((Role::Analyst, v1.clone(), "SELECT 1".into()), plan());
        cache.keep((Role::Auditor, v1.clone(), "SELECT 1".into()), plan());
        assert_eq!(cache.size(), (2, 16));
        assert!(cache.get(&(Role::Analyst, v1.clone(), "SELECT 1".into())).is_some());
        // A statement past 64 KB is planned each time, never kept.
        let long = format!("SELECT '{}'", "x".repeat(MAX_CACHED_STATEMENT_BYTES));
        cache.keep((Role::Analyst, v1.clone(), long.clone()), plan());
        assert!(cache.get(&(Role::Analyst, v1.clone(), long)).is_none());
        // 60 KB statements: the SQL kept never passes 4 MB, whatever arrives.
        for i in 0..200 {
            let sql = format!("SELECT {i} -- {}", "y".repeat(60 << 10));
            cache.keep((Role::Analyst, v1.clone(), sql), plan());
            let (_, bytes) = cache.size();
            assert!(bytes <= MAX_CACHED_SQL_BYTES, "{bytes} bytes of SQL kept after {i}");
        }
        // A new snapshot: the plans of the old one go.
        let v2 = vec![Some(2)];
        cache.keep((Role::Analyst, v2.clone(), "SELECT 2".into()), plan());
        assert_eq!(cache.size(), (1, 8));
    }
}
