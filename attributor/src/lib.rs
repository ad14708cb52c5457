//! The attributor: joins every order of `sales.orders` with the chat that earned it
//! (`chat.sessions`, within the attribution window) and writes `sales.orders.attributed`
//! and the sidebar's `sales.customer-orders`.
//!
//! - [`Config`]: its settings.
//! - [`run`]: runs it until shutdown.

use std::net::SocketAddr;
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

    /// The longest an order waits, in event time, for the chat stream's watermark to
    /// pass it before it is decided with the chats known so far.
    #[arg(long, env = "ATTRIBUTION_MAX_HOLD", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_hold: Duration,
}

/// Runs the attributor until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    config.processing.validate()?;
    tracing::info!(?config, "attributor starting");
    let stage = Stage::new("attributor", &config.kafka, shutdown)?;
    stage.start(config.admin_addr).await?.until_shutdown().await;
    Ok(())
}
