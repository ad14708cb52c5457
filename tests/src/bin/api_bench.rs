//! The API under the sidebar's and the wins counter's loads, its memory per customer
//! summary, and the restore of a large summary table at start.
//!
//! `scripts/bench-api.sh` (or `cargo run --release -p sales-tests --bin api_bench --
//! --help` once the `api` binary is built in release). All in one run on fresh topics,
//! the API binary (`--api-bin`, by default the one beside this benchmark) running as a
//! process of its own, as in production:
//! 1. sidebar lookups (`GET /v1/orgs/{org}/customers/{customer}/orders`) at `--rate` per
//!    second for `--seconds` over `--connections` keep-alive connections, open-loop
//!    (each request has a scheduled send time and its latency counts from it, so a
//!    request that waits for a free connection counts its wait), against a table of
//!    `--summaries` summaries;
//! 2. `--clients` event streams of `GET /v1/orgs/{org}/wins/stream`, each its own
//!    connection; `--changes` times a new `WinsCounter` is written to `sales.wins` and
//!    the time from that write to each client's `wins` event is measured;
//! 3. the API's resident memory per summary held: its RSS with `--summaries` summaries
//!    restored minus its RSS with an empty table, divided by the count (and the same
//!    with `--restore-summaries`);
//! 4. the time from the API's process start to `/readyz` 200 on a table of
//!    `--restore-summaries` summaries, and its RSS then.
//!
//! The summaries are shaped as the attributor writes them (`attributor::sidebar`), each
//! from `--orders` orders of its customer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::topic_admin::ensure_topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rust_decimal::Decimal;
use sales_tests::api::{EventStream, Next, bearer, secret_file};
use sales_tests::bench::{clock_ticks, machine_ticks, percentile, process_ticks, tail};
use sales_tests::{free_local_addr, http_get, metric_value};
use schemas::keys;
use schemas::records::{AttributedOrder, Attribution, CustomerOrderSummary, HandledBy, SaleTiming, WinsCounter};
use schemas::topics::{DEFAULT_PARTITIONS, Topic};
use schemas::values::{Money, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The organization of every summary and of the wins counter.
const ORG: &str = "org_bench";

/// What the API is held to.
const LOOKUP_P99_TARGET_MS: f64 = 5.0;
const STREAM_TARGET_MS: f64 = 1_000.0;

/// The API's sidebar lookups and wins streams under load, its memory per summary and
/// its restore time.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Customer summaries of the table the lookups and the memory figure use.
    #[arg(long, default_value_t = 100_000)]
    summaries: usize,
    /// Customer summaries of the restore timed at start (the table of `--summaries`
    /// topped up to this count).
    #[arg(long, default_value_t = 1_000_000)]
    restore_summaries: usize,
    /// Orders of each customer; the summary lists them all up to the attributor's 20.
    #[arg(long, default_value_t = 5)]
    orders: usize,
    /// Sidebar lookups sent per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Seconds of lookups, the warm-up included.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds at the start of the lookups left out of the figures.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Keep-alive connections the lookups share; a request waits for a free one.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Event stream clients of the wins counter, each its own connection.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// Changes of the wins counter written while the clients listen.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// How long after a change the clients' events are waited for.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    stream_timeout: Duration,
    /// Partitions of the run's topics.
    #[arg(long, default_value_t = DEFAULT_PARTITIONS)]
    partitions: i32,
    /// The API binary (default: `api` beside this program).
    #[arg(long)]
    api_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.rate > 0, "--rate must be at least 1");
    anyhow::ensure!(cli.summaries > 0, "--summaries must be at least 1");
    anyhow::ensure!(cli.orders > 0, "--orders must be at least 1");
    anyhow::ensure!(cli.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(
        cli.warmup < cli.seconds,
        "--warmup ({} s) must be shorter than --seconds ({} s)",
        cli.warmup,
        cli.seconds
    );
    let signal = Shutdown::on_signals()?;
    // Dropping the benchmark's future on a signal stops the API process it owns.
    let result = tokio::select! {
        result = bench(&cli) => result,
        () = signal.requested() => Err(anyhow::anyhow!("interrupted; the API was stopped")),
    };
    let _ = std::fs::remove_file(secret_file());
    result
}

