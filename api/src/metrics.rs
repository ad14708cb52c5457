//! The API's own metrics, served on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/v1/orgs/{org}/wins`), `unmatched` for any other path.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The answer's `error_code`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// `wins`, `notifications` (an organization's) or `chat_notifications`.
    pub stream: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamEndLabel {
    pub stream: &'static str,
    /// `slow_consumer`, `shutdown`, or `closed` (the client went away).
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabel, Histogram>,
    pub auth_refusals: Family<ReasonLabel, Counter>,
    pub table_records: Family<TableLabel, Gauge>,
    pub skipped_records: Counter,
    pub streams_open: Family<StreamLabel, Gauge>,
    pub stream_ends: Family<StreamEndLabel, Counter>,
}

impl Default for ApiMetrics {
    /// Metrics registered nowhere (for tests).
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            // 50 µs to about 1.6 s.
            request_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.00005, 2.0, 16))),
            auth_refusals: Family::default(),
            table_records: Family::default(),
            skipped_records: Counter::default(),
            streams_open: Family::default(),
            stream_ends: Family::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ApiMetrics::default();
        registry.register(
            "api_requests",
            "Answers by route and status (an event stream counts when it starts)",
            metrics.requests.clone(),
        );
        registry.register(
            "api_request_seconds",
            "Time to answer, by route (an event stream: to its first byte)",
            metrics.request_seconds.clone(),
        );
        registry.register(
            "api_auth_refusals",
            "Requests refused for their token (401) or its organization (403), by reason",
            metrics.auth_refusals.clone(),
        );
        registry.register(
            "api_table_records",
            "Entries held per table (customer-orders, wins, reports, rates, notification-chats)",
            metrics.table_records.clone(),
        );
        registry.register(
            "api_skipped_records",
            "Records of the followed topics that could not be read (logged)",
            metrics.skipped_records.clone(),
        );
        registry.register(
            "api_streams_open",
            "Event stream clients connected, by stream",
            metrics.streams_open.clone(),
        );
        registry.register(
            "api_stream_ends",
            "Event streams ended by the server or the client, by stream and reason",
            metrics.stream_ends.clone(),
        );
        metrics
    }
}
