//! The Flight SQL service: authentication, statements, prepared statements with parameters,
//! metadata calls, and the read-only refusals. Methods not overridden here answer
//! `unimplemented` (arrow-flight's defaults).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndSavepointRequest, ActionEndTransactionRequest,
    Any, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas,
    CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{cast, col};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::access::{AccessConfig, Principal, Role, ServerSettings, SignInThrottle, TokenRejection, TokenStore};
use super::metadata;
use super::statements::{bind_values, number_placeholders, ParameterRow, ParameterStore, StatementHandle, BASE64_ANY_PADDING};
use crate::query::executor::QueryExecutor;
use crate::query::plain_types::plain_type;
use crate::query::read_model::ReadModel;
use crate::query::{read_only_options, CATALOG, SCHEMA};

const INFORMATION_SCHEMA: &str = "information_schema";

type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Client-supplied text as it may appear in a log line or an error: control characters
/// escaped (a user name cannot start a forged log line) and at most 64 characters kept.
pub(crate) fn shown(text: &str) -> String {
    const KEPT: usize = 64;
    let escaped: String = text.chars().take(KEPT).flat_map(char::escape_debug).collect();
    let length = text.chars().count();
    if length > KEPT {
        format!("{escaped}... ({length} characters)")
    } else {
        escaped
    }
}

/// The longest error message sent back: DataFusion's errors can quote the query.
const MAX_ERROR_MESSAGE: usize = 2048;

fn bounded_message(message: String) -> String {
    if message.len() <= MAX_ERROR_MESSAGE {
        return message;
    }
    let mut cut = MAX_ERROR_MESSAGE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &message[..cut], message.len())
}

fn read_only(what: &str) -> Status {
    Status::permission_denied(format!("cclake is read-only: {what} is refused; only queries run"))
}

/// Maps planning and execution failures to the status a client can act on.
fn query_status(e: DataFusionError) -> Status {
    let message = bounded_message(e.strip_backtrace());
    let lower = message.to_lowercase();
    if lower.contains("not supported") && (lower.contains("ddl") || lower.contains("dml") || lower.contains("statement")) {
        return read_only(&format!("this statement ({message})"));
    }
    match e.find_root() {
        // Bad values in the query or its parameters: the client's to fix, not the server's.
        DataFusionError::ArrowError(arrow_error, _)
            if matches!(
                **arrow_error,
                arrow::error::ArrowError::CastError(_)
                    | arrow::error::ArrowError::ParseError(_)
                    | arrow::error::ArrowError::InvalidArgumentError(_)
                    | arrow::error::ArrowError::DivideByZero
                    | arrow::error::ArrowError::ArithmeticOverflow(_)
            ) =>
        {
            Status::invalid_argument(message)
        }
        DataFusionError::ResourcesExhausted(_) => {
            Status::resource_exhausted(format!("query exceeded its memory limit: {message}"))
        }
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) | DataFusionError::NotImplemented(_) => {
            Status::invalid_argument(message)
        }
        _ => Status::internal(message),
    }
}

/// The schema clients are told about and then sent: every field nullable, so that a stream
/// whose nullability differs from the plan's (statistics-answered aggregates) still matches.
/// Fields carry the Flight SQL column metadata (type name, precision, scale, ...) that
/// JDBC, ADBC's `get_objects` and SQLAlchemy dialects map to SQL types.
fn client_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let data_type = plain_type(f.data_type()).unwrap_or_else(|| f.data_type().clone());
                let metadata = metadata::column_metadata(&data_type);
                Field::new(f.name(), data_type, true).with_metadata(metadata)
            })
            .collect::<Vec<_>>(),
    ))
}

fn schema_ipc(schema: &Schema) -> Result<Vec<u8>, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes.to_vec())
}

fn flight_info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    // No location: clients fetch from the connection they already have.
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1)
        .with_ordered(true);
    Ok(Response::new(info))
}

fn batch_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> FlightDataStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

