//! Helpers shared by the integration tests: run the real `cclake` binary, copy fixtures with
//! their delivery times, find the Python venv made by `scripts/test.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cclake_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cclake"));
    cmd.env_remove("CCLAKE_LOG");
    cmd
}

/// Runs `cclake` with `args` and returns its output, failing the test when it fails.
pub fn cclake(args: &[&str]) -> Output {
    cclake_with_env(args, &[])
}

pub fn cclake_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = cclake_command();
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().expect("cclake runs");
    assert!(
        out.status.success(),
        "cclake {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of `cclake query --format json`.
pub fn query(lake: &str, sql: &str) -> Vec<Value> {
    query_with_env(lake, sql, &[])
}

pub fn query_with_env(lake: &str, sql: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let out = cclake_with_env(&["query", "--lake", lake, "--format", "json", sql], env);
    serde_json::from_slice(&out.stdout).expect("query prints JSON")
}

pub fn count(lake: &str, sql: &str) -> i64 {
    query(lake, sql)[0]["n"].as_i64().expect("a column n")
}

/// When each fixture export was delivered (its last-modified time), as in testdata/README.md.
pub const FIXTURE_DELIVERIES: &[(&str, &str)] = &[
    ("2024-03-04/calls-0900.jsonl", "2024-03-04T10:00:00Z"),
    ("2024-03-04/calls-1200.json", "2024-03-04T13:00:00Z"),
    ("broken/mixed.jsonl", "2024-03-04T12:00:00Z"),
    ("2024-03-05/redelivery.jsonl.gz", "2024-03-05T18:00:00Z"),
    ("2024-03-05/really-gzip.json", "2024-03-05T18:00:00Z"),
    ("broken/truncated.jsonl.gz", "2024-03-05T18:00:00Z"),
    ("late/first-day.jsonl", "2024-03-06T09:00:00Z"),
    ("corrections/2024-03-06.jsonl", "2024-03-06T12:00:00Z"),
];

/// When each Genesys-shaped fixture was delivered, as in testdata/README.md.
pub const GENESYS_DELIVERIES: &[(&str, &str)] = &[
    ("details/2024-03-04/async-job-0905.json", "2024-03-04T09:05:00Z"),
    ("details/2024-03-04/query-1300.json", "2024-03-04T13:00:00Z"),
    ("details/2024-03-05/conversations.jsonl.gz", "2024-03-05T06:00:00Z"),
    ("dimensions/queues-2024-03-04.json", "2024-03-04T08:00:00Z"),
    ("dimensions/queues-2024-03-05.json", "2024-03-05T08:00:00Z"),
    ("dimensions/users.json", "2024-03-04T08:00:00Z"),
    ("dimensions/wrapupcodes.json", "2024-03-04T08:00:00Z"),
    ("eventbridge/events-0910.jsonl", "2024-03-04T09:10:00Z"),
    ("eventbridge/events-1400.jsonl", "2024-03-04T14:00:00Z"),
];

/// Copies the Genesys-shaped fixtures (`testdata/genesys`) named in `only` (all when empty)
/// to `dest` with their delivery times.
pub fn copy_genesys_fixtures(dest: &Path, only: &[&str]) {
    for (name, delivered) in GENESYS_DELIVERIES {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let to = dest.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join("testdata/genesys").join(name), &to).unwrap();
        set_delivered(&to, delivered);
    }
    assert_eq!(walk(&repo().join("testdata/genesys")).len(), GENESYS_DELIVERIES.len(), "every fixture needs a delivery time");
}

/// Copies `testdata/exports` to `dest` and sets each file's delivery time.
pub fn copy_fixtures(dest: &Path) {
    for (name, delivered) in FIXTURE_DELIVERIES {
        let to = dest.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo().join("testdata/exports").join(name), &to).unwrap();
        set_delivered(&to, delivered);
    }
    let listed = walk(&repo().join("testdata/exports")).len();
    assert_eq!(listed, FIXTURE_DELIVERIES.len(), "every fixture needs a delivery time");
}

/// A lake made from the fixtures by the real CLI: (its temp dir, the exports, the lake).
pub fn ingested_fixtures() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    copy_fixtures(&exports);
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    cclake(&["ingest", "--source", exports.to_str().unwrap(), "--lake", &lake]);
    (dir, exports.to_str().unwrap().to_string(), lake)
}

pub fn set_delivered(path: &Path, rfc3339: &str) {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(t.timestamp() as u64)).unwrap();
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Generates exports with the real CLI and returns the manifest.
pub fn generate(out: &Path, interactions: usize, days: u32, faults: bool) -> Value {
    let out_s = out.to_str().unwrap();
    let (n, d) = (interactions.to_string(), days.to_string());
    let mut args = vec!["generate", "--out", out_s, "--interactions", &n, "--days", &d, "--seed", "7"];
    if faults {
        args.push("--faults");
    }
    cclake(&args);
    serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap()
}

/// The Python interpreter of the venv that `scripts/test.sh` makes (deltalake, duckdb,
/// pyarrow, moto).
pub fn python() -> PathBuf {
    let python = std::env::var_os("CCLAKE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run the tests with scripts/test.sh, which makes the venv",
        python.display()
    );
    python
}

/// The interpreter of the second venv `scripts/test.sh` makes (flightsql-dbapi, which needs
/// SQLAlchemy 1.x), beside the main one.
pub fn python_sqlalchemy1() -> PathBuf {
    let main = python();
    let python = main
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|root| root.join(".venv-sqlalchemy1/bin/python"))
        .unwrap_or_default();
    assert!(python.exists(), "{} is missing: run the tests with scripts/test.sh, which makes the venv", python.display());
    python
}

/// Waits for `condition` up to `deadline`, checking every few milliseconds.
pub fn wait_for(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The peak resident memory of process `pid` so far (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

/// FNV-1a of a text: a fixed shuffle order, independent of the code under test.
pub fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Kills `child` with SIGKILL and asserts the kill hit it running (it exited by the signal,
/// not on its own just before).
pub fn kill_9_running(child: &mut std::process::Child, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{what}: the process had ended ({status:?}) before the kill");
}

/// The text of every export object under `exports` (gzip decompressed; a truncated gzip
/// gives what it yields; `_` files skipped), read without cclake.
pub fn export_texts(exports: &Path) -> Vec<(PathBuf, String)> {
    use std::io::Read;
    let mut texts = Vec::new();
    let mut folders = vec![exports.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.file_name().unwrap().to_string_lossy().starts_with('_') {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let mut text = String::new();
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let _ = flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text);
            } else {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            texts.push((path, text));
        }
    }
    texts
}
