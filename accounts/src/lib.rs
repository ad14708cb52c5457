//! What the stages and salesctl share about organizations.
//!
//! - [`settings`]: organization settings, followed from the compacted
//!   `accounts.organizations` topic (ingest and the reporter follow it).
//! - [`identity`]: signed customer identities: the signature, key ids, the keys file.
//! - [`tokens`]: the chat platform's access tokens (JWT) that the API checks, and the
//!   development tokens `salesctl token` mints.

pub mod identity;
pub mod settings;
pub mod tokens;
