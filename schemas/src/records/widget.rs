//! `sales.events.raw`: widget events, and the order and cart shapes they carry.

use serde::{Deserialize, Serialize};

use crate::values::{Money, Timestamp};

/// A widget event, validated and stamped with `received_at` by ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct WidgetEvent {
    pub event_id: String,
    pub organization_id: String,
    pub customer_id: String,
    pub name: EventName,
    pub page: Page,
    pub occurred_at: Option<Timestamp>,
    pub received_at: Timestamp,
    /// Set for `store_order_was_created`.
    pub order: Option<Order>,
    /// Set for the cart events.
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub cart_lines: Vec<CartLine>,
    /// Whether ingest verified the customer's signature (HMAC-SHA256 of
    /// `organization_id:customer_id` under the organization's key).
    pub identity_verified: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    StoreOrderWasCreated,
    StoreProductAddedToCart,
    StoreProductRemovedFromCart,
}

impl EventName {
    /// The name as the widget sends it.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventName::StoreOrderWasCreated => "store_order_was_created",
            EventName::StoreProductAddedToCart => "store_product_added_to_cart",
            EventName::StoreProductRemovedFromCart => "store_product_removed_from_cart",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct Page {
    pub url: String,
    pub title: Option<String>,
    pub referrer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct Order {
    pub id: String,
    pub order_number: String,
    pub currency: String,
    pub total_price: Money,
    pub subtotal_price: Option<Money>,
    pub shipping_price: Option<Money>,
    pub tax_price: Option<Money>,
    pub status_page_url: Option<String>,
    pub sales_channel: Option<SalesChannel>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub discount_codes: Vec<String>,
    #[cfg_attr(any(test, feature = "arbitrary"), proptest(strategy = "crate::values::small_vec()"))]
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct SalesChannel {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct LineItem {
    pub product_id: String,
    pub title: String,
    pub quantity: i32,
    pub price: Money,
    pub sku: Option<String>,
    pub variant_id: Option<String>,
    pub variant_title: Option<String>,
    pub thumbnail_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CartLine {
    pub total_price: Money,
    pub currency: String,
    pub quantity: i32,
    pub product: CartProduct,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct CartProduct {
    pub id: String,
    pub title: String,
    pub price: Option<Money>,
    pub sku: Option<String>,
    pub variant_id: Option<String>,
    pub thumbnail_url: Option<String>,
}
