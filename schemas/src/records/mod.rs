//! Rust types of every record in `schemas/avro/`, one module per group of topics.
//!
//! Field names are the Avro field names and every type maps one to one onto its
//! schema; `schemas/tests/contracts.rs` fails when a type and its `.avsc` drift apart.

pub mod chat;
pub mod dead_letter;
pub mod fx;
pub mod orders;
pub mod organization;
pub mod reports;
pub mod state;
pub mod widget;

pub use chat::*;
pub use dead_letter::*;
pub use fx::*;
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

/// Calls `$m!` with every top-level record type, so that tests and tools cover all.
#[macro_export]
macro_rules! every_record {
    ($m:ident) => {
        $m! {
            OrganizationSettings,
            WidgetEvent,
            ChatEvent,
            EnrichedOrder,
            AgentNotification,
            CustomerOrderSummary,
            AttributedOrder,
            WinsCounter,
            DailySalesReport,
            DeadLetter,
            CustomerChats,
            CartState,
            SeenOrder,
            SeenEvent,
            PendingOrder,
            ReportState,
            ExchangeRate
        }
    };
}

/// Implements [`Record`] for each type; the full name is the type's name in the one
/// namespace of the schemas.
macro_rules! impl_record {
    ($($ty:ident),* $(,)?) => {
        $(impl Record for $ty {
            const NAME: &'static str = concat!("sales.pipeline.", stringify!($ty));
        })*
    };
}
crate::every_record!(impl_record);
