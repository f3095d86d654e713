//! Write-side throughput on the project's own generated exports.
//!
//! - `parse_validate_mask`: bytes of export objects → validated, masked events (one core).
//! - `ingest_memory_lake`: a whole ingest pass into a fresh in-memory lake (parse, dedup,
//!   Arrow, Parquet, Delta commits).
//!
//! `benches/ingest_vs_duckdb.sh` compares the whole CLI with DuckDB on the data set.

use std::hint::black_box;

use cclake::generate::{generate, GenerateOptions};
use cclake::ingest::{parse_object, SourceObject};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn exports() -> (tempfile::TempDir, Vec<(SourceObject, Vec<u8>)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = GenerateOptions { interactions: 20_000, days: 2, ..Default::default() };
    generate(dir.path(), &options).expect("generate");
    let mut objects = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_')) {
                let bytes = std::fs::read(&path).expect("read");
                let object = SourceObject {
                    path: path.to_string_lossy().as_ref().into(),
                    url: format!("file://{}", path.display()),
                    size: bytes.len() as u64,
                    e_tag: None,
                    last_modified: 0,
                };
                objects.push((object, bytes));
            }
        }
    }
    (dir, objects)
}

fn parse(c: &mut Criterion) {
    let (_dir, objects) = exports();
    let bytes: u64 = objects.iter().map(|(o, _)| o.size).sum();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.bench_function("parse_validate_mask", |b| {
        b.iter(|| {
            for (object, bytes) in &objects {
                black_box(parse_object(object.clone(), bytes, &cclake::ingest::ParseOptions::default()));
            }
        })
    });
    group.finish();
}

fn ingest(c: &mut Criterion) {
    let (dir, objects) = exports();
    let bytes: u64 = objects.iter().map(|(o, _)| o.size).sum();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    let mut run = 0;
    group.bench_function("ingest_memory_lake", |b| {
        b.iter(|| {
            run += 1;
            runtime.block_on(async {
                let lake = cclake::Lake::open_or_create(&format!("memory://bench-{run}/lake")).await.expect("lake");
                black_box(lake.ingest(dir.path().to_str().expect("utf-8 path")).await.expect("ingest"));
            })
        })
    });
    group.finish();
}

criterion_group!(benches, parse, ingest);
criterion_main!(benches);
