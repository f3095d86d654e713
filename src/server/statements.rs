//! Statement handles and bound parameters of the Flight SQL service.
//!
//! Clients use prepared statements in two styles. ADBC and JDBC take the handle that the
//! DoPut of parameters answers with, so the parameters travel inside it and the server needs
//! no state. Others (flightsql-dbapi) keep the handle they got from CreatePreparedStatement
//! and execute that: for them the server also keeps the last parameters bound to each
//! prepared statement, in a store bounded in size and age and freed by
//! ClosePreparedStatement.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::ipc::writer::StreamWriter;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// Base64 as clients send it: the Go driver leaves out `=` padding, others keep it.
pub(crate) const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a statement or prepared-statement handle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatementHandle {
    pub(crate) sql: String,
    /// Names the prepared statement in the server's parameter store (0 for plain statements).
    #[serde(default)]
    pub(crate) id: u64,
    /// Bound parameters: one row, as an Arrow IPC stream in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) params: Option<String>,
    /// The past state of the lake the statement reads (the `cclake-as-of` call header of the
    /// request that made the handle): carried in the ticket, so the DoGet that follows reads
    /// the same state whether or not the client sends the header again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) as_of: Option<String>,
}

impl StatementHandle {
    pub(crate) fn statement(sql: String) -> Self {
        Self { sql, id: 0, params: None, as_of: None }
    }

    /// A prepared statement with an id that no other client can guess.
    pub(crate) fn prepared(sql: String) -> Self {
        Self { sql, id: rand::random::<u64>().max(1), params: None, as_of: None }
    }

    /// The handle pinned to the state `metadata`'s `cclake-as-of` header names, when it
    /// names one (a header overrides what the handle carried).
    pub(crate) fn pinned(mut self, metadata: &tonic::metadata::MetadataMap) -> Result<Self, Status> {
        if let Some(value) = metadata.get(crate::query::as_of::AS_OF_HEADER) {
            let text = value
                .to_str()
                .map_err(|_| Status::invalid_argument("the cclake-as-of header is not text"))?;
            self.as_of = Some(text.to_string());
        }
        Ok(self)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(bytes).map_err(|_| Status::invalid_argument("invalid statement handle"))
    }
}

/// One row of parameter values as sent by a client, kept as Arrow IPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParameterRow(Vec<u8>);

impl ParameterRow {
    /// Checks what a DoPut sent: exactly one row (a query runs with one set of values).
    pub(crate) fn from_batches(batches: &[RecordBatch]) -> Result<Self, Status> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Err(Status::invalid_argument("no parameter values were sent"));
        };
        if rows > 1 {
            return Err(Status::invalid_argument(format!(
                "{rows} rows of parameter values were sent: a query runs with one row of values; \
                 execute it once per row instead"
            )));
        }
        let mut bytes = Vec::new();
        let internal = |e: arrow::error::ArrowError| Status::internal(e.to_string());
        let mut writer = StreamWriter::try_new(&mut bytes, &first.schema()).map_err(internal)?;
        writer.write(first).map_err(internal)?;
        writer.finish().map_err(internal)?;
        drop(writer);
        Ok(Self(bytes))
    }

    pub(crate) fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }

    pub(crate) fn from_base64(text: &str) -> Result<Self, Status> {
        BASE64_ANY_PADDING
            .decode(text)
            .map(Self)
            .map_err(|_| Status::invalid_argument("invalid parameters in statement handle"))
    }

    /// The values, in placeholder order, unwrapped from union columns (flightsql-dbapi sends
    /// every value as a one-row dense union).
    pub(crate) fn values(&self) -> Result<Vec<ScalarValue>, Status> {
        let invalid = |e: &dyn std::fmt::Display| Status::invalid_argument(format!("invalid parameters: {e}"));
        let reader = arrow::ipc::reader::StreamReader::try_new(self.0.as_slice(), None).map_err(|e| invalid(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| invalid(&e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            return batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, 0).map(unwrap_union).map_err(|e| invalid(&e)))
                .collect();
        }
        Ok(Vec::new())
    }
}

fn unwrap_union(value: ScalarValue) -> ScalarValue {
    match value {
        ScalarValue::Union(Some((_, inner)), _, _) => unwrap_union(*inner),
        ScalarValue::Union(None, _, _) => ScalarValue::Null,
        other => other,
    }
}

