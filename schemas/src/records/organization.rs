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
}
