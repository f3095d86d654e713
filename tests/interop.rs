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
    let counts: serde_json::Map<String, Value> = cclake::model::LakeTable::ALL
        .iter()
        .filter(|t| t.name() != "fact_interactions")
        .map(|t| (t.name().to_string(), json!(count(lake_s, &format!("SELECT count(*) AS n FROM {}", t.name())))))
        .collect();
    let counts = Value::Object(counts);
    assert_eq!(counts["session_metrics"], 42, "the fixtures' final versions hold 42 metrics");

    let out = std::process::Command::new(python())
        .arg(repo().join("tests/python/read_lake.py"))
        .arg(lake_s)
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
        assert_eq!(theirs[reader]["counts"], counts, "{reader} table counts");
    }
    // Queue names with '/', '=', '&', '%', spaces and accents round-trip through both readers.
    let queues: std::collections::BTreeSet<&str> = ours.iter().filter_map(|r| r["queue_name"].as_str()).collect();
    for q in ["Sales / Renewals", "Support=Tier 2 & Co", "Atención al Cliente", "Collections 50%"] {
        assert!(queues.contains(q), "{q} missing from {queues:?}");
    }
}
