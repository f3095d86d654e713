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
        assert!(err.contains("ResourceExhausted") && err.contains("repeat would produce 1.4 GB"), "{err}");
        assert!(err.contains("memory limit of 256.0 MB"), "{err}");
    }
    for (sql, function) in [
        ("SELECT length(lpad('x', 1500000000))", "lpad"),
        ("SELECT length(rpad('x', 600000000, 'é'))", "rpad"),
        ("SELECT length(replace(repeat('a', 100000), 'a', repeat('b', 10000)))", "replace"),
        ("SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 10000), 'g'))", "regexp_replace"),
        ("SELECT cardinality(range(0, 1000000000))", "range"),
        ("SELECT cardinality(generate_series(1, 1000000000, 1))", "generate_series"),
        ("SELECT cardinality(array_repeat(1, 1000000000))", "array_repeat"),
        ("SELECT cardinality(array_resize([1], 1000000000))", "array_resize"),
        ("SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))", "levenshtein"),
    ] {
        let err = run(&mut ana, sql).await.unwrap_err();
        assert!(err.contains("ResourceExhausted") && err.contains(function), "{sql}: {err}");
    }
    let peak = peak_rss_mb(server.pid());
    assert!(peak < 1024, "the server peaked at {peak} MB");

    // The guarded functions still compute what they did (values worked out by hand).
    let batches = run(&mut ana, "SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, levenshtein('kitten', 'sitting') AS d, cardinality(range(0, 10, 3)) AS c").await.unwrap();
    let row = &batches[0];
    assert_eq!(row.column(0).as_string::<i32>().value(0), "ababab");
    assert_eq!(row.column(1).as_string::<i32>().value(0), "007");
    assert_eq!(row.column(2).as_primitive::<arrow::datatypes::Int32Type>().value(0), 3);
    assert_eq!(row.column(3).as_primitive::<arrow::datatypes::UInt64Type>().value(0), 4);

    // Two long queries keep both cores busy: each call is bounded, so each ends at its
    // deadline; meanwhile the auditor's SELECT 1 is answered and a third query of a table is
    // refused (the two take the shared slots; SELECT 1 runs on the reserve).
    let long = "SELECT count(*) FROM (SELECT levenshtein(repeat('a', v % 100 + 100), repeat('b', 100)) FROM generate_series(1, 5000000) AS t(v))";
    let port = server.port;
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { run(&mut signed_in(port, "ana", "analyst-pw").await, long).await }))
        .collect();
    let mut auditor = signed_in(server.port, "aud", "auditor-pw").await;
    // Both long queries hold their slots once a table query is refused.
    wait_for_async("both long queries to run", || async {
        let mut c = signed_in(port, "ana", "analyst-pw").await;
        run(&mut c, "SELECT count(*) AS n FROM fact_interactions").await.is_err_and(|e| e.contains("too many concurrent queries"))
    })
    .await;
    let one = run(&mut auditor, "SELECT 1 AS one").await.unwrap();
    assert_eq!(one[0].column(0).as_primitive::<Int64Type>().value(0), 1);
    assert!(slow.iter().all(|t| !t.is_finished()), "SELECT 1 was answered while both long queries ran");
    for task in slow {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.contains("DeadlineExceeded") && err.contains("timed out after 5 s"), "{err}");
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