async fn bench(cli: &Cli) -> anyhow::Result<()> {
    let mut kafka = cli.kafka.clone();
    if kafka.topic_prefix.is_empty() {
        kafka.topic_prefix = format!("bench-api-{}.", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    }
    let topics = kafka.topic_names()?;
    let api_bin = match &cli.api_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("api"),
    };
    anyhow::ensure!(
        api_bin.is_file(),
        "no API binary at {}; build it first: cargo build --release --locked -p api --bin api",
        api_bin.display()
    );
    let logs = std::env::temp_dir()
        .join("sales-bench-api")
        .join(kafka.topic_prefix.trim_end_matches('.'));
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    eprintln!(
        "api_bench: topics {}*, API logs in {}",
        kafka.topic_prefix,
        logs.display()
    );
    ensure_topics(&kafka, cli.partitions, 1).await?;
    let summaries_topic = topics.name(Topic::CustomerOrders);
    let wins_topic = topics.name(Topic::Wins);
    for topic in [&summaries_topic, &wins_topic] {
        let held = records_in(&kafka, topic)?;
        anyhow::ensure!(
            held == 0,
            "{topic} already holds {held} records; use a fresh --topic-prefix"
        );
    }
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let load_before = load_average();

    // 3, first half: the API on empty tables.
    eprintln!("api_bench: the API on empty tables");
    let mut api = Api::spawn(&api_bin, &kafka, &logs, "empty")?;
    let empty_ready = api.ready(Duration::from_secs(120)).await?;
    let empty = api.settled_memory().await;
    api.stop();

    // The lookups' table.
    eprintln!("api_bench: writing {} summaries to {summaries_topic}", cli.summaries);
    let table = write_summaries(&kafka, &summaries_topic, 0..cli.summaries, cli.orders, now).await?;
    let mut api = Api::spawn(&api_bin, &kafka, &logs, "table")?;
    let table_ready = api.ready(Duration::from_secs(600)).await?;
    api.expect_summaries(cli.summaries).await?;
    let table_memory = api.settled_memory().await;

    // 1: the lookups.
    eprintln!(
        "api_bench: {} lookups/s for {} s over {} connections",
        cli.rate, cli.seconds, cli.connections
    );
    let lookups = lookups(cli, &api).await?;

    // 2: the wins streams.
    eprintln!(
        "api_bench: {} wins stream clients, {} changes",
        cli.clients, cli.changes
    );
    let streams = streams(cli, &kafka, &wins_topic, &api).await?;
    let after_load = api.memory();
    api.stop();

    // 4: the restore of the large table.
    let restore_total = cli.restore_summaries.max(cli.summaries);
    let topped_up = if restore_total > cli.summaries {
        eprintln!(
            "api_bench: writing {} more summaries ({restore_total} in all)",
            restore_total - cli.summaries
        );
        Some(write_summaries(&kafka, &summaries_topic, cli.summaries..restore_total, cli.orders, now).await?)
    } else {
        None
    };
    eprintln!("api_bench: the API restoring {restore_total} summaries");
    let mut api = Api::spawn(&api_bin, &kafka, &logs, "restore")?;
    let restore_ready = api.ready(Duration::from_secs(900)).await?;
    let at_ready = api.memory();
    api.expect_summaries(restore_total).await?;
    let restored = api.settled_memory().await;
    api.stop();

    // The figures.
    println!(
        "api_bench: topics {}* ({} partitions), organization {ORG}, {} orders per customer summary; \
         machine load average {load_before} at the start, {} at the end",
        kafka.topic_prefix,
        cli.partitions,
        cli.orders,
        load_average()
    );
    println!(
        "summaries written: {} ({:.0} bytes of key + {:.0} bytes of Avro value each) at {:.0} records/s{}",
        table.records,
        table.key_bytes as f64 / table.records as f64,
        table.value_bytes as f64 / table.records as f64,
        table.records as f64 / table.seconds,
        match &topped_up {
            Some(w) => format!(
                "; then {} more at {:.0} records/s",
                w.records,
                w.records as f64 / w.seconds
            ),
            None => String::new(),
        }
    );
    println!(
        "1. sidebar lookups: {} requests/s offered for {} s ({} s warm-up left out), {} keep-alive connections, {} summaries",
        cli.rate, cli.seconds, cli.warmup, cli.connections, cli.summaries
    );
    println!(
        "   {} requests in the window, {} answered 200 with the summary = {:.0}/s; errors {}{}",
        lookups.measured,
        lookups.latencies.len(),
        lookups.answered_rate,
        lookups.errors.values().sum::<usize>(),
        if lookups.errors.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", lookups.errors)
        }
    );
    println!(
        "   latency from the scheduled send: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        percentile(&lookups.latencies, 0.50),
        percentile(&lookups.latencies, 0.99),
        percentile(&lookups.latencies, 0.999),
        lookups.latencies.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "   sent late (waiting for a free connection or for this process): p99 {:.2} ms  max {:.2} ms",
        percentile(&lookups.send_lag, 0.99),
        lookups.send_lag.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "   API CPU {:.0} % of a core = {:.1} µs per request; this process {:.0} %; machine {:.0} % of {} cores busy",
        lookups.api_cpu * 100.0,
        lookups.api_cpu * 1e6 / lookups.answered_rate.max(1e-9),
        lookups.own_cpu * 100.0,
        lookups.machine_busy * 100.0,
        lookups.cores
    );
    println!(
        "2. wins streams: {} clients connected of {} ({} refused or failed), api_streams_open {}",
        streams.connected, cli.clients, streams.failed, streams.open_gauge
    );
    for change in &streams.changes {
        println!(
            "   change to {:>2} wins: {:>4} clients got it; from the write p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms (write acknowledged after {:.1} ms)",
            change.wins,
            change.latencies.len(),
            percentile(&change.latencies, 0.50),
            percentile(&change.latencies, 0.99),
            change.latencies.last().copied().unwrap_or(f64::NAN),
            change.acked_ms,
        );
    }
    let per_client =
        (streams.memory_connected.rss as f64 - streams.memory_before.rss as f64) / streams.connected.max(1) as f64;
    println!(
        "   API RSS {} before the clients connected, {} with them = {:.1} KB per stream client",
        mb(streams.memory_before.rss),
        mb(streams.memory_connected.rss),
        per_client / 1e3
    );
    let pooled = streams.pooled();
    let fewest = streams.changes.iter().map(|c| c.latencies.len()).min().unwrap_or(0);
    let within = streams
        .changes
        .iter()
        .map(|c| c.latencies.iter().filter(|l| **l <= STREAM_TARGET_MS).count())
        .min()
        .unwrap_or(0);
    println!(
        "   every change: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; fewest clients reached {fewest}, fewest within 1 s {within}",
        percentile(&pooled, 0.50),
        percentile(&pooled, 0.99),
        pooled.last().copied().unwrap_or(f64::NAN),
    );
    let per_summary = |memory: Memory, count: usize| (memory.rss as f64 - empty.rss as f64) / count as f64;
    let table_per = per_summary(table_memory, cli.summaries);
    let restore_per = per_summary(restored, restore_total);
    let peak_per = (restored.hwm as f64 - empty.rss as f64) / restore_total as f64;
    println!(
        "3. memory: empty tables RSS {} (ready {empty_ready:.2} s after start); {} summaries RSS {} (ready {table_ready:.2} s) = {table_per:.0} bytes per summary; after the loads {}",
        mb(empty.rss),
        cli.summaries,
        mb(table_memory.rss),
        mb(after_load.rss),
    );
    println!(
        "   {restore_total} summaries RSS {} = {restore_per:.0} bytes per summary; peak (VmHWM) {} = {peak_per:.0} bytes per summary",
        mb(restored.rss),
        mb(restored.hwm),
    );
    println!(
        "4. restore of {restore_total} summaries: /readyz 200 {restore_ready:.2} s after the process started = {:.0} records/s \
         ({:.0} records/s beyond the empty API's {empty_ready:.2} s); RSS then {}, peak {}",
        restore_total as f64 / restore_ready,
        restore_total as f64 / (restore_ready - empty_ready).max(1e-3),
        mb(at_ready.rss),
        mb(at_ready.hwm),
    );
    // What a replica holds in a memory limit: the empty API, each summary's share of the
    // large restore without the hash table's, and the hash table at its size then, plus
    // the table it grew from, which it holds while it moves the entries over.
    let entry =
        (restored.rss.max(restored.hwm) as f64 - empty.rss as f64 - table_bytes(restore_total)) / restore_total as f64;
    let fits = |gib: f64| {
        let limit = gib * 1024.0 * 1024.0 * 1024.0;
        let peak = |n: usize| empty.rss as f64 + entry * n as f64 + 1.5 * table_bytes(n);
        let (mut low, mut high) = (0usize, (limit / entry.max(1.0)) as usize + 1);
        while low + 1 < high {
            let middle = low + (high - low) / 2;
            if peak(middle) <= limit {
                low = middle;
            } else {
                high = middle;
            }
        }
        low as f64
    };
    println!(
        "   one replica holds about {:.2} M summaries in 2 GiB and {:.2} M in 8 GiB ({entry:.0} bytes per summary \
         and a hash table of {:.0} MB at {restore_total}, doubling when 7/8 full)",
        fits(2.0) / 1e6,
        fits(8.0) / 1e6,
        table_bytes(restore_total) / 1e6
    );

    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let lookup_p99 = percentile(&lookups.latencies, 0.99);
    let lookup_errors = lookups.errors.values().sum::<usize>();
    let stream_max = pooled.last().copied().unwrap_or(f64::INFINITY);
    let all_within = !streams.changes.is_empty() && within == cli.clients;
    let rows: Vec<(String, String, String)> = vec![
        (
            "lookup latency p50".into(),
            format!("{:.2} ms", percentile(&lookups.latencies, 0.50)),
            String::new(),
        ),
        (
            "lookup latency p99".into(),
            format!("{lookup_p99:.2} ms"),
            format!(
                "<= {LOOKUP_P99_TARGET_MS} ms  {}",
                verdict(lookup_p99 <= LOOKUP_P99_TARGET_MS)
            ),
        ),
        (
            "lookup latency p99.9".into(),
            format!("{:.2} ms", percentile(&lookups.latencies, 0.999)),
            String::new(),
        ),
        (
            "lookup latency max".into(),
            format!("{:.2} ms", lookups.latencies.last().copied().unwrap_or(f64::NAN)),
            String::new(),
        ),
        (
            "lookup errors".into(),
            format!("{lookup_errors} of {}", lookups.measured),
            format!("0  {}", verdict(lookup_errors == 0)),
        ),
        (
            "lookups answered".into(),
            format!("{:.0}/s", lookups.answered_rate),
            format!("{}/s", cli.rate),
        ),
        (
            "wins event p50".into(),
            format!("{:.1} ms", percentile(&pooled, 0.50)),
            String::new(),
        ),
        (
            "wins event p99".into(),
            format!("{:.1} ms", percentile(&pooled, 0.99)),
            String::new(),
        ),
        (
            "wins event max".into(),
            format!("{stream_max:.1} ms"),
            format!(
                "<= {STREAM_TARGET_MS:.0} ms  {}",
                verdict(stream_max <= STREAM_TARGET_MS)
            ),
        ),
        (
            "wins clients reached within 1 s".into(),
            format!(
                "{within} of {} (fewest of {} changes)",
                cli.clients,
                streams.changes.len()
            ),
            format!("all {}  {}", cli.clients, verdict(all_within)),
        ),
        (
            "memory per stream client".into(),
            format!("{:.1} KB", per_client / 1e3),
            String::new(),
        ),
        (
            format!("memory per summary ({})", count(cli.summaries)),
            format!("{table_per:.0} bytes"),
            String::new(),
        ),
        (
            format!("memory per summary ({})", count(restore_total)),
            format!("{restore_per:.0} bytes (peak {peak_per:.0})"),
            String::new(),
        ),
        (
            format!("restore of {}: to /readyz 200", count(restore_total)),
            format!("{restore_ready:.2} s"),
            String::new(),
        ),
        (
            "restore rate".into(),
            format!(
                "{:.0} records/s ({:.0} beyond the empty start)",
                restore_total as f64 / restore_ready,
                restore_total as f64 / (restore_ready - empty_ready).max(1e-3)
            ),
            String::new(),
        ),
        (
            format!("RSS at ready ({})", count(restore_total)),
            format!("{} (peak {})", mb(at_ready.rss), mb(at_ready.hwm)),
            String::new(),
        ),
        (
            "summaries per replica".into(),
            format!("{:.2} M in 2 GiB, {:.2} M in 8 GiB", fits(2.0) / 1e6, fits(8.0) / 1e6),
            String::new(),
        ),
    ];
    let width =
        |f: fn(&(String, String, String)) -> &String| rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (w0, w1) = (width(|r| &r.0), width(|r| &r.1));
    println!();
    println!("{:<w0$}  {:<w1$}  target", "figure", "measured");
    for (name, value, target) in &rows {
        println!(
            "{name:<w0$}  {value:<w1$}  {}",
            if target.is_empty() { "-" } else { target }
        );
    }
    Ok(())
}

