//! Each stateful stage alone catching up on a backlog, beside the runtime's own
//! pass-through measured in the same run on the same broker.
//!
//! `scripts/bench-stages.sh` (or `cargo run --release -p sales-tests --bin stages_bench
//! -- --help` once the stage binaries are built in release). On fresh topics, before any
//! stage starts, the simulator's trade of `--events` widget events with their chats is
//! written straight to `sales.events.raw` and `chat.sessions`, as a trusted producer
//! would. Then, one after the other, each stage binary runs alone on inputs that are
//! complete: the enricher on the backlog, the attributor on the enricher's
//! `sales.orders` and the chats, the reporter on the attributor's
//! `sales.orders.attributed`. Each is timed from its first processed record until its
//! consumer group's committed offsets stand at the ends of its inputs with every order
//! sent on; its CPU and peak memory come from `/proc`. It is then killed with SIGKILL
//! and started again, and the restart is timed to `/readyz` answering 200. Before the
//! stages, the runtime's stateless pass-through copies `sales.events.raw`: the pace of
//! the runtime alone, which the stages' records per second are read against.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::topic_admin::{WantedTopic, assign_whole_topic, ensure, ensure_topics};
use kafka_runtime::watermark::is_mark;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sales_tests::bench::{
    PassThrough, clock_ticks, load_average, local_brokers, process_ticks, stage_binaries, status_bytes, tail,
};
use sales_tests::{InProcessWorker, free_local_addr, http_get, metric_value};
use schemas::records::{EventName, OrganizationSettings};
use schemas::topics::{Cleanup, DEFAULT_PARTITIONS, Topic};
use schemas::values::Timestamp;
use simulator::Write;

/// Each stage alone catching up on a backlog, and the runtime's pass-through.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Widget events of the backlog (`sales.events.raw`), written with the chat events
    /// among them.
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Seed of the simulated trade: the same seed writes the same backlog.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Days before today the backlog's trade spreads over.
    #[arg(long, default_value_t = 36)]
    days: u32,
    /// Commit interval of the stages and of the pass-through.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    commit_interval: Duration,
    /// How long a stage may take to be ready and then to catch up (each on its own);
    /// the pass-through has as long.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Where the stage binaries are; by default beside this program.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// Targets printed beside the figures (not asserted).
const TARGET_CPU_MICROS: f64 = 15.0;
const TARGET_PERCENT_OF_PASS: f64 = 60.0;

/// How often a running stage's metrics are read: often enough to place its first
/// record and its catch-up to a twentieth of a second, rarely enough to cost it nothing
/// worth counting.
const POLL: Duration = Duration::from_millis(50);

/// Visits per shop and day of the small plan that sizes the real one.
const PROBE_VISITS: u32 = 50;

/// Records written per batch: librdkafka's producer queue holds 100,000 messages.
const WRITE_BATCH: usize = 20_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.events > 0, "--events must be at least 1");
    anyhow::ensure!(cli.days > 0, "--days must be at least 1");
    // The in-process pass-through's warnings (and librdkafka's logs), filtered by RUST_LOG.
    kafka_runtime::telemetry::init(&kafka_runtime::config::TelemetryArgs {
        log_format: kafka_runtime::config::LogFormat::Text,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
    })?;
    let signal = Shutdown::on_signals()?;
    // Dropping the benchmark's future on a signal kills the stage process it owns.
    tokio::select! {
        result = bench(&cli) => result,
        () = signal.requested() => anyhow::bail!("interrupted; the stage running was killed"),
    }
}

/// Where a run writes and what it runs.
struct Run {
    id: String,
    kafka: KafkaArgs,
    logs: PathBuf,
    bin_dir: PathBuf,
    commit_interval: Duration,
    timeout: Duration,
    brokers: Vec<String>,
}

