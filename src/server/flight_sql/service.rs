//! The Flight SQL service's state: the read model, access, tokens, the query slots and the
//! runtime queries run on. Its RPCs are in the sibling modules.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::plan_cache::PlanCache;
use crate::access::{AccessConfig, ServerSettings, SignInThrottle, TokenStore};
use crate::query::executor::QueryExecutor;
use crate::query::read_model::ReadModel;
use crate::server::access_log::AccessLog;
use crate::server::statements::ParameterStore;

pub(super) const INFORMATION_SCHEMA: &str = "information_schema";

/// The Flight SQL service over one read model.
#[derive(Debug)]
pub struct CclakeFlightSql {
    pub(super) model: Arc<ReadModel>,
    pub(super) access: Arc<AccessConfig>,
    pub(super) tokens: Arc<TokenStore>,
    pub(super) settings: ServerSettings,
    /// One permit per running query.
    pub(super) queries: Arc<Semaphore>,
    /// Permits kept for queries that read no table, when `queries` has none left.
    pub(super) reserve: Arc<Semaphore>,
    /// The runtime queries run on, apart from the server's.
    pub(super) executor: QueryExecutor,
    /// Failed sign-ins and the pauses they earn.
    pub(super) throttle: SignInThrottle,
    /// One permit per password check running.
    pub(super) verifications: Arc<Semaphore>,
    /// Sign-ins waiting for a password check.
    pub(super) waiting_sign_ins: AtomicUsize,
    /// Parameters bound to open prepared statements, for clients that execute the handle
    /// they were given at creation (see `statements`).
    pub(super) parameters: ParameterStore,
    /// Statements planned per role and snapshot ([`CclakeFlightSql::plan`]).
    pub(super) plans: PlanCache,
    /// Where every query run is recorded ([`crate::server::access_log`]).
    pub(super) access_log: AccessLog,
}

/// Open prepared statements whose parameters the server keeps; past it, the statement bound
/// longest ago loses its parameters (its client gets a clear error and binds again).
const MAX_STORED_PARAMETER_SETS: usize = 10_000;
/// And the most bytes of parameter values kept, all statements together (as sent, in Arrow
/// IPC): 600 statements bound with a 2.5 MB value each keep the newest 25.
const MAX_STORED_PARAMETER_BYTES: usize = 64 << 20;

/// Queries that read no table may run past the concurrency cap, this many at once.
pub const RESERVED_QUERIES: usize = 2;

impl CclakeFlightSql {
    pub fn new(model: Arc<ReadModel>, access: AccessConfig) -> std::io::Result<Self> {
        let settings = access.server.clone();
        let shared = settings.max_concurrent_queries.max(1);
        // A worker for every query that may run, and one to spare.
        let executor = QueryExecutor::new(shared + RESERVED_QUERIES + 1)?;
        Ok(Self {
            model,
            tokens: Arc::new(TokenStore::new(Duration::from_secs(settings.token_ttl_seconds))),
            queries: Arc::new(Semaphore::new(shared)),
            reserve: Arc::new(Semaphore::new(RESERVED_QUERIES)),
            executor,
            throttle: SignInThrottle::new(
                settings.failed_sign_ins_before_pause,
                Duration::from_secs(settings.sign_in_pause_max_seconds),
            ),
            verifications: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            waiting_sign_ins: AtomicUsize::new(0),
            parameters: ParameterStore::new(MAX_STORED_PARAMETER_SETS, MAX_STORED_PARAMETER_BYTES, Duration::from_secs(settings.token_ttl_seconds.max(1))),
            plans: Default::default(),
            access_log: AccessLog::default(),
            access: Arc::new(access),
            settings,
        })
    }

    /// Records every query in `log` (the server's `access_log`).
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access_log = log;
        self
    }

    /// The bearer tokens this service hands out, which the authentication layer checks.
    pub(crate) fn tokens(&self) -> Arc<TokenStore> {
        Arc::clone(&self.tokens)
    }
}
