//! The counting stage as its own process, so tests can kill it with SIGKILL.

use std::sync::Arc;

use clap::Parser;
use kafka_runtime::admin::Readiness;
use kafka_runtime::config::{KafkaArgs, ProcessingArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::worker::{RuntimeMetrics, WorkerConfig};
use sales_tests::counting::Counting;

/// A counting stage (test yardstick of the exactly-once runtime).
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    processing: ProcessingArgs,
    /// Application id (consumer group).
    #[arg(long, env = "COUNTING_APP_ID")]
    app_id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = tracing_subscriber_init();
    let app = Arc::new(Counting {
        id: cli.app_id.clone(),
        prefix: cli.kafka.topic_prefix.clone(),
    });
    let config = WorkerConfig {
        kafka: cli.kafka,
        processing: cli.processing,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = RuntimeMetrics::register(&mut registry);
    let ready = Readiness::default().check("state");
    kafka_runtime::worker::run(app, config, metrics, ready, Shutdown::on_signals()?).await?;
    Ok(())
}

fn tracing_subscriber_init() -> Result<(), kafka_runtime::Error> {
    kafka_runtime::telemetry::init(&kafka_runtime::config::TelemetryArgs {
        log_format: kafka_runtime::config::LogFormat::Text,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    })
}