async fn bench(cli: &Cli) -> anyhow::Result<()> {
    let run = prepare(cli)?;
    eprintln!(
        "stages_bench: topics {}*, stage logs in {}",
        run.kafka.topic_prefix,
        run.logs.display()
    );
    let load = load_average();
    ensure_topics(&run.kafka, DEFAULT_PARTITIONS, 1).await?;
    let (counts, sources) = write_sources(cli, &run).await?;
    eprintln!("stages_bench: the pass-through on {}", sources.raw.0);
    let pass = pass_through(&run, &sources.raw.0, counts.widget_events).await?;
    let stages = run_stages(&run, &counts, sources).await?;
    print_figures(cli, &run, &counts, &load, &pass, &stages);
    Ok(())
}

/// The backlog's topics, each with its partitions' ends (high watermarks: they are
/// written without transactions).
struct Sources {
    raw: (String, Vec<i64>),
    chats: (String, Vec<i64>),
}

/// Generates and writes the backlog; returns what it holds and where its topics end.
async fn write_sources(cli: &Cli, run: &Run) -> anyhow::Result<(Counts, Sources)> {
    let now = Timestamp::from_datetime(chrono::Utc::now());
    eprintln!(
        "stages_bench: generating {} widget events (seed {})",
        cli.events, cli.seed
    );
    let backlog = Backlog::generate(cli.seed, cli.days, cli.events, now);
    write_backlog(&run.kafka, &backlog).await?;
    let topics = run.kafka.topic_names()?;
    let (raw, chats) = (topics.name(Topic::EventsRaw), topics.name(Topic::ChatSessions));
    let sources = tokio::task::block_in_place(|| {
        anyhow::Ok(Sources {
            raw: (raw.clone(), high_watermarks(&run.kafka, &raw)?),
            chats: (chats.clone(), high_watermarks(&run.kafka, &chats)?),
        })
    })?;
    let written: i64 = sources.raw.1.iter().sum();
    anyhow::ensure!(
        written == backlog.counts.widget_events as i64,
        "{raw} holds {written} records, not the {} written",
        backlog.counts.widget_events
    );
    Ok((backlog.counts, sources))
}

/// The three stages one after the other, each once the one before it has stopped and
/// its output holds every order once.
async fn run_stages(run: &Run, counts: &Counts, sources: Sources) -> anyhow::Result<Vec<StageFigures>> {
    let topics = run.kafka.topic_names()?;
    let Sources { raw, chats } = sources;
    let enricher = StageSpec {
        name: "enricher",
        inputs: vec![raw, chats.clone()],
        records: counts.widget_events + counts.chat_events + counts.order_events,
        orders: Some(("enricher_orders_total", counts.orders)),
        releases_without_input: true,
        shown: ("enricher_orders_total", "orders to sales.orders"),
    };
    let enricher = measure_stage(run, &enricher).await?;
    let orders = checked_output(run, &topics.name(Topic::Orders), counts.orders)?;

    let attributor = StageSpec {
        name: "attributor",
        inputs: vec![chats, orders],
        records: counts.chat_events + counts.orders,
        orders: Some(("attributor_orders_total", counts.orders)),
        releases_without_input: true,
        shown: ("attributor_orders_total", "orders to sales.orders.attributed"),
    };
    let attributor = measure_stage(run, &attributor).await?;
    let attributed = checked_output(run, &topics.name(Topic::OrdersAttributed), counts.orders)?;

    let reporter = StageSpec {
        name: "reporter",
        inputs: vec![attributed],
        records: counts.orders,
        orders: None,
        releases_without_input: false,
        shown: ("reporter_reports_published_total", "daily reports published"),
    };
    let reporter = measure_stage(run, &reporter).await?;
    Ok(vec![enricher, attributor, reporter])
}

/// A stage's output topic read to its end, which must hold each of the backlog's
/// `orders` distinct orders once: the next stage's input, with its partitions' ends.
fn checked_output(run: &Run, topic: &str, orders: u64) -> anyhow::Result<(String, Vec<i64>)> {
    let output = tokio::task::block_in_place(|| read_output(&run.kafka, topic, run.timeout))?;
    anyhow::ensure!(
        output.records == orders,
        "{topic} holds {} orders, not the {orders} distinct orders of the backlog",
        output.records
    );
    Ok((topic.to_string(), output.ends))
}

