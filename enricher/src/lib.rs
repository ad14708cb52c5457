//! The enricher: joins widget events (`sales.events.raw`) with the customer's chats
//! (`chat.sessions`), keeps carts, dedupes orders through `sales.orders.by-id`, and
//! writes `sales.orders` and `inbox.notifications`.
//!
//! - [`Config`]: its settings.
//! - [`run`]: runs it until shutdown.
//! - [`app`]: the stream logic on the exactly-once runtime; [`cart`]: the cart rules;
//!   the chat rules are in the `rules` crate, shared with the attributor.
//! - [`metrics`]: duplicates and notifications counted.

pub mod app;
pub mod cart;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kafka_runtime::config::{KafkaArgs, ProcessingArgs, TelemetryArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::stage::Stage;

/// Settings of the enricher; every flag also reads its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "enricher",
    version,
    about = "Joins widget events with live chats, keeps carts, dedupes orders and notifies agents."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub processing: ProcessingArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:9181")]
    pub admin_addr: SocketAddr,

    /// Consumer group of the enricher's workers; replicas with the same group share
    /// the partitions.
    #[arg(long, env = "ENRICHER_GROUP_ID", default_value = "sales-enricher")]
    pub group_id: String,

    /// How long, in event time, an order id stays in the dedupe seen-set.
    #[arg(long, env = "DEDUPE_RETENTION", default_value = "90days", value_parser = humantime::parse_duration)]
    pub dedupe_retention: Duration,

    /// How long, in event time, an ended chat stays in the chat store, and how long an
    /// idle customer's cart is kept.
    #[arg(long, env = "CHAT_RETENTION", default_value = "30days", value_parser = humantime::parse_duration)]
    pub chat_retention: Duration,

    /// How long, in event time, a widget event id is remembered, so a client's retry of
    /// the same event is dropped. The default is the retention of sales.events.raw: no
    /// replay reaches further back.
    #[arg(long, env = "EVENT_ID_RETENTION", default_value = "7days", value_parser = humantime::parse_duration)]
    pub event_id_retention: Duration,
}

/// Runs the enricher until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    config.processing.validate()?;
    tracing::info!(?config, "enricher starting");
    let mut stage = Stage::new("enricher", &config.kafka, shutdown)?;
    let metrics = metrics::EnricherMetrics::register(stage.registry());
    let retention = app::Retention {
        orders: config.dedupe_retention,
        chats: config.chat_retention,
        event_ids: config.event_id_retention,
    };
    let app = app::Enricher::new(&config.group_id, &config.kafka.topic_names()?, retention, metrics);
    stage
        .run_application(
            config.admin_addr,
            Arc::new(app),
            config.kafka,
            config.processing,
            std::future::ready(()),
        )
        .await?;
    Ok(())
}
