//! The ceiling for ingest's throughput: how many `sales.events.raw` records per second
//! the very producer ingest uses (`ingest::producer`: idempotent, acks=all, same linger
//! and compression) gets acknowledged when nothing but producing happens and many
//! records are in flight at once. Ingest has one record in flight per open request and
//! parses, validates and answers besides, so it cannot beat this number.
//!
//!   cargo run --release -p ingest --example producer_rate -- --records 100000
//!
//! The records are built the way ingest builds them: the same JSON order event as
//! `scripts/bench/ingest.lua` posts (two line items, a new customer and order id each),
//! through `ingest::request::parse_event` and `schemas::encode`, keyed by
//! `schemas::keys::org_customer`. Encoding happens before the clock starts, so the rate
//! is the producer's alone.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use schemas::topics::Topic;
use schemas::values::Timestamp;

#[derive(Debug, Parser)]
#[command(
    name = "producer_rate",
    about = "Acknowledged records per second of ingest's producer, pipelined."
)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Records to send and time.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,

    /// Records sent and awaited before the clock starts, so that connecting, fetching
    /// metadata and getting the idempotent producer id are not timed.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,

    /// Most records awaiting their acknowledgement at once: enough to fill large batches,
    /// and below librdkafka's queue (100 000 messages), which would refuse more.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    in_flight: u64,

    /// Organization of the events; `scripts/bench-ingest.sh` passes the one it posts as.
    #[arg(long, env = "BENCH_ORG", default_value = "org_bench")]
    organization: String,

    /// Host of the events' page URL.
    #[arg(long, env = "BENCH_HOST", default_value = "shop.bench.example")]
    website: String,
}

/// The order event `scripts/bench/ingest.lua` posts (keep the two alike), with `{org}`,
/// `{host}`, `{customer}` and `{order}` filled in per record.
const ORDER_TEMPLATE: &str = r##"{"organization_id":"{org}","customer_id":"c-{customer}","page":{"url":"https://{host}/checkout/thanks","title":"Thank you for your order"},"name":"store_order_was_created","data":{"order":{"id":"{order}","order_number":"#{order}","currency":"USD","total_price":220.96,"subtotal_price":199.97,"shipping_price":4.99,"tax_price":16.00,"line_items":[{"product_id":"8112233445","title":"Merino Wool Crew Neck","quantity":1,"price":149.99,"sku":"MW-CREW-M-NAVY","variant_title":"M / Navy"},{"product_id":"8112233999","title":"Organic Cotton Socks, 3 pack","quantity":2,"price":24.99,"sku":"OC-SOCK-3P"}]}}}"##;

struct Encoded {
    key: String,
    value: Vec<u8>,
}

/// Record `i` of the run: parsed and encoded exactly as ingest would for the same body.
fn encode(args: &Args, run: i64, i: u64) -> anyhow::Result<Encoded> {
    // Shaped like the posted ids (`<run>-<thread>-<n>`), as thread 0, which wrk never
    // numbers: the same lengths, and no collision with the posted events.
    let id = format!("{run:x}-0-{i}");
    let body = ORDER_TEMPLATE
        .replace("{org}", &args.organization)
        .replace("{host}", &args.website)
        .replace("{customer}", &id)
        .replace("{order}", &id);
    let event = ingest::request::parse_event(body.as_bytes(), Timestamp::from_datetime(chrono::Utc::now()))
        .map_err(|r| anyhow::anyhow!("the benchmark body is refused: {} ({:?})", r.message, r.field))?;
    Ok(Encoded {
        key: schemas::keys::org_customer(&event.organization_id, &event.customer_id),
        value: schemas::encode(&event)?,
    })
}

/// Whether a delivery report says the broker acknowledged the record.
fn acknowledged<D, E, C>(report: Result<Result<D, E>, C>) -> bool {
    matches!(report, Ok(Ok(_)))
}

/// Sends every record with at most `in_flight` unacknowledged, then awaits the rest;
/// returns how many the broker did not acknowledge.
async fn send_all(producer: &FutureProducer, topic: &str, records: &[Encoded], in_flight: usize) -> u64 {
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(in_flight);
    let mut failed = 0;
    for record in records {
        if pending.len() >= in_flight {
            failed += u64::from(!acknowledged(
                pending.pop_front().expect("the window is not empty").await,
            ));
        }
        let mut next = FutureRecord::to(topic).key(&record.key).payload(&record.value);
        loop {
            match producer.send_result(next) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                // A window larger than librdkafka's queue: make room by awaiting the oldest.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    next = record;
                    match pending.pop_front() {
                        Some(oldest) => failed += u64::from(!acknowledged(oldest.await)),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => {
                    eprintln!("producer_rate: a record was refused: {e}");
                    failed += 1;
                    break;
                }
            }
        }
    }
    for delivery in pending {
        failed += u64::from(!acknowledged(delivery.await));
    }
    failed
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // An ingest::Config read from the same broker and prefix, every other setting as
    // ingest itself would read it (defaults or INGEST_* variables), so that
    // ingest::producer builds the producer ingest runs with.
    let config = ingest::Config::try_parse_from([
        "ingest",
        "--bootstrap-servers",
        &args.kafka.bootstrap_servers,
        "--topic-prefix",
        &args.kafka.topic_prefix,
    ])
    .context("cannot read ingest's settings")?;
    let topic = config.kafka.topic_names()?.name(Topic::EventsRaw);
    let producer = ingest::producer(&config)?;
    let in_flight = usize::try_from(args.in_flight)?;

    let run = chrono::Utc::now().timestamp();
    let warmup = (0..args.warmup)
        .map(|i| encode(&args, run, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let records = (args.warmup..args.warmup + args.records)
        .map(|i| encode(&args, run, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bytes: usize = records.iter().map(|r| r.key.len() + r.value.len()).sum();

    let failed = send_all(&producer, &topic, &warmup, in_flight).await;
    if failed > 0 {
        bail!(
            "{failed} of {} warm-up records to {topic} at {} were not acknowledged",
            args.warmup,
            args.kafka.bootstrap_servers
        );
    }

    let started = Instant::now();
    let failed = send_all(&producer, &topic, &records, in_flight).await;
    let seconds = started.elapsed().as_secs_f64();
    let _ = producer.flush(Duration::from_secs(5));

    let acked = args.records - failed;
    println!(
        "producer_rate: {acked} records in {seconds:.3} s = {:.0} records/s \
         (topic {topic}, {:.0} bytes/record encoded, at most {in_flight} in flight, acks=all, idempotent)",
        acked as f64 / seconds,
        bytes as f64 / records.len() as f64,
    );
    if failed > 0 {
        bail!("{failed} of {} records were not acknowledged", args.records);
    }
    Ok(())
}
