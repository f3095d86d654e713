//! The Rust API as an embedding developer uses it: `Lake::open`, `ingest`, `query::sql`, on the
//! in-memory store and on local disk; and proof that a micro-batch upsert reads only the
//! partitions it touches.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use crate::support::*;

async fn scalar(lake: &cclake::Lake, sql: &str) -> i64 {
    let batches = cclake::query::sql(lake.catalog(), sql).await.unwrap();
    let column = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    column.as_primitive::<Int64Type>().value(0)
}

#[tokio::test]
async fn the_embedding_api_serves_the_kpi_views_and_view_overrides() {
    let dir = tempfile::tempdir().unwrap();
    copy_genesys_fixtures(dir.path(), &[]);
    let lake = cclake::Lake::open_or_create("memory://api-views/lake").await.unwrap();
    lake.ingest(dir.path().to_str().unwrap()).await.unwrap();
    // Worked out by hand in sql/genesys.slt: Billing on 4 March offered A, B and D, answered
    // A and D, B abandoned.
    let billing = "FROM queue_daily_metrics WHERE queue_name = 'Billing' AND date = DATE '2024-03-04'";
    for (column, expected) in [("n_offered", 3), ("n_answered", 2), ("n_abandoned", 1)] {
        assert_eq!(scalar(&lake, &format!("SELECT {column} {billing}")).await, expected, "{column}");
    }
    // The session holds the same views, and others in their place when asked.
    let ctx = cclake::query::catalog_session(lake.catalog()).await.unwrap();
    assert!(cclake::query::run_sql(&ctx, &format!("SELECT n_offered {billing}")).await.is_ok());
    // An override folder as `--views` takes: the shipped views and one of the user's own.
    let views = tempfile::tempdir().unwrap();
    for file in walk(&repo().join("sql/views")) {
        std::fs::copy(&file, views.path().join(file.file_name().unwrap())).unwrap();
    }
    std::fs::write(views.path().join("billing_offered.sql"), format!("SELECT n_offered {billing}")).unwrap();
    let overrides = cclake::query::read_model::load_views(Some(views.path())).unwrap();
    let ctx = cclake::query::catalog_session_with_views(lake.catalog(), &overrides).await.unwrap();
    let offered = cclake::query::run_sql(&ctx, "SELECT * FROM billing_offered").await.unwrap();
    assert_eq!(sorted_lines(&offered), vec!["3".to_string()]);
    let bare = cclake::query::catalog_session_with_views(lake.catalog(), &[]).await.unwrap();
    let missing = cclake::query::run_sql(&bare, "SELECT * FROM kpi_queue_daily").await.unwrap_err();
    assert!(missing.to_string().contains("kpi_queue_daily"), "{missing}");
}

#[tokio::test]
async fn embedded_api_on_the_memory_store() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(dir.path());
    let lake = cclake::Lake::open_or_create("memory://api-test/lake").await.unwrap();
    let report = lake.ingest(dir.path().to_str().unwrap()).await.unwrap();
    // 20 records in readable objects (7 in the quarantine table = 6 records + 1 unreadable object).
    assert_eq!((report.records_read, report.records_upserted, report.records_quarantined), (20, 11, 6));
    assert_eq!(report.objects_unreadable, 1);
    assert_eq!(scalar(&lake, "SELECT count(*) FROM fact_interactions").await, 11);
    // Fully qualified names work too, and the catalog is visible in information_schema.
    assert_eq!(scalar(&lake, "SELECT count(*) FROM cclake.cc_analytics.quarantine").await, 7);
    assert_eq!(
        scalar(&lake, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'cc_analytics' AND table_type = 'BASE TABLE'").await,
        cclake::model::LakeTable::ALL.len() as i64
    );
    // Opening the same memory lake again sees the data; a second pass reads nothing.
    let again = cclake::Lake::open("memory://api-test/lake").await.unwrap();
    let report = again.ingest(dir.path().to_str().unwrap()).await.unwrap();
    assert_eq!((report.objects_skipped, report.objects_read), (8, 0));
    // Exports can live in the memory store as well.
    let store = cclake::storage::memory_store("api-test");
    let body = std::fs::read(repo().join("testdata/exports/late/first-day.jsonl")).unwrap();
    object_store::ObjectStoreExt::put(store.as_ref(), &"exports/late.jsonl".into(), body.into()).await.unwrap();
    let report = again.ingest("memory://api-test/exports").await.unwrap();
    assert_eq!((report.objects_read, report.records_upserted), (1, 1));
    assert_eq!(scalar(&again, "SELECT count(*) FROM fact_interactions").await, 11);
}