/// The Flight SQL service over one read model.
#[derive(Debug)]
pub struct CclakeFlightSql {
    model: Arc<ReadModel>,
    access: Arc<AccessConfig>,
    tokens: Arc<TokenStore>,
    settings: ServerSettings,
    /// One permit per running query.
    queries: Arc<Semaphore>,
    /// Permits kept for queries that read no table, when `queries` has none left.
    reserve: Arc<Semaphore>,
    /// The runtime queries run on, apart from the server's.
    executor: QueryExecutor,
    /// Failed sign-ins and the pauses they earn.
    throttle: SignInThrottle,
    /// One permit per password check running.
    verifications: Arc<Semaphore>,
    /// Sign-ins waiting for a password check.
    waiting_sign_ins: AtomicUsize,
    /// Parameters bound to open prepared statements, for clients that execute the handle
    /// they were given at creation (see `statements`).
    parameters: ParameterStore,
}

/// Open prepared statements whose parameters the server keeps; past it, the statement bound
/// longest ago loses its parameters (its client gets a clear error and binds again).
const MAX_STORED_PARAMETER_SETS: usize = 10_000;

/// Sign-ins that may wait for a password check; more are refused with UNAVAILABLE.
const MAX_WAITING_SIGN_INS: usize = 64;

/// What failed sign-ins are counted against: the user name and the client's address.
fn throttle_keys(user: &str, peer: Option<std::net::SocketAddr>) -> Vec<String> {
    // Valid names have at most 64 characters: longer ones need not be kept whole.
    let name: String = user.chars().take(65).collect();
    let mut keys = vec![format!("user:{name}")];
    if let Some(peer) = peer {
        keys.push(format!("peer:{}", peer.ip()));
    }
    keys
}

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
            parameters: ParameterStore::new(MAX_STORED_PARAMETER_SETS, Duration::from_secs(settings.token_ttl_seconds.max(1))),
            access: Arc::new(access),
            settings,
        })
    }

    /// Checks a password off the async threads, at most as many at once as there are cores
    /// (each argon2 check takes ~19 MB and a core for tens of milliseconds); past
    /// [`MAX_WAITING_SIGN_INS`] waiting, a sign-in is refused at once.
    /// Sign-ins for a paused name or address are refused without a check, before waiting
    /// and again after (failures that came in meanwhile may have paused it).
    async fn verify_password(&self, user: &str, password: &str, keys: &[String]) -> Result<Option<Role>, Status> {
        let paused = || {
            self.throttle.paused(keys).map(|wait| {
                warn!(user = %shown(user), "sign-in refused: paused after failed sign-ins");
                Status::unavailable(format!(
                    "too many failed sign-ins for '{}' or from this address: retry in {} s",
                    shown(user),
                    wait.as_secs() + 1
                ))
            })
        };
        if let Some(refusal) = paused() {
            return Err(refusal);
        }
        let busy = || Status::unavailable("the server is busy checking sign-ins: retry shortly");
        let waiting = self.waiting_sign_ins.fetch_add(1, Ordering::SeqCst);
        let permit = if waiting >= MAX_WAITING_SIGN_INS {
            None
        } else {
            Arc::clone(&self.verifications).acquire_owned().await.ok()
        };
        self.waiting_sign_ins.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.ok_or_else(busy)?;
        if let Some(refusal) = paused() {
            return Err(refusal);
        }
        let access = Arc::clone(&self.access);
        let (user, password) = (user.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            access.verify(&user, &password)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))
    }

    /// The signed-in user behind the request's bearer token.
    pub(crate) fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("no authorization header: call Handshake with basic credentials first"))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("expected a Bearer token (call Handshake with basic credentials first)"))?;
        self.tokens.check(token.trim()).map_err(|rejection| match rejection {
            TokenRejection::Unknown => Status::unauthenticated("unknown bearer token: call Handshake again"),
            TokenRejection::Expired => Status::unauthenticated("bearer token expired: call Handshake again"),
        })
    }

    async fn session(&self, principal: &Principal) -> Result<SessionContext, Status> {
        self.model
            .session(principal.role)
            .await
            .map_err(|e| Status::internal(format!("cannot open the lake: {e}")))
    }

    /// Plans `sql` for `principal` as a DataFrame whose schema is what clients receive, with
    /// the parameters bound in the handle or, failing that, kept for its prepared statement.
    async fn plan(&self, principal: &Principal, handle: &StatementHandle) -> Result<DataFrame, Status> {
        let sql = number_placeholders(&handle.sql);
        let ctx = self.session(principal).await?;
        check_role(&ctx, &sql, principal.role)?;
        let mut df = ctx.sql_with_options(&sql, read_only_options()).await.map_err(query_status)?;
        let bound = match &handle.params {
            Some(text) => Some(ParameterRow::from_base64(text)?),
            None if handle.id != 0 => match self.parameters.get(handle.id, &principal.user) {
                Some(Ok(row)) => Some(row),
                Some(Err(reason)) => {
                    return Err(Status::invalid_argument(format!(
                        "the parameters bound to this prepared statement were refused: {reason}"
                    )))
                }
                None => None,
            },
            None => None,
        };
        let placeholders = placeholders(&df)?;
        match bound {
            Some(row) => {
                let values = bind_values(&placeholders, row.values()?)?;
                df = df.with_param_values(values).map_err(query_status)?;
            }
            None if !placeholders.is_empty() => {
                // Planning is fine (CreatePreparedStatement, GetSchema); running needs values.
                return Ok(df);
            }
            None => {}
        }
        let needs_cast = df.schema().fields().iter().any(|f| plain_type(f.data_type()).is_some());
        if needs_cast {
            let exprs: Vec<_> = df
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    let column = col(datafusion::common::Column::from_name(f.name()));
                    match plain_type(f.data_type()) {
                        Some(t) => cast(column, t).alias(f.name()),
                        None => column,
                    }
                })
                .collect();
            df = df.select(exprs).map_err(query_status)?;
        }
        Ok(df)
    }

    fn schema_of(df: &DataFrame) -> SchemaRef {
        client_schema(df.schema().as_arrow())
    }

    /// A permit to run a query: one of the shared ones, or, for a query that reads no table
    /// (`SELECT 1`, a connection check, `information_schema`), one of the reserve, so that
    /// such queries are answered while the shared permits are taken.
    fn permit(&self, df: &DataFrame) -> Result<OwnedSemaphorePermit, Status> {
        if let Ok(permit) = Arc::clone(&self.queries).try_acquire_owned() {
            return Ok(permit);
        }
        if reads_no_table(df) {
            if let Ok(permit) = Arc::clone(&self.reserve).try_acquire_owned() {
                return Ok(permit);
            }
        }
        Err(Status::resource_exhausted(format!(
            "too many concurrent queries (limit {}); retry later",
            self.settings.max_concurrent_queries
        )))
    }

    /// Runs the plan on the query runtime and streams it, under the concurrency cap and the
    /// query timeout.
    async fn execute(&self, principal: &Principal, df: DataFrame) -> Result<Response<FlightDataStream>, Status> {
        let unbound = placeholders(&df)?;
        if !unbound.is_empty() {
            let names: Vec<String> = unbound.iter().map(|(i, _)| format!("${i}")).collect();
            return Err(Status::invalid_argument(format!(
                "the query has {} parameter(s) ({}) and no values were bound: bind them (DoPut) before executing",
                names.len(),
                names.join(", ")
            )));
        }
        let permit = self.permit(&df)?;
        let schema = Self::schema_of(&df);
        let timeout = Duration::from_secs(self.settings.query_timeout_seconds.max(1));
        let deadline = tokio::time::Instant::now() + timeout;
        // The permit goes with the query's work: it is released when that work has stopped.
        let mut stream = self.executor.execute(df, permit);
        let timed_out = move || Status::deadline_exceeded(format!("query timed out after {} s", timeout.as_secs()));
        // Planning errors fail the call itself.
        tokio::time::timeout_at(deadline, stream.started())
            .await
            .map_err(|_| timed_out())?
            .map_err(query_status)?;
        info!(user = %principal.user, role = principal.role.as_str(), "query started");
        let batches_schema = Arc::clone(&schema);
        // Dropping the response (a cancelled client) drops this stream, which stops the
        // query on the query runtime.
        let batches = futures::stream::unfold((stream, false), move |(mut stream, done)| {
            let schema = Arc::clone(&batches_schema);
            async move {
                if done {
                    return None;
                }
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => Some((Err(FlightError::Tonic(Box::new(timed_out()))), (stream, true))),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(FlightError::Tonic(Box::new(query_status(e)))), (stream, true))),
                    Ok(Some(Ok(batch))) => {
                        if let Err(status) = check_row_sizes(&batch) {
                            return Some((Err(FlightError::Tonic(Box::new(status))), (stream, true)));
                        }
                        let batch = RecordBatch::try_new(schema, batch.columns().to_vec()).map_err(FlightError::Arrow);
                        Some((batch, (stream, false)))
                    }
                }
            }
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

    /// Catalog entries (schema, name, table type, schema) `role` may see: its tables and
    /// views, and the `information_schema` views it can query.
    async fn tables(&self, principal: &Principal) -> Result<Vec<(&'static str, String, &'static str, SchemaRef)>, Status> {
        let ctx = self.session(principal).await?;
        let mut tables = Vec::new();
        let Some(catalog) = ctx.catalog(CATALOG) else {
            return Ok(tables);
        };
        let kind = |provider: &Arc<dyn datafusion::catalog::TableProvider>| match provider.table_type() {
            TableType::View => "VIEW",
            _ => "TABLE",
        };
        if let Some(schema) = catalog.schema(SCHEMA) {
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                if let Ok(Some(provider)) = schema.table(&name).await {
                    tables.push((SCHEMA, name, kind(&provider), client_schema(&provider.schema())));
                }
            }
        }
        // The session adds information_schema on top of the catalog: reach its views by name.
        for name in datafusion::catalog::information_schema::INFORMATION_SCHEMA_TABLES {
            let reference = datafusion::common::TableReference::full(CATALOG, INFORMATION_SCHEMA, *name);
            if let Ok(provider) = ctx.table_provider(reference).await {
                tables.push((INFORMATION_SCHEMA, name.to_string(), kind(&provider), client_schema(&provider.schema())));
            }
        }
        Ok(tables)
    }
}

