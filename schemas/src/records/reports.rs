//! `sales.wins` and `sales.reports.daily`: what the reporter writes.

use serde::{Deserialize, Serialize};

use crate::records::orders::{HandledBy, SaleTiming};
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
    /// v2: one cell per (sale timing, team, `handled_by`, currency) with orders that
    /// day, in that order; empty in v1 records.
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    #[serde(default)]
    pub cells: Vec<SalesCell>,
    /// v2: distinct teams merged into `other_teams` cells (beyond the team cap).
    #[serde(default)]
    pub teams_merged: i32,
}

/// The attributed orders of one (sale timing, team, `handled_by`, currency) of a day:
/// any filter that is a union of cells is answered exactly from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SalesCell {
    pub sale_timing: SaleTiming,
    /// `None` for chats without a team, and for the cell of merged teams.
    pub team_id: Option<String>,
    /// The cell merges the teams beyond the cap (`team_id` is `None`).
    pub other_teams: bool,
    pub handled_by: HandledBy,
    pub currency: String,
    pub orders: i64,
    pub revenue: Money,
    pub time_to_order_sum_micros: i64,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub top_orders: Vec<CellOrder>,
}

/// One of a cell's largest orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CellOrder {
    pub order_id: String,
    pub order_number: String,
    pub total: Money,
    pub placed_at: Timestamp,
    pub time_to_order_micros: i64,
    pub chat_id: String,
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
