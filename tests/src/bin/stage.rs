//! Any stage of the pipeline as a process of this package, so that tests can start it
//! by path and kill it with SIGKILL: `stage <ingest|enricher|attributor|reporter|api>
//! [its flags]`, exactly as the stage's own binary.

use clap::Parser;
use kafka_runtime::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let shutdown = Shutdown::on_signals()?;
    match argv.first().map(String::as_str) {
        Some("ingest") => {
            let config = ingest::Config::parse_from(&argv);
            kafka_runtime::telemetry::init(&config.telemetry)?;
            ingest::run(config, shutdown).await
        }
        Some("enricher") => {
            let config = enricher::Config::parse_from(&argv);
            kafka_runtime::telemetry::init(&config.telemetry)?;
            enricher::run(config, shutdown).await
        }
        Some("attributor") => {
            let config = attributor::Config::parse_from(&argv);
            kafka_runtime::telemetry::init(&config.telemetry)?;
            attributor::run(config, shutdown).await
        }
        Some("reporter") => {
            let config = reporter::Config::parse_from(&argv);
            kafka_runtime::telemetry::init(&config.telemetry)?;
            reporter::run(config, shutdown).await
        }
        Some("api") => {
            let config = api::Config::parse_from(&argv);
            kafka_runtime::telemetry::init(&config.telemetry)?;
            api::run(config, shutdown).await
        }
        other => anyhow::bail!("usage: stage <ingest|enricher|attributor|reporter|api> [flags]; got {other:?}"),
    }
}
