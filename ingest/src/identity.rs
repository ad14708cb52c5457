//! Signed customer identity as ingest checks it. The signature, key ids and the keys
//! file's format are [`accounts::identity`]'s; here are what ingest adds:
//!
//! - The keys file ingest reads ([`IdentityKeys`]; `--identity-keys-file`) is read again
//!   when it changes, so a key can be added without a restart; a file that does not
//!   parse stops ingest at start, and is ignored (the keys read before stay in use) when
//!   it is changed into one while running.
//! - [`check`] decides what an event's signature proves, from the organization's
//!   [`IdentitySettings`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use accounts::identity::{IdentitySettings, KeySet, SIGNATURE_HEX_LEN};
use anyhow::Context;
use kafka_runtime::shutdown::Shutdown;
use schemas::records::IdentityMode;
use sha2::{Digest, Sha256};

/// How often the keys file is looked at for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Why an event's signature does not let it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client's fault (422 `invalid_field` on `customer_signature`): missing where
    /// required, malformed, or made with no key the organization accepts.
    Invalid(String),
    /// The deployment's fault (503): a key the organization's settings name is not in
    /// the keys file (or no key is named), so a signature cannot be judged.
    KeyUnavailable { key_id: Option<String> },
}

/// What `signature` proves for an event of `customer_id` of the organization with
/// `settings`: `Ok(true)` when it is valid, `Ok(false)` when the event is accepted
/// unverified, else why it is refused.
///
/// - `off`: the signature is neither read nor checked; every event is unverified, and
///   the keys file plays no part (a missing key never refuses such an organization's
///   events). A store tries its signatures out with `optional`.
/// - `optional`: no signature is accepted unverified; one that is sent must be valid.
/// - `required`: every event must carry a valid signature.
///
/// A signature is valid when it is the HMAC under the current key or, when one is
/// named, the previous key. When the keys at hand do not verify it and one of those
/// keys is not in the file, the verdict is [`Refusal::KeyUnavailable`], never
/// [`Refusal::Invalid`]: the signature may well be good.
pub fn check(
    settings: &IdentitySettings,
    keys: &IdentityKeys,
    organization_id: &str,
    customer_id: &str,
    signature: Option<&str>,
) -> Result<bool, Refusal> {
    let required = match settings.mode {
        IdentityMode::Off => return Ok(false),
        IdentityMode::Optional => false,
        IdentityMode::Required => true,
    };
    let Some(signature) = signature else {
        return if required {
            Err(Refusal::Invalid(format!(
                "organization {organization_id} accepts only signed customer identities: send customer_signature, the HMAC-SHA256 of \"organization_id:customer_id\" under the organization's key, in hexadecimal"
            )))
        } else {
            Ok(false)
        };
    };
    let tag = decode_signature(signature).ok_or_else(|| {
        Refusal::Invalid(format!(
            "must be {SIGNATURE_HEX_LEN} hexadecimal digits: the HMAC-SHA256 of \"organization_id:customer_id\" under the organization's key"
        ))
    })?;
    let current = settings
        .key_id
        .as_deref()
        .ok_or(Refusal::KeyUnavailable { key_id: None })?;
    let keys = keys.current();
    let mut missing = None;
    for id in [Some(current), settings.previous_key_id.as_deref()]
        .into_iter()
        .flatten()
    {
        match keys.verify(id, organization_id, customer_id, &tag) {
            Some(true) => return Ok(true),
            Some(false) => {}
            None => {
                missing.get_or_insert(id);
            }
        }
    }
    match missing {
        Some(id) => Err(Refusal::KeyUnavailable {
            key_id: Some(id.to_string()),
        }),
        None => Err(Refusal::Invalid(format!(
            "is not the signature of this customer_id of organization {organization_id}: sign \"organization_id:customer_id\" with the organization's current key"
        ))),
    }
}

/// The 32 bytes of a well-formed signature (either case of hexadecimal digits).
fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    if signature.len() != SIGNATURE_HEX_LEN {
        return None;
    }
    hex::decode(signature).ok()
}

