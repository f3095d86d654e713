//! The first hour with the real `cclake` binary: what a new user types, mistypes and pipes.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::*;

/// Runs `cclake` with `args`, expecting it to fail; returns stderr.
fn cclake_fails(args: &[&str]) -> String {
    let out = cclake_command().args(args).output().expect("cclake runs");
    assert!(!out.status.success(), "cclake {args:?} succeeded:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn query_text(lake: &str, format: &str, sql: &str) -> String {
    stdout(&cclake(&["query", "--lake", lake, "--format", format, sql]))
}

#[test]
fn query_sees_the_views_that_serve_serves() {
    let (dir, _, lake) = ingested_fixtures();
    // The demo's printed snippet: a view, not only the tables.
    let rows = query(&lake, "SELECT date, queue_name, offered FROM kpi_queue_daily ORDER BY date, queue_name LIMIT 1");
    assert_eq!(rows.len(), 1, "{rows:?}");
    // --views reads another folder: a view written by the user.
    let views = dir.path().join("views");
    std::fs::create_dir_all(&views).unwrap();
    std::fs::write(views.join("billing_events.sql"), "SELECT event_id FROM fact_interactions WHERE queue_name = 'Billing'").unwrap();
    let out = cclake(&["query", "--lake", &lake, "--views", views.to_str().unwrap(), "--format", "json", "SELECT count(*) AS n FROM billing_events"]);
    let n = serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()[0]["n"].as_i64().unwrap();
    // Billing in the fixtures after corrections, read off testdata/exports: e7 and e8
    // (broken/mixed.jsonl), e9 (late/first-day.jsonl) and e2 (moved there by corrections/).
    assert_eq!(n, 4);
}

#[test]
fn a_mistyped_lake_is_an_error_and_nothing_is_created() {
    let (dir, _, lake) = ingested_fixtures();
    let typo = dir.path().join("laek");
    let typo_s = typo.to_str().unwrap();
    let err = cclake_fails(&["query", "--lake", typo_s, "SELECT count(*) FROM fact_interactions"]);
    assert!(err.contains("no cclake lake at") && err.contains(typo_s), "{err}");
    assert!(err.contains("fact_interactions/_delta_log"), "{err}");
    assert!(!typo.exists(), "query created {typo_s}");
    let err = cclake_fails(&["compact", "--lake", typo_s]);
    assert!(err.contains("no cclake lake at"), "{err}");
    assert!(!typo.exists(), "compact created {typo_s}");
    let nested = "/nonexistent/dir/lake";
    let err = cclake_fails(&["query", "--lake", nested, "SELECT 1"]);
    assert!(err.contains("no cclake lake at /nonexistent/dir/lake"), "{err}");
    assert!(!Path::new("/nonexistent").exists());
    // serve says it too, before listening.
    let config = dir.path().join("cclake.toml");
    crate::flight::add_user(&config, "ana", "analyst", "analyst-pw");
    let err = cclake_fails(&["serve", "--lake", typo_s, "--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    assert!(err.contains("no cclake lake at"), "{err}");
    assert!(!typo.exists());
    // The real lake is untouched and still answers.
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM fact_interactions"), 11);
}

#[test]
fn swapped_or_missing_sources_are_refused_before_anything_is_written() {
    let (dir, exports, lake) = ingested_fixtures();
    let quarantined = count(&lake, "SELECT count(*) AS n FROM quarantine");
    // --source and --lake swapped.
    let err = cclake_fails(&["ingest", "--source", &lake, "--lake", &exports]);
    assert!(err.contains("is itself a lake") && err.contains("did you swap --source and --lake"), "{err}");
    for table in ["fact_interactions", "quarantine", "ingest_log", "call_recordings"] {
        assert!(!Path::new(&exports).join(table).exists(), "a lake was created inside the exports");
    }
    // One table folder of a lake is a lake too.
    let err = cclake_fails(&["ingest", "--source", &format!("{lake}/quarantine"), "--lake", dir.path().join("other").to_str().unwrap()]);
    assert!(err.contains("is itself a lake"), "{err}");
    // Exports inside the lake, or the lake inside the exports.
    let inside = Path::new(&lake).join("incoming");
    std::fs::create_dir_all(&inside).unwrap();
    let err = cclake_fails(&["ingest", "--source", inside.to_str().unwrap(), "--lake", &lake]);
    assert!(err.contains("overlap"), "{err}");
    let err = cclake_fails(&["ingest", "--source", &exports, "--lake", &format!("{exports}/lake")]);
    assert!(err.contains("overlap"), "{err}");
    assert!(!Path::new(&exports).join("lake").exists());
    // A mistyped source says so.
    let typo = dir.path().join("exprots");
    let err = cclake_fails(&["ingest", "--source", typo.to_str().unwrap(), "--lake", &lake]);
    assert!(err.contains("does not exist") && err.contains("exprots"), "{err}");
    // An empty folder has nothing to ingest: said, not "0 listed" and success.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = cclake_fails(&["ingest", "--source", empty.to_str().unwrap(), "--lake", &lake]);
    assert!(err.contains("no export objects under"), "{err}");
    let fresh = dir.path().join("fresh-lake");
    let err = cclake_fails(&["ingest", "--source", empty.to_str().unwrap(), "--lake", fresh.to_str().unwrap()]);
    assert!(err.contains("no export objects under"), "{err}");
    assert!(!fresh.exists(), "a lake was created for nothing");
    let err = cclake_fails(&["ingest", "--source", typo.to_str().unwrap(), "--lake", fresh.to_str().unwrap()]);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!fresh.exists(), "a lake was created for a mistyped source");
    // None of it reached the real lake.
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM quarantine"), quarantined);
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM fact_interactions"), 11);
}

/// Starts `cclake args` with stdout piped, reads `lines` lines, closes the pipe, and returns
/// the exit status and stderr.
fn read_then_close(args: &[&str], lines: usize) -> (std::process::ExitStatus, String) {
    let mut child = cclake_command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
    }
    drop(reader);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap(), err)
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    let (dir, _, lake) = ingested_fixtures();
    // `cclake query ... | head -2`, for every format.
    for format in ["csv", "jsonl", "json", "table"] {
        let (status, err) = read_then_close(
            &["query", "--lake", &lake, "--format", format, "SELECT v, 'x' AS s FROM generate_series(1, 3000000) AS t(v)"],
            2,
        );
        assert!(status.success(), "{format}: {status:?} {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{format}: {err}");
    }
    // `cclake ingest ... | head`: the reader is gone before the summary is printed; the
    // pass still commits.
    let more = dir.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    std::fs::write(
        more.join("new.jsonl"),
        "{\"event_id\":\"p1\",\"interaction_id\":\"p\",\"timestamp\":\"2024-03-06T10:00:00Z\",\"queue_name\":\"Billing\"}\n",
    )
    .unwrap();
    let (status, err) = read_then_close(&["ingest", "--source", more.to_str().unwrap(), "--lake", &lake], 0);
    assert!(status.success(), "{status:?} {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM fact_interactions"), 12);
}

