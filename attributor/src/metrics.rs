//! The attributor's own metrics, next to the runtime's on the admin listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `attributed` or `unattributed`.
    pub outcome: &'static str,
    /// What let the order be decided: `at_once` (the chat stream's watermark had passed
    /// it when it came) or `watermark` (it waited until the watermark passed it).
    pub released_by: &'static str,
}

/// Counted as records are processed: a transaction that aborts and is replayed counts
/// its records again.
#[derive(Debug, Clone, Default)]
pub struct AttributorMetrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub held: Counter,
}

impl AttributorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AttributorMetrics::default();
        registry.register(
            "attributor_orders",
            "Orders decided, by outcome and by what released them",
            metrics.decisions.clone(),
        );
        registry.register(
            "attributor_held_orders",
            "Orders that had to wait for the chat stream's watermark",
            metrics.held.clone(),
        );
        metrics
    }
}
