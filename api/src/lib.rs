//! api: what agents and managers see, served from the pipeline's topics. It follows
//! `sales.customer-orders`, `sales.wins`, `sales.reports.daily`, `fx.rates.daily` and
//! `inbox.notifications` (`read_committed`) into memory, answers lookups and the report
//! query, pushes changes as Server-Sent Events, and serves the agent console.
//!
//! - [`Config`]: its settings.
//! - [`tables`]: the topics as tables, restored at start and kept current.
//! - [`streams`]: event streams, resumable with `Last-Event-ID`.
//! - [`auth`]: the bearer token every `/v1` request carries.
//! - [`routes`]: the HTTP routes.
//! - [`console`]: the agent console's static files.
//! - [`money`]: amounts shown with their currency's digits.
//! - [`metrics`]: the API's metrics.
//! - [`run`]: serves until shutdown.

pub mod auth;
pub mod console;
pub mod metrics;
pub mod money;
pub mod routes;
pub mod streams;
pub mod tables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use accounts::tokens::{Expectations, TokenAlgorithm, Verifier, VerifierKey};
use anyhow::Context;
use clap::{Parser, ValueEnum};
use kafka_runtime::config::{KafkaArgs, TelemetryArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::stage::Stage;
use schemas::topics::Topic;

use crate::metrics::ApiMetrics;
use crate::tables::Tables;

/// Settings of the API; every flag also reads its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    version,
    about = "Serves the sidebar, the wins counter, chat notifications and the reports, and the agent console."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// Address of the listener serving /v1/*, /openapi.json and the console at /console/.
    #[arg(long, env = "API_LISTEN_ADDR", default_value = "127.0.0.1:8081")]
    pub listen_addr: SocketAddr,

    /// Address of the admin listener serving /healthz, /readyz and /metrics.
    #[arg(long, env = "ADMIN_ADDR", default_value = "127.0.0.1:9184")]
    pub admin_addr: SocketAddr,

    /// The algorithm the chat platform signs its tokens with; tokens of any other are
    /// refused.
    #[arg(long, env = "API_JWT_ALGORITHM", value_enum, default_value = "hs256")]
    pub jwt_algorithm: JwtAlgorithm,

    /// File holding the HS256 shared secret (at least 32 bytes; a trailing newline is
    /// ignored).
    #[arg(long, env = "API_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// File holding the PEM public key of RS256 or ES256 tokens.
    #[arg(long, env = "API_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// The audience (`aud`) a token must name.
    #[arg(long, env = "API_JWT_AUDIENCE", default_value = "sales-api")]
    pub jwt_audience: String,

    /// The issuer (`iss`) a token must name; unchecked when unset.
    #[arg(long, env = "API_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The claim naming the organization a token is for.
    #[arg(long, env = "API_JWT_ORG_CLAIM", default_value = "organization_id")]
    pub jwt_org_claim: String,

    /// Clock skew allowed on a token's expiry.
    #[arg(long, env = "API_JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// Comma-separated origins (`https://console.example.com`) whose pages may call the
    /// API from a browser; the console served here needs none.
    #[arg(long, env = "API_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// How often an idle event stream sends a keep-alive comment.
    #[arg(long, env = "API_KEEPALIVE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub keepalive: Duration,

    /// Notifications kept per chat for its list and for resuming its stream.
    #[arg(long, env = "API_CHAT_HISTORY", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_history: u32,

    /// Notifications kept per organization for its list and for resuming its stream.
    #[arg(long, env = "API_ORG_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub org_history: u32,

    /// Changes an event stream client may fall behind by before it is disconnected
    /// (told why, in an `error` event); it resumes with Last-Event-ID.
    #[arg(long, env = "API_STREAM_BUFFER", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..))]
    pub stream_buffer: u32,
}

/// The token algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
    Es256,
}

