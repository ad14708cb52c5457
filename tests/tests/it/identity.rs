//! Signed customer identity over real HTTP against the real broker: an organization's
//! mode and keys from `accounts.organizations`, the secrets from a keys file ingest
//! reads again when it changes, and what reaches `sales.events.raw`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use kafka_runtime::shutdown::Shutdown;
use sales_tests::{HttpAnswer, TestEnv, eventually};
use schemas::records::{IdentityMode, OrganizationSettings};
use schemas::topics::Topic;
use serde_json::{Value, json};

use crate::ingest::{ORG, RunningIngest, order, read_events, settings};

const PAGE: &str = "https://shop.example.com/checkout/thanks";
const OTHER_ORG: &str = "org_it_other";

/// A keys file in a directory of its own, removed at the end.
struct KeysFile {
    dir: PathBuf,
    path: PathBuf,
}

impl KeysFile {
    fn new(keys: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("identity-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = KeysFile {
            path: dir.join("identity-keys"),
            dir,
        };
        file.write(keys);
        file
    }

    /// Replaces the file whole (written aside, then renamed), as an operator should.
    fn write(&self, keys: &[(&str, &str)]) {
        let text: String = std::iter::once("# identity keys\n".to_string())
            .chain(keys.iter().map(|(id, secret)| format!("{id}={secret}\n")))
            .collect();
        let aside = self.dir.join("identity-keys.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &self.path).unwrap();
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The signature `salesctl sign` prints for the customer under `key_id`.
    fn sign(&self, key_id: &str, org: &str, customer: &str) -> String {
        signature(&self.path, key_id, org, customer)
    }
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signature(keys_file: &Path, key_id: &str, org: &str, customer: &str) -> String {
    salesctl::sign::signature(&salesctl::sign::SignArgs {
        org: org.into(),
        customer: customer.into(),
        keys_file: keys_file.to_path_buf(),
        key_id: key_id.into(),
    })
    .unwrap()
}

fn identity(mode: IdentityMode, key: Option<&str>, previous: Option<&str>) -> OrganizationSettings {
    OrganizationSettings {
        identity_mode: mode,
        identity_key_id: key.map(str::to_string),
        identity_previous_key_id: previous.map(str::to_string),
        ..settings(&["shop.example.com"], Some(10_000))
    }
}

/// An order of `customer` with its own event id and, when given, a signature.
fn signed_order(customer: &str, signature: Option<&str>) -> (String, Value) {
    let event_id = uuid::Uuid::new_v4().to_string();
    let mut body = order(customer, &format!("o-{event_id}"), PAGE);
    body["event_id"] = json!(event_id);
    if let Some(signature) = signature {
        body["customer_signature"] = json!(signature);
    }
    (event_id, body)
}

/// A signature of the right shape that no key made: one digit of a valid one changed.
fn tampered(signature: &str) -> String {
    let mut digits = signature.to_string().into_bytes();
    digits[17] = if digits[17] == b'a' { b'b' } else { b'a' };
    String::from_utf8(digits).unwrap()
}

fn assert_refused_signature(answer: &HttpAnswer, case: &str) {
    assert_eq!(answer.status, 422, "{case}: {}", answer.body);
    let json = answer.json();
    assert_eq!(
        (json["error_code"].as_str(), json["field"].as_str()),
        (Some("invalid_field"), Some("customer_signature")),
        "{case}: {}",
        answer.body
    );
    assert!(!json["message"].as_str().unwrap_or("").is_empty(), "{case}");
}

/// Every event of `sales.events.raw` up to and including the ones named, read
/// committed, as event id to `identity_verified`.
async fn stored(env: &TestEnv, ids: &[&str]) -> HashMap<String, bool> {
    let consumer = env.consumer(&env.topic(Topic::EventsRaw), "read_committed");
    let wanted: HashSet<String> = ids.iter().map(|id| id.to_string()).collect();
    let events = read_events(&consumer, &wanted, Duration::from_secs(30)).await;
    let stored: HashMap<String, bool> = events.into_iter().map(|e| (e.event_id, e.identity_verified)).collect();
    for id in ids {
        assert!(
            stored.contains_key(*id),
            "event {id} answered 202 is not in sales.events.raw"
        );
    }
    stored
}

#[tokio::test]
async fn required_identity_stores_only_events_signed_with_the_organizations_key() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let keys = KeysFile::new(&[
        ("k-it", "secret-of-org-it-0123456789"),
        ("k-other", "secret-of-org-it-other-0123456789"),
    ]);
    env.put_organization(&identity(IdentityMode::Required, Some("k-it"), None))
        .await;
    env.put_organization(&OrganizationSettings {
        organization_id: OTHER_ORG.into(),
        websites: vec!["other-shop.example.net".into()],
        ..identity(IdentityMode::Required, Some("k-other"), None)
    })
    .await;
    let ingest = RunningIngest::start(&env, &["--identity-keys-file", keys.arg()]).await;
    // One customer throughout: one key, one partition, so anything written in between
    // would be read before the last event.
    let customer = "c-signed";
    let good = keys.sign("k-it", ORG, customer);

    let (valid_id, valid) = signed_order(customer, Some(&good));
    let answer = ingest.post(&valid).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.json()["event_id"], valid_id.as_str());

    let mut refused = Vec::new();
    for (case, signature) in [
        ("a tampered signature", Some(tampered(&good))),
        ("no signature", None),
        (
            "a signature made with another organization's key",
            Some(keys.sign("k-other", ORG, customer)),
        ),
        (
            "another organization's signature of the customer",
            Some(keys.sign("k-other", OTHER_ORG, customer)),
        ),
        (
            "the signature of another customer",
            Some(keys.sign("k-it", ORG, "c-someone-else")),
        ),
        (
            "a signature that is no hexadecimal",
            Some("not-a-signature".to_string()),
        ),
    ] {
        let (event_id, body) = signed_order(customer, signature.as_deref());
        assert_refused_signature(&ingest.post(&body).await, case);
        refused.push(event_id);
    }
    // The same signature in capitals is the same signature.
    let (upper_id, upper) = signed_order(customer, Some(&good.to_uppercase()));
    assert_eq!(ingest.post(&upper).await.status, 202);

    let stored = stored(&env, &[&valid_id, &upper_id]).await;
    assert_eq!(stored.get(&valid_id), Some(&true), "{stored:?}");
    assert_eq!(stored.get(&upper_id), Some(&true), "{stored:?}");
    assert_eq!(stored.len(), 2, "only the signed events are stored: {stored:?}");
    assert!(refused.iter().all(|id| !stored.contains_key(id)));
    ingest.stop().await;
}

#[tokio::test]
async fn optional_identity_refuses_a_bad_signature_and_off_ignores_it() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let keys = KeysFile::new(&[("k-it", "secret-of-org-it-0123456789")]);
    env.put_organization(&identity(IdentityMode::Optional, Some("k-it"), None))
        .await;
    let ingest = RunningIngest::start(&env, &["--identity-keys-file", keys.arg()]).await;
    let customer = "c-optional";
    let good = keys.sign("k-it", ORG, customer);

