//! Genesys Cloud exports (conversation details, EventBridge events, queue/user/wrap-up code
//! exports) through the real CLI and the real Flight SQL server: replacement whatever the
//! delivery order, EventBridge re-deliveries, dimension changes, PII in every field, kill -9
//! during a details ingest, and the generator's independent KPIs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::flight::{add_user, client, count as flight_count, FlightServer};
use crate::support::*;

const GENESYS_TABLES: &[&str] = &[
    "SELECT * FROM conversations ORDER BY conversation_id",
    "SELECT * FROM participant_sessions ORDER BY conversation_id, participant_id, session_id",
    "SELECT * FROM session_segments ORDER BY conversation_id, participant_id, session_id, segment_index",
    "SELECT * FROM session_metrics ORDER BY conversation_id, participant_id, session_id, name, emit_date, value",
    "SELECT * FROM conversation_events ORDER BY event_id",
    "SELECT * FROM queues ORDER BY queue_id",
    "SELECT * FROM users ORDER BY user_id",
    "SELECT * FROM user_contacts ORDER BY user_id",
    "SELECT * FROM wrapup_codes ORDER BY wrapup_code_id",
    "SELECT reason, field, detail, record FROM quarantine ORDER BY source_object, source_line, detail",
];

/// The rows of every Genesys table, with the delivery columns (same exports, same rows);
/// source objects from their path under the source on, since each pass has its own folder.
fn genesys_contents(lake: &str) -> Vec<String> {
    let source_root = regex::Regex::new(r"file:///[^,]*?/(details|eventbridge|dimensions)/").unwrap();
    GENESYS_TABLES
        .iter()
        .map(|sql| {
            let text = stdout(&cclake(&["query", "--lake", lake, "--format", "csv", sql]));
            source_root.replace_all(&text, "$1/").into_owned()
        })
        .collect()
}

fn ingest(source: &Path, lake: &str, extra: &[&str]) -> String {
    let mut args = vec!["ingest", "--source", source.to_str().unwrap(), "--lake", lake];
    args.extend_from_slice(extra);
    stdout(&cclake(&args))
}

#[test]
fn a_later_export_replaces_the_conversation_whatever_the_order_objects_are_read_in() {
    let dir = tempfile::tempdir().unwrap();
    // All at once: the 09:05 active export of A and its 13:00 export in one pass.
    let all = dir.path().join("all");
    copy_genesys_fixtures(&all, &[]);
    let together = dir.path().join("together").to_str().unwrap().to_string();
    let summary = ingest(&all, &together, &[]);
    assert!(summary.contains("valid conversation_detail: 7"), "{summary}");
    assert!(summary.contains("quarantined invalid_timestamp (conversationStart): 1"), "{summary}");

    // One object per pass, latest delivery first: the 13:00 export of A lands, then the
    // older 09:05 one is read and must change nothing; EventBridge's 14:00 re-delivery of
    // ev-2 lands before the original; the 5 March queues export before the 4 March one.
    let reversed = dir.path().join("reversed").to_str().unwrap().to_string();
    let mut order: Vec<&(&str, &str)> = GENESYS_DELIVERIES.iter().collect();
    order.sort_by_key(|(name, delivered)| (std::cmp::Reverse(*delivered), *name));
    for (i, (name, _)) in order.iter().enumerate() {
        let source = dir.path().join(format!("pass-{i}"));
        copy_genesys_fixtures(&source, &[name]);
        ingest(&source, &reversed, &[]);
    }
    // And in delivery order, one object per pass: A's active version first, then replaced.
    let forward = dir.path().join("forward").to_str().unwrap().to_string();
    for (i, (name, _)) in order.iter().rev().enumerate() {
        let source = dir.path().join(format!("forward-{i}"));
        copy_genesys_fixtures(&source, &[name]);
        ingest(&source, &forward, &[]);
    }
    let expected = genesys_contents(&together);
    assert_eq!(genesys_contents(&reversed), expected);
    assert_eq!(genesys_contents(&forward), expected);
    // What the replacement removed: u-0044's alert in A's active version, nowhere now.
    for lake in [&together, &reversed, &forward] {
        assert_eq!(count(lake, "SELECT count(*) AS n FROM session_metrics WHERE user_id = 'u-0044' AND name = 'tNotResponding'"), 0);
        assert_eq!(count(lake, "SELECT count(*) AS n FROM session_segments WHERE conversation_id LIKE '%0001'"), 8);
        assert_eq!(count(lake, "SELECT held_duration_ms AS n FROM conversation_events WHERE event_id = 'ev-2'"), 1000);
        let names = query(lake, "SELECT queue_name FROM queues WHERE queue_id = 'q-support'");
        assert_eq!(names[0]["queue_name"], "Support Tier 1");
    }
}

