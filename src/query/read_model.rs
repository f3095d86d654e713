//! The read model served to clients: the lake's tables (as a role may see them) and the views
//! defined in `sql/views/*.sql` (the file name is the view name), over the newest snapshot of
//! every table.
//!
//! Snapshots are refreshed when a session starts (at most every 200 ms): Delta's incremental
//! update reads only log entries newer than the cached version. The planned catalog of each
//! role is reused until a table's version changes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::catalog::TableProvider;
use datafusion::datasource::ViewTable;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig, FileMetadataCache};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use tracing::warn;

use super::as_of::AsOf;
use super::decoded::DecodedFiles;
use super::error::QueryError;
use crate::catalog::Catalog;
use crate::model::LakeTable;
use crate::access::Role;

/// A view: its name and the query it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDefinition {
    pub name: String,
    pub sql: String,
}

/// The views shipped with cclake, used when no views folder is given or found.
const BUILT_IN_VIEWS: &[(&str, &str)] = &[
    ("interactions", include_str!("../../sql/views/interactions.sql")),
    ("dim_queues", include_str!("../../sql/views/dim_queues.sql")),
    ("dim_agents", include_str!("../../sql/views/dim_agents.sql")),
    ("dim_date", include_str!("../../sql/views/dim_date.sql")),
    ("kpi_queue_daily", include_str!("../../sql/views/kpi_queue_daily.sql")),
    ("kpi_agent_daily", include_str!("../../sql/views/kpi_agent_daily.sql")),
    ("kpi_queue_hourly", include_str!("../../sql/views/kpi_queue_hourly.sql")),
    ("queue_names", include_str!("../../sql/views/queue_names.sql")),
    ("queue_session_metrics", include_str!("../../sql/views/queue_session_metrics.sql")),
    ("queue_daily_metrics", include_str!("../../sql/views/queue_daily_metrics.sql")),
    ("queue_interval_metrics", include_str!("../../sql/views/queue_interval_metrics.sql")),
    ("agent_daily_metrics", include_str!("../../sql/views/agent_daily_metrics.sql")),
    ("conversations_live", include_str!("../../sql/views/conversations_live.sql")),
];

/// Reads every `*.sql` file of `dir` as a view; without a folder, the built-in views.
pub fn load_views(dir: Option<&Path>) -> Result<Vec<ViewDefinition>, QueryError> {
    let Some(dir) = dir else {
        return Ok(BUILT_IN_VIEWS
            .iter()
            .map(|(name, sql)| ViewDefinition { name: name.to_string(), sql: sql.to_string() })
            .collect());
    };
    let read_err = |e: std::io::Error| QueryError::Views(format!("{}: {e}", dir.display()));
    let mut views = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sql = std::fs::read_to_string(&path).map_err(read_err)?;
            views.push(ViewDefinition { name, sql });
        }
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

/// How stale a snapshot may be before a new session looks for newer commits: well inside
/// the "visible within 1 s" promise, and it spares every RPC of a prepared-statement round
/// trip its own listing of four Delta logs.
const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// Each table's last snapshot, and when the snapshots were last refreshed.
type Snapshots = (Vec<(LakeTable, Option<DeltaTable>)>, Option<Instant>);
/// The version of each table a session sees (`None`: not created yet).
pub type SnapshotVersions = Vec<Option<i64>>;
/// A role's planned catalog and the table versions it was planned from.
type PlannedCatalogs = HashMap<Role, (SnapshotVersions, SessionState)>;

/// Tables and views over a lake, handed out as read-only sessions per role.
#[derive(Debug)]
pub struct ReadModel {
    catalog: Catalog,
    views: Vec<ViewDefinition>,
    /// The last snapshot of each table, updated incrementally, and when it was refreshed.
    tables: tokio::sync::Mutex<Snapshots>,
    /// Planned catalogs (tables and views) per role for the snapshot versions they were
    /// built from: planning seven views per query would dominate small queries.
    planned: tokio::sync::Mutex<PlannedCatalogs>,
    /// Memory one query may use before spilling (or failing where it cannot spill).
    memory_limit_bytes: usize,
    /// Parquet footers and page indexes read by earlier queries, shared by every planned
    /// catalog: Delta's data files never change under a name, so a query does not read them
    /// again.
    metadata_cache: Arc<FileMetadataCache>,
    /// The newest files decoded in memory, shared by every session (none: every query reads
    /// Parquet).
    decoded: Option<Arc<DecodedFiles>>,
}

