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
//!  ingest/formats    — detects each record's format by content and decodes it into rows or
//!                      a rejection: flat events; Genesys conversation details, EventBridge
//!                      envelopes, queue/user/wrap-up code exports (one `TreeFormat` trait)
//!  ingest/coerce     — shared by every format: JSON scalars as they arrived, coercion of
//!                      numbers and timestamps, masked text fields and ids, Rejection
//!  ingest/mask       — masks phone numbers, e-mail addresses, URLs and IP addresses
//!  ingest/rows       — rows of the model's tables, built column by column, with deliveries
//!        │
//!        ▼
//!  model             — the Delta tables as definitions: schema, partitions, sort columns,
//!                      merge policy, sensitivity; `Delivery`, the "latest delivery wins" order
//!  catalog           — the tables opened by URL, read-only (creates nothing)
//!  lake/tables       — rows of the flat-event tables, quarantine and ingest_log
//!  lake/upsert       — idempotent upsert by key (event_id, a dimension's id): latest wins
//!  lake/merge        — merge policies on any table: latest per key in a batch, replacing
//!                      whole aggregates (every row of a conversation) across their tables
//!  lake/compact      — compaction of small micro-batch files into sorted large files
//!  lake/mod (Lake)   — one ingest pass: skip done objects, commit batches, log sources
//!        │
//!        ▼
//!  query             — read-only DataFusion sessions over the lake's tables (`query::sql`)
//!  query/read_model  — per-role sessions on fresh snapshots, views from sql/views/*.sql
//!        │
//!        ▼
//!  access            — users (argon2), roles and what each may read (from the tables'
//!                      sensitivity), bearer tokens, sign-in throttling; below query and server
//!  server            — Arrow Flight SQL (tonic): handshake, statements, metadata, TLS, limits
//! ```
//!
//! Dependencies only point down this map, never up: `model` (table definitions, the
//! `Delivery` ordering) and `storage` are below everything; `catalog` opens the tables by
//! URL, read-only; `lake` (the writer) uses `ingest`, `catalog`, `model` and `storage`,
//! never `query`; `query` uses `catalog`, `model` and `access`, never the writer; `server`
//! sits on top.
//!
//! `generate` writes synthetic exports for the demo, tests and benches: flat events (with
//! optional faults) and, in `generate::genesys`, Genesys-shaped exports with the KPIs Genesys
//! would report.
//! The binary (`src/main.rs`) only parses the command line and calls [`Lake`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let lake = cclake::Lake::open_or_create("lake/").await?;   // Lake::open: an existing lake only
//! let report = lake.ingest("exports/").await?;
//! println!("{report}");
//! let batches = cclake::query::sql(lake.catalog(), "SELECT queue_name, count(*) FROM fact_interactions GROUP BY 1").await?;
//! // Another process reads the same lake by URL, read-only:
//! let catalog = cclake::catalog::Catalog::open("lake/").await?;
//! let batches = cclake::query::sql(&catalog, "SELECT count(*) FROM quarantine").await?;
//! # Ok(()) }
//! ```
#![warn(unreachable_pub, missing_debug_implementations)]

pub mod access;
pub mod catalog;
pub mod demo;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod model;
pub mod pipeline;
pub mod query;
pub mod server;
pub mod storage;

pub use ingest::IngestReport;
pub use lake::{Lake, LakeError, LakeOptions};
pub use query::{OutputFormat, QueryError};