#[test]
fn output_formats_keep_nulls_show_columns_and_end_cleanly() {
    let (_dir, _, lake) = ingested_fixtures();
    let sql = "SELECT * FROM (VALUES (1, 'a', CAST(NULL AS VARCHAR)), (2, '', 'z')) AS t(n, s, maybe) ORDER BY n";
    // JSON keeps NULL fields.
    let json: Vec<Value> = serde_json::from_str(&query_text(&lake, "json", sql)).unwrap();
    assert_eq!(json, vec![json!({"n": 1, "s": "a", "maybe": null}), json!({"n": 2, "s": "", "maybe": "z"})]);
    // JSON Lines: one object a line.
    let jsonl = query_text(&lake, "jsonl", sql);
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, json);
    // CSV: header, rows, no blank line at the end.
    assert_eq!(query_text(&lake, "csv", sql), "n,s,maybe\n1,a,\n2,,z\n");
    // A table tells NULL from ''.
    let table = query_text(&lake, "table", sql);
    let row = |n: &str| table.lines().find(|l| l.starts_with(&format!("| {n} "))).unwrap_or_else(|| panic!("{table}"));
    assert!(row("1").contains("NULL"), "{table}");
    assert!(!row("2").contains("NULL"), "{table}");
    assert!(!table.ends_with("\n\n"), "{table:?}");
    // An empty result shows its columns.
    let empty = "SELECT event_id, queue_name FROM fact_interactions WHERE false";
    assert_eq!(query_text(&lake, "csv", empty), "event_id,queue_name\n");
    let table = query_text(&lake, "table", empty);
    assert!(table.contains("event_id") && table.contains("queue_name"), "{table}");
    assert_eq!(query_text(&lake, "json", empty).trim(), "[]");
    assert_eq!(query_text(&lake, "jsonl", empty), "");
    // A real table's NULLs: campaign_id is missing from most fixture events.
    let rows = query(&lake, "SELECT event_id, campaign_id FROM fact_interactions WHERE campaign_id IS NULL ORDER BY event_id LIMIT 1");
    assert_eq!(rows[0].as_object().unwrap().get("campaign_id"), Some(&Value::Null));
}

