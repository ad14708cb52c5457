//! The reporter: rolls attributed orders (`sales.orders.attributed`) into the wins
//! counter (`sales.wins`) and the daily reports (`sales.reports.daily`).
//!
//! - [`Config`]: its settings.
//! - [`run`]: runs it until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kafka_runtime::config::{KafkaArgs, ProcessingArgs, TelemetryArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::stage::Stage;

/// Settings of the reporter; every flag also reads its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "reporter",
    version,
    about = "Publishes the wins counter and the daily All Sales and AI Agent Sales reports."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub processing: ProcessingArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:9183")]
    pub admin_addr: SocketAddr,

    /// Consumer group of the reporter's workers.
    #[arg(long, env = "REPORTER_GROUP_ID", default_value = "sales-reporter")]
    pub group_id: String,

    /// How long after an org-local day ends (in event time) its report is published;
    /// orders arriving later republish it with the next revision.
    #[arg(long, env = "REPORT_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub report_grace: Duration,
}

/// Runs the reporter until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    config.processing.validate()?;
    tracing::info!(?config, "reporter starting");
    let stage = Stage::new("reporter", &config.kafka, shutdown)?;
    stage.start(config.admin_addr).await?.until_shutdown().await;
    Ok(())
}
