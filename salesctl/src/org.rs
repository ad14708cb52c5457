//! `salesctl org put`: writes an organization's settings (connected websites, timezone,
//! rate limit, signed customer identity) to the compacted `accounts.organizations`
//! topic, where ingest and the reporter pick them up while running.

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use kafka_runtime::config::KafkaArgs;
use schemas::records::{IdentityMode, OrganizationSettings};
use schemas::topics::Topic;
use schemas::values::Timestamp;

use crate::write;

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

    /// Whether ingest checks the customer_signature of the organization's events: off
    /// (not checked), optional (checked when sent) or required (every event).
    #[arg(long, env = "SALESCTL_ORG_IDENTITY", value_enum, default_value = "off")]
    pub identity: Identity,

    /// The id, in ingest's identity keys file, of the key the organization's back end
    /// signs customer ids with; needed unless --identity is off.
    #[arg(long, env = "SALESCTL_ORG_KEY_ID")]
    pub key_id: Option<String>,

    /// During a key rotation, the key signed with before --key-id, still accepted; put
    /// the settings again without it once the store signs with the new key only.
    #[arg(long, env = "SALESCTL_ORG_PREVIOUS_KEY_ID", requires = "key_id")]
    pub previous_key_id: Option<String>,
}

/// `--identity`: the organization's identity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Identity {
    Off,
    Optional,
    Required,
}

impl From<Identity> for IdentityMode {
    fn from(identity: Identity) -> Self {
        match identity {
            Identity::Off => IdentityMode::Off,
            Identity::Optional => IdentityMode::Optional,
            Identity::Required => IdentityMode::Required,
        }
    }
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
    for (flag, id) in [("--key-id", &args.key_id), ("--previous-key-id", &args.previous_key_id)] {
        if let Some(id) = id {
            accounts::identity::key_id(id).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        }
    }
    if args.identity != Identity::Off && args.key_id.is_none() {
        bail!(
            "--identity {} needs --key-id: the id, in ingest's identity keys file, of the key the store signs customer ids with",
            IdentityMode::from(args.identity).as_str()
        );
    }
    if args.previous_key_id.is_some() && args.previous_key_id == args.key_id {
        bail!("--previous-key-id must differ from --key-id");
    }
    Ok(OrganizationSettings {
        organization_id: args.id.clone(),
        websites,
        timezone: args.timezone.clone(),
        rate_limit_per_second: args.rate,
        rate_limit_burst: args.burst,
        updated_at: Some(Timestamp::from_datetime(chrono::Utc::now())),
        identity_mode: args.identity.into(),
        identity_key_id: args.key_id.clone(),
        identity_previous_key_id: args.previous_key_id.clone(),
    })
}

pub async fn run(kafka: &KafkaArgs, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Put(args) => {
            let settings = settings(&args)?;
            let topic = kafka.topic_names()?.name(Topic::Organizations);
            let producer = write::producer(kafka, "salesctl-org")?;
            let value = schemas::encode(&settings)?;
            let delivery = write::send(&producer, kafka, &topic, &settings.organization_id, &value).await?;
            println!(
                "organization {}: websites {}, timezone {}, rate {}, signed identity {}; written to {topic} (partition {}, offset {})",
                settings.organization_id,
                settings.websites.join(", "),
                settings.timezone,
                match settings.rate_limit() {
                    Some((rate, burst)) => format!("{rate}/s burst {burst}"),
                    None => "the deployment default".to_string(),
                },
                identity_summary(&settings),
                delivery.partition,
                delivery.offset
            );
            Ok(())
        }
    }
}

/// `required (key K, previous key P)`, as `org put` reports it.
fn identity_summary(settings: &OrganizationSettings) -> String {
    let mut summary = settings.identity_mode.as_str().to_string();
    let keys: Vec<String> = [
        ("key", &settings.identity_key_id),
        ("previous key", &settings.identity_previous_key_id),
    ]
    .into_iter()
    .filter_map(|(what, id)| id.as_ref().map(|id| format!("{what} {id}")))
    .collect();
    if !keys.is_empty() {
        summary.push_str(&format!(" ({})", keys.join(", ")));
    }
    summary
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
    fn identity_is_off_without_keys_unless_asked() {
        let s = put(&["--id", "o", "--website", "a.com"]).unwrap();
        assert_eq!(
            (s.identity_mode, s.identity_key_id, s.identity_previous_key_id),
            (IdentityMode::Off, None, None)
        );
    }

    #[test]
    fn identity_required_with_a_key_and_a_rotation() {
        let s = put(&[
            "--id",
            "o",
            "--website",
            "a.com",
            "--identity",
            "required",
            "--key-id",
            "k2",
        ])
        .unwrap();
        assert_eq!(
            (
                s.identity_mode,
                s.identity_key_id.as_deref(),
                s.identity_previous_key_id.as_deref()
            ),
            (IdentityMode::Required, Some("k2"), None)
        );
        assert_eq!(identity_summary(&s), "required (key k2)");
        let s = put(&[
            "--id",
            "o",
            "--website",
            "a.com",
            "--identity",
            "optional",
            "--key-id",
            "k2",
            "--previous-key-id",
            "k1",
        ])
        .unwrap();
        assert_eq!(
            (
                s.identity_mode,
                s.identity_key_id.as_deref(),
                s.identity_previous_key_id.as_deref()
            ),
            (IdentityMode::Optional, Some("k2"), Some("k1"))
        );
        assert_eq!(identity_summary(&s), "optional (key k2, previous key k1)");
    }

    #[test]
    fn identity_without_a_usable_key_is_refused() {
        let err = put(&["--id", "o", "--website", "a.com", "--identity", "required"]).unwrap_err();
        assert!(err.to_string().contains("needs --key-id"), "{err}");
        assert!(
            put(&[
                "--id",
                "o",
                "--website",
                "a.com",
                "--identity",
                "sometimes",
                "--key-id",
                "k"
            ])
            .is_err()
        );
        let err = put(&[
            "--id",
            "o",
            "--website",
            "a.com",
            "--identity",
            "optional",
            "--key-id",
            "k 1",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--key-id"), "{err}");
        // A previous key alone, or the same key twice, is no rotation.
        assert!(put(&["--id", "o", "--website", "a.com", "--previous-key-id", "k1"]).is_err());
        let err = put(&[
            "--id",
            "o",
            "--website",
            "a.com",
            "--identity",
            "required",
            "--key-id",
            "k1",
            "--previous-key-id",
            "k1",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("must differ"), "{err}");
    }

    #[test]
    fn a_zero_rate_or_a_burst_without_rate_is_refused() {
        assert!(put(&["--id", "o", "--website", "a.com", "--rate", "0"]).is_err());
        assert!(put(&["--id", "o", "--website", "a.com", "--burst", "5"]).is_err());
    }
}