/// Bytes of the API's summary table at `n` entries, a `HashMap<Box<str>, Box<[u8]>>`:
/// 32 bytes a slot and a control byte, in a power of two of slots at most 7/8 full.
fn table_bytes(n: usize) -> f64 {
    let slots = match n {
        0..4 => 4,
        4..8 => 8,
        n => (n * 8 / 7).next_power_of_two(),
    };
    33.0 * slots as f64
}

/// `1000000` as `1M`, `100000` as `100k`.
fn count(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Records held by `topic`: the sum of its partitions' high watermarks less their low
/// ones. A topic created moments ago may not have its leaders yet: retried for 30 s.
fn records_in(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = kafka
        .client_config("bench-api-check")
        .set("group.id", "bench-api-check")
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = (|| -> anyhow::Result<i64> {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let mut held = 0;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (low, high) = consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
                held += high - low;
            }
            Ok(held)
        })();
        match held {
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            held => return held.with_context(|| format!("cannot read the offsets of {topic}")),
        }
    }
}

/// A small deterministic generator (splitmix64): the same run writes the same summaries
/// and looks them up in the same order.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Customer `i`'s id: 36 characters shaped as the chat platform's UUIDs.
fn customer_id(i: usize) -> String {
    let h = mix(i as u64);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:04x}{:08x}",
        h >> 32,
        (h >> 16) & 0xFFFF,
        (h >> 4) & 0xFFF,
        (h >> 20) & 0xFFF,
        h & 0xFFFF,
        i
    )
}

