//! The attributor: joins every order of `sales.orders` with the chat that earned it
//! (`chat.sessions`, within the attribution window) and writes `sales.orders.attributed`
//! and the sidebar's `sales.customer-orders`.
//!
//! - [`Config`]: its settings.
//! - [`run`]: runs it until shutdown.
//! - [`app`]: the stream logic on the exactly-once runtime (the attribution rule itself
//!   is `rules::attribution`); [`sidebar`]: the customer's order summary.
//! - [`metrics`]: decisions counted by outcome.

pub mod app;
pub mod metrics;
pub mod sidebar;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kafka_runtime::config::{KafkaArgs, ProcessingArgs, TelemetryArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::stage::Stage;

/// Settings of the attributor; every flag also reads its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "attributor",
    version,
    about = "Attributes every order to the chat that earned it, within 30 days."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub processing: ProcessingArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:9182")]
    pub admin_addr: SocketAddr,

    /// Consumer group of the attributor's workers.
    #[arg(long, env = "ATTRIBUTOR_GROUP_ID", default_value = "sales-attributor")]
    pub group_id: String,

    /// How long after a chat ended an order is still attributed to it.
    #[arg(long, env = "ATTRIBUTION_WINDOW", default_value = "30days", value_parser = humantime::parse_duration)]
    pub attribution_window: Duration,

    /// How far behind the orders' watermark an order may arrive (late) and still be
    /// attributed correctly: ended chats are kept this long past the attribution window.
    #[arg(long = "attribution-grace", env = "ATTRIBUTION_GRACE", default_value = "2days", value_parser = humantime::parse_duration)]
    pub grace: Duration,

    /// How long, in event time, a customer's sidebar summary is kept after their last
    /// order; a customer who orders again later starts a new summary.
    #[arg(long, env = "HISTORY_RETENTION", default_value = "400days", value_parser = humantime::parse_duration)]
    pub history_retention: Duration,
}

/// Runs the attributor until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    config.processing.validate()?;
    tracing::info!(?config, "attributor starting");
    let mut stage = Stage::new("attributor", &config.kafka, shutdown)?;
    let metrics = metrics::AttributorMetrics::register(stage.registry());
    let windows = app::Windows {
        attribution: config.attribution_window,
        grace: config.grace,
        history: config.history_retention,
    };
    let app = app::Attributor::new(&config.group_id, &config.kafka.topic_names()?, windows, metrics);
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
