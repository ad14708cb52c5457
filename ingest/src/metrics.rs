//! ingest's own metrics, served on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub status: u16,
    /// The answer's `error_code`, `none` for a 202.
    pub error_code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OrganizationLabel {
    /// Only organizations known from settings appear, so the label stays bounded.
    pub organization: String,
}

#[derive(Debug, Clone)]
pub struct IngestMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub acceptance_seconds: Histogram,
    pub producer_queue_depth: Gauge,
    pub website_not_connected: Family<OrganizationLabel, Counter>,
    pub identity_key_missing: Family<OrganizationLabel, Counter>,
}

impl IngestMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = IngestMetrics {
            requests: Family::default(),
            // 0.5 ms to about 16 s.
            acceptance_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            producer_queue_depth: Gauge::default(),
            website_not_connected: Family::default(),
            identity_key_missing: Family::default(),
        };
        registry.register(
            "ingest_requests",
            "Answers of POST /v1/events by status and error code",
            metrics.requests.clone(),
        );
        registry.register(
            "ingest_acceptance_seconds",
            "Time from request to answer of POST /v1/events (a 202 includes the broker's acknowledgement)",
            metrics.acceptance_seconds.clone(),
        );
        registry.register(
            "ingest_producer_queue_depth",
            "Events handed to the producer and not yet acknowledged by the broker",
            metrics.producer_queue_depth.clone(),
        );
        registry.register(
            "ingest_website_not_connected",
            "Events refused because the page or Origin is not a connected website, per organization",
            metrics.website_not_connected.clone(),
        );
        registry.register(
            "ingest_identity_key_missing",
            "Events answered 503 because a key the organization's settings name is not in the identity keys file, per organization",
            metrics.identity_key_missing.clone(),
        );
        metrics
    }
}