#[tokio::test]
async fn a_micro_batch_reads_only_the_partitions_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    generate(&exports, 1500, 5, false);
    let lake_dir = dir.path().join("lake");
    let lake = cclake::Lake::open_or_create(lake_dir.to_str().unwrap()).await.unwrap();
    lake.ingest(exports.to_str().unwrap()).await.unwrap();
    let partitions = scalar(&lake, "SELECT count(DISTINCT (event_date, queue_name)) FROM fact_interactions").await;
    assert!(partitions > 40, "{partitions} partitions");

    // A micro-batch: one redelivered event (corrected) and one new event.
    let first = "SELECT event_id, interaction_id, CAST(event_timestamp AS VARCHAR), queue_name FROM fact_interactions ORDER BY event_id LIMIT 1";
    let batches = cclake::query::sql(lake.catalog(), first).await.unwrap();
    let b = &batches[0];
    let text = |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8).unwrap().as_string::<i32>().value(0).to_string();
    let (event_id, interaction_id, ts, queue) = (text(0), text(1), text(2), text(3));
    let micro = dir.path().join("micro");
    std::fs::create_dir_all(&micro).unwrap();
    let file = micro.join("batch.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            serde_json::json!({"event_id": event_id, "interaction_id": interaction_id, "timestamp": ts, "queue_name": queue, "state": "completed", "duration_seconds": 4242}),
            serde_json::json!({"event_id": "brand-new", "interaction_id": "x", "timestamp": ts, "queue_name": queue}),
        ),
    )
    .unwrap();
    set_delivered(&file, "2030-01-01T00:00:00Z");
    let report = lake.ingest(micro.to_str().unwrap()).await.unwrap();
    assert_eq!(report.records_upserted, 2);
    assert!(
        report.files_scanned <= 2 && report.files_rewritten == 1,
        "only the touched partition is read: {report:?}"
    );
    assert_eq!(scalar(&lake, &format!("SELECT duration_seconds FROM fact_interactions WHERE event_id = '{event_id}'")).await, 4242);
    assert_eq!(scalar(&lake, "SELECT count(*) FROM fact_interactions WHERE event_id = 'brand-new'").await, 1);
}

/// Every row of `table` as sorted lines of text, read by delta-rs's own table provider.
async fn rows_read_by_delta_rs(lake: &cclake::Lake, table: cclake::model::LakeTable) -> Vec<String> {
    let delta = lake.catalog().table(table).await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    delta.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", delta.table_provider().await.unwrap()).unwrap();
    let batches = ctx.sql("SELECT * FROM t").await.unwrap().collect().await.unwrap();
    sorted_lines(&batches)
}

/// A session of a server's read model once every file of the lake is decoded in memory.
async fn session_from_decoded_files(lake: &cclake::Lake) -> datafusion::prelude::SessionContext {
    let views = cclake::query::read_model::load_views(None).unwrap();
    let model = cclake::query::read_model::ReadModel::new_with_decoded_cache(lake.catalog().clone(), views, 1 << 30, 1 << 30)
        .await
        .unwrap();
    let _ = model.session(cclake::access::Role::Auditor).await.unwrap();
    model.decoded_settled().await;
    assert!(model.decoded_bytes() > 0, "files decoded");
    model.session(cclake::access::Role::Auditor).await.unwrap()
}

fn sorted_lines(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    let mut lines = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| if c.is_null(row) { "NULL".to_string() } else { c.as_string::<i32>().value(row).to_string() })
                .collect();
            lines.push(cells.join("|"));
        }
    }
    lines.sort();
    lines
}