/// Customer `i`'s summary as the attributor keeps it: `orders` orders over the last
/// weeks, each with its chat (during or after it) or none, in USD and for one customer
/// in four also in EUR.
fn summary(i: usize, orders: usize, now: Timestamp) -> CustomerOrderSummary {
    let customer = customer_id(i);
    let mut summary = None;
    for n in 0..orders {
        let r = mix((i * orders + n) as u64 ^ 0x5EED);
        let serial = (i * orders + n) as u64;
        let currency = if i % 4 == 3 && n % 2 == 1 { "EUR" } else { "USD" };
        let placed_at = Timestamp(now.micros() - ((orders - n) as i64 * 3 * 86_400 + (r % 86_400) as i64) * 1_000_000);
        let timing = match r % 4 {
            0 | 1 => Some(SaleTiming::DuringChat),
            2 => Some(SaleTiming::AfterChat),
            _ => None,
        };
        let order = AttributedOrder {
            organization_id: ORG.into(),
            customer_id: customer.clone(),
            order_id: (5_100_000_000_000 + serial).to_string(),
            order_number: format!("#{}", 1_001 + serial),
            currency: currency.into(),
            total: Money::new(Decimal::new(500 + (r % 50_000) as i64, 2)).unwrap_or_else(|_| unreachable!()),
            placed_at,
            attribution: timing.map(|sale_timing| Attribution {
                chat_id: format!("S{:09X}", r >> 28),
                team_id: Some("team-sales".into()),
                chat_started_at: Timestamp(placed_at.micros() - 900_000_000),
                chat_ended_at: Some(Timestamp(placed_at.micros() - 300_000_000)),
                agents: Vec::new(),
                handled_by: HandledBy::HumanOnly,
                ai_agent_chat: false,
                sale_timing,
                time_to_order_micros: 900_000_000,
            }),
        };
        summary = Some(attributor::sidebar::add_order(summary, &order));
    }
    summary.unwrap_or_else(|| unreachable!("orders >= 1"))
}

