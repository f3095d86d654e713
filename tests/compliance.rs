//! Customer data under the law, driven through the real CLI, server and ADBC client:
//! erasure that reaches every file (after vacuum), retention, reports as of a past state.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::flight::{add_user, FlightServer};
use crate::support::*;

/// Every file under `dir` that holds `needle`, read without cclake: Parquet files value by
/// value (their pages are compressed), every other file (Delta logs, checkpoints, cclake's
/// own records) as bytes.
fn files_holding(dir: &Path, needles: &[&str]) -> Vec<String> {
    let script = r#"
import os, sys
import pyarrow.parquet as pq
root, needles = sys.argv[1], sys.argv[2:]
for folder, _, names in os.walk(root):
    for name in names:
        path = os.path.join(folder, name)
        data = open(path, "rb").read()
        found = [n for n in needles if n.encode() in data]
        if name.endswith(".parquet"):
            table = pq.read_table(path)
            text = "\n".join(str(v) for column in table.columns for v in column.to_pylist())
            found += [n for n in needles if n in text]
        if found:
            print(path, sorted(set(found)))
"#;
    let out = Command::new(python()).arg("-c").arg(script).arg(dir).args(needles).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

fn failure(args: &[&str]) -> (i32, String) {
    let out = cclake_command().args(args).output().unwrap();
    assert!(!out.status.success(), "cclake {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn erasure_reaches_every_file_after_vacuum_and_a_redelivery_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let exports_s = exports.to_str().unwrap();
    cclake(&["generate", "--shape", "seed", "--out", exports_s, "--interactions", "300", "--days", "2", "--seed", "5"]);
    // Two customers' interactions, from the files, and a third customer's only record, which
    // is quarantined (a UUID id: quarantined text keeps it, where it masks a numeric one as
    // it would a phone number).
    let texts = export_texts(&exports);
    let id = regex::Regex::new(r#""interaction_id": "(\d+)""#).unwrap();
    let first = &texts.iter().find(|(p, _)| p.extension().is_some_and(|e| e == "jsonl")).unwrap();
    let ids: Vec<String> = id.captures_iter(&first.1).map(|c| c[1].to_string()).take(20).collect();
    let (a, b) = (ids[0].clone(), ids.iter().find(|i| **i != ids[0]).unwrap().clone());
    let events_of = |x: &str| texts.iter().map(|(_, t)| t.matches(&format!("\"interaction_id\": \"{x}\"")).count()).sum::<usize>();
    let expected = events_of(&a) + events_of(&b);
    assert!(expected >= 2, "{expected}");
    std::fs::create_dir_all(exports.join("extra")).unwrap();
    let u = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    std::fs::write(
        exports.join("extra/bad.jsonl"),
        format!("{{\"event_id\": \"bad-1\", \"interaction_id\": \"{u}\", \"timestamp\": \"2024-02-30T25:61:00Z\"}}\n"),
    )
    .unwrap();

    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports_s, "--lake", lake_s]);
    let of_them = format!("interaction_id IN ('{a}', '{b}')");
    let total = count(lake_s, "SELECT count(*) AS n FROM fact_interactions");
    assert_eq!(count(lake_s, &format!("SELECT count(*) AS n FROM fact_interactions WHERE {of_them}")), expected as i64);
    assert!(count(lake_s, &format!("SELECT count(*) AS n FROM call_recordings WHERE {of_them}")) >= 1);
    assert_eq!(count(lake_s, &format!("SELECT count(*) AS n FROM quarantine WHERE record LIKE '%{u}%'")), 1);

    let list = dir.path().join("ids.txt");
    std::fs::write(&list, format!("# ticket 42\n{b}\n\n{u}\n")).unwrap();
    let out = stdout(&cclake(&["erase", "--lake", lake_s, "--interaction-id", &a, "--from-file", list.to_str().unwrap(), "--by", "dpo@example"]));
    assert!(out.contains("erased 3 ids"), "{out}");
    for table in ["fact_interactions", "call_recordings"] {
        assert_eq!(count(lake_s, &format!("SELECT count(*) AS n FROM {table} WHERE {of_them}")), 0, "{table}");
    }
    assert_eq!(count(lake_s, &format!("SELECT count(*) AS n FROM quarantine WHERE record LIKE '%{u}%'")), 0);
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), total - expected as i64, "only their rows left");
    // The erasure is recorded in the lake: who and when, the ids only as hashes.
    let records = lake.join("_cclake/erasures");
    let record: Vec<String> = std::fs::read_dir(&records).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert_eq!(record.len(), 1);
    assert!(record[0].contains("dpo@example") && ![a.as_str(), b.as_str(), u].iter().any(|id| record[0].contains(id)), "{}", record[0]);
    let hashes: serde_json::Value = serde_json::from_str(&record[0]).unwrap();
    assert_eq!(hashes["hashes"].as_array().unwrap().len(), 3);

    // The source re-delivers the customer's export: it stays out.
    let holding = texts.iter().find(|(_, t)| t.contains(&format!("\"interaction_id\": \"{a}\""))).unwrap();
    std::fs::create_dir_all(exports.join("redelivered")).unwrap();
    std::fs::write(exports.join("redelivered/again.jsonl"), &holding.1).unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    std::fs::File::options().write(true).open(exports.join("redelivered/again.jsonl")).unwrap().set_modified(later).unwrap();
    let out = stdout(&cclake(&["ingest", "--source", exports_s, "--lake", lake_s]));
    assert!(out.contains(", 1 read"), "{out}");
    assert_eq!(count(lake_s, &format!("SELECT count(*) AS n FROM fact_interactions WHERE {of_them}")), 0);
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), total - expected as i64);

    // Until vacuum, the old files still hold them; a dry run deletes nothing.
    assert!(!files_holding(&lake, &[&a, &b, u]).is_empty(), "the replaced files are still there");
    let dry = stdout(&cclake(&["vacuum", "--lake", lake_s, "--retain", "0d", "--dry-run"]));
    assert!(dry.contains("would delete") && dry.contains(".parquet"), "{dry}");
    assert!(!files_holding(&lake, &[&a, &b, u]).is_empty());
    cclake(&["vacuum", "--lake", lake_s, "--retain", "0d"]);
    assert_eq!(files_holding(&lake, &[&a, &b, u]), Vec::<String>::new(), "no file under the lake holds an erased id");
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), total - expected as i64);
    // A report as of before the vacuum is refused, not answered from what is left.
    let (code, message) = failure(&["query", "--lake", lake_s, "--as-of", "0", "SELECT count(*) FROM fact_interactions"]);
    assert_eq!(code, 65, "{message}");
    assert!(message.contains("vacuum horizon"), "{message}");
}

