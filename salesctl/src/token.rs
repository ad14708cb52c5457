//! `salesctl token`: mints a development access token for the API (HS256 under the
//! secret `api` reads from API_JWT_SECRET_FILE), as the chat platform issues one to an
//! agent of an organization. For the demo and trials; production tokens come from the
//! platform.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The organization the token allows.
    #[arg(long, env = "SALESCTL_TOKEN_ORG")]
    pub org: String,

    /// The file holding the HS256 secret, the one `api` reads.
    #[arg(long, env = "API_JWT_SECRET_FILE")]
    pub secret_file: PathBuf,

    /// The audience (`aud`), as `api` expects it.
    #[arg(long, env = "API_JWT_AUDIENCE", default_value = "sales-api")]
    pub audience: String,

    /// The claim naming the organization, as `api` reads it.
    #[arg(long, env = "API_JWT_ORG_CLAIM", default_value = "organization_id")]
    pub org_claim: String,

    /// Who the token is for (`sub`).
    #[arg(long, env = "SALESCTL_TOKEN_SUBJECT", default_value = "dev-agent")]
    pub subject: String,

    /// How long the token is valid.
    #[arg(long, env = "SALESCTL_TOKEN_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
}

/// Prints the token `args` ask for.
pub fn run(args: &TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    schemas::validation::organization_id("--org", &args.org).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = args.secret_file.display();
    let mut secret = std::fs::read(&args.secret_file).with_context(|| format!("cannot read --secret-file {path}"))?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    anyhow::ensure!(
        secret.len() >= 32,
        "--secret-file {path} holds {} bytes; at least 32 are needed",
        secret.len()
    );
    let token = accounts::tokens::mint_hs256(
        &secret,
        &args.audience,
        &args.org_claim,
        &args.org,
        &args.subject,
        args.ttl,
    )?;
    writeln!(out, "{token}")?;
    Ok(())
}