#[derive(Debug, Default)]
struct Written {
    records: usize,
    key_bytes: usize,
    value_bytes: usize,
    seconds: f64,
}

/// Writes the summaries of customers `range` with a producer built for bulk: lingering,
/// large batches, lz4; the encoding is shared by two threads.
async fn write_summaries(
    kafka: &KafkaArgs,
    topic: &str,
    range: std::ops::Range<usize>,
    orders: usize,
    now: Timestamp,
) -> anyhow::Result<Written> {
    let producer: ThreadedProducer<DefaultProducerContext> = kafka
        .client_config("bench-api-writer")
        .set("acks", "all")
        .set("linger.ms", "50")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let threads = 2;
        let written: Vec<Written> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (producer, topic, range) = (&producer, &topic, range.clone());
                    scope.spawn(move || -> anyhow::Result<Written> {
                        let mut written = Written::default();
                        for i in range.skip(t).step_by(threads) {
                            let summary = summary(i, orders, now);
                            let key = keys::org_customer(ORG, &summary.customer_id);
                            let value = schemas::encode(&summary)?;
                            written.records += 1;
                            written.key_bytes += key.len();
                            written.value_bytes += value.len();
                            let mut record = BaseRecord::to(topic).key(&key).payload(&value);
                            while let Err((_, returned)) = producer.send(record) {
                                record = returned;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                        Ok(written)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("an encoding thread panicked")))
                })
                .collect::<anyhow::Result<_>>()
        })?;
        producer.flush(Duration::from_secs(600))?;
        Ok(Written {
            records: written.iter().map(|w| w.records).sum(),
            key_bytes: written.iter().map(|w| w.key_bytes).sum(),
            value_bytes: written.iter().map(|w| w.value_bytes).sum(),
            seconds: started.elapsed().as_secs_f64(),
        })
    })
    .await?
}

/// Resident memory of a process: now (`VmRSS`) and at its peak (`VmHWM`), bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    hwm: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Memory {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
    }
}

