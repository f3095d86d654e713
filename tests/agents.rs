//! Agents stay distinct on exports shaped like the seed's example event
//! (`"agent_id": "user:admin@company.com"`): each e-mail-shaped agent id becomes a keyed
//! pseudonym, the same in every pass and in every lake made with the same key, the mapping
//! readable by auditors only; analysts rank agents without reading an address.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use hmac::{KeyInit, Mac};

use crate::flight::{add_user, client, FlightServer};
use crate::support::*;

const KEY: &str = "test-pseudonym-key-0123456789abcdef";
const AGENTS: usize = 12;

/// The seed's example event, with `n`'s agent, spaced as the seed's JSON is.
fn seed_event(n: usize, agent: &str) -> String {
    format!(
        r#"{{"event_id": "evt-{n:06}", "timestamp": "2024-03-05T{:02}:{:02}:00Z", "interaction_id": "{}", "type": "voice", "direction": "inbound", "state": "completed", "duration_seconds": {}, "queue_name": "Billing", "agent_id": "{agent}", "caller_number_masked": "+1555123{:04}", "recording_url": "https://recordings.company.com/r/{n}.wav", "metadata": {{"source_ip": "10.1.{}.{}", "campaign_id": "spring"}}}}"#,
        8 + n % 10,
        n % 60,
        1_234_567_890 + n,
        60 + n % 400,
        n % 10_000,
        n % 250,
        n % 200
    )
}

/// The agent of event `n`: skewed, so that counts differ between agents.
fn agent_of(n: usize) -> usize {
    (n * n + n / 3) % AGENTS
}

fn identity(agent: usize) -> String {
    format!("user:agent{agent:03}@company.com")
}

/// Writes `events` seed-shaped events from `first` on, in three objects (one gzipped), and
/// returns how many events each agent identity has.
fn write_exports(dir: &Path, first: usize, events: usize) -> BTreeMap<String, i64> {
    std::fs::create_dir_all(dir).unwrap();
    let mut counts = BTreeMap::new();
    let mut objects = [String::new(), String::new(), String::new()];
    for n in first..first + events {
        let agent = agent_of(n);
        // One agent also arrives in other case and with spaces: the same agent.
        let written = if agent == 3 && n % 2 == 0 { " USER:Agent003@Company.COM ".to_string() } else { identity(agent) };
        *counts.entry(identity(agent)).or_insert(0) += 1;
        objects[n % 3].push_str(&seed_event(n, &written));
        objects[n % 3].push('\n');
    }
    std::fs::write(dir.join(format!("events-{first}-a.jsonl")), &objects[0]).unwrap();
    std::fs::write(dir.join(format!("events-{first}-b.json")), format!("[{}]", objects[1].trim_end().replace('\n', ", "))).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(objects[2].as_bytes()).unwrap();
    std::fs::write(dir.join(format!("events-{first}-c.jsonl.gz")), gz.finish().unwrap()).unwrap();
    counts
}

