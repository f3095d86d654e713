//! The hand-written fixtures (testdata/exports) through the real CLI: every fault, and the
//! exact lake they must produce.

use serde_json::{json, Value};

use crate::support::*;

/// Checks the lake made from the fixtures, row by row. `env` reaches the object store.
pub fn assert_fixture_lake(lake: &str, env: &[(&str, &str)]) {
    let q = |sql: &str| query_with_env(lake, sql, env);
    let facts = q("SELECT event_id, queue_name, CAST(event_date AS VARCHAR) AS event_date, \
         CAST(event_timestamp AS VARCHAR) AS ts, interaction_type, direction, state, \
         duration_seconds, agent_id, caller_number_masked, campaign_id, source_system \
         FROM fact_interactions ORDER BY event_id");
    let ids: Vec<&str> = facts.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e1", "e10", "e11", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"]);
    let row = |id: &str| facts.iter().find(|r| r["event_id"] == id).unwrap().clone();

    // Corrections win and move partitions (queue for e2, date for e4).
    assert_eq!(row("e2")["queue_name"], "Billing");
    assert_eq!(row("e2")["duration_seconds"], 350);
    assert_eq!(row("e4")["event_date"], "2024-03-04");
    assert_eq!(row("e4")["duration_seconds"], 90);
    // Straddling midnight: e3 stays on its own date.
    assert_eq!(row("e3")["event_date"], "2024-03-04");
    // The late file's event lands in its old partition.
    assert_eq!(row("e9")["event_date"], "2024-03-01");
    // Drifted types, coerced; offsets converted to UTC.
    let e5 = row("e5");
    assert_eq!(e5["ts"], "2024-03-04T12:00:00Z");
    assert_eq!((&e5["interaction_type"], &e5["direction"]), (&json!("voice"), &json!("outbound")));
    assert_eq!(e5["duration_seconds"], 0);
    assert_eq!(e5["queue_name"], "Support=Tier 2 & Co");
    assert_eq!(e5["campaign_id"], "cmp-42");
    assert_eq!(e5["source_system"], "GENESYS_CLOUD");
    let e6 = row("e6");
    assert_eq!(e6["ts"], "2024-03-04T12:10:00.500Z");
    assert_eq!((&e6["duration_seconds"], &e6["agent_id"]), (&json!(600), &json!("42")));
    assert_eq!(row("e11")["duration_seconds"], 300);
    // Queue names with / and accents round-trip exactly.
    assert_eq!(row("e1")["queue_name"], "Sales / Renewals");
    assert_eq!(row("e3")["queue_name"], "Atención al Cliente");
    // PII: at most the last four digits survive.
    assert_eq!(row("e1")["caller_number_masked"], "+****-***-1234");
    assert_eq!(row("e5")["caller_number_masked"], "+** ** **** 0018");
    assert_eq!(row("e6")["caller_number_masked"], "tel:+********0018");
    assert_eq!(row("e2")["caller_number_masked"], "+****-***-1234");

    // e2's latest delivery has no recording: only e6's recording remains.
    let recordings = q("SELECT event_id, recording_url FROM call_recordings ORDER BY event_id");
    assert_eq!(recordings, vec![json!({"event_id": "e6", "recording_url": "s3://recordings-bucket/i3.wav"})]);

    let quarantine = q("SELECT source_object, source_line, reason, field, detail, record \
         FROM quarantine ORDER BY source_object, source_line");
    let summary: Vec<(String, i64, String, Value)> = quarantine
        .iter()
        .map(|r| {
            let object = r["source_object"].as_str().unwrap();
            let name = object.rsplit_once("exports/").map_or(object, |(_, n)| n).to_string();
            (name, r["source_line"].as_i64().unwrap(), r["reason"].as_str().unwrap().to_string(), r.get("field").cloned().unwrap_or(Value::Null))
        })
        .collect();
    let expect = |name: &str, line: i64, reason: &str, field: Option<&str>| {
        (name.to_string(), line, reason.to_string(), field.map_or(Value::Null, |f| json!(f)))
    };
    assert_eq!(
        summary,
        vec![
            expect("broken/mixed.jsonl", 2, "invalid_json", None),
            expect("broken/mixed.jsonl", 3, "missing_field", Some("event_id")),
            expect("broken/mixed.jsonl", 4, "invalid_timestamp", Some("timestamp")),
            expect("broken/mixed.jsonl", 5, "duration_negative", Some("duration_seconds")),
            expect("broken/mixed.jsonl", 6, "duration_not_integer", Some("duration_seconds")),
            expect("broken/mixed.jsonl", 7, "not_an_object", None),
            expect("broken/truncated.jsonl.gz", 0, "unreadable_object", None),
        ]
    );
    // Quarantined records are masked the same way.
    let all = serde_json::to_string(&quarantine).unwrap();
    for secret in ["5559990001", "recordings.example.com", "172.16.0.9"] {
        assert!(!all.contains(secret), "{secret} in quarantine: {all}");
    }
    assert!(all.contains("last tuesday"), "the record is kept for repair: {all}");
    assert_eq!(quarantine[4]["detail"], "duration_seconds is not an integer: \"12.5\"");

    let log = q("SELECT count(*) AS n, sum(records_read) AS records, sum(records_quarantined) AS bad FROM ingest_log");
    assert_eq!(log[0], json!({"n": 8, "records": 21, "bad": 7}));
}