/// The run's topic prefix, its logs' folder and the stage binaries, checked.
fn prepare(cli: &Cli) -> anyhow::Result<Run> {
    let id = format!("bench-st-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let mut kafka = cli.kafka.clone();
    kafka.topic_prefix = format!("{id}.");
    let logs = std::env::temp_dir().join("sales-bench-stages").join(&id);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let bin_dir = stage_binaries(
        cli.bin_dir.as_deref(),
        &["enricher", "attributor", "reporter"],
        "cargo build --release --locked -p enricher -p attributor -p reporter --bins",
    )?;
    Ok(Run {
        id,
        kafka,
        logs,
        bin_dir,
        commit_interval: cli.commit_interval,
        timeout: cli.timeout,
        brokers: local_brokers(),
    })
}

/// What the backlog holds, and so what each stage must make of it.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    widget_events: u64,
    chat_events: u64,
    /// Widget events that are orders: each passes once through the enricher's
    /// repartition, `sales.orders.by-id`, which the enricher reads back.
    order_events: u64,
    /// Distinct orders (organization and order id): each comes out of the enricher
    /// once, whatever the reloads and second devices, and out of the attributor once.
    orders: u64,
}

/// The first widget events of the simulator's trade, in the order they were sent, with
/// the chat events sent among them.
struct Backlog {
    organizations: Vec<OrganizationSettings>,
    /// The trade, then the second device's copies of orders, as
    /// `simulator::write::past` writes a plan's past.
    writes: Vec<Write>,
    counts: Counts,
}

impl Backlog {
    /// A plan of `days` days sized from a small one of the same seed to hold at least
    /// `events` widget events, cut to exactly that many.
    fn generate(seed: u64, days: u32, events: usize, now: Timestamp) -> Backlog {
        let shops = simulator::plan::SHOPS.len() as f64;
        let probe = simulator::plan(seed, days, PROBE_VISITS, now);
        let per_visit = widget_events(&probe) as f64 / (f64::from(PROBE_VISITS * days) * shops);
        // A little more than the estimate, so that one plan is usually enough.
        let mut visits = (events as f64 / (per_visit * f64::from(days) * shops) * 1.02).ceil() as u32;
        loop {
            let plan = simulator::plan(seed, days, visits.max(1), now);
            if widget_events(&plan) >= events {
                return Backlog::cut(plan, events);
            }
            visits = visits + visits / 10 + 1;
        }
    }

    /// The plan's past up to its `events`-th widget event, the second device's copies
    /// taken where they fall in time (each is sent a few minutes after its order).
    fn cut(plan: simulator::Plan, events: usize) -> Backlog {
        let mut later = plan.past_later.into_iter().peekable();
        let (mut trade, mut copies) = (Vec::new(), Vec::new());
        let mut widgets = 0;
        // The time a record of the trade is sent at: a late chat event goes after the
        // order it explains, so times only grow.
        let mut sent = i64::MIN;
        for write in plan.past {
            sent = sent.max(write.at().micros());
            while widgets < events
                && let Some(copy) = later.next_if(|c| c.at().micros() < sent)
            {
                copies.push(copy);
                widgets += 1;
            }
            if widgets == events {
                break;
            }
            widgets += usize::from(matches!(write, Write::Widget(_)));
            trade.push(write);
        }
        copies.extend(later.take(events - widgets));
        trade.extend(copies);
        let counts = count(&trade);
        Backlog {
            organizations: plan.organizations,
            writes: trade,
            counts,
        }
    }
}

fn widget_events(plan: &simulator::Plan) -> usize {
    plan.past
        .iter()
        .chain(&plan.past_later)
        .filter(|w| matches!(w, Write::Widget(_)))
        .count()
}