impl ReadModel {
    /// A read model that reads every file from Parquet (the CLI's one-off queries).
    pub async fn new(
        catalog: Catalog,
        views: Vec<ViewDefinition>,
        memory_limit_bytes: usize,
    ) -> Result<Self, QueryError> {
        Self::new_with_decoded_cache(catalog, views, memory_limit_bytes, 0).await
    }

    /// A read model that keeps up to `decoded_cache_bytes` of the newest files decoded in
    /// memory (a server's: queries over them read no Parquet).
    pub async fn new_with_decoded_cache(
        catalog: Catalog,
        views: Vec<ViewDefinition>,
        memory_limit_bytes: usize,
        decoded_cache_bytes: usize,
    ) -> Result<Self, QueryError> {
        let tables = catalog.snapshots().await.map_err(|e| QueryError::Catalog(Box::new(e)))?;
        let model = Self {
            catalog,
            views,
            tables: tokio::sync::Mutex::new((tables, None)),
            planned: tokio::sync::Mutex::new(HashMap::new()),
            memory_limit_bytes,
            metadata_cache: CacheManager::try_new(&CacheManagerConfig::default())?.get_file_metadata_cache(),
            decoded: DecodedFiles::new(decoded_cache_bytes),
        };
        // Fail at start-up, not at the first query, when a view does not plan.
        let ctx = model.session(Role::Auditor).await?;
        for view in &model.views {
            if ctx.table_exist(view.name.as_str()).ok() != Some(true) {
                return Err(QueryError::Views(format!("view {} does not plan", view.name)));
            }
        }
        Ok(model)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn views(&self) -> &[ViewDefinition] {
        &self.views
    }

    /// Bytes of decoded files held in memory now.
    pub fn decoded_bytes(&self) -> usize {
        self.decoded.as_ref().map_or(0, |d| d.used_bytes())
    }

    /// Returns once the files of every snapshot planned so far are decoded in memory (those
    /// that fit), e.g. to warm a server up before measuring it.
    pub async fn decoded_settled(&self) {
        if let Some(decoded) = &self.decoded {
            decoded.settled().await;
        }
    }

    /// A session seeing every commit finished before this call (give or take the 200 ms
    /// refresh interval), with the tables and views `role` may read. Sessions of the same
    /// role and snapshot share one planned state; each query run through
    /// [`super::execute_in_own_pool`] (the server's, `run_sql`'s) gets a memory pool of
    /// `memory_limit_bytes` of its own.
    pub async fn session(&self, role: Role) -> Result<SessionContext, QueryError> {
        Ok(self.versioned_session(role).await?.0)
    }

    /// [`ReadModel::session`], with the table versions it sees: plans made in it hold for
    /// every session with the same versions and role.
    pub async fn versioned_session(&self, role: Role) -> Result<(SessionContext, SnapshotVersions), QueryError> {
        let snapshots: Vec<(LakeTable, Option<DeltaTable>)> = {
            let mut guard = self.tables.lock().await;
            let (tables, refreshed) = &mut *guard;
            if refreshed.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL) {
                // All tables at once: each refresh is two or three requests to the store (list
                // the log past the cached version, read `_last_checkpoint`), which on object
                // storage are round trips of milliseconds each.
                futures::future::try_join_all(tables.iter_mut().map(|(table, delta)| self.refresh(*table, delta))).await?;
                *refreshed = Some(Instant::now());
            }
            tables.clone()
        };
        let versions: Vec<Option<i64>> =
            snapshots.iter().map(|(_, d)| d.as_ref().and_then(|d| d.version()).map(|v| v as i64)).collect();
        let mut planned = self.planned.lock().await;
        let state = match planned.get(&role) {
            Some((built_from, state)) if *built_from == versions => state.clone(),
            _ => {
                let state = self.planned_state(role, snapshots, self.decoded.as_ref()).await?;
                planned.insert(role, (versions.clone(), state.clone()));
                state
            }
        };
        drop(planned);
        Ok((SessionContext::new_with_state(state), versions))
    }