#[test]
fn retention_drops_whole_days_past_the_horizon_in_every_dated_table() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    generate(&exports, 300, 3, false);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s]);
    // The generator's three days start on 2024-03-04; keep from the 5th.
    let kept = count(lake_s, "SELECT count(*) AS n FROM fact_interactions WHERE event_date >= DATE '2024-03-05'");
    let dropped = count(lake_s, "SELECT count(*) AS n FROM fact_interactions WHERE event_date < DATE '2024-03-05'");
    assert!(kept > 0 && dropped > 0);
    let out = stdout(&cclake(&["retain", "--lake", lake_s, "--before", "2024-03-05"]));
    assert!(out.contains("fact_interactions") && out.contains("call_recordings"), "{out}");
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), kept);
    for table in ["fact_interactions", "call_recordings"] {
        assert_eq!(count(lake_s, &format!("SELECT count(*) AS n FROM {table} WHERE event_date < DATE '2024-03-05'")), 0, "{table}");
    }
    // Ingesting again reads nothing new: the log of ingested objects is kept.
    let again = stdout(&cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s]));
    assert!(again.contains(", 0 read"), "{again}");
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), kept);
    // --older-than counts back from today: every generated day is past 400 days.
    cclake(&["retain", "--lake", lake_s, "--older-than", "400d"]);
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM fact_interactions"), 0);

    // The server's schedule runs it too, after its first pass.
    let scheduled = dir.path().join("scheduled");
    let scheduled_s = scheduled.to_str().unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", scheduled_s]);
    assert!(count(scheduled_s, "SELECT count(*) AS n FROM fact_interactions") > 0);
    let config = dir.path().join("cclake.toml");
    add_user(&config, "ana", "analyst", "analyst-pw");
    let _server = FlightServer::start(
        scheduled_s,
        &config,
        &["--ingest-from", exports.to_str().unwrap(), "--interval", "1s", "--retain-for", "400d", "--vacuum-retain", "7d"],
    );
    wait_for("the scheduled retention", Duration::from_secs(60), || {
        count(scheduled_s, "SELECT count(*) AS n FROM fact_interactions") == 0
    });
}

