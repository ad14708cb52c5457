//! The attributor as an application of the exactly-once runtime.
//!
//! One task per partition sees `chat.sessions` and `sales.orders` (both keyed
//! `org:customer`, joined by event time). Chats go into the customer's chat store. An
//! order at T is decided once the watermark of `chat.sessions` has passed T (every chat
//! event up to T is in); until then it waits in the pending store. A chat is forgotten
//! only once the watermark of `sales.orders` (the orders that could still match it) has
//! passed its end plus the window and the grace. The decision goes to
//! `sales.orders.attributed` (keyed `org`) and the customer's new summary to
//! `sales.customer-orders` (keyed `org:customer`).

use std::sync::Arc;
use std::time::Duration;

use kafka_runtime::store::time_key;
use kafka_runtime::task::{Application, Decoded, Record, Reject, StoreSpec, Task, TaskContext, encode};
use schemas::keys;
use schemas::records::{AttributedOrder, ChatEvent, CustomerChats, CustomerOrderSummary, EnrichedOrder, PendingOrder};
use schemas::topics::{Topic, TopicNames};
use schemas::validation::validate_chat_event;
use schemas::values::{Timestamp, duration_micros};

use crate::metrics::{AttributorMetrics, DecisionLabels};
use crate::sidebar;

/// A customer's chats (`org:customer` → `CustomerChats`).
pub const CHATS: &str = "chats";
/// Orders waiting for the chat watermark (`time ++ org:customer ++ \0 ++ order id` →
/// `PendingOrder`), in time order.
pub const PENDING: &str = "pending";
/// A customer's sidebar summary (`org:customer` → `CustomerOrderSummary`).
pub const HISTORY: &str = "history";

/// The rules' time spans, in event time.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// How long after a chat ended an order is still attributed to it.
    pub attribution: Duration,
    /// How late (behind the orders' watermark) an order may arrive and still see every
    /// chat it could be attributed to: chats stay this long past the window.
    pub grace: Duration,
    /// How long a customer's sidebar summary is kept after their last order.
    pub history: Duration,
}

#[derive(Debug)]
struct Shared {
    chats: String,
    orders: String,
    attributed: String,
    customer_orders: String,
    window: i64,
    chat_retention: i64,
    history: i64,
    metrics: AttributorMetrics,
}

/// The attributor application; `id` is its consumer group.
#[derive(Debug, Clone)]
pub struct Attributor {
    id: String,
    shared: Arc<Shared>,
}

impl Attributor {
    pub fn new(id: impl Into<String>, topics: &TopicNames, windows: Windows, metrics: AttributorMetrics) -> Self {
        let window = duration_micros(windows.attribution);
        Attributor {
            id: id.into(),
            shared: Arc::new(Shared {
                chats: topics.name(Topic::ChatSessions),
                orders: topics.name(Topic::Orders),
                attributed: topics.name(Topic::OrdersAttributed),
                customer_orders: topics.name(Topic::CustomerOrders),
                window,
                chat_retention: window.saturating_add(duration_micros(windows.grace)),
                history: duration_micros(windows.history),
                metrics,
            }),
        }
    }
}

