//! The KPI suite (benches/kpi/*.sql) in-process: DataFusion over the lake through the same
//! read model the server uses, without Flight. Compared with `benches/kpi_vs_duckdb.sh`, it
//! shows what the Flight SQL hop adds.
//!
//! `CCLAKE_BENCH_LAKE=/path/to/lake cargo bench --bench kpi`; without it, a lake of 20k
//! generated interactions is made first. `CCLAKE_BENCH_DECODED_MB=0` reads every file from
//! Parquet (default: 1024, a server's default `decoded_cache_mb`).

use std::sync::Arc;

use cclake::generate::{generate, GenerateOptions};
use cclake::query::read_model::{load_views, ReadModel};
use cclake::access::Role;
use criterion::{criterion_group, criterion_main, Criterion};

fn kpi(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let scratch = tempfile::tempdir().expect("temp dir");
    let lake_path = match std::env::var("CCLAKE_BENCH_LAKE") {
        Ok(path) => path,
        Err(_) => {
            let exports = scratch.path().join("exports");
            let options = GenerateOptions { interactions: 20_000, days: 7, ..Default::default() };
            generate(&exports, &options).expect("generate");
            let lake = scratch.path().join("lake").to_string_lossy().into_owned();
            runtime.block_on(async {
                let l = cclake::Lake::open_or_create(&lake).await.expect("lake");
                l.ingest(exports.to_str().expect("utf-8")).await.expect("ingest");
            });
            lake
        }
    };
    // As a server keeps them (`decoded_cache_mb`, default 1024); 0 reads every file from Parquet.
    let decoded_mb: usize = std::env::var("CCLAKE_BENCH_DECODED_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let model = runtime.block_on(async {
        let lake = cclake::Lake::open(&lake_path).await.expect("lake");
        let views = load_views(None).expect("views");
        let model = ReadModel::new_with_decoded_cache(lake.catalog().clone(), views, 1 << 31, decoded_mb << 20).await.expect("model");
        // The snapshot's files are decoded in the background: measure once they are.
        model.decoded_settled().await;
        eprintln!("decoded files in memory: {} MB", model.decoded_bytes() >> 20);
        Arc::new(model)
    });
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/kpi"))
        .expect("benches/kpi")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut group = c.benchmark_group("kpi_in_process");
    group.sample_size(15);
    for file in files {
        let sql = std::fs::read_to_string(&file).expect("sql");
        let name = file.file_stem().expect("name").to_string_lossy().into_owned();
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let ctx = model.session(Role::Auditor).await.expect("session");
                    cclake::query::run_sql(&ctx, &sql).await.expect("query")
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, kpi);
criterion_main!(benches);
