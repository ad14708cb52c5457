//! The enricher as an application of the exactly-once runtime.
//!
//! One task per partition sees three co-partitioned inputs:
//! - `chat.sessions` and `sales.events.raw` (keyed `org:customer`, joined by event
//!   time): chats go into the customer's chat store; a widget event is validated, its
//!   event id deduped, the cart kept, and it is matched to the chat active at its
//!   `received_at`. A cart event notifies that chat at once; an order is sent on to
//!   `sales.orders.by-id`, keyed `org:order_id`, carrying the chat it was placed in.
//! - `sales.orders.by-id` (keyed `org:order_id`, written by every enricher task): each
//!   occurrence of an order waits in `pending-orders` until the topic's watermark (the
//!   minimum over its writers) has passed its time; then the earliest placed occurrence
//!   (on a tie, the smaller event id) goes through to `sales.orders` (keyed
//!   `org:customer` again) and to its chat's notification, and the seen-set drops the
//!   others. Which copy wins never depends on the order the copies arrive in.

use std::sync::Arc;
use std::time::Duration;

use kafka_runtime::store::time_key;
use kafka_runtime::task::{Application, Decoded, Record, Reject, StoreSpec, Task, TaskContext, encode};
use schemas::keys;
use schemas::records::{
    AgentNotification, CartState, ChatEvent, CustomerChats, EnrichedOrder, EventName, NotificationKind, SeenEvent,
    SeenOrder, WidgetEvent,
};
use schemas::topics::{Topic, TopicNames};
use schemas::validation::{validate_chat_event, validate_widget_event};
use schemas::values::{Timestamp, duration_micros};

use crate::cart;
use crate::metrics::{EnricherMetrics, KindLabel};

/// A customer's chats (`org:customer` → `CustomerChats`).
pub const CHATS: &str = "chats";
/// A customer's cart (`org:customer` → `CartState`).
pub const CARTS: &str = "carts";
/// Widget event ids applied per customer (`org:customer\0event_id` → `SeenEvent`).
pub const EVENT_IDS: &str = "event-ids";
/// The order dedupe seen-set (`org:order_id` → `SeenOrder`).
pub const SEEN_ORDERS: &str = "seen-orders";
/// Occurrences of orders waiting for the by-id watermark (`placed_at (8 bytes,
/// big-endian, sign-flipped) ++ org:order_id ++ \0 ++ event_id` → `EnrichedOrder`), in
/// the order they are decided in.
pub const PENDING_ORDERS: &str = "pending-orders";

/// How long, in event time, each kind of state is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// An accepted order id in the seen-set.
    pub orders: Duration,
    /// An ended chat, and the cart of an idle customer.
    pub chats: Duration,
    /// A widget event id, against client retries.
    pub event_ids: Duration,
}

#[derive(Debug)]
struct Shared {
    raw: String,
    chats: String,
    by_id: String,
    orders: String,
    notifications: String,
    retention_orders: i64,
    retention_chats: i64,
    retention_event_ids: i64,
    metrics: EnricherMetrics,
}

/// The enricher application; `id` is its consumer group.
#[derive(Debug, Clone)]
pub struct Enricher {
    id: String,
    shared: Arc<Shared>,
}

impl Enricher {
    pub fn new(id: impl Into<String>, topics: &TopicNames, retention: Retention, metrics: EnricherMetrics) -> Self {
        Enricher {
            id: id.into(),
            shared: Arc::new(Shared {
                raw: topics.name(Topic::EventsRaw),
                chats: topics.name(Topic::ChatSessions),
                by_id: topics.name(Topic::OrdersById),
                orders: topics.name(Topic::Orders),
                notifications: topics.name(Topic::Notifications),
                retention_orders: duration_micros(retention.orders),
                retention_chats: duration_micros(retention.chats),
                retention_event_ids: duration_micros(retention.event_ids),
                metrics,
            }),
        }
    }
}

impl Application for Enricher {
    fn id(&self) -> &str {
        &self.id
    }

