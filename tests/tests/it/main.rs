//! Integration tests: one test binary, one shared broker, a private topic prefix per test.

mod api;
mod attributor;
mod backlog;
mod browser;
mod chaos;
mod cli;
mod cluster;
mod compose;
mod console;
mod enricher;
mod identity;
mod ingest;
mod ingest_connections;
mod ingest_shapes;
mod pipeline;
mod reporter;
mod runtime;
mod stages;
mod tail;
mod topics;
mod transactions;
mod widget;
mod worker_id;
