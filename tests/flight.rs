//! The Flight SQL server, started as users start it (`cclake serve` on 127.0.0.1:0), driven
//! by arrow-rs's `FlightSqlServiceClient` replaying the JDBC driver's call sequence, and by
//! the Python suite (ADBC's Go driver and pyarrow.flight) in tests/python.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Schema;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::{Action, FlightInfo};
use futures::TryStreamExt;
use tonic::transport::Channel;

use crate::support::*;

/// A running `cclake serve`, killed on drop.
pub struct FlightServer {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl FlightServer {
    pub fn start(lake: &str, config: &Path, extra: &[&str]) -> Self {
        Self::start_logging(lake, config, extra, Stdio::inherit(), "warn")
    }

    /// Starts the server with its log (at `level`) going to `log`.
    pub fn start_logging(lake: &str, config: &Path, extra: &[&str], log: Stdio, level: &str) -> Self {
        let mut child = cclake_command()
            .args(["serve", "--lake", lake, "--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("CCLAKE_LOG", level)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        // The server prints its address once it listens: no sleeping.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {line:?}")).to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Self { child, url, port }
    }
}

impl FlightServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FlightServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn add_user(config: &Path, name: &str, role: &str, password: &str) {
    use std::io::Write;
    let mut child = cclake_command()
        .args(["user", "add", "--config", config.to_str().unwrap(), "--name", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

/// A lake made from the fixtures, a config with an analyst and an auditor.
pub fn fixture_lake(dir: &Path) -> (String, std::path::PathBuf) {
    let exports = dir.join("exports");
    copy_fixtures(&exports);
    let lake = dir.join("lake").to_str().unwrap().to_string();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", &lake]);
    let config = dir.join("cclake.toml");
    add_user(&config, "ana", "analyst", "analyst-pw");
    add_user(&config, "aud", "auditor", "auditor-pw");
    (lake, config)
}

pub async fn client(port: u16) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    FlightSqlServiceClient::new(channel)
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> (Arc<Schema>, Vec<RecordBatch>) {
    let info_schema = Arc::new(info.clone().try_decode_schema().unwrap());
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        assert!(endpoint.location.is_empty(), "no location: clients reuse the connection");
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        let got: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        for b in &got {
            assert_eq!(b.schema(), info_schema, "FlightInfo and DoGet schemas must be identical");
        }
        batches.extend(got);
    }
    (info_schema, batches)
}

/// Every row of `sql`'s answer, each value as Arrow displays it (nulls empty).
pub async fn rows(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<Vec<String>> {
    let info = client.execute(sql.into(), None).await.unwrap();
    let (_, batches) = fetch(client, info).await;
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch.columns().iter().map(|c| arrow::util::display::array_value_to_string(c, row).unwrap()).collect(),
            );
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn jdbc_call_sequence_with_the_rust_flight_sql_client() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));

    // Without a token every RPC is refused.
    let mut anonymous = client(server.port).await;
    let err = anonymous.execute("SELECT 1".into(), None).await.unwrap_err().to_string();
    assert!(err.contains("Unauthenticated") || err.contains("authorization"), "{err}");
    let err = anonymous.handshake("ana", "wrong").await.unwrap_err().to_string();
    assert!(err.contains("wrong user name or password"), "{err}");

    let mut jdbc = client(server.port).await;
    jdbc.handshake("ana", "analyst-pw").await.unwrap();
    assert!(jdbc.token().is_some(), "the token comes back in the authorization header");

