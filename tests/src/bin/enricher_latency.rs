//! Latency from ingest's 202 to the agent's notification being readable (`read_committed`
//! in `inbox.notifications`), at a steady rate, for each commit interval asked for.
//!
//! `scripts/bench-enricher.sh` (or `cargo run --release -p sales-tests --bin
//! enricher_latency -- --help`). Each commit interval gets fresh topics, an ingest and an
//! enricher in this process, and customers in chats an agent joined; cart events are
//! posted over HTTP at `--rate` per second for `--seconds`, and every notification's
//! arrival is matched to its event's 202.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::topic_admin::ensure_topics;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::{free_local_addr, http, http_get};
use schemas::keys;
use schemas::records::{
    Agent, AgentKind, AgentNotification, ChatEvent, ChatEventKind, IdentityMode, OrganizationSettings,
};
use schemas::topics::Topic;
use schemas::values::Timestamp;

const ORG: &str = "org_bench";

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Cart events posted per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds of steady load per commit interval (the first two are warm-up, not measured).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Customers, each in a live chat.
    #[arg(long, default_value_t = 500)]
    customers: usize,
    /// Commit intervals to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100ms,20ms", value_parser = humantime::parse_duration)]
    commit_intervals: Vec<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!(
        "enricher latency: {} cart events/s for {} s ({} customers in live chats), 202 -> notification readable",
        cli.rate, cli.seconds, cli.customers
    );
    for interval in &cli.commit_intervals {
        run_once(&cli, *interval).await?;
    }
    Ok(())
}

