//! The product's data contracts, the names and shapes other systems see.
//!
//! - `avro/*.avsc` (beside this crate's sources): one Avro schema per record type, the
//!   single source of truth; `avro/history/` keeps every earlier version.
//! - [`records`]: the Rust type of every record, field for field.
//! - [`values`]: exact decimals and `timestamp-micros` instants.
//! - [`codec`]: Avro single-object encoding, decoding by fingerprint with schema
//!   resolution, and decoding any record to JSON.
//! - [`fingerprint`]: Parsing Canonical Form and CRC-64-AVRO, by the specification.
//! - [`samples`]: a fully populated instance of every record (fixtures, benchmarks).
//! - [`topics`]: every topic, its key format, cleanup policy and retention, and how a
//!   deployment's topic prefix applies. Every binary and `salesctl` take topic names
//!   from here and nowhere else.
//! - [`validation`]: the rules every widget event passes, shared by ingest and the
//!   enricher.
//! - [`keys`]: the record key formats (`org:customer`, `org:order_id`, ...).

pub mod codec;
pub mod fingerprint;
pub mod keys;
pub mod records;
pub mod samples;
pub mod topics;
pub mod validation;
pub mod values;

pub use codec::{CodecError, decode, encode};
pub use records::Record;