/// The largest row a result may hold. Batches are sent in messages of about 2 MB (the
/// encoder splits them by rows), but one row cannot be split, and clients refuse messages past
/// their limit: 4 MB for gRPC Java (JDBC), 16 MB for ADBC's Go driver.
pub const MAX_ROW_BYTES: usize = 4_000_000;

/// Refuses a batch holding a row larger than [`MAX_ROW_BYTES`], with a message that says
/// what to do, instead of a message the client cannot receive.
fn check_row_sizes(batch: &RecordBatch) -> Result<(), Status> {
    if batch.get_array_memory_size() <= MAX_ROW_BYTES || batch.num_rows() == 0 {
        return Ok(());
    }
    let mut row_bytes = vec![0usize; batch.num_rows()];
    for column in batch.columns() {
        // Variable-width values dominate a row's size; `length` reads them from the offsets.
        let Ok(lengths) = arrow::compute::kernels::length::length(column) else { continue };
        let Ok(lengths) = arrow::compute::cast(&lengths, &DataType::Int64) else { continue };
        let lengths = lengths.as_primitive::<arrow::datatypes::Int64Type>();
        for (row, length) in lengths.iter().enumerate() {
            row_bytes[row] += length.unwrap_or(0).max(0) as usize;
        }
    }
    match row_bytes.iter().enumerate().max_by_key(|(_, bytes)| **bytes) {
        Some((_, &bytes)) if bytes > MAX_ROW_BYTES => Err(Status::resource_exhausted(format!(
            "a row of the result holds {:.1} MB, more than the {} MB one Flight message may carry: select part of the large value (substr, length)",
            bytes as f64 / 1e6,
            MAX_ROW_BYTES / 1_000_000
        ))),
        _ => Ok(()),
    }
}

