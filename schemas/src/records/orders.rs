//! `sales.orders`, `sales.orders.by-id`, `inbox.notifications`, `sales.customer-orders`
//! and `sales.orders.attributed`: what the enricher and the attributor write.

use serde::{Deserialize, Serialize};

use crate::records::chat::Agent;
use crate::records::widget::Order;
use crate::values::{Money, Timestamp};

/// An order accepted once per (organization, order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct EnrichedOrder {
    pub event_id: String,
    pub organization_id: String,
    pub customer_id: String,
    pub placed_at: Timestamp,
    pub occurred_at: Option<Timestamp>,
    pub page_url: String,
    pub order: Order,
    pub active_chat_id: Option<String>,
}

/// A notification in a customer's active chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct AgentNotification {
    pub notification_id: String,
    pub organization_id: String,
    pub customer_id: String,
    pub chat_id: String,
    pub kind: NotificationKind,
    pub at: Timestamp,
    pub order_id: Option<String>,
    pub order_number: Option<String>,
    pub total: Option<Money>,
    pub currency: Option<String>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub items: Vec<NotificationItem>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub cart_lines: Vec<NotificationItem>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub cart_subtotals: Vec<CurrencyAmount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    OrderCreated,
    ProductAddedToCart,
    ProductRemovedFromCart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct NotificationItem {
    pub product_id: String,
    pub title: String,
    pub quantity: i32,
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    pub currency: String,
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CurrencyAmount {
    pub currency: String,
    pub amount: Money,
}

/// A customer's order history for the agent's sidebar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CustomerOrderSummary {
    pub organization_id: String,
    pub customer_id: String,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub recent_orders: Vec<SidebarOrder>,
    pub order_count: i64,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub spend: Vec<CurrencyAmount>,
    pub orders_during_chat: i64,
    pub orders_after_chat: i64,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SidebarOrder {
    pub order_id: String,
    pub order_number: String,
    pub total: Money,
    pub currency: String,
    pub placed_at: Timestamp,
    pub chat_id: Option<String>,
    pub sale_timing: Option<SaleTiming>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum SaleTiming {
    DuringChat,
    AfterChat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum HandledBy {
    AiOnly,
    HumanOnly,
    AiAndHuman,
}

/// An order with the chat that earned it; `attribution` is `None` when none qualifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct AttributedOrder {
    pub organization_id: String,
    pub customer_id: String,
    pub order_id: String,
    pub order_number: String,
    pub currency: String,
    pub total: Money,
    pub placed_at: Timestamp,
    pub attribution: Option<Attribution>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct Attribution {
    pub chat_id: String,
    pub team_id: Option<String>,
    pub chat_started_at: Timestamp,
    pub chat_ended_at: Option<Timestamp>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub agents: Vec<Agent>,
    pub handled_by: HandledBy,
    pub ai_agent_chat: bool,
    pub sale_timing: SaleTiming,
    pub time_to_order_micros: i64,
}
