//! `sales.dead-letter`.

use serde::{Deserialize, Serialize};

use crate::values::Timestamp;

/// A record a stage could not decode or process, with its reason and origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct DeadLetter {
    pub reason: String,
    pub stage: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    // As Avro bytes; plain serde would write a list of integers.
    #[serde(with = "serde_bytes")]
    pub source_key: Option<Vec<u8>>,
    // As Avro bytes; plain serde would write a list of integers.
    #[serde(with = "serde_bytes")]
    pub source_value: Option<Vec<u8>>,
    pub failed_at: Timestamp,
}