/// The API binary running as a process of its own; stopped when dropped.
#[derive(Debug)]
struct Api {
    child: Child,
    started: Instant,
    public: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

impl Api {
    fn spawn(bin: &Path, kafka: &KafkaArgs, logs: &Path, name: &str) -> anyhow::Result<Api> {
        let (public, admin) = (free_local_addr(), free_local_addr());
        let log = logs.join(format!("api-{name}.log"));
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(bin)
            .args(["--bootstrap-servers", &kafka.bootstrap_servers])
            .args(["--topic-prefix", &kafka.topic_prefix])
            .args(["--listen-addr", &public.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .arg("--jwt-secret-file")
            .arg(secret_file())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Api {
            child,
            started,
            public,
            admin,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Seconds from the process start to `/readyz` answering 200.
    async fn ready(&mut self, timeout: Duration) -> anyhow::Result<f64> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the API exited ({status}) before it was ready:\n{}", tail(&self.log));
            }
            if matches!(http_get(self.admin, "/readyz").await, Ok((200, _))) {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            anyhow::ensure!(
                self.started.elapsed() < timeout,
                "the API was not ready within {timeout:?}:\n{}",
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let (status, text) = http_get(self.admin, "/metrics").await?;
        anyhow::ensure!(status == 200, "the API answered {status} for /metrics");
        Ok(text)
    }

    /// Checks that the table holds `expected` summaries.
    async fn expect_summaries(&self, expected: usize) -> anyhow::Result<()> {
        let held = metric_value(&self.metrics().await?, "api_table_records{table=\"customer-orders\"}");
        anyhow::ensure!(
            held as usize == expected,
            "the API holds {held} summaries, not the {expected} written"
        );
        Ok(())
    }

    fn memory(&self) -> Memory {
        memory(self.pid())
    }

    /// The memory once the start's transient work is over.
    async fn settled_memory(&self) -> Memory {
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.memory()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s.
    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The machine's load average over the last minute, as `/proc/loadavg` says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The lookups' figures.
#[derive(Debug, Default)]
struct Lookups {
    /// Requests scheduled in the window (after the warm-up).
    measured: usize,
    /// Milliseconds from the scheduled send to the whole answer, sorted, of the
    /// window's requests answered 200 with their summary.
    latencies: Vec<f64>,
    /// Milliseconds from the scheduled send to the actual send, sorted.
    send_lag: Vec<f64>,
    /// The window's failures by kind.
    errors: BTreeMap<String, usize>,
    answered_rate: f64,
    /// Share of one core over the window.
    api_cpu: f64,
    own_cpu: f64,
    machine_busy: f64,
    cores: usize,
}

/// What one connection's requests gave.
#[derive(Debug, Default)]
struct Outcomes {
    /// Per request in the window: (send lag, latency), milliseconds.
    answered: Vec<(f64, f64)>,
    errors: BTreeMap<String, usize>,
    measured: usize,
    last_answer: Option<Instant>,
}

/// Open-loop lookups: request `k` is due at `start + k / rate`; whichever connection is
/// free takes the next due request, sleeps until it is due, sends it and reads the
/// answer. Its latency counts from when it was due, so a request that could not be sent
/// on time (every connection busy with slow answers) counts its wait.
async fn lookups(cli: &Cli, api: &Api) -> anyhow::Result<Lookups> {
    let total = u64::from(cli.rate) * cli.seconds;
    let warmup_requests = u64::from(cli.rate) * cli.warmup;
    let next = Arc::new(AtomicU64::new(0));
    let authorization = bearer(ORG);
    let mut connections = Vec::with_capacity(cli.connections);
    for _ in 0..cli.connections {
        connections.push(connect(api.public).await?);
    }
    let start = Instant::now() + Duration::from_millis(200);
    let window_start = start + Duration::from_secs(cli.warmup);
    let rate = f64::from(cli.rate);
    let due = move |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let mut tasks = Vec::new();
    for connection in connections {
        let (next, authorization, addr) = (Arc::clone(&next), authorization.clone(), api.public);
        let (summaries, orders) = (cli.summaries, cli.orders);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Outcomes::default();
            let mut connection = Some(connection);
            let mut buffer = Vec::with_capacity(16 * 1024);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let due_at = due(k);
                tokio::time::sleep_until(due_at.into()).await;
                let customer = customer_id((mix(k ^ 0xC0FFEE) % summaries as u64) as usize);
                let request = format!(
                    "GET /v1/orgs/{ORG}/customers/{customer}/orders HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nAccept: application/json\r\n\r\n"
                );
                let sent = Instant::now();
                let result = match connection.as_mut() {
                    Some(stream) => {
                        tokio::time::timeout(Duration::from_secs(10), exchange(stream, &mut buffer, request.as_bytes()))
                            .await
                            .unwrap_or_else(|_| Err("timed out after 10 s".into()))
                    }
                    None => match connect(addr).await {
                        Ok(stream) => {
                            let stream = connection.insert(stream);
                            tokio::time::timeout(Duration::from_secs(10), exchange(stream, &mut buffer, request.as_bytes()))
                                .await
                                .unwrap_or_else(|_| Err("timed out after 10 s".into()))
                        }
                        Err(e) => Err(format!("connect: {e}")),
                    },
                };
                let answered = Instant::now();
                let in_window = k >= warmup_requests;
                let failure = match result {
                    Ok((200, body)) => {
                        let want_customer = format!("\"customer_id\":\"{customer}\"");
                        let want_count = format!("\"order_count\":{orders}");
                        if contains(body, want_customer.as_bytes()) && contains(body, want_count.as_bytes()) {
                            None
                        } else {
                            Some("200 without the summary".to_string())
                        }
                    }
                    Ok((status, _)) => Some(format!("status {status}")),
                    Err(e) => {
                        connection = None;
                        Some(e)
                    }
                };
                if in_window {
                    outcomes.measured += 1;
                    match failure {
                        None => {
                            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                            outcomes.answered.push((
                                ms(sent.saturating_duration_since(due_at)),
                                ms(answered.saturating_duration_since(due_at)),
                            ));
                            outcomes.last_answer = outcomes.last_answer.max(Some(answered));
                        }
                        Some(kind) => *outcomes.errors.entry(kind).or_default() += 1,
                    }
                }
            }
            outcomes
        }));
    }
    // CPU over the window: sampled when it starts and when the last request is due.
    let pid = api.pid().to_string();
    tokio::time::sleep_until(window_start.into()).await;
    let (api_before, own_before, machine_before) = (process_ticks(&pid), process_ticks("self"), machine_ticks());
    let sampled_from = Instant::now();
    tokio::time::sleep_until(due(total).into()).await;
    let (api_after, own_after, machine_after) = (process_ticks(&pid), process_ticks("self"), machine_ticks());
    let sampled_seconds = sampled_from.elapsed().as_secs_f64();

    let mut lookups = Lookups::default();
    let mut last_answer = None;
    for task in tasks {
        let outcomes = task.await?;
        lookups.measured += outcomes.measured;
        for (lag, latency) in outcomes.answered {
            lookups.send_lag.push(lag);
            lookups.latencies.push(latency);
        }
        for (kind, n) in outcomes.errors {
            *lookups.errors.entry(kind).or_default() += n;
        }
        last_answer = last_answer.max(outcomes.last_answer);
    }
    lookups.latencies.sort_by(f64::total_cmp);
    lookups.send_lag.sort_by(f64::total_cmp);
    let window = last_answer
        .map(|at| at.saturating_duration_since(window_start).as_secs_f64())
        .unwrap_or(f64::NAN);
    lookups.answered_rate = lookups.latencies.len() as f64 / window;
    let ticks = clock_ticks();
    let share = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => (a - b) / ticks / sampled_seconds,
        _ => f64::NAN,
    };
    lookups.api_cpu = share(api_before, api_after);
    lookups.own_cpu = share(own_before, own_after);
    if let (Some((busy0, total0, cores)), Some((busy1, total1, _))) = (machine_before, machine_after) {
        lookups.machine_busy = (busy1 - busy0) / (total1 - total0).max(1.0) * cores as f64;
        lookups.cores = cores;
    }
    Ok(lookups)
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request and its answer on a keep-alive connection: the status and the body
/// (which `buffer` holds). The answer must have a `Content-Length`, as the API's JSON
/// answers have.
async fn exchange<'b>(
    stream: &mut TcpStream,
    buffer: &'b mut Vec<u8>,
    request: &[u8],
) -> Result<(u16, &'b [u8]), String> {
    buffer.clear();
    stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if stream.read_buf(buffer).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("closed before an answer".into());
        }
    };
    let head = std::str::from_utf8(&buffer[..head_end]).map_err(|_| "answer head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "not an HTTP answer".to_string())?;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
                return Err("the server closes the connection".into());
            }
        }
    }
    let length = length.ok_or_else(|| "answer without Content-Length".to_string())?;
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        if stream.read_buf(buffer).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("closed in the middle of an answer".into());
        }
    }
    Ok((status, &buffer[body_start..body_start + length]))
}