fn count(writes: &[Write]) -> Counts {
    let mut counts = Counts::default();
    let mut orders = HashSet::new();
    for write in writes {
        match write {
            Write::Chat(_) => counts.chat_events += 1,
            Write::Widget(event) => {
                counts.widget_events += 1;
                if event.name == EventName::StoreOrderWasCreated {
                    counts.order_events += 1;
                    if let Some(order) = &event.order {
                        orders.insert((event.organization_id.as_str(), order.id.as_str()));
                    }
                }
            }
        }
    }
    counts.orders = orders.len() as u64;
    counts
}

/// The organizations' settings (the reporter reads their timezones), then the backlog,
/// in batches, each acknowledged before the next so that every partition keeps the
/// order of its records.
async fn write_backlog(kafka: &KafkaArgs, backlog: &Backlog) -> anyhow::Result<()> {
    let producer = simulator::write::producer(kafka)?;
    simulator::write::organizations(kafka, &producer, &backlog.organizations).await?;
    let started = Instant::now();
    for (i, batch) in backlog.writes.chunks(WRITE_BATCH).enumerate() {
        simulator::write::records(kafka, &producer, batch).await?;
        if i % 10 == 9 {
            eprintln!(
                "stages_bench: {} of {} records written",
                (i + 1) * WRITE_BATCH,
                backlog.writes.len()
            );
        }
    }
    eprintln!(
        "stages_bench: {} records written in {:.1} s",
        backlog.writes.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A consumer outside any group's membership: it reads ends and committed offsets.
fn reader(kafka: &KafkaArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(kafka
        .client_config("bench-stages-reader")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?)
}

/// Each partition's high watermark: the end of a topic written without transactions.
fn high_watermarks(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<Vec<i64>> {
    let consumer = reader(kafka, &format!("{topic}-bench-ends"))?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer.fetch_watermarks(topic, i32::try_from(p)?, Duration::from_secs(10))?;
            Ok(high)
        })
        .collect()
}

/// A stage's output topic read to its end as a downstream stage reads it.
#[derive(Debug)]
struct Output {
    /// Records other than watermark marks.
    records: u64,
    /// Per partition, the offset after the last record read (a mark or not): where a
    /// reader's committed offset stands once it has processed everything, the commit
    /// marker of the last transaction being no record.
    ends: Vec<i64>,
}

/// Reads `topic` from its beginning, `read_committed`, up to its last stable offset
/// (no stage writes it any more).
fn read_output(kafka: &KafkaArgs, topic: &str, timeout: Duration) -> anyhow::Result<Output> {
    let consumer = reader(kafka, &format!("{topic}-bench-check"))?;
    let partitions = assign_whole_topic(&consumer, topic, Offset::Beginning)?;
    let mut stable = Vec::with_capacity(partitions);
    for p in 0..partitions {
        stable.push(
            consumer
                .fetch_watermarks(topic, i32::try_from(p)?, Duration::from_secs(10))?
                .1,
        );
    }
    let mut ends = vec![0i64; partitions];
    let mut records = 0;
    let deadline = Instant::now() + timeout;
    while !read_to(&consumer, topic, &stable)? {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{topic} was not read to its end within {timeout:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        ends[usize::try_from(message.partition())?] = message.offset() + 1;
        records += u64::from(!is_mark(message.key()));
    }
    Ok(Output { records, ends })
}

/// Whether the consumer's position has reached `stable` in every partition (librdkafka
/// moves it past the commit markers it skips).
fn read_to(consumer: &BaseConsumer, topic: &str, stable: &[i64]) -> anyhow::Result<bool> {
    let positions = consumer.position()?;
    Ok(stable.iter().enumerate().all(|(p, end)| {
        *end == 0
            || positions
                .find_partition(topic, p as i32)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(at) if at >= *end))
    }))
}

/// The pass-through's figures.
#[derive(Debug)]
struct Pass {
    records: f64,
    seconds: f64,
    cpu_seconds: f64,
}

