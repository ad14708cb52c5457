//! The enricher's own metrics, next to the runtime's on the admin listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Counted as records are processed: a transaction that aborts and is replayed counts
/// its records again, so these are close to, not exactly, the committed figures.
#[derive(Debug, Clone, Default)]
pub struct EnricherMetrics {
    pub duplicate_orders: Counter,
    pub duplicate_events: Counter,
    pub duplicate_chat_events: Counter,
    pub orders: Counter,
    pub notifications: Family<KindLabel, Counter>,
}

impl EnricherMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = EnricherMetrics::default();
        registry.register(
            "enricher_duplicate_orders",
            "Orders dropped because their (organization, order id) was already accepted",
            metrics.duplicate_orders.clone(),
        );
        registry.register(
            "enricher_duplicate_events",
            "Widget events dropped because the customer's event id was already applied",
            metrics.duplicate_events.clone(),
        );
        registry.register(
            "enricher_duplicate_chat_events",
            "Chat events dropped because their event id was already applied",
            metrics.duplicate_chat_events.clone(),
        );
        registry.register(
            "enricher_orders",
            "Orders accepted and written to sales.orders",
            metrics.orders.clone(),
        );
        registry.register(
            "enricher_notifications",
            "Agent notifications written to inbox.notifications, by kind",
            metrics.notifications.clone(),
        );
        metrics
    }
}
