//! Generated exports with every fault, checked against the generator's manifest: upsert,
//! crash safety (kill -9 at many moments), PII, compaction.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

pub(crate) fn assert_matches_manifest(lake: &str, manifest: &Value) {
    let distinct = manifest["distinct_valid_events"].as_i64().unwrap();
    let rows = query(lake, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM fact_interactions");
    assert_eq!(rows[0]["n"].as_i64(), Some(distinct), "one row per valid event_id");
    assert_eq!(rows[0]["d"].as_i64(), Some(distinct));
    let corrections = manifest["corrections"].as_array().unwrap();
    assert!(!corrections.is_empty());
    let ids: Vec<&str> = corrections.iter().map(|c| c["event_id"].as_str().unwrap()).collect();
    let found = query(
        lake,
        &format!(
            "SELECT event_id, queue_name, CAST(event_date AS VARCHAR) AS event_date, duration_seconds \
             FROM fact_interactions WHERE event_id IN ('{}') ORDER BY event_id",
            ids.join("','")
        ),
    );
    let mut expected = corrections.clone();
    expected.sort_by_key(|c| c["event_id"].as_str().unwrap().to_string());
    assert_eq!(found, expected, "the latest delivery of each corrected event wins");
    let quarantined: i64 = manifest["quarantined"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(count(lake, "SELECT count(*) AS n FROM quarantine"), quarantined);
    for (reason, n) in manifest["quarantined"].as_object().unwrap() {
        assert_eq!(count(lake, &format!("SELECT count(*) AS n FROM quarantine WHERE reason = '{reason}'")), n.as_i64().unwrap(), "{reason}");
    }
    assert_eq!(count(lake, "SELECT count(*) AS n FROM call_recordings"), manifest["recordings"].as_i64().unwrap());
}

#[test]
fn faulty_exports_in_small_batches_match_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate(&exports, 400, 3, true);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    // Small batches: most commits go through MERGE against earlier ones.
    let out = cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s, "--batch-rows", "150"]);
    let summary = stdout(&out);
    assert!(summary.contains("unknown fields (ignored):") && summary.contains("sentiment_score"), "{summary}");
    assert_matches_manifest(lake_s, &manifest);
    // Events that straddle midnight keep their own dates; the late file's events land in the
    // first day's partitions.
    let straddling = count(lake_s, "SELECT count(*) AS n FROM (SELECT interaction_id FROM fact_interactions \
        GROUP BY interaction_id HAVING count(DISTINCT event_date) > 1)");
    assert!(straddling > 0, "the generator makes interactions that straddle midnight");
}

#[test]
fn pii_never_lands_in_analyst_tables_nor_in_logs() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate(&exports, 300, 2, true);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let out = cclake_with_env(
        &["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s, "--batch-rows", "200"],
        &[("CCLAKE_LOG", "debug")],
    );
    let logs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(logs.contains("record quarantined"), "debug logs were captured");
    let numbers: Vec<String> = manifest["unmasked_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().trim_start_matches('+').to_string())
        .collect();
    assert!(!numbers.is_empty());
    let ip = regex::Regex::new(r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").unwrap();
    for table in ["fact_interactions", "quarantine", "ingest_log"] {
        let csv = stdout(&cclake(&["query", "--lake", lake_s, "--format", "csv", &format!("SELECT * FROM {table}")]));
        for text in [&csv, &logs] {
            for number in &numbers {
                // The masked form keeps four digits; ten in a row is the raw number.
                assert!(!text.contains(&number[number.len() - 10..]), "{number} leaked in {table} or logs");
            }
            assert!(!text.contains("recordings.example.com"), "recording URL leaked in {table} or logs");
            assert!(!ip.is_match(text), "source_ip leaked in {table} or logs");
        }
    }
    // Every stored caller number keeps at most four digits, whatever arrived.
    let masked = query(lake_s, "SELECT DISTINCT caller_number_masked AS n FROM fact_interactions WHERE caller_number_masked IS NOT NULL");
    assert!(masked.len() > 10);
    for row in masked {
        let digits = row["n"].as_str().unwrap().chars().filter(char::is_ascii_digit).count();
        assert!(digits <= 4, "{row}");
    }
    // The restricted table keeps the URLs, in its data files only: its Delta log (whose
    // statistics would give each file's first and last URL) names none.
    assert!(count(lake_s, "SELECT count(*) AS n FROM call_recordings WHERE recording_url LIKE 'https://recordings.example.com/%'") > 0);
    let log = lake.join("call_recordings/_delta_log");
    let mut commits = 0;
    for entry in std::fs::read_dir(&log).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            commits += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("recordings.example.com"), "recording URL in {}", path.display());
        }
    }
    assert!(commits > 1, "call_recordings has commits with files");
}

