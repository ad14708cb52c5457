//! The runtime's metrics, registered once per worker.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The runtime's metrics.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    pub records: Counter,
    /// Records behind their input's watermark: processed at once, never dropped.
    pub late_records: Counter,
    /// Watermark marks sent to the partitions of watermarked outputs.
    pub marks_sent: Counter,
    pub commits: Counter,
    /// Time to commit a transaction (outputs flushed, offsets added, commit answered).
    pub commit_seconds: Histogram,
    pub aborts: Counter,
    /// Failures the brokers caused (a leader lost, too few in-sync replicas...), each
    /// waited out before the next try.
    pub broker_waits: Counter,
    /// 1 while the worker waits for the brokers to serve again.
    pub waiting_for_brokers: Gauge,
    pub dead_letters: Counter,
    pub restored_records: Counter,
    pub restore_seconds: Histogram,
    /// Duration of the latest restore.
    pub last_restore_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub store_keys: Gauge,
    pub store_bytes: Gauge,
    /// The lowest task watermark of this worker, in microseconds since the epoch.
    pub watermark_micros: Gauge,
}

impl RuntimeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RuntimeMetrics {
            records: Counter::default(),
            late_records: Counter::default(),
            marks_sent: Counter::default(),
            commits: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            aborts: Counter::default(),
            broker_waits: Counter::default(),
            waiting_for_brokers: Gauge::default(),
            dead_letters: Counter::default(),
            restored_records: Counter::default(),
            restore_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            last_restore_seconds: Gauge::default(),
            store_keys: Gauge::default(),
            store_bytes: Gauge::default(),
            watermark_micros: Gauge::default(),
        };
        registry.register("stream_records", "Input records processed", metrics.records.clone());
        registry.register(
            "stream_late_records",
            "Input records behind their input's watermark (processed at once, counted here)",
            metrics.late_records.clone(),
        );
        registry.register(
            "stream_watermark_marks_sent",
            "Watermark mark records sent to the partitions of watermarked outputs (one per partition and transaction, holding the marks of the worker's tasks)",
            metrics.marks_sent.clone(),
        );
        registry.register("stream_commits", "Transactions committed", metrics.commits.clone());
        registry.register(
            "stream_commit_seconds",
            "Time to commit a transaction, from the first changelog write to the broker's answer",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "stream_aborts",
            "Transactions aborted and rewound",
            metrics.aborts.clone(),
        );
        registry.register(
            "stream_broker_waits",
            "Transactions that failed because the brokers could not serve them (a leader lost, too few in-sync replicas), each waited out before the next try",
            metrics.broker_waits.clone(),
        );
        registry.register(
            "stream_waiting_for_brokers",
            "1 while the worker waits for the brokers to serve again, else 0",
            metrics.waiting_for_brokers.clone(),
        );
        registry.register(
            "stream_dead_letters",
            "Records sent to the dead-letter topic",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "stream_restored_records",
            "Changelog records read to restore stores",
            metrics.restored_records.clone(),
        );
        registry.register(
            "stream_restore_seconds",
            "Time to restore the stores of newly assigned partitions",
            metrics.restore_seconds.clone(),
        );
        registry.register(
            "stream_last_restore_seconds",
            "Duration of the latest restore",
            metrics.last_restore_seconds.clone(),
        );
        registry.register(
            "stream_store_keys",
            "Keys held in this worker's stores",
            metrics.store_keys.clone(),
        );
        registry.register(
            "stream_store_bytes",
            "Bytes of keys and values held in this worker's stores",
            metrics.store_bytes.clone(),
        );
        registry.register(
            "stream_watermark_micros",
            "The lowest watermark of this worker's tasks, in microseconds since the epoch",
            metrics.watermark_micros.clone(),
        );
        metrics
    }
}
