//! Integration tests, one binary (each extra test binary would link DataFusion again).
//! They drive the real `cclake` binary, the Rust API, real Delta readers (Python
//! `deltalake`, DuckDB) and a real S3-speaking server, all on loopback.

mod agents;
mod api;
mod cli;
mod compliance;
mod fixtures;
mod flight;
mod generated;
mod genesys;
mod hardening;
mod integrity;
mod interop;
mod s3;
mod support;
