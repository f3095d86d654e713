//! The server under attack, as a hostile or unlucky client would attack it: scalar functions
//! that would allocate gigabytes or run for minutes, queries that keep both cores busy while
//! others wait, floods of wrong passwords. Memory is measured on the server process.

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

use crate::flight::{client, fixture_lake, FlightServer};
use crate::support::*;

/// Whether a client error is RESOURCE_EXHAUSTED (tonic shows the code's description).
fn exhausted(err: &str) -> bool {
    err.contains("Some resource has been exhausted")
}

/// Sets `[server]` settings of the config file written by `user add`.
fn set_server_settings(config: &Path, settings: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(config).unwrap();
    for (key, value) in settings {
        let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key} in {text}")).to_string();
        text = text.replace(&line, &format!("{key} = {value}"));
    }
    std::fs::write(config, text).unwrap();
}

/// Runs `sql` to the end: its rows, or the error (of the call or of the stream) as text.
async fn run(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let info = client.execute(sql.into(), None).await.map_err(|e| e.to_string())?;
    let stream = client.do_get(info.endpoint[0].ticket.clone().unwrap()).await.map_err(|e| e.to_string())?;
    stream.try_collect().await.map_err(|e| e.to_string())
}

async fn signed_in(port: u16, user: &str, password: &str) -> FlightSqlServiceClient<Channel> {
    let mut c = client(port).await;
    c.handshake(user, password).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn scalar_functions_stay_inside_the_memory_limit_and_long_queries_do_not_stall_others() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    set_server_settings(
        &config,
        &[("query_memory_limit_mb", "256"), ("query_timeout_seconds", "5"), ("max_concurrent_queries", "2")],
    );
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut ana = signed_in(server.port, "ana", "analyst-pw").await;

    // Results that would be gigabytes are refused before they are allocated, two at once.
    let huge = "SELECT length(repeat('x', 1500000000)) AS n";
    let (first, second) = tokio::join!(
        async { run(&mut signed_in(server.port, "ana", "analyst-pw").await, huge).await },
        async { run(&mut signed_in(server.port, "ana", "analyst-pw").await, huge).await }
    );
    for result in [first, second] {
        let err = result.unwrap_err();
        assert!(exhausted(&err) && err.contains("repeat would produce 1.4 GB"), "{err}");
        assert!(err.contains("memory limit of 256.0 MB"), "{err}");
    }
    for (sql, function) in [
        ("SELECT length(lpad('x', 1500000000))", "lpad"),
        ("SELECT length(rpad('x', 600000000, 'é'))", "rpad"),
        ("SELECT length(replace(repeat('a', 100000), 'a', repeat('b', 10000)))", "replace"),
        ("SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 10000), 'g'))", "regexp_replace"),
        ("SELECT cardinality(range(0, 1000000000))", "range"),
        ("SELECT cardinality(generate_series(1, 1000000000, 1))", "generate_series"),
        ("SELECT cardinality(range(DATE '1970-01-01', DATE '9999-12-31', INTERVAL '1 second'))", "range"),
        ("SELECT cardinality(range(TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-12-31 00:00:00', INTERVAL '1 millisecond'))", "range"),
        ("SELECT cardinality(array_repeat(1, 1000000000))", "array_repeat"),
        ("SELECT cardinality(array_resize([1], 1000000000))", "array_resize"),
        ("SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))", "levenshtein"),
    ] {
        let err = run(&mut ana, sql).await.unwrap_err();
        assert!(exhausted(&err) && err.contains(function), "{sql}: {err}");
    }
    // Every function is bounded, not a list of them: what any call produces is checked
    // against what the query's pool has left (a constant folded while planning against a
    // sixteenth of the limit), and the `||` operator is one of them.
    for sql in [
        "SELECT length(concat(repeat('x', 200000000), repeat('x', 200000000), repeat('x', 200000000), repeat('x', 200000000), repeat('x', 200000000)))",
        "SELECT max(length(CAST(v AS VARCHAR) || repeat('x', 1000000))) FROM generate_series(1, 100000) AS t(v)",
        "SELECT max(length(concat(CAST(v AS VARCHAR), repeat('x', 1000000)))) FROM generate_series(1, 100000) AS t(v)",
        "SELECT length(encode(repeat('x', 200000000), 'hex'))",
        "SELECT max(length(to_char(to_timestamp(v), repeat('%Y', 300000)))) FROM generate_series(1, 100000) AS t(v)",
        "SELECT length(translate(repeat('x', 200000000), 'x', 'y'))",
        "SELECT length(upper(repeat('x', 200000000)))",
        "SELECT length(reverse(repeat('x', 200000000)))",
        "SELECT max(length(upper(lpad(CAST(v AS VARCHAR), 20000, 'é')))) FROM generate_series(1, 100000) AS t(v)",
    ] {
        let err = run(&mut ana, sql).await.unwrap_err();
        assert!(exhausted(&err) && err.contains("would produce"), "{sql}: {err}");
    }
    let peak = peak_rss_mb(server.pid());
    assert!(peak < 1024, "the server peaked at {peak} MB");

    // `||` computes what DataFusion's operator did: NULL if either side is, numbers as text,
    // and its column is named as the operator was.
    let batches = run(&mut ana, "SELECT 'a' || 'b' AS ab, 'a' || NULL AS n, 1 || 'x' AS mixed, min(queue_name || '/' || direction) FROM fact_interactions").await.unwrap();
    let row = &batches[0];
    assert_eq!(row.column(0).as_string::<i32>().value(0), "ab");
    assert!(row.column(1).is_null(0));
    assert_eq!(row.column(2).as_string::<i32>().value(0), "1x");
    assert!(row.column(3).as_string::<i32>().value(0).contains('/'));
    assert_eq!(row.schema().field(3).name(), "min(fact_interactions.queue_name || Utf8(\"/\") || fact_interactions.direction)");

    // The guarded functions still compute what they did (values worked out by hand).
    let batches = run(&mut ana, "SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, levenshtein('kitten', 'sitting') AS d, cardinality(range(0, 10, 3)) AS c, \
        cardinality(range(DATE '2024-03-01', DATE '2024-03-08', INTERVAL '1 day')) AS w").await.unwrap();
    let row = &batches[0];
    assert_eq!(row.column(0).as_string::<i32>().value(0), "ababab");
    assert_eq!(row.column(1).as_string::<i32>().value(0), "007");
    assert_eq!(row.column(2).as_primitive::<arrow::datatypes::Int32Type>().value(0), 3);
    assert_eq!(row.column(3).as_primitive::<arrow::datatypes::UInt64Type>().value(0), 4);
    assert_eq!(row.column(4).as_primitive::<arrow::datatypes::UInt64Type>().value(0), 7, "1 to 7 March, the stop excluded");

    // Two long queries keep both cores busy: each call is bounded, so each ends at its
    // deadline; meanwhile the auditor's SELECT 1 is answered and a third query of a table is
    // refused (the two take the shared slots; SELECT 1 runs on the reserve).
    let long = "SELECT sum(levenshtein(repeat('a', v % 100 + 100), repeat('b', 100))) FROM generate_series(1, 5000000) AS t(v)";
    let port = server.port;
    let mut checker = signed_in(server.port, "ana", "analyst-pw").await;
    // A long query that finds both slots taken (the checker's count below holds one for a
    // moment) is sent again, as a client would.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = signed_in(port, "ana", "analyst-pw").await;
                loop {
                    match run(&mut c, long).await {
                        Err(e) if e.contains("too many concurrent queries") => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                        other => return other,
                    }
                }
            })
        })
        .collect();
    let mut auditor = signed_in(server.port, "aud", "auditor-pw").await;
    // Both long queries hold their slots once a table query is refused. The checking client
    // signed in before they started: a sign-in (an argon2 check on two busy cores) inside
    // the loop could outlast the queries' 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let refused = run(&mut checker, "SELECT count(*) AS n FROM fact_interactions").await;
        if refused.is_err_and(|e| e.contains("too many concurrent queries")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for both long queries to run");
        assert!(slow.iter().any(|t| !t.is_finished()), "the long queries ended before both were seen running");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let one = run(&mut auditor, "SELECT 1 AS one").await.unwrap();
    assert_eq!(one[0].column(0).as_primitive::<Int64Type>().value(0), 1);
    assert!(slow.iter().all(|t| !t.is_finished()), "SELECT 1 was answered while both long queries ran");
    for task in slow {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.contains("Deadline expired") && err.contains("timed out after 5 s"), "{err}");
    }
    // Their slots come back once their work has stopped.
    wait_for_async("the slots to be released", || async {
        run(&mut signed_in(port, "ana", "analyst-pw").await, "SELECT count(*) AS n FROM fact_interactions").await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_wrong_passwords_is_paused_bounded_and_does_not_lock_the_user_out() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    set_server_settings(&config, &[("failed_sign_ins_before_pause", "5"), ("sign_in_pause_max_seconds", "2")]);
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut auditor = signed_in(server.port, "aud", "auditor-pw").await;
    let port = server.port;

    let flood: Vec<_> = (0..200)
        .map(|_| tokio::spawn(async move { client(port).await.handshake("ana", "wrong").await.unwrap_err().to_string() }))
        .collect();
    // A signed-in user keeps being served during the flood.
    let one = run(&mut auditor, "SELECT 1 AS one").await.unwrap();
    assert_eq!(one[0].num_rows(), 1);
    let mut checked = 0;
    let mut refused = 0;
    for task in flood {
        let err = task.await.unwrap();
        if err.contains("wrong user name or password") {
            checked += 1;
        } else {
            assert!(err.contains("too many failed sign-ins") || err.contains("busy checking sign-ins"), "{err}");
            refused += 1;
        }
    }
    // Five failures pause the name; the checks already running when it paused still end.
    assert!((5..=12).contains(&checked), "{checked} passwords were checked, {refused} refused");
    let peak = peak_rss_mb(server.pid());
    assert!(peak < 1024, "the server peaked at {peak} MB");

    // The pause ends: the real user signs in.
    wait_for_async("the pause to end", || async { client(port).await.handshake("ana", "analyst-pw").await.is_ok() }).await;
}

/// Polls `condition` every 100 ms for up to 60 s.
async fn wait_for_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A valid flat event, with extra fields spliced in (`"k":v,` pairs).
fn event(id: &str, extra: &str) -> String {
    format!(r#"{{"event_id":"{id}","interaction_id":"i-{id}","timestamp":"2024-03-04T09:00:00Z",{extra}"queue_name":"Support"}}"#)
}

fn gzip(text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(text).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn hostile_exports_are_skipped_or_quarantined_and_the_rest_lands_masked() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("exports");
    std::fs::create_dir_all(&source).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(source.join(name), bytes).unwrap();

    write("good.jsonl", format!("{}\n{}\n", event("g1", ""), event("g2", "")).as_bytes());
    // A gzip bomb, scaled down: 100,000 copies of one valid line expand ~300 times.
    let bomb = gzip(format!("{}\n", event("b1", "")).repeat(100_000).as_bytes());
    write("bomb.jsonl.gz", &bomb);
    // Entries a listing cannot take: a symbolic-link loop, names with a newline, CR or tab.
    std::os::unix::fs::symlink(&source, source.join("loop")).unwrap();
    write("bad\nname.jsonl", format!("{}\n", event("n1", "")).as_bytes());
    write("bad\rname\t2.jsonl", format!("{}\n", event("n2", "")).as_bytes());
    // One 20 MB bad line, and a valid event holding a 5 MB agent id.
    let huge_line = format!("{{\"event_id\":\"h1\",\"caller_number\":\"+15551230009\",\"note\":\"{}", "x".repeat(20_000_000));
    let big_agent = event("h2", &format!(r#""agent_id":"{}","#, "a".repeat(5_000_000)));
    write("huge.jsonl", format!("{huge_line}\n{big_agent}\n").as_bytes());
    // Personal data where nobody planned for it.
    let pii = [
        event("p1", r#""agent_id":"+15551230001","state":"10.9.8.7","metadata":{"campaign_id":"https://crm.example.com/c/1"},"source_system":"tel:5551230002","#),
        event("p2", r#""caller_number_masked":"＋１５５５１２３０００３","#),
        event("+15551230004", ""),
        r#"{"event_id":"p5","interaction_id":"i5","timestamp":"+15551230005","recording_url":"https://rec.example.com/r5.wav"}"#.to_string(),
        r#"{"event_id":"p6","interaction_id":"i6","contact":{"mobile":15551230006}}"#.to_string(),
        r#"{"event_id":"p7","interaction_id":"i7","timestamp":"not a date https://rec.example.com/r7.wav"}"#.to_string(),
    ];
    write("pii.jsonl", format!("{}\n", pii.join("\n")).as_bytes());

    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    let out = cclake(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake]);
    let summary = stdout(&out);
    // The loop and the odd names are skipped and said; everything else landed.
    assert!(summary.contains("skipped entries:"), "{summary}");
    assert!(summary.contains("File system loop found"), "{summary}");
    // Named escaped: a newline in a name cannot start a line of its own in the summary.
    assert!(summary.contains("bad\\nname.jsonl"), "{summary}");
    let ids: Vec<String> = query(&lake, "SELECT event_id FROM fact_interactions ORDER BY event_id")
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect();
    for id in ["g1", "g2", "h2", "p1", "p2"] {
        assert!(ids.contains(&id.to_string()), "{id} missing from {ids:?}");
    }
    assert!(!ids.contains(&"b1".to_string()), "the bomb is not read");

    // The bomb is one quarantine row that says why.
    let bomb_rows = query(&lake, "SELECT reason, detail FROM quarantine WHERE source_object LIKE '%bomb%'");
    assert_eq!(bomb_rows.len(), 1, "{bomb_rows:?}");
    assert_eq!(bomb_rows[0]["reason"], "unreadable_object");
    let detail = bomb_rows[0]["detail"].as_str().unwrap();
    assert!(detail.contains("expands past 100x") && !detail.contains('*'), "{bomb_rows:?}");
    // A 20 MB bad line keeps a bounded prefix, its length and its hash.
    let huge = query(&lake, "SELECT length(record) AS n, record FROM quarantine WHERE source_object LIKE '%huge%'");
    assert_eq!(huge.len(), 1);
    assert!(huge[0]["n"].as_i64().unwrap() < 5000, "{}", huge[0]["n"]);
    assert!(huge[0]["record"].as_str().unwrap().contains(&format!("{} bytes in all, sha256 ", huge_line.len())));
    // The id made of a phone number is refused, not stored.
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM quarantine WHERE reason = 'personal_data_in_id' AND field = 'event_id'"), 1);

    // No analyst-readable table holds the raw values: every column of every row as text.
    for table in ["fact_interactions", "quarantine", "ingest_log", "interactions", "dim_agents", "dim_queues"] {
        let rows = query(&lake, &format!("SELECT * FROM {table}"));
        let text = serde_json::to_string(&rows).unwrap();
        for secret in ["5551230001", "10.9.8.7", "crm.example.com", "5551230002", "５５５", "5551230003", "5551230004", "5551230005", "rec.example.com", "15551230006", "5551230009"] {
            assert!(!text.contains(secret), "{secret} is readable in {table}");
        }
    }
    let p1 = &query(&lake, "SELECT agent_id, state, campaign_id, source_system FROM fact_interactions WHERE event_id = 'p1'")[0];
    assert_eq!(p1["agent_id"], "+*******0001");
    assert_eq!(p1["state"], "[other]", "a state that is no code is not kept");
    assert_eq!(p1["campaign_id"], "[url redacted]");
    assert_eq!(p1["source_system"], "tel:******0002");
    let p2 = &query(&lake, "SELECT caller_number_masked FROM fact_interactions WHERE event_id = 'p2'")[0];
    assert_eq!(p2["caller_number_masked"], "+*******0003");

    // Over Flight SQL: the quarantine table is fetched whole; the 5 MB value is refused
    // with a message that says what to do, and the server keeps serving.
    let config = dir.path().join("cclake.toml");
    crate::flight::add_user(&config, "ana", "analyst", "analyst-pw");
    let server = FlightServer::start(&lake, &config, &[]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut ana = signed_in(server.port, "ana", "analyst-pw").await;
        let rows = run(&mut ana, "SELECT * FROM quarantine").await.unwrap();
        // Worked out above: the bomb, the 20 MB line, the phone-number id, p5, p6 and p7.
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
        let err = run(&mut ana, "SELECT agent_id FROM fact_interactions").await.unwrap_err();
        assert!(err.contains("a row of the result holds 5.0 MB") && err.contains("substr"), "{err}");
        let n = run(&mut ana, "SELECT max(length(agent_id)) AS n FROM fact_interactions").await.unwrap();
        assert_eq!(n[0].column(0).as_primitive::<arrow::datatypes::Int32Type>().value(0), 5_000_000);
    });
}

/// One column of Int64 values of a result, in order.
fn int64s(batches: &[RecordBatch]) -> Vec<i64> {
    batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_past_its_memory_limit_spills_or_fails_clearly_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    set_server_settings(&config, &[("query_memory_limit_mb", "64"), ("max_concurrent_queries", "1")]);
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut ana = signed_in(server.port, "ana", "analyst-pw").await;

    // A hash join's build side cannot spill: 4 million keys need far more than 64 MB, and
    // the query fails with the limit named, not with the server's memory.
    let join = "SELECT count(*) AS n FROM generate_series(1, 4000000) AS a(x) JOIN generate_series(1, 4000000) AS b(y) ON x = y";
    let err = run(&mut ana, join).await.unwrap_err();
    assert!(exhausted(&err) && err.contains("memory limit"), "{err}");
    // A sort past the limit spills to disk and answers: the 3 largest of 1..=3,000,000.
    let sort = "SELECT v FROM (SELECT v, v % 7 AS w FROM generate_series(1, 3000000) AS t(v) ORDER BY w, v) ORDER BY v DESC LIMIT 3";
    assert_eq!(int64s(&run(&mut ana, sort).await.unwrap()), vec![3_000_000, 2_999_999, 2_999_998]);
    let peak = peak_rss_mb(server.pid());
    assert!(peak < 1024, "the server peaked at {peak} MB");
    // The server still answers, from its only query slot: the failed query released it.
    let rows = run(&mut ana, "SELECT count(*) AS n FROM fact_interactions").await.unwrap();
    assert!(int64s(&rows)[0] > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_stream_dropped_mid_way_stops_its_query_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    set_server_settings(&config, &[("max_concurrent_queries", "1"), ("query_timeout_seconds", "600")]);
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut ana = signed_in(server.port, "ana", "analyst-pw").await;

    // Ten minutes of work if it ran to the end; the client reads one batch and hangs up.
    let endless = "SELECT v, levenshtein(repeat('a', v % 50 + 50), repeat('b', 60)) AS d FROM generate_series(1, 1000000000) AS t(v)";
    let info = ana.execute(endless.into(), None).await.unwrap();
    let mut stream = ana.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    let first = stream.try_next().await.unwrap().expect("a first batch");
    // Computed in parallel: the first batch may be any stretch of the series.
    let v = first.column(0).as_primitive::<Int64Type>().value(0);
    assert!(first.num_rows() > 0 && (1..=1_000_000_000).contains(&v), "{v}");
    drop(stream);
    // The query's only slot comes back once its work has stopped (long before ten minutes),
    // and the same client runs the next query.
    let started = std::time::Instant::now();
    loop {
        match run(&mut ana, "SELECT count(*) AS n FROM fact_interactions").await {
            Ok(rows) => {
                assert!(int64s(&rows)[0] > 0);
                break;
            }
            Err(e) if e.contains("too many concurrent queries") => {
                assert!(started.elapsed() < std::time::Duration::from_secs(60), "the dropped query still holds its slot");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_statement_is_planned_in_a_query_slot_and_short_ones_whatever_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    set_server_settings(&config, &[("max_concurrent_queries", "1"), ("query_timeout_seconds", "600")]);
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut busy = signed_in(server.port, "ana", "analyst-pw").await;
    let mut other = signed_in(server.port, "ana", "analyst-pw").await;
    // One query holds the only shared slot: its stream is open and has sent a batch.
    let endless = "SELECT v, levenshtein(repeat('a', v % 50 + 50), repeat('b', 60)) AS d FROM generate_series(1, 1000000000) AS t(v)";
    let info = busy.execute(endless.into(), None).await.unwrap();
    let mut stream = busy.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    stream.try_next().await.unwrap().expect("a first batch");
    // A statement of 10 KB is refused at planning (GetFlightInfo), not planned for free.
    let values: Vec<String> = (0..1000).map(|i| format!("'x{i:05}'")).collect();
    let long = format!("SELECT count(*) FROM fact_interactions WHERE event_id IN ({})", values.join(","));
    assert!(long.len() > 4096);
    let err = other.execute(long.clone(), None).await.unwrap_err().to_string();
    assert!(err.contains("too many concurrent queries"), "{err}");
    // A short one is planned and answered on the reserve meanwhile.
    assert_eq!(int64s(&run(&mut other, "SELECT CAST(1 AS BIGINT)").await.unwrap()), vec![1]);
    // Once the slot is free, the long statement is answered.
    drop(stream);
    let started = std::time::Instant::now();
    loop {
        match run(&mut other, &long).await {
            Ok(rows) => {
                assert_eq!(int64s(&rows), vec![0]);
                break;
            }
            Err(e) if e.contains("too many concurrent queries") => {
                assert!(started.elapsed() < std::time::Duration::from_secs(60), "the dropped query still holds its slot");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_sql_text_aborts_or_hangs_the_server_and_long_value_filters_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    tokio::task::block_in_place(|| set_server_settings(&config, &[("max_sql_bytes", "600000")]));
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut analyst = signed_in(server.port, "ana", "analyst-pw").await;
    // Half of the lake's event ids, hidden among 10,000 values of a Tableau-style filter.
    let ids: Vec<String> = int_or_text(&run(&mut analyst, "SELECT event_id FROM fact_interactions ORDER BY event_id").await.unwrap());
    let kept: Vec<&String> = ids.iter().step_by(2).collect();
    let mut values: Vec<String> = (0..10_000 - kept.len()).map(|i| format!("no-such-event-{i:05}")).collect();
    values.extend(kept.iter().map(|id| id.to_string()));
    values.sort_by_key(|v| crate::support::fnv(v));
    for column_first in [true, false] {
        let terms: Vec<String> = values
            .iter()
            .map(|v| if column_first { format!("event_id = '{v}'") } else { format!("'{v}' = event_id") })
            .collect();
        let sql = format!("SELECT count(*) FROM fact_interactions WHERE {}", terms.join(" OR "));
        let answer = run(&mut analyst, &sql).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(int64s(&answer), vec![kept.len() as i64]);
    }
    // A chain of 2,000 and of 5,000 additions: refused as too deep, and the server stays.
    for terms in [2_000, 5_000] {
        let sql = format!("SELECT {}", vec!["1"; terms].join("+"));
        let err = run(&mut analyst, &sql).await.unwrap_err();
        assert!(err.contains("invalid argument") && err.contains("nested more than 256 levels"), "{err}");
    }
    // Parentheses 300 deep: the parser's own limit, an error too.
    let nested = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
    assert!(run(&mut analyst, &nested).await.is_err());
    // Longer than max_sql_bytes: refused, saying which setting.
    let long = format!("SELECT count(*) FROM fact_interactions WHERE event_id IN ({})", vec!["'x'"; 200_000].join(","));
    let err = run(&mut analyst, &long).await.unwrap_err();
    assert!(err.contains("invalid argument") && err.contains("max_sql_bytes"), "{err}");
    // The server answers as before.
    assert_eq!(int64s(&run(&mut analyst, "SELECT count(*) FROM fact_interactions").await.unwrap()), vec![ids.len() as i64]);

    // The CLI too: an error, not an abort.
    let sum = format!("SELECT {}", vec!["1"; 3_000].join("+"));
    let out = crate::support::cclake_command().args(["query", "--lake", &lake, &sum]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "a statement refused: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nested more than 256 levels"));
}

/// The first column of every batch as text.
fn int_or_text(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column(0);
            (0..b.num_rows()).map(|i| arrow::util::display::array_value_to_string(column, i).unwrap()).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_record_that_cannot_be_stored_is_quarantined_and_the_source_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("exports");
    std::fs::create_dir_all(&source).unwrap();
    let with = |id: &str, fields: &str| format!(r#"{{"event_id":"{id}","interaction_id":"i-{id}",{fields}}}"#);
    let at = r#""timestamp":"2024-03-04T09:00:00Z""#;
    let lines = [
        with("ok1", &format!(r#"{at},"queue_name":"Support""#)),
        // 250 ASCII letters and 45 Cyrillic letters: folder names past 255 bytes once
        // percent-encoded. 30 Cyrillic letters (180 bytes encoded) still fit.
        with("long-ascii", &format!(r#"{at},"queue_name":"{}""#, "q".repeat(250))),
        with("long-cyrillic", &format!(r#"{at},"queue_name":"{}""#, "Ж".repeat(45))),
        with("cyrillic", &format!(r#"{at},"queue_name":"{}""#, "Ж".repeat(30))),
        // Epoch numbers and dates no reader can take back.
        with("epoch-1e18", r#""timestamp":1000000000000000000,"queue_name":"Support""#),
        with("year-0", r#""timestamp":"0000-01-01T00:00:00Z","queue_name":"Support""#),
        with("year-30000", r#""timestamp":"+30000-01-01T00:00:00Z","queue_name":"Support""#),
        with("year-1969", r#""timestamp":"1969-12-31T23:59:59Z","queue_name":"Support""#),
        with("ok2", &format!(r#"{at},"queue_name":"Billing""#)),
    ];
    std::fs::write(source.join("mixed.jsonl"), lines.join("\n") + "\n").unwrap();
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    cclake(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake]);
    let landed: Vec<String> =
        query(&lake, "SELECT event_id FROM fact_interactions ORDER BY event_id").iter().map(|r| r["event_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(landed, ["cyrillic", "ok1", "ok2"]);
    let reasons = query(&lake, "SELECT reason, field, source_line FROM quarantine ORDER BY source_line");
    let got: Vec<(String, String, i64)> = reasons
        .iter()
        .map(|r| (r["reason"].as_str().unwrap().into(), r["field"].as_str().unwrap_or("").into(), r["source_line"].as_i64().unwrap()))
        .collect();
    let want: Vec<(String, String, i64)> = [
        ("partition_value_too_long", "queue_name", 2),
        ("partition_value_too_long", "queue_name", 3),
        ("timestamp_out_of_range", "timestamp", 5),
        ("timestamp_out_of_range", "timestamp", 6),
        ("timestamp_out_of_range", "timestamp", 7),
        ("timestamp_out_of_range", "timestamp", 8),
    ]
    .iter()
    .map(|(r, f, l)| (r.to_string(), f.to_string(), *l))
    .collect();
    assert_eq!(got, want);
    // Nothing is left to retry: the next pass finds the source done.
    let again = stdout(&cclake(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake]));
    assert!(again.contains("1 already ingested"), "{again}");

    // An object whose processing panics (a dependency's bug, injected here) costs that object,
    // not the pass: the others land, the summary names it, and the next pass reads it.
    std::fs::write(source.join("later.jsonl"), with("ok3", &format!(r#"{at},"queue_name":"Support""#)) + "\n").unwrap();
    std::fs::write(source.join("panics.jsonl"), with("ok4", &format!(r#"{at},"queue_name":"Support""#)) + "\n").unwrap();
    let out = cclake_with_env(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake], &[("CCLAKE_FAULT_PANIC_OBJECT", "panics.jsonl")]);
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("panics.jsonl") && said.contains("processing failed unexpectedly"), "{said}");
    let landed = query(&lake, "SELECT event_id FROM fact_interactions ORDER BY event_id");
    let landed: Vec<&str> = landed.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(landed, ["cyrillic", "ok1", "ok2", "ok3"]);
    cclake(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake]);
    let landed = query(&lake, "SELECT event_id FROM fact_interactions ORDER BY event_id");
    let landed: Vec<&str> = landed.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(landed, ["cyrillic", "ok1", "ok2", "ok3", "ok4"]);
    // Another reader reads the lake whole.
    let out = std::process::Command::new(python()).arg(repo().join("tests/python/read_lake.py")).arg(&lake).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_queue_name_explosion_is_quarantined_past_the_queues_a_day_may_hold() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("exports");
    std::fs::create_dir_all(&source).unwrap();
    let event = |id: &str, day: u32, queue: &str| {
        format!(r#"{{"event_id":"{id}","interaction_id":"i-{id}","timestamp":"2024-03-{day:02}T09:00:00Z","queue_name":"{queue}"}}"#)
    };
    // Day 4: twelve queues, two events each, in order; day 5: three queues.
    let mut lines = Vec::new();
    for q in 1..=12 {
        for n in 0..2 {
            lines.push(event(&format!("d4-q{q}-{n}"), 4, &format!("Queue {q}")));
        }
    }
    for q in 1..=3 {
        lines.push(event(&format!("d5-q{q}"), 5, &format!("Queue {q}")));
    }
    std::fs::write(source.join("first.jsonl"), lines.join("\n") + "\n").unwrap();
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    let ingest = |source: &Path| cclake(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake, "--max-queues-per-day", "10"]);
    ingest(&source);
    let count = |sql: &str| query(&lake, sql)[0]["n"].as_i64().unwrap();
    // Worked out by hand: day 4 keeps its first ten queues (20 events), its queues 11 and 12
    // (4 events) are quarantined; day 5's three queues land.
    assert_eq!(count("SELECT count(DISTINCT queue_name) AS n FROM fact_interactions WHERE event_date = DATE '2024-03-04'"), 10);
    assert_eq!(count("SELECT count(*) AS n FROM fact_interactions WHERE event_date = DATE '2024-03-04'"), 20);
    assert_eq!(count("SELECT count(*) AS n FROM fact_interactions WHERE event_date = DATE '2024-03-05'"), 3);
    let quarantined = query(&lake, "SELECT reason, field, source_line FROM quarantine ORDER BY source_line");
    let lines: Vec<i64> = quarantined.iter().map(|r| r["source_line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [21, 22, 23, 24]);
    assert!(quarantined.iter().all(|r| r["reason"] == "too_many_partitions" && r["field"] == "queue_name"), "{quarantined:?}");
    // A later pass knows the queues the lake holds: an old queue of day 4 still takes
    // events, a new one does not; day 5 takes new ones up to its own ten.
    let later = dir.path().join("later");
    std::fs::create_dir_all(&later).unwrap();
    std::fs::write(later.join("second.jsonl"), [event("late-q3", 4, "Queue 3"), event("late-q13", 4, "Queue 13"), event("late-d5-q9", 5, "Queue 9")].join("\n") + "\n").unwrap();
    ingest(&later);
    let landed = query(&lake, "SELECT event_id FROM fact_interactions WHERE event_id LIKE 'late%' ORDER BY event_id");
    let landed: Vec<&str> = landed.iter().map(|r| r["event_id"].as_str().unwrap()).collect();
    assert_eq!(landed, ["late-d5-q9", "late-q3"]);
    assert_eq!(count("SELECT count(*) AS n FROM quarantine WHERE reason = 'too_many_partitions'"), 5);
}

/// Values no analyst may read, whatever field they arrive in, and the raw forms to look for.
const HOSTILE: &[&str] = &[
    "jane.doe@example.org",
    "+1 555-861-0001",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "https://rec.example.com/a.wav",
    "10.20.30.40",
    "call 555-863-0003 555-864-0004",
];
const SECRETS: &[&str] = &[
    "jane.doe", "5558610001", "555-861-0001", "4111 1111 1111 1111", "4111111111111111", "4111-1111-1111-1111",
    "rec.example.com", "10.20.30.40", "555-863-0003", "5558630003",
];

/// Every string of `value` whose key is not an id, a time or a date becomes the next hostile
/// value (the fields nobody listed included).
fn poison(value: &mut serde_json::Value, next: &mut usize) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let keep = ["id", "ids", "start", "end", "date", "time", "timestamp", "version"].iter().any(|k| key.to_lowercase().ends_with(k));
                match field {
                    serde_json::Value::String(s) if !keep => {
                        *s = HOSTILE[*next % HOSTILE.len()].to_string();
                        *next += 1;
                    }
                    other if !keep => poison(other, next),
                    _ => {}
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| poison(i, next)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_values_in_every_field_reach_no_analyst_readable_column_path_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("exports");
    std::fs::create_dir_all(&source).unwrap();
    // Flat events: every text field, each hostile value in turn (so each field gets each).
    let fields = ["type", "direction", "state", "queue_name", "agent_id", "source_system", "caller_number_masked"];
    let mut flat = String::new();
    for (n, value) in HOSTILE.iter().enumerate() {
        let mut event = serde_json::json!({"event_id": format!("e{n}"), "interaction_id": format!("i{n}"),
            "timestamp": "2024-03-04T09:00:00Z", "metadata": {"campaign_id": value, "source_ip": value}});
        for field in fields {
            event[field] = serde_json::json!(value);
        }
        flat.push_str(&format!("{event}\n"));
    }
    std::fs::write(source.join("flat.jsonl"), flat).unwrap();
    // The Genesys fixtures, every string that is not an id, time or date poisoned.
    let mut next = 0;
    let details: serde_json::Value = serde_json::from_slice(&std::fs::read(repo().join("testdata/genesys/details/2024-03-04/async-job-0905.json")).unwrap()).unwrap();
    let mut poisoned = details.clone();
    poison(&mut poisoned, &mut next);
    std::fs::write(source.join("details.json"), poisoned.to_string()).unwrap();
    let events = std::fs::read_to_string(repo().join("testdata/genesys/eventbridge/events-0910.jsonl")).unwrap();
    let events: Vec<String> = events
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            poison(&mut event["detail"]["eventBody"], &mut next);
            event["detail"]["topicName"] = serde_json::json!(format!("v2.detail.events.conversation.{}.user.start", HOSTILE[next % HOSTILE.len()]));
            next += 1;
            event.to_string()
        })
        .collect();
    std::fs::write(source.join("events.jsonl"), events.join("\n")).unwrap();

    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    let summary = tokio::task::block_in_place(|| stdout(&cclake(&["ingest", "--source", source.to_str().unwrap(), "--lake", &lake])));
    // Each of the 7 flat events had a hostile `state`: all 7 counted as no code.
    assert!(summary.contains("values that are no code, stored as [other]:") && summary.contains("fact_interactions.state: 7"), "{summary}");
    let config = dir.path().join("cclake.toml");
    tokio::task::block_in_place(|| crate::flight::add_user(&config, "ana", "analyst", "analyst-pw"));
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut ana = signed_in(server.port, "ana", "analyst-pw").await;
    // Every table and view the analyst can list, every column of every row.
    let names = int_or_text(&run(&mut ana, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'cc_analytics'").await.unwrap());
    assert!(names.len() > 20 && names.contains(&"session_segments".to_string()), "{names:?}");
    let mut rows_seen = 0;
    for table in &names {
        let batches = run(&mut ana, &format!("SELECT * FROM \"{table}\"")).await.unwrap_or_else(|e| panic!("{table}: {e}"));
        for batch in &batches {
            rows_seen += batch.num_rows();
            for column in batch.columns() {
                for row in 0..batch.num_rows() {
                    let text = arrow::util::display::array_value_to_string(column, row).unwrap();
                    for secret in SECRETS {
                        assert!(!text.contains(secret), "{secret} readable in {table}: {text}");
                    }
                }
            }
        }
    }
    assert!(rows_seen > 50, "{rows_seen}");
    // Folder names and Delta logs of every table an analyst may read.
    for path in walk(Path::new(&lake)) {
        let relative = path.strip_prefix(&lake).unwrap().to_string_lossy().into_owned();
        if ["call_recordings", "user_contacts", "agent_identities", "_cclake"].iter().any(|t| relative.starts_with(t)) {
            continue;
        }
        let decoded = percent_decoded(&relative);
        let log = if relative.contains("_delta_log") && relative.ends_with(".json") { std::fs::read_to_string(&path).unwrap() } else { String::new() };
        for secret in SECRETS {
            assert!(!decoded.contains(secret) && !relative.contains(secret), "{secret} in the path {relative}");
            assert!(!log.contains(secret) && !percent_decoded(&log).contains(secret), "{secret} in {relative}");
        }
    }
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
