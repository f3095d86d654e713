//! The serve stage: Arrow Flight SQL over the read model, with authentication and roles,
//! optional TLS, and optionally the write side on a schedule in the same process (CQRS with
//! both sides embedded).
//!
//! Shutdown (the future given to [`serve`]): stop accepting, let a running ingest pass
//! commit, then return.

pub mod access_log;
mod auth;
pub mod flight_sql;
pub mod metadata;
pub mod statements;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use tracing::{error, info, warn};

use crate::lake::Lake;
use crate::query::read_model::ReadModel;
use crate::access::AccessConfig;
use flight_sql::CclakeFlightSql;

/// Errors of starting and running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("refusing to serve plaintext on the non-loopback address {0}: give --tls-cert and --tls-key, or --allow-plaintext")]
    PlaintextOnNetwork(SocketAddr),
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile { path: String, source: std::io::Error },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot start the query runtime: {0}")]
    Runtime(std::io::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The write side embedded in the server: an ingest pass into `lake` every `interval`.
#[derive(Debug, Clone)]
pub struct ScheduledIngest {
    pub lake: Arc<Lake>,
    pub source: String,
    pub interval: Duration,
    /// Once a day, drop rows older than this ([`Lake::retain`]).
    pub retain_for: Option<Duration>,
    /// Once a day, vacuum files no snapshot of this last period needs ([`Lake::vacuum`]).
    pub vacuum_retain: Option<Duration>,
}

/// Retention and vacuum run at most this often on a schedule.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// PEM certificate chain and private key.
    pub tls: Option<(String, String)>,
    /// Serve plaintext on a non-loopback address.
    pub allow_plaintext: bool,
    pub ingest: Option<ScheduledIngest>,
}

/// Binds `addr`, refusing plaintext on a network address unless allowed.
pub async fn bind(addr: SocketAddr, options: &ServeOptions) -> Result<TcpListener, ServerError> {
    if options.tls.is_none() && !addr.ip().is_loopback() {
        if !options.allow_plaintext {
            return Err(ServerError::PlaintextOnNetwork(addr));
        }
        warn!(%addr, "serving plaintext on a network address: credentials and data travel unencrypted");
    }
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub async fn serve(
    model: Arc<ReadModel>,
    access: AccessConfig,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let mut builder = Server::builder();
    if let Some((cert, key)) = &options.tls {
        let read = |path: &String| {
            std::fs::read(path).map_err(|source| ServerError::TlsFile { path: path.clone(), source })
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let (access_log, access_task) = access_log::AccessLog::start(model.catalog().clone());
    let flight_sql = Arc::new(CclakeFlightSql::new(Arc::clone(&model), access).map_err(ServerError::Runtime)?.with_access_log(access_log));
    // Every RPC but sign-in is checked here, before arrow-flight decodes the command: no
    // request reaches any work unauthenticated.
    let auth = auth::AuthLayer::new(flight_sql.tokens());
    let service = WithGetSchema(flight_sql);

    let stop = CancellationToken::new();
    let ingest_task = options.ingest.clone().map(|schedule| {
        let lake = Arc::clone(&schedule.lake);
        let stop = stop.clone();
        tokio::spawn(run_ingest_schedule(lake, schedule, stop))
    });
    let server_stop = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        server_stop.cancel();
    });

    info!(%addr, tls = options.tls.is_some(), "Flight SQL server listening");
    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold back each small response
    // until the peer's delayed ACK: tens of milliseconds per round trip.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = builder
        .layer(auth)
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned())
        .await;
    stop.cancel();
    if let Some(task) = ingest_task {
        // The pass in progress stops at a commit boundary: the commit in flight finishes,
        // no further object is taken.
        if let Err(e) = task.await {
            error!(error = %e, "ingest schedule task failed");
        }
    }
    // The service (and its access log sender) is gone with the server: the log's task
    // appends what it gathered and ends.
    if tokio::time::timeout(Duration::from_secs(10), access_task).await.is_err() {
        warn!("the access log's last entries could not be appended within 10 s");
    }
    info!("server stopped");
    Ok(served?)
}