/// The keys every request verifies with: read from the keys file at start and swapped
/// whole when the file changes ([`IdentityKeys::watch`]). A request only takes the
/// current set; no request reads the file.
#[derive(Debug, Clone, Default)]
pub struct IdentityKeys {
    current: Arc<RwLock<Arc<KeySet>>>,
    source: Option<Arc<Source>>,
}

/// The file the keys come from and what was last found there.
struct Source {
    path: PathBuf,
    /// The SHA-256 of the text last read, or why the file could not be read: a change
    /// is acted on (and a problem logged) once, not at every look.
    seen: Mutex<Result<[u8; 32], String>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the digest of the text: it would help guess a weak secret.
        f.debug_struct("Source")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a look at the keys file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing new since the last look.
    Unchanged,
    /// A new set of keys is in use; their ids.
    Loaded(Vec<String>),
    /// The file changed into something unreadable or malformed; the keys in use stay.
    Refused(String),
}

impl IdentityKeys {
    /// Keys fixed for the life of the value, with no file behind them.
    pub fn fixed(keys: KeySet) -> Self {
        IdentityKeys {
            current: Arc::new(RwLock::new(Arc::new(keys))),
            source: None,
        }
    }

    /// The keys of `path`, or none without a file. A file that cannot be read or does
    /// not parse is an error naming the file and the line.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            tracing::info!(
                "no identity keys file (INGEST_IDENTITY_KEYS_FILE): signed customer identities cannot be verified"
            );
            return Ok(IdentityKeys::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the identity keys file {} (INGEST_IDENTITY_KEYS_FILE)",
                path.display()
            )
        })?;
        let keys = KeySet::parse(&text).with_context(|| {
            format!(
                "the identity keys file {} (INGEST_IDENTITY_KEYS_FILE) is malformed",
                path.display()
            )
        })?;
        tracing::info!(path = %path.display(), keys = ?keys.ids(), "identity keys loaded");
        Ok(IdentityKeys {
            current: Arc::new(RwLock::new(Arc::new(keys))),
            source: Some(Arc::new(Source {
                path: path.to_path_buf(),
                seen: Mutex::new(Ok(digest(&text))),
            })),
        })
    }

    /// The keys in use.
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the keys file again and, when its text changed into a valid one, puts its
    /// keys in use.
    pub fn reload(&self) -> Reload {
        let Some(source) = &self.source else {
            return Reload::Unchanged;
        };
        let found = std::fs::read_to_string(&source.path).map_err(|e| format!("cannot read it: {e}"));
        let mut seen = source.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = found.as_deref().map(digest).map_err(Clone::clone);
        if *seen == now {
            return Reload::Unchanged;
        }
        *seen = now;
        match found.and_then(|text| KeySet::parse(&text).map_err(|e| e.to_string())) {
            Ok(keys) => {
                let ids = keys.ids().into_iter().map(str::to_string).collect();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
                Reload::Loaded(ids)
            }
            Err(reason) => Reload::Refused(reason),
        }
    }

    /// Looks at the keys file every [`RELOAD_INTERVAL`] until shutdown, logging what
    /// changed. Without a file it returns at once.
    pub async fn watch(self, shutdown: Shutdown) {
        let Some(path) = self.source.as_ref().map(|s| s.path.display().to_string()) else {
            return;
        };
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = tick.tick() => {}
            }
            let keys = self.clone();
            let Ok(outcome) = tokio::task::spawn_blocking(move || keys.reload()).await else {
                continue;
            };
            match outcome {
                Reload::Unchanged => {}
                Reload::Loaded(ids) => tracing::info!(%path, keys = ?ids, "identity keys reloaded"),
                Reload::Refused(reason) => tracing::error!(
                    %path,
                    %reason,
                    "identity keys file changed but not reloaded; the keys read before stay in use"
                ),
            }
        }
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use accounts::identity::sign;

    use super::*;

    const ORG: &str = "org_8d2f";
    const SECRET_A: &str = "0123456789abcdef-secret-of-key-a";
    const SECRET_B: &str = "fedcba9876543210-secret-of-key-b";

    fn keys(text: &str) -> IdentityKeys {
        IdentityKeys::fixed(KeySet::parse(text).unwrap())
    }

    fn both() -> IdentityKeys {
        keys(&format!("a={SECRET_A}\nb={SECRET_B}\n"))
    }

    fn settings(mode: IdentityMode, key: Option<&str>, previous: Option<&str>) -> IdentitySettings {
        IdentitySettings {
            mode,
            key_id: key.map(str::to_string),
            previous_key_id: previous.map(str::to_string),
        }
    }

    fn check_with(settings: &IdentitySettings, keys: &IdentityKeys, signature: Option<&str>) -> Result<bool, Refusal> {
        check(settings, keys, ORG, "c-5e1b2a", signature)
    }

    fn invalid(result: Result<bool, Refusal>) -> bool {
        matches!(result, Err(Refusal::Invalid(_)))
    }

    #[test]
    fn a_valid_signature_verifies_in_either_case_and_nothing_else_does() {
        let required = settings(IdentityMode::Required, Some("a"), None);
        let good = sign(SECRET_A.as_bytes(), ORG, "c-5e1b2a");
        assert_eq!(check_with(&required, &both(), Some(&good)), Ok(true));
        assert_eq!(check_with(&required, &both(), Some(&good.to_uppercase())), Ok(true));

        let mut flipped = good.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let other_customer = sign(SECRET_A.as_bytes(), ORG, "c-other");
        let other_org = sign(SECRET_A.as_bytes(), "org_other", "c-5e1b2a");
        let other_key = sign(SECRET_B.as_bytes(), ORG, "c-5e1b2a");
        for bad in [
            flipped.as_str(),
            &other_customer,
            &other_org,
            &other_key,
            &good[..62],
            &format!("{good}00"),
            &format!(" {}", &good[1..]),
            "zz",
            "",
        ] {
            assert!(invalid(check_with(&required, &both(), Some(bad))), "{bad:?}");
        }
    }

    #[test]
    fn off_ignores_the_signature_and_the_keys() {
        let off = settings(IdentityMode::Off, Some("gone"), None);
        let good = sign(SECRET_A.as_bytes(), ORG, "c-5e1b2a");
        for signature in [None, Some("nonsense"), Some(good.as_str())] {
            assert_eq!(check_with(&off, &IdentityKeys::default(), signature), Ok(false));
            assert_eq!(check_with(&off, &both(), signature), Ok(false));
        }
    }

    #[test]
    fn optional_accepts_no_signature_unverified_but_never_a_bad_one() {
        let optional = settings(IdentityMode::Optional, Some("a"), None);
        assert_eq!(check_with(&optional, &both(), None), Ok(false));
        // Without a signature no key is needed, even when it is missing.
        assert_eq!(check_with(&optional, &IdentityKeys::default(), None), Ok(false));
        let good = sign(SECRET_A.as_bytes(), ORG, "c-5e1b2a");
        assert_eq!(check_with(&optional, &both(), Some(&good)), Ok(true));
        let bad = sign(SECRET_B.as_bytes(), ORG, "c-5e1b2a");
        assert!(invalid(check_with(&optional, &both(), Some(&bad))));
    }

    #[test]
    fn required_refuses_a_missing_signature() {
        let required = settings(IdentityMode::Required, Some("a"), None);
        let refusal = check_with(&required, &both(), None).unwrap_err();
        let Refusal::Invalid(message) = refusal else {
            panic!("{refusal:?}")
        };
        assert!(message.contains("customer_signature"), "{message}");
    }

    #[test]
    fn a_key_the_settings_name_but_the_file_lacks_is_the_deployments_fault() {
        let required = settings(IdentityMode::Required, Some("c"), None);
        let signature = sign(SECRET_A.as_bytes(), ORG, "c-5e1b2a");
        assert_eq!(
            check_with(&required, &both(), Some(&signature)),
            Err(Refusal::KeyUnavailable {
                key_id: Some("c".into())
            })
        );
        let unnamed = settings(IdentityMode::Optional, None, None);
        assert_eq!(
            check_with(&unnamed, &both(), Some(&signature)),
            Err(Refusal::KeyUnavailable { key_id: None })
        );
        // A malformed signature is the client's fault whatever the keys.
        assert!(invalid(check_with(&required, &both(), Some("0a"))));
        // So is a missing one where required.
        assert!(invalid(check_with(&required, &both(), None)));
    }

    #[test]
    fn during_a_rotation_both_keys_verify_and_after_it_only_the_new_one() {
        let (old, new) = (
            sign(SECRET_A.as_bytes(), ORG, "c-5e1b2a"),
            sign(SECRET_B.as_bytes(), ORG, "c-5e1b2a"),
        );
        let rotating = settings(IdentityMode::Required, Some("b"), Some("a"));
        assert_eq!(check_with(&rotating, &both(), Some(&new)), Ok(true));
        assert_eq!(check_with(&rotating, &both(), Some(&old)), Ok(true));

        let rotated = settings(IdentityMode::Required, Some("b"), None);
        assert_eq!(check_with(&rotated, &both(), Some(&new)), Ok(true));
        assert!(invalid(check_with(&rotated, &both(), Some(&old))));

        // The old key already gone from the file while still named as previous: the new
        // key's signatures pass, and an unmatched one cannot be judged.
        let only_b = keys(&format!("b={SECRET_B}"));
        assert_eq!(check_with(&rotating, &only_b, Some(&new)), Ok(true));
        assert_eq!(
            check_with(&rotating, &only_b, Some(&old)),
            Err(Refusal::KeyUnavailable {
                key_id: Some("a".into())
            })
        );
    }

    #[test]
    fn a_key_of_the_file_verifies_what_it_signed() {
        let set = KeySet::parse(&format!("a = {SECRET_A}\nb={SECRET_B}==\n")).unwrap();
        let b = settings(IdentityMode::Required, Some("b"), None);
        let signature = sign(format!("{SECRET_B}==").as_bytes(), ORG, "c-5e1b2a");
        assert_eq!(check_with(&b, &IdentityKeys::fixed(set), Some(&signature)), Ok(true));
    }

    #[test]
    fn the_keys_file_is_read_again_when_it_changes_and_a_bad_change_keeps_the_keys() {
        let dir = std::env::temp_dir().join(format!("identity-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, format!("a={SECRET_A}\n")).unwrap();
        let keys = IdentityKeys::open(Some(&path)).unwrap();
        assert_eq!(keys.current().ids(), ["a"]);
        assert_eq!(keys.reload(), Reload::Unchanged);

        std::fs::write(&path, format!("a={SECRET_A}\nb={SECRET_B}\n")).unwrap();
        assert_eq!(keys.reload(), Reload::Loaded(vec!["a".into(), "b".into()]));
        assert_eq!(keys.current().ids(), ["a", "b"]);
        assert_eq!(keys.reload(), Reload::Unchanged);

        std::fs::write(&path, "b=too-short\n").unwrap();
        let Reload::Refused(reason) = keys.reload() else {
            panic!("a malformed file was taken")
        };
        assert!(reason.contains("line 1"), "{reason}");
        assert_eq!(keys.current().ids(), ["a", "b"]);
        // Refused once, not again at every look.
        assert_eq!(keys.reload(), Reload::Unchanged);

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(keys.reload(), Reload::Refused(_)));
        assert_eq!(keys.current().ids(), ["a", "b"]);
        std::fs::write(&path, format!("b={SECRET_B}\n")).unwrap();
        assert_eq!(keys.reload(), Reload::Loaded(vec!["b".into()]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_malformed_or_missing_file_refuses_to_open_with_a_clear_message() {
        let dir = std::env::temp_dir().join(format!("identity-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, format!("# keys\na={SECRET_A}\nb {SECRET_B}\n")).unwrap();
        let error = format!("{:#}", IdentityKeys::open(Some(&path)).unwrap_err());
        assert!(error.contains("INGEST_IDENTITY_KEYS_FILE"), "{error}");
        assert!(error.contains("line 3: expected KEY_ID=SECRET"), "{error}");
        assert!(!error.contains(SECRET_B), "{error}");
        let error = format!("{:#}", IdentityKeys::open(Some(&dir.join("absent"))).unwrap_err());
        assert!(error.contains("cannot read the identity keys file"), "{error}");
        assert!(IdentityKeys::open(None).unwrap().current().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
