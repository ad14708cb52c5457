//! Throughput of the exactly-once runtime against a real broker, beside the limit it
//! cannot beat, and the restore time of a large store.
//!
//! `scripts/bench-runtime.sh` (or `cargo run --release -p sales-tests --bin
//! runtime_bench -- --help`). All in one run on fresh topics:
//! 1. a stateless pass-through stage under exactly-once,
//! 2. the stateful counting stage under exactly-once,
//! 3. plain rdkafka consume-to-produce of the same records, no transactions, same acks,
//! 4. the restore of a counting store holding `--restore-keys` keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::task::Application;
use kafka_runtime::topic_admin::{WantedTopic, ensure, ensure_topics};
use kafka_runtime::worker::changelog_topic;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sales_tests::InProcessWorker;
use sales_tests::bench::PassThrough;
use sales_tests::counting::{Counting, INPUT};
use schemas::topics::Cleanup;

/// Throughput of the exactly-once runtime and restore time of a large store.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Input records per measurement.
    #[arg(long, env = "BENCH_RECORDS", default_value_t = 200_000)]
    records: usize,
    /// Distinct keys of the input.
    #[arg(long, env = "BENCH_KEYS", default_value_t = 10_000)]
    keys: usize,
    /// Keys of the store whose restore is timed.
    #[arg(long, env = "BENCH_RESTORE_KEYS", default_value_t = 1_000_000)]
    restore_keys: usize,
    /// Partitions of the benchmark topics.
    #[arg(long, env = "BENCH_PARTITIONS", default_value_t = 6)]
    partitions: i32,
    /// Commit interval of the exactly-once stages.
    #[arg(long, env = "BENCH_COMMIT_INTERVAL", default_value = "100ms", value_parser = humantime::parse_duration)]
    commit_interval: Duration,
    /// Only the restore (part 4): no throughput measurement.
    #[arg(long)]
    restore_only: bool,
    /// Times the restore of the same store this many times (a fresh worker each time).
    #[arg(long, default_value_t = 1)]
    restore_runs: usize,
}