/// The runtime's stateless pass-through (as `scripts/bench-runtime.sh` measures it) in
/// this process, copying `input`'s `records` records: timed from its first record until
/// it has processed them all and stopped, its final commit included.
async fn pass_through(run: &Run, input: &str, records: u64) -> anyhow::Result<Pass> {
    let output = format!("{}bench.pass.out", run.kafka.topic_prefix);
    let wanted = WantedTopic {
        name: output.clone(),
        partitions: DEFAULT_PARTITIONS,
        cleanup: Cleanup::Delete {
            retention: Duration::from_secs(86_400),
        },
    };
    ensure(&run.kafka, &[wanted], 1).await?;
    let app = Arc::new(PassThrough {
        id: format!("{}-pass", run.id),
        input: input.to_string(),
        output,
    });
    let worker = InProcessWorker::start(&run.kafka, app, run.commit_interval, Duration::from_secs(3600));
    let deadline = Instant::now() + run.timeout;
    let processed = worker.metrics.records.clone();
    while processed.get() == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pass-through read nothing within {:?}",
            run.timeout
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (started, cpu, first) = (Instant::now(), process_ticks("self").unwrap_or(0.0), processed.get());
    while processed.get() < records {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pass-through processed {} of {records} records within {:?}",
            processed.get(),
            run.timeout
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.stop().await?;
    Ok(Pass {
        records: (records - first) as f64,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: (process_ticks("self").unwrap_or(0.0) - cpu) / clock_ticks(),
    })
}

/// What one stage reads and what its catch-up must reach.
struct StageSpec {
    name: &'static str,
    /// Its inputs written before it starts, with each partition's end: where its
    /// committed offsets must stand.
    inputs: Vec<(String, Vec<i64>)>,
    /// Input records it processes in all, its own repartition's included.
    records: u64,
    /// The counter of the orders it sends on, and the count that counter must reach.
    orders: Option<(&'static str, u64)>,
    /// Whether it sends outputs on no input record of the inputs above: orders held
    /// until the chat stream's watermark, which a quiet stream takes from the wall
    /// clock, or until its own marks read back. Those are known to be committed only
    /// once a commit has followed their count.
    releases_without_input: bool,
    /// A counter of its outputs to print, and what it counts.
    shown: (&'static str, &'static str),
}

/// One stage's figures.
#[derive(Debug)]
struct StageFigures {
    name: &'static str,
    /// Input records processed in all, and within the window from the first sample
    /// that saw one to the catch-up.
    records: f64,
    window_records: f64,
    seconds: f64,
    cpu_seconds: f64,
    brokers_cpu_seconds: f64,
    /// Transactions committed within the window, and the seconds they took.
    commits: f64,
    commit_seconds: f64,
    peak_rss: u64,
    first_ready: f64,
    restart_ready: f64,
    restored_records: f64,
    restore_seconds: f64,
    aborts: f64,
    shown: (f64, &'static str),
}

/// Runs the stage alone until it has caught up, notes its figures, kills it with
/// SIGKILL, times its restart to ready, and stops it.
async fn measure_stage(run: &Run, spec: &StageSpec) -> anyhow::Result<StageFigures> {
    let name = spec.name;
    let group = format!("{}-{name}", run.id);
    let admin = free_local_addr();
    let args = stage_args(run, &group, name, admin);
    let binary = run.bin_dir.join(name);
    let log = run.logs.join(format!("{name}.log"));
    eprintln!("stages_bench: {name} catching up on {} input records", spec.records);

    let mut stage = StageProcess::spawn(name, &binary, &args, admin, &log)?;
    let first_ready = stage.ready(run.timeout).await?;
    let offsets = reader(&run.kafka, &format!("{}{group}", run.kafka.topic_prefix))?;
    let (first, last) = catch_up(&mut stage, spec, &offsets, run).await?;
    let peak_rss = status_bytes(&stage.pid(), "VmHWM:").unwrap_or(0);
    let shown = stage.metric(spec.shown.0).await?;

    stage.kill()?;
    let mut stage = StageProcess::spawn(name, &binary, &args, admin, &log)?;
    let restart_ready = stage.ready(run.timeout).await?;
    let restored_records = stage.metric("stream_restored_records_total").await?;
    let restore_seconds = stage.metric("stream_last_restore_seconds").await?;
    stage.stop().await?;

    let ticks = clock_ticks();
    Ok(StageFigures {
        name,
        records: last.records,
        window_records: last.records - first.records,
        seconds: last.at.saturating_duration_since(first.at).as_secs_f64(),
        cpu_seconds: (last.cpu - first.cpu) / ticks,
        brokers_cpu_seconds: (last.brokers_cpu - first.brokers_cpu) / ticks,
        commits: last.commits - first.commits,
        commit_seconds: last.commit_seconds - first.commit_seconds,
        peak_rss,
        first_ready,
        restart_ready,
        restored_records,
        restore_seconds,
        aborts: last.aborts,
        shown: (shown, spec.shown.1),
    })
}

/// The stage's command line, as `scripts/bench-pipeline.sh` starts it.
fn stage_args(run: &Run, group: &str, name: &str, admin: SocketAddr) -> Vec<String> {
    vec![
        "--bootstrap-servers".into(),
        run.kafka.bootstrap_servers.clone(),
        "--topic-prefix".into(),
        run.kafka.topic_prefix.clone(),
        "--admin-addr".into(),
        admin.to_string(),
        "--group-id".into(),
        group.to_string(),
        "--worker-id".into(),
        format!("{name}-1"),
        "--commit-interval".into(),
        humantime::format_duration(run.commit_interval).to_string(),
    ]
}

/// A running stage's counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    records: f64,
    orders: f64,
    commits: f64,
    /// Seconds spent committing, all commits together.
    commit_seconds: f64,
    aborts: f64,
    dead_letters: f64,
    /// The stage's CPU and the local brokers', clock ticks.
    cpu: f64,
    brokers_cpu: f64,
}

/// Polls the stage until it has caught up; returns the first sample that saw a record
/// processed and the sample taken once caught up. Caught up: every input record
/// processed and every order sent on (its metrics), a commit after that when it sends
/// outputs on no input record, and its committed offsets at the ends of its inputs.
async fn catch_up(
    stage: &mut StageProcess,
    spec: &StageSpec,
    offsets: &BaseConsumer,
    run: &Run,
) -> anyhow::Result<(Sample, Sample)> {
    let deadline = Instant::now() + run.timeout;
    let orders_metric = spec.orders.map(|(metric, _)| metric);
    let mut first: Option<Sample> = None;
    let mut commits_when_counted: Option<f64> = None;
    let mut behind = String::from("not checked yet");
    loop {
        let now = stage.sample(orders_metric, &run.brokers).await?;
        anyhow::ensure!(
            now.dead_letters == 0.0,
            "{} dead-lettered {} records (log {}):\n{}",
            spec.name,
            now.dead_letters,
            stage.log.display(),
            tail(&stage.log)
        );
        if first.is_none() && now.records > 0.0 {
            first = Some(now);
        }
        if let Some(first) = first
            && counted(&now, spec)
        {
            let counted_at = *commits_when_counted.get_or_insert(now.commits);
            if !spec.releases_without_input || now.commits > counted_at {
                behind = tokio::task::block_in_place(|| partitions_behind(offsets, &spec.inputs))?;
                if behind.is_empty() {
                    return Ok((first, stage.sample(orders_metric, &run.brokers).await?));
                }
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} did not catch up within {:?}: {} of {} input records processed, {} of {} orders sent on, \
                 committed offsets behind: {behind} (log {})",
                spec.name,
                run.timeout,
                now.records,
                spec.records,
                now.orders,
                spec.orders.map_or(0, |(_, n)| n),
                stage.log.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the stage's metrics count every input record and every order sent on.
fn counted(now: &Sample, spec: &StageSpec) -> bool {
    now.records >= spec.records as f64 && spec.orders.is_none_or(|(_, orders)| now.orders >= orders as f64)
}

/// The input partitions whose committed offset is short of its end, described; empty
/// when there is none.
fn partitions_behind(offsets: &BaseConsumer, inputs: &[(String, Vec<i64>)]) -> anyhow::Result<String> {
    let mut wanted = TopicPartitionList::new();
    for (topic, ends) in inputs {
        for p in 0..ends.len() {
            wanted.add_partition(topic, i32::try_from(p)?);
        }
    }
    let committed = offsets.committed_offsets(wanted, Duration::from_secs(10))?;
    let mut behind = Vec::new();
    for (topic, ends) in inputs {
        for (p, end) in ends.iter().enumerate() {
            let at = committed
                .find_partition(topic, i32::try_from(p)?)
                .and_then(|e| match e.offset() {
                    Offset::Offset(at) => Some(at),
                    _ => None,
                })
                .unwrap_or(0);
            if at < *end {
                behind.push(format!("{topic} [{p}] at {at} of {end}"));
            }
        }
    }
    Ok(behind.join(", "))
}

/// A stage binary running as a process of its own; killed when dropped, so an error or
/// a signal leaves none running.
#[derive(Debug)]
struct StageProcess {
    name: &'static str,
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
    started: Instant,
}

impl StageProcess {
    fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[String],
        admin: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<StageProcess> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(StageProcess {
            name,
            child,
            admin,
            log: log.to_path_buf(),
            started,
        })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// An error showing the end of the log once the process has exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Seconds from the process start until `/readyz` answers 200, polled every 5 ms.
    async fn ready(&mut self, timeout: Duration) -> anyhow::Result<f64> {
        loop {
            self.alive()?;
            if matches!(http_get(self.admin, "/readyz").await, Ok((200, _))) {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            if self.started.elapsed() > timeout {
                let answer = http_get(self.admin, "/readyz").await;
                anyhow::bail!(
                    "{} was not ready within {timeout:?}; /readyz answered {answer:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        let (status, text) = http_get(self.admin, "/metrics")
            .await
            .with_context(|| format!("cannot read the metrics of {}", self.name))?;
        anyhow::ensure!(status == 200, "{} answered {status} for /metrics", self.name);
        Ok(text)
    }

    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(metric_value(&self.metrics().await?, name))
    }

    async fn sample(&mut self, orders: Option<&str>, brokers: &[String]) -> anyhow::Result<Sample> {
        self.alive()?;
        let at = Instant::now();
        let cpu = process_ticks(&self.pid()).with_context(|| format!("no CPU time of {}", self.name))?;
        let brokers_cpu = brokers.iter().filter_map(|pid| process_ticks(pid)).sum();
        let text = self.metrics().await?;
        Ok(Sample {
            at,
            records: metric_value(&text, "stream_records_total"),
            orders: orders.map_or(0.0, |name| metric_value(&text, name)),
            commits: metric_value(&text, "stream_commits_total"),
            commit_seconds: metric_value(&text, "stream_commit_seconds_sum"),
            aborts: metric_value(&text, "stream_aborts_total"),
            dead_letters: metric_value(&text, "stream_dead_letters_total"),
            cpu,
            brokers_cpu,
        })
    }

    /// SIGKILL: no final commit, the open transaction left for the next start to abort.
    fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM after a last look for dead letters; the stage must commit, leave its
    /// group and exit with success within 30 s.
    async fn stop(&mut self) -> anyhow::Result<()> {
        let dead_letters = self.metric("stream_dead_letters_total").await?;
        anyhow::ensure!(
            dead_letters == 0.0,
            "{} dead-lettered {dead_letters} records after its restart",
            self.name
        );
        Command::new("kill")
            .args(["-TERM", &self.pid()])
            .status()
            .context("cannot run kill")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not stop within 30 s of SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        anyhow::ensure!(
            status.success(),
            "{} ended with {status} after SIGTERM; the end of {}:\n{}",
            self.name,
            self.log.display(),
            tail(&self.log)
        );
        Ok(())
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn print_figures(cli: &Cli, run: &Run, counts: &Counts, load: &str, pass: &Pass, stages: &[StageFigures]) {
    let pass_rate = pass.records / pass.seconds;
    println!(
        "stages_bench: a backlog of {} widget events ({} orders, {} of them distinct) and {} chat events, \
         {} shops over {} days, seed {}; {DEFAULT_PARTITIONS} partitions, commit interval {}; topics {}*; \
         load average {load} at the start",
        counts.widget_events,
        counts.order_events,
        counts.orders,
        counts.chat_events,
        simulator::plan::SHOPS.len(),
        cli.days,
        cli.seed,
        humantime::format_duration(run.commit_interval),
        run.kafka.topic_prefix,
    );
    println!(
        "{:<12} {:>13} {:>10} {:>9} {:>20} {:>12} {:>17}   targets: CPU at most {TARGET_CPU_MICROS} µs/record, at least {TARGET_PERCENT_OF_PASS} % of pass",
        "stage",
        "input records",
        "records/s",
        "% of pass",
        "CPU µs/rec = ms/1000",
        "peak RSS MiB",
        "restart to ready s"
    );
    for stage in stages {
        let rate = stage.window_records / stage.seconds;
        let micros = stage.cpu_seconds * 1e6 / stage.window_records;
        let percent = rate / pass_rate * 100.0;
        println!(
            "{:<12} {:>13.0} {:>10.0} {:>8.1}% {:>20.2} {:>12.1} {:>17.2}   {}",
            stage.name,
            stage.records,
            rate,
            percent,
            micros,
            stage.peak_rss as f64 / (1024.0 * 1024.0),
            stage.restart_ready,
            targets(micros, percent),
        );
    }
    let pass_micros = pass.cpu_seconds * 1e6 / pass.records;
    println!(
        "{:<12} {:>13.0} {:>10.0} {:>8.1}% {:>20.2} {:>12} {:>17}",
        "pass-through", pass.records, pass_rate, 100.0, pass_micros, "-", "-"
    );
    println!(
        "pass-through: the runtime's stateless exactly-once stage in this process copying {} records of sales.events.raw \
         in {:.2} s, its final commit included (what scripts/bench-runtime.sh calls pass-through)",
        pass.records, pass.seconds
    );
    for stage in stages {
        println!(
            "{}: ready {:.2} s after its start; caught up {:.2} s after its first record, {:.2} cores busy meanwhile \
             (Kafka brokers on this machine {:.2}), {:.0} commits taking {:.2} s of it; {:.0} {}; {:.0} aborts; \
             restarted after SIGKILL: ready in {:.2} s, {:.0} changelog records restored in {:.2} s",
            stage.name,
            stage.first_ready,
            stage.seconds,
            stage.cpu_seconds / stage.seconds,
            stage.brokers_cpu_seconds / stage.seconds,
            stage.commits,
            stage.commit_seconds,
            stage.shown.0,
            stage.shown.1,
            stage.aborts,
            stage.restart_ready,
            stage.restored_records,
            stage.restore_seconds,
        );
        if stage.aborts > 0.0 {
            println!(
                "note: {} aborted {:.0} transactions; their records were processed and counted again",
                stage.name, stage.aborts
            );
        }
    }
}

/// Which targets a stage's figures meet.
fn targets(micros: f64, percent: f64) -> String {
    let cpu = if micros <= TARGET_CPU_MICROS {
        "CPU met"
    } else {
        "CPU missed"
    };
    let rate = if percent >= TARGET_PERCENT_OF_PASS {
        "rate met"
    } else {
        "rate missed"
    };
    format!("{cpu}, {rate}")
}
