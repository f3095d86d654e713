//! The lake stays right whatever users do: two writers at once (two `cclake ingest`, an
//! ingest racing a server's scheduled passes), a writer killed or paused while it holds the
//! lake, and a batch that replaces thousands of conversations at once.
//!
//! The oracle is the generator's manifests: a reference lake written by one writer is checked
//! against them, and every raced lake must answer the same KPI queries as that reference,
//! with every key held once.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Each keyed table and its key: a key held twice is the damage two writers did.
const KEYED_TABLES: &[(&str, &str)] = &[
    ("fact_interactions", "event_id"),
    ("call_recordings", "event_id"),
    ("conversations", "conversation_id"),
    ("conversation_events", "event_id"),
    ("queues", "queue_id"),
    ("users", "user_id"),
    ("user_contacts", "user_id"),
    ("wrapup_codes", "wrapup_code_id"),
];

/// The tables holding a conversation's rows: no row may be there twice.
const AGGREGATE_MEMBERS: &[&str] = &["participant_sessions", "session_segments", "session_metrics"];

/// Rows beyond one per key (per identical row, for the aggregate members), by table.
fn duplicates(lake: &str, env: &[(&str, &str)]) -> Value {
    let keyed = KEYED_TABLES
        .iter()
        .map(|(table, key)| format!("SELECT '{table}' AS t, count(*) - count(DISTINCT {key}) AS extra FROM {table}"));
    let members = AGGREGATE_MEMBERS
        .iter()
        .map(|table| format!("SELECT '{table}' AS t, (SELECT count(*) FROM {table}) - (SELECT count(*) FROM (SELECT DISTINCT * FROM {table})) AS extra"));
    let sql = keyed.chain(members).collect::<Vec<_>>().join(" UNION ALL ") + " ORDER BY t";
    Value::Array(query_with_env(lake, &sql, env))
}

fn assert_no_duplicates(lake: &str, env: &[(&str, &str)], round: &str) {
    let found = duplicates(lake, env);
    for row in found.as_array().unwrap() {
        assert_eq!(row["extra"].as_i64(), Some(0), "{round}: {} holds keys more than once: {found}", row["t"]);
    }
}

/// What an analyst reads: the KPI views of both shapes and the row counts of every table.
fn kpis(lake: &str, env: &[(&str, &str)]) -> Value {
    let mut answer = serde_json::Map::new();
    for (name, sql) in [
        ("queue_daily_metrics", "SELECT * FROM queue_daily_metrics"),
        ("kpi_queue_daily", "SELECT * FROM kpi_queue_daily"),
        ("quarantine", "SELECT reason, count(*) AS n FROM quarantine GROUP BY 1 ORDER BY 1"),
        (
            "rows",
            "SELECT (SELECT count(*) FROM fact_interactions) AS f, (SELECT count(*) FROM conversations) AS c, \
             (SELECT count(*) FROM participant_sessions) AS p, (SELECT count(*) FROM session_segments) AS s, \
             (SELECT count(*) FROM session_metrics) AS m, (SELECT count(*) FROM conversation_events) AS e",
        ),
    ] {
        // In a fixed order whatever the plan's: sorted by each row's text.
        let mut rows = query_with_env(lake, sql, env);
        rows.sort_by_key(Value::to_string);
        answer.insert(name.to_string(), Value::Array(rows));
    }
    Value::Object(answer)
}

/// A mixed source (flat events with every fault, Genesys details, EventBridge events and
/// dimension exports) and the KPIs of a lake written from it by one writer, checked against
/// the generator's manifests.
fn mixed_source(dir: &Path) -> (String, Value) {
    let source = dir.join("exports");
    let s = source.to_str().unwrap();
    cclake(&["generate", "--shape", "all", "--faults", "--out", s, "--interactions", "120", "--days", "2", "--seed", "5"]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(source.join("_manifest.json")).unwrap()).unwrap();
    let genesys: Value = serde_json::from_slice(&std::fs::read(source.join("_genesys_manifest.json")).unwrap()).unwrap();
    let reference = dir.join("reference");
    let reference = reference.to_str().unwrap();
    cclake(&["ingest", "--source", s, "--lake", reference]);
    crate::generated::assert_matches_manifest(reference, &manifest);
    crate::genesys::assert_matches_genesys_manifest(reference, &genesys);
    assert_no_duplicates(reference, &[], "reference");
    (s.to_string(), kpis(reference, &[]))
}