/// The pseudonym worked out here with the HMAC crate: HMAC-SHA256 of the identity in lower
/// case under the key, its first 8 bytes in hex after `agent-`.
fn expected_pseudonym(key: &str, identity: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(identity.trim().to_lowercase().as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("agent-{}", tag[..8].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn agent_counts(lake: &str) -> BTreeMap<String, i64> {
    query(lake, "SELECT agent_id, count(*) AS n FROM fact_interactions GROUP BY agent_id")
        .iter()
        .map(|row| (row["agent_id"].as_str().unwrap().to_string(), row["n"].as_i64().unwrap()))
        .collect()
}

fn ingest_with_key(exports: &Path, lake: &str, key: Option<&str>) -> std::process::Output {
    let mut cmd = cclake_command();
    cmd.args(["ingest", "--source", exports.to_str().unwrap(), "--lake", lake]);
    cmd.env_remove("CCLAKE_PSEUDONYM_KEY");
    if let Some(key) = key {
        cmd.env("CCLAKE_PSEUDONYM_KEY", key);
    }
    cmd.output().unwrap()
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_shaped_agents_stay_distinct_stable_and_pseudonymous() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let by_identity = write_exports(&exports, 0, 600);
    assert_eq!(by_identity.len(), AGENTS);
    let expected: BTreeMap<String, i64> = by_identity.iter().map(|(id, n)| (expected_pseudonym(KEY, id), *n)).collect();
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    tokio::task::block_in_place(|| ok(ingest_with_key(&exports, &lake, Some(KEY))));

    // Twelve agents, each with its own events, under the pseudonym worked out above.
    assert_eq!(tokio::task::block_in_place(|| agent_counts(&lake)), expected);

    // A second pass of new exports gives the same agents the same pseudonyms.
    let later = dir.path().join("exports").join("later");
    let more = write_exports(&later, 600, 300);
    tokio::task::block_in_place(|| ok(ingest_with_key(&exports, &lake, Some(KEY))));
    let mut both = expected.clone();
    for (id, n) in &more {
        *both.entry(expected_pseudonym(KEY, id)).or_insert(0) += n;
    }
    assert_eq!(tokio::task::block_in_place(|| agent_counts(&lake)), both);

    // The same key in another lake: the same pseudonyms.
    let other = dir.path().join("other").to_str().unwrap().to_string();
    tokio::task::block_in_place(|| ok(ingest_with_key(&exports, &other, Some(KEY))));
    assert_eq!(tokio::task::block_in_place(|| agent_counts(&other)), both);

    // Another key, or none, on a lake made with this one is refused, naming the variable.
    for key in [Some("another-key-of-more-than-32-characters"), None] {
        let fresh = dir.path().join("exports-fresh");
        write_exports(&fresh, 5_000, 3);
        let refused = tokio::task::block_in_place(|| ingest_with_key(&fresh, &lake, key));
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("CCLAKE_PSEUDONYM_KEY") && stderr.contains("pseudonyms"), "{stderr}");
    }
    // A key too short is refused before anything is read.
    let short = tokio::task::block_in_place(|| ingest_with_key(&exports, &lake, Some("short")));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 32 characters"));

    // Over Flight SQL: analysts rank agents by pseudonym, read no address anywhere, and
    // cannot read the mapping; auditors can.
    let config = dir.path().join("cclake.toml");
    tokio::task::block_in_place(|| {
        add_user(&config, "ana", "analyst", "analyst-pw");
        add_user(&config, "aud", "auditor", "auditor-pw");
    });
    let server = tokio::task::block_in_place(|| FlightServer::start(&lake, &config, &[]));
    let mut analyst = client(server.port).await;
    analyst.handshake("ana", "analyst-pw").await.unwrap();
    let leaderboard = crate::flight::rows(&mut analyst, "SELECT agent_id, sum(handled) AS handled FROM kpi_agent_daily GROUP BY agent_id ORDER BY handled DESC, agent_id").await;
    assert_eq!(leaderboard.len(), AGENTS, "{leaderboard:?}");
    let mut ranked: Vec<(i64, String)> = both.iter().map(|(p, n)| (-n, p.clone())).collect();
    ranked.sort();
    let want: Vec<Vec<String>> = ranked.iter().map(|(n, p)| vec![p.clone(), (-n).to_string()]).collect();
    assert_eq!(leaderboard, want);
    for table in ["fact_interactions", "interactions", "dim_agents", "kpi_agent_daily", "quarantine"] {
        let text = format!("{:?}", crate::flight::rows(&mut analyst, &format!("SELECT * FROM {table}")).await);
        assert!(!text.contains("company.com") && !text.to_lowercase().contains("agent0"), "{table}: {text}");
    }
    let refused = analyst.execute("SELECT * FROM agent_identities".into(), None).await.unwrap_err();
    assert!(refused.to_string().contains("agent_identities"), "{refused}");
    let mut auditor = client(server.port).await;
    auditor.handshake("aud", "auditor-pw").await.unwrap();
    let mapping = crate::flight::rows(&mut auditor, "SELECT agent_id, lower(trim(identity)) FROM agent_identities ORDER BY agent_id").await;
    let mut want: Vec<Vec<String>> = by_identity.keys().map(|id| vec![expected_pseudonym(KEY, id), id.clone()]).collect();
    want.sort();
    assert_eq!(mapping, want);
}

#[test]
fn a_lake_without_a_key_makes_its_own_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    let by_identity = write_exports(&exports, 0, 120);
    let lake = dir.path().join("lake").to_str().unwrap().to_string();
    ok(ingest_with_key(&exports, &lake, None));
    let first = agent_counts(&lake);
    // Distinct agents, with their own counts, and pseudonyms of no key given here.
    let mut counts: Vec<i64> = first.values().copied().collect();
    let mut want: Vec<i64> = by_identity.values().copied().collect();
    counts.sort();
    want.sort();
    assert_eq!(counts, want);
    assert!(first.keys().all(|p| p.starts_with("agent-") && p.len() == 22), "{first:?}");
    assert!(first.keys().all(|p| !by_identity.keys().any(|id| expected_pseudonym(KEY, id) == *p)));
    // The next pass keeps them: the key is the lake's.
    write_exports(&exports.join("later"), 120, 60);
    ok(ingest_with_key(&exports, &lake, None));
    let second = agent_counts(&lake);
    assert!(first.keys().all(|p| second[p] >= first[p]), "{first:?} then {second:?}");
    assert_eq!(second.len(), AGENTS);
    assert_eq!(second.values().sum::<i64>(), 180);
}