/// The newest version of a table, read from its Delta log folder (not through cclake).
fn newest_version(table: &Path) -> i64 {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".json").and_then(|v| v.parse().ok()))
        .max()
        .unwrap()
}

#[test]
fn reports_as_of_a_past_version_or_time_over_adbc_with_the_header_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let event = |id: &str, seconds: i64| {
        format!(r#"{{"event_id": "{id}", "interaction_id": "i-{id}", "timestamp": "2024-03-04T10:00:00Z", "type": "voice", "direction": "inbound", "state": "completed", "queue_name": "Billing", "duration_seconds": {seconds}}}"#)
    };
    std::fs::write(exports.join("a.jsonl"), [event("e1", 100), event("e2", 200), event("e3", 300)].join("\n")).unwrap();
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s]);
    let version = newest_version(&lake.join("ingest_log")).to_string();
    // A time between the two ingests, set from the file system, not a clock read between
    // sleeps: the first batch's last commit (its `ingest_log` entry) was written then.
    let committed = lake.join(format!("ingest_log/_delta_log/{:020}.json", newest_version(&lake.join("ingest_log"))));
    let between: chrono::DateTime<chrono::Utc> = std::fs::metadata(committed).unwrap().modified().unwrap().into();
    let between = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // A correction: e1 lasted 1000 s, not 100.
    std::fs::write(exports.join("b.jsonl"), event("e1", 1000)).unwrap();
    let later = SystemTime::now() + Duration::from_secs(60);
    std::fs::File::options().write(true).open(exports.join("b.jsonl")).unwrap().set_modified(later).unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s]);

    let sql = "SELECT sum(duration_seconds) AS s FROM fact_interactions WHERE queue_name = 'Billing'";
    let sum = |extra: &[&str]| {
        let mut args = vec!["query", "--lake", lake_s, "--format", "csv"];
        args.extend_from_slice(extra);
        args.push(sql);
        stdout(&cclake(&args)).lines().nth(1).unwrap().to_string()
    };
    assert_eq!(sum(&[]), "1500");
    assert_eq!(sum(&["--as-of", &version]), "600");
    assert_eq!(sum(&["--as-of", &between]), "600");

    let config = dir.path().join("cclake.toml");
    add_user(&config, "ana", "analyst", "analyst-pw");
    let server = FlightServer::start(lake_s, &config, &[]);
    let script = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flightsql
url, sql, pins = sys.argv[1], sys.argv[2], sys.argv[3:]
answers = {}
for pin in pins:
    options = {"username": "ana", "password": "analyst-pw"}
    if pin != "newest":
        options["adbc.flight.sql.rpc.call_header.cclake-as-of"] = pin
    with flightsql.connect(url, db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql)
            answers[pin] = cur.fetchall()[0][0]
        except Exception as e:
            answers[pin] = "error: " + str(e)
