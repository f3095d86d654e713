//! What clients receive besides rows: errors as statuses they can act on (bounded, with
//! read-only refusals recognised), the schemas they are told about, FlightInfo and small
//! result streams.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::error::DataFusionError;
use futures::TryStreamExt;
use tonic::{Response, Status};

use crate::server::metadata;
use crate::query::plain_types::plain_type;

/// The stream of an RPC's Flight data.
pub(crate) type FlightDataStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<arrow_flight::FlightData, tonic::Status>> + Send + 'static>>;


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
pub(super) const MAX_ERROR_MESSAGE: usize = 2048;

pub(super) fn bounded_message(message: String) -> String {
    if message.len() <= MAX_ERROR_MESSAGE {
        return message;
    }
    let mut cut = MAX_ERROR_MESSAGE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &message[..cut], message.len())
}

pub(super) fn read_only(what: &str) -> Status {
    Status::permission_denied(format!("cclake is read-only: {what} is refused; only queries run"))
}

/// Maps planning and execution failures to the status a client can act on.
pub(super) fn query_status(e: DataFusionError) -> Status {
    let message = bounded_message(e.strip_backtrace());
    if let Some(refusal) = crate::query::ReadOnlyRefusal::find(&e) {
        return Status::permission_denied(refusal.to_string());
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
pub(super) fn client_schema(schema: &Schema) -> SchemaRef {
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

pub(super) fn schema_ipc(schema: &Schema) -> Result<Vec<u8>, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes.to_vec())
}

pub(super) fn flight_info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
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

pub(super) fn batch_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> FlightDataStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
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