#[tokio::test]
async fn the_read_model_reads_every_table_as_delta_rs_does() {
    // The read side scans a snapshot's files itself (query/snapshot_table.rs); delta-rs's
    // provider, a reader it does not use, is the reference: same rows, same columns in the
    // same order, for every table, partition values with `/`, `=`, spaces and accents
    // included, and partition filters prune to exactly the matching rows.
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(&dir.path().join("exports"));
    copy_genesys_fixtures(&dir.path().join("exports/genesys"), &[]);
    // An agent id that is an e-mail address, so that agent_identities exists too.
    std::fs::write(
        dir.path().join("exports/agents.jsonl"),
        r#"{"event_id": "e-agent", "interaction_id": "i-agent", "timestamp": "2024-03-04T09:00:00Z", "agent_id": "user:ann@company.com"}"#,
    )
    .unwrap();
    let lake = cclake::Lake::open_or_create(dir.path().join("lake").to_str().unwrap()).await.unwrap();
    lake.ingest(dir.path().join("exports").to_str().unwrap()).await.unwrap();
    // One access log entry, as a server records it, so that access_log has a row.
    let (log, appending) = cclake::server::access_log::AccessLog::start(lake.catalog().clone());
    let principal = cclake::access::Principal { user: "ana".into(), role: cclake::access::Role::Analyst };
    let mut entry = log.begin(&principal, "SELECT 'x = 1' AS x", vec!["fact_interactions".into()]);
    entry.returned(1, 300);
    entry.ended(cclake::server::access_log::Outcome::Ok);
    drop((entry, log));
    appending.await.unwrap();
    // A server's read model serves the same rows from its decoded files once they are in
    // memory; the CLI's reads every file from Parquet.
    let from_memory = session_from_decoded_files(&lake).await;
    for table in cclake::model::LakeTable::ALL {
        let reference = rows_read_by_delta_rs(&lake, table).await;
        let ours = cclake::query::sql(lake.catalog(), &format!("SELECT * FROM {}", table.name())).await.unwrap();
        assert_eq!(sorted_lines(&ours), reference, "{}", table.name());
        let names: Vec<String> = ours[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        let expected: Vec<String> = table.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, expected, "{}: columns in the table's order", table.name());
        let sql = format!("SELECT * FROM {}", table.name());
        let cached = cclake::query::run_sql(&from_memory, &sql).await.unwrap();
        assert_eq!(sorted_lines(&cached), reference, "{} from decoded files", table.name());
    }
    let plan = cclake::query::run_sql(&from_memory, "EXPLAIN SELECT * FROM fact_interactions").await.unwrap();
    let plan = sorted_lines(&plan).join("\n");
    // Memory batches (DataFusion's MemorySourceConfig), not a Parquet scan.
    assert!(plan.contains("DataSourceExec: partitions=") && plan.contains("partition_sizes=["), "{plan}");
    assert!(!plan.contains("file_type=parquet") && !plan.contains(".parquet"), "every file from memory: {plan}");
    // A filter on a partition column and one on a data column, from memory.
    let sql = "SELECT event_id FROM fact_interactions WHERE queue_name = 'Billing' AND state IS NOT NULL";
    let expected = sorted_lines(&cclake::query::sql(lake.catalog(), sql).await.unwrap());
    assert!(!expected.is_empty());
    assert_eq!(sorted_lines(&cclake::query::run_sql(&from_memory, sql).await.unwrap()), expected);
    let queues = ["Sales / Renewals", "Support=Tier 2 & Co", "Atención al Cliente"];
    for queue in queues {
        let sql = format!("SELECT event_id FROM fact_interactions WHERE queue_name = '{queue}' ORDER BY 1");
        let ours = sorted_lines(&cclake::query::sql(lake.catalog(), &sql).await.unwrap());
        let all = cclake::query::sql(lake.catalog(), "SELECT event_id, queue_name FROM fact_interactions").await.unwrap();
        let mut expected: Vec<String> = sorted_lines(&all)
            .into_iter()
            .filter_map(|line| line.split_once('|').filter(|(_, q)| *q == queue).map(|(id, _)| id.to_string()))
            .collect();
        expected.sort();
        assert!(!expected.is_empty(), "{queue} is in the fixtures");
        assert_eq!(ours, expected, "{queue}");
    }
}