print(json.dumps(answers))
"#;
    let ask = |sql: &str, pins: &[&str]| -> serde_json::Value {
        let out = Command::new(python()).arg("-c").arg(script).arg(&server.url).arg(sql).args(pins).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let answers = ask(sql, &["newest", &version, &between, "2020-01-01T00:00:00Z", "yesterday"]);
    assert_eq!(answers["newest"], 1500, "{answers}");
    assert_eq!(answers[&version], 600, "{answers}");
    assert_eq!(answers[&between], 600, "{answers}");
    assert!(answers["2020-01-01T00:00:00Z"].as_str().unwrap().contains("held nothing yet"), "{answers}");
    assert!(answers["yesterday"].as_str().unwrap().contains("RFC 3339"), "{answers}");
    // A version clause in SQL is refused, never answered from the newest snapshot.
    let clause = ask(&format!("SELECT sum(duration_seconds) FROM fact_interactions TIMESTAMP AS OF '{between}'"), &["newest"]);
    assert!(clause["newest"].as_str().unwrap().contains("cclake-as-of"), "{clause}");

    // After a vacuum that keeps nothing, the old version is refused with a clear error.
    cclake(&["vacuum", "--lake", lake_s, "--retain", "0d"]);
    let answers = ask(sql, &["newest", &version]);
    assert_eq!(answers["newest"], 1500, "{answers}");
    assert!(answers[&version].as_str().unwrap().contains("vacuum horizon"), "{answers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_is_in_the_access_log_that_only_auditors_read() {
    use crate::flight::{client, fixture_lake, rows};
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = fixture_lake(dir.path());
    let server = FlightServer::start(&lake, &config, &[]);
    let mut ana = client(server.port).await;
    ana.handshake("ana", "analyst-pw").await.unwrap();
    let billing = "SELECT count(*) AS n FROM fact_interactions WHERE queue_name = 'Billing'";
    assert_eq!(rows(&mut ana, billing).await.len(), 1);
    let refused = ana.execute("SELECT * FROM call_recordings".into(), None).await.unwrap_err().to_string();
    assert!(refused.contains("call_recordings"), "{refused}");
    let mut aud = client(server.port).await;
    aud.handshake("aud", "auditor-pw").await.unwrap();
    let recordings = rows(&mut aud, "SELECT * FROM call_recordings").await.len();
    assert!(recordings > 0);

    // Appended in the background within seconds: wait for the auditor's own query.
    let logged = "SELECT user_name, role, statement, tables_read, rows_returned, bytes_returned > 0 AS sent, outcome \
                  FROM access_log WHERE statement NOT LIKE '%access_log%' ORDER BY accessed_at";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let entries = rows(&mut aud, logged).await;
        if entries.len() >= 3 || std::time::Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let line = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<String>>();
    assert_eq!(
        entries,
        vec![
            line(&["ana", "analyst", billing, "fact_interactions", "1", "true", "ok"]),
            line(&["ana", "analyst", "SELECT * FROM call_recordings", "", "0", "false", "failed"]),
            line(&["aud", "auditor", "SELECT * FROM call_recordings", "call_recordings", &recordings.to_string(), "true", "ok"]),
        ]
    );
    // "Who read call_recordings last week": one query.
    let readers = rows(
        &mut aud,
        "SELECT DISTINCT user_name FROM access_log WHERE tables_read LIKE '%call_recordings%' AND outcome = 'ok' \
         AND accessed_at > now() - INTERVAL '7 days'",
    )
    .await;
    assert_eq!(readers, vec![vec!["aud".to_string()]]);
    // Analysts cannot read it.
    let hidden = ana.execute("SELECT count(*) FROM access_log".into(), None).await.unwrap_err().to_string();
    assert!(hidden.contains("access_log"), "{hidden}");
}
