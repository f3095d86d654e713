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
        let mut child = cclake_command()
            .args(["serve", "--lake", lake, "--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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

async fn client(port: u16) -> FlightSqlServiceClient<Channel> {
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
    assert_eq!(names, ["fact_interactions", "ingest_log", "quarantine"], "analysts do not see call_recordings");
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
    assert!(fetch(&mut jdbc, xdbc).await.1[0].num_rows() >= 5);

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
fn python_clients_adbc_and_pyarrow_flight() {
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
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(repo().join("tests/python/test_flight_sql.py"))
        .env("CCLAKE_FLIGHT_URL", &plain.url)
        .env("CCLAKE_FLIGHT_TLS_URL", &tls.url)
        .env("CCLAKE_FLIGHT_TLS_CERT", &cert_path)
        .env("CCLAKE_LAKE", &lake)
        .env("CCLAKE_BIN", env!("CARGO_BIN_EXE_cclake"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the Python client suite failed:\n{text}");
    assert!(text.contains(" passed"), "{text}");
}

#[test]
fn plaintext_on_a_network_address_needs_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cclake.toml");
    add_user(&config, "ana", "analyst", "pw");
    let lake = dir.path().join("lake");
    let out = cclake_command()
        .args(["serve", "--lake", lake.to_str().unwrap(), "--config", config.to_str().unwrap(), "--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-plaintext"));
}
