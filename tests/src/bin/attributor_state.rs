//! The attributor's state: bytes per tracked chat, and the restore time of a chat store
//! of `--chats` chats.
//!
//! `scripts/bench-attributor.sh` (or `cargo run --release -p sales-tests --bin
//! attributor_state -- --help`). On fresh topics, the chat store's changelog is written
//! as the attributor writes it (each customer's `CustomerChats`, built from started,
//! joined and ended events by the same rules, with its expiry header); then an
//! attributor starts, restores it, and reports its restore time and store size with the
//! process's resident memory before and after. One order is then attributed from the
//! restored state, to show it is the state in use.
//!
//! With `--restarts N` it measures the fixed cost of a restart instead: the attributor
//! binary (`--attributor-bin`, by default the one beside this benchmark) runs as its own
//! process on the store of `--chats` chats, is killed with SIGKILL and started again N
//! times, and each restart is timed from the process start to `/readyz` answering 200.

use std::time::{Duration, Instant};

use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::store::EXPIRES_AT_HEADER;
use kafka_runtime::topic_admin::{WantedTopic, ensure, ensure_topics};
use kafka_runtime::worker::changelog_topic;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use sales_tests::{free_local_addr, http_get};
use schemas::keys;
use schemas::records::{Agent, AgentKind, AttributedOrder, ChatEvent, ChatEventKind, CustomerChats, EnrichedOrder};
use schemas::samples::Sample;
use schemas::topics::{Cleanup, Topic};
use schemas::values::Timestamp;

const ORG: &str = "org_bench";

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Chats in the store (one per customer).
    #[arg(long, default_value_t = 1_000_000)]
    chats: usize,
    /// Measure restarts instead: this many times, kill the attributor process with
    /// SIGKILL and time its start again until it is ready.
    #[arg(long, default_value_t = 0)]
    restarts: usize,
    /// The attributor binary the restarts run (default: `attributor` beside this one).
    #[arg(long)]
    attributor_bin: Option<std::path::PathBuf>,
}

/// Starts the attributor binary on the run's topics; returns the process and when it
/// was started.
fn spawn_attributor(
    bin: &std::path::Path,
    kafka: &KafkaArgs,
    group: &str,
    admin: std::net::SocketAddr,
    log: &std::path::Path,
) -> anyhow::Result<(std::process::Child, Instant)> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let started = Instant::now();
    let child = std::process::Command::new(bin)
        .args(["--bootstrap-servers", &kafka.bootstrap_servers])
        .args(["--topic-prefix", &kafka.topic_prefix])
        .args(["--admin-addr", &admin.to_string()])
        .args(["--group-id", group, "--worker-id", "w1"])
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok((child, started))
}

