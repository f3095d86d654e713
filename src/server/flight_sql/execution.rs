//! Running a statement: planning it for the signed-in role (refusing hidden tables), binding
//! its parameters, and running it on the query runtime under the concurrency cap, the query
//! timeout and the row-size limit.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{cast, col, LogicalPlan};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tonic::{Response, Status};
use tracing::info;

use crate::access::{Principal, Role};
use crate::server::access_log::{tables_read, Outcome};
use crate::server::statements::{bind_values, number_placeholders, ParameterRow, StatementHandle};
use crate::query::as_of::{AsOf, AsOfError};
use crate::query::plain_types::plain_type;
use crate::query::QueryError;

use super::responses::{client_schema, query_status};
use super::responses::FlightDataStream;
use super::service::{CclakeFlightSql, INFORMATION_SCHEMA};

/// Statements up to this long are planned without a query slot.
const PLANNED_WITHOUT_SLOT_BYTES: usize = 4096;

impl CclakeFlightSql {
    pub(super) async fn session(&self, principal: &Principal) -> Result<SessionContext, Status> {
        self.model
            .session(principal.role)
            .await
            .map_err(|e| Status::internal(format!("cannot open the lake: {e}")))
    }

    /// Plans `sql` for `principal` as a DataFrame whose schema is what clients receive, with
    /// the parameters bound in the handle or, failing that, kept for its prepared statement.
    /// The SQL is planned once per role and snapshot: a prepared statement's round trip
    /// (create, GetFlightInfo, DoGet) and a dashboard's repeated queries reuse the plan.
    pub(super) async fn plan(&self, principal: &Principal, handle: &StatementHandle) -> Result<DataFrame, Status> {
        let sql = number_placeholders(&handle.sql);
        let (ctx, versions) = match &handle.as_of {
            None => self
                .model
                .versioned_session(principal.role)
                .await
                .map_err(|e| Status::internal(format!("cannot open the lake: {e}")))?,
            Some(text) => {
                let as_of: AsOf = text.parse().map_err(|e: AsOfError| Status::invalid_argument(e.to_string()))?;
                self.model.session_as_of(principal.role, &as_of).await.map_err(|e| match e {
                    QueryError::AsOf(refused) if matches!(*refused, AsOfError::Delta { .. }) => Status::internal(refused.to_string()),
                    QueryError::AsOf(refused) => Status::failed_precondition(refused.to_string()),
                    other => Status::internal(format!("cannot open the lake: {other}")),
                })?
            }
        };
        let key = (principal.role, versions, sql);
        let plan = match self.plans.get(&key) {
            Some(plan) => plan,
            None => {
                // Parsed, checked and planned on the query runtime, whose threads' stacks
                // hold the deepest expression the guard lets through.
                // Planning keeps to the query timeout, as running does, and a statement
                // long enough to take real planning work holds one of the shared query
                // slots while it is planned: a flood of huge statements is refused past
                // the limit instead of taking every thread, and short ones (`SELECT 1`, a
                // dashboard's queries) are planned whatever the load.
                let permit = if key.2.len() > PLANNED_WITHOUT_SLOT_BYTES {
                    Some(Arc::clone(&self.queries).try_acquire_owned().map_err(|_| {
                        Status::resource_exhausted(format!(
                            "too many concurrent queries (limit {}); retry later",
                            self.settings.max_concurrent_queries
                        ))
                    })?)
                } else {
                    None
                };
                let timeout = Duration::from_secs(self.settings.query_timeout_seconds.max(1));
                let (planning, sql, role, limits) = (ctx.clone(), key.2.clone(), principal.role, self.settings.sql_limits());
                let planned = self.executor.run(async move {
                    let _permit = permit;
                    let statement = crate::query::parse_sql(&planning, &sql, limits).map_err(plan_status)?;
                    check_role(&planning, &statement, role)?;
                    let df = crate::query::plan_statement(&planning, statement).await.map_err(query_status)?;
                    Ok::<_, Status>(df.into_unoptimized_plan())
                });
                let plan = tokio::time::timeout(timeout, planned)
                    .await
                    .map_err(|_| Status::deadline_exceeded(format!("planning the query took longer than {} s", timeout.as_secs())))?
                    .map_err(|e| Status::internal(format!("planning stopped: {e}")))??;
                self.plans.keep(key, plan.clone());
                plan
            }
        };
        let mut df = DataFrame::new(ctx.state(), plan);
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

    pub(super) fn schema_of(df: &DataFrame) -> SchemaRef {
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
    pub(super) async fn execute(&self, principal: &Principal, statement: &str, df: DataFrame) -> Result<Response<FlightDataStream>, Status> {
        let unbound = placeholders(&df)?;
        if !unbound.is_empty() {
            let names: Vec<String> = unbound.iter().map(|(i, _)| format!("${i}")).collect();
            return Err(Status::invalid_argument(format!(
                "the query has {} parameter(s) ({}) and no values were bound: bind them (DoPut) before executing",
                names.len(),
                names.join(", ")
            )));
        }
        // Recorded in the access log when the answer ends, however it ends.
        let record = Arc::new(std::sync::Mutex::new(self.access_log.begin(principal, statement, tables_read(df.logical_plan()))));
        let failed = |status: Status| {
            if let Ok(mut record) = record.lock() {
                record.ended(Outcome::Failed(status.message().to_string()));
            }
            status
        };
        let permit = self.permit(&df).map_err(failed)?;
        let schema = Self::schema_of(&df);
        let timeout = Duration::from_secs(self.settings.query_timeout_seconds.max(1));
        let deadline = tokio::time::Instant::now() + timeout;
        // The permit goes with the query's work: it is released when that work has stopped.
        let mut stream = self.executor.execute(df, permit);
        let timed_out = move || Status::deadline_exceeded(format!("query timed out after {} s", timeout.as_secs()));
        // Planning errors fail the call itself.
        tokio::time::timeout_at(deadline, stream.started())
            .await
            .map_err(|_| failed(timed_out()))?
            .map_err(|e| failed(query_status(e)))?;
        info!(user = %principal.user, role = principal.role.as_str(), "query started");
        let batches_schema = Arc::clone(&schema);
        // Dropping the response (a cancelled client) drops this stream, which stops the
        // query on the query runtime.
        let counted = Arc::clone(&record);
        let batches = futures::stream::unfold((stream, false), move |(mut stream, done)| {
            let schema = Arc::clone(&batches_schema);
            let record = Arc::clone(&counted);
            let end = move |outcome: Outcome| {
                if let Ok(mut record) = record.lock() {
                    record.ended(outcome);
                }
            };
            async move {
                if done {
                    return None;
                }
                let next = tokio::time::timeout_at(deadline, stream.next()).await;
                let status = match next {
                    Err(_) => timed_out(),
                    Ok(None) => {
                        end(Outcome::Ok);
                        return None;
                    }
                    Ok(Some(Err(e))) => query_status(e),
                    Ok(Some(Ok(batch))) => match check_row_sizes(&batch) {
                        Err(status) => status,
                        Ok(()) => {
                            let batch = RecordBatch::try_new(schema, batch.columns().to_vec()).map_err(FlightError::Arrow);
                            return Some((batch, (stream, false)));
                        }
                    },
                };
                end(Outcome::Failed(status.message().to_string()));
                Some((Err(FlightError::Tonic(Box::new(status))), (stream, true)))
            }
        });
        // Rows and bytes as sent: counted from the encoded messages.
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_ok(move |data| {
                if let Ok(mut record) = record.lock() {
                    record.returned(data_rows(&data), data.data_header.len() + data.data_body.len());
                }
                data
            })
            .map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

}

/// The rows a Flight message carries (0 for a schema message), read from its IPC header.
fn data_rows(data: &arrow_flight::FlightData) -> usize {
    arrow::ipc::root_as_message(&data.data_header)
        .ok()
        .and_then(|m| m.header_as_record_batch())
        .map_or(0, |b| b.length().max(0) as usize)
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
        let reads = df.logical_plan().exists(|node| {
        Ok(match node {
            LogicalPlan::TableScan(scan) => scan.table_name.schema() != Some(INFORMATION_SCHEMA),
            _ => false,
        })
    });
    matches!(reads, Ok(false))
}

/// The query's placeholders by number, with the types planning inferred for them.
pub(super) fn placeholders(df: &DataFrame) -> Result<Vec<(usize, Option<DataType>)>, Status> {
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

/// A planning error as the client sees it: SQL refused by the guard is INVALID_ARGUMENT.
fn plan_status(e: crate::query::QueryError) -> Status {
    match e {
        crate::query::QueryError::Refused(why) => Status::invalid_argument(why),
        crate::query::QueryError::ReadOnly(refusal) => Status::permission_denied(refusal.to_string()),
        crate::query::QueryError::DataFusion(e) => query_status(e),
        other => query_status(datafusion::error::DataFusionError::Plan(other.to_string())),
    }
}

/// Refuses, with PERMISSION_DENIED, SQL that names a table the role may not read.
fn check_role(ctx: &SessionContext, statement: &datafusion::sql::parser::Statement, role: Role) -> Result<(), Status> {
    let hidden = role.hidden_tables();
    if hidden.is_empty() {
        return Ok(());
    }
    let Ok(references) = ctx.state().resolve_table_references(statement) else {
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
