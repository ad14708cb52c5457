//! A simulated store and its chat platform, deterministic from a seed.
//!
//! - [`plan`]: the trade of several organizations over the last days: customers who
//!   browse, chat with people, AI agents or both, fill and empty carts, and order during
//!   a chat, days after one, 29 days and just over 30 days after one, more than 30 days
//!   after one, or with no chat at all;
//!   orders fired twice by a reload or from a second device; chat events that reach us
//!   after the order they explain.
//! - [`write`]: puts a plan's past days straight into `chat.sessions` and
//!   `sales.events.raw` (a trusted producer with its own `received_at`), and today's
//!   widget events through ingest over HTTP.

pub mod http;
pub mod keep_alive;
pub mod load;
pub mod plan;
pub mod write;

pub use plan::{Plan, Write, plan};