    // JDBC: GetSqlInfo once, then metadata, then every query as a prepared statement.
    let info = jdbc.get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly]).await.unwrap();
    let (_, batches) = fetch(&mut jdbc, info).await;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let all_info = jdbc.get_sql_info(vec![]).await.unwrap();
    let (_, batches) = fetch(&mut jdbc, all_info).await;
    assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() > 70, "a full SqlInfo key set");

    let (_, catalogs) = { let info = jdbc.get_catalogs().await.unwrap(); fetch(&mut jdbc, info).await };
    assert_eq!(catalogs[0].column(0).as_string::<i32>().value(0), "cclake");
    let schemas = jdbc
        .get_db_schemas(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: Some("cc_%".into()) })
        .await
        .unwrap();
    let (_, schemas) = fetch(&mut jdbc, schemas).await;
    assert_eq!(schemas[0].num_rows(), 1);
    let tables = jdbc
        .get_tables(CommandGetTables {
            catalog: Some("cclake".into()),
            db_schema_filter_pattern: Some("cc_analytics".into()),
            table_name_filter_pattern: Some("%".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let (_, tables) = fetch(&mut jdbc, tables).await;
    let names: Vec<String> = tables[0].column_by_name("table_name").unwrap().as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect();
    assert_eq!(
        names,
        [
            "conversation_events", "conversations", "fact_interactions", "ingest_log", "participant_sessions", "quarantine",
            "queues", "session_metrics", "session_segments", "users", "wrapup_codes"
        ],
        "analysts see neither call_recordings nor user_contacts"
    );
    assert!(tables[0].column_by_name("table_schema").is_some());
    let (_, types) = { let info = jdbc.get_table_types().await.unwrap(); fetch(&mut jdbc, info).await };
    assert_eq!(types[0].num_rows(), 2);
    let pk = jdbc
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys { catalog: None, db_schema: None, table: "fact_interactions".into() })
        .await
        .unwrap();
    let (schema, rows) = fetch(&mut jdbc, pk).await;
    assert!(schema.field_with_name("key_sequence").is_ok());
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let xdbc = jdbc.get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None }).await.unwrap();
    // Every SQL type the lake's columns have, with the java.sql.Types code the JDBC
    // specification gives it (INTEGER 4, BIGINT -5, DOUBLE 8, VARCHAR 12, DATE 91, TIMESTAMP
    // 93; Flight SQL's XdbcDataType has no BOOLEAN, so BIT, -7).
    let (_, types) = fetch(&mut jdbc, xdbc).await;
    let types = arrow::compute::concat_batches(&types[0].schema(), &types).unwrap();
    let names = types.column_by_name("type_name").unwrap().as_string::<i32>();
    let codes = arrow::compute::cast(types.column_by_name("data_type").unwrap(), &arrow::datatypes::DataType::Int32).unwrap();
    let codes = codes.as_primitive::<arrow::datatypes::Int32Type>();
    let listed: std::collections::HashMap<&str, i32> = (0..types.num_rows()).map(|i| (names.value(i), codes.value(i))).collect();
    for (name, code) in [("BOOLEAN", -7), ("INTEGER", 4), ("BIGINT", -5), ("DOUBLE", 8), ("VARCHAR", 12), ("DATE", 91), ("TIMESTAMP", 93)] {
        assert_eq!(listed.get(name), Some(&code), "{name} in {listed:?}");
    }

    // catalog= sends SetSessionOptions; closing sends CloseSession.
    let action = Action::new("SetSessionOptions", Vec::<u8>::new());
    let results: Vec<_> = jdbc.do_action(action).await.unwrap().try_collect().await.unwrap();
    assert_eq!(results.len(), 1);

    let mut prepared = jdbc
        .prepare("SELECT event_id, duration_seconds FROM fact_interactions WHERE queue_name = ? ORDER BY event_id".into(), None)
        .await
        .unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().fields().len(), 2, "a real dataset schema, or JDBC thinks it is an update");
    assert_eq!(prepared.parameter_schema().unwrap().fields().len(), 1);
    let params = RecordBatch::try_from_iter([("$1", Arc::new(arrow::array::StringArray::from(vec!["Billing"])) as _)]).unwrap();
    prepared.set_parameters(params).unwrap();
    let info = prepared.execute().await.unwrap();
    let (_, rows) = fetch(&mut jdbc, info).await;
    let ids: Vec<&str> = rows.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().map(|s| s.unwrap())).collect();
    assert_eq!(ids, ["e2", "e7", "e8", "e9"]);
    prepared.close().await.unwrap();

    // Aggregates over Parquet keep FlightInfo and DoGet schemas identical.
    let info = jdbc.execute("SELECT count(*) AS n, min(event_timestamp), max(duration_seconds) FROM fact_interactions".into(), None).await.unwrap();
    let (_, rows) = fetch(&mut jdbc, info).await;
    assert_eq!(rows[0].num_rows(), 1);

    // Role and read-only refusals.
    let err = jdbc.execute("SELECT * FROM call_recordings".into(), None).await.unwrap_err().to_string();
    assert!(err.contains("role analyst may not read call_recordings"), "{err}");
    let err = jdbc.execute_update("DELETE FROM quarantine".into(), None).await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");
    let err = jdbc.begin_transaction().await.unwrap_err().to_string();
    assert!(err.contains("read-only"), "{err}");

    let mut auditor = client(server.port).await;
    auditor.handshake("aud", "auditor-pw").await.unwrap();
    let info = auditor.execute("SELECT recording_url FROM call_recordings".into(), None).await.unwrap();
    let (_, rows) = fetch(&mut auditor, info).await;
    assert_eq!(rows[0].column(0).as_string::<i32>().value(0), "s3://recordings-bucket/i3.wav");
}