#[test]
fn flat_and_genesys_exports_mix_in_one_source() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    copy_genesys_fixtures(&exports.join("genesys"), &[]);
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    let summary = ingest(&exports, &lake, &[]);
    // The flat fixtures as alone (11 events, 6 quarantined records, 1 unreadable object),
    // and 7 conversations, 10 envelopes and 7 entities beside them (1 conversation refused).
    assert!(summary.contains("valid flat_event: 14"), "{summary}");
    assert!(summary.contains("valid conversation_detail: 7"), "{summary}");
    assert!(summary.contains("valid eventbridge: 10"), "{summary}");
    assert!(summary.contains("valid dimension: 7"), "{summary}");
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM fact_interactions"), 11);
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM conversations"), 6);
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM quarantine"), 6 + 1 + 1);
}

#[test]
fn a_lake_from_before_the_genesys_tables_is_read_and_then_upgraded_by_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap().to_string();
    ingest(&exports, &lake_s, &[]);
    // What the previous release wrote: the four flat-event tables only.
    for table in ["conversations", "participant_sessions", "session_segments", "session_metrics", "conversation_events", "queues", "users", "user_contacts", "wrapup_codes"] {
        std::fs::remove_dir_all(lake.join(table)).unwrap();
    }
    // The read side opens it (creating nothing) and shows the new tables and views empty.
    assert_eq!(count(&lake_s, "SELECT count(*) AS n FROM fact_interactions"), 11);
    assert_eq!(count(&lake_s, "SELECT count(*) AS n FROM queue_daily_metrics"), 0);
    assert!(!lake.join("conversations").exists(), "a read created a table");
    // The next ingest creates them.
    let genesys = dir.path().join("genesys");
    copy_genesys_fixtures(&genesys, &[]);
    ingest(&genesys, &lake_s, &[]);
    assert_eq!(count(&lake_s, "SELECT count(*) AS n FROM conversations"), 6);
}

/// Every string a table holds, as the auditor reads it (CSV of every table).
fn every_table_as_text(lake: &str) -> String {
    let tables = query(lake, "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'cc_analytics' AND table_type = 'BASE TABLE'");
    assert!(tables.len() >= 13, "{tables:?}");
    tables
        .iter()
        .map(|t| {
            let table = t["t"].as_str().unwrap();
            stdout(&cclake(&["query", "--lake", lake, "--format", "csv", &format!("SELECT * FROM {table}")]))
        })
        .collect()
}

