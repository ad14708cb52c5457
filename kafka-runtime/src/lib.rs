//! The Kafka plumbing every binary of the pipeline shares, so that no stage repeats it.
//!
//! - [`config`]: the command-line flags (with environment variables) common to every
//!   binary, and the librdkafka client configuration built from them.
//! - [`telemetry`]: `tracing` set up once, as text or JSON lines.
//! - [`shutdown`]: one shutdown signal (SIGINT, SIGTERM) spread to every task.
//! - [`admin`]: the admin listener: `/healthz`, `/readyz` (named readiness checks) and
//!   `/metrics` (Prometheus text).
//! - [`broker`]: a background probe that keeps the "broker reachable" check current.
//! - [`follow`]: a topic read as a table, from its beginning and then live.
//! - [`topic_admin`]: creates the pipeline's topics and verifies existing ones.
//! - [`store`]: state stores (key-value, windowed) backed by changelog topics.
//! - [`task`]: what a stage plugs into the runtime (application, tasks, context).
//! - [`value_cache`]: a store's values kept decoded and written behind, once a commit.
//! - [`watermark`]: how far event time has provably advanced, carried across repartitions.
//! - [`worker`]: the exactly-once consume-transform-produce loop.
//! - [`driver`]: one task run without a broker, for unit tests of a stage's rules.
//! - [`stage`]: puts the above together for a stage binary.
//! - [`error`]: this crate's error type.

pub mod admin;
pub mod broker;
pub mod config;
pub mod driver;
pub mod error;
pub mod follow;
pub mod shutdown;
pub mod stage;
pub mod store;
pub mod task;
pub mod telemetry;
pub mod topic_admin;
pub mod value_cache;
pub mod watermark;
pub mod worker;

pub use error::Error;

/// mimalloc serves every allocation of a binary linking the runtime, librdkafka's too
/// (its `override` feature takes over `malloc` and `free`): a record's buffers are
/// allocated by a librdkafka thread and freed by the one reading it, and glibc's
/// allocator makes such frees contend for the allocating thread's arena lock. Its
/// `no_thp` feature keeps it from asking for transparent huge pages: zeroing them on
/// first touch doubled the time of a fresh process's first large restore.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
