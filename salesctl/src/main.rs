use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = salesctl::Cli::parse();
    kafka_runtime::telemetry::init(&cli.telemetry)?;
    salesctl::run(cli).await
}
