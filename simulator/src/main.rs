//! `simulator`: a store and its chat platform, sending a deterministic week of trade.

use std::net::SocketAddr;

use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use schemas::values::Timestamp;

/// Sends a simulated store's trade: the organizations' settings, the past days straight
/// to the topics (a trusted producer), and today's widget events through ingest.
#[derive(Debug, Parser)]
#[command(name = "simulator", version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The seed: the same seed sends the same trade.
    #[arg(long, env = "SIMULATOR_SEED", default_value_t = 42)]
    seed: u64,
    /// Past days of trade.
    #[arg(long, env = "SIMULATOR_DAYS", default_value_t = 7)]
    days: u32,
    /// Customer visits per organization and day.
    #[arg(long, env = "SIMULATOR_VISITS", default_value_t = 12)]
    visits: u32,
    /// ingest's public listener.
    #[arg(long, env = "INGEST_ADDR", default_value = "127.0.0.1:8080")]
    ingest: SocketAddr,
    /// What to send: `past` (the organizations and the past days, straight to the
    /// topics: a backfill, which needs no stage running), `today` (today's trade through
    /// ingest), or `all` (both, in that order).
    #[arg(long, env = "SIMULATOR_PART", value_enum, default_value_t = Part::All)]
    part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    All,
    Past,
    Today,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = simulator::plan(cli.seed, cli.days, cli.visits, now);
    let producer = simulator::write::producer(&cli.kafka)?;
    if cli.part != Part::Today {
        simulator::write::past(&cli.kafka, &producer, &plan).await?;
        println!(
            "simulator: {} organizations, {} past records written ({} orders, {} copies fired again from a second device)",
            plan.organizations.len(),
            plan.past.len() + plan.past_later.len(),
            simulator::plan::order_ids(&plan.past).len(),
            plan.past_later.len()
        );
    }
    if cli.part != Part::Past {
        let accepted = simulator::write::today(&cli.kafka, &producer, cli.ingest, &plan.today).await?;
        println!("simulator: {accepted} of today's widget events accepted by ingest");
    }
    Ok(())
}
