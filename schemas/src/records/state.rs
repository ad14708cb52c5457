//! Values of the stages' state stores, as their compacted changelogs carry them.

use serde::{Deserialize, Serialize};

use crate::records::chat::Agent;
use crate::records::orders::{EnrichedOrder, NotificationItem};
use crate::records::reports::{SalesCell, TeamBreakdown, TimingBreakdown, TopOrder};
use crate::values::{Money, Timestamp};

/// A customer's open and recently ended chats (enricher and attributor).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CustomerChats {
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub chats: Vec<ChatState>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub event_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct ChatState {
    pub chat_id: String,
    pub team_id: Option<String>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub agents: Vec<AgentJoin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct AgentJoin {
    pub agent: Agent,
    pub joined_at: Timestamp,
}

/// A customer's current cart (enricher).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CartState {
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub lines: Vec<NotificationItem>,
    pub updated_at: Timestamp,
}

/// An order id already accepted (enricher dedupe seen-set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SeenOrder {
    pub event_id: String,
    pub customer_id: String,
    pub first_seen_at: Timestamp,
}

/// A widget event id already applied for a customer (enricher).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SeenEvent {
    pub seen_at: Timestamp,
}

/// An order the attributor holds until the chat stream's watermark passes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct PendingOrder {
    pub order: EnrichedOrder,
    pub hold_until: Timestamp,
}

/// The reporter's running totals of an organization's day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct ReportState {
    pub organization_id: String,
    pub date: String,
    pub timezone: String,
    pub published_revision: Option<i32>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub sections: Vec<SectionState>,
    /// v2: the day's cells, capped as in the report; empty for days begun before v2.
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    #[serde(default)]
    pub cells: Vec<SalesCell>,
    /// v2: every distinct team of the day's attributed orders, sorted.
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    #[serde(default)]
    pub team_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SectionState {
    pub ai_agent_only: bool,
    pub currency: String,
    pub orders: i64,
    pub revenue: Money,
    pub time_to_order_sum_micros: i64,
    pub time_to_order_count: i64,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub by_sale_timing: Vec<TimingBreakdown>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub by_team: Vec<TeamBreakdown>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub top_orders: Vec<TopOrder>,
}
