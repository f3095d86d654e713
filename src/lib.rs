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
//!  lake              — the writer: `Lake` (tables, lease, compaction, check) and its write
//!                      primitives, none importing one above it:
//!    lake/commit       one batch to every table by merge policy, `ingest_log` last
//!    lake/merge        latest per key in a batch; whole aggregates replaced across tables
//!    lake/upsert       keyed MERGE (event_id, a dimension's id): latest delivery wins
//!    lake/append       partitioned appends, one Parquet writer per core
//!    lake/stored       what a table holds of a batch's keys (the one stored-delivery lookup)
//!    lake/ingest_log   which object versions the lake holds, batch numbers (`IngestLog`)
//!    lake/tables       the tables as the writer holds them; quarantine and log rows
//!    lake/writing, lake/work, lake/error — Parquet settings, CPU work, typed failures
//!        │
//!        ▼
//!  pipeline          — one ingest pass (`Lake::ingest`): list → fetch and parse ahead
//!                      (pipeline/fetch, pipeline/lookahead) → batch → lake/commit → compact;
//!                      cancellable (`Lake::ingest_until`)
//!        │
//!        ▼
//!  query             — read-only DataFusion sessions over the lake's tables (`query::sql`):
//!                      query/config, query/session (plan and start a statement), query/error
//!                      (refusals by plan type), query/limits (every function bounded),
//!                      query/output (how the CLI prints results)
//!  query/read_model  — per-role sessions on fresh snapshots, views from sql/views/*.sql
//!        │
//!        ▼
//!  access            — users (argon2), roles and what each may read (from the tables'
//!                      sensitivity), bearer tokens, sign-in throttling; below query and server
//!  server            — Arrow Flight SQL (tonic): server/auth checks who calls once for every
//!                      RPC (a tower layer; the principal in the request's extensions),
//!                      server/flight_sql (service state, sign-in, execution, responses),
//!                      statements, metadata, TLS, limits
//!  demo              — the embedded default end to end (`cclake demo`)
//! ```
//!
//! Dependencies only point down this map, never up: `model` (table definitions, the
//! `Delivery` ordering) and `storage` are below everything; `catalog` opens the tables by
//! URL, read-only; `lake` (the writer) uses `ingest`, `catalog`, `model` and `storage`,
//! never `query`; `pipeline` drives `lake`, never the reverse; `query` uses `catalog`,
//! `model` and `access`, never the writer; `server` sits on top. `scripts/module-cycles.py`
//! fails the tests on a cycle between modules at any level, `scripts/code-shape.py` on a file
//! past 600 lines or a function past 100 without a reason.
//!
//! `generate` writes synthetic exports for the demo, tests and benches: flat events (with
//! optional faults) and, in `generate::genesys`, Genesys-shaped exports with the KPIs Genesys
//! would report.
//! The binary (`src/main.rs`, with its command line in `src/cli/`) only parses the command
//! line, maps errors to exit codes and calls the library.
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
