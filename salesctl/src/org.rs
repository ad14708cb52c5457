//! `salesctl org put`: writes an organization's settings (connected websites, timezone,
//! rate limit) to the compacted `accounts.organizations` topic, where ingest and the
//! reporter pick them up while running.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use kafka_runtime::config::KafkaArgs;
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::records::OrganizationSettings;
use schemas::topics::Topic;
use schemas::values::Timestamp;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Write an organization's settings; they replace any earlier ones.
    Put(PutArgs),
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The organization id (1-64 of A-Z a-z 0-9 _ -).
    #[arg(long = "id", env = "SALESCTL_ORG_ID")]
    pub id: String,

    /// A connected website's host, such as shop.example.com; its subdomains are
    /// connected too. Repeat for several.
    #[arg(
        long = "website",
        env = "SALESCTL_ORG_WEBSITES",
        value_delimiter = ',',
        required = true
    )]
    pub websites: Vec<String>,

    /// IANA timezone of the organization's calendar days (reports, wins counter).
    #[arg(long, env = "SALESCTL_ORG_TIMEZONE", default_value = "UTC")]
    pub timezone: String,

    /// Events per second the organization may send (default: the deployment's).
    #[arg(long, env = "SALESCTL_ORG_RATE", value_parser = clap::value_parser!(i32).range(1..))]
    pub rate: Option<i32>,

    /// Burst above the rate (default: twice the rate).
    #[arg(long, env = "SALESCTL_ORG_BURST", value_parser = clap::value_parser!(i32).range(1..), requires = "rate")]
    pub burst: Option<i32>,
}

/// Checks the settings an operator typed, with the reason for each refusal.
pub fn settings(args: &PutArgs) -> anyhow::Result<OrganizationSettings> {
    schemas::validation::organization_id("--id", &args.id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut websites = Vec::new();
    for website in &args.websites {
        websites.push(schemas::validation::website_host("--website", website).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    if args.timezone.parse::<chrono_tz::Tz>().is_err() {
        bail!(
            "--timezone {:?} is not an IANA timezone such as Europe/Warsaw or America/New_York",
            args.timezone
        );
    }
    Ok(OrganizationSettings {
        organization_id: args.id.clone(),
        websites,
        timezone: args.timezone.clone(),
        rate_limit_per_second: args.rate,
        rate_limit_burst: args.burst,
        updated_at: Some(Timestamp::from_datetime(chrono::Utc::now())),
    })
}

pub async fn run(kafka: &KafkaArgs, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Put(args) => {
            let settings = settings(&args)?;
            let topic = kafka.topic_names()?.name(Topic::Organizations);
            let producer: FutureProducer = kafka
                .client_config("salesctl-org")
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("message.timeout.ms", "15000")
                .create()
                .context("cannot create the producer")?;
            let value = schemas::encode(&settings)?;
            let delivery = producer
                .send(
                    FutureRecord::to(&topic).key(&settings.organization_id).payload(&value),
                    Duration::from_secs(15),
                )
                .await
                .map_err(|(e, _)| e)
                .with_context(|| format!("cannot write to {topic} at {}", kafka.bootstrap_servers))?;
            println!(
                "organization {}: websites {}, timezone {}, rate {}; written to {topic} (partition {}, offset {})",
                settings.organization_id,
                settings.websites.join(", "),
                settings.timezone,
                match settings.rate_limit() {
                    Some((rate, burst)) => format!("{rate}/s burst {burst}"),
                    None => "the deployment default".to_string(),
                },
                delivery.partition,
                delivery.offset
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: OrgCommand,
    }

    fn put(args: &[&str]) -> anyhow::Result<OrganizationSettings> {
        let cli = Cli::try_parse_from([&["x", "put"], args].concat())?;
        let OrgCommand::Put(args) = cli.command;
        settings(&args)
    }

    #[test]
    fn settings_are_normalized() {
        let s = put(&[
            "--id",
            "org_1",
            "--website",
            "Shop.Example.com.",
            "--website",
            "example.org",
            "--rate",
            "5",
        ])
        .unwrap();
        assert_eq!(s.websites, ["shop.example.com", "example.org"]);
        assert_eq!(
            (s.timezone.as_str(), s.rate_limit_per_second, s.rate_limit_burst),
            ("UTC", Some(5), None)
        );
    }

    #[test]
    fn a_url_instead_of_a_host_is_refused_with_a_hint() {
        let err = put(&["--id", "org_1", "--website", "https://shop.example.com"]).unwrap_err();
        assert!(err.to_string().contains("host only"), "{err}");
    }

    #[test]
    fn an_unknown_timezone_is_refused() {
        assert!(put(&["--id", "org_1", "--website", "a.com", "--timezone", "Mars/Olympus"]).is_err());
        assert!(put(&["--id", "org_1", "--website", "a.com", "--timezone", "Europe/Warsaw"]).is_ok());
    }

    #[test]
    fn a_bad_id_is_refused() {
        assert!(put(&["--id", "org 1", "--website", "a.com"]).is_err());
    }

    #[test]
    fn a_zero_rate_or_a_burst_without_rate_is_refused() {
        assert!(put(&["--id", "o", "--website", "a.com", "--rate", "0"]).is_err());
        assert!(put(&["--id", "o", "--website", "a.com", "--burst", "5"]).is_err());
    }
}