/// Every table's rows that must be identical between two lakes made from the same exports.
fn lake_contents(lake: &str) -> Vec<String> {
    [
        "SELECT * FROM fact_interactions ORDER BY event_id",
        "SELECT * FROM call_recordings ORDER BY event_id",
        "SELECT * FROM quarantine ORDER BY source_object, source_line",
        "SELECT source_object, source_size, source_modified_at, records_read, records_valid, records_quarantined \
         FROM ingest_log ORDER BY source_object",
    ]
    .iter()
    .map(|sql| stdout(&cclake(&["query", "--lake", lake, "--format", "csv", sql])))
    .collect()
}

pub(crate) fn delta_commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
        .unwrap_or(0)
}

#[test]
fn kill_9_at_any_moment_then_rerun_gives_the_uninterrupted_lake() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate(&exports, 300, 3, true);
    let exports_s = exports.to_str().unwrap();
    let ingest_args = |lake: &str| -> Vec<String> {
        // A killed writer's lease expires after 1 s: the re-run takes the lake over then.
        ["ingest", "--source", exports_s, "--lake", lake, "--batch-rows", "120", "--compact-min-files", "4", "--lease-ttl", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let reference = dir.path().join("reference");
    let reference_s = reference.to_str().unwrap();
    cclake(&ingest_args(reference_s).iter().map(String::as_str).collect::<Vec<_>>());
    let expected = lake_contents(reference_s);
    assert_matches_manifest(reference_s, &manifest);

    // Kill after the table exists, then after 1, 2, 4 and 6 data commits: the kill lands
    // wherever the writer happens to be (writing Parquet, committing another table, ...).
    for (i, commits) in [1usize, 2, 3, 5, 7].into_iter().enumerate() {
        let lake = dir.path().join(format!("crashed-{i}"));
        let lake_s = lake.to_str().unwrap();
        let fact_table = lake.join("fact_interactions");
        let mut child = cclake_command()
            .args(ingest_args(lake_s))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut finished = false;
        wait_for("ingest to reach the kill point", Duration::from_secs(120), || {
            finished = child.try_wait().unwrap().is_some();
            finished || delta_commits(&fact_table) >= commits
        });
        assert!(!finished, "the ingest ended before the kill point: nothing was tested");
        kill_9_running(&mut child, "ingest");
        cclake(&ingest_args(lake_s).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(lake_contents(lake_s), expected, "kill after {commits} commits");
    }
}

/// The newest commit file of a Delta table's log.
fn last_commit(table: &Path) -> std::path::PathBuf {
    let mut commits: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    commits.pop().unwrap()
}

#[test]
fn a_crash_between_the_quarantine_and_log_commits_keeps_no_record_twice() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate(&exports, 200, 2, true);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let args = ["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s, "--no-auto-compact"];
    cclake(&args);
    let expected = lake_contents(lake_s);
    // The state a crash leaves after the batch's quarantine commit and before its log
    // commit: the log's last commit never happened (its Parquet file stays, unreferenced).
    std::fs::remove_file(last_commit(&lake.join("ingest_log"))).unwrap();
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM ingest_log"), 0, "the one batch is unlogged");
    cclake(&args);
    assert_eq!(lake_contents(lake_s), expected, "the re-run keeps each quarantined record once");
    assert_matches_manifest(lake_s, &manifest);
    // Later passes append to the quarantine without reading it: a new bad record lands once.
    std::fs::write(exports.join("late.ndjson"), "{\"event_id\": \"late-1\"}\n").unwrap();
    cclake(&args);
    assert_eq!(count(lake_s, "SELECT count(*) AS n FROM quarantine WHERE source_object LIKE '%late.ndjson'"), 1);
}

/// Records read per object, summed over its `ingest_log` rows (a streamed object has one
/// row per committed part), and whether every object has a completing row.
fn records_per_object(lake: &str) -> String {
    stdout(&cclake(&["query", "--lake", lake, "--format", "csv",
        "SELECT source_object, sum(records_read) AS records, sum(records_valid) AS valid, sum(records_quarantined) AS quarantined, \
         count(*) FILTER (WHERE through_record IS NULL) AS completed FROM ingest_log GROUP BY source_object ORDER BY source_object"]))
}

#[test]
fn streamed_objects_in_parts_give_the_same_lake_and_resume_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate(&exports, 300, 3, true);
    let exports_s = exports.to_str().unwrap();
    let reference = dir.path().join("reference");
    let reference_s = reference.to_str().unwrap();
    cclake(&["ingest", "--source", exports_s, "--lake", reference_s]);
    let expected = lake_contents(reference_s);
    let expected_objects = records_per_object(reference_s);

    // Every object streamed, in parts of about 60 rows: the same tables, the log in parts.
    let streamed = dir.path().join("streamed");
    let streamed_s = streamed.to_str().unwrap();
    let args = |lake: &str| -> Vec<String> {
        ["ingest", "--source", exports_s, "--lake", lake, "--stream-above-mb", "0", "--batch-rows", "120", "--compact-min-files", "4", "--lease-ttl", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let summary = stdout(&cclake(&args(streamed_s).iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(summary.contains(&format!("{} read", manifest["files"])), "{summary}");
    assert_eq!(lake_contents(streamed_s)[..3], expected[..3]);
    assert_matches_manifest(streamed_s, &manifest);
    assert_eq!(records_per_object(streamed_s), expected_objects);
    assert!(count(streamed_s, "SELECT count(*) AS n FROM ingest_log WHERE through_record IS NOT NULL") > 10, "objects were committed in parts");
    // A second pass reads nothing.
    let again = stdout(&cclake(&args(streamed_s).iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(again.contains("0 read"), "{again}");

    // Killed part-way through objects: the re-run resumes each after its last committed
    // part and the lake equals the uninterrupted one.
    for commits in [3usize, 6] {
        let lake = dir.path().join(format!("killed-{commits}"));
        let lake_s = lake.to_str().unwrap();
        let mut child = cclake_command().args(args(lake_s)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut finished = false;
        wait_for("ingest to reach the kill point", Duration::from_secs(120), || {
            finished = child.try_wait().unwrap().is_some();
            finished || delta_commits(&lake.join("ingest_log")) >= commits
        });
        assert!(!finished, "the ingest ended before the kill point: nothing was tested");
        kill_9_running(&mut child, "ingest");
        let resumed = count(lake_s, "SELECT count(*) AS n FROM ingest_log WHERE through_record IS NOT NULL");
        cclake(&args(lake_s).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(lake_contents(lake_s)[..3], expected[..3], "killed after {commits} log commits ({resumed} parts logged)");
        assert_eq!(records_per_object(lake_s), expected_objects, "killed after {commits} log commits");
    }
}

fn files_per_partition(lake: &str) -> Vec<usize> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let lake = cclake::Lake::open(lake).await.unwrap();
        let table = lake.table(cclake::lake::LakeTable::FactInteractions).await.unwrap();
        cclake::lake::compact::files_per_partition(&table, cclake::lake::LakeTable::FactInteractions)
            .unwrap()
            .into_values()
            .collect()
    })
}

#[test]
fn compaction_makes_one_file_per_partition_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    generate(&exports, 400, 2, true);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s, "--batch-rows", "100", "--no-auto-compact"]);
    let before = lake_contents(lake_s);
    let files = files_per_partition(lake_s);
    assert!(files.iter().any(|n| *n > 3), "micro-batches leave many files: {files:?}");
    // Worked out from the Delta log itself, read here as JSON (adds less removes): each
    // partition of fact_interactions holding more than one live file becomes one file.
    let log = lake.join("fact_interactions/_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log).unwrap().filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
    commits.sort();
    let mut live = std::collections::BTreeSet::new();
    for commit in commits {
        for line in std::fs::read_to_string(commit).unwrap().lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            if let Some(path) = action["add"]["path"].as_str() {
                live.insert(path.to_string());
            }
            if let Some(path) = action["remove"]["path"].as_str() {
                live.remove(path);
            }
        }
    }
    let mut on_disk: std::collections::BTreeMap<String, u64> = Default::default();
    for path in &live {
        *on_disk.entry(path.rsplit_once('/').map_or(String::new(), |(dir, _)| dir.to_string())).or_default() += 1;
    }
    let merged: Vec<u64> = on_disk.values().copied().filter(|n| *n > 1).collect();
    let expected = format!("fact_interactions: {} partitions compacted, {} files replaced by {}", merged.len(), merged.iter().sum::<u64>(), merged.len());
    let out = stdout(&cclake(&["compact", "--lake", lake_s]));
    assert!(out.lines().any(|l| l == expected), "{expected} not in\n{out}");
    // Every table is reported, one line each.
    for table in cclake::lake::LakeTable::ALL {
        assert!(out.lines().any(|l| l.starts_with(&format!("{}: ", table.name()))), "{} missing from\n{out}", table.name());
    }
    let files = files_per_partition(lake_s);
    assert!(files.iter().all(|n| *n == 1), "one file per partition: {files:?}");
    assert_eq!(lake_contents(lake_s), before, "compaction changes no row");
}

#[test]
fn compaction_runs_automatically_past_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    generate(&exports, 400, 2, false);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let summary = stdout(&cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake_s, "--batch-rows", "100", "--compact-min-files", "3"]));
    let compacted: u64 = summary
        .split("partitions compacted: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(compacted > 0, "{summary}");
    let files = files_per_partition(lake_s);
    assert!(files.iter().all(|n| *n < 3), "{files:?}");
}

/// Rows `cclake query` prints as CSV (header excluded), with DataFusion options from `env`.
fn csv_rows(lake: &str, sql: &str, env: &[(&str, &str)]) -> usize {
    csv_lines(lake, sql, env).len()
}

/// A query's CSV rows (header left out), sorted.
fn csv_lines(lake: &str, sql: &str, env: &[(&str, &str)]) -> Vec<String> {
    let out = cclake_with_env(&["query", "--lake", lake, "--format", "csv", sql], env);
    let mut lines: Vec<String> = stdout(&out).lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

/// Whether two results hold the same rows, numbers equal to 1e-9 relative (sums over other
/// partitionings add in another order).
fn same_rows(a: &[String], b: &[String]) -> bool {
    let close = |x: &str, y: &str| match (x.parse::<f64>(), y.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => x == y,
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (x, y): (Vec<&str>, Vec<&str>) = (x.split(',').collect(), y.split(',').collect());
            x.len() == y.len() && x.iter().zip(&y).all(|(x, y)| close(x, y))
        })
}

#[test]
fn every_view_and_bench_query_runs_repeatedly_past_65536_groups() {
    // Issue 7: aggregations over the partition columns, which the Delta scan gives as
    // dictionaries with 16-bit keys, failed with "Can not create index of type UInt16 from
    // value 65536" once one partition of the aggregation held more than 65,536 groups
    // (`last_value(queue_name ...)` builds one dictionary entry per group). Measured before
    // the fix with release builds: 0 of 30 runs failed at 120,000 interactions on 2 cores
    // (~60,000 groups per partition), 10 of 10 at 150,000. Here one partition
    // (DATAFUSION_EXECUTION_TARGET_PARTITIONS=1) makes 70,000 interactions 70,000 groups in
    // one partition, whatever the machine's cores; the default runs too.
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let interactions = 70_000;
    generate(&exports, interactions, 3, false);
    // Genesys-shaped exports beside them, so that the conversation views have rows too.
    for shape in ["details", "eventbridge"] {
        cclake(&["generate", "--shape", shape, "--out", exports.to_str().unwrap(), "--interactions", "1500"]);
    }
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake]);

    // No column of any table or view is dictionary-typed: no operator can meet a dictionary
    // whose keys overflow, whatever the number of distinct values.
    let types = query(lake, "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_schema = 'cc_analytics'");
    for t in &types {
        assert!(!t["data_type"].as_str().unwrap().contains("Dictionary"), "{types:?}");
    }
    let repro = "SELECT sum(n) AS n FROM (SELECT count(*) AS n FROM (SELECT CAST(min(event_timestamp) AS DATE) d, \
        last_value(queue_name ORDER BY event_timestamp) q FROM fact_interactions GROUP BY interaction_id) GROUP BY d, q)";
    let views: Vec<String> = std::fs::read_dir(repo().join("sql/views"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| format!("SELECT * FROM {}", p.file_stem().unwrap().to_str().unwrap()))
        .collect();
    let benches: Vec<String> = std::fs::read_dir(repo().join("benches/kpi"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(views.len() >= 7 && benches.len() >= 4);
    let one_partition = [("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "1")];
    let mut first: Vec<Vec<String>> = Vec::new();
    for (run, env) in [&one_partition[..], &one_partition[..], &[]].iter().enumerate() {
        // Every interaction is in exactly one (date, queue) group.
        let rows = query_with_env(lake, repro, env);
        assert_eq!(rows[0]["n"].as_i64(), Some(interactions as i64), "run {run}");
        assert_eq!(csv_rows(lake, "SELECT * FROM interactions", env), interactions, "run {run}");
        // Each view and bench query answers, and answers the same rows in every run, with
        // one partition or the machine's cores.
        for (i, sql) in views.iter().chain(&benches).enumerate() {
            let rows = csv_lines(lake, sql, env);
            assert!(!rows.is_empty(), "{sql}");
            match first.get(i) {
                Some(earlier) => assert!(same_rows(earlier, &rows), "run {run} differs: {sql}"),
                None => first.push(rows),
            }
        }
    }
}

/// Waits for `child` to exit, at most `within`; its status.
pub(crate) fn exit_within(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "still running {within:?} after the signal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Objects `ingest_log` names.
pub(crate) fn objects_logged(lake: &str) -> i64 {
    count(lake, "SELECT count(DISTINCT source_object) AS n FROM ingest_log")
}

#[test]
fn sigterm_or_sigint_stops_a_running_ingest_at_a_commit_and_the_next_pass_reads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let manifest = generate(&exports, 2_000, 3, true);
    let exports_s = exports.to_str().unwrap();
    let args = |lake: &str| -> Vec<String> {
        ["ingest", "--source", exports_s, "--lake", lake, "--batch-rows", "150", "--no-auto-compact"].iter().map(|s| s.to_string()).collect()
    };
    let reference = dir.path().join("reference");
    let reference_s = reference.to_str().unwrap();
    cclake(&args(reference_s).iter().map(String::as_str).collect::<Vec<_>>());
    let expected = lake_contents(reference_s);
    let objects = objects_logged(reference_s);

    for signal in ["-TERM", "-INT"] {
        let lake = dir.path().join(format!("stopped{signal}"));
        let lake_s = lake.to_str().unwrap();
        let mut child = cclake_command().args(args(lake_s)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // A pass is running and has committed twice: the signal lands inside it.
        let mut finished = false;
        wait_for("two commits of the pass", Duration::from_secs(120), || {
            finished = child.try_wait().unwrap().is_some();
            finished || delta_commits(&lake.join("ingest_log")) >= 3
        });
        assert!(!finished, "the pass ended before the signal: the source is too small to test this");
        let sent = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let status = exit_within(&mut child, Duration::from_secs(10));
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(status.success(), "{signal}: {status:?}\n{said}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(said.contains("interrupted: no further object taken"), "{said}");
        // The pass was cut short: the log holds some objects, not all.
        let logged = objects_logged(lake_s);
        assert!(logged > 0 && logged < objects, "{logged} of {objects} objects logged");
        // The next pass reads exactly the rest.
        let resumed = stdout(&cclake(&args(lake_s).iter().map(String::as_str).collect::<Vec<_>>()));
        assert!(resumed.contains(&format!("{logged} already ingested")), "{resumed}");
        assert_eq!(lake_contents(lake_s), expected, "{signal}, then a resume");
        assert_matches_manifest(lake_s, &manifest);
    }
}

/// Distinct `agent_id`s in the export files, read without cclake.
fn exported_agents(exports: &Path) -> std::collections::BTreeSet<String> {
    let agent = regex::Regex::new(r#""agent_id": ?"([^"]+)""#).unwrap();
    export_texts(exports).iter().flat_map(|(_, text)| agent.captures_iter(text).map(|c| c[1].to_string()).collect::<Vec<_>>()).collect()
}

#[test]
fn seed_shaped_faulty_exports_match_the_manifest_keep_agents_apart_and_mask_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let exports_s = exports.to_str().unwrap();
    cclake(&["generate", "--shape", "seed", "--out", exports_s, "--interactions", "400", "--days", "3", "--seed", "11", "--faults"]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(exports.join("_manifest.json")).unwrap()).unwrap();
    // The shape itself, read from the files: spaced JSON, e-mail agents, numeric ids, gzip.
    let sample = std::fs::read_to_string(exports.join("2024-03-04/interactions-20240304T08.jsonl")).unwrap();
    let first: Value = serde_json::from_str(sample.lines().next().unwrap()).unwrap();
    assert!(sample.starts_with("{\"event_id\": \""), "{}", &sample[..80]);
    assert!(first["interaction_id"].as_str().unwrap().chars().all(|c| c.is_ascii_digit()), "{first}");
    assert!(first["metadata"]["source_ip"].is_string() && first["metadata"]["campaign_id"].is_string(), "{first}");
    assert!(exports.join("2024-03-04/interactions-20240304T16.jsonl.gz").exists(), "a fifth of the objects is gzipped");
    let agents = exported_agents(&exports);
    assert!(agents.len() > 30 && agents.iter().all(|a| a.starts_with("user:agent") && a.ends_with("@company.com")), "{agents:?}");

    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    cclake(&["ingest", "--source", exports_s, "--lake", lake_s, "--batch-rows", "300"]);
    assert_matches_manifest(lake_s, &manifest);
    // Every exported agent keeps a pseudonym of its own: the count comes from the files.
    assert_eq!(count(lake_s, "SELECT count(DISTINCT agent_id) AS n FROM fact_interactions") as usize, agents.len());
    // Half the events carried a recording URL: the restricted table holds them, no analyst table does.
    assert!(manifest["recordings"].as_i64().unwrap() * 10 > manifest["distinct_valid_events"].as_i64().unwrap() * 4);
    let ip = regex::Regex::new(r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").unwrap();
    for table in ["fact_interactions", "quarantine", "ingest_log", "interactions", "dim_agents"] {
        let csv = stdout(&cclake(&["query", "--lake", lake_s, "--format", "csv", &format!("SELECT * FROM {table}")]));
        assert!(!csv.contains("@company.com"), "an agent e-mail in {table}");
        assert!(!csv.contains("recordings.example.com"), "a recording URL in {table}");
        assert!(!ip.is_match(&csv), "a source_ip in {table}");
    }
}