#[test]
fn python_clients_adbc_pyarrow_flight_sqlalchemy_polars_and_flightsql_dbapi() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = fixture_lake(dir.path());
    let plain = FlightServer::start(&lake, &config, &[]);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = FlightServer::start(
        &lake,
        &config,
        &["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()],
    );
    assert!(tls.url.starts_with("grpc+tls://"), "{}", tls.url);
    // The main venv: ADBC, pyarrow.flight, sqlalchemy-adbc with pandas, polars. The second:
    // flightsql-dbapi with its SQLAlchemy 1.x dialect.
    let suites = [
        (python(), vec!["tests/python/test_flight_sql.py", "tests/python/test_clients.py"]),
        (python_sqlalchemy1(), vec!["tests/python/test_flightsql_dbapi.py"]),
    ];
    for (interpreter, files) in suites {
        let out = Command::new(interpreter)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .args(files.iter().map(|f| repo().join(f)))
            .env("CCLAKE_FLIGHT_URL", &plain.url)
            .env("CCLAKE_FLIGHT_TLS_URL", &tls.url)
            .env("CCLAKE_FLIGHT_TLS_CERT", &cert_path)
            .env("CCLAKE_LAKE", &lake)
            .env("CCLAKE_BIN", env!("CARGO_BIN_EXE_cclake"))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        println!("{text}");
        assert!(out.status.success(), "the Python client suite {files:?} failed:\n{text}");
        assert!(text.contains(" passed"), "{text}");
    }
}

