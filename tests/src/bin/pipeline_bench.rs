//! The whole pipeline end to end: every stage its own process, fed by the simulator's
//! load at a steady rate, beside the plain rdkafka consume-to-produce limit measured in
//! the same run.
//!
//! `scripts/bench-pipeline.sh` (or `cargo run --release -p sales-tests --bin
//! pipeline_bench -- --help` once the stage binaries are built in release). On fresh
//! topics: ingest, the enricher, the attributor and the reporter are started from the
//! binaries beside this one; customers in live chats post cart events and orders to
//! ingest at `--rate` for `--seconds` while the chat platform hands chats over; the
//! inbox notifications and the attributed orders are read as they are committed and
//! matched to their events' 202. The figures cover the window after the warm-up: the
//! events accepted per second, whether every one of them came out at the end of the
//! chain, the latencies, each stage's records/s (from its `/metrics`) and CPU (from
//! `/proc`). The stages are then stopped and the run's `sales.events.raw` records are
//! copied with plain rdkafka, no transactions: the limit no stage can beat.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::shutdown::Shutdown;
use kafka_runtime::topic_admin::{WantedTopic, assign_whole_topic, ensure, ensure_topics};
use rdkafka::Offset;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sales_tests::bench::{
    clock_ticks, local_brokers, machine_ticks, percentile, process_ticks, stage_binaries, tail, thread_ticks,
};
use sales_tests::{free_local_addr, http_get, metric_labelled as metric};
use schemas::records::{AgentNotification, AttributedOrder, EventName};
use schemas::topics::{Cleanup, DEFAULT_PARTITIONS, Topic};
use schemas::values::Timestamp;
use simulator::Write;
use simulator::load::{self, Load, Posted};

/// The whole pipeline end to end at a steady rate, and the plain rdkafka limit.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Widget events posted to ingest per second; a list (`500,1000,2000`) runs the
    /// benchmark once per rate, each on fresh topics.
    #[arg(long, default_value = "500", value_delimiter = ',', num_args = 1..)]
    rate: Vec<u32>,
    /// After the listed rates, keep raising the rate by half (rounded up to a hundred)
    /// until p99 202 -> notification reaches `--sweep-limit` or the pipeline no longer
    /// takes every event; then print the highest rate that stayed under the limit.
    #[arg(long)]
    sweep: bool,
    /// The p99 202 -> notification latency a sweep stops at.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    sweep_limit: Duration,
    /// Seconds of load, the warm-up included.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds at the start of the load left out of the figures (connections, the
    /// first transactions, the stages' caches).
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seed of the load: the same seed posts the same events.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Customers, each in a live chat an agent joined.
    #[arg(long, default_value_t = 1_000)]
    customers: usize,
    /// A chat handed over to a new one (three chat events) every this many widget events.
    #[arg(long, default_value_t = 10)]
    handover_every: u32,
    /// Requests to ingest in flight at most.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// Commit interval of the enricher, the attributor and the reporter.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    commit_interval: Duration,
    /// Records for the plain consume-to-produce limit: the run's sales.events.raw
    /// records, repeated up to this count (all of them at least once).
    #[arg(long, default_value_t = 200_000)]
    plain_records: usize,
    /// How long to wait after the load for the last outputs.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Where the stage binaries are; by default beside this program.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// Cores a broker's JIT compiler may take during the window before the run is called cold:
/// a JVM compiles its hot code in its first minutes under load, taking up to half a core
/// here, which the stages then miss.
const JIT_WARM: f64 = 0.1;

/// The stages' CPU per widget event the pipeline aims at.
const STAGE_CPU_TARGET_MICROS: u32 = 50;

const STAGES: [&str; 4] = ["ingest", "enricher", "attributor", "reporter"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.rate.iter().all(|r| *r > 0), "--rate must be at least 1");
    anyhow::ensure!(
        cli.warmup < cli.seconds,
        "--warmup ({} s) must be shorter than --seconds ({} s)",
        cli.warmup,
        cli.seconds
    );
    let signal = Shutdown::on_signals()?;
    // Dropping the benchmark's future on a signal stops the stage processes it owns.
    tokio::select! {
        result = runs(&cli) => result,
        () = signal.requested() => anyhow::bail!("interrupted; the stages were stopped"),
    }
}

