//! Runs every `sql/*.slt` file against a lake made from the testdata fixtures, through the
//! same read model the server uses (auditor role, read-only). `--complete` rewrites the
//! expected results in place.

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use cclake::query::read_model::{load_views, ReadModel};
use cclake::query::{run_sql, QueryError};
use cclake::access::Role;
use sqllogictest::{DBOutput, DefaultColumnType};

struct Cclake {
    model: Arc<ReadModel>,
}

#[async_trait]
impl sqllogictest::AsyncDB for Cclake {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let ctx = self.model.session(Role::Auditor).await?;
        let batches = run_sql(&ctx, sql).await?;
        if sql.trim_start().to_uppercase().starts_with("EXPLAIN") {
            return Ok(physical_plan_lines(&batches));
        }
        let Some(first) = batches.first() else {
            return Ok(DBOutput::Rows { types: vec![], rows: vec![] });
        };
        let types = first
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                t if t.is_floating() => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}
}

/// An `EXPLAIN`'s physical plan, one row per operator, indented by `.`, each scan's files
/// given as the sorted partition folders it reads (file names and their grouping depend on
/// the machine's cores and the writer's timing; which partitions are read does not).
fn physical_plan_lines(batches: &[arrow::array::RecordBatch]) -> DBOutput<DefaultColumnType> {
    use arrow::array::AsArray;
    let files = regex::Regex::new(r"file_groups=\{\d+ groups?: \[(.*?)\]\}").expect("regex");
    let folder = regex::Regex::new(r"([^\[\], ]+)/part-[^\[\], ]+").expect("regex");
    let mut rows = Vec::new();
    for batch in batches {
        let (kinds, plans) = (batch.column(0).as_string::<i32>(), batch.column(1).as_string::<i32>());
        for i in (0..batch.num_rows()).filter(|&i| kinds.value(i) == "physical_plan") {
            for line in plans.value(i).lines().filter(|l| !l.trim().is_empty()) {
                let depth = (line.len() - line.trim_start().len()) / 2;
                let line = files.replace(line.trim_start(), |found: &regex::Captures| {
                    let mut folders: Vec<&str> = folder.captures_iter(&found[1]).map(|c| c.get(1).map_or("", |m| m.as_str())).collect();
                    folders.sort();
                    folders.dedup();
                    format!("folders=[{}]", folders.join(" "))
                });
                rows.push(vec![format!("{}{line}", ".".repeat(depth))]);
            }
        }
    }
    DBOutput::Rows { types: vec![DefaultColumnType::Text], rows }
}

#[tokio::main]
async fn main() {
    // Plans as a two-core server makes them, on any machine (sql/plans.slt). Set before any
    // session exists and before other threads read the environment.
    std::env::set_var("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "2");
    let complete = std::env::args().any(|a| a == "--complete");
    let dir = tempfile::tempdir().expect("temp dir");
    let exports = dir.path().join("exports");
    support::copy_fixtures(&exports);
    let lake_path = dir.path().join("lake");
    let lake = cclake::Lake::open_or_create(lake_path.to_str().expect("utf-8")).await.expect("lake");
    lake.ingest(exports.to_str().expect("utf-8")).await.expect("ingest");
    // The Genesys shapes go into the same lake, as a second source.
    let genesys = dir.path().join("genesys");
    support::copy_genesys_fixtures(&genesys, &[]);
    lake.ingest(genesys.to_str().expect("utf-8")).await.expect("ingest genesys");
    let views = load_views(Some(&support::repo().join("sql/views"))).expect("views");
    let model = Arc::new(ReadModel::new(lake.catalog().clone(), views, 1 << 30).await.expect("read model"));

    let mut files: Vec<_> = std::fs::read_dir(support::repo().join("sql"))
        .expect("sql folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    let mut failed = 0;
    for file in &files {
        let model = Arc::clone(&model);
        let mut runner = sqllogictest::Runner::new(move || {
            let model = Arc::clone(&model);
            async move { Ok(Cclake { model }) }
        });
        let result = if complete {
            let col_separator = " ";
            let validator = sqllogictest::default_validator;
            runner
                .update_test_file(file, col_separator, validator, sqllogictest::default_normalizer, sqllogictest::default_column_validator)
                .await
                .map_err(|e| e.to_string())
        } else {
            runner.run_file_async(file).await.map_err(|e| e.display(true).to_string())
        };
        match result {
            Ok(()) => println!("ok     {}", file.display()),
            Err(e) => {
                failed += 1;
                println!("FAILED {}\n{e}", file.display());
            }
        }
    }
    println!("{} passed, {} failed", files.len() - failed, failed);
    if failed > 0 || files.is_empty() {
        std::process::exit(1);
    }
}
