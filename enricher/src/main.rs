use clap::Parser;
use kafka_runtime::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = enricher::Config::parse();
    kafka_runtime::telemetry::init(&config.telemetry)?;
    enricher::run(config, Shutdown::on_signals()?).await
}