#[test]
fn fixtures_land_with_every_fault_handled() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    let lake = dir.path().join("lake");
    let (exports_s, lake_s) = (exports.to_str().unwrap(), lake.to_str().unwrap());
    let summary = stdout(&cclake(&["ingest", "--source", exports_s, "--lake", lake_s]));
    assert!(summary.contains("objects: 8 listed, 0 already ingested, 8 read"), "{summary}");
    // 20 records in readable objects; the truncated gzip is one unreadable object.
    assert!(summary.contains("records: 20 read, 11 upserted, 6 quarantined"), "{summary}");
    assert!(summary.contains("unreadable objects: 1"), "{summary}");
    assert!(summary.contains("quarantined missing_field (event_id): 1"), "{summary}");
    assert!(summary.contains("metadata.dialer: 1") && summary.contains("sentiment_score: 1"), "{summary}");
    assert_fixture_lake(lake_s, &[]);

    // A re-run reads nothing and changes nothing.
    let again = stdout(&cclake(&["ingest", "--source", exports_s, "--lake", lake_s]));
    assert!(again.contains("8 already ingested, 0 read"), "{again}");
    assert!(again.contains("commits: 0"), "{again}");
    assert_fixture_lake(lake_s, &[]);
}

#[test]
fn each_file_in_its_own_commit_gives_the_same_lake_in_any_order() {
    // One object per batch, read newest-first and then oldest-first: the upsert, not the
    // reading order, decides.
    let mut order: Vec<_> = FIXTURE_DELIVERIES.to_vec();
    order.reverse();
    each_file_in_its_own_commit(&order);
    order.reverse();
    each_file_in_its_own_commit(&order);
}

/// Ingests the fixtures one object a pass in `order`, and checks the lake.
fn each_file_in_its_own_commit(order: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let mut recorded_e2 = false;
    for &(name, delivered) in order {
        let single = dir.path().join(format!("src-{}", name.replace('/', "_")));
        let to = single.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join("testdata/exports").join(name), &to).unwrap();
        set_delivered(&to, delivered);
        cclake(&["ingest", "--source", single.to_str().unwrap(), "--lake", lake_s, "--batch-rows", "1"]);
        // Oldest-first, e2's first delivery stores its recording; its correction, a pass
        // later, has none and deletes it (a deletion made from the winning fact row).
        recorded_e2 |= count(lake_s, "SELECT count(*) AS n FROM call_recordings WHERE event_id = 'e2'") == 1;
    }
    let oldest_first = order.first().is_some_and(|(name, _)| *name == FIXTURE_DELIVERIES[0].0);
    assert_eq!(recorded_e2, oldest_first, "e2's recording is stored only when its first delivery is read first");
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM call_recordings WHERE event_id = 'e2'"), 0);
    let facts = query(lake_s, "SELECT event_id, queue_name, CAST(event_date AS VARCHAR) AS d, duration_seconds FROM fact_interactions WHERE event_id IN ('e2', 'e4') ORDER BY 1");
    assert_eq!(
        facts,
        vec![
            json!({"event_id": "e2", "queue_name": "Billing", "d": "2024-03-04", "duration_seconds": 350}),
            json!({"event_id": "e4", "queue_name": "Atención al Cliente", "d": "2024-03-04", "duration_seconds": 90}),
        ]
    );
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), 11);
    assert_eq!(count(lake_s, "SELECT count(DISTINCT event_id) AS n FROM fact_interactions"), 11);
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM call_recordings"), 1);
}