    let (unsigned_id, unsigned) = signed_order(customer, None);
    assert_eq!(ingest.post(&unsigned).await.status, 202);
    let (signed_id, signed) = signed_order(customer, Some(&good));
    assert_eq!(ingest.post(&signed).await.status, 202);
    let (_, bad) = signed_order(customer, Some(&tampered(&good)));
    assert_refused_signature(&ingest.post(&bad).await, "optional, a tampered signature");

    // Off: the signature is not looked at, good or bad, and nothing is verified.
    env.put_organization(&identity(IdentityMode::Off, Some("k-it"), None))
        .await;
    let (ignored_id, ignored) = signed_order(customer, Some(&tampered(&good)));
    eventually("identity off to apply", Duration::from_secs(10), || async {
        (ingest.post(&ignored).await.status == 202).then_some(())
    })
    .await;
    let (off_signed_id, off_signed) = signed_order(customer, Some(&good));
    assert_eq!(ingest.post(&off_signed).await.status, 202);

    let stored = stored(&env, &[&unsigned_id, &signed_id, &ignored_id, &off_signed_id]).await;
    assert_eq!(stored.get(&unsigned_id), Some(&false), "{stored:?}");
    assert_eq!(stored.get(&signed_id), Some(&true), "{stored:?}");
    assert_eq!(stored.get(&ignored_id), Some(&false), "{stored:?}");
    assert_eq!(stored.get(&off_signed_id), Some(&false), "{stored:?}");
    assert_eq!(stored.len(), 4, "{stored:?}");
    ingest.stop().await;
}