fn spawn_cclake(args: &[&str], env: &[(&str, &str)]) -> Child {
    cclake_command()
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cclake starts")
}

fn finished(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Rounds of two `cclake ingest` of one source into one new lake at once.
fn two_writers_rounds(source: &str, lake_of: impl Fn(usize) -> String, env: &[(&str, &str)], reference: &Value, rounds: usize) {
    let mut waited = 0;
    for round in 0..rounds {
        let lake = lake_of(round);
        let args = ["ingest", "--source", source, "--lake", &lake, "--wait", "120s"];
        let (first, second) = (spawn_cclake(&args, env), spawn_cclake(&args, env));
        let (first, second) = (finished(first), finished(second));
        for out in [&first, &second] {
            assert!(out.status.success(), "round {round}: an ingest failed:\n{}", text(out));
        }
        waited += [&first, &second].iter().filter(|o| String::from_utf8_lossy(&o.stderr).contains("waiting for the lake")).count();
        assert_no_duplicates(&lake, env, &format!("round {round}"));
        assert_eq!(&kpis(&lake, env), reference, "round {round}: the KPIs differ from one writer's");
    }
    // The second writer of a round waits for the first (unless the first was done before
    // the second started, which on a loaded machine may happen now and then).
    assert!(waited > 0, "in {rounds} rounds no writer ever waited for another");
}

#[test]
fn two_ingests_at_once_take_turns_and_every_key_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let (source, reference) = mixed_source(dir.path());
    two_writers_rounds(&source, |round| dir.path().join(format!("lake-{round}")).to_str().unwrap().to_string(), &[], &reference, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_ingests_at_once_on_s3_take_turns_and_every_key_lands_once() {
    let server = crate::s3::S3Server::start();
    server.create_bucket("cclake-race");
    let env_owned = server.env();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dir = tempfile::tempdir().unwrap();
        let (source, reference) = mixed_source(dir.path());
        two_writers_rounds(&source, |round| format!("s3://cclake-race/lake-{round}"), &env, &reference, 10);
    })
    .await
    .unwrap();
}

/// The lease objects of a local lake, with their text.
fn leases(lake: &Path) -> Vec<String> {
    let folder = lake.join("_cclake/writer");
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    entries.filter_map(Result::ok).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
}