#[test]
fn no_full_number_nor_customer_address_lands_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_genesys_fixtures(&exports, &[]);
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    ingest(&exports, &lake, &[]);
    let text = every_table_as_text(&lake);
    // The fixtures' callers' numbers sit in ani, dnis, participantName, remote,
    // remoteNameDisplayable, sessionDnis, flow entryReason, externalTag, EventBridge ani and an
    // unknown topic's body, and in the quarantined conversation.
    for raw in ["5551230001", "5551230002", "5551230004", "5551230005", "5551230007", "5551230009", "8005550100"] {
        assert!(!text.contains(raw), "{raw} landed unmasked");
    }
    // The customer's e-mail address (addressFrom, participantName) keeps only its domain.
    assert!(!text.contains("jane.doe"), "a customer's address landed");
    // Agents' addresses are company data, kept for auditors only.
    assert!(text.contains("ann.agent@acme.example"));
    let contacts = query(&lake, "SELECT email FROM user_contacts ORDER BY user_id");
    assert_eq!(contacts[0]["email"], "ann.agent@acme.example");
    let analyst_visible: String = GENESYS_TABLES
        .iter()
        .filter(|sql| !sql.contains("user_contacts"))
        .map(|sql| stdout(&cclake(&["query", "--lake", &lake, "--format", "csv", sql])))
        .collect();
    for agent in ["ann.agent", "bob.agent"] {
        assert!(!analyst_visible.contains(agent), "{agent}'s e-mail outside user_contacts");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn analysts_read_the_genesys_views_over_flight_sql_but_not_agents_emails() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_genesys_fixtures(&exports, &[]);
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    let config = dir.path().join("cclake.toml");
    tokio::task::block_in_place(|| {
        ingest(&exports, &lake, &[]);
        add_user(&config, "ana", "analyst", "analyst-pw");
        add_user(&config, "aud", "auditor", "auditor-pw");
    });
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut analyst = client(server.port).await;
    analyst.handshake("ana", "analyst-pw").await.unwrap();
    // Worked out by hand in sql/genesys.slt: Billing on 4 March offered A, B and D,
    // answered A and D, B abandoned; A alone within the 20 s target.
    let billing = "FROM queue_daily_metrics WHERE queue_name = 'Billing' AND date = DATE '2024-03-04'";
    for (column, expected) in [("n_offered", 3), ("n_answered", 2), ("n_abandoned", 1), ("round(service_level * 3)", 1)] {
        assert_eq!(flight_count(&mut analyst, &format!("SELECT {column} {billing}")).await, expected, "{column}");
    }
    // user_contacts is restricted: the analyst cannot read it, the auditor can.
    let refused = analyst.execute("SELECT email FROM user_contacts".into(), None).await.unwrap_err();
    assert!(refused.to_string().contains("user_contacts"), "{refused}");
    let mut auditor = client(server.port).await;
    auditor.handshake("aud", "auditor-pw").await.unwrap();
    assert_eq!(flight_count(&mut auditor, "SELECT count(*) FROM user_contacts WHERE email LIKE '%@acme.example'").await, 2);
}

fn delta_commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

fn generate_genesys(out: &Path, conversations: usize) -> Value {
    let n = conversations.to_string();
    cclake(&["generate", "--shape", "all", "--out", out.to_str().unwrap(), "--interactions", &n, "--days", "3", "--seed", "11"]);
    serde_json::from_slice(&std::fs::read(out.join("_genesys_manifest.json")).unwrap()).unwrap()
}

/// `queue_daily_metrics` equals the generator's own count of Genesys's KPIs.
pub(crate) fn assert_matches_genesys_manifest(lake: &str, manifest: &Value) {
    let rows = query(
        lake,
        "SELECT queue_name, media_type, CAST(date AS VARCHAR) AS d, n_offered, n_answered, n_abandoned, n_handled, n_transferred, \
         t_handle_ms, t_answered_ms, CAST(round(service_level * (n_answered + n_abandoned)) AS BIGINT) AS in_target, \
         aht_seconds, asa_seconds FROM queue_daily_metrics ORDER BY queue_name, media_type, d",
    );
    let mut expected = Vec::new();
    let by_media = manifest["queue_daily"].as_object().unwrap().iter().flat_map(|(queue, media)| {
        media.as_object().unwrap().iter().map(move |(media, days)| (queue, media, days))
    });
    for (queue, media, days) in by_media {
        for (day, k) in days.as_object().unwrap() {
            let n = |f: &str| k[f].as_i64().unwrap();
            let in_target = (n("n_answered") + n("n_abandoned") > 0).then(|| n("n_answered_in_target"));
            let ratio = |t: i64, c: i64| (c > 0).then(|| t as f64 / 1000.0 / c as f64);
            expected.push(serde_json::json!({
                "queue_name": queue, "media_type": media, "d": day, "n_offered": n("n_offered"), "n_answered": n("n_answered"),
                "n_abandoned": n("n_abandoned"), "n_handled": n("n_handled"), "n_transferred": n("n_transferred"),
                "t_handle_ms": n("t_handle_ms"), "t_answered_ms": n("t_answered_ms"), "in_target": in_target,
                "aht_seconds": ratio(n("t_handle_ms"), n("n_handled")), "asa_seconds": ratio(n("t_answered_ms"), n("n_answered")),
            }));
        }
    }
    expected.sort_by_key(|r| ["queue_name", "media_type", "d"].map(|k| r[k].as_str().unwrap().to_string()));
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(&expected) {
        for (key, value) in want.as_object().unwrap() {
            match (value.as_f64(), row[key].as_f64()) {
                (Some(w), Some(g)) if key.ends_with("seconds") => assert!((w - g).abs() < 1e-9, "{key}: {row} vs {want}"),
                _ => assert_eq!(&row[key], value, "{key}: {row} vs {want}"),
            }
        }
    }
    let counts = query(
        lake,
        "SELECT (SELECT count(*) FROM conversations) AS c, (SELECT count(*) FROM session_metrics) AS m, \
         (SELECT count(*) FROM conversation_events) AS e, (SELECT count(*) FROM conversations_live) AS l",
    );
    assert_eq!(counts[0]["c"], manifest["conversations"]);
    assert_eq!(counts[0]["m"], manifest["metrics"]);
    assert_eq!(counts[0]["e"], manifest["events"]);
    assert_eq!(counts[0]["l"], manifest["live_conversations"]);
}

