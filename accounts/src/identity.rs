//! Signed customer identity. A store's back end signs each customer id with a secret it
//! shares with the deployment, the widget sends the signature with the event as
//! `customer_signature`, and ingest checks it (`ingest/src/identity.rs`), so an event
//! cannot claim a customer the store did not vouch for.
//!
//! - The signature is the HMAC-SHA256 of `organization_id:customer_id` (UTF-8) under the
//!   secret, as 64 hexadecimal digits ([`sign`]).
//! - The secrets never travel through Kafka: they live in a keys file, one
//!   `KEY_ID=SECRET` a line, `#` comments ([`KeySet::parse`]); ingest reads it (and
//!   reads it again when it changes), `salesctl sign` signs with it.
//! - An organization's settings ([`IdentitySettings`], from `accounts.organizations`)
//!   name its mode and the key it signs with, and during a rotation the previous key,
//!   still accepted.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use schemas::records::{IdentityMode, OrganizationSettings};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret the keys file may hold, in bytes: a short one could be guessed
/// from a few signed ids.
pub const MIN_SECRET_LEN: usize = 16;

/// The longest key id, which is also what salesctl accepts.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Length of a signature: the 32 bytes of an HMAC-SHA256, in hexadecimal.
pub const SIGNATURE_HEX_LEN: usize = 64;

/// What an organization's settings say about signed identities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySettings {
    pub mode: IdentityMode,
    /// The key the organization signs with.
    pub key_id: Option<String>,
    /// The key it signed with before, accepted too while a rotation is under way.
    pub previous_key_id: Option<String>,
}

impl IdentitySettings {
    pub fn from_record(record: &OrganizationSettings) -> Self {
        IdentitySettings {
            mode: record.identity_mode,
            key_id: record.identity_key_id.clone(),
            previous_key_id: record.identity_previous_key_id.clone(),
        }
    }
}

