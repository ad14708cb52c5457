//! `sales.wins` and `sales.reports.daily`: what the reporter writes.

use serde::{Deserialize, Serialize};

use crate::records::orders::SaleTiming;
use crate::values::{Money, Seconds, Timestamp};

/// Attributed orders of an organization on its current local day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct WinsCounter {
    pub organization_id: String,
    /// `YYYY-MM-DD`, org-local.
    pub date: String,
    pub timezone: String,
    pub wins: i64,
    pub updated_at: Timestamp,
}

/// The All Sales and AI Agent Sales reports of a closed org-local day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct DailySalesReport {
    pub organization_id: String,
    pub date: String,
    pub timezone: String,
    pub revision: i32,
    pub published_at: Timestamp,
    pub all_sales: SalesSection,
    pub ai_agent_sales: SalesSection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SalesSection {
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub currencies: Vec<CurrencyTotals>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CurrencyTotals {
    pub currency: String,
    pub orders: i64,
    pub revenue: Money,
    pub average_time_to_order_seconds: Option<Seconds>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub by_sale_timing: Vec<TimingBreakdown>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub by_team: Vec<TeamBreakdown>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub top_orders: Vec<TopOrder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct TimingBreakdown {
    pub sale_timing: SaleTiming,
    pub orders: i64,
    pub revenue: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct TeamBreakdown {
    pub team_id: Option<String>,
    pub orders: i64,
    pub revenue: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct TopOrder {
    pub order_id: String,
    pub order_number: String,
    pub customer_id: String,
    pub total: Money,
    pub placed_at: Timestamp,
    pub chat_id: Option<String>,
}
