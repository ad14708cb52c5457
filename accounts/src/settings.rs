//! Organization settings, read from the compacted `accounts.organizations` topic into
//! memory at start and kept current while running: a change written with
//! `salesctl org put` (websites, rate limit, timezone, signed identity mode and keys)
//! applies within the time it takes to consume one record.

use anyhow::Context;
use kafka_runtime::admin::ReadyCheck;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::follow::{Followed, Follower};
use kafka_runtime::shutdown::Shutdown;
use schemas::records::OrganizationSettings;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::identity::IdentitySettings;

/// What the stages need of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSettings {
    /// Connected website hosts, lower case.
    pub websites: Vec<String>,
    /// Its own rate limit (events/s, burst), overriding the deployment default.
    pub rate_limit: Option<(u32, u32)>,
    /// The IANA timezone of its calendar days, as written (the reporter checks it).
    pub timezone: String,
    /// Whether its events' customer signatures are checked, and with which keys.
    pub identity: IdentitySettings,
}

impl OrgSettings {
    pub fn from_record(record: &OrganizationSettings) -> Self {
        OrgSettings {
            // salesctl writes them normalized; other writers may not have.
            websites: record
                .websites
                .iter()
                .map(|w| schemas::validation::normalize_host(w))
                .collect(),
            rate_limit: record.rate_limit(),
            timezone: record.timezone.clone(),
            identity: IdentitySettings::from_record(record),
        }
    }

    /// Whether `host` is one of the connected websites or a subdomain of one.
    pub fn is_connected(&self, host: &str) -> bool {
        self.websites.iter().any(|site| host_matches(host, site))
    }
}

/// `host` is `site` or a subdomain of it (`shop.example.com` matches `example.com`, but
/// `badexample.com` does not).
pub fn host_matches(host: &str, site: &str) -> bool {
    let host = host.trim_end_matches('.');
    if site.is_empty() || host.len() < site.len() {
        return false;
    }
    let (head, tail) = host.split_at(host.len() - site.len());
    tail.eq_ignore_ascii_case(site) && (head.is_empty() || head.ends_with('.'))
}

/// The latest settings of every organization.
#[derive(Debug, Clone, Default)]
pub struct Organizations {
    inner: Arc<RwLock<HashMap<String, Arc<OrgSettings>>>>,
    /// Whether the topic has been read to its end once. Until then an organization that
    /// is not here may just not have been read yet, so its absence proves nothing.
    loaded: Arc<AtomicBool>,
}

impl Organizations {
    /// Whether every organization's settings have been read; see [`follow_or_stop`].
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn mark_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    pub fn get(&self, organization_id: &str) -> Option<Arc<OrgSettings>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(organization_id)
            .cloned()
    }

    pub fn insert(&self, organization_id: &str, settings: OrgSettings) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(organization_id.to_string(), Arc::new(settings));
    }

    pub fn remove(&self, organization_id: &str) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(organization_id);
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `host` is a connected website of any organization (a CORS preflight
    /// carries no body, so it cannot name its organization).
    pub fn any_connected(&self, host: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|o| o.is_connected(host))
    }

    /// Applies one record of the topic: a value replaces the organization's settings, a
    /// tombstone removes the organization.
    pub fn apply(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), String> {
        let key = key.ok_or("record without a key")?;
        let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
        match value {
            None => self.remove(key),
            Some(bytes) => {
                let record: OrganizationSettings = schemas::decode(bytes).map_err(|e| e.to_string())?;
                if record.organization_id != key {
                    return Err(format!(
                        "key {key:?} holds the settings of {:?}",
                        record.organization_id
                    ));
                }
                self.insert(key, OrgSettings::from_record(&record));
            }
        }
        Ok(())
    }
}

/// Reads the whole topic, marks `organizations` loaded and `ready` set once every
/// partition has been read to its end, then keeps applying changes until shutdown.
///
/// For a stage that cannot work without settings (ingest cannot accept an event, the
/// reporter cannot tell a day): a follower that fails says why and triggers `shutdown`,
/// so the stage stops and the error becomes the process's instead of the stage waiting
/// for settings for ever.
pub async fn follow_or_stop(
    stage: &str,
    kafka: &KafkaArgs,
    organizations: Organizations,
    ready: ReadyCheck,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let result = async {
        let topic = kafka.topic_names()?.name(schemas::topics::Topic::Organizations);
        let mut table = SettingsTable(organizations);
        let group = format!("{stage}-settings");
        kafka_runtime::follow::follow(kafka, &group, &topic, ready, shutdown.clone(), &mut table)
            .await
            .context("cannot follow the organization settings")
    }
    .await;
    if let Err(e) = &result {
        tracing::error!(
            error = format!("{e:#}"),
            "cannot follow organization settings; stopping"
        );
        shutdown.trigger();
    }
    result
}

struct SettingsTable(Organizations);

impl Follower for SettingsTable {
    fn apply(&mut self, record: Followed<'_>) {
        if let Err(reason) = self.0.apply(record.key, record.value) {
            tracing::warn!(partition = record.partition, offset = record.offset, %reason, "organization settings record skipped");
        }
    }

    fn loaded(&mut self, _partitions: usize) {
        self.0.mark_loaded();
        tracing::info!(organizations = self.0.len(), "organization settings loaded");
    }
}

#[cfg(test)]
mod tests {
    use schemas::samples::Sample;

    use super::*;

    #[test]
    fn a_subdomain_of_a_connected_website_is_connected() {
        assert!(host_matches("shop.example.com", "example.com"));
        assert!(host_matches("example.com", "example.com"));
        assert!(host_matches("Shop.Example.com", "example.com"));
        assert!(host_matches("example.com.", "example.com"));
    }

    #[test]
    fn a_lookalike_host_is_not_connected() {
        assert!(!host_matches("badexample.com", "example.com"));
        assert!(!host_matches("example.com.evil.io", "example.com"));
        assert!(!host_matches("com", "example.com"));
        assert!(!host_matches("example.com", ""));
    }

    #[test]
    fn websites_of_a_record_are_normalized() {
        let mut record = OrganizationSettings::sample();
        record.websites = vec![" Shop.Example.com. ".into()];
        let settings = OrgSettings::from_record(&record);
        assert_eq!(settings.websites, ["shop.example.com"]);
        assert_eq!(settings.rate_limit, Some((150, 300)));
    }

    #[test]
    fn the_identity_mode_and_keys_come_with_the_record() {
        let settings = OrgSettings::from_record(&OrganizationSettings::sample());
        assert_eq!(
            settings.identity,
            IdentitySettings {
                mode: schemas::records::IdentityMode::Optional,
                key_id: Some("shop-2026-11".into()),
                previous_key_id: Some("shop-2026-05".into()),
            }
        );
    }

    #[test]
    fn records_and_tombstones_apply_in_order() {
        let orgs = Organizations::default();
        let bytes = schemas::encode(&OrganizationSettings::sample()).unwrap();
        orgs.apply(Some(b"org_8d2f"), Some(&bytes)).unwrap();
        assert!(orgs.get("org_8d2f").unwrap().is_connected("www.shop.example.com"));
        orgs.apply(Some(b"org_8d2f"), None).unwrap();
        assert!(orgs.get("org_8d2f").is_none());
    }

    #[test]
    fn a_record_under_another_organizations_key_is_refused() {
        let orgs = Organizations::default();
        let bytes = schemas::encode(&OrganizationSettings::sample()).unwrap();
        assert!(orgs.apply(Some(b"org_other"), Some(&bytes)).is_err());
        assert!(orgs.is_empty());
    }
}
