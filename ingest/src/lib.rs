//! ingest: the HTTP gateway widget events enter through. It validates each event and
//! answers 202 only once `sales.events.raw` has acknowledged it.
//!
//! - [`Config`]: its settings.
//! - [`api`]: the public routes (`/v1/*`).
//! - [`run`]: serves the public and admin listeners until shutdown.

pub mod api;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use kafka_runtime::config::{KafkaArgs, TelemetryArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::stage::Stage;

/// Settings of ingest; every flag also reads its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", version, about = "The HTTP gateway widget events enter through.")]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Address of the public listener serving /v1/* (the only routes it serves).
    #[arg(long, env = "INGEST_LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:9180")]
    pub admin_addr: SocketAddr,
}

/// Serves ingest until shutdown is requested; requests in flight finish first.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(?config, "ingest starting");
    let public = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {} (INGEST_LISTEN_ADDR)", config.listen_addr))?;
    let stage = Stage::new("ingest", &config.kafka, shutdown.clone())?;
    let running = stage.start(config.admin_addr).await?;
    tracing::info!(listen_addr = %config.listen_addr, "public listener up: /v1/*");
    axum::serve(public, api::router())
        .with_graceful_shutdown(async move { shutdown.requested().await })
        .await
        .context("public listener failed")?;
    running.until_shutdown().await;
    Ok(())
}
