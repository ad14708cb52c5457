use clap::Parser;
use kafka_runtime::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ingest::Config::parse();
    kafka_runtime::telemetry::init(&config.telemetry)?;
    ingest::run(config, Shutdown::on_signals()?).await
}