/// Matches `values` to the query's placeholders (`$1`, `$2`, ...) with the types planning
/// inferred: too few or too many values, or a value that does not convert to its
/// placeholder's type, is INVALID_ARGUMENT with the reason.
pub(crate) fn bind_values(
    placeholders: &[(usize, Option<DataType>)],
    values: Vec<ScalarValue>,
) -> Result<ParamValues, Status> {
    if values.len() != placeholders.len() {
        let names: Vec<String> = placeholders.iter().map(|(i, _)| format!("${i}")).collect();
        return Err(Status::invalid_argument(format!(
            "the query has {} parameter(s) ({}) but {} value(s) were bound",
            placeholders.len(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") },
            values.len()
        )));
    }
    let mut bound = Vec::with_capacity(values.len());
    for ((i, wanted), value) in placeholders.iter().zip(values) {
        let value = match wanted {
            Some(t) if !value.is_null() && &value.data_type() != t => value.cast_to(t).map_err(|_| {
                Status::invalid_argument(format!(
                    "parameter ${i}: a {} value ({}) cannot be used where the query needs {t}",
                    value.data_type(),
                    bounded_display(&value)
                ))
            })?,
            Some(t) if value.is_null() => ScalarValue::try_from(t).unwrap_or(value),
            _ => value,
        };
        bound.push(value);
    }
    Ok(ParamValues::from(bound))
}

/// A value as shown in an error: never more than a few dozen characters of client input.
fn bounded_display(value: &ScalarValue) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

/// The parameters last bound to each open prepared statement, for clients that execute the
/// handle they got at creation; or why the last binding was refused, since such clients also
/// tend to ignore the DoPut's answer.
#[derive(Debug)]
pub(crate) struct ParameterStore {
    entries: Mutex<HashMap<u64, StoredParameters>>,
    capacity: usize,
    /// The most bytes of parameter values kept, all statements together.
    max_bytes: usize,
    max_age: Duration,
}

#[derive(Debug)]
struct StoredParameters {
    /// Only the user who bound them may execute with them.
    user: String,
    bound_at: Instant,
    row: Result<ParameterRow, String>,
}

impl ParameterStore {
    pub(crate) fn new(capacity: usize, max_bytes: usize, max_age: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1), max_bytes, max_age }
    }

    pub(crate) fn put(&self, id: u64, user: &str, row: Result<ParameterRow, String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.bound_at) < self.max_age);
        entries.remove(&id);
        let bytes = |row: &Result<ParameterRow, String>| match row {
            Ok(row) => row.0.len(),
            Err(why) => why.len(),
        };
        let size = bytes(&row);
        let mut held: usize = entries.values().map(|e| bytes(&e.row)).sum();
        // Full of live statements, by count or by bytes: those bound longest ago make room.
        while !entries.is_empty() && (entries.len() >= self.capacity || held + size > self.max_bytes) {
            let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.bound_at).map(|(k, _)| *k) else { break };
            if let Some(gone) = entries.remove(&oldest) {
                held -= bytes(&gone.row);
            }
        }
        entries.insert(id, StoredParameters { user: user.to_string(), bound_at: now, row });
    }

    pub(crate) fn get(&self, id: u64, user: &str) -> Option<Result<ParameterRow, String>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|e| e.user == user && e.bound_at.elapsed() < self.max_age)
            .map(|e| e.row.clone())
    }

    pub(crate) fn remove(&self, id: u64) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// `?` placeholders (as JDBC and ADBC send them) become `$1`, `$2`, ... outside quotes and
