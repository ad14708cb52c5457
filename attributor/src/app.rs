//! The attributor as an application of the exactly-once runtime.
//!
//! One task per partition sees `chat.sessions` and `sales.orders` (both keyed
//! `org:customer`, joined by event time). Chats go into the customer's chat store and
//! move the partition's chat watermark (the latest chat event time seen). An order at T
//! is decided once the watermark has reached T; until then it waits in the pending
//! store, for at most the hold bound of event time (a timer), and is then decided with
//! the chats known. The decision goes to `sales.orders.attributed` (keyed `org`) and the
//! customer's new summary to `sales.customer-orders` (keyed `org:customer`).

use std::sync::Arc;
use std::time::Duration;

use kafka_runtime::task::{Application, Record, Reject, StoreSpec, Task, TaskContext, encode};
use schemas::keys;
use schemas::records::{
    AttributedOrder, ChatEvent, CustomerChats, CustomerOrderSummary, EnrichedOrder, PendingOrder, SeenEvent,
};
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
/// The partition's chat watermark (one entry → `SeenEvent`).
pub const WATERMARK: &str = "chat-watermark";
const WATERMARK_KEY: &[u8] = b"chats";

/// The rules' time spans, in event time.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    /// How long after a chat ended an order is still attributed to it.
    pub attribution: Duration,
    /// How late (behind the partition's event time) an order may arrive and still see
    /// every chat it could be attributed to: chats stay this long past the window.
    pub grace: Duration,
    /// The longest an order waits for the chat watermark.
    pub max_hold: Duration,
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
    max_hold: i64,
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
                max_hold: duration_micros(windows.max_hold),
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

    fn stores(&self) -> Vec<StoreSpec> {
        StoreSpec::key_value(&[CHATS, PENDING, HISTORY, WATERMARK])
    }

    fn create_task(&self, _partition: i32) -> Box<dyn Task> {
        Box::new(AttributorTask {
            shared: Arc::clone(&self.shared),
        })
    }

    fn event_time(&self, record: &Record<'_>) -> Option<Timestamp> {
        let value = record.value?;
        if record.topic == self.shared.chats {
            schemas::decode::<ChatEvent>(value).ok().map(|e| e.at)
        } else {
            schemas::decode::<EnrichedOrder>(value).ok().map(|o| o.placed_at)
        }
    }
}

struct AttributorTask {
    shared: Arc<Shared>,
}

/// The pending store's key of an order: its time first, so a scan meets orders in time
/// order and stops at the watermark.
fn pending_key(order: &EnrichedOrder) -> Vec<u8> {
    let mut key = ((order.placed_at.micros() as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    key.extend_from_slice(keys::org_customer(&order.organization_id, &order.customer_id).as_bytes());
    key.push(0);
    key.extend_from_slice(order.order.id.as_bytes());
    key
}

fn pending_time(key: &[u8]) -> Option<Timestamp> {
    let (at, _) = key.split_first_chunk::<8>()?;
    Some(Timestamp((u64::from_be_bytes(*at) ^ (1 << 63)) as i64))
}

impl Task for AttributorTask {
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>) -> Result<(), Reject> {
        let value = record.value.ok_or_else(|| Reject("a record without a value".into()))?;
        if record.topic == self.shared.chats {
            let event = schemas::decode::<ChatEvent>(value).map_err(|e| Reject(format!("not a ChatEvent: {e}")))?;
            self.on_chat_event(ctx, record, &event)
        } else {
            let order =
                schemas::decode::<EnrichedOrder>(value).map_err(|e| Reject(format!("not an EnrichedOrder: {e}")))?;
            self.on_order(ctx, record, order)
        }
    }

    /// The hold bound of a pending order ran out: decide with the chats known.
    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, _at: Timestamp, tag: &[u8]) {
        let pending = match ctx.load::<PendingOrder>(PENDING, tag) {
            Ok(Some(pending)) => pending,
            // Already released by the watermark.
            Ok(None) => return,
            Err(Reject(reason)) => {
                tracing::error!(%reason, "a pending order cannot be read; dropped");
                ctx.store(PENDING).delete(tag);
                return;
            }
        };
        ctx.store(PENDING).delete(tag);
        if let Err(Reject(reason)) = self.decide(ctx, &pending.order, "hold_expired") {
            tracing::error!(%reason, order = %pending.order.order.id, "a held order could not be decided");
        }
    }
}

impl AttributorTask {
    fn on_chat_event(&self, ctx: &mut TaskContext<'_>, record: &Record<'_>, event: &ChatEvent) -> Result<(), Reject> {
        validate_chat_event(event).map_err(|e| Reject(format!("invalid chat event: {e}")))?;
        let key = keys::org_customer(&event.organization_id, &event.customer_id);
        record.expect_key(&key)?;
        let mut chats: CustomerChats = ctx.load(CHATS, key.as_bytes())?.unwrap_or_default();
        if rules::chats::apply(&mut chats, event) {
            match rules::chats::prune(&mut chats, ctx.stream_time(), self.shared.chat_retention) {
                Some(expiry) => {
                    let bytes = encode(&chats)?;
                    ctx.store(CHATS).put_expiring(key.as_bytes(), bytes, Some(expiry));
                }
                None => ctx.store(CHATS).delete(key.as_bytes()),
            }
        }
        let watermark = self.watermark(ctx)?;
        if watermark.is_none_or(|w| event.at > w) {
            let bytes = encode(&SeenEvent { seen_at: event.at })?;
            ctx.store(WATERMARK).put(WATERMARK_KEY, bytes);
            self.release_up_to(ctx, event.at)?;
        }
        Ok(())
    }

    fn watermark(&self, ctx: &mut TaskContext<'_>) -> Result<Option<Timestamp>, Reject> {
        Ok(ctx
            .load::<SeenEvent>(WATERMARK, WATERMARK_KEY)?
            .map(|seen| seen.seen_at))
    }

    /// Decides every pending order placed at or before `watermark`, oldest first.
    fn release_up_to(&self, ctx: &mut TaskContext<'_>, watermark: Timestamp) -> Result<(), Reject> {
        loop {
            let next = ctx
                .store(PENDING)
                .prefix(&[])
                .next()
                .filter(|(key, _)| pending_time(key).is_some_and(|at| at <= watermark))
                .map(|(key, value)| (key.to_vec(), value.to_vec()));
            let Some((key, value)) = next else {
                return Ok(());
            };
            ctx.store(PENDING).delete(&key);
            let pending =
                schemas::decode::<PendingOrder>(&value).map_err(|e| Reject(format!("bad pending order: {e}")))?;
            ctx.cancel(pending.hold_until, &key);
            self.decide(ctx, &pending.order, "watermark")?;
        }
    }

    fn on_order(&self, ctx: &mut TaskContext<'_>, record: &Record<'_>, order: EnrichedOrder) -> Result<(), Reject> {
        let key = keys::org_customer(&order.organization_id, &order.customer_id);
        record.expect_key(&key)?;
        if self.watermark(ctx)?.is_some_and(|w| w >= order.placed_at) {
            return self.decide(ctx, &order, "watermark");
        }
        // Chat events up to this order's time may still be on their way: wait for them.
        let hold_until = order.placed_at.after(self.shared.max_hold);
        let pending_key = pending_key(&order);
        let bytes = encode(&PendingOrder { order, hold_until })?;
        ctx.store(PENDING).put(&pending_key, bytes);
        ctx.schedule(hold_until, &pending_key);
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
