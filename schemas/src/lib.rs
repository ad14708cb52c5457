//! The product's data contracts, the names and shapes other systems see.
//!
//! - [`topics`]: every topic of the pipeline, its key format, cleanup policy and
//!   retention, and how a deployment's topic prefix applies to it. Every binary and
//!   `salesctl` take topic names from here and nowhere else.
//! - [`keys`]: the record key formats (`org:customer`, `org:order_id`, ...).

pub mod keys;
pub mod topics;