/// Seconds from `started` until `/readyz` on `admin` answers 200.
async fn ready_after(admin: std::net::SocketAddr, started: Instant) -> anyhow::Result<f64> {
    while !matches!(http_get(admin, "/readyz").await, Ok((200, _))) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "not ready within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The fixed cost of a restart: the attributor killed with SIGKILL and started again,
/// `restarts` times, each timed from the process start to ready.
async fn restarts(cli: &Cli, kafka: &KafkaArgs, group: &str) -> anyhow::Result<()> {
    let bin = match &cli.attributor_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("attributor"),
    };
    let log = std::env::temp_dir().join(format!("{}attributor.log", kafka.topic_prefix));
    let admin = free_local_addr();
    let (mut child, started) = spawn_attributor(&bin, kafka, group, admin, &log)?;
    let first = ready_after(admin, started).await?;
    println!(
        "attributor restarts: {} ({} chats), log {}",
        bin.display(),
        cli.chats,
        log.display()
    );
    println!("  first start: ready {first:.2} s after the process started");
    let mut times = Vec::new();
    for n in 1..=cli.restarts {
        // Let it commit and settle, as a stage does between crashes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        child.kill()?;
        child.wait()?;
        let (next, started) = spawn_attributor(&bin, kafka, group, admin, &log)?;
        child = next;
        let seconds = ready_after(admin, started).await?;
        println!("  restart {n} after SIGKILL: ready {seconds:.2} s after the process started");
        times.push(seconds);
    }
    child.kill()?;
    child.wait()?;
    times.sort_by(f64::total_cmp);
    if let (Some(low), Some(high)) = (times.first(), times.last()) {
        println!(
            "  restarts: median {:.2} s, fastest {low:.2} s, slowest {high:.2} s",
            times[times.len() / 2]
        );
    }
    Ok(())
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A customer's chat as the attributor keeps it: started with a team, an AI agent and a
/// person joined, ended ten minutes later.
fn customer_chats(customer: &str, start: Timestamp) -> CustomerChats {
    let mut chats = CustomerChats::default();
    let event = |n: u8, kind: ChatEventKind, at: i64, agent: Option<Agent>| ChatEvent {
        event_id: format!("{customer}-{n}"),
        organization_id: ORG.into(),
        customer_id: customer.into(),
        chat_id: format!("chat-{customer}"),
        kind,
        at: Timestamp(start.micros() + at),
        team_id: (kind == ChatEventKind::ChatStarted).then(|| "team-sales".into()),
        agent,
    };
    let agent = |id: &str, kind| Agent { id: id.into(), kind };
    for e in [
        event(0, ChatEventKind::ChatStarted, 0, None),
        event(
            1,
            ChatEventKind::AgentJoined,
            1_000_000,
            Some(agent("ai-assistant", AgentKind::Ai)),
        ),
        event(
            2,
            ChatEventKind::AgentJoined,
            60_000_000,
            Some(agent("agent-0042", AgentKind::Human)),
        ),
        event(3, ChatEventKind::ChatEnded, 600_000_000, None),
    ] {
        rules::chats::apply(&mut chats, &e);
    }
    chats
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let run = format!("bench-at-{}", chrono::Utc::now().format("%H%M%S%3f"));
    let mut kafka = cli.kafka.clone();
    kafka.topic_prefix = format!("{run}.");
    let topics = kafka.topic_names()?;
    let partitions = schemas::topics::DEFAULT_PARTITIONS;
    ensure_topics(&kafka, partitions, 1).await?;
    let group = format!("{run}-attributor");
    let changelog = changelog_topic(&kafka.topic_prefix, &group, attributor::app::CHATS);
    ensure(
        &kafka,
        &[WantedTopic {
            name: changelog.clone(),
            partitions,
            cleanup: Cleanup::Compact,
        }],
        1,
    )
    .await?;

    // Started yesterday; kept 30 days plus the 2-day grace after the end.
    let start = Timestamp(Timestamp::from_datetime(chrono::Utc::now()).micros() - 86_400_000_000);
    let expiry = Timestamp(start.micros() + 600_000_000 + 32 * 86_400_000_000);
    eprintln!("writing {} chats to {changelog}", cli.chats);
    let producer: ThreadedProducer<DefaultProducerContext> = kafka
        .client_config("bench-writer")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
    let mut value_bytes = 0usize;
    let mut key_bytes = 0usize;
    for c in 0..cli.chats {
        let customer = format!("c-{c:07}");
        let key = keys::org_customer(ORG, &customer);
        let value = schemas::encode(&customer_chats(&customer, start))?;
        value_bytes += value.len();
        key_bytes += key.len();
        let headers = OwnedHeaders::new().insert(Header {
            key: EXPIRES_AT_HEADER,
            value: Some(&expiry.micros().to_be_bytes()[..]),
        });
        let mut record = BaseRecord::to(&changelog).key(&key).payload(&value).headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300))?;
    if cli.restarts > 0 {
        return restarts(&cli, &kafka, &group).await;
    }

    let rss_before = resident_bytes();
    let admin = free_local_addr();
    let config = <attributor::Config as Parser>::try_parse_from([
        "attributor".to_string(),
        "--bootstrap-servers".into(),
        kafka.bootstrap_servers.clone(),
        "--topic-prefix".into(),
        kafka.topic_prefix.clone(),
        "--admin-addr".into(),
        admin.to_string(),
        "--group-id".into(),
        group,
        "--worker-id".into(),
        "w1".into(),
    ])?;
    let shutdown = Shutdown::new();
    let started = Instant::now();
    let task = tokio::spawn(attributor::run(config, shutdown.clone()));
    while !matches!(http_get(admin, "/readyz").await, Ok((200, _))) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "no restore within 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_after = started.elapsed().as_secs_f64();
    let (_, metrics) = http_get(admin, "/metrics").await?;
    let rss_after = resident_bytes();
    let restore = metric(&metrics, "stream_last_restore_seconds");
    let store_bytes = metric(&metrics, "stream_store_bytes");
    let store_keys = metric(&metrics, "stream_store_keys");
    let restored = metric(&metrics, "stream_restored_records_total");

    // An order of a restored customer, an hour after the chat ended: after_chat.
    let customer = format!("c-{:07}", cli.chats / 2);
    let mut order = EnrichedOrder::sample();
    order.organization_id = ORG.into();
    order.customer_id = customer.clone();
    order.placed_at = Timestamp(start.micros() + 4_200_000_000);
    let writer: FutureProducer = kafka.client_config("bench-order").create()?;
    writer
        .send(
            FutureRecord::to(&topics.name(Topic::Orders))
                .key(&keys::org_customer(ORG, &customer))
                .payload(&schemas::encode(&order)?),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    let reader: StreamConsumer = kafka
        .client_config("bench-reader")
        .set("group.id", format!("{run}-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()?;
    reader.subscribe(&[&topics.name(Topic::OrdersAttributed)])?;
    let message = tokio::time::timeout(Duration::from_secs(120), reader.recv()).await??;
    let decided: AttributedOrder = schemas::decode(message.payload().unwrap_or_default())?;
    shutdown.trigger();
    let _ = task.await;

    let chats = cli.chats as f64;
    println!(
        "attributor state: {} chats (one per customer: started, AI and human joined, ended)",
        cli.chats
    );
    println!(
        "  changelog record: {:.0} bytes of key + {:.0} bytes of Avro value per chat",
        key_bytes as f64 / chats,
        value_bytes as f64 / chats
    );
    println!(
        "  store: {store_keys:.0} keys, {:.1} MB of keys and values = {:.0} bytes per tracked chat",
        store_bytes / 1e6,
        store_bytes / chats
    );
    println!(
        "  process resident memory: {:.0} MB before, {:.0} MB after restore = {:.0} bytes per tracked chat",
        rss_before as f64 / 1e6,
        rss_after as f64 / 1e6,
        (rss_after.saturating_sub(rss_before)) as f64 / chats
    );
    println!(
        "  restore: {restored:.0} changelog records in {restore:.2} s ({:.0} records/s); ready {ready_after:.2} s after start",
        restored / restore.max(1e-9)
    );
    println!(
        "  check: order of {customer} attributed to {:?}, {:?}",
        decided.attribution.as_ref().map(|a| a.chat_id.as_str()),
        decided.attribution.as_ref().map(|a| a.sale_timing)
    );
    Ok(())
}