#[tokio::test]
async fn a_key_is_rotated_while_ingest_runs() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let (old_secret, new_secret, late_secret) = (
        "first-secret-of-org-it-0123456789",
        "second-secret-of-org-it-0123456789",
        "third-secret-of-org-it-0123456789",
    );
    let keys = KeysFile::new(&[("k1", old_secret)]);
    env.put_organization(&identity(IdentityMode::Required, Some("k1"), None))
        .await;
    let ingest = RunningIngest::start(&env, &["--identity-keys-file", keys.arg()]).await;
    let customer = "c-rotation";
    let old = keys.sign("k1", ORG, customer);
    let post = |signature: String| {
        let ingest = &ingest;
        async move { ingest.post(&signed_order(customer, Some(&signature)).1).await }
    };
    assert_eq!(post(old.clone()).await.status, 202);

    // The new key goes into the file first; until the settings name it, it is no key
    // of the organization.
    keys.write(&[("k1", old_secret), ("k2", new_secret)]);
    let new = keys.sign("k2", ORG, customer);
    assert_refused_signature(&post(new.clone()).await, "a key the settings do not name yet");

    // The settings switch to it, keeping the old one as the previous key: both pass.
    env.put_organization(&identity(IdentityMode::Required, Some("k2"), Some("k1")))
        .await;
    eventually("the new key to be accepted", Duration::from_secs(15), || async {
        (post(new.clone()).await.status == 202).then_some(())
    })
    .await;
    assert_eq!(post(old.clone()).await.status, 202, "the previous key still passes");

    // The rotation ends: only the new key passes.
    env.put_organization(&identity(IdentityMode::Required, Some("k2"), None))
        .await;
    let refused = eventually("the old key to be refused", Duration::from_secs(10), || async {
        let answer = post(old.clone()).await;
        (answer.status != 202).then_some(answer)
    })
    .await;
    assert_refused_signature(&refused, "the old key after the rotation");
    assert_eq!(post(new.clone()).await.status, 202);

    // Settings that name a key the file lacks: the deployment's fault, not the client's.
    env.put_organization(&identity(IdentityMode::Required, Some("k3"), None))
        .await;
    let unavailable = eventually("the missing key to be noticed", Duration::from_secs(10), || async {
        let answer = post(new.clone()).await;
        (answer.status != 202).then_some(answer)
    })
    .await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.body);
    assert_eq!(unavailable.json()["error_code"], "unavailable");
    assert!(unavailable.json()["event_id"].is_string(), "{}", unavailable.body);
    assert!(unavailable.header("retry-after").is_some());
    let metrics = ingest.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&format!("ingest_identity_key_missing_total{{organization=\"{ORG}\"}}"))),
        "{metrics}"
    );
    // A missing signature is still the client's fault.
    assert_refused_signature(
        &ingest.post(&signed_order(customer, None).1).await,
        "no signature while the key is missing",
    );

    // The key added to the file, without a restart.
    keys.write(&[("k2", new_secret), ("k3", late_secret)]);
    let late = keys.sign("k3", ORG, customer);
    eventually("the added key to be read", Duration::from_secs(15), || async {
        (post(late.clone()).await.status == 202).then_some(())
    })
    .await;
    ingest.stop().await;
}

#[tokio::test]
async fn a_malformed_keys_file_stops_ingest_at_start_with_the_line() {
    let env = TestEnv::new().await;
    let keys = KeysFile::new(&[("k1", "first-secret-of-org-it-0123456789")]);
    std::fs::write(&keys.path, "k1=first-secret-of-org-it-0123456789\nk2 second-secret\n").unwrap();
    let config = ingest::Config::try_parse_from([
        "ingest",
        "--bootstrap-servers",
        &env.kafka.bootstrap_servers,
        "--topic-prefix",
        &env.kafka.topic_prefix,
        "--listen-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--identity-keys-file",
        keys.arg(),
    ])
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), ingest::run(config, Shutdown::new()))
        .await
        .expect("ingest did not stop on a malformed keys file");
    let error = format!("{:#}", result.expect_err("ingest started with a malformed keys file"));
    assert!(error.contains("INGEST_IDENTITY_KEYS_FILE"), "{error}");
    assert!(error.contains("line 2: expected KEY_ID=SECRET"), "{error}");
    assert!(!error.contains("second-secret"), "{error}");
}
