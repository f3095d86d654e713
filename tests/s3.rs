//! The same code on S3-compatible storage: a real S3-speaking server (moto) on loopback holds
//! both the exports and the lake.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::ObjectStoreExt;

use crate::fixtures::assert_fixture_lake;
use crate::support::*;

/// moto's S3 server on a free loopback port, stopped on drop.
pub(crate) struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let moto = python().with_file_name("moto_server");
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (scripts/test.sh installs it)");
        let server = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        wait_for("moto to listen", Duration::from_secs(60), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        server
    }

    /// Creates a bucket with a plain unsigned request, as moto allows.
    pub(crate) fn create_bucket(&self, bucket: &str) {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).unwrap();
        write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_CONDITIONAL_PUT", "etag".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// S3 stamps an object with the second of its upload: what is uploaded next must get a later
/// second, so wait for the clock to pass this object's (no fixed sleep).
async fn wait_past_stamp(store: &impl ObjectStoreExt, path: &str) {
    let stamped = store.head(&path.into()).await.unwrap().last_modified.timestamp();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 <= stamped {
        assert!(std::time::Instant::now() < deadline, "the clock never passed {stamped}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_and_query_on_s3_compatible_storage() {
    let server = S3Server::start();
    server.create_bucket("cclake-test");
    let store = AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_bucket_name("cclake-test")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .with_allow_http(true)
        .build()
        .unwrap();
    // S3 sets last-modified itself: upload in delivery order, one second apart where the
    // order matters (corrections last).
    for (name, _) in FIXTURE_DELIVERIES {
        let body = std::fs::read(repo().join("testdata/exports").join(name)).unwrap();
        store.put(&format!("exports/{name}").as_str().into(), body.into()).await.unwrap();
        if name.starts_with("late/") {
            wait_past_stamp(&store, &format!("exports/{name}")).await;
        }
    }
    let env_owned = server.env();
    let lake = "s3://cclake-test/lake";
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let summary = stdout(&cclake_with_env(&["ingest", "--source", "s3://cclake-test/exports", "--lake", lake], &env));
        assert!(summary.contains("records: 20 read, 11 upserted, 6 quarantined"), "{summary}");
        assert!(summary.contains("unreadable objects: 1"), "{summary}");
        assert_fixture_lake(lake, &env);
        let again = stdout(&cclake_with_env(&["ingest", "--source", "s3://cclake-test/exports", "--lake", lake], &env));
        assert!(again.contains("8 already ingested, 0 read"), "{again}");
    })
    .await
    .unwrap();

    // The Genesys shapes into the same lake on S3, uploaded in delivery order, each in a
    // later second than the one before (S3 stamps the upload time): A's active export is
    // then older than its final one, the 4 March queues export older than the 5 March one.
    let mut deliveries: Vec<&(&str, &str)> = GENESYS_DELIVERIES.iter().collect();
    deliveries.sort_by_key(|(name, delivered)| (*delivered, *name));
    for (name, _) in deliveries {
        let path = format!("genesys/{name}");
        let body = std::fs::read(repo().join("testdata/genesys").join(name)).unwrap();
        store.put(&path.as_str().into(), body.into()).await.unwrap();
        wait_past_stamp(&store, &path).await;
    }
    let env_owned = server.env();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let summary = stdout(&cclake_with_env(&["ingest", "--source", "s3://cclake-test/genesys", "--lake", lake], &env));
        assert!(summary.contains("valid conversation_detail: 7"), "{summary}");
        // Worked out by hand in sql/genesys.slt.
        let billing = query_with_env(
            lake,
            "SELECT n_offered, n_answered, n_abandoned FROM queue_daily_metrics WHERE queue_name = 'Billing' AND date = DATE '2024-03-04'",
            &env,
        );
        assert_eq!(billing, vec![serde_json::json!({"n_offered": 3, "n_answered": 2, "n_abandoned": 1})]);
        let a = query_with_env(lake, "SELECT count(*) AS n FROM session_segments WHERE conversation_id LIKE '%0001'", &env);
        assert_eq!(a[0]["n"], 8, "A's final export replaced its active one");
        let support = query_with_env(lake, "SELECT queue_name FROM queues WHERE queue_id = 'q-support'", &env);
        assert_eq!(support[0]["queue_name"], "Support Tier 1");
    })
    .await
    .unwrap();

    // `serve --ingest-from` on S3: after its first pass lists the source whole, each pass
    // lists only the keys after the greatest one seen, and finds a new export named later.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cclake.toml");
    crate::flight::add_user(&config, "aud", "auditor", "auditor-pw");
    let log_path = dir.path().join("serve.log");
    let mut serve = cclake_command()
        .args(["serve", "--lake", lake, "--config", config.to_str().unwrap(), "--addr", "127.0.0.1:0"])
        .args(["--ingest-from", "s3://cclake-test/exports", "--interval", "1s"])
        .envs(server.env())
        .env("CCLAKE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let passes = |log: &str| -> Vec<String> { log.lines().filter(|l| l.contains("ingest pass started")).map(String::from).collect() };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for("the first scheduled pass", Duration::from_secs(60), || !passes(&log()).is_empty());
    let event = r#"{"event_id":"zz-1","interaction_id":"i-zz","timestamp":"2024-03-05T10:00:00Z","queue_name":"Billing"}"#;
    store.put(&"exports/zz-later.jsonl".into(), format!("{event}\n").into_bytes().into()).await.unwrap();
    let env_owned = server.env();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        wait_for("the new export to land", Duration::from_secs(60), || {
            query_with_env(lake, "SELECT count(*) AS n FROM fact_interactions WHERE event_id = 'zz-1'", &env)[0]["n"] == 1
        });
    })
    .await
    .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let passes = passes(&log());
    assert!(passes.len() >= 2, "{passes:?}");
    assert!(passes[0].contains("objects=0 skipped=8"), "the first pass lists every export: {}", passes[0]);
    for pass in &passes[1..] {
        assert!(pass.contains("skipped=0"), "later passes list only new keys: {pass}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_object_of_a_lake_on_s3_carries_the_requested_server_side_encryption() {
    let server = S3Server::start();
    server.create_bucket("cclake-sse");
    let env_owned = server.env();
    // A KMS key of the loopback server's own KMS, and the checks, with boto3 (moto's client).
    let boto = |script: &str, args: &[&str]| {
        let out = Command::new(python()).arg("-c").arg(script).args(args).envs(env_owned.iter().map(|(k, v)| (*k, v.as_str()))).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let key = boto("import boto3, os\nprint(boto3.client('kms', endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name='us-east-1').create_key()['KeyMetadata']['KeyId'])", &[]);
    let exports = tempfile::tempdir().unwrap();
    copy_fixtures(exports.path());
    let mut env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("AWS_SERVER_SIDE_ENCRYPTION", "aws:kms"));
    env.push(("AWS_SSE_KMS_KEY_ID", &key));
    let lake = "s3://cclake-sse/lake";
    cclake_with_env(&["ingest", "--source", exports.path().to_str().unwrap(), "--lake", lake], &env);
    cclake_with_env(&["compact", "--lake", lake], &env);
    let fact = query_with_env(lake, "SELECT count(*) AS n FROM fact_interactions", &env);
    assert_eq!(fact[0]["n"], 11);
    let check = r#"
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
kinds, wrong = {}, []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="cclake-sse", Prefix="lake/"):
    for item in page.get("Contents", []):
        name = item["Key"]
        head = s3.head_object(Bucket="cclake-sse", Key=name)
        kind = "log" if "/_delta_log/" in name else "data" if name.endswith(".parquet") else "cclake"
        kinds[kind] = kinds.get(kind, 0) + 1
        if head.get("ServerSideEncryption") != "aws:kms" or sys.argv[1] not in head.get("SSEKMSKeyId", ""):
            wrong.append((name, head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")))
print(sorted(kinds.items()), wrong)
"#;
    let seen = boto(check, &[&key]);
    assert!(seen.ends_with("[]"), "objects without the requested encryption: {seen}");
    assert!(seen.contains("('data', ") && seen.contains("('log', ") && seen.contains("('cclake', "), "{seen}");
}