/// comments, since DataFusion numbers its placeholders.
pub fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn question_marks_are_numbered_outside_quotes() {
        assert_eq!(
            number_placeholders("SELECT '?', \"a?\" FROM t WHERE a = ? AND b = ? -- ?\n AND c = ?"),
            "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = $2 -- ?\n AND c = $3"
        );
    }

    #[test]
    fn handles_round_trip() {
        let h = StatementHandle::prepared("SELECT 1".into());
        assert_ne!(h.id, 0);
        assert_eq!(StatementHandle::decode(&h.encode()).unwrap(), h);
        let junk = StatementHandle::decode(b"junk").unwrap_err();
        assert_eq!((junk.code(), junk.message()), (tonic::Code::InvalidArgument, "invalid statement handle"));
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        assert_eq!(BASE64_ANY_PADDING.decode("YW5hOnB3").unwrap(), b"ana:pw");
        assert_eq!(BASE64_ANY_PADDING.decode("YW5hOnB3eA").unwrap(), b"ana:pwx");
        assert_eq!(BASE64_ANY_PADDING.decode("YW5hOnB3eA==").unwrap(), b"ana:pwx");
    }

    fn batch(values: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
    }

    #[test]
    fn one_row_of_parameters_round_trips_and_more_rows_are_refused() {
        let row = ParameterRow::from_batches(&[batch(vec![]), batch(vec![7])]).unwrap();
        let again = ParameterRow::from_base64(&row.to_base64()).unwrap();
        assert_eq!(again.values().unwrap(), vec![ScalarValue::Int64(Some(7))]);
        let err = ParameterRow::from_batches(&[batch(vec![1, 2, 3])]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("3 rows"), "{}", err.message());
        let none = ParameterRow::from_batches(&[batch(vec![])]).unwrap_err();
        assert_eq!((none.code(), none.message()), (tonic::Code::InvalidArgument, "no parameter values were sent"));
    }

    #[test]
    fn values_are_matched_to_placeholders_with_their_types() {
        let placeholders = [(1, Some(DataType::Int64))];
        let ok = bind_values(&placeholders, vec![ScalarValue::Utf8(Some("42".into()))]).unwrap();
        assert!(matches!(ok, ParamValues::List(ref v) if v.len() == 1 && v[0].value == ScalarValue::Int64(Some(42))), "{ok:?}");
        let wrong = bind_values(&placeholders, vec![ScalarValue::Utf8(Some("abc".into()))]).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
        assert!(wrong.message().contains("parameter $1"), "{}", wrong.message());
        let extra = bind_values(&placeholders, vec![ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(2))]).unwrap_err();
        assert!(extra.message().contains("1 parameter(s) ($1) but 2 value(s)"), "{}", extra.message());
        let none = bind_values(&[], vec![ScalarValue::Int64(Some(1))]).unwrap_err();
        assert!(none.message().contains("(none)"), "{}", none.message());
    }

    #[test]
    fn the_store_is_per_user_bounded_and_freed_on_close() {
        let store = ParameterStore::new(2, 1 << 20, Duration::from_secs(60));
        let row = ParameterRow::from_batches(&[batch(vec![1])]).unwrap();
        store.put(1, "ana", Ok(row.clone()));
        assert_eq!(store.get(1, "ana"), Some(Ok(row.clone())));
        assert_eq!(store.get(1, "mallory"), None);
        store.put(2, "ana", Err("refused".into()));
        assert_eq!(store.get(2, "ana"), Some(Err("refused".into())));
        store.put(3, "ana", Ok(row.clone()));
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(1, "ana"), None, "the oldest made room");
        store.remove(3);
        assert_eq!(store.get(3, "ana"), None);
        let expired = ParameterStore::new(2, 1 << 20, Duration::ZERO);
        expired.put(1, "ana", Ok(row.clone()));
        assert_eq!(expired.get(1, "ana"), None);
        // Bounded by bytes too: a row of n bytes fits twice in 2n, not three times.
        let n = row.0.len();
        let by_bytes = ParameterStore::new(100, 2 * n, Duration::from_secs(60));
        for id in 1..=3 {
            by_bytes.put(id, "ana", Ok(row.clone()));
        }
        assert_eq!(by_bytes.len(), 2);
        assert_eq!(by_bytes.get(1, "ana"), None, "the oldest made room");
    }

    #[test]
    fn union_parameters_are_unwrapped() {
        // flightsql-dbapi: a dense union of (int, float, str, bytes, bool), one value.
        use arrow::array::{Array, Float64Array, UnionArray};
        use arrow::buffer::ScalarBuffer;
        use arrow::datatypes::UnionFields;
        let fields = UnionFields::try_new(
            [0, 1, 2],
            [
                Field::new("i", DataType::Int64, true),
                Field::new("f", DataType::Float64, true),
                Field::new("s", DataType::Utf8, true),
            ],
        )
        .unwrap();
        let union = UnionArray::try_new(
            fields,
            ScalarBuffer::from(vec![2_i8]),
            Some(ScalarBuffer::from(vec![0_i32])),
            vec![
                Arc::new(Int64Array::from(Vec::<i64>::new())),
                Arc::new(Float64Array::from(Vec::<f64>::new())),
                Arc::new(StringArray::from(vec!["Billing"])),
            ],
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("p0", union.data_type().clone(), false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(union)]).unwrap();
        let row = ParameterRow::from_batches(&[b]).unwrap();
        assert_eq!(row.values().unwrap(), vec![ScalarValue::Utf8(Some("Billing".into()))]);
    }
}