#[tokio::test]
async fn aggregates_by_queue_run_in_one_stage_and_count_as_by_hand() {
    // The scan puts each queue's files in one partition, and a query grouped by queue is
    // aggregated in one stage over them (query/key_grouped.rs). The answers are counted here
    // from the plain rows; a join of such an aggregate with rows partitioned by hash must
    // still pair every queue with itself.
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(&dir.path().join("exports"));
    let lake = cclake::Lake::open_or_create(dir.path().join("lake").to_str().unwrap()).await.unwrap();
    lake.ingest(dir.path().join("exports").to_str().unwrap()).await.unwrap();
    let from_memory = session_from_decoded_files(&lake).await;

    let rows = cclake::query::sql(lake.catalog(), "SELECT queue_name, interaction_id, state FROM fact_interactions")
        .await
        .unwrap();
    let mut by_queue: std::collections::BTreeMap<String, (usize, usize, std::collections::HashSet<String>)> =
        Default::default();
    for line in sorted_lines(&rows) {
        let cells: Vec<&str> = line.split('|').collect();
        let entry = by_queue.entry(cells[0].to_string()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(cells[2] == "abandoned");
        if cells[1] != "NULL" {
            entry.2.insert(cells[1].to_string());
        }
    }
    assert!(by_queue.len() > 2, "several queues in the fixtures: {by_queue:?}");
    assert!(by_queue.values().any(|(_, abandoned, _)| *abandoned > 0));

    let abandon = "SELECT queue_name, count(*) FILTER (WHERE state = 'abandoned'), count(DISTINCT interaction_id) \
                   FROM fact_interactions GROUP BY queue_name";
    let expected: Vec<String> = by_queue.iter().map(|(q, (_, a, ids))| format!("{q}|{a}|{}", ids.len())).collect();
    let mut expected = expected;
    expected.sort();
    let squared = "SELECT f.queue_name, sum(a.n) FROM \
                   (SELECT queue_name, count(*) AS n FROM fact_interactions GROUP BY queue_name) a \
                   JOIN fact_interactions f ON f.queue_name = a.queue_name GROUP BY f.queue_name";
    let mut expected_squared: Vec<String> = by_queue.iter().map(|(q, (n, _, _))| format!("{q}|{}", n * n)).collect();
    expected_squared.sort();
    let from_parquet = cclake::query::catalog_session(lake.catalog()).await.unwrap();
    for (how, session) in [("Parquet", &from_parquet), ("decoded files", &from_memory)] {
        let ours = cclake::query::run_sql(session, abandon).await.unwrap();
        assert_eq!(sorted_lines(&ours), expected, "{how}");
        let ours = cclake::query::run_sql(session, squared).await.unwrap();
        assert_eq!(sorted_lines(&ours), expected_squared, "{how}");
        // Planned with four target partitions whatever this machine's cores: the plan a
        // multi-core server makes, asserted on every machine.
        let mut state = session.state();
        state.config_mut().options_mut().execution.target_partitions = 4;
        let four = datafusion::prelude::SessionContext::new_with_state(state);
        let plan = cclake::query::run_sql(&four, &format!("EXPLAIN {abandon}")).await.unwrap();
        let plan = sorted_lines(&plan).join("\n");
        assert!(plan.contains("KeyGroupedExec: key=queue_name"), "{how}: {plan}");
        assert!(plan.contains("mode=SinglePartitioned"), "{how}: one stage: {plan}");
        assert!(!plan.contains("RepartitionExec"), "{how}: no repartition: {plan}");
        assert_eq!(sorted_lines(&cclake::query::run_sql(&four, abandon).await.unwrap()), expected, "{how}, four partitions");
    }
}

#[tokio::test]
async fn a_cache_smaller_than_the_lake_keeps_the_columns_queries_read() {
    // A server's decoded cache (query/decoded.rs) that cannot hold every column of the lake
    // fills up front with whole files; a scan that finds its columns missing reads Parquet
    // and has them decoded, in the room of columns no query read, and the next scan is
    // served from memory with the same rows as the Parquet read. A partition column is
    // kept for one batch's rows: a file of 9,000 rows needs it for more than one batch.
    let dir = tempfile::tempdir().unwrap();
    copy_fixtures(&dir.path().join("exports"));
    let big: String = (0..9000)
        .map(|i| {
            format!(
                "{{\"event_id\": \"big-{i}\", \"interaction_id\": \"i-big-{i}\", \"timestamp\": \"2024-03-09T10:00:00Z\", \"queue_name\": \"Big\", \"state\": \"completed\", \"duration_seconds\": {}}}\n",
                i % 100
            )
        })
        .collect();
    std::fs::write(dir.path().join("exports/big.jsonl"), big).unwrap();
    let lake = cclake::Lake::open_or_create(dir.path().join("lake").to_str().unwrap()).await.unwrap();
    lake.ingest(dir.path().join("exports").to_str().unwrap()).await.unwrap();
    let views = cclake::query::read_model::load_views(None).unwrap();
    let model = |budget| cclake::query::read_model::ReadModel::new_with_decoded_cache(lake.catalog().clone(), views.clone(), 1 << 30, budget);
    let auditor = cclake::access::Role::Auditor;

    // Every column of every file, decoded.
    let whole = model(1 << 30).await.unwrap();
    let _ = whole.session(auditor).await.unwrap();
    whole.decoded_settled().await;
    let whole_bytes = whole.decoded_bytes();

    let budget = whole_bytes / 3;
    let small = model(budget).await.unwrap();
    let _ = small.session(auditor).await.unwrap();
    small.decoded_settled().await;
    assert!(small.decoded_bytes() > 0 && small.decoded_bytes() <= budget, "{} of {budget}", small.decoded_bytes());

    let sql = "SELECT agent_id, count(*) AS n FROM fact_interactions GROUP BY agent_id";
    let expected = sorted_lines(&cclake::query::sql(lake.catalog(), sql).await.unwrap());
    assert!(expected.len() > 1, "{expected:?}");
    let plan = |ctx| async move {
        let plan = cclake::query::run_sql(&ctx, &format!("EXPLAIN {sql}")).await.unwrap();
        sorted_lines(&plan).join("\n")
    };
    let ctx = small.session(auditor).await.unwrap();
    assert!(plan(ctx.clone()).await.contains(".parquet"), "some files are not in memory up front");
    assert_eq!(sorted_lines(&cclake::query::run_sql(&ctx, sql).await.unwrap()), expected);
    small.decoded_settled().await;
    let plan = plan(ctx.clone()).await;
    assert!(!plan.contains(".parquet"), "every file's agent_id from memory: {plan}");
    assert_eq!(sorted_lines(&cclake::query::run_sql(&ctx, sql).await.unwrap()), expected);

    // Partition columns and a data column; the Big queue's day worked out by hand: 9,000
    // events, durations 0..99 ninety times over (90 * 4,950).
    let sql = "SELECT queue_name, event_date, count(*) AS n, sum(duration_seconds) AS d FROM fact_interactions GROUP BY 1, 2";
    let expected = sorted_lines(&cclake::query::sql(lake.catalog(), sql).await.unwrap());
    assert!(expected.contains(&"Big|2024-03-09|9000|445500".to_string()), "{expected:?}");
    assert_eq!(sorted_lines(&cclake::query::run_sql(&ctx, sql).await.unwrap()), expected);
    small.decoded_settled().await;
    let explained = cclake::query::run_sql(&ctx, &format!("EXPLAIN {sql}")).await.unwrap();
    assert!(!sorted_lines(&explained).join("\n").contains(".parquet"), "from memory");
    assert_eq!(sorted_lines(&cclake::query::run_sql(&ctx, sql).await.unwrap()), expected);
    assert!(small.decoded_bytes() <= budget, "{} of {budget}", small.decoded_bytes());
}
