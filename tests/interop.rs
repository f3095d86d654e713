//! Interoperability: the Python `deltalake` package and DuckDB's delta extension read the
//! lake without cclake and see the same rows as `cclake query`.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn deltalake_python_and_duckdb_read_the_same_rows_as_cclake() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    generate(&exports.join("generated"), 300, 2, true);
    // The Genesys tables too: conversations replaced by a later export must read the same.
    copy_genesys_fixtures(&exports.join("genesys"), &[]);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s, "--batch-rows", "200", "--compact-min-files", "3"]);

    let ours: Vec<Value> = query(
        lake_s,
        "SELECT event_id, interaction_id, queue_name, CAST(event_date AS VARCHAR) AS event_date, \
         to_char(event_timestamp, '%Y-%m-%dT%H:%M:%S.%6f') AS event_timestamp, state, duration_seconds, \
         caller_number_masked FROM fact_interactions ORDER BY event_id",
    )
    .into_iter()
    .map(|mut row| {
        // cclake's JSON leaves nulls out; the Python side prints them.
        for col in ["queue_name", "state", "duration_seconds", "caller_number_masked"] {
            row.as_object_mut().unwrap().entry(col).or_insert(Value::Null);
        }
        row
    })
    .collect();
    assert!(ours.len() > 500);
    // Every other table compared by content: per column, what the three readers compute
    // from its values (counts, distinct counts, extremes, sums, total text length).
    let columns: serde_json::Map<String, Value> = cclake::model::LakeTable::ALL
        .iter()
        .filter(|t| t.name() != "fact_interactions")
        .map(|t| {
            let kinds: Vec<Value> = t.schema().fields().iter().map(|f| json!([f.name(), column_kind(f.data_type())])).collect();
            (t.name().to_string(), Value::Array(kinds))
        })
        .collect();
    let digests: serde_json::Map<String, Value> = columns
        .iter()
        .map(|(table, kinds)| (table.clone(), Value::Array(cclake_digest(lake_s, table, kinds.as_array().unwrap()))))
        .collect();
    assert_eq!(digests["session_metrics"][0], 42, "the fixtures' final versions hold 42 metrics");

    let out = std::process::Command::new(python())
        .arg(repo().join("tests/python/read_lake.py"))
        .arg(lake_s)
        .arg(Value::Object(columns).to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "read_lake.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    for reader in ["deltalake", "duckdb"] {
        let rows = theirs[reader]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), ours.len(), "{reader} row count");
        for (a, b) in rows.iter().zip(&ours) {
            assert_eq!(a, b, "{reader} reads a different row");
        }
        for (table, ours) in &digests {
            let theirs = theirs[reader]["digests"][table].as_array().unwrap_or_else(|| panic!("{reader}: no {table}"));
            let ours = ours.as_array().unwrap();
            assert_eq!(theirs.len(), ours.len(), "{reader}: {table}");
            for (i, (a, b)) in theirs.iter().zip(ours).enumerate() {
                assert!(same_value(a, b), "{reader} reads {table} differently (value {i}): {a} != {b}");
            }
        }
    }
    // Queue names with '/', '=', '&', '%', spaces and accents round-trip through both readers.
    let queues: std::collections::BTreeSet<&str> = ours.iter().filter_map(|r| r["queue_name"].as_str()).collect();
    for q in ["Sales / Renewals", "Support=Tier 2 & Co", "Atención al Cliente", "Collections 50%"] {
        assert!(queues.contains(q), "{q} missing from {queues:?}");
    }
}

/// How a column is digested: by the kind of its values.
fn column_kind(t: &arrow::datatypes::DataType) -> &'static str {
    use arrow::datatypes::DataType::*;
    match t {
        Utf8 | LargeUtf8 | Utf8View => "text",
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => "int",
        Float32 | Float64 => "float",
        Boolean => "bool",
        Date32 => "date",
        Timestamp(..) => "timestamp",
        _ => "other",
    }
}

/// A table's digest as cclake computes it, in the order tests/python/read_lake.py does:
/// the row count, then per column its non-null count and what its kind adds.
fn cclake_digest(lake: &str, table: &str, kinds: &[Value]) -> Vec<Value> {
    let mut exprs = vec!["count(*)".to_string()];
    for kind in kinds {
        let (name, kind) = (kind[0].as_str().unwrap(), kind[1].as_str().unwrap());
        let c = format!("\"{name}\"");
        exprs.push(format!("count({c})"));
        match kind {
            "text" => exprs.extend([format!("count(DISTINCT {c})"), format!("min({c})"), format!("max({c})"), format!("sum(length({c}))")]),
            // Summed as doubles: 64-bit hashes overflow an integer sum.
            "int" => exprs.extend([format!("count(DISTINCT {c})"), format!("min({c})"), format!("max({c})"), format!("sum(CAST({c} AS DOUBLE))")]),
            "float" => exprs.extend([format!("min({c})"), format!("max({c})"), format!("sum({c})")]),
            "bool" => exprs.push(format!("sum(CASE WHEN {c} THEN 1 ELSE 0 END)")),
            "date" => exprs.extend([format!("count(DISTINCT {c})"), format!("min(CAST({c} AS VARCHAR))"), format!("max(CAST({c} AS VARCHAR))")]),
            "timestamp" => exprs.extend([format!("count(DISTINCT {c})"), format!("min(CAST({c} AS BIGINT))"), format!("max(CAST({c} AS BIGINT))")]),
            _ => {}
        }
    }
    let select: Vec<String> = exprs.iter().enumerate().map(|(i, e)| format!("{e} AS v{i}")).collect();
    let row = query(lake, &format!("SELECT {} FROM {table}", select.join(", "))).remove(0);
    // cclake's JSON leaves nulls out.
    (0..exprs.len()).map(|i| row.get(format!("v{i}")).cloned().unwrap_or(Value::Null)).collect()
}

/// Equal values, numbers to 1e-9 relative (sums of floats in another order).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}