/// The log target of scheduled ingest passes: logged at `info` even when cclake's own level
/// is `warn` (the default), one line per pass that committed something.
pub const SCHEDULE_LOG: &str = "cclake::schedule";

async fn run_ingest_schedule(lake: Arc<Lake>, schedule: ScheduledIngest, stop: CancellationToken) {
    let mut last_maintenance = None;
    loop {
        match lake.ingest_until(&schedule.source, &stop).await {
            Ok(report) if report.objects_read > 0 => {
                // Seconds from the newest object read being written to its rows committed.
                let lag = report
                    .newest_object_modified
                    .map(|m| (chrono::Utc::now().timestamp_micros() - m).max(0) as f64 / 1e6);
                info!(
                    target: SCHEDULE_LOG,
                    objects = report.objects_read,
                    records = report.records_read,
                    upserted = report.records_upserted,
                    quarantined = report.records_quarantined,
                    seconds = report.elapsed.as_secs_f64(),
                    lag_seconds = lag,
                    commits = report.commits,
                    interrupted = report.interrupted,
                    "scheduled ingest pass committed"
                )
            }
            Ok(_) => {}
            Err(e) => error!(target: SCHEDULE_LOG, error = %e, "scheduled ingest pass failed; the next pass retries"),
        }
        if last_maintenance.is_none_or(|t: std::time::Instant| t.elapsed() >= MAINTENANCE_EVERY) && !stop.is_cancelled() {
            maintain(&lake, &schedule).await;
            last_maintenance = Some(std::time::Instant::now());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(schedule.interval) => {}
        }
    }
}

/// The scheduled retention and vacuum, each when asked for; failures are logged and retried
/// the next day.
async fn maintain(lake: &Lake, schedule: &ScheduledIngest) {
    if let Some(age) = schedule.retain_for {
        let before = (chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)).date_naive();
        match lake.retain(before).await {
            Ok(report) => info!(target: SCHEDULE_LOG, tables = report.tables.len(), before = %before, "scheduled retention ran"),
            Err(e) => error!(target: SCHEDULE_LOG, error = %e, "scheduled retention failed; retried tomorrow"),
        }
    }
    if let Some(retain) = schedule.vacuum_retain {
        match lake.vacuum(retain, false).await {
            Ok(report) => info!(
                target: SCHEDULE_LOG,
                files = report.tables.iter().map(|(_, f)| f.len()).sum::<usize>(),
                "scheduled vacuum ran"
            ),
            Err(e) => error!(target: SCHEDULE_LOG, error = %e, "scheduled vacuum failed; retried tomorrow"),
        }
    }
}

/// The Flight SQL service plus the GetSchema RPC, which arrow-flight's blanket
/// `FlightService` for Flight SQL services leaves unimplemented (ADBC's `execute_schema`
/// calls it). Who calls is checked before any of it, by [`auth::AuthLayer`].
#[derive(Debug, Clone)]
struct WithGetSchema(Arc<CclakeFlightSql>);

type Inner = CclakeFlightSql;

#[tonic::async_trait]
impl FlightService for WithGetSchema {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn handshake(&self, request: Request<Streaming<HandshakeRequest>>) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(self.0.as_ref(), request).await
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(self.0.as_ref(), request).await
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(self.0.as_ref(), request).await
    }

    async fn poll_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        FlightService::poll_flight_info(self.0.as_ref(), request).await
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let schema = flight_sql::schema_for_descriptor(&self.0, &request).await?;
        Ok(Response::new(flight_sql::schema_result(&schema)?))
    }

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(self.0.as_ref(), request).await
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(self.0.as_ref(), request).await
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(self.0.as_ref(), request).await
    }

    async fn list_actions(&self, request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(self.0.as_ref(), request).await
    }

    async fn do_exchange(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(self.0.as_ref(), request).await
    }
}
