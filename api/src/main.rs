use clap::Parser;
use kafka_runtime::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = api::Config::parse();
    kafka_runtime::telemetry::init(&config.telemetry)?;
    api::run(config, Shutdown::on_signals()?).await
}
