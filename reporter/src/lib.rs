//! The reporter: rolls attributed orders (`sales.orders.attributed`) into the wins
//! counter (`sales.wins`) and the daily reports (`sales.reports.daily`).
//!
//! - [`Config`]: its settings.
//! - [`run`]: runs it until shutdown.

pub mod app;
pub mod metrics;
pub mod rollup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use accounts::settings::Organizations;
use anyhow::Context;
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

    /// How long after a day ends (in event time) its totals are kept, so a late order
    /// can still revise its report; an order older than that is logged and not counted.
    #[arg(long, env = "REPORT_RETENTION", default_value = "35days", value_parser = humantime::parse_duration)]
    pub report_retention: Duration,

    /// How long (in event time; the wall clock once input is idle) late orders for a
    /// day already published are gathered before the day is published again, so a
    /// burst of them makes one revision rather than one each.
    #[arg(long, env = "REPORT_REVISION_DELAY", default_value = "1m", value_parser = humantime::parse_duration)]
    pub revision_delay: Duration,
}

/// Runs the reporter until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    config.processing.validate()?;
    tracing::info!(?config, "reporter starting");
    let mut stage = Stage::new("reporter", &config.kafka, shutdown.clone())?;
    let metrics = metrics::ReporterMetrics::register(stage.registry());
    // Each organization's timezone decides its days: the settings are read to their end
    // before the first order is.
    let organizations = Organizations::default();
    let settings_ready = stage.readiness().check("settings");
    let follower = tokio::spawn({
        let (kafka, organizations, shutdown) = (config.kafka.clone(), organizations.clone(), shutdown.clone());
        async move { accounts::settings::follow_or_stop("reporter", &kafka, organizations, settings_ready, shutdown).await }
    });
    let periods = app::Periods {
        grace: config.report_grace,
        retention: config.report_retention,
        revision_delay: config.revision_delay,
    };
    let topics = config.kafka.topic_names()?;
    let app = app::Reporter::new(&config.group_id, &topics, periods, organizations.clone(), metrics);
    let loaded = async {
        while !organizations.is_loaded() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let result = stage
        .run_application(
            config.admin_addr,
            Arc::new(app),
            config.kafka,
            config.processing,
            loaded,
        )
        .await;
    if follower.is_finished() {
        follower.await.context("settings follower panicked")??;
    } else {
        follower.abort();
    }
    result?;
    Ok(())
}