/// Each media's KPIs over the whole lake are what a center that mostly meets its targets
/// reports (the generator's traffic: calls answered mostly within 20 s, a few percent
/// abandoned, minutes of handling; e-mails answered in hours, within the day), each media
/// against its own target, so no analyst sees a 0.2 service level or an ASA above the AHT.
fn assert_looks_like_a_real_center(lake: &str) {
    let rows = query(
        lake,
        "SELECT media_type, sum(t_answered_ms) / 1000.0 / sum(n_answered) AS asa, sum(t_handle_ms) / 1000.0 / sum(n_handled) AS aht, \
         sum(round(coalesce(service_level, 0) * (n_answered + n_abandoned))) / sum(n_answered + n_abandoned) AS sl, \
         CAST(sum(n_abandoned) AS DOUBLE) / sum(n_offered) AS abandon, min(service_level_target_seconds) AS target \
         FROM queue_daily_metrics GROUP BY media_type ORDER BY media_type",
    );
    let media: Vec<&str> = rows.iter().map(|r| r["media_type"].as_str().unwrap()).collect();
    assert_eq!(media, ["chat", "email", "voice"]);
    let kpi = |r: &Value, k: &str| r[k].as_f64().unwrap();
    // (media, ASA range s, AHT range s, least service level, abandon range, least target s)
    let bands = [
        ("chat", (8.0, 60.0), (200.0, 900.0), 0.65, (0.01, 0.12), 30.0),
        ("email", (3600.0, 8.0 * 3600.0), (200.0, 1300.0), 0.75, (0.0, 0.0), 4.0 * 3600.0),
        ("voice", (8.0, 45.0), (180.0, 600.0), 0.7, (0.01, 0.08), 15.0),
    ];
    for (row, (name, asa, aht, sl, abandon, target)) in rows.iter().zip(bands) {
        let inside = |v: f64, (lo, hi): (f64, f64)| lo <= v && v <= hi;
        assert!(inside(kpi(row, "asa"), asa) && inside(kpi(row, "aht"), aht), "{name}: {row}");
        assert!(kpi(row, "asa") < kpi(row, "aht") || name == "email", "{name}: {row}");
        assert!(kpi(row, "sl") >= sl && inside(kpi(row, "abandon"), abandon) && kpi(row, "target") >= target, "{name}: {row}");
    }
}

#[test]
fn generated_exports_give_genesys_kpis_in_small_batches() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate_genesys(&exports, 900);
    assert!(manifest["exported_twice"].as_i64().unwrap() > 10, "{manifest}");
    assert!(manifest["redelivered_events"].as_i64().unwrap() > 10, "{manifest}");
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    // Small commits: a conversation's two exports and an envelope's two deliveries often
    // land in different commits.
    ingest(&exports, &lake, &["--batch-rows", "2000"]);
    assert_matches_genesys_manifest(&lake, &manifest);
    assert_looks_like_a_real_center(&lake);
    let text = every_table_as_text(&lake);
    for number in manifest["unmasked_numbers"].as_array().unwrap() {
        assert!(!text.contains(number.as_str().unwrap()), "{number} landed unmasked");
    }
}

