//! ingest: the HTTP gateway widget events enter through. It validates each event and
//! answers 202 only once `sales.events.raw` has acknowledged it.
//!
//! - [`Config`]: its settings.
//! - [`request`]: posted JSON to a `WidgetEvent`, or the reason it is refused.
//! - [`identity`]: signed customer identities: the keys file as ingest reloads it, and
//!   the check (organization settings and the signature itself are the `accounts`
//!   crate's).
//! - [`limits`]: rate limits per client IP and per organization.
//! - [`forwarded`]: the client's address behind trusted proxies.
//! - [`server`]: the public connections, bounded in time, number and memory.
//! - [`api`]: the public routes (`/v1/*`).
//! - [`widget`]: the store's browser script, served at `GET /v1/widget.js`.
//! - [`metrics`]: ingest's metrics.
//! - [`run`]: serves the public and admin listeners until shutdown.

pub mod api;
pub mod forwarded;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod request;
pub mod server;
pub mod widget;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use accounts::settings::{self, Organizations};
use anyhow::Context;
use clap::Parser;
use kafka_runtime::config::{KafkaArgs, TelemetryArgs};
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::stage::Stage;
use rdkafka::producer::{FutureProducer, Producer};

use crate::api::{ApiSettings, Ingest};
use crate::forwarded::{ClientAddress, ForwardedHeader};
use crate::limits::{Rate, RateLimits};
use crate::metrics::IngestMetrics;
use crate::server::{ConnectionMetrics, ConnectionSettings};

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

    /// Largest accepted request body, in bytes; larger ones get 413.
    #[arg(long, env = "INGEST_BODY_LIMIT", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub body_limit: u32,

    /// How long the broker has to acknowledge an event before the answer is 503.
    #[arg(long, env = "INGEST_ACK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// How long a client has to send the request body; slower ones get 408. The wait
    /// for the broker is bounded by INGEST_ACK_TIMEOUT instead.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// File of the secrets organizations sign customer ids with: one KEY_ID=SECRET a
    /// line, # comments. Read again when it changes; a malformed file stops the start.
    /// Without it no signature can be verified.
    #[arg(long, env = "INGEST_IDENTITY_KEYS_FILE")]
    pub identity_keys_file: Option<std::path::PathBuf>,

    /// Events per second an organization may send, unless its settings say otherwise.
    #[arg(long, env = "INGEST_ORG_RATE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub org_rate: u32,

    /// Burst an organization may send above its rate, unless its settings say otherwise.
    #[arg(long, env = "INGEST_ORG_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub org_burst: u32,

    /// Events per second one client IP may send; an IPv6 client is its whole /64.
    #[arg(long, env = "INGEST_IP_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub ip_rate: u32,

    /// Burst one client IP may send above its rate.
    #[arg(long, env = "INGEST_IP_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub ip_burst: u32,

    /// Comma-separated addresses of reverse proxies whose forwarding header names the
    /// client; from any other peer the header is ignored.
    #[arg(long, env = "INGEST_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,

    /// The header the trusted proxies write the client's address to; the other one is
    /// ignored, since a client could write it.
    #[arg(long, env = "INGEST_FORWARDED_HEADER", value_enum, default_value = "x-forwarded-for")]
    pub forwarded_header: ForwardedHeader,

    /// Time a client has to send a whole request head, counted from when the connection
    /// can take a request (opened, or the previous answer sent); then it is closed.
    #[arg(long, env = "INGEST_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Time a connection may send nothing (before its first request, or between
    /// requests) before it is closed; at most INGEST_HEADER_TIMEOUT.
    #[arg(long, env = "INGEST_IDLE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Largest request head (request line and headers), in bytes; larger ones get 431.
    /// It bounds the memory a connection holding an unfinished head costs.
    #[arg(long, env = "INGEST_HEADER_LIMIT", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(8192..))]
    pub header_limit: u32,

    /// Open connections at most; more are answered 503 and closed at once.
    #[arg(long, env = "INGEST_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Open connections at most from one client address (an IPv6 client is its /64);
    /// more are answered 503 and closed at once. Trusted proxies are bounded by
    /// INGEST_MAX_CONNECTIONS only.
    #[arg(long, env = "INGEST_MAX_CONNECTIONS_PER_IP", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// On shutdown, how long requests in flight have to finish; connections still open
    /// then are closed (no request answered 202 is affected: its event is stored).
    #[arg(long, env = "INGEST_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// The producer behind every 202: idempotent, acks from all in-sync replicas, and a
