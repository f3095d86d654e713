//! cclake — the read model (CQRS) for contact-center exports.
//!
//! Contact-center platforms such as Genesys Cloud export every interaction as raw JSON into
//! a bucket. cclake turns those exports into Delta Lake tables and answers SQL over them,
//! without touching the live platform and without a separate warehouse.
//!
//! # Layout
//!
//! ```text
//!  source objects (file://, s3://, gs://, az://, memory://)
//!        │  storage   — turns a path or URL into an object store plus a prefix
//!        ▼
//!  ingest/source     — lists export objects, un-gzips, splits NDJSON / arrays into records
//!  ingest/record     — parses one flat event, coerces types, says why a record is unusable
//!  ingest/mask       — masks phone numbers, URLs and IP addresses (PII never lands)
//!        │
//!        ▼
//!  lake/tables       — the four Delta tables and their Arrow schemas
//!  lake/upsert       — idempotent upsert by event_id: latest delivery wins
//!  lake/compact      — compaction of small micro-batch files into sorted large files
//!  lake/mod (Lake)   — one ingest pass: skip done objects, commit batches, log sources
//!        │
//!        ▼
//!  query             — read-only DataFusion sessions over the lake's tables
//!  query/read_model  — per-role sessions on fresh snapshots, views from sql/views/*.sql
//!        │
//!        ▼
//!  server            — Arrow Flight SQL (tonic): handshake, tokens, roles, TLS, limits
//!  server/access     — users (argon2) and roles from the TOML config; bearer tokens
//! ```
//!
//! `generate` writes synthetic exports (with optional faults) for the demo, tests and benches.
//! The binary (`src/main.rs`) only parses the command line and calls [`Lake`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), cclake::LakeError> {
//! let lake = cclake::Lake::open_or_create("lake/").await?;   // Lake::open: an existing lake only
//! let report = lake.ingest("exports/").await?;
//! println!("{report}");
//! let batches = lake.sql("SELECT queue_name, count(*) FROM fact_interactions GROUP BY 1").await?;
//! # Ok(()) }
//! ```
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod generate;
pub mod ingest;
pub mod lake;
pub mod query;
pub mod server;
pub mod storage;

pub use ingest::IngestReport;
pub use lake::{Lake, LakeError, LakeOptions};
pub use query::{OutputFormat, QueryError};