fn producer(kafka: &KafkaArgs) -> ThreadedProducer<DefaultProducerContext> {
    kafka
        .client_config("bench-producer")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn send_all(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    records: impl Iterator<Item = (String, Vec<u8>)>,
) {
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
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
    producer.flush(Duration::from_secs(120)).expect("flush");
}

/// Runs `app` until it has processed `records`, then stops it (final commit included);
/// returns the seconds from its first record to its stop.
async fn measure(kafka: &KafkaArgs, app: Arc<dyn Application>, records: u64, commit_interval: Duration) -> f64 {
    let worker = InProcessWorker::start(kafka, app, commit_interval, Duration::from_secs(3600));
    let metrics = worker.metrics.clone();
    while metrics.records.get() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    while metrics.records.get() < records {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.stop().await.expect("worker");
    started.elapsed().as_secs_f64()
}

/// Consumes `records` and produces them to `output` with plain rdkafka: no transactions,
/// the same acks. The ceiling for any consume-transform-produce stage.
fn plain(kafka: &KafkaArgs, input: &str, output: &str, records: usize) -> f64 {
    let consumer: BaseConsumer = kafka
        .client_config("bench-plain")
        .set("group.id", format!("{input}-plain"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer = producer(kafka);
    let mut seen = 0;
    let mut started = None;
    while seen < records {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("message");
        started.get_or_insert_with(Instant::now);
        let mut record = BaseRecord::to(output).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            producer.poll(Duration::from_millis(1));
        }
        seen += 1;
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0)
}

/// Parts 1 to 3: seconds of the pass-through, the counting stage and plain rdkafka.
async fn throughput(
    cli: &Cli,
    kafka: &KafkaArgs,
    run: &str,
    producer: &ThreadedProducer<DefaultProducerContext>,
) -> anyhow::Result<(f64, f64, f64)> {
    eprintln!("producing {} input records over {} keys", cli.records, cli.keys);
    let input = format!("{run}{INPUT}");
    let keys = cli.keys;
    send_all(
        producer,
        &input,
        (0..cli.records).map(|i| (format!("k{}", (i * 7919) % keys), b"inc".to_vec())),
    );

    let n = cli.records as u64;
    let pass = measure(
        kafka,
        Arc::new(PassThrough {
            id: format!("{run}pass"),
            input: input.clone(),
            output: format!("{run}pass.out"),
        }),
        n,
        cli.commit_interval,
    )
    .await;
    let count = measure(
        kafka,
        Arc::new(Counting {
            id: format!("{run}count"),
            prefix: run.to_string(),
        }),
        n,
        cli.commit_interval,
    )
    .await;
    let (plain_input, plain_output, records) = (input.clone(), format!("{run}plain.out"), cli.records);
    let kafka_plain = kafka.clone();
    let plain = tokio::task::spawn_blocking(move || plain(&kafka_plain, &plain_input, &plain_output, records)).await?;

    Ok((pass, count, plain))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    // The worker's warnings (and librdkafka's logs), filtered by RUST_LOG.
    kafka_runtime::telemetry::init(&kafka_runtime::config::TelemetryArgs {
        log_format: kafka_runtime::config::LogFormat::Text,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
    })?;
    let run = format!(
        "bench-rt-{}.",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    cli.kafka.topic_prefix = run.clone();
    let kafka = cli.kafka.clone();
    ensure_topics(&kafka, cli.partitions, 1).await?;
    let delete = Cleanup::Delete {
        retention: Duration::from_secs(86_400),
    };
    let topic = |name: &str| WantedTopic {
        name: format!("{run}{name}"),
        partitions: cli.partitions,
        cleanup: delete,
    };
    ensure(
        &kafka,
        &[
            topic(INPUT),
            topic("counter.out"),
            topic("pass.out"),
            topic("plain.out"),
            topic("r.counter.in"),
        ],
        1,
    )
    .await?;

    let producer = producer(&kafka);
    let n = cli.records as u64;
    let throughput = if cli.restore_only {
        None
    } else {
        Some(throughput(&cli, &kafka, &run, &producer).await?)
    };

    // A counting store of restore_keys keys, written straight to its changelog.
    let restore_app = format!("{run}restore");
    let restore_prefix = format!("{run}r.");
    let changelog = changelog_topic(&restore_prefix, &restore_app, "counts");
    ensure(
        &kafka,
        &[WantedTopic {
            name: changelog.clone(),
            partitions: cli.partitions,
            cleanup: Cleanup::Compact,
        }],
        1,
    )
    .await?;
    eprintln!("writing {} keys to {changelog}", cli.restore_keys);
    send_all(
        &producer,
        &changelog,
        (0..cli.restore_keys).map(|i| (format!("key-{i:08}"), 1u64.to_be_bytes().to_vec())),
    );
    let mut restore_kafka = kafka.clone();
    restore_kafka.topic_prefix = restore_prefix.clone();
    let app = Arc::new(Counting {
        id: restore_app,
        prefix: restore_prefix,
    });
    let mut runs = Vec::new();
    for _ in 0..cli.restore_runs.max(1) {
        let started = Instant::now();
        let worker = InProcessWorker::start(
            &restore_kafka,
            app.clone(),
            cli.commit_interval,
            Duration::from_secs(3600),
        );
        let (metrics, readiness) = (worker.metrics.clone(), worker.readiness.clone());
        while !readiness.is_ready() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let ready_after = started.elapsed().as_secs_f64();
        let restore_seconds = metrics.last_restore_seconds.get();
        let restored = metrics.restored_records.get();
        let keys_held = metrics.store_keys.get();
        worker.stop().await?;
        runs.push((restore_seconds, restored, keys_held, ready_after));
    }

    let rate = |seconds: f64| n as f64 / seconds;
    if let Some((pass, count, plain)) = throughput {
        println!(
            "runtime_bench: {} records, {} keys, {} partitions, commit interval {:?}",
            cli.records, cli.keys, cli.partitions, cli.commit_interval
        );
        println!(
            "runtime_bench: pass-through, exactly-once: {:.0} records/s ({pass:.2} s)",
            rate(pass)
        );
        println!(
            "runtime_bench: counting, exactly-once:     {:.0} records/s ({count:.2} s)",
            rate(count)
        );
        println!(
            "runtime_bench: plain consume-to-produce:   {:.0} records/s ({plain:.2} s), no transactions, acks=all",
            rate(plain)
        );
        println!(
            "runtime_bench: pass-through / plain = {:.2}, counting / plain = {:.2}",
            plain / pass,
            plain / count
        );
    }
    for (restore_seconds, restored, keys_held, ready_after) in &runs {
        println!(
            "runtime_bench: restore of {restored} changelog records ({keys_held} keys) in {restore_seconds:.2} s = {:.0} records/s; worker ready {ready_after:.2} s after its start",
            *restored as f64 / restore_seconds
        );
    }
    Ok(())
}