impl Application for Attributor {
    fn id(&self) -> &str {
        &self.id
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.shared.chats.clone(), self.shared.orders.clone()]
    }

    /// Chats first on a tie: a chat starting at T is known to an order at T.
    fn synchronized_inputs(&self) -> Vec<String> {
        self.inputs()
    }

    fn written_inputs(&self) -> Vec<String> {
        vec![self.shared.orders.clone()]
    }

    /// Decisions carry the orders' time, held back by the orders still waiting.
    fn watermarked_outputs(&self) -> Vec<(String, Vec<String>)> {
        vec![(self.shared.attributed.clone(), vec![self.shared.orders.clone()])]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        StoreSpec::key_value(&[CHATS, PENDING, HISTORY])
    }

    fn create_task(&self, _partition: i32) -> Box<dyn Task> {
        Box::new(AttributorTask {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Each record decoded once, with the payload's own time: `at` of a chat event,
    /// `placed_at` of an order.
    fn decode(&self, record: &Record<'_>) -> Result<Decoded, Reject> {
        Ok(if record.topic == self.shared.chats {
            let event: ChatEvent = record.decode()?;
            let at = event.at;
            Decoded::new(Input::Chat(event), Some(at))
        } else {
            let order: EnrichedOrder = record.decode()?;
            let at = order.placed_at;
            Decoded::new(Input::Order(Box::new(order)), Some(at))
        })
    }
}

/// An input record as [`Attributor::decode`] made it.
enum Input {
    Chat(ChatEvent),
    Order(Box<EnrichedOrder>),
}

struct AttributorTask {
    shared: Arc<Shared>,
}

/// The pending store's key of an order: its time first, so a scan meets orders in time
/// order and stops at the watermark.
fn pending_key(order: &EnrichedOrder) -> Vec<u8> {
    let customer = keys::org_customer(&order.organization_id, &order.customer_id);
    time_key(
        order.placed_at,
        &[customer.as_bytes(), b"\0", order.order.id.as_bytes()].concat(),
    )
}

impl Task for AttributorTask {
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>, decoded: Decoded) -> Result<(), Reject> {
        match decoded.take::<Input>() {
            Some(Input::Chat(event)) => self.on_chat_event(ctx, record, &event),
            Some(Input::Order(order)) => self.on_order(ctx, record, *order),
            None => Err(Reject("the record was not decoded".into())),
        }
    }

    fn on_watermark(&mut self, ctx: &mut TaskContext<'_>) {
        if let Err(Reject(reason)) = self.release(ctx) {
            tracing::error!(%reason, "a held order could not be decided");
        }
    }

    fn held_since(&mut self, ctx: &mut TaskContext<'_>, output: &str) -> Option<Timestamp> {
        if output != self.shared.attributed {
            return None;
        }
        ctx.store(PENDING).earliest_time()
    }
}

impl AttributorTask {
    fn on_chat_event(&self, ctx: &mut TaskContext<'_>, record: &Record<'_>, event: &ChatEvent) -> Result<(), Reject> {
        validate_chat_event(event).map_err(|e| Reject(format!("invalid chat event: {e}")))?;
        let key = keys::org_customer(&event.organization_id, &event.customer_id);
        record.expect_key(&key)?;
        let mut chats: CustomerChats = ctx.load(CHATS, key.as_bytes())?.unwrap_or_default();
        if rules::chats::apply(&mut chats, event) {
            // Only orders can still claim a chat: it goes once their watermark is past.
            let orders = ctx.input_watermark(&self.shared.orders);
            match rules::chats::prune(&mut chats, orders, self.shared.chat_retention) {
                Some(expiry) => {
                    let bytes = encode(&chats)?;
                    ctx.store(CHATS).put_expiring(key.as_bytes(), bytes, Some(expiry));
                }
                None => ctx.store(CHATS).delete(key.as_bytes()),
            }
        }
        Ok(())
    }

    /// Decides every pending order placed before the chat stream's watermark, oldest
    /// first.
    fn release(&self, ctx: &mut TaskContext<'_>) -> Result<(), Reject> {
        let chats = ctx.input_watermark(&self.shared.chats);
        while let Some((_, value)) = ctx.store(PENDING).pop_earliest_before(chats) {
            let pending =
                schemas::decode::<PendingOrder>(&value).map_err(|e| Reject(format!("bad pending order: {e}")))?;
            self.decide(ctx, &pending.order, "watermark")?;
        }
        Ok(())
    }

    fn on_order(&self, ctx: &mut TaskContext<'_>, record: &Record<'_>, order: EnrichedOrder) -> Result<(), Reject> {
        let key = keys::org_customer(&order.organization_id, &order.customer_id);
        record.expect_key(&key)?;
        if ctx.input_watermark(&self.shared.chats) > order.placed_at {
            // Every chat event up to the order's time is in.
            return self.decide(ctx, &order, "at_once");
        }
        // Chat events up to this order's time may still be on their way: wait for them.
        let pending_key = pending_key(&order);
        let bytes = encode(&PendingOrder {
            hold_until: order.placed_at,
            order,
        })?;
        ctx.store(PENDING).put(&pending_key, bytes);
        self.shared.metrics.held.inc();
        Ok(())
    }

    fn decide(
        &self,
        ctx: &mut TaskContext<'_>,
        order: &EnrichedOrder,
        released_by: &'static str,
    ) -> Result<(), Reject> {
        let customer_key = keys::org_customer(&order.organization_id, &order.customer_id);
        let chats: CustomerChats = ctx.load(CHATS, customer_key.as_bytes())?.unwrap_or_default();
        let attribution = rules::attribution::attribute(&chats.chats, order.placed_at, self.shared.window);
        let outcome = if attribution.is_some() {
            "attributed"
        } else {
            "unattributed"
        };
        let attributed = AttributedOrder {
            organization_id: order.organization_id.clone(),
            customer_id: order.customer_id.clone(),
            order_id: order.order.id.clone(),
            order_number: order.order.order_number.clone(),
            currency: order.order.currency.clone(),
            total: order.order.total_price,
            placed_at: order.placed_at,
            attribution,
        };
        let bytes = encode(&attributed)?;
        ctx.emit(
            &self.shared.attributed,
            Some(order.organization_id.as_bytes()),
            Some(&bytes),
        );

        let previous: Option<CustomerOrderSummary> = ctx.load(HISTORY, customer_key.as_bytes())?;
        let summary = sidebar::add_order(previous, &attributed);
        let bytes = encode(&summary)?;
        let expiry = summary.updated_at.after(self.shared.history);
        ctx.store(HISTORY)
            .put_expiring(customer_key.as_bytes(), bytes.clone(), Some(expiry));
        ctx.emit(
            &self.shared.customer_orders,
            Some(customer_key.as_bytes()),
            Some(&bytes),
        );
        self.shared
            .metrics
            .decisions
            .get_or_create(&DecisionLabels { outcome, released_by })
            .inc();
        Ok(())
    }
}
