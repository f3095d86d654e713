//! How `cclake query` prints results: an aligned table, CSV, JSON or JSON Lines.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::FormatOptions;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use super::error::QueryError;

/// How `cclake query` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table (NULL printed as `NULL`); buffers the whole result.
    #[default]
    Table,
    /// CSV with a header row, streamed batch by batch.
    Csv,
    /// One JSON array of objects (NULL fields kept as `null`), streamed batch by batch.
    Json,
    /// JSON Lines: one object per line (NULL fields kept as `null`), streamed.
    Jsonl,
}

/// How NULL is shown in a text table, so that it differs from an empty string.
const TABLE_NULL: &str = "NULL";

/// Writes a result to `out` in `format`. CSV and JSON are written batch by batch, so memory
/// stays flat in the row count; a table needs every row for its column widths. An empty
/// result still shows its columns (a CSV header, a table heading, `[]`).
pub async fn write_results(
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), QueryError> {
    // Arrow's writers turn I/O errors into text; this keeps the kind, so that a closed pipe
    // stays recognisable as one.
    let mut out = WatchedOutput { out, failed: None };
    let result = write_formatted(schema, &mut stream, format, &mut out).await;
    match (result, out.failed) {
        (Err(QueryError::Format(_)), Some(kind)) => Err(QueryError::Output(kind.into())),
        (result, _) => result,
    }
}

async fn write_formatted(
    schema: SchemaRef,
    stream: &mut SendableRecordBatchStream,
    format: OutputFormat,
    out: &mut WatchedOutput<'_>,
) -> Result<(), QueryError> {
    match format {
        OutputFormat::Table => {
            let mut batches = vec![RecordBatch::new_empty(Arc::clone(&schema))];
            while let Some(batch) = stream.next().await {
                batches.push(batch?);
            }
            let options = FormatOptions::default().with_null(TABLE_NULL);
            let table = arrow::util::pretty::pretty_format_batches_with_options(&batches, &options)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            // The header is written with the first batch, so an empty one gives it.
            writer.write(&RecordBatch::new_empty(Arc::clone(&schema)))?;
            while let Some(batch) = stream.next().await {
                writer.write(&batch?)?;
            }
        }
        OutputFormat::Json => {
            write_json::<arrow::json::writer::JsonArray>(stream, &mut *out).await?;
            writeln!(out)?;
        }
        OutputFormat::Jsonl => write_json::<arrow::json::writer::LineDelimited>(stream, &mut *out).await?,
    }
    out.flush()?;
    Ok(())
}

/// JSON in framing `F` (one array, or one object a line), NULL fields kept as `null`.
async fn write_json<F: arrow::json::writer::JsonFormat>(
    stream: &mut SendableRecordBatchStream,
    out: &mut WatchedOutput<'_>,
) -> Result<(), QueryError> {
    let mut writer = arrow::json::WriterBuilder::new().with_explicit_nulls(true).build::<_, F>(out);
    while let Some(batch) = stream.next().await {
        writer.write(&batch?)?;
    }
    writer.finish()?;
    Ok(())
}

/// An output that remembers the kind of its first write error.
struct WatchedOutput<'a> {
    out: &'a mut dyn Write,
    failed: Option<std::io::ErrorKind>,
}

impl Write for WatchedOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf).inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }
}

/// Renders collected batches in `format` (the demo's KPI tables, tests).
pub async fn format_batches(batches: Vec<RecordBatch>, schema: SchemaRef, format: OutputFormat) -> Result<String, QueryError> {
    let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
        Arc::clone(&schema),
        futures::stream::iter(batches.into_iter().map(Ok)),
    );
    let mut out = Vec::new();
    write_results(schema, Box::pin(stream), format, &mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