    fn inputs(&self) -> Vec<String> {
        let s = &self.shared;
        vec![s.chats.clone(), s.raw.clone(), s.by_id.clone()]
    }

    /// Chats first: a chat event and a widget event of the same microsecond are applied
    /// chat first, so an agent joining at T sees an order at T.
    fn synchronized_inputs(&self) -> Vec<String> {
        vec![self.shared.chats.clone(), self.shared.raw.clone()]
    }

    fn written_inputs(&self) -> Vec<String> {
        vec![self.shared.by_id.clone()]
    }

    /// The by-id repartition carries the widget events' time; `sales.orders` the by-id
    /// topic's (held back by the occurrences still waiting).
    fn watermarked_outputs(&self) -> Vec<(String, Vec<String>)> {
        let s = &self.shared;
        vec![
            (s.by_id.clone(), vec![s.raw.clone()]),
            (s.orders.clone(), vec![s.by_id.clone()]),
        ]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        StoreSpec::key_value(&[CHATS, CARTS, EVENT_IDS, SEEN_ORDERS, PENDING_ORDERS])
    }

    fn create_task(&self, _partition: i32) -> Box<dyn Task> {
        Box::new(EnricherTask {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Each record decoded once, with the payload's own time: `received_at` of a widget
    /// event, `at` of a chat event, `placed_at` of an order.
    fn decode(&self, record: &Record<'_>) -> Result<Decoded, Reject> {
        let s = &self.shared;
        Ok(if record.topic == s.chats {
            let event: ChatEvent = record.decode()?;
            let at = event.at;
            Decoded::new(Input::Chat(event), Some(at))
        } else if record.topic == s.raw {
            let event: WidgetEvent = record.decode()?;
            let at = event.received_at;
            Decoded::new(Input::Widget(Box::new(event)), Some(at))
        } else {
            let order: EnrichedOrder = record.decode()?;
            let at = order.placed_at;
            Decoded::new(Input::Order(Box::new(order)), Some(at))
        })
    }
}

/// An input record as [`Enricher::decode`] made it.
enum Input {
    Chat(ChatEvent),
    Widget(Box<WidgetEvent>),
    /// An occurrence of an order from `sales.orders.by-id`.
    Order(Box<EnrichedOrder>),
}

struct EnricherTask {
    shared: Arc<Shared>,
}

impl Task for EnricherTask {
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>, decoded: Decoded) -> Result<(), Reject> {
        match decoded.take::<Input>() {
            Some(Input::Chat(event)) => self.on_chat_event(ctx, record, &event),
            Some(Input::Widget(event)) => self.on_widget_event(ctx, record, *event),
            Some(Input::Order(order)) => {
                let value = record.value.ok_or_else(|| Reject("a record without a value".into()))?;
                self.on_order(ctx, record, value, &order)
            }
            None => Err(Reject("the record was not decoded".into())),
        }
    }

    fn on_watermark(&mut self, ctx: &mut TaskContext<'_>) {
        if let Err(Reject(reason)) = self.release_orders(ctx) {
            tracing::error!(%reason, "a waiting order could not be decided");
        }
    }

    fn held_since(&mut self, ctx: &mut TaskContext<'_>, output: &str) -> Option<Timestamp> {
        if output != self.shared.orders {
            return None;
        }
        ctx.store(PENDING_ORDERS).earliest_time()
    }
}

/// The pending store's key of an occurrence: its time first, so a scan meets them in the
/// order they are decided in, then the order, then the event id (the tie-break).
fn pending_key(order: &EnrichedOrder) -> Vec<u8> {
    let id = keys::org_order(&order.organization_id, &order.order.id);
    time_key(
        order.placed_at,
        &[id.as_bytes(), b"\0", order.event_id.as_bytes()].concat(),
    )
}

impl EnricherTask {
    fn on_chat_event(&self, ctx: &mut TaskContext<'_>, record: &Record<'_>, event: &ChatEvent) -> Result<(), Reject> {
        validate_chat_event(event).map_err(|e| Reject(format!("invalid chat event: {e}")))?;
        let key = keys::org_customer(&event.organization_id, &event.customer_id);
        record.expect_key(&key)?;
        let mut chats: CustomerChats = ctx.load(CHATS, key.as_bytes())?.unwrap_or_default();
        if !rules::chats::apply(&mut chats, event) {
            self.shared.metrics.duplicate_chat_events.inc();
            return Ok(());
        }
        match rules::chats::prune(&mut chats, ctx.watermark(), self.shared.retention_chats) {
            Some(expiry) => {
                let bytes = encode(&chats)?;
                ctx.store(CHATS).put_expiring(key.as_bytes(), bytes, Some(expiry));
            }
            None => ctx.store(CHATS).delete(key.as_bytes()),
        }
        Ok(())
    }

    fn on_widget_event(
        &self,
        ctx: &mut TaskContext<'_>,
        record: &Record<'_>,
        event: WidgetEvent,
    ) -> Result<(), Reject> {
        // Records from trusted producers pass the same rules as ingest's.
        validate_widget_event(&event).map_err(|e| Reject(format!("invalid widget event: {e}")))?;
        let key = keys::org_customer(&event.organization_id, &event.customer_id);
        record.expect_key(&key)?;
        let at = event.received_at;

        let seen_key = [key.as_bytes(), b"\0", event.event_id.as_bytes()].concat();
        if ctx.store(EVENT_IDS).get(&seen_key).is_some() {
            self.shared.metrics.duplicate_events.inc();
            return Ok(());
        }
        let seen = encode(&SeenEvent { seen_at: at })?;
        let expiry = at.after(self.shared.retention_event_ids);
        ctx.store(EVENT_IDS).put_expiring(&seen_key, seen, Some(expiry));

        let chats: CustomerChats = ctx.load(CHATS, key.as_bytes())?.unwrap_or_default();
        let chat_id = rules::chats::active_chat(&chats, at).map(|chat| chat.chat_id.clone());

        if event.name == EventName::StoreOrderWasCreated {
            let order = event
                .order
                .ok_or_else(|| Reject("an order event without its order".into()))?;
            // The order is checked out: the cart is empty now.
            ctx.store(CARTS).delete(key.as_bytes());
            let by_id_key = keys::org_order(&event.organization_id, &order.id);
            let enriched = EnrichedOrder {
                event_id: event.event_id,
                organization_id: event.organization_id,
                customer_id: event.customer_id,
                placed_at: at,
                occurred_at: event.occurred_at,
                page_url: event.page.url,
                order,
                active_chat_id: chat_id,
            };
            let bytes = encode(&enriched)?;
            ctx.emit(&self.shared.by_id, Some(by_id_key.as_bytes()), Some(&bytes));
            return Ok(());
        }

        let previous: Option<CartState> = ctx.load(CARTS, key.as_bytes())?;
        let cart = cart::apply(previous, event.name, &event.cart_lines, at);
        let cart_expiry = cart.updated_at.after(self.shared.retention_chats);
        if cart.lines.is_empty() {
            ctx.store(CARTS).delete(key.as_bytes());
        } else {
            let bytes = encode(&cart)?;
            ctx.store(CARTS).put_expiring(key.as_bytes(), bytes, Some(cart_expiry));
        }
        let Some(chat_id) = chat_id else {
            return Ok(());
        };
        let kind = if event.name == EventName::StoreProductAddedToCart {
            NotificationKind::ProductAddedToCart
        } else {
            NotificationKind::ProductRemovedFromCart
        };
        let notification = AgentNotification {
            notification_id: event.event_id,
            organization_id: event.organization_id,
            customer_id: event.customer_id,
            chat_id,
            kind,
            at,
            order_id: None,
            order_number: None,
            total: None,
            currency: None,
            items: event.cart_lines.iter().map(cart::cart_item).collect(),
            cart_subtotals: cart::subtotals(&cart.lines),
            cart_lines: cart.lines,
        };
        self.notify(ctx, &notification)
    }

    /// An occurrence of an order from any enricher task: it waits for the watermark.
    fn on_order(
        &self,
        ctx: &mut TaskContext<'_>,
        record: &Record<'_>,
        value: &[u8],
        order: &EnrichedOrder,
    ) -> Result<(), Reject> {
        let key = keys::org_order(&order.organization_id, &order.order.id);
        record.expect_key(&key)?;
        if ctx.store(SEEN_ORDERS).get(key.as_bytes()).is_some() {
            // Decided already: this copy came after the watermark passed the winner.
            return self.duplicate(&key, order);
        }
        ctx.store(PENDING_ORDERS).put(&pending_key(order), value.to_vec());
        self.release_orders(ctx)
    }

    fn duplicate(&self, key: &str, order: &EnrichedOrder) -> Result<(), Reject> {
        self.shared.metrics.duplicate_orders.inc();
        tracing::debug!(order = %key, customer = %order.customer_id, "duplicate order dropped");
        Ok(())
    }

    /// Decides every waiting occurrence placed before the by-id watermark, earliest
    /// first: the first of an order wins, the others are duplicates.
    fn release_orders(&self, ctx: &mut TaskContext<'_>) -> Result<(), Reject> {
        let watermark = ctx.input_watermark(&self.shared.by_id);
        while let Some((_, value)) = ctx.store(PENDING_ORDERS).pop_earliest_before(watermark) {
            let order = schemas::decode::<EnrichedOrder>(&value)
                .map_err(|e| Reject(format!("a waiting order does not decode: {e}")))?;
            let key = keys::org_order(&order.organization_id, &order.order.id);
            if ctx.store(SEEN_ORDERS).get(key.as_bytes()).is_some() {
                self.duplicate(&key, &order)?;
                continue;
            }
            self.accept_order(ctx, &key, &value, &order)?;
        }
        Ok(())
    }

    /// The occurrence that counts: remembered in the seen-set, sent to `sales.orders`
    /// and, when a chat was live, to its agents.
    fn accept_order(
        &self,
        ctx: &mut TaskContext<'_>,
        key: &str,
        value: &[u8],
        order: &EnrichedOrder,
    ) -> Result<(), Reject> {
        let seen = encode(&SeenOrder {
            event_id: order.event_id.clone(),
            customer_id: order.customer_id.clone(),
            first_seen_at: order.placed_at,
        })?;
        let expiry = order.placed_at.after(self.shared.retention_orders);
        ctx.store(SEEN_ORDERS).put_expiring(key.as_bytes(), seen, Some(expiry));

        let customer_key = keys::org_customer(&order.organization_id, &order.customer_id);
        ctx.emit(&self.shared.orders, Some(customer_key.as_bytes()), Some(value));
        self.shared.metrics.orders.inc();
        let Some(chat_id) = &order.active_chat_id else {
            return Ok(());
        };
        let notification = AgentNotification {
            notification_id: order.event_id.clone(),
            organization_id: order.organization_id.clone(),
            customer_id: order.customer_id.clone(),
            chat_id: chat_id.clone(),
            kind: NotificationKind::OrderCreated,
            at: order.placed_at,
            order_id: Some(order.order.id.clone()),
            order_number: Some(order.order.order_number.clone()),
            total: Some(order.order.total_price),
            currency: Some(order.order.currency.clone()),
            items: cart::order_items(&order.order),
            cart_lines: Vec::new(),
            cart_subtotals: Vec::new(),
        };
        self.notify(ctx, &notification)
    }

    fn notify(&self, ctx: &mut TaskContext<'_>, notification: &AgentNotification) -> Result<(), Reject> {
        let key = keys::org_chat(&notification.organization_id, &notification.chat_id);
        let bytes = encode(notification)?;
        ctx.emit(&self.shared.notifications, Some(key.as_bytes()), Some(&bytes));
        let kind = match notification.kind {
            NotificationKind::OrderCreated => "order_created",
            NotificationKind::ProductAddedToCart => "product_added_to_cart",
            NotificationKind::ProductRemovedFromCart => "product_removed_from_cart",
        };
        self.shared
            .metrics
            .notifications
            .get_or_create(&KindLabel { kind })
            .inc();
        Ok(())
    }
}