#[test]
fn kill_9_during_a_details_ingest_then_rerun_gives_the_uninterrupted_lake() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate_genesys(&exports, 600);
    let args = |lake: &str| -> Vec<String> {
        ["ingest", "--source", exports.to_str().unwrap(), "--lake", lake, "--batch-rows", "1500", "--compact-min-files", "4", "--lease-ttl", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let reference = dir.path().join("reference").to_str().unwrap().to_string();
    cclake(&args(&reference).iter().map(String::as_str).collect::<Vec<_>>());
    assert_matches_genesys_manifest(&reference, &manifest);
    let expected = genesys_contents(&reference);
    // Kill once session_metrics (the last of a conversation's four tables to commit) has 1,
    // 3 and 5 commits: the kill lands wherever the writer then is (inside the next batch's
    // aggregate commits, writing events or dimensions, logging objects).
    for commits in [1usize, 3, 5] {
        let lake = dir.path().join(format!("crashed-{commits}"));
        let lake_s = lake.to_str().unwrap().to_string();
        let mut child = cclake_command().args(args(&lake_s)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut finished = false;
        wait_for("ingest to reach the kill point", Duration::from_secs(120), || {
            finished = child.try_wait().unwrap().is_some();
            finished || delta_commits(&lake.join("session_metrics")) > commits
        });
        assert!(!finished, "the ingest ended before the kill point: nothing was tested");
        kill_9_running(&mut child, "ingest");
        cclake(&args(&lake_s).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(genesys_contents(&lake_s), expected, "kill at {commits} session_metrics commits");
    }
}

/// A scheduled ingest killed with -9 at 20 moments of its passes over a Genesys source with
/// re-exports: each restart takes the lake over (after the lease's TTL) and goes on, and the
/// lake ends as an uninterrupted ingest leaves it.
#[test]
fn twenty_kill_9_of_a_scheduled_ingest_each_followed_by_a_restart_that_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate_genesys(&exports, 500);
    assert!(manifest["exported_twice"].as_i64().unwrap() > 10, "{manifest}");
    let reference = dir.path().join("reference").to_str().unwrap().to_string();
    ingest(&exports, &reference, &["--batch-rows", "1500"]);
    let expected = genesys_contents(&reference);
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    // The server opens an existing lake: its first objects come from a manual ingest.
    ingest(&exports.join("dimensions"), &lake, &[]);
    let config = dir.path().join("cclake.toml");
    add_user(&config, "ana", "analyst", "analyst-pw");
    // Small batches, as the reference: a pass commits many times, so kills land between and
    // inside its commits.
    let serve = |lake: &str| {
        let args = ["--ingest-from", exports.to_str().unwrap(), "--interval", "100ms", "--lease-ttl", "1s", "--batch-rows", "1500"];
        FlightServer::start_logging(lake, &config, &args, Stdio::null(), "warn")
    };
    let lease_of = |pid: u32| {
        std::fs::read_dir(Path::new(&lake).join("_cclake/writer"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(&format!("\"pid\":{pid},"))))
    };
    let conversation_commits = || delta_commits(&Path::new(&lake).join("conversations"));
    // Each server is killed a spread time after it took the lake over (after its killed
    // predecessor's TTL), fixed so that a failure can be replayed.
    let mut killed_mid_pass = 0;
    for round in 0..20u64 {
        let before = conversation_commits();
        let server = serve(&lake);
        wait_for("the restarted server to take the lake over", Duration::from_secs(30), || lease_of(server.pid()));
        std::thread::sleep(Duration::from_millis((round * 7919) % 2500));
        drop(server); // SIGKILL
        if conversation_commits() > before && count(&lake, "SELECT count(*) AS n FROM ingest_log") < count(&reference, "SELECT count(*) AS n FROM ingest_log") {
            killed_mid_pass += 1;
        }
    }
    // The kills hit passes that had committed part of their work, not only idle servers.
    assert!(killed_mid_pass >= 3, "{killed_mid_pass} kills landed inside a pass's commits");
    let server = serve(&lake);
    wait_for("the restarted server to catch up", Duration::from_secs(180), || genesys_contents(&lake) == expected);
    drop(server);
    assert_matches_genesys_manifest(&lake, &manifest);
}