#[test]
fn plaintext_on_a_network_address_needs_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cclake.toml");
    add_user(&config, "ana", "analyst", "analyst-pw");
    let lake = dir.path().join("lake");
    let out = cclake_command()
        .args(["serve", "--lake", lake.to_str().unwrap(), "--config", config.to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-plaintext"));
}

pub async fn count(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> i64 {
    let info = client.execute(sql.into(), None).await.unwrap();
    let (_, rows) = fetch(client, info).await;
    arrow::compute::cast(rows[0].column(0), &arrow::datatypes::DataType::Int64)
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn new_commits_are_visible_and_scheduled_ingest_runs_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let server = tokio::task::block_in_place(|| {
        FlightServer::start(&lake, &config, &["--ingest-from", incoming.to_str().unwrap(), "--interval", "200ms"])
    });
    let mut client = client(server.port).await;
    client.handshake("aud", "auditor-pw").await.unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM fact_interactions").await, 11);

    // A new export lands in the scheduled source: the embedded write side ingests it and the
    // next queries see it.
    std::fs::write(
        incoming.join("new.jsonl"),
        "{\"event_id\":\"n1\",\"interaction_id\":\"n\",\"timestamp\":\"2024-03-06T10:00:00Z\",\"queue_name\":\"Billing\"}\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&mut client, "SELECT count(*) FROM fact_interactions").await != 12 {
        assert!(std::time::Instant::now() < deadline, "the scheduled ingest pass never became visible");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A commit by another process (the CLI) is visible to the very next query.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("more.jsonl"),
        "{\"event_id\":\"n2\",\"interaction_id\":\"n\",\"timestamp\":\"2024-03-06T10:05:00Z\",\"queue_name\":\"Billing\"}\n",
    )
    .unwrap();
    tokio::task::block_in_place(|| cclake(&["ingest", "--source", other.to_str().unwrap(), "--lake", &lake]));
    let committed = std::time::Instant::now();
    while count(&mut client, "SELECT count(*) FROM fact_interactions").await != 13 {
        assert!(committed.elapsed() < std::time::Duration::from_secs(1), "a commit must be visible within 1 s");
    }
    assert_eq!(count(&mut client, "SELECT offered FROM kpi_queue_daily WHERE date = DATE '2024-03-06'").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_stop_one_query_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    let text = std::fs::read_to_string(&config).unwrap().replace("query_timeout_seconds = 300", "query_timeout_seconds = 1")
        .replace("max_concurrent_queries = 16", "max_concurrent_queries = 1");
    std::fs::write(&config, text).unwrap();
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut client = client(server.port).await;
    client.handshake("ana", "analyst-pw").await.unwrap();

    let slow = "SELECT count(*) FROM (SELECT v FROM generate_series(1, 5000000000) AS t(v) WHERE v % 7 = 3)";
    let info = client.execute(slow.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let err = match client.do_get(ticket).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("timed out after 1 s"), "{err}");

    // With the one query slot taken by an open stream, another query of a table is refused,
    // not queued; a query that reads no table runs on the reserve.
    let held = client.execute(slow.into(), None).await.unwrap();
    let held_stream = client.do_get(held.endpoint[0].ticket.clone().unwrap()).await;
    let second = client.execute("SELECT count(*) FROM fact_interactions".into(), None).await.unwrap();
    let err = client.do_get(second.endpoint[0].ticket.clone().unwrap()).await.map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("too many concurrent queries"), "{err}");
    let cheap = client.execute("SELECT 1".into(), None).await.unwrap();
    let rows: Vec<RecordBatch> = client.do_get(cheap.endpoint[0].ticket.clone().unwrap()).await.unwrap().try_collect().await.unwrap();
    assert_eq!(rows[0].num_rows(), 1);
    drop(held_stream);

    // The server still answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info = client.execute("SELECT count(*) FROM fact_interactions".into(), None).await.unwrap();
        match client.do_get(info.endpoint[0].ticket.clone().unwrap()).await {
            Ok(stream) => {
                let rows: Vec<RecordBatch> = stream.try_collect().await.unwrap();
                assert_eq!(rows[0].num_rows(), 1);
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "slot never freed: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn sigterm_stops_a_running_scheduled_pass_at_a_commit_and_a_resume_reads_the_rest() {
    use crate::generated::{delta_commits, exit_within, objects_logged};
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = fixture_lake(dir.path());
    let incoming = dir.path().join("incoming");
    let manifest = generate(&incoming, 2_000, 3, true);
    let fixtures = objects_logged(&lake);
    let log = dir.path().join("serve.log");
    let mut server = FlightServer::start_logging(
        &lake,
        &config,
        &["--ingest-from", incoming.to_str().unwrap(), "--interval", "1s", "--batch-rows", "150"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
        "info",
    );
    // The scheduled pass is running and has committed twice: SIGTERM lands inside it.
    let ingest_log = Path::new(&lake).join("ingest_log");
    let before = delta_commits(&ingest_log);
    wait_for("two commits of the scheduled pass", std::time::Duration::from_secs(120), || delta_commits(&ingest_log) >= before + 2);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("scheduled ingest pass committed"), "the pass ended before the signal: the source is too small\n{text}");
    let status = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = exit_within(&mut server.child, std::time::Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("interrupted=true"), "{text}");
    // Part of the source was committed; a resume reads exactly the rest.
    let logged = objects_logged(&lake);
    assert!(logged > fixtures, "{logged}");
    let resumed = stdout(&cclake(&["ingest", "--source", incoming.to_str().unwrap(), "--lake", &lake]));
    assert!(resumed.contains(&format!("{} already ingested", logged - fixtures)), "{resumed}");
    let generated = query(&lake, "SELECT count(DISTINCT event_id) AS n FROM fact_interactions WHERE source_object LIKE '%incoming%'");
    assert_eq!(generated[0]["n"].as_i64(), manifest["distinct_valid_events"].as_i64());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_name_cannot_forge_a_log_line_nor_flood_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = tokio::task::block_in_place(|| fixture_lake(dir.path()));
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = tokio::task::block_in_place(|| FlightServer::start_logging(&lake, &config, &[], log.into(), "info"));
    let forged = "mallory\n2026-01-01T00:00:00.000000Z  INFO cclake::server::flight_sql: signed in user=aud role=auditor";
    let err = client(server.port).await.handshake(forged, "x").await.unwrap_err().to_string();
    assert!(err.contains("wrong user name or password"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    // (5,000 characters: a basic-auth header of 100 KB is refused by HTTP/2 before it arrives.)
    let long = "m".repeat(5_000);
    let err = client(server.port).await.handshake(&long, "x").await.unwrap_err().to_string();
    assert!(err.len() < 1_000 && err.contains("(5000 characters)"), "{err}");
    client(server.port).await.handshake("ana", "analyst-pw").await.unwrap();
    let _ = server.child.kill();
    let _ = server.child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("2026-01-01")), "a forged line:\n{text}");
    assert!(text.contains("mallory\\n2026"), "the name is logged escaped:\n{text}");
    assert!(text.contains("signed in user=ana"), "{text}");
    assert!(!text.contains(&"m".repeat(100)), "the 5,000-character name reached the log whole");
}