/// One change of the counter and when each client saw it.
#[derive(Debug)]
struct Change {
    wins: i64,
    /// Milliseconds from the write to each client's event, sorted.
    latencies: Vec<f64>,
    acked_ms: f64,
}

#[derive(Debug)]
struct Streams {
    connected: usize,
    failed: usize,
    open_gauge: f64,
    /// The API's memory before the clients connected and once they all had.
    memory_before: Memory,
    memory_connected: Memory,
    changes: Vec<Change>,
}

impl Streams {
    fn pooled(&self) -> Vec<f64> {
        let mut all: Vec<f64> = self.changes.iter().flat_map(|c| c.latencies.iter().copied()).collect();
        all.sort_by(f64::total_cmp);
        all
    }
}

/// What a client task reports.
#[derive(Debug)]
enum Heard {
    /// Its stream is open and the counter's first value came.
    Connected,
    Failed(String),
    /// A `wins` event with this many wins, read at this instant.
    Wins(usize, i64, Instant),
}

/// `clients` event streams of the counter, then `changes` counters written to
/// `sales.wins`; each change waits for every client's event or the stream timeout.
async fn streams(cli: &Cli, kafka: &KafkaArgs, wins_topic: &str, api: &Api) -> anyhow::Result<Streams> {
    // The writer connects and learns the topic's leaders before the clients listen: a
    // first write pays for both, and that is not the API's time.
    let producer: FutureProducer = kafka
        .client_config("bench-api-wins")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()?;
    let write = |counter: &WinsCounter| -> anyhow::Result<_> {
        let value = schemas::encode(counter)?;
        let key = counter.organization_id.clone();
        let producer = producer.clone();
        let topic = wins_topic.to_string();
        Ok(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("cannot write the counter: {e}"))
        })
    };
    let counter = |organization: &str, wins: i64| {
        let now = chrono::Utc::now();
        WinsCounter {
            organization_id: organization.into(),
            date: now.date_naive().to_string(),
            timezone: "UTC".into(),
            wins,
            updated_at: Timestamp::from_datetime(now),
        }
    };
    write(&counter(&format!("{ORG}-warm-up"), 1))?.await?;

    let memory_before = api.memory();
    let (heard, mut hearing) = mpsc::unbounded_channel();
    let authorization = bearer(ORG);
    let opening = Arc::new(tokio::sync::Semaphore::new(64));
    let path = format!("/v1/orgs/{ORG}/wins/stream");
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..cli.clients {
        let (heard, authorization, opening, path, addr) = (
            heard.clone(),
            authorization.clone(),
            Arc::clone(&opening),
            path.clone(),
            api.public,
        );
        clients.spawn(async move {
            let permit = opening.acquire_owned().await;
            let headers = [("Authorization", authorization.as_str())];
            let mut stream = match EventStream::open(addr, &path, &headers).await {
                Ok(stream) if stream.status == 200 => stream,
                Ok(stream) => {
                    let _ = heard.send(Heard::Failed(format!("status {}", stream.status)));
                    return;
                }
                Err(e) => {
                    let _ = heard.send(Heard::Failed(format!("connect: {e}")));
                    return;
                }
            };
            match stream.next(Duration::from_secs(30)).await {
                Next::Event(e) if e.event == "wins" => {
                    let _ = heard.send(Heard::Connected);
                }
                other => {
                    let _ = heard.send(Heard::Failed(format!("no first value: {other:?}")));
                    return;
                }
            }
            drop(permit);
            loop {
                match stream.next(Duration::from_secs(3_600)).await {
                    Next::Event(e) if e.event == "wins" => {
                        let at = Instant::now();
                        let wins = e.json()["wins"].as_i64().unwrap_or(-1);
                        let _ = heard.send(Heard::Wins(client, wins, at));
                    }
                    Next::Event(_) => {}
                    Next::Closed | Next::TimedOut => return,
                }
            }
        });
    }
    drop(heard);
    let (mut connected, mut failed) = (0, 0);
    let mut failures = BTreeMap::<String, usize>::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while connected + failed < cli.clients {
        match tokio::time::timeout_at(deadline, hearing.recv()).await {
            Ok(Some(Heard::Connected)) => connected += 1,
            Ok(Some(Heard::Failed(why))) => {
                failed += 1;
                *failures.entry(why).or_default() += 1;
            }
            Ok(Some(Heard::Wins(..))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    if !failures.is_empty() {
        eprintln!("api_bench: {failed} stream clients failed: {failures:?}");
    }
    let open_gauge = metric_value(&api.metrics().await?, "api_streams_open{stream=\"wins\"}");
    let memory_connected = api.memory();

    let mut changes = Vec::new();
    for change in 1..=cli.changes {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Anything left over from the previous change is not this one's.
        while hearing.try_recv().is_ok() {}
        let wins = change as i64;
        let sending = write(&counter(ORG, wins))?;
        let written = Instant::now();
        sending.await?;
        let acked_ms = written.elapsed().as_secs_f64() * 1000.0;
        let mut seen = vec![false; cli.clients];
        let mut latencies = Vec::with_capacity(connected);
        let until = tokio::time::Instant::from_std(written + cli.stream_timeout);
        while latencies.len() < connected {
            match tokio::time::timeout_at(until, hearing.recv()).await {
                Ok(Some(Heard::Wins(client, got, at))) if got == wins && !seen[client] => {
                    seen[client] = true;
                    latencies.push(at.saturating_duration_since(written).as_secs_f64() * 1000.0);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        latencies.sort_by(f64::total_cmp);
        changes.push(Change {
            wins,
            latencies,
            acked_ms,
        });
    }
    clients.shutdown().await;
    Ok(Streams {
        connected,
        failed,
        open_gauge,
        memory_before,
        memory_connected,
        changes,
    })
}