/// Checks a key id: 1 to 64 of `[A-Za-z0-9_.-]`.
pub fn key_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_KEY_ID_LEN {
        return Err(format!("a key id must be 1 to {MAX_KEY_ID_LEN} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(format!(
            "key id {id:?} may contain only letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// The signature of `customer_id` of `organization_id` under `secret`: the HMAC-SHA256
/// of `organization_id:customer_id`, as 64 lower-case hexadecimal digits.
pub fn sign(secret: &[u8], organization_id: &str, customer_id: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    feed(&mut mac, organization_id, customer_id);
    hex::encode(mac.finalize().into_bytes())
}

/// The signed message. An organization id never contains `:`, so the split is
/// unambiguous whatever the customer id holds.
fn feed(mac: &mut HmacSha256, organization_id: &str, customer_id: &str) {
    mac.update(organization_id.as_bytes());
    mac.update(b":");
    mac.update(customer_id.as_bytes());
}

/// Why a keys file does not parse. It never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct KeysFileError {
    pub line: usize,
    pub message: String,
}

/// The keys of one reading of the keys file, each ready to sign with.
#[derive(Clone, Default)]
pub struct KeySet {
    macs: HashMap<String, HmacSha256>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ids only: a secret never reaches a log.
        f.debug_struct("KeySet").field("ids", &self.ids()).finish()
    }
}

impl KeySet {
    /// Reads a keys file's text: one `KEY_ID=SECRET` a line (the secret is everything
    /// after the first `=`, used as its UTF-8 bytes), blank lines and lines starting
    /// with `#` ignored, spaces around the id and the secret ignored. Key ids follow
    /// [`key_id`], appear once, and each secret is at least [`MIN_SECRET_LEN`] bytes.
    pub fn parse(text: &str) -> Result<Self, KeysFileError> {
        let mut macs = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let error = |message: String| KeysFileError {
                line: index + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, secret) = line
                .split_once('=')
                .ok_or_else(|| error("expected KEY_ID=SECRET".into()))?;
            let (id, secret) = (id.trim(), secret.trim());
            key_id(id).map_err(error)?;
            if secret.len() < MIN_SECRET_LEN {
                return Err(error(format!(
                    "the secret of key {id:?} is shorter than {MIN_SECRET_LEN} bytes"
                )));
            }
            let mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
            if macs.insert(id.to_string(), mac).is_some() {
                return Err(error(format!("key {id:?} is defined twice")));
            }
        }
        Ok(KeySet { macs })
    }

    /// The key ids, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.macs.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The signature of `customer_id` of `organization_id` under the key `key_id` (as
    /// [`sign`] makes it), or `None` when the set has no such key.
    pub fn sign(&self, key_id: &str, organization_id: &str, customer_id: &str) -> Option<String> {
        let mut mac = self.macs.get(key_id)?.clone();
        feed(&mut mac, organization_id, customer_id);
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// Whether `tag` (the 32 bytes of a signature) is the signature of `customer_id` of
    /// `organization_id` under the key `key_id`, compared in constant time; `None` when
    /// the set has no such key.
    pub fn verify(&self, key_id: &str, organization_id: &str, customer_id: &str, tag: &[u8]) -> Option<bool> {
        let mut mac = self.macs.get(key_id)?.clone();
        feed(&mut mac, organization_id, customer_id);
        // Constant time: how much of a guess is right does not show.
        Some(mac.verify_slice(tag).is_ok())
    }

    pub fn contains(&self, key_id: &str) -> bool {
        self.macs.contains_key(key_id)
    }

    pub fn len(&self) -> usize {
        self.macs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "org_8d2f";
    const SECRET_A: &str = "0123456789abcdef-secret-of-key-a";
    const SECRET_B: &str = "fedcba9876543210-secret-of-key-b";

    #[test]
    fn the_signature_is_hmac_sha256_of_org_colon_customer_in_hex() {
        // As computed elsewhere: printf 'org_8d2f:c-5e1b2a' | openssl dgst -sha256 -hmac "$SECRET_A".
        assert_eq!(
            sign(SECRET_A.as_bytes(), ORG, "c-5e1b2a"),
            "46f6d6fd8355fa7baa3feb7c6aa08cb46e6c7484808256221845aec3806ac101"
        );
        // The separator is part of the message: the same characters split elsewhere
        // sign differently (an organization id never holds ':').
        assert_ne!(sign(b"k", "org_ab", "c"), sign(b"k", "org_a", "bc"));
        assert_eq!(sign(SECRET_A.as_bytes(), ORG, "c-1").len(), SIGNATURE_HEX_LEN);
    }

    #[test]
    fn a_keys_file_has_ids_secrets_comments_and_blank_lines() {
        let text = format!("# identity keys\n\n  a = {SECRET_A}  \r\nb={SECRET_B}==\n# c=not-a-key-at-all-really\n");
        let set = KeySet::parse(&text).unwrap();
        assert_eq!(set.ids(), ["a", "b"]);
        assert!(!set.contains("c"));
        // The secret is everything after the first '=', trimmed.
        let signature = sign(format!("{SECRET_B}==").as_bytes(), ORG, "c-5e1b2a");
        assert_eq!(set.sign("b", ORG, "c-5e1b2a"), Some(signature.clone()));
        let tag = hex::decode(&signature).unwrap();
        assert_eq!(set.verify("b", ORG, "c-5e1b2a", &tag), Some(true));
        assert_eq!(set.verify("a", ORG, "c-5e1b2a", &tag), Some(false));
        assert_eq!(set.verify("c", ORG, "c-5e1b2a", &tag), None);
        assert!(!format!("{set:?}").contains(SECRET_A), "{set:?}");
        assert_eq!(set.sign("a", ORG, "c-1"), Some(sign(SECRET_A.as_bytes(), ORG, "c-1")));
        assert_eq!(set.sign("c", ORG, "c-1"), None);
        assert!(KeySet::parse("").unwrap().is_empty());
    }

    #[test]
    fn a_malformed_keys_file_names_the_line_and_never_the_secret() {
        for (text, line, says) in [
            ("a=0123456789abcdef\nno equals sign here\n", 2, "KEY_ID=SECRET"),
            ("=0123456789abcdef\n", 1, "1 to 64"),
            ("key one=0123456789abcdef\n", 1, "may contain only"),
            ("a=short-secret\n", 1, "shorter than 16"),
            ("# a\na=0123456789abcdef\na=0123456789abcdef-2\n", 3, "defined twice"),
        ] {
            let error = KeySet::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.message.contains(says), "{text:?}: {error}");
            assert!(!error.to_string().contains("0123456789abcdef"), "{error}");
        }
    }

    #[test]
    fn key_ids_are_short_and_plain() {
        assert!(key_id("shop-2026.05_a").is_ok());
        assert!(key_id("").is_err());
        assert!(key_id(&"k".repeat(65)).is_err());
        assert!(key_id("a/b").is_err());
    }
}