/// Whether the plan reads no table of the lake (nor a view over one): `SELECT 1`, queries
/// of `information_schema`. Table functions (`generate_series`) count as tables.
fn reads_no_table(df: &DataFrame) -> bool {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::LogicalPlan;
    let reads = df.logical_plan().exists(|node| {
        Ok(match node {
            LogicalPlan::TableScan(scan) => scan.table_name.schema() != Some(INFORMATION_SCHEMA),
            _ => false,
        })
    });
    matches!(reads, Ok(false))
}

/// The query's placeholders by number, with the types planning inferred for them.
fn placeholders(df: &DataFrame) -> Result<Vec<(usize, Option<DataType>)>, Status> {
    let mut found: Vec<(usize, Option<DataType>)> = df
        .logical_plan()
        .get_parameter_types()
        .map_err(query_status)?
        .into_iter()
        .filter_map(|(name, t)| name.trim_start_matches('$').parse().ok().map(|i| (i, t)))
        .collect();
    found.sort_by_key(|(i, _)| *i);
    Ok(found)
}

/// Refuses, with PERMISSION_DENIED, SQL that names a table the role may not read.
fn check_role(ctx: &SessionContext, sql: &str, role: Role) -> Result<(), Status> {
    let hidden = role.hidden_tables();
    if hidden.is_empty() {
        return Ok(());
    }
    let state = ctx.state();
    let Ok(statement) = state.sql_to_statement(sql, &datafusion::config::Dialect::Generic) else {
        return Ok(()); // planning reports the syntax error
    };
    let Ok(references) = state.resolve_table_references(&statement) else {
        return Ok(());
    };
    for reference in references {
        if hidden.contains(&reference.table()) {
            return Err(Status::permission_denied(format!(
                "role {} may not read {}",
                role.as_str(),
                reference.table()
            )));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl FlightSqlService for CclakeFlightSql {
    type FlightService = CclakeFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("no authorization header: send basic credentials"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?
            .to_string();
        let token = if let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
            let decoded = BASE64_ANY_PADDING
                .decode(encoded.trim())
                .map_err(|_| Status::unauthenticated("basic credentials are not valid base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| Status::unauthenticated("basic credentials are not UTF-8"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Status::unauthenticated("basic credentials need user:password"))?;
            let keys = throttle_keys(user, request.remote_addr());
            let role = self.verify_password(user, password, &keys).await?;
            let Some(role) = role else {
                self.throttle.failed(&keys);
                warn!(user = %shown(user), "authentication failed");
                return Err(Status::unauthenticated(format!("wrong user name or password for '{}'", shown(user))));
            };
            self.throttle.succeeded(&keys);
            let user = user.to_string();
            info!(user = %shown(&user), role = role.as_str(), "signed in");
            self.tokens.issue(Principal { user, role })
        } else if let Some(token) = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")) {
            // JDBC with `token=` still calls Handshake: a valid token is answered as is.
            self.principal(&request)?;
            token.trim().to_string()
        } else {
            return Err(Status::unauthenticated("expected Basic or Bearer authorization"));
        };
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        };
        let mut response = Response::new(Box::pin(futures::stream::iter([Ok(response)])) as Pin<Box<dyn Stream<Item = _> + Send>>);
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|e| Status::internal(e.to_string()))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let handle = StatementHandle::statement(query.query);
        let df = self.plan(&principal, &handle).await?;
        let ticket = TicketStatementQuery { statement_handle: handle.encode().into() };
        flight_info(&Self::schema_of(&df), ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        let df = self.plan(&principal, &handle).await?;
        self.execute(&principal, df).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        if query.transaction_id.is_some() {
            return Err(read_only("a transaction"));
        }
        let handle = StatementHandle::prepared(query.query);
        let df = self.plan(&principal, &handle).await?;
        let parameter_schema = Schema::new(
            placeholders(&df)?
                .into_iter()
                .map(|(i, t)| Field::new(format!("${i}"), t.unwrap_or(DataType::Utf8), true))
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode().into(),
            dataset_schema: schema_ipc(&Self::schema_of(&df))?.into(),
            parameter_schema: schema_ipc(&parameter_schema)?.into(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        let mut handle = StatementHandle::decode(&query.prepared_statement_handle)?;
        let stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(Status::from)?;
        // Checked now, so that a wrong count or type is said at bind time; remembered either
        // way for clients that execute the handle they were given at creation.
        let checked = match ParameterRow::from_batches(&batches) {
            Ok(row) => {
                let mut check = handle.clone();
                check.params = Some(row.to_base64());
                self.plan(&principal, &check).await.map(|_| row)
            }
            Err(status) => Err(status),
        };
        if handle.id != 0 {
            let kept = checked.clone().map_err(|status| status.message().to_string());
            self.parameters.put(handle.id, &principal.user, kept);
        }
        let row = checked?;
        handle.params = Some(row.to_base64());
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let df = self.plan(&principal, &handle).await?;
        flight_info(&Self::schema_of(&df), cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let df = self.plan(&principal, &handle).await?;
        self.execute(&principal, df).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.principal(&request)?;
        if let Ok(handle) = StatementHandle::decode(&query.prepared_statement_handle) {
            self.parameters.remove(handle.id);
        }
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder: GetCatalogsBuilder = query.into_builder();
        builder.append(CATALOG);
        let schema = builder.schema();
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(schema, vec![batch])))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder: GetDbSchemasBuilder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        builder.append(CATALOG, INFORMATION_SCHEMA);
        let schema = builder.schema();
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(schema, vec![batch])))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let tables = self.tables(&principal).await?;
        let mut builder: GetTablesBuilder = query.into_builder();
        for (schema_name, name, kind, table_schema) in &tables {
            builder
                .append(CATALOG, schema_name, name, kind, table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let schema = builder.schema();
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(schema, vec![batch])))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        let schema = builder.schema();
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(schema, vec![batch])))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(metadata::sql_info()).schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let builder = query.into_builder(metadata::sql_info());
        let schema = builder.schema();
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(schema, vec![batch])))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder(metadata::xdbc_type_info()).schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        let builder = query.into_builder(metadata::xdbc_type_info());
        let schema = builder.schema();
        let batch = builder.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(batch_stream(schema, vec![batch])))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        flight_info(&metadata::primary_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(batch_stream(metadata::primary_keys_schema(), vec![])))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        flight_info(&metadata::foreign_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(batch_stream(metadata::foreign_keys_schema(), vec![])))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        flight_info(&metadata::foreign_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(batch_stream(metadata::foreign_keys_schema(), vec![])))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        flight_info(&metadata::foreign_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        Ok(Response::new(batch_stream(metadata::foreign_keys_schema(), vec![])))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.principal(&request)?;
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.principal(&request)?;
        Err(read_only("bulk ingestion"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.principal(&request)?;
        Err(read_only("a prepared update"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        self.principal(&request)?;
        Err(read_only("a transaction"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.principal(&request)?;
        Err(read_only("a transaction"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        self.principal(&request)?;
        Err(read_only("a savepoint"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.principal(&request)?;
        Err(read_only("a savepoint"))
    }

    async fn do_action_cancel_query(
        &self,
        _query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.principal(&request)?;
        // Dropping a DoGet stream stops its query; there is no query registry to cancel by id.
        Err(Status::unimplemented("CancelQuery: close the result stream to stop a query"))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        self.principal(&request)?;
        let action = request.into_inner();
        // JDBC's `catalog=` property sends SetSessionOptions, and CloseSession on close.
        // arrow-flight 59 has no types for these messages: they are written by hand. An empty
        // SetSessionOptionsResult / GetSessionOptionsResult means "no errors" / "no options".
        let body: Vec<u8> = match action.r#type.as_str() {
            "SetSessionOptions" | "GetSessionOptions" => Vec::new(),
            // CloseSessionResult { status: CLOSED (1) }: field 1, varint 1.
            "CloseSession" => vec![0x08, 0x01],
            other => return Err(Status::invalid_argument(format!("unknown action {}", shown(other)))),
        };
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request)?;
        Err(Status::invalid_argument(format!("unknown ticket type {}", shown(&message.type_url))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The schema GetSchema answers for a statement or prepared statement descriptor.
pub async fn schema_for_descriptor(service: &CclakeFlightSql, request: &Request<FlightDescriptor>) -> Result<SchemaRef, Status> {
    let principal = service.principal(request)?;
    let any = Any::decode(&*request.get_ref().cmd).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let handle = if let Some(cmd) = any.unpack::<CommandStatementQuery>().map_err(|e| Status::invalid_argument(e.to_string()))? {
        StatementHandle::statement(cmd.query)
    } else if let Some(cmd) = any.unpack::<CommandPreparedStatementQuery>().map_err(|e| Status::invalid_argument(e.to_string()))? {
        StatementHandle::decode(&cmd.prepared_statement_handle)?
    } else {
        return Err(Status::invalid_argument(format!("GetSchema: unsupported command {}", any.type_url)));
    };
    let df = service.plan(&principal, &handle).await?;
    Ok(CclakeFlightSql::schema_of(&df))
}

/// The IPC form of a schema, as GetSchema returns it.
pub fn schema_result(schema: &Schema) -> Result<arrow_flight::SchemaResult, Status> {
    SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_escaped_and_bounded() {
        assert_eq!(shown("ana"), "ana");
        assert_eq!(shown("x\n2026 INFO forged"), "x\\n2026 INFO forged");
        let long = shown(&"a".repeat(100_000));
        assert!(long.len() < 120 && long.ends_with("(100000 characters)"), "{long}");
        let message = bounded_message("é".repeat(5000));
        assert!(message.len() < MAX_ERROR_MESSAGE + 40 && message.ends_with("(10000 bytes in all)"), "{}", message.len());
    }
}
