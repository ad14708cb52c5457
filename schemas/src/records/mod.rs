//! Rust types of every record in `schemas/avro/`, one module per group of topics.
//!
//! Field names are the Avro field names and every type maps one to one onto its
//! schema; `tests` in [`crate::codec`] fail when a type and its `.avsc` drift apart.

pub mod chat;
pub mod dead_letter;
pub mod orders;
pub mod organization;
pub mod reports;
pub mod state;
pub mod widget;

pub use chat::*;
pub use dead_letter::*;
pub use orders::*;
pub use organization::*;
pub use reports::*;
pub use state::*;
pub use widget::*;

/// A top-level record: the value type of a topic or a state store's changelog.
pub trait Record: serde::Serialize + serde::de::DeserializeOwned + 'static {
    /// The record's full Avro name; the codec finds its schema by it.
    const NAME: &'static str;
}

/// Declares the full Avro name of top-level records.
macro_rules! records {
    ($($ty:ident),* $(,)?) => {
        $(impl crate::records::Record for $ty {
            const NAME: &'static str = concat!("sales.pipeline.", stringify!($ty));
        })*
    };
}
pub(crate) use records;
