//! The Flight SQL service: the `FlightSqlService` methods, each a few lines over the parts
//! that do the work. Methods not overridden here answer `unimplemented` (arrow-flight's
//! defaults).
//!
//! - `sign_in`: Basic credentials → bearer token, throttling, bounded password checks;
//! - `execution`: planning a statement for a role, binding parameters, running it on the
//!   query runtime under the concurrency cap, the timeout and the row-size limit;
//! - `responses`: errors as statuses a client can act on, client schemas, FlightInfo;
//! - `super::statements` (handles, parameters) and `super::metadata` (catalog RPCs).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
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
    Action, FlightDescriptor, FlightInfo, HandshakeRequest,
    HandshakeResponse, SchemaAsIpc, Ticket,
};
use datafusion::datasource::TableType;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Principal;
use super::auth::principal;
use super::metadata;
use super::statements::{ParameterRow, StatementHandle};
use crate::query::{CATALOG, SCHEMA};

mod execution;
mod plan_cache;
mod responses;
mod service;
mod sign_in;

use execution::placeholders;
pub use execution::MAX_ROW_BYTES;
use responses::{batch_stream, client_schema, flight_info, read_only, schema_ipc};
pub(crate) use responses::shown;
pub use service::{CclakeFlightSql, RESERVED_QUERIES};
use service::INFORMATION_SCHEMA;

impl CclakeFlightSql {
    /// Records a statement refused before it ran (a hidden table, a plan error) in the
    /// access log, and hands the refusal back.
    fn refused(&self, principal: &Principal, statement: &str, status: Status) -> Status {
        let mut record = self.access_log.begin(principal, statement, Vec::new());
        record.ended(crate::server::access_log::Outcome::Failed(status.message().to_string()));
        status
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

#[tonic::async_trait]
impl FlightSqlService for CclakeFlightSql {
    type FlightService = CclakeFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let token = self.sign_in(&request).await?;
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
        let principal = principal(&request)?;
        let handle = StatementHandle::statement(query.query).pinned(request.metadata())?;
        let df = self.plan(&principal, &handle).await.map_err(|status| self.refused(&principal, &handle.sql, status))?;
        let ticket = TicketStatementQuery { statement_handle: handle.encode().into() };
        flight_info(&Self::schema_of(&df), ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = principal(&request)?;
        let handle = StatementHandle::decode(&ticket.statement_handle)?.pinned(request.metadata())?;
        let df = self.plan(&principal, &handle).await?;
        self.execute(&principal, &handle.sql, df).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = principal(&request)?;
        if query.transaction_id.is_some() {
            return Err(read_only("a transaction"));
        }
        let handle = StatementHandle::prepared(query.query).pinned(request.metadata())?;
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
        let principal = principal(&request)?;
        let mut handle = StatementHandle::decode(&query.prepared_statement_handle)?.pinned(request.metadata())?;
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
        let principal = principal(&request)?;
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?.pinned(request.metadata())?;
        let df = self.plan(&principal, &handle).await.map_err(|status| self.refused(&principal, &handle.sql, status))?;
        flight_info(&Self::schema_of(&df), cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = principal(&request)?;
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?.pinned(request.metadata())?;
        let df = self.plan(&principal, &handle).await?;
        self.execute(&principal, &handle.sql, df).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
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
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
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
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
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
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = principal(&request)?;
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
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
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
        let schema = query.clone().into_builder(metadata::sql_info()).schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
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
        let schema = query.into_builder(metadata::xdbc_type_info()).schema();
        flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
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
        flight_info(&metadata::primary_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::primary_keys_schema(), vec![])))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&metadata::foreign_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::foreign_keys_schema(), vec![])))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&metadata::foreign_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::foreign_keys_schema(), vec![])))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&metadata::foreign_keys_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(batch_stream(metadata::foreign_keys_schema(), vec![])))
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingestion"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a prepared update"))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(read_only("a transaction"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only("a transaction"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(read_only("a savepoint"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only("a savepoint"))
    }

    async fn do_action_cancel_query(
        &self,
        _query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        // Dropping a DoGet stream stops its query; there is no query registry to cancel by id.
        Err(Status::unimplemented("CancelQuery: close the result stream to stop a query"))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
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
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::invalid_argument(format!("unknown ticket type {}", shown(&message.type_url))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The schema GetSchema answers for a statement or prepared statement descriptor.
pub async fn schema_for_descriptor(service: &CclakeFlightSql, request: &Request<FlightDescriptor>) -> Result<SchemaRef, Status> {
    let principal = principal(request)?;
    let any = Any::decode(&*request.get_ref().cmd).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let handle = if let Some(cmd) = any.unpack::<CommandStatementQuery>().map_err(|e| Status::invalid_argument(e.to_string()))? {
        StatementHandle::statement(cmd.query)
    } else if let Some(cmd) = any.unpack::<CommandPreparedStatementQuery>().map_err(|e| Status::invalid_argument(e.to_string()))? {
        StatementHandle::decode(&cmd.prepared_statement_handle)?
    } else {
        return Err(Status::invalid_argument(format!("GetSchema: unsupported command {}", any.type_url)));
    };
    let df = service.plan(&principal, &handle.pinned(request.metadata())?).await?;
    Ok(CclakeFlightSql::schema_of(&df))
}

/// The IPC form of a schema, as GetSchema returns it.
pub fn schema_result(schema: &Schema) -> Result<arrow_flight::SchemaResult, Status> {
    SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))
}

