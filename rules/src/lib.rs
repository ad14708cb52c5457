//! The rules behind the numbers of DESIGN.md section 4, as plain functions over the
//! records of `schemas`, so that they are tested without a broker and every stage that
//! needs one applies the same code.
//!
//! - [`chats`]: a customer's chat timeline built from `chat.sessions`, and the chat that
//!   is active at a given moment (the enricher's live context).
//! - [`attribution`]: the chat that earned an order (the attributor).
//! - [`cells`]: a day's report cells (the reporter), with their cap.
//! - [`fx`]: exchange rates and the one conversion rule.
//! - [`query`]: the report query over daily reports and rates (salesctl, the API).

pub mod attribution;
pub mod cells;
pub mod chats;
pub mod fx;
pub mod query;