/// Peak resident memory (KiB) of `cclake args` with stdout thrown away, measured by the
/// kernel (the venv's Python reads getrusage of its child).
fn peak_rss_kib(args: &[&str]) -> u64 {
    let script = "import resource, subprocess, sys\n\
        subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n\
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_cclake"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn csv_and_json_stream_with_memory_flat_in_the_row_count() {
    let (_dir, _, lake) = ingested_fixtures();
    let sql = |rows: u64| format!("SELECT v, 'a contact-center row of some width' AS s, v * 2 AS w FROM generate_series(1, {rows}) AS t(v)");
    for format in ["csv", "jsonl", "json"] {
        let small = peak_rss_kib(&["query", "--lake", &lake, "--format", format, &sql(100_000)]);
        let large = peak_rss_kib(&["query", "--lake", &lake, "--format", format, &sql(2_000_000)]);
        // 20x the rows (about 100 MB of output): buffered, the peak would grow by hundreds of
        // MB; streamed, it stays within a few batches.
        println!("{format}: peak RSS {small} KiB for 100k rows, {large} KiB for 2M rows");
        assert!(large < small + 64 * 1024, "{format}: {small} KiB for 100k rows, {large} KiB for 2M rows");
    }
}

#[test]
fn logs_say_one_line_per_reason_and_no_colour_into_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    let lake = dir.path().join("lake");
    let out = cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("record quarantined"), "one warning per record floods the terminal: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
    // At info level: one line per reason with its count (the fixtures have 7 quarantined
    // rows under 6 reasons: testdata/README.md), none per record.
    let lake2 = dir.path().join("lake2");
    let out = cclake_with_env(
        &["ingest", "--source", exports.to_str().unwrap(), "--lake", lake2.to_str().unwrap()],
        &[("CCLAKE_LOG", "info")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let reason_lines: Vec<&str> = err.lines().filter(|l| l.contains("records quarantined")).collect();
    // Read off testdata/exports/broken and corrections: one record each of these reasons (the
    // unreadable gzip is reported as an object, not a record reason).
    let expected = [
        "reason=duration_negative (duration_seconds) records=1",
        "reason=duration_not_integer (duration_seconds) records=1",
        "reason=invalid_json records=1",
        "reason=invalid_timestamp (timestamp) records=1",
        "reason=missing_field (event_id) records=1",
        "reason=not_an_object records=1",
    ];
    assert_eq!(reason_lines.len(), expected.len(), "{err}");
    for (line, want) in reason_lines.iter().zip(expected) {
        assert!(line.ends_with(want), "{line} is not {want}");
    }
    assert!(!err.contains("record quarantined"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn every_flag_has_a_description_in_help() {
    let subcommands: &[&[&str]] = &[&[], &["generate"], &["ingest"], &["query"], &["compact"], &["user", "add"], &["serve"], &["demo"]];
    for sub in subcommands {
        let mut args: Vec<&str> = sub.to_vec();
        args.push("--help");
        let help = stdout(&cclake(&args));
        let mut in_options = false;
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("Options:") || line.starts_with("Arguments:") {
                in_options = true;
                continue;
            }
            let trimmed = line.trim_start();
            let is_flag = trimmed.starts_with("--")
                || (trimmed.starts_with('-') && trimmed.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic()));
            if !in_options || !(is_flag || trimmed.starts_with('<')) {
                continue;
            }
            // "  --flag <VALUE>  Description [env: ...]": text after the flag, or on the next
            // line when clap wraps it; never only the [env]/[default] notes.
            let after = trimmed.split_once("  ").map(|(_, d)| d.trim()).unwrap_or("");
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            let described = (!after.is_empty() && !after.starts_with('['))
                || (after.is_empty() && !next.is_empty() && !next.starts_with('-') && !next.starts_with('['));
            assert!(described, "cclake {sub:?}: `{trimmed}` has no description:\n{help}");
        }
        assert!(in_options, "{help}");
    }
}

#[test]
fn generate_and_ingest_count_records_alike() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let out = cclake(&["generate", "--out", exports.to_str().unwrap(), "--interactions", "300", "--days", "2", "--faults"]);
    let generated = stdout(&out);
    let records = |text: &str, pattern: &str| -> u64 {
        let at = text.find(pattern).unwrap_or_else(|| panic!("{pattern} in {text}"));
        let digits: String = text[..at].chars().rev().take_while(|c| c.is_ascii_digit()).collect::<String>().chars().rev().collect();
        digits.parse().unwrap()
    };
    let written = records(&generated, " records)");
    assert!(generated.contains("1 of the files is unreadable on purpose"), "{generated}");
    let lake = dir.path().join("lake");
    let summary = stdout(&cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", lake.to_str().unwrap()]));
    let read = records(&summary, " read, ");
    assert_eq!(written, read, "generate: {generated}\ningest: {summary}");
    assert!(summary.contains("unreadable objects: 1"), "{summary}");
    // The quarantine table holds the records plus one row for the unreadable object.
    let manifest: Value = serde_json::from_slice(&std::fs::read(exports.join("_manifest.json")).unwrap()).unwrap();
    let expected: u64 = manifest["quarantined"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(count(lake.to_str().unwrap(), "SELECT count(*) AS n FROM quarantine") as u64, expected);
}

/// Runs tests/python/tty_user_add.py: what the terminal showed, and whether cclake succeeded.
fn user_add_on_a_terminal(config: &Path, name: &str, mode: &str) -> (bool, String) {
    let out = Command::new(python())
        .arg(repo().join("tests/python/tty_user_add.py"))
        .args([env!("CARGO_BIN_EXE_cclake"), config.to_str().unwrap(), name, mode])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let shown: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(!shown["shown"].as_str().unwrap().contains(shown["password"].as_str().unwrap()), "the password was echoed: {shown}");
    (out.status.success(), shown["shown"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn user_add_asks_for_the_password_on_a_terminal_without_echo() {
    let (dir, _, lake) = tokio::task::block_in_place(ingested_fixtures);
    let config = dir.path().join("cclake.toml");
    let (ok, shown) = user_add_on_a_terminal(&config, "ana", "prompt");
    assert!(ok && shown.contains("Repeat the password"), "{shown}");
    let (ok, shown) = user_add_on_a_terminal(&config, "bob", "mismatch");
    assert!(!ok && shown.contains("the two passwords differ"), "{shown}");
    let (ok, shown) = user_add_on_a_terminal(&config, "cy", "stdin-tty");
    assert!(ok && !shown.contains("Repeat"), "{shown}");
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("ana") && saved.contains("cy") && !saved.contains("bob"), "{saved}");
    assert!(!saved.contains("typed-s3cret"), "{saved}");
    // Without a terminal and without --password-stdin there is nobody to ask.
    let out = cclake_command()
        .args(["user", "add", "--config", config.to_str().unwrap(), "--name", "dee", "--role", "analyst"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password-stdin"));
    // What was typed is the password the server accepts.
    let server = tokio::task::block_in_place(|| crate::flight::FlightServer::start(&lake, &config, &[]));
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.port)).unwrap().connect().await.unwrap();
    let signed_in = |user: &'static str, password: &'static str| {
        let channel = channel.clone();
        async move { arrow_flight::sql::client::FlightSqlServiceClient::new(channel).handshake(user, password).await.is_ok() }
    };
    assert!(signed_in("ana", "typed-s3cret").await);
    assert!(signed_in("cy", "typed-s3cret").await);
    assert!(!signed_in("ana", "something-else").await);
}

/// Reads the demo's stdout up to the server's "listening on" line.
fn demo_output(child: &mut std::process::Child) -> String {
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the demo stopped:\n{text}");
        text.push_str(&line);
        if line.starts_with("listening on ") {
            return text;
        }
    }
}

/// The lines between the blank line after the first line of `text` containing `heading` and
/// the next blank line, exactly as printed (a person copies them as they are).
fn snippet(text: &str, heading: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains(heading)).skip(1);
    assert_eq!(lines.next(), Some(""), "a blank line after {heading:?}");
    lines.take_while(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_demo_checks_its_port_first_and_its_snippets_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    // A taken port: said at once, with what to do, before any work.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = cclake_fails(&["demo", "--dir", dir.path().join("demo").to_str().unwrap(), "--interactions", "100", "--addr", &addr]);
    assert!(err.contains("--addr"), "{err}");
    assert!(!dir.path().join("demo").exists(), "the demo generated before checking its port");
    drop(taken);

    let start_demo = || {
        cclake_command()
            .current_dir(dir.path())
            .args(["demo", "--interactions", "300", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut demo = start_demo();
    let text = demo_output(&mut demo);
    assert!(text.contains("Queue KPIs by day"), "{text}");

    // The Python snippet, as printed, in the test venv (adbc-driver-flightsql, pyarrow).
    let python_snippet = snippet(&text, "Python (pip install");
    assert!(python_snippet.contains("autocommit=True"), "{python_snippet}");
    let out = Command::new(python()).current_dir(dir.path()).arg("-c").arg(&python_snippet).output().unwrap();
    let (printed, warnings) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{python_snippet}\n{printed}\n{warnings}");
    assert!(printed.contains("queue_name") && printed.contains("offered"), "{printed}");
    assert!(!warnings.to_lowercase().contains("warning"), "{warnings}");

    // The in-process snippet, as printed, in a shell in the same folder.
    let query_snippet = snippet(&text, "In-process, without the server");
    let out = Command::new("sh").current_dir(dir.path()).arg("-c").arg(&query_snippet).output().unwrap();
    assert!(out.status.success(), "{query_snippet}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("queue_name"), "{}", String::from_utf8_lossy(&out.stdout));

    // Running the demo again keeps the password: saved connections keep working.
    let password = |text: &str| text.split("password `").nth(1).and_then(|t| t.split('`').next()).unwrap().to_string();
    let first = password(&text);
    demo.kill().unwrap();
    demo.wait().unwrap();
    let mut again = start_demo();
    let text = demo_output(&mut again);
    assert_eq!(password(&text), first, "{text}");
    again.kill().unwrap();
    again.wait().unwrap();
}

/// `cclake` run in `cwd`, with `stdin` piped in; its output whatever the exit code.
fn cclake_in(cwd: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cclake_command()
        .current_dir(cwd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_spelling_of_a_lake_names_the_same_lake_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("g é");
    copy_fixtures(&base.join("exports"));
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(&base, dir.path().join("link")).unwrap();
    // Created through `..`, from another folder, as `--lake ../lake` is typed.
    let out = cclake_in(&work, &["ingest", "--source", "../exports/", "--lake", "../lake"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(base.join("lake/fact_interactions/_delta_log").exists());
    let n = |cwd: &Path, lake: &str| {
        let out = cclake_in(cwd, &["query", "--lake", lake, "--format", "csv", "SELECT count(*) AS n FROM fact_interactions"], "");
        assert!(out.status.success(), "{lake}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = n(&work, "../lake");
    assert!(expected.starts_with("n\n") && expected != "n\n0\n", "{expected}");
    let absolute = base.join("lake");
    let through_link = dir.path().join("link/lake");
    for (cwd, spelling) in [
        (&work, "../lake/".to_string()),
        (&work, "./../work/../lake//".to_string()),
        (&base, "lake".to_string()),
        (&work, absolute.display().to_string()),
        (&work, through_link.display().to_string()),
        (&work, format!("{}/", through_link.display())),
        (&work, url::Url::from_directory_path(&absolute).unwrap().to_string()),
        (&work, url::Url::from_directory_path(&through_link).unwrap().to_string()),
    ] {
        assert_eq!(n(cwd, &spelling), expected, "{spelling}");
    }
    // A second ingest through another spelling finds everything already ingested.
    let again = cclake_in(&work, &["ingest", "--source", &format!("{}/exports", dir.path().join("link").display()), "--lake", "../lake"], "");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already ingested, 0 read"), "{}", String::from_utf8_lossy(&again.stdout));
}

#[test]
fn config_mistakes_and_user_management_are_said_clearly() {
    let (dir, _exports, lake) = ingested_fixtures();
    let config = dir.path().join("cclake.toml");
    let c = config.to_str().unwrap();
    // A missing config file is said to be missing.
    let out = cclake_in(dir.path(), &["serve", "--lake", &lake, "--config", c, "--addr", "127.0.0.1:0"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{}", String::from_utf8_lossy(&out.stderr));
    // Users: a short password is refused, names and roles are listed without hashes.
    let out = cclake_in(dir.path(), &["user", "add", "--config", c, "--name", "aud", "--role", "auditor", "--password-stdin"], "x\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 8"), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, role) in [("ana", "analyst"), ("aud", "auditor")] {
        let out = cclake_in(dir.path(), &["user", "add", "--config", c, "--name", name, "--role", role, "--password-stdin"], "first-password\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listed = String::from_utf8_lossy(&cclake_in(dir.path(), &["user", "list", "--config", c], "").stdout).into_owned();
    assert!(listed.contains("ana") && listed.contains("analyst") && listed.contains("aud") && listed.contains("auditor"), "{listed}");
    assert!(!listed.contains("argon2"), "{listed}");
    let before = std::fs::read_to_string(&config).unwrap();
    let out = cclake_in(dir.path(), &["user", "passwd", "--config", c, "--name", "ana", "--password-stdin"], "second-password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(std::fs::read_to_string(&config).unwrap(), before);
    let out = cclake_in(dir.path(), &["user", "remove", "--config", c, "--name", "aud"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&cclake_in(dir.path(), &["user", "list", "--config", c], "").stdout).into_owned();
    assert!(listed.contains("ana") && !listed.contains("aud"), "{listed}");
    let out = cclake_in(dir.path(), &["user", "remove", "--config", c, "--name", "aud"], "");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("has no user 'aud'"));
    // The new password signs in over a server bound by host name; the old one does not.
    let mut server = cclake_command()
        .args(["serve", "--lake", &lake, "--config", c, "--addr", "localhost:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).replace("grpc://", "http://");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let signs_in = |password: &'static str| {
        let url = url.clone();
        runtime.block_on(async move {
            let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
            arrow_flight::sql::client::FlightSqlServiceClient::new(channel).handshake("ana", password).await.is_ok()
        })
    };
    assert!(signs_in("second-password"));
    assert!(!signs_in("first-password"));
    let _ = server.kill();
    let _ = server.wait();
    // A misspelt key is refused, naming the nearest valid one.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replacen("[server]", "[server]\nquery_timeout = 30", 1)).unwrap();
    let out = cclake_in(dir.path(), &["serve", "--lake", &lake, "--config", c, "--addr", "127.0.0.1:0"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("did you mean `query_timeout_seconds`?"), "{said}");
}

#[test]
fn exit_codes_say_what_failed() {
    let (dir, exports, lake) = ingested_fixtures();
    let code = |args: &[&str]| cclake_command().args(args).output().unwrap().status.code();
    let missing_lake = dir.path().join("no-lake");
    // No lake there, or no source: 66.
    assert_eq!(code(&["query", "--lake", missing_lake.to_str().unwrap(), "SELECT 1"]), Some(66));
    let missing_source = dir.path().join("no-exports");
    assert_eq!(code(&["ingest", "--source", missing_source.to_str().unwrap(), "--lake", &lake]), Some(66));
    // The lake given as the source: 66.
    assert_eq!(code(&["ingest", "--source", &lake, "--lake", dir.path().join("other").to_str().unwrap()]), Some(66));
    // A location that cannot be one, or an unknown flag: bad usage, 2.
    assert_eq!(code(&["query", "--lake", "ftp://host/lake", "SELECT 1"]), Some(2));
    assert_eq!(code(&["query", "--lake", &lake, "--no-such-flag", "SELECT 1"]), Some(2));
    // A statement the lake will not run: 65.
    assert_eq!(code(&["query", "--lake", &lake, "DROP TABLE fact_interactions"]), Some(65));
    assert_eq!(code(&["query", "--lake", &lake, "SELECT no_such_column FROM fact_interactions"]), Some(65));
    // A lake folder that cannot be made: 74.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    assert_eq!(code(&["ingest", "--source", &exports, "--lake", file.join("lake").to_str().unwrap()]), Some(74));
    // --help says so.
    let help = stdout(&cclake(&["--help"]));
    for class in ["2 bad usage", "65 refused", "66 no lake", "74 a store", "75 another writer"] {
        assert!(help.contains(class), "{class} missing from --help:\n{help}");
    }
}
