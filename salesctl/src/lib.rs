//! salesctl, the operator's tool.
//!
//! - [`Cli`]: its commands and settings.
//! - [`run`]: carries out one command.
//! - [`topics`]: `salesctl topics ...`.
//! - [`tail`]: `salesctl tail <topic>`.
//! - [`org`]: `salesctl org put`.
//! - [`chat`]: `salesctl chat open|end`.
//! - [`report`]: `salesctl report`.
//! - [`fx`]: `salesctl fx import|put`.
//! - [`sign`]: `salesctl sign`.
//! - [`token`]: `salesctl token` (a development token for the API).

pub mod chat;
pub mod fx;
pub mod org;
pub mod report;
pub mod sign;
pub mod tail;
pub mod token;
pub mod topics;
mod write;

use clap::{Parser, Subcommand};
use kafka_runtime::config::{KafkaArgs, TelemetryArgs};

/// The operator's tool for the sales pipeline.
#[derive(Debug, Parser)]
#[command(
    name = "salesctl",
    version,
    about = "The operator's tool: topics, organization settings, reading topics, reports."
)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and check the pipeline's topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Write an organization's settings.
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// Write a customer's chat events, as the chat platform does (for demos and trials).
    #[command(subcommand)]
    Chat(chat::ChatCommand),
    /// Print a topic's records as JSON lines, decoded by their schema fingerprint
    /// (committed records only).
    Tail(tail::TailArgs),
    /// Print an organization's daily All Sales and AI Agent Sales reports.
    Report(report::ReportArgs),
    /// Write exchange rates to fx.rates.daily (an ECB reference-rate CSV file, or one rate).
    #[command(subcommand)]
    Fx(fx::FxCommand),
    /// Print the signature of a customer id (HMAC-SHA256 of organization_id:customer_id
    /// under a key of the identity keys file), as a store's back end makes it.
    Sign(sign::SignArgs),
    /// Print a development access token of an organization for the API and its console.
    Token(token::TokenArgs),
}

/// Carries out one command; the exit code is the returned one.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Topics(command) => topics::run(&cli.kafka, command).await,
        Command::Org(command) => {
            org::run(&cli.kafka, command).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Chat(command) => {
            chat::run(&cli.kafka, command).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            report::run(&cli.kafka, &args, &mut std::io::stdout().lock()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Fx(command) => {
            fx::run(&cli.kafka, command, &mut std::io::stdout().lock()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Token(args) => {
            token::run(&args, &mut std::io::stdout().lock())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Sign(args) => {
            sign::run(&args, &mut std::io::stdout().lock())?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Tail(args) => {
            tail::tail(&cli.kafka, &args, &mut std::io::stdout().lock()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
