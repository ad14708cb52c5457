//! `accounts.organizations`.

use serde::{Deserialize, Serialize};

use crate::values::Timestamp;

/// An organization's settings; the latest per organization wins (compacted topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct OrganizationSettings {
    pub organization_id: String,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub websites: Vec<String>,
    pub timezone: String,
    pub rate_limit_per_second: Option<i32>,
    pub rate_limit_burst: Option<i32>,
    pub updated_at: Option<Timestamp>,
    /// Whether ingest verifies the `customer_signature` of the organization's events.
    pub identity_mode: IdentityMode,
    /// The key (an id in ingest's identity keys file) the organization signs with.
    pub identity_key_id: Option<String>,
    /// The key signed with before `identity_key_id`, still accepted during a rotation.
    pub identity_previous_key_id: Option<String>,
}

/// Whether ingest verifies an organization's signed customer identities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    /// Signatures are not checked; every event is stored unverified.
    #[default]
    Off,
    /// A signature, when sent, must be valid; an event without one is stored unverified.
    Optional,
    /// Every event must carry a valid signature.
    Required,
}

impl IdentityMode {
    /// The mode as written in the schema and typed on salesctl's command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            IdentityMode::Off => "off",
            IdentityMode::Optional => "optional",
            IdentityMode::Required => "required",
        }
    }
}

impl OrganizationSettings {
    /// The organization's own rate limit as (events per second, burst), or `None` for the
    /// deployment default. A burst left unset is twice the rate; values that are not
    /// positive count as unset.
    pub fn rate_limit(&self) -> Option<(u32, u32)> {
        let positive = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        let rate = positive(self.rate_limit_per_second)?;
        Some((rate, positive(self.rate_limit_burst).unwrap_or(rate.saturating_mul(2))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::Sample;

    #[test]
    fn a_rate_without_burst_gets_twice_the_rate() {
        let mut settings = OrganizationSettings::sample();
        assert_eq!(settings.rate_limit(), Some((150, 300)));
        settings.rate_limit_burst = None;
        assert_eq!(settings.rate_limit(), Some((150, 300)));
        settings.rate_limit_burst = Some(0);
        assert_eq!(settings.rate_limit(), Some((150, 300)));
        settings.rate_limit_per_second = Some(2_000_000_000);
        settings.rate_limit_burst = None;
        assert_eq!(settings.rate_limit(), Some((2_000_000_000, 4_000_000_000)));
    }

    #[test]
    fn no_positive_rate_means_the_deployment_default() {
        let mut settings = OrganizationSettings::sample();
        settings.rate_limit_per_second = None;
        assert_eq!(settings.rate_limit(), None);
        settings.rate_limit_per_second = Some(-5);
        assert_eq!(settings.rate_limit(), None);
    }
}
