//! Keeps the "broker reachable" readiness check and the `kafka_broker_up` gauge current
//! by asking the cluster for its metadata at a fixed interval.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::admin::ReadyCheck;
use crate::config::KafkaArgs;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

const PROBE_INTERVAL: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The probe; [`BrokerProbe::run`] loops until shutdown.
pub struct BrokerProbe {
    client: Arc<AdminClient<DefaultClientContext>>,
    check: ReadyCheck,
    up: Gauge,
}

impl std::fmt::Debug for BrokerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerProbe").finish_non_exhaustive()
    }
}

impl BrokerProbe {
    pub fn new(kafka: &KafkaArgs, client_id: &str, registry: &mut Registry, check: ReadyCheck) -> Result<Self> {
        let client = kafka
            .client_config(client_id)
            .create()
            .map_err(|e| Error::kafka("cannot create the broker probe client", e))?;
        let up = Gauge::default();
        registry.register(
            "kafka_broker_up",
            "Whether the last metadata request to the broker succeeded (1) or not (0)",
            up.clone(),
        );
        Ok(BrokerProbe {
            client: Arc::new(client),
            check,
            up,
        })
    }

    /// Asks for cluster metadata once and records the answer.
    pub async fn probe_once(&self) -> std::result::Result<(), String> {
        let client = Arc::clone(&self.client);
        // librdkafka's metadata call blocks its thread; keep it off the async workers.
        let answer = tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_metadata(None, PROBE_TIMEOUT)
                .map(|m| m.brokers().len())
        })
        .await;
        let result = match answer {
            Ok(Ok(brokers)) if brokers > 0 => Ok(()),
            Ok(Ok(_)) => Err("the cluster reported no brokers".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("probe task failed: {e}")),
        };
        self.up.set(i64::from(result.is_ok()));
        match &result {
            Ok(()) => self.check.set(true),
            Err(e) => self.check.fail(format!("no broker answers: {e}")),
        }
        result
    }

    /// Probes until shutdown, logging only when reachability changes.
    pub async fn run(self, shutdown: Shutdown) {
        let mut last: Option<bool> = None;
        loop {
            let result = self.probe_once().await;
            if last != Some(result.is_ok()) {
                match &result {
                    Ok(()) => tracing::info!("broker reachable"),
                    Err(e) => tracing::warn!(error = %e, "broker not reachable"),
                }
                last = Some(result.is_ok());
            }
            tokio::select! {
                _ = shutdown.requested() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
    }
}

/// Has a new client connect to one of the cluster's brokers now, by asking for `topic`'s
/// metadata (a topic known to exist, so nothing is created and the answer is small)
/// until a broker known by its id answers.
///
/// librdkafka lets go of its bootstrap connection as soon as it has learned the
/// brokers' ids, failing what was sent on it. A transactional producer looking for its
/// transaction coordinator then finds no broker connected and tries again only after
/// 500 ms: half a second of a worker's start, on most starts. Once a learned broker is
/// connected it goes on at once. (A consumer's group coordinator lookup starts when the
/// consumer is created, before any call could help, and keeps its half second.) A
/// failure is only logged: the lookup still happens, later.
pub(crate) fn connect_now<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>, topic: &str) {
    for _ in 0..3 {
        match client.fetch_metadata(Some(topic), PROBE_TIMEOUT) {
            // The bootstrap connection answers as broker -1.
            Ok(metadata) if metadata.orig_broker_id() >= 0 => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, topic, "early metadata request failed");
                return;
            }
        }
    }
}

/// How often [`nudging`] asks, and how long it waits for an answer.
const NUDGE_INTERVAL: Duration = Duration::from_millis(20);
const NUDGE_TIMEOUT: Duration = Duration::from_millis(250);

/// Runs `f` (a blocking call that waits on librdkafka's producer-id state machine, as
/// `init_transactions` does) while asking for `topic`'s metadata every 20 ms on another
/// thread. Every metadata answer runs that state machine: a producer id request that
/// failed is sent again at once instead of after librdkafka's fixed 500 ms, and one in
/// flight is left alone.
pub(crate) fn nudging<C: rdkafka::ClientContext, T>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    f: impl FnOnce() -> T,
) -> T {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let nudger = std::thread::Builder::new()
            .name("nudge".into())
            .spawn_scoped(scope, || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    // Briefly: `f` returning waits for this thread.
                    let _ = client.fetch_metadata(Some(topic), NUDGE_TIMEOUT);
                    std::thread::sleep(NUDGE_INTERVAL);
                }
            });
        if let Err(e) = nudger {
            tracing::debug!(error = %e, "cannot start the nudging thread");
        }
        let result = f();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
}