async fn run_once(cli: &Cli, commit_interval: Duration) -> anyhow::Result<()> {
    let run_id = format!("bench-en-{}", chrono::Utc::now().format("%H%M%S%3f"));
    let mut kafka = cli.kafka.clone();
    kafka.topic_prefix = format!("{run_id}.");
    let topics = kafka.topic_names()?;
    ensure_topics(&kafka, schemas::topics::DEFAULT_PARTITIONS, 1).await?;
    let producer: FutureProducer = kafka.client_config("bench").set("acks", "all").create()?;
    let settings = OrganizationSettings {
        organization_id: ORG.into(),
        websites: vec!["shop.example.com".into()],
        timezone: "UTC".into(),
        rate_limit_per_second: Some(1_000_000),
        rate_limit_burst: Some(1_000_000),
        updated_at: None,
        identity_mode: IdentityMode::Off,
        identity_key_id: None,
        identity_previous_key_id: None,
    };
    producer
        .send(
            FutureRecord::to(&topics.name(Topic::Organizations))
                .key(ORG)
                .payload(&schemas::encode(&settings)?),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    // Every customer in a chat an agent joined a minute ago.
    let started = Timestamp(Timestamp::from_datetime(chrono::Utc::now()).micros() - 60_000_000);
    for c in 0..cli.customers {
        let customer = format!("c-{c}");
        for (kind, at, agent) in [
            (ChatEventKind::ChatStarted, started, None),
            (
                ChatEventKind::AgentJoined,
                Timestamp(started.micros() + 1),
                Some(Agent {
                    id: "agent-1".into(),
                    kind: AgentKind::Human,
                }),
            ),
        ] {
            let event = ChatEvent {
                event_id: uuid::Uuid::new_v4().to_string(),
                organization_id: ORG.into(),
                customer_id: customer.clone(),
                chat_id: format!("chat-{c}"),
                kind,
                at,
                team_id: None,
                agent,
            };
            let key = keys::org_customer(ORG, &customer);
            producer
                .send(
                    FutureRecord::to(&topics.name(Topic::ChatSessions))
                        .key(&key)
                        .payload(&schemas::encode(&event)?),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)?;
        }
    }

    let shutdown = Shutdown::new();
    let (public, ingest_admin, enricher_admin) = (free_local_addr(), free_local_addr(), free_local_addr());
    let common = |binary: &str, admin: std::net::SocketAddr| {
        vec![
            binary.to_string(),
            "--bootstrap-servers".into(),
            kafka.bootstrap_servers.clone(),
            "--topic-prefix".into(),
            kafka.topic_prefix.clone(),
            "--admin-addr".into(),
            admin.to_string(),
        ]
    };
    let mut ingest_args = common("ingest", ingest_admin);
    ingest_args.extend(["--listen-addr".into(), public.to_string()]);
    ingest_args.extend([
        "--ip-rate".into(),
        "1000000".into(),
        "--ip-burst".into(),
        "1000000".into(),
    ]);
    let ingest = tokio::spawn(ingest::run(
        ingest::Config::try_parse_from(ingest_args)?,
        shutdown.clone(),
    ));
    let mut enricher_args = common("enricher", enricher_admin);
    enricher_args.extend([
        "--group-id".into(),
        format!("{run_id}-enricher"),
        "--worker-id".into(),
        "w1".into(),
        "--commit-interval".into(),
        humantime::format_duration(commit_interval).to_string(),
    ]);
    let enricher = tokio::spawn(enricher::run(
        enricher::Config::try_parse_from(enricher_args)?,
        shutdown.clone(),
    ));
    for admin in [ingest_admin, enricher_admin] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(admin, "/readyz").await, Ok((200, _))) {
            anyhow::ensure!(Instant::now() < deadline, "a stage at {admin} did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The reader: arrival time of each notification, by its id (the event id).
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let consumer: StreamConsumer = kafka
        .client_config("bench-reader")
        .set("group.id", format!("{run_id}-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        // The broker answers a waiting fetch as soon as a commit makes records visible,
        // so the default wait costs the readings nothing; a 5 ms wait had the reader ask
        // the broker 200 times a second for nothing, CPU taken from the broker measured.
        .create()?;
    consumer.subscribe(&[&topics.name(Topic::Notifications)])?;
    let reader = tokio::spawn({
        let arrivals = Arc::clone(&arrivals);
        async move {
            loop {
                let Ok(message) = consumer.recv().await else { continue };
                let at = Instant::now();
                if let Some(Ok(n)) = message.payload().map(schemas::decode::<AgentNotification>) {
                    arrivals.lock().unwrap().insert(n.notification_id, at);
                }
            }
        }
    });
    // Give the reader its partitions before the clock starts.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let accepted: Arc<Mutex<Vec<(String, Instant, bool)>>> = Arc::default();
    let total = cli.rate as u64 * cli.seconds;
    let warmup = cli.rate as u64 * 2;
    let started_at = Instant::now();
    let mut senders = Vec::new();
    let mut refused = 0u64;
    for i in 0..total {
        let due = started_at + Duration::from_secs_f64(i as f64 / cli.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let customer = format!("c-{}", i as usize % cli.customers);
        let event_id = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "organization_id": ORG, "customer_id": customer, "event_id": event_id,
            "page": { "url": "https://shop.example.com/p/1" }, "name": "store_product_added_to_cart",
            "data": { "cart_lines": [ { "total_price": 10.5, "currency": "USD", "quantity": 1,
                "product": { "id": format!("p-{}", i % 50), "title": "Socks", "price": 10.5 } } ] }
        })
        .to_string();
        let accepted = Arc::clone(&accepted);
        senders.push(tokio::spawn(async move {
            let headers = [("Content-Type", "application/json")];
            let answer = http(public, "POST", "/v1/events", &headers, body.as_bytes()).await;
            let ok = matches!(answer, Ok(ref a) if a.status == 202);
            accepted
                .lock()
                .unwrap()
                .push((event_id, Instant::now(), ok && i >= warmup));
            ok
        }));
    }
    for sender in senders {
        if !sender.await.unwrap_or(false) {
            refused += 1;
        }
    }
    let sent_seconds = started_at.elapsed().as_secs_f64();
    // Wait for the stragglers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing = {
            let arrivals = arrivals.lock().unwrap();
            let accepted = accepted.lock().unwrap();
            accepted
                .iter()
                .filter(|(id, _, ok)| *ok && !arrivals.contains_key(id))
                .count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut latencies, mut missing) = (Vec::new(), 0usize);
    {
        let arrivals = arrivals.lock().unwrap();
        for (id, acked, measured) in accepted.lock().unwrap().iter() {
            if !measured {
                continue;
            }
            match arrivals.get(id) {
                Some(at) => latencies.push(at.saturating_duration_since(*acked).as_secs_f64() * 1000.0),
                None => missing += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "commit interval {:>6}: {} events in {:.1} s ({:.0}/s), {} measured: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} refused, {} without notification",
        humantime::format_duration(commit_interval).to_string(),
        total,
        sent_seconds,
        total as f64 / sent_seconds,
        latencies.len(),
        pct(0.50).copied().unwrap_or(f64::NAN),
        pct(0.99).copied().unwrap_or(f64::NAN),
        latencies.last().copied().unwrap_or(f64::NAN),
        refused,
        missing
    );
    if let Ok((_, metrics)) = http_get(enricher_admin, "/metrics").await {
        let sum = metric(&metrics, "stream_commit_seconds_sum");
        let count = metric(&metrics, "stream_commit_seconds_count");
        println!(
            "    enricher: {count:.0} transactions, mean commit {:.1} ms",
            sum / count.max(1.0) * 1000.0
        );
    }
    reader.abort();
    shutdown.trigger();
    let _ = ingest.await;
    let _ = enricher.await;
    Ok(())
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
