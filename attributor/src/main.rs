use clap::Parser;
use kafka_runtime::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = attributor::Config::parse();
    kafka_runtime::telemetry::init(&config.telemetry)?;
    attributor::run(config, Shutdown::on_signals()?).await
}