#[test]
fn a_changed_source_object_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    let lake = dir.path().join("lake");
    let (exports_s, lake_s) = (exports.to_str().unwrap(), lake.to_str().unwrap());
    cclake(&["ingest", "--source", exports_s, "--lake", lake_s]);
    let late = exports.join("late/first-day.jsonl");
    let mut text = std::fs::read_to_string(&late).unwrap();
    text.push_str(r#"{"event_id":"e12","timestamp":"2024-03-01T08:01:00Z","interaction_id":"i5","type":"voice","direction":"inbound","state":"started","queue_name":"Billing"}"#);
    text.push('\n');
    std::fs::write(&late, text).unwrap();
    set_delivered(&late, "2024-03-07T00:00:00Z");
    let summary = stdout(&cclake(&["ingest", "--source", exports_s, "--lake", lake_s]));
    assert!(summary.contains("7 already ingested, 1 read"), "{summary}");
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), 12);
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions WHERE event_date = DATE '2024-03-01'"), 2);
}

#[test]
fn bad_locations_get_clear_errors() {
    let out = cclake_command()
        .args(["ingest", "--source", "ftp://nowhere/x", "--lake", "/tmp/cclake-never"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported URL scheme 'ftp'"), "{err}");
}

#[test]
fn query_is_read_only() {
    let (_dir, _, lake) = ingested_fixtures();
    let lake_s = lake.as_str();
    for sql in [
        "INSERT INTO quarantine VALUES ('x', now(), 1, 'r', NULL, 'd', 'r')",
        "CREATE TABLE t AS SELECT 1",
        "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/cclake-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
        "DROP TABLE fact_interactions",
    ] {
        let out = cclake_command().args(["query", "--lake", lake_s, sql]).output().unwrap();
        assert!(!out.status.success(), "{sql} ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{sql}: {err}");
    }
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM quarantine"), 7, "the fixtures' 7 rows, no more");
}

/// The parquet files a physical plan reads (its `file_groups`).
fn files_scanned(lake: &str, sql: &str) -> Vec<String> {
    let plan = query(lake, &format!("EXPLAIN {sql}"));
    let physical = plan.iter().find(|r| r["plan_type"] == "physical_plan").expect("a physical plan")["plan"]
        .as_str()
        .unwrap()
        .to_string();
    physical
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|part| part.ends_with(".parquet"))
        .map(str::to_string)
        .collect()
}

#[test]
fn partition_filters_prune_files_through_the_plain_type_scan() {
    // The scan casts partition columns from dictionaries to plain strings and claims no
    // exact filtering: the Delta scan must still skip other partitions' files.
    let (_dir, _, lake) = ingested_fixtures();
    let lake_s = lake.as_str();
    let all = walk(&std::path::Path::new(&lake).join("fact_interactions")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    let billing = files_scanned(lake_s, "SELECT event_id FROM fact_interactions WHERE queue_name = 'Billing'");
    assert!(!billing.is_empty() && billing.len() < all, "{billing:?} of {all}");
    assert!(billing.iter().all(|f| f.contains("queue_name=Billing/")), "{billing:?}");
    let day = files_scanned(lake_s, "SELECT event_id FROM fact_interactions WHERE event_date = DATE '2024-03-04'");
    assert!(!day.is_empty() && day.len() < all, "{day:?} of {all}");
    assert!(day.iter().all(|f| f.contains("event_date=2024-03-04/")), "{day:?}");
    // And the answers are the fixtures': Billing holds e2, e7, e8, e9 (testdata/README.md).
    let ids: Vec<Value> = query(lake_s, "SELECT event_id FROM fact_interactions WHERE queue_name = 'Billing' ORDER BY 1")
        .into_iter()
        .map(|r| r["event_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("e2"), json!("e7"), json!("e8"), json!("e9")]);
}