impl Config {
    /// The token verifier the flags describe, or why they describe none.
    pub fn verifier(&self) -> anyhow::Result<Verifier> {
        let algorithm = match self.jwt_algorithm {
            JwtAlgorithm::Hs256 => TokenAlgorithm::Hs256,
            JwtAlgorithm::Rs256 => TokenAlgorithm::Rs256,
            JwtAlgorithm::Es256 => TokenAlgorithm::Es256,
        };
        let read = |path: &PathBuf, flag: &str| {
            std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
        };
        let material = match (algorithm, &self.jwt_secret_file, &self.jwt_public_key_file) {
            (TokenAlgorithm::Hs256, Some(path), None) => {
                let mut secret = read(path, "API_JWT_SECRET_FILE")?;
                while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    secret.pop();
                }
                (secret, true)
            }
            (TokenAlgorithm::Hs256, _, _) => {
                anyhow::bail!("HS256 tokens need API_JWT_SECRET_FILE (and no public key file)")
            }
            (_, None, Some(path)) => (read(path, "API_JWT_PUBLIC_KEY_FILE")?, false),
            _ => anyhow::bail!("RS256 and ES256 tokens need API_JWT_PUBLIC_KEY_FILE (and no secret file)"),
        };
        let key = if material.1 {
            VerifierKey::Secret(&material.0)
        } else {
            VerifierKey::PublicPem(&material.0)
        };
        let expect = Expectations {
            audience: &self.jwt_audience,
            issuer: self.jwt_issuer.as_deref(),
            org_claim: &self.jwt_org_claim,
            leeway: self.jwt_leeway,
        };
        Verifier::new(algorithm, key, &expect)
    }
}

/// Serves the API until shutdown is requested: the tables are followed in the
/// background (`/readyz` names those not yet restored), event streams end at shutdown.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(?config, "api starting");
    let verifier = config.verifier().context("the token settings are not usable")?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {} (API_LISTEN_ADDR)", config.listen_addr))?;
    let local_addr = listener.local_addr()?;
    let mut stage = Stage::new("api", &config.kafka, shutdown.clone())?;
    let metrics = ApiMetrics::register(stage.registry());
    let tables = Tables::new(
        tables::Limits {
            chat_history: config.chat_history as usize,
            org_history: config.org_history as usize,
            stream_buffer: config.stream_buffer as usize,
        },
        metrics.clone(),
    );
    let names = config.kafka.topic_names()?;
    let followers: Vec<_> = [
        (Topic::CustomerOrders, "customer-orders"),
        (Topic::Wins, "wins"),
        (Topic::ReportsDaily, "reports"),
        (Topic::FxRatesDaily, "rates"),
        (Topic::Notifications, "notifications"),
    ]
    .into_iter()
    .map(|(topic, check)| {
        let ready = stage.readiness().check(check);
        let (kafka, shutdown, tables) = (config.kafka.clone(), shutdown.clone(), tables.clone());
        let name = names.name(topic);
        tokio::spawn(async move {
            let result = tables::follow(&kafka, topic, &name, tables, ready, shutdown.clone()).await;
            if let Err(e) = &result {
                tracing::error!(topic = %name, error = format!("{e:#}"), "cannot follow a table; stopping");
                shutdown.trigger();
            }
            result
        })
    })
    .collect();
    let running = stage.start(config.admin_addr).await?;

    let state = routes::AppState {
        tables,
        verifier: std::sync::Arc::new(verifier),
        metrics,
        keepalive: config.keepalive,
        shutdown: shutdown.clone(),
        cors_origins: config.cors_origins.clone().into(),
    };
    tracing::info!(listen_addr = %local_addr, "listening: /v1/* /openapi.json /console/");
    // A make-service: a new connection clones one handle, not every route's stack.
    axum::serve(listener, routes::router(state).into_make_service())
        .with_graceful_shutdown({
            let shutdown = shutdown.clone();
            async move { shutdown.requested().await }
        })
        .await
        .context("the listener failed")?;
    shutdown.trigger();
    let mut failure = None;
    for follower in followers {
        match follower.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow::anyhow!("a table follower panicked: {e}"))),
        }
    }
    running.until_shutdown().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