    /// A session over the lake as it stood at `as_of` ([`AsOf`]), with the table versions it
    /// pins: a plan made in it holds for any session pinned to the same versions. Refused
    /// (never answered from the newest snapshot) when that state cannot be read whole.
    pub async fn session_as_of(&self, role: Role, as_of: &AsOf) -> Result<(SessionContext, SnapshotVersions), QueryError> {
        let snapshots = as_of.snapshots(&self.catalog).await.map_err(|e| QueryError::AsOf(Box::new(e)))?;
        // Not kept among the planned catalogs: those follow the newest snapshot. Nor does it
        // touch the decoded files, which follow the newest snapshot too: it reads Parquet.
        let versions = snapshots.iter().map(|(_, d)| d.as_ref().and_then(|d| d.version()).map(|v| v as i64)).collect();
        let state = self.planned_state(role, snapshots, None).await?;
        Ok((SessionContext::new_with_state(state), versions))
    }

    /// The tables and views `role` reads in `snapshots`, with a runtime of their own, and
    /// their files read from `decoded` when it holds them.
    async fn planned_state(
        &self,
        role: Role,
        snapshots: Vec<(LakeTable, Option<DeltaTable>)>,
        decoded: Option<&Arc<DecodedFiles>>,
    ) -> Result<SessionState, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.memory_limit_bytes)))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::OsTmpDirectory))
            .with_cache_manager(CacheManagerConfig::default().with_file_metadata_cache(Some(Arc::clone(&self.metadata_cache))))
            .build_arc()?;
        let planned_state = self.plan_catalog(role, snapshots, decoded).await?.state();
        Ok(SessionStateBuilder::new_from_existing(planned_state).with_runtime_env(runtime).build())
    }

    /// Brings one table's snapshot up to its newest commit.
    async fn refresh(&self, table: LakeTable, delta: &mut Option<DeltaTable>) -> Result<(), QueryError> {
        match delta {
            Some(delta) => delta
                .update_incremental(None)
                .await
                .map_err(|source| QueryError::Delta { table: table.name().to_string(), source }),
            // Created by an ingest since (a lake from an earlier release)?
            None => {
                *delta = self.catalog.snapshot(table).await.map_err(|e| QueryError::Catalog(Box::new(e)))?;
                Ok(())
            }
        }
    }

    /// Registers the tables `role` may read and the views over them.
    async fn plan_catalog(
        &self,
        role: Role,
        snapshots: Vec<(LakeTable, Option<DeltaTable>)>,
        decoded: Option<&Arc<DecodedFiles>>,
    ) -> Result<SessionContext, QueryError> {
        let hidden = role.hidden_tables();
        let visible = snapshots.into_iter().filter(|(table, _)| !hidden.contains(&table.name())).collect();
        let ctx = super::session::read_only_session(visible, decoded).await?;
        super::limits::bound_functions(&ctx, self.memory_limit_bytes);
        register_views(&ctx, &self.views, role == Role::Auditor).await;
        Ok(ctx)
    }
}

/// Registers `views` in `ctx` in dependency order (a view may use another); a view that does
/// not plan (it reads a table the session lacks, a hidden one for a role) is left out, and
/// logged when `say_unplanned`.
pub async fn register_views(ctx: &SessionContext, views: &[ViewDefinition], say_unplanned: bool) {
    let mut pending: Vec<&ViewDefinition> = views.iter().collect();
    loop {
        let before = pending.len();
        let mut still = Vec::new();
        for view in pending {
            match ctx.state().create_logical_plan(&view.sql).await {
                Ok(plan) => {
                    let table: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(view.sql.clone())));
                    if let Err(e) = ctx.register_table(view.name.as_str(), table) {
                        warn!(view = %view.name, error = %e, "view not registered");
                    }
                }
                Err(_) => still.push(view),
            }
        }
        if still.is_empty() || still.len() == before {
            for view in still {
                if say_unplanned {
                    warn!(view = %view.name, "view does not plan");
                }
            }
            return;
        }
        pending = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_file_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/views");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        let mut built_in: Vec<String> = BUILT_IN_VIEWS.iter().map(|(n, _)| n.to_string()).collect();
        files.sort();
        built_in.sort();
        assert_eq!(files, built_in);
    }
}
