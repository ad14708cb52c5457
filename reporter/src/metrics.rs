//! The reporter's own metrics, next to the runtime's on the admin listener.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counted as records are processed: a transaction that aborts and is replayed counts
/// its records again.
#[derive(Debug, Clone, Default)]
pub struct ReporterMetrics {
    pub reports: Counter,
    pub revisions: Counter,
    pub unattributed: Counter,
    pub too_late: Counter,
}

impl ReporterMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ReporterMetrics::default();
        registry.register(
            "reporter_reports_published",
            "Daily reports published for the first time",
            metrics.reports.clone(),
        );
        registry.register(
            "reporter_report_revisions",
            "Daily reports republished with a higher revision because of a late order",
            metrics.revisions.clone(),
        );
        registry.register(
            "reporter_unattributed_orders",
            "Orders read that no chat earned (they count in no report)",
            metrics.unattributed.clone(),
        );
        registry.register(
            "reporter_orders_too_late",
            "Attributed orders whose day had left the store (older than the report retention); logged, not counted",
            metrics.too_late.clone(),
        );
        metrics
    }
}