/// What one run at one rate came to.
#[derive(Debug, Clone, Copy)]
struct Summary {
    rate: u32,
    sustained: f64,
    notify_p99: f64,
    order_p99: f64,
    /// The four stages' CPU per accepted widget event, in microseconds.
    stage_cpu_per_event: f64,
    /// Every accepted event came out at the end of the chain and none was refused.
    complete: bool,
}

/// Every rate asked for, then the sweep; a table of the runs when there was more than one.
async fn runs(cli: &Cli) -> anyhow::Result<()> {
    let mut summaries: Vec<Summary> = Vec::new();
    for rate in &cli.rate {
        summaries.push(bench(cli, *rate).await?);
    }
    let limit = cli.sweep_limit.as_secs_f64() * 1000.0;
    while cli.sweep
        && summaries.len() < MAX_RUNS
        && summaries
            .last()
            .is_some_and(|s| s.complete && s.notify_p99 < limit && s.sustained >= 0.97 * f64::from(s.rate))
    {
        let last = summaries.last().map_or(500, |s| s.rate);
        let next = (last + last / 2).div_ceil(100) * 100;
        summaries.push(bench(cli, next).await?);
    }
    if summaries.len() > 1 {
        println!();
        println!(
            "rate (events/s)   sustained   p99 202->notification (ms)   p99 orders (ms)   stages' CPU per event (µs)   all through"
        );
        for s in &summaries {
            println!(
                "{:>15}   {:>9.1}   {:>26.1}   {:>15.1}   {:>26.1}   {}",
                s.rate,
                s.sustained,
                s.notify_p99,
                s.order_p99,
                s.stage_cpu_per_event,
                if s.complete { "yes" } else { "no" }
            );
        }
        match summaries
            .iter()
            .filter(|s| s.complete && s.notify_p99 < limit)
            .map(|s| s.rate)
            .max()
        {
            Some(rate) => println!("highest rate with p99 202 -> notification under {limit:.0} ms: {rate} events/s"),
            None => println!("no rate kept p99 202 -> notification under {limit:.0} ms"),
        }
    }
    // A sweep ends where the pipeline gives out; a rate asked for must go through whole.
    let short: Vec<String> = summaries[..cli.rate.len()]
        .iter()
        .filter(|s| !s.complete)
        .map(|s| s.rate.to_string())
        .collect();
    anyhow::ensure!(
        short.is_empty(),
        "not every event went through the pipeline at {} events/s",
        short.join(", ")
    );
    Ok(())
}

/// Runs of a sweep at most, the listed rates included.
const MAX_RUNS: usize = 12;