#[test]
fn an_ingest_racing_the_servers_scheduled_passes_leaves_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (source, reference) = mixed_source(dir.path());
    let config = dir.path().join("cclake.toml");
    crate::flight::add_user(&config, "ana", "analyst", "analyst-pw");
    let mut waited = 0;
    for round in 0..5 {
        let lake_dir = dir.path().join(format!("served-{round}"));
        let lake = lake_dir.to_str().unwrap();
        // The manual ingest creates the lake; the server starts on it as soon as it exists
        // and runs its passes over the same source every 100 ms.
        let mut manual = spawn_cclake(&["ingest", "--source", &source, "--lake", lake, "--wait", "120s"], &[]);
        // The tables exist once the ingest holds the lease for its pass (or has ended).
        wait_for("the lake's tables", Duration::from_secs(60), || {
            leases(&lake_dir).iter().any(|l| l.contains(r#""operation":"ingest""#)) || manual.try_wait().unwrap().is_some()
        });
        let mut server = spawn_cclake(
            &[
                "serve", "--lake", lake, "--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0",
                "--ingest-from", &source, "--interval", "100ms", "--wait", "120s",
            ],
            &[],
        );
        let manual = finished(manual);
        assert!(manual.status.success(), "round {round}: {}", text(&manual));
        // Everything is logged now; the server's passes that follow find nothing new.
        let ingest_log = || count(lake, "SELECT count(*) AS n FROM ingest_log");
        let logged = ingest_log();
        wait_for("no writer holding the lake", Duration::from_secs(60), || leases(&lake_dir).is_empty() || server.try_wait().unwrap().is_some());
        if server.try_wait().unwrap().is_some() {
            panic!("round {round}: the server stopped:\n{}", text(&finished(server)));
        }
        send_signal(&server, "TERM");
        let served = finished(server);
        assert!(served.status.success(), "round {round}: {}", text(&served));
        waited += [&manual, &served].iter().filter(|o| String::from_utf8_lossy(&o.stderr).contains("waiting for the lake")).count();
        assert_eq!(ingest_log(), logged, "round {round}: an object was logged twice");
        assert_no_duplicates(lake, &[], &format!("round {round}"));
        assert_eq!(kpis(lake, &[]), reference, "round {round}: the KPIs differ from one writer's");
    }
    // The server's passes (every 100 ms) ran into the manual ingest's lease.
    assert!(waited > 0, "in 5 rounds neither writer ever waited for the other");
}

fn send_signal(child: &Child, signal: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// A lake being written by an ingest started with a short lease (`ttl`), once that ingest
/// holds the lease: the writer, and the arguments that start another like it.
struct HeldLake {
    dir: tempfile::TempDir,
    source: String,
    /// KPIs of a lake written from the same source by one writer.
    reference: Value,
    ttl: &'static str,
}

impl HeldLake {
    fn start(ttl: &'static str) -> (Self, Child) {
        let dir = tempfile::tempdir().unwrap();
        let (source, reference) = mixed_source(dir.path());
        let held = Self { dir, source, reference, ttl };
        let writer = spawn_args(&held.ingest_args());
        // The lease of the pass itself (not the short one taken to create the tables).
        wait_for("the writer lease", Duration::from_secs(60), || held.leases().iter().any(|l| l.contains(r#""operation":"ingest""#)));
        (held, writer)
    }

    fn lake_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("lake")
    }

    fn lake(&self) -> String {
        self.lake_dir().to_str().unwrap().to_string()
    }

    fn ingest_args(&self) -> Vec<String> {
        ["ingest", "--source", &self.source, "--lake", &self.lake(), "--lease-ttl", self.ttl, "--wait", "60s"].map(String::from).to_vec()
    }

    /// Another ingest like the first, run to its end.
    fn ingest_again(&self) -> Output {
        finished(spawn_args(&self.ingest_args()))
    }

    fn leases(&self) -> Vec<String> {
        leases(&self.lake_dir())
    }

    /// Every key once, and the KPIs of one writer.
    fn assert_right(&self, when: &str) {
        assert_no_duplicates(&self.lake(), &[], when);
        assert_eq!(kpis(&self.lake(), &[]), self.reference, "{when}");
    }
}

fn spawn_args(args: &[String]) -> Child {
    spawn_cclake(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

#[test]
fn a_writer_killed_while_it_holds_the_lake_is_taken_over_after_its_lease_expires() {
    let (lake, mut holder) = HeldLake::start("2s");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!lake.leases().is_empty(), "a killed writer leaves its lease behind");
    // A second writer with a short wait gives up, naming the holder, with its own exit code.
    let busy = cclake_command().args(["ingest", "--source", &lake.source, "--lake", &lake.lake(), "--wait", "0s"]).output().unwrap();
    assert_eq!(busy.status.code(), Some(75), "{}", text(&busy));
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(said.contains("is being written by `cclake ingest` on host") && said.contains(&format!("(process {})", holder.id())), "{said}");
    // One that waits past the TTL takes the lake over and says so.
    let next = lake.ingest_again();
    assert!(next.status.success(), "{}", text(&next));
    assert!(String::from_utf8_lossy(&next.stderr).contains("taking the lake over"), "{}", text(&next));
    assert!(lake.leases().is_empty(), "the lease is released at the end");
    lake.assert_right("after the takeover");
}

#[test]
fn a_writer_paused_past_its_lease_commits_nothing_after_another_took_over() {
    let (lake, paused) = HeldLake::start("1s");
    send_signal(&paused, "STOP");
    let next = lake.ingest_again();
    assert!(next.status.success(), "{}", text(&next));
    assert!(String::from_utf8_lossy(&next.stderr).contains("taking the lake over"), "{}", text(&next));
    send_signal(&paused, "CONT");
    let resumed = finished(paused);
    assert_eq!(resumed.status.code(), Some(75), "the paused writer must stop:\n{}", text(&resumed));
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("lost the lake's writer lease"), "{}", text(&resumed));
    lake.assert_right("after the paused writer resumed");
}

#[test]
fn a_re_export_of_thousands_of_conversations_replaces_them_all_in_one_batch() {
    // Every conversation of the first export comes again, later: one batch replaces them all
    // (the replace path at full width), with the default stack and batch size.
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    cclake(&["generate", "--shape", "details", "--out", first.to_str().unwrap(), "--interactions", "6000", "--days", "1", "--seed", "3"]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(first.join("_genesys_manifest.json")).unwrap()).unwrap();
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    for file in walk(&first) {
        let name = file.strip_prefix(&first).unwrap();
        let copy = again.join(name);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&file, &copy).unwrap();
        std::fs::File::options().write(true).open(&copy).unwrap().set_modified(later).unwrap();
    }
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap();
    cclake(&["ingest", "--source", first.to_str().unwrap(), "--lake", lake]);
    let before = kpis(lake, &[]);
    let out = cclake_command().args(["ingest", "--source", again.to_str().unwrap(), "--lake", lake]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_no_duplicates(lake, &[], "after the re-export");
    let rows = query(lake, "SELECT (SELECT count(*) FROM conversations) AS c, (SELECT count(*) FROM session_metrics) AS m");
    assert_eq!((&rows[0]["c"], &rows[0]["m"]), (&manifest["conversations"], &manifest["metrics"]));
    assert_eq!(kpis(lake, &[]), before, "the same conversations, delivered again, give the same KPIs");
    let replaced = count(lake, "SELECT count(*) AS n FROM conversations WHERE source_object LIKE '%/again/%'");
    assert_eq!(replaced, manifest["conversations"].as_i64().unwrap(), "every conversation now comes from the re-export");
}

fn delta_commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log")).unwrap().filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count()
}

fn copy_dir(from: &Path, to: &Path) {
    for file in walk(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

#[test]
fn check_finds_a_lake_two_writers_damaged_and_repair_restores_one_writers_lake() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference) = mixed_source(dir.path());
    // The lake `mixed_source` wrote with one writer.
    let healthy = dir.path().join("reference");
    let out = cclake_command().args(["check", "--lake", healthy.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the lake is sound"), "{}", text(&out));

    // Damaged as two writers did, by blind appends through the `deltalake` package.
    let damaged = dir.path().join("damaged");
    copy_dir(&healthy, &damaged);
    let lake = damaged.to_str().unwrap();
    let appended = std::process::Command::new(python()).arg(repo().join("tests/python/damage_lake.py")).arg(lake).output().unwrap();
    assert!(appended.status.success(), "{}", text(&appended));
    let appended: Value = serde_json::from_slice(&appended.stdout).unwrap();
    assert_eq!(appended, serde_json::json!({"fact_interactions": 50, "conversations": 15, "session_metrics": appended["session_metrics"]}));
    assert!(appended["session_metrics"].as_i64().unwrap() > 15);
    assert_ne!(kpis(lake, &[]), reference, "the damage shows in the KPIs");

    let out = cclake_command().args(["check", "--lake", lake]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |table: &str| report.lines().find(|l| l.starts_with(&format!("{table} "))).unwrap_or_else(|| panic!("{report}")).to_string();
    assert!(line("fact_interactions").contains("50 keys held more than once (50 extra rows)"), "{report}");
    assert!(line("conversations").contains("15 keys held more than once (15 extra rows)"), "{report}");
    let metrics = format!("15 keys held more than once ({} extra rows)", appended["session_metrics"]);
    assert!(line("session_metrics").contains(&metrics), "{report}");
    for table in ["call_recordings", "participant_sessions", "queues", "quarantine"] {
        assert!(line(table).ends_with("ok"), "{report}");
    }

    // Repair: one commit per damaged table, none elsewhere; then one writer's lake.
    let tables = ["fact_interactions", "conversations", "session_metrics", "call_recordings", "participant_sessions"];
    let before: Vec<usize> = tables.iter().map(|t| delta_commits(&damaged.join(t))).collect();
    let out = cclake_command().args(["check", "--lake", lake, "--repair"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the lake was repaired"), "{}", text(&out));
    let after: Vec<usize> = tables.iter().map(|t| delta_commits(&damaged.join(t))).collect();
    assert_eq!(after, before.iter().zip([1, 1, 1, 0, 0]).map(|(b, n)| b + n).collect::<Vec<_>>());
    assert_no_duplicates(lake, &[], "after the repair");
    assert_eq!(kpis(lake, &[]), reference);
    let facts = "SELECT * FROM fact_interactions ORDER BY event_id";
    assert_eq!(query(lake, facts), query(healthy.to_str().unwrap(), facts), "the stored delivery won over the older copies");
    let out = cclake_command().args(["check", "--lake", lake]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A live file gone from the store is reported, naming it.
    let file = walk(&damaged.join("queues")).into_iter().find(|f| f.extension().is_some_and(|e| e == "parquet")).unwrap();
    std::fs::remove_file(&file).unwrap();
    let out = cclake_command().args(["check", "--lake", lake]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 live files missing") && String::from_utf8_lossy(&out.stdout).contains(&name), "{}", text(&out));
}