/// message timeout equal to the acknowledgement bound, so an event the broker could not
/// take in time fails (503) instead of being written after the client was told no.
/// The ingest benchmark (`examples/producer_rate.rs`) uses it too, to measure the same producer.
pub fn producer(config: &Config) -> anyhow::Result<FutureProducer> {
    config
        .kafka
        .client_config("ingest")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", config.ack_timeout.as_millis().to_string())
        .set("linger.ms", "2")
        .set("compression.type", "lz4")
        .create()
        .context("cannot create the producer")
}

/// Serves ingest until shutdown is requested; requests in flight finish first, then the
/// producer is flushed.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!(?config, "ingest starting");
    anyhow::ensure!(
        config.idle_timeout <= config.header_timeout,
        "INGEST_IDLE_TIMEOUT ({:?}) must not exceed INGEST_HEADER_TIMEOUT ({:?}): the head's timer also runs while a connection waits",
        config.idle_timeout,
        config.header_timeout
    );
    let identity_keys = identity::IdentityKeys::open(config.identity_keys_file.as_deref())?;
    let public = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {} (INGEST_LISTEN_ADDR)", config.listen_addr))?;
    let mut stage = Stage::new("ingest", &config.kafka, shutdown.clone())?;
    let metrics = IngestMetrics::register(stage.registry());
    let connection_metrics = ConnectionMetrics::register(stage.registry());
    let clients = ClientAddress::new(&config.trusted_proxies, config.forwarded_header);
    let settings_ready = stage.readiness().check("settings");

    let organizations = Organizations::default();
    let ingest = Arc::new(Ingest {
        producer: producer(&config)?,
        topic: config.kafka.topic_names()?.name(schemas::topics::Topic::EventsRaw),
        organizations: organizations.clone(),
        identity_keys: identity_keys.clone(),
        limits: RateLimits::new(
            Rate {
                per_second: config.ip_rate,
                burst: config.ip_burst,
            },
            Rate {
                per_second: config.org_rate,
                burst: config.org_burst,
            },
        ),
        metrics,
        settings: ApiSettings {
            body_limit: config.body_limit as usize,
            ack_timeout: config.ack_timeout,
            request_timeout: config.request_timeout,
            clients: clients.clone(),
        },
    });

    let running = stage.start(config.admin_addr).await?;
    let follower = tokio::spawn({
        let (kafka, shutdown) = (config.kafka.clone(), shutdown.clone());
        async move { settings::follow_or_stop("ingest", &kafka, organizations, settings_ready, shutdown).await }
    });
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&ingest), shutdown.clone()));
    // Ends by itself at shutdown; nothing waits on it.
    drop(tokio::spawn(identity_keys.watch(shutdown.clone())));

    tracing::info!(listen_addr = %config.listen_addr, "public listener up: /v1/*");
    let connections = ConnectionSettings {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        head_limit: config.header_limit as usize,
        max_connections: config.max_connections as usize,
        max_connections_per_ip: config.max_connections_per_ip as usize,
        drain_timeout: config.drain_timeout,
    };
    server::serve(
        public,
        api::router(Arc::clone(&ingest)),
        connections,
        clients,
        connection_metrics,
        shutdown.clone(),
    )
    .await;

    // Every 202 was already acknowledged; what is still queued belongs to requests that
    // were answered 503 or are gone. Give it a moment anyway.
    let _ = ingest.producer.flush(Duration::from_secs(5));
    let (followed, _) = tokio::join!(follower, housekeeping);
    running.until_shutdown().await;
    followed
        .context("settings follower panicked")?
        .context("organization settings could not be followed")
}

/// Periodic upkeep: the producer queue gauge and forgetting idle client IPs.
async fn housekeeping(ingest: Arc<Ingest>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {}
        }
        ingest
            .metrics
            .producer_queue_depth
            .set(i64::from(ingest.producer.in_flight_count()));
        ticks += 1;
        if ticks.is_multiple_of(60) {
            ingest.limits.forget_idle_clients();
        }
    }
}