async fn bench(cli: &Cli, rate: u32) -> anyhow::Result<Summary> {
    let run_id = format!("bench-pl-{}-{rate}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let mut kafka = cli.kafka.clone();
    kafka.topic_prefix = format!("{run_id}.");
    let topics = kafka.topic_names()?;
    let logs = std::env::temp_dir().join("sales-bench-pipeline").join(&run_id);
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let bin_dir = stage_binaries(cli.bin_dir.as_deref(), &STAGES, "cargo build --release --locked --bins")?;
    eprintln!(
        "pipeline_bench: topics {}*, stage logs in {}",
        kafka.topic_prefix,
        logs.display()
    );

    ensure_topics(&kafka, DEFAULT_PARTITIONS, 1).await?;
    let mut load = Load::new(cli.seed, cli.customers);
    let producer = simulator::write::producer(&kafka)?;
    simulator::write::organizations(&kafka, &producer, &[load.organization()]).await?;
    let opened = Timestamp(Timestamp::from_datetime(chrono::Utc::now()).micros() - 60_000_000);
    let opening: Vec<Write> = load.opening_chats(opened).into_iter().map(Write::Chat).collect();
    simulator::write::records(&kafka, &producer, &opening).await?;

    let mut stages = Stages::default();
    let public = free_local_addr();
    for name in STAGES {
        let admin = free_local_addr();
        let mut args = vec![
            "--bootstrap-servers".to_string(),
            kafka.bootstrap_servers.clone(),
            "--topic-prefix".into(),
            kafka.topic_prefix.clone(),
            "--admin-addr".into(),
            admin.to_string(),
        ];
        if name == "ingest" {
            // One client IP sends everything: its limit must be out of reach.
            args.extend(
                [
                    "--listen-addr",
                    &public.to_string(),
                    "--ip-rate",
                    "100000000",
                    "--ip-burst",
                    "100000000",
                    "--org-rate",
                    "100000000",
                    "--org-burst",
                    "100000000",
                    "--max-connections-per-ip",
                    "100000",
                ]
                .map(String::from),
            );
        } else {
            args.extend([
                "--group-id".into(),
                format!("{run_id}-{name}"),
                "--worker-id".into(),
                format!("{name}-1"),
                "--commit-interval".into(),
                humantime::format_duration(cli.commit_interval).to_string(),
            ]);
        }
        stages.spawn(name, &bin_dir.join(name), &args, admin, &logs)?;
    }
    stages.wait_ready(Duration::from_secs(90)).await?;
    // Ready means the stores are restored, not that records flow yet: the load starts
    // once the stages reading chat.sessions have read the opening chats.
    let probes = stages.probes();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = sample(&probes).await?;
        let read = |name: &str| {
            probes
                .iter()
                .position(|p| p.name == name)
                .map_or(0.0, |i| now.records[i])
        };
        if read("enricher") >= opening.len() as f64 && read("attributor") >= opening.len() as f64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stages did not read the opening chats within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let notifications = Reader::start(&kafka, &topics.name(Topic::Notifications), |bytes| {
        schemas::decode::<AgentNotification>(bytes)
            .ok()
            .map(|n| n.notification_id)
    })?;
    let attributed_reader = Reader::start(&kafka, &topics.name(Topic::OrdersAttributed), |bytes| {
        schemas::decode::<AttributedOrder>(bytes).ok().map(|o| o.order_id)
    })?;

    let settings = load::Settings {
        rate,
        duration: Duration::from_secs(cli.seconds),
        handover_every: cli.handover_every,
        max_in_flight: cli.max_in_flight,
    };
    let start = Instant::now() + Duration::from_millis(100);
    let first_sample = tokio::spawn({
        let probes = probes.clone();
        let at = start + Duration::from_secs(cli.warmup);
        async move {
            tokio::time::sleep_until(at.into()).await;
            sample(&probes).await
        }
    });
    let outcome = load::run(&kafka, &producer, public, &mut load, &settings, start).await?;
    let last = sample(&probes).await?;
    let first = first_sample.await??;

    // Wait for the chain to deliver every accepted event. The chat platform goes on
    // handing chats over meanwhile, as it would: a chat stream that stopped with the
    // widget events would hold the last orders for the attributor's whole hold time.
    let accepted: Vec<&Posted> = outcome.posted.iter().filter(|p| p.accepted()).collect();
    let deadline = Instant::now() + cli.drain_timeout;
    let handovers_per_tick = (f64::from(rate) / f64::from(cli.handover_every.max(1)) / 10.0).ceil() as usize;
    let mut drain_chat_events = 0;
    let (mut without_notification, mut not_attributed);
    loop {
        (without_notification, not_attributed) = missing(&accepted, &notifications, &attributed_reader);
        if (without_notification == 0 && not_attributed == 0) || Instant::now() > deadline {
            break;
        }
        if cli.handover_every > 0 {
            let now = Timestamp::from_datetime(chrono::Utc::now());
            let chats: Vec<Write> = (0..handovers_per_tick)
                .flat_map(|_| load.handover(now))
                .map(Write::Chat)
                .collect();
            simulator::write::records(&kafka, &producer, &chats).await?;
            drain_chat_events += chats.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = sample(&probes).await?;
    let notified = notifications.arrivals();
    let attributed = attributed_reader.arrivals();
    drop((notifications, attributed_reader));
    let exits = stages.stop();

    let window = last.at.saturating_duration_since(first.at).as_secs_f64();
    let measured: Vec<&Posted> = accepted
        .iter()
        .copied()
        .filter(|p| p.answered >= first.at && p.answered <= last.at)
        .collect();
    let latency = |arrivals: &HashMap<String, Instant>, id: &dyn Fn(&Posted) -> Option<String>, kind: Kind| {
        let mut millis: Vec<f64> = measured
            .iter()
            .filter(|p| kind.covers(p.name))
            .filter_map(|p| {
                let at = arrivals.get(&id(p)?)?;
                Some(at.saturating_duration_since(p.answered).as_secs_f64() * 1000.0)
            })
            .collect();
        millis.sort_by(f64::total_cmp);
        millis
    };
    let by_event = |p: &Posted| Some(p.event_id.clone());
    let by_order = |p: &Posted| p.order_id.clone();
    let notify_all = latency(&notified, &by_event, Kind::All);
    let notify_carts = latency(&notified, &by_event, Kind::Carts);
    let notify_orders = latency(&notified, &by_event, Kind::Orders);
    let to_attributed = latency(&attributed, &by_order, Kind::Orders);
    let last_output = accepted
        .iter()
        .flat_map(|p| {
            let notification = notified.get(&p.event_id).copied();
            let order = p.order_id.as_ref().and_then(|id| attributed.get(id).copied());
            notification.into_iter().chain(order)
        })
        .max();

    // The plain limit, with the stages stopped so that it has the machine they had.
    let (plain_in, plain_out) = (
        format!("{}bench.plain.in", kafka.topic_prefix),
        format!("{}bench.plain.out", kafka.topic_prefix),
    );
    let wanted = [&plain_in, &plain_out].map(|name| WantedTopic {
        name: name.clone(),
        partitions: DEFAULT_PARTITIONS,
        cleanup: Cleanup::Delete {
            retention: Duration::from_secs(3_600),
        },
    });
    ensure(&kafka, &wanted, 1).await?;
    let plain_kafka = kafka.clone();
    let raw_topic = topics.name(Topic::EventsRaw);
    let plain_records = cli.plain_records;
    let plain = tokio::task::spawn_blocking(move || {
        plain_limit(&plain_kafka, &raw_topic, &plain_in, &plain_out, plain_records)
    })
    .await??;

    // The figures.
    let orders = accepted
        .iter()
        .filter(|p| p.name == EventName::StoreOrderWasCreated)
        .count();
    let refused = outcome.posted.len() - accepted.len();
    let measured_orders = measured
        .iter()
        .filter(|p| p.name == EventName::StoreOrderWasCreated)
        .count();
    println!(
        "pipeline_bench: {} widget events/s offered for {} s (first {} s warm-up), seed {}, {} customers in live chats, \
         a chat handover every {} events, commit interval {}, {DEFAULT_PARTITIONS} partitions",
        rate,
        cli.seconds,
        cli.warmup,
        cli.seed,
        cli.customers,
        cli.handover_every,
        humantime::format_duration(cli.commit_interval),
    );
    println!(
        "brokers: transaction.partition.verification.enable={}",
        transaction_verification(&kafka)
            .await
            .unwrap_or_else(|e| format!("unknown ({e:#})"))
    );
    println!(
        "end to end:  {:.1} events/s sustained over {window:.1} s ({} events accepted in the window: {} cart events, {measured_orders} orders)",
        measured.len() as f64 / window,
        measured.len(),
        measured.len() - measured_orders,
    );
    println!(
        "             whole run: {} accepted ({orders} orders), {refused} refused, {without_notification} without notification, \
         {not_attributed} orders not in sales.orders.attributed, {} chat events written during the load ({} not acknowledged) \
         and {drain_chat_events} after it; last output {} after the last 202",
        accepted.len(),
        outcome.chat_events,
        outcome.chat_events_failed,
        match last_output {
            Some(at) => format!("{:.2} s", at.saturating_duration_since(outcome.finished).as_secs_f64()),
            None => "never".into(),
        }
    );
    println!(
        "latency 202 -> inbox.notifications:      p50 {:>7.1} ms  p99 {:>7.1} ms  ({} events; cart events p50 {:.1} p99 {:.1}, orders p50 {:.1} p99 {:.1})",
        percentile(&notify_all, 0.50),
        percentile(&notify_all, 0.99),
        notify_all.len(),
        percentile(&notify_carts, 0.50),
        percentile(&notify_carts, 0.99),
        percentile(&notify_orders, 0.50),
        percentile(&notify_orders, 0.99),
    );
    println!(
        "latency 202 -> sales.orders.attributed:  p50 {:>7.1} ms  p99 {:>7.1} ms  ({} orders)",
        percentile(&to_attributed, 0.50),
        percentile(&to_attributed, 0.99),
        to_attributed.len(),
    );
    println!(
        "stage        records/s   CPU % of a core   CPU ms per 1000 records   commits/s   ms a commit   aborts, dead letters (whole run)"
    );
    let ticks = clock_ticks();
    let mut stages_cpu = 0.0;
    for (i, probe) in probes.iter().enumerate() {
        let records = last.records[i] - first.records[i];
        let cpu = (last.cpu[i] - first.cpu[i]) / ticks;
        stages_cpu += cpu;
        let commits = last.commits[i] - first.commits[i];
        let commit_seconds = last.commit_seconds[i] - first.commit_seconds[i];
        let (commits, commit_ms, failures) = if probe.name == "ingest" {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1}", commits / window),
                if commits > 0.0 {
                    format!("{:.1}", commit_seconds * 1e3 / commits)
                } else {
                    "-".to_string()
                },
                format!("{:.0}, {:.0}", end.aborts[i], end.dead_letters[i]),
            )
        };
        println!(
            "{:<12} {:>9.1}   {:>15.1}   {:>23.2}   {:>9}   {:>11}   {}",
            probe.name,
            records / window,
            cpu / window * 100.0,
            if records > 0.0 { cpu * 1e6 / records } else { f64::NAN },
            commits,
            commit_ms,
            failures,
        );
    }
    let stage_cpu_per_event = stages_cpu * 1e6 / (measured.len().max(1) as f64);
    println!(
        "the four stages' CPU per widget event: {stage_cpu_per_event:.1} µs (target at most {STAGE_CPU_TARGET_MICROS} µs)"
    );
    let own = (last.own_cpu - first.own_cpu) / ticks;
    let brokers = (last.brokers_cpu - first.brokers_cpu) / ticks;
    let compiling = (last.brokers_jit - first.brokers_jit) / ticks;
    println!(
        "this process (load generator and readers): CPU {:.1} % of a core",
        own / window * 100.0
    );
    if let (Some(a), Some(b)) = (first.machine, last.machine) {
        let busy = (b.busy - a.busy) / (b.total - a.total).max(1.0) * a.cores;
        println!(
            "machine: {busy:.2} of {:.0} cores busy (stages {:.2}, this process {:.2}, Kafka brokers on this machine {:.2} \
             of which compiling their code {:.2}, everything else {:.2})",
            a.cores,
            stages_cpu / window,
            own / window,
            brokers / window,
            compiling / window,
            (busy - stages_cpu / window - own / window - brokers / window).max(0.0),
        );
    }
    if compiling / window > JIT_WARM {
        println!(
            "note: the brokers' JVM spent {:.2} of a core compiling its code during the window: it started recently and is \
             not warm yet, so the latencies above are higher than a warm broker gives; run the benchmark again",
            compiling / window
        );
    }
    println!(
        "plain rdkafka consume-to-produce limit: {:.0} records/s ({} records in {:.2} s: the run's {} sales.events.raw records, repeated; \
         no transactions, acks=all)",
        plain.records as f64 / plain.seconds,
        plain.records,
        plain.seconds,
        plain.raw,
    );
    let failed: Vec<String> = exits
        .iter()
        .filter(|(_, status)| !status.is_some_and(|s| s.success()))
        .map(|(name, status)| match status {
            Some(s) => format!("{name} ({s})"),
            None => format!("{name} (did not stop)"),
        })
        .collect();
    if !failed.is_empty() {
        println!(
            "warning: stages that did not stop cleanly: {} (logs in {})",
            failed.join(", "),
            logs.display()
        );
    }
    let complete = refused == 0 && without_notification == 0 && not_attributed == 0;
    if !complete {
        println!(
            "error: not every event went through the pipeline: {refused} refused, {without_notification} without \
             notification, {not_attributed} orders not attributed"
        );
    }
    Ok(Summary {
        rate,
        sustained: measured.len() as f64 / window,
        notify_p99: percentile(&notify_all, 0.99),
        order_p99: percentile(&notify_orders, 0.99),
        stage_cpu_per_event,
        complete,
    })
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    All,
    Carts,
    Orders,
}

impl Kind {
    fn covers(self, name: EventName) -> bool {
        match self {
            Kind::All => true,
            Kind::Carts => name != EventName::StoreOrderWasCreated,
            Kind::Orders => name == EventName::StoreOrderWasCreated,
        }
    }
}

/// Accepted events without their notification, and accepted orders not yet attributed.
fn missing(accepted: &[&Posted], notifications: &Reader, attributed: &Reader) -> (usize, usize) {
    let notified = notifications.seen.lock().unwrap_or_else(|e| e.into_inner());
    let attributed = attributed.seen.lock().unwrap_or_else(|e| e.into_inner());
    let without_notification = accepted.iter().filter(|p| !notified.contains_key(&p.event_id)).count();
    let not_attributed = accepted
        .iter()
        .filter_map(|p| p.order_id.as_ref())
        .filter(|id| !attributed.contains_key(*id))
        .count();
    (without_notification, not_attributed)
}

/// A stage process this benchmark started.
#[derive(Debug)]
struct StageProcess {
    name: &'static str,
    admin: SocketAddr,
    child: Child,
    log: PathBuf,
}

/// What a sample needs of a stage.
#[derive(Debug, Clone)]
struct Probe {
    name: &'static str,
    admin: SocketAddr,
    pid: u32,
}

/// The stage processes; dropping them stops them, so an error or a signal leaves none
/// running.
#[derive(Debug, Default)]
struct Stages(Vec<StageProcess>);

impl Stages {
    fn spawn(
        &mut self,
        name: &'static str,
        binary: &Path,
        args: &[String],
        admin: SocketAddr,
        logs: &Path,
    ) -> anyhow::Result<()> {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.0.push(StageProcess {
            name,
            admin,
            child,
            log,
        });
        Ok(())
    }

    fn probes(&self) -> Vec<Probe> {
        self.0
            .iter()
            .map(|s| Probe {
                name: s.name,
                admin: s.admin,
                pid: s.child.id(),
            })
            .collect()
    }

    /// Waits for every stage's `/readyz`; a stage that exits meanwhile is an error
    /// showing the end of its log.
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for stage in &mut self.0 {
            loop {
                if let Some(status) = stage.child.try_wait()? {
                    anyhow::bail!(
                        "{} exited ({status}) before it was ready:\n{}",
                        stage.name,
                        tail(&stage.log)
                    );
                }
                if matches!(http_get(stage.admin, "/readyz").await, Ok((200, _))) {
                    break;
                }
                if Instant::now() > deadline {
                    anyhow::bail!("{} was not ready within {timeout:?}:\n{}", stage.name, tail(&stage.log));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// SIGTERM to every stage, then waits for each to finish its work in hand; one still running after 30 s is killed. Returns each
    /// stage's exit, `None` for one that had to be killed.
    fn stop(&mut self) -> Vec<(&'static str, Option<ExitStatus>)> {
        for stage in &mut self.0 {
            if matches!(stage.child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-TERM", &stage.child.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut exits = Vec::new();
        for mut stage in self.0.drain(..) {
            let status = loop {
                match stage.child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                    _ => {
                        let _ = stage.child.kill();
                        let _ = stage.child.wait();
                        break None;
                    }
                }
            };
            exits.push((stage.name, status));
        }
        exits
    }
}

impl Drop for Stages {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a topic from its beginning (`read_committed`, as a downstream consumer sees it)
/// on a thread of its own, so the arrival times do not wait behind the load's tasks,
/// and notes when each id first arrived.
#[derive(Debug)]
struct Reader {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(kafka: &KafkaArgs, topic: &str, id: fn(&[u8]) -> Option<String>) -> anyhow::Result<Reader> {
        let consumer: BaseConsumer = kafka
            .client_config("bench-reader")
            .set("group.id", format!("{topic}-bench-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // The broker answers a waiting fetch as soon as a commit makes records
            // visible, so a long wait costs the readings nothing; a short one had each
            // reader ask the broker 200 times a second for nothing.
            .set("fetch.wait.max.ms", "500")
            .create()?;
        assign_whole_topic(&consumer, topic, Offset::Beginning)?;
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let at = Instant::now();
                    if let Some(id) = message.payload().and_then(id) {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).entry(id).or_insert(at);
                    }
                }
            }
        });
        Ok(Reader {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    fn arrivals(&self) -> HashMap<String, Instant> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counters at one instant.
#[derive(Debug)]
struct Sample {
    at: Instant,
    /// Per stage, in the order of the probes: records processed (ingest: events
    /// accepted) and CPU clock ticks (user and system).
    records: Vec<f64>,
    cpu: Vec<f64>,
    /// Transactions aborted and records dead-lettered, since the stage started.
    aborts: Vec<f64>,
    dead_letters: Vec<f64>,
    /// Transactions committed, and the seconds their commits took in all.
    commits: Vec<f64>,
    commit_seconds: Vec<f64>,
    own_cpu: f64,
    /// CPU of the Kafka brokers running on this machine, in clock ticks.
    brokers_cpu: f64,
    /// Of it, their JVMs' just-in-time compiler threads.
    brokers_jit: f64,
    machine: Option<MachineCpu>,
}

#[derive(Debug, Clone, Copy)]
struct MachineCpu {
    busy: f64,
    total: f64,
    cores: f64,
}

async fn sample(probes: &[Probe]) -> anyhow::Result<Sample> {
    let at = Instant::now();
    let mut cpu = Vec::with_capacity(probes.len());
    for probe in probes {
        cpu.push(process_ticks(&probe.pid.to_string()).with_context(|| format!("no CPU time of {}", probe.name))?);
    }
    let own_cpu = process_ticks("self").unwrap_or(0.0);
    let brokers = local_brokers();
    let brokers_cpu = brokers.iter().filter_map(|pid| process_ticks(pid)).sum();
    let brokers_jit = brokers
        .iter()
        .map(|pid| thread_ticks(pid, "C1 CompilerThre") + thread_ticks(pid, "C2 CompilerThre"))
        .sum();
    let machine = machine_cpu();
    let mut records = Vec::with_capacity(probes.len());
    let (mut aborts, mut dead_letters) = (Vec::new(), Vec::new());
    let (mut commits, mut commit_seconds) = (Vec::new(), Vec::new());
    for probe in probes {
        let (status, text) = http_get(probe.admin, "/metrics")
            .await
            .with_context(|| format!("cannot read the metrics of {}", probe.name))?;
        anyhow::ensure!(status == 200, "{} answered {status} for /metrics", probe.name);
        let value = if probe.name == "ingest" {
            metric(
                &text,
                "ingest_requests_total",
                &[("status", "202"), ("error_code", "none")],
            )
        } else {
            metric(&text, "stream_records_total", &[])
        };
        records.push(value);
        aborts.push(metric(&text, "stream_aborts_total", &[]));
        dead_letters.push(metric(&text, "stream_dead_letters_total", &[]));
        commits.push(metric(&text, "stream_commits_total", &[]));
        commit_seconds.push(metric(&text, "stream_commit_seconds_sum", &[]));
    }
    Ok(Sample {
        at,
        records,
        cpu,
        aborts,
        dead_letters,
        commits,
        commit_seconds,
        own_cpu,
        brokers_cpu,
        brokers_jit,
        machine,
    })
}

/// The brokers' `transaction.partition.verification.enable` (KIP-890), one value per
/// broker when they differ. When it is on, a partition's first record in a transaction
/// waits until its leader has checked with the transaction coordinator that the
/// partition joined the transaction; librdkafka sends one produce request per
/// partition, so each commit pays that check once per partition it writes.
async fn transaction_verification(kafka: &KafkaArgs) -> anyhow::Result<String> {
    const KEY: &str = "transaction.partition.verification.enable";
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config("pipeline-bench-admin")
        .create()
        .context("cannot create an admin client")?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot read the cluster's metadata")?;
    let brokers: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    let specifiers: Vec<ResourceSpecifier<'_>> = brokers.iter().map(|id| ResourceSpecifier::Broker(*id)).collect();
    let described = admin
        .describe_configs(&specifiers, &AdminOptions::new())
        .await
        .context("cannot describe the brokers' configs")?;
    let mut values = std::collections::BTreeSet::new();
    for (id, result) in brokers.iter().zip(described) {
        let resource = result.map_err(|code| anyhow::anyhow!("cannot describe broker {id}: {code:?}"))?;
        let value = resource.get(KEY).and_then(|entry| entry.value.clone());
        values.insert(value.unwrap_or_else(|| "unset".into()));
    }
    Ok(values.into_iter().collect::<Vec<_>>().join(" / "))
}

/// The machine's busy and total CPU time (clock ticks, all cores) and its core count.
fn machine_cpu() -> Option<MachineCpu> {
    let (busy, total, cores) = machine_ticks()?;
    Some(MachineCpu {
        busy,
        total,
        cores: cores as f64,
    })
}

#[derive(Debug)]
struct Plain {
    /// Records in the run's sales.events.raw.
    raw: usize,
    records: usize,
    seconds: f64,
}

/// Copies the run's `sales.events.raw` records (repeated up to `records`) to `input`,
/// then times plain rdkafka consuming them and producing them to `output`: no
/// transactions, acks=all and idempotence as the stages' producers have. The limit for
/// any consume-transform-produce stage on this machine and broker.
fn plain_limit(kafka: &KafkaArgs, raw_topic: &str, input: &str, output: &str, records: usize) -> anyhow::Result<Plain> {
    let raw = read_all(kafka, raw_topic)?;
    anyhow::ensure!(!raw.is_empty(), "{raw_topic} is empty");
    let records = records.max(raw.len());
    let producer = producer(kafka)?;
    for (key, value) in raw.iter().cycle().take(records) {
        let mut record = BaseRecord::to(input).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(120))?;

    let consumer: BaseConsumer = kafka
        .client_config("bench-plain")
        .set("group.id", format!("{input}-plain"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()?;
    consumer.subscribe(&[input])?;
    let mut seen = 0;
    let mut started = None;
    while seen < records {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
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
    producer.flush(Duration::from_secs(120))?;
    Ok(Plain {
        raw: raw.len(),
        records,
        seconds: started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN),
    })
}

/// Every record of `topic`, as (key, value).
#[allow(clippy::type_complexity)]
fn read_all(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<Vec<(Option<Vec<u8>>, Vec<u8>)>> {
    let consumer: BaseConsumer = kafka
        .client_config("bench-copy")
        .set("group.id", format!("{topic}-bench-copy"))
        .set("enable.auto.commit", "false")
        .create()?;
    let partitions = assign_whole_topic(&consumer, topic, Offset::Beginning)?;
    let mut ends = HashMap::new();
    for partition in 0..partitions {
        let partition = i32::try_from(partition)?;
        let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        ends.insert(partition, high);
    }
    let mut records = Vec::new();
    let mut done: HashMap<i32, bool> = ends.iter().map(|(p, high)| (*p, *high == 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.values().any(|d| !d) {
        anyhow::ensure!(Instant::now() < deadline, "{topic} was not read to its end in time");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message?;
        if message.offset() + 1 >= ends[&message.partition()] {
            done.insert(message.partition(), true);
        }
        if let Some(value) = message.payload() {
            records.push((message.key().map(<[u8]>::to_vec), value.to_vec()));
        }
    }
    Ok(records)
}

/// A producer as the stages' own: acks from every replica, idempotent.
fn producer(kafka: &KafkaArgs) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(kafka
        .client_config("bench-plain-producer")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}
