//! The whole chain over a backlog: more than a month of trade is in the topics before
//! any stage starts, so the stages meet partitions that are days apart in event time,
//! and the days must close by event time, not by whichever partition is read first.
//! Every closed day must still equal the reference, with one replica of each stage or
//! two, whatever the partitioning and the order the partitions were written in, and
//! through a restart right after the first fetch and a replica added mid-backlog.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use kafka_runtime::shutdown::Shutdown;
use rand::{Rng, SeedableRng};
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::reference::expected_reports;
use sales_tests::{
    TEST_PARTITIONS, TestEnv, await_ready, free_local_addr, http_get, metric_labelled, metric_value, run_stage,
    stage_args,
};
use schemas::keys;
use schemas::records::{DailySalesReport, EnrichedOrder};
use schemas::topics::Topic;
use schemas::values::Timestamp;
use simulator::{Plan, Write};
use tokio::task::JoinHandle;

use crate::pipeline::await_reports;

const STREAM_STAGES: [&str; 3] = ["enricher", "attributor", "reporter"];
/// More than the reporter's 35 days of retention before today, so that a day closed by
/// the wall clock instead of event time drops the first day's orders as too late.
const DAYS: u32 = 36;
const VISITS: u32 = 6;
const DAY_MICROS: i64 = 24 * 3_600_000_000;
/// The reporter's default grace after a day's end.
const GRACE_MICROS: i64 = 3_600_000_000;
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// A month of three shops takes seconds through the debug-built stages; this leaves
/// room for a loaded CI machine.
const REPORTS_TIMEOUT: Duration = Duration::from_secs(120);

/// One worker of a stream stage in this process, stopped and started on its own.
struct Worker {
    stage: &'static str,
    id: String,
    admin: SocketAddr,
    shutdown: Shutdown,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A failing test must not leave its workers running in the test binary.
impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Worker {
    /// Starts worker `id` of `stage` in the test's consumer group, on an admin address of
    /// its own, and returns once its admin listener answers.
    async fn start(env: &TestEnv, stage: &'static str, id: &str) -> Self {
        loop {
            let mut worker = Worker::spawn(env, stage, id);
            // A free port can be taken by someone else before the stage binds it: then
            // the stage ends at once, and starts again elsewhere.
            let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
            loop {
                if worker.task.as_ref().is_some_and(JoinHandle::is_finished) {
                    let ended = worker.task.take().expect("a running worker").await.unwrap();
                    match ended {
                        Err(e) if address_in_use(&e) => break,
                        ended => panic!("{stage} {id} ended as it started: {ended:?}"),
                    }
                }
                if http_get(worker.admin, "/healthz").await.is_ok() {
                    return worker;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{stage} {id}: no admin listener within {READY_TIMEOUT:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    fn spawn(env: &TestEnv, stage: &'static str, id: &str) -> Self {
        let admin = free_local_addr();
        // The public listener is ingest's alone: no stream stage takes one.
        let mut argv = stage_args(env, stage, admin, admin);
        let at = argv
            .iter()
            .position(|a| a == "--worker-id")
            .expect("a stream stage takes a worker id");
        argv[at + 1] = id.to_string();
        let shutdown = Shutdown::new();
        let task = run_stage(stage, argv, shutdown.clone());
        Worker {
            stage,
            id: id.to_string(),
            admin,
            shutdown,
            task: Some(task),
        }
    }

    async fn ready(&self) {
        await_ready(
            self.admin,
            &format!("{} {} to be ready", self.stage, self.id),
            READY_TIMEOUT,
        )
        .await;
    }

    /// The value of a counter or gauge on the worker's `/metrics` (summed over its
    /// labels), or `None` while the admin listener does not answer.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (status, text) = http_get(self.admin, "/metrics").await.ok()?;
        (status == 200).then(|| metric_value(&text, name))
    }

    /// Polls until the worker's `stream_records_total` reaches `at_least`; returns the
    /// count seen.
    async fn when_processed(&self, at_least: f64) -> f64 {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let records = self.metric("stream_records_total").await.unwrap_or(0.0);
            if records >= at_least {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} {} processed {records} records within {READY_TIMEOUT:?}, not {at_least}",
                self.stage,
                self.id
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the worker as SIGTERM would; it must stop cleanly.
    async fn stop(mut self) {
        self.shutdown.trigger();
        let task = self.task.take().expect("a worker is stopped once");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("{} {} stops within 30 s", self.stage, self.id))
            .unwrap()
            .unwrap_or_else(|e| panic!("{} {} ended with an error: {e:#}", self.stage, self.id));
    }
}

fn address_in_use(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    })
}

/// Starts every stream stage with one worker per id in `ids`, all in the stage's one
/// consumer group, and waits until every worker is ready.
async fn start_stages(env: &TestEnv, ids: &[&str]) -> Vec<Worker> {
    let mut workers = Vec::new();
    for stage in STREAM_STAGES {
        for id in ids {
            workers.push(Worker::start(env, stage, id).await);
        }
    }
    for worker in &workers {
        worker.ready().await;
    }
    workers
}

async fn stop_all(workers: Vec<Worker>) {
    for worker in workers {
        worker.stop().await;
    }
}

/// A plan of more than a month whose trade includes orders 29 days after a chat's end
/// (attributed) and 30 days and a microsecond after it (not), so that the attributor's
/// window is crossed inside the backlog.
fn month_plan(seed: u64, now: Timestamp) -> Plan {
    let plan = simulator::plan(seed, DAYS, VISITS, now);
    let after_chat = plan.orders_after_chat_end();
    assert!(
        after_chat.contains(&(29 * DAY_MICROS)) && after_chat.contains(&(30 * DAY_MICROS + 1)),
        "seed {seed} gives no order 29 days, or none just over 30 days, after a chat"
    );
    assert!(
        !plan.past_later.is_empty(),
        "seed {seed} gives no order from a second device"
    );
    plan
}

/// The reports of every day closed by `now`, checked to cover the whole backlog, its
/// first days included.
fn expected(plan: &Plan, now: Timestamp) -> BTreeMap<String, DailySalesReport> {
    let expected = expected_reports(plan, now, GRACE_MICROS);
    let today = now.to_datetime().unwrap().date_naive();
    let second_day = (today - chrono::Days::new(u64::from(DAYS) - 1)).to_string();
    let earliest = expected.values().map(|r| r.date.as_str()).min().unwrap_or_default();
    assert!(
        expected.len() >= 80 && earliest <= second_day.as_str(),
        "three shops over {DAYS} days close most of their days, from the first on: {} days, the earliest {earliest}",
        expected.len()
    );
    expected
}

/// Writes the organizations, then the whole past: the trade in its time order, then the
/// second device's copies, which land on other partitions.
async fn write_backlog(env: &TestEnv, plan: &Plan) {
    let producer = simulator::write::producer(&env.kafka).unwrap();
    simulator::write::past(&env.kafka, &producer, plan).await.unwrap();
}

/// Prints, `after` from now, what each worker says of itself (readiness, records,
/// commits, aborts, watermark): a run that times out then shows which stage stalled.
fn state_before(workers: &[Worker], after: Duration) -> JoinHandle<()> {
    let workers: Vec<(&'static str, String, SocketAddr)> =
        workers.iter().map(|w| (w.stage, w.id.clone(), w.admin)).collect();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        for (stage, id, admin) in workers {
            let ready = http_get(admin, "/readyz").await.map(|(_, body)| body);
            let metrics = http_get(admin, "/metrics")
                .await
                .map(|(_, text)| text)
                .unwrap_or_default();
            let figure = |name: &str| metric_value(&metrics, name);
            #[allow(clippy::cast_possible_truncation)]
            let watermark = Timestamp(figure("stream_watermark_micros") as i64)
                .to_datetime()
                .map_or_else(|| "none".to_string(), |at| at.to_rfc3339());
            // What the stage decided: an order that lost its chat, or came too late.
            let orders = |outcome: &str| metric_labelled(&metrics, "attributor_orders_total", &[("outcome", outcome)]);
            let decided = match stage {
                "attributor" => format!(
                    "; orders attributed {}, unattributed {}, held {}",
                    orders("attributed"),
                    orders("unattributed"),
                    figure("attributor_held_orders_total"),
                ),
                "reporter" => format!(
                    "; unattributed {}, too late {}, reports {}, revisions {}",
                    figure("reporter_unattributed_orders_total"),
                    figure("reporter_orders_too_late_total"),
                    figure("reporter_reports_published_total"),
                    figure("reporter_report_revisions_total"),
                ),
                _ => String::new(),
            };
            println!(
                "{stage} {id} after {after:?} (at {}): readyz {ready:?}; records {}, commits {} ({:.1} s in all), marks sent {}, broker waits {}, aborts {}, restored {}, late {}, lowest watermark {watermark}{decided}",
                chrono::Utc::now().to_rfc3339(),
                figure("stream_records_total"),
                figure("stream_commits_total"),
                figure("stream_commit_seconds_sum"),
                figure("stream_watermark_marks_sent_total"),
                figure("stream_broker_waits_total"),
                figure("stream_aborts_total"),
                figure("stream_restored_records_total"),
                figure("stream_late_records_total"),
            );
        }
    })
}

/// Scrapes the too-late counter of every reporter worker among `workers`.
async fn too_late_orders(workers: &[Worker]) -> f64 {
    let mut total = 0.0;
    for worker in workers.iter().filter(|w| w.stage == "reporter") {
        total += worker
            .metric("reporter_orders_too_late_total")
            .await
            .unwrap_or_else(|| panic!("reporter {} answers /metrics", worker.id));
    }
    total
}

async fn a_month_of_backlog_gives_the_reference_reports(seed: u64, ids: &[&str]) {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = month_plan(seed, now);
    let expected = expected(&plan, now);
    write_backlog(&env, &plan).await;

    let workers = start_stages(&env, ids).await;
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    let snapshot = state_before(&workers, REPORTS_TIMEOUT.saturating_sub(Duration::from_secs(5)));
    await_reports(&reports, &expected, REPORTS_TIMEOUT).await;
    snapshot.abort();
    assert_eq!(too_late_orders(&workers).await, 0.0, "no order may come too late");
    stop_all(workers).await;
}

#[tokio::test]
async fn a_month_of_backlog_gives_the_reference_reports_with_one_replica() {
    a_month_of_backlog_gives_the_reference_reports(31, &["w1"]).await;
}

#[tokio::test]
async fn a_month_of_backlog_gives_the_reference_reports_with_two_replicas() {
    a_month_of_backlog_gives_the_reference_reports(37, &["w1", "w2"]).await;
}

/// The partition a key lands in under the producer's default partitioner
/// (librdkafka's `consistent_random`: the CRC-32 of the key, modulo the partitions).
fn partition_of(key: &str, partitions: i32) -> i32 {
    let mut crc = u32::MAX;
    for byte in key.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let partitions = u32::try_from(partitions).expect("a positive partition count");
    i32::try_from((!crc) % partitions).expect("a partition fits in an i32")
}

/// The plan's past with the second device's copies in their place in time, each
/// record at the time it is sent (a late chat event just after the order it explains).
fn past_in_time_order(plan: &Plan) -> Vec<&Write> {
    let mut out = Vec::with_capacity(plan.past.len() + plan.past_later.len());
    let mut later = plan.past_later.iter().peekable();
    // The time a record of `past` is sent at: a late chat event goes after the order.
    let mut sent = i64::MIN;
    for write in &plan.past {
        sent = sent.max(write.at().micros());
        while let Some(copy) = later.next_if(|c| c.at().micros() < sent) {
            out.push(copy);
        }
        out.push(write);
    }
    out.extend(later);
    out
}

fn topic_and_key(write: &Write) -> (Topic, String) {
    match write {
        Write::Chat(e) => (
            Topic::ChatSessions,
            keys::org_customer(&e.organization_id, &e.customer_id),
        ),
        Write::Widget(e) => (Topic::EventsRaw, keys::org_customer(&e.organization_id, &e.customer_id)),
    }
}

/// `writes` reordered: each topic partition's records stay in their order, and the
/// partitions take turns at random, for at most `longest_run` records at a time.
fn interleave<'a>(writes: &[&'a Write], partitions: i32, seed: u64, longest_run: usize) -> Vec<&'a Write> {
    let mut streams: BTreeMap<(Topic, i32), VecDeque<&Write>> = BTreeMap::new();
    for write in writes {
        let (topic, key) = topic_and_key(write);
        streams
            .entry((topic, partition_of(&key, partitions)))
            .or_default()
            .push_back(write);
    }
    let mut streams: Vec<VecDeque<&Write>> = streams.into_values().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(writes.len());
    while !streams.is_empty() {
        let turn = rng.random_range(0..streams.len());
        let run = rng.random_range(1..=longest_run);
        let stream = &mut streams[turn];
        out.extend(stream.drain(..run.min(stream.len())));
        if stream.is_empty() {
            streams.swap_remove(turn);
        }
    }
    out
}

/// Writes `writes` in this order, checking that each landed in the partition
/// [`partition_of`] expects (else the order within a partition would not be the one
/// intended).
async fn write_in_order(env: &TestEnv, producer: &FutureProducer, writes: &[&Write], partitions: i32) {
    let mut pending = Vec::with_capacity(writes.len());
    for write in writes {
        let (topic, key) = topic_and_key(write);
        let value = match write {
            Write::Chat(e) => schemas::encode(e).unwrap(),
            Write::Widget(e) => schemas::encode(e).unwrap(),
        };
        let topic = env.topic(topic);
        let record = FutureRecord::to(&topic).key(&key).payload(&value);
        let delivery = producer
            .send_result(record)
            .unwrap_or_else(|(e, _)| panic!("cannot queue a record: {e}"));
        pending.push((partition_of(&key, partitions), key, delivery));
    }
    for (want, key, delivery) in pending {
        let delivered = delivery
            .await
            .expect("the producer went away")
            .unwrap_or_else(|(e, _)| panic!("a record was not acknowledged: {e}"));
        assert_eq!(
            delivered.partition, want,
            "{key} landed in another partition than the CRC-32 partitioner's"
        );
    }
}

/// Reads `sales.reports.daily` until its latest report of each expected day equals the
/// expectation or `timeout` passes, and returns the latest report of every day read,
/// revision and publication time set to zero.
async fn latest_reports(
    consumer: &StreamConsumer,
    expected: &BTreeMap<String, DailySalesReport>,
    timeout: Duration,
) -> BTreeMap<String, DailySalesReport> {
    let mut latest: BTreeMap<String, DailySalesReport> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !expected.iter().all(|(key, want)| latest.get(key) == Some(want)) {
        let Ok(next) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let Ok(message) = next else { continue };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let mut report: DailySalesReport = schemas::decode(message.payload().unwrap()).unwrap();
        report.revision = 0;
        report.published_at = Timestamp(0);
        latest.insert(key, report);
    }
    latest
}

/// One run of the shuffle test: its own topics with `partitions` partitions, the
/// backlog written in the interleaving of `seed` and `longest_run`, then the stages.
async fn run_interleaved(
    plan: &Plan,
    expected: &BTreeMap<String, DailySalesReport>,
    partitions: i32,
    seed: u64,
    longest_run: usize,
) -> BTreeMap<String, DailySalesReport> {
    let env = TestEnv::new().await;
    kafka_runtime::topic_admin::ensure_topics(&env.kafka, partitions, 1)
        .await
        .unwrap_or_else(|e| panic!("cannot create topics: {e}"));
    let producer = simulator::write::producer(&env.kafka).unwrap();
    simulator::write::organizations(&env.kafka, &producer, &plan.organizations)
        .await
        .unwrap();
    let writes = interleave(&past_in_time_order(plan), partitions, seed, longest_run);
    write_in_order(&env, &producer, &writes, partitions).await;

    let workers = start_stages(&env, &["w1"]).await;
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    let latest = latest_reports(&reports, expected, REPORTS_TIMEOUT).await;
    stop_all(workers).await;
    latest
}

/// Written before the stages start, the order in which partitions were written is not
/// what a stage sees, only each partition's own order is: so each run also has its
/// own partition count, and its customers meet in other tasks and other orders, in the
/// enricher's dedupe as everywhere else. The three run at once, on two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_interleavings_give_identical_reports() {
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = month_plan(41, now);
    let expected = expected(&plan, now);
    // Whole partitions one after another; single records from partitions picked at
    // random; runs of up to 200.
    let (a, b, c) = tokio::join!(
        run_interleaved(&plan, &expected, TEST_PARTITIONS, 1, usize::MAX),
        run_interleaved(&plan, &expected, 2, 2, 1),
        run_interleaved(&plan, &expected, 4, 3, 200),
    );
    let runs = [a, b, c];

    // Byte for byte the same report of every day, revision and publication time aside.
    let bytes = |run: &BTreeMap<String, DailySalesReport>, key: &str| run.get(key).map(|r| schemas::encode(r).unwrap());
    let differing: Vec<&String> = expected
        .keys()
        .filter(|key| runs[1..].iter().any(|run| bytes(run, key) != bytes(&runs[0], key)))
        .collect();
    if let Some(first) = differing.first() {
        panic!(
            "the runs differ on {} of {} days: {differing:?}\nfirst, {first}, in each run: {:#?}",
            differing.len(),
            expected.len(),
            runs.iter().map(|run| run.get(*first)).collect::<Vec<_>>()
        );
    }
    // And the same as the reference's.
    let wrong: Vec<&String> = expected
        .keys()
        .filter(|key| runs[0].get(*key) != expected.get(*key))
        .collect();
    if let Some(first) = wrong.first() {
        panic!(
            "the reports differ from the expectation on {} of {} days: {wrong:?}\nfirst: got {:#?}\nwanted {:#?}",
            wrong.len(),
            expected.len(),
            runs[0].get(*first),
            expected[*first]
        );
    }
}

/// Reads `sales.orders` (skipping the runtime's watermark marks) until it holds `n`
/// distinct orders, then `quiet` more, and returns how often each order came.
pub(crate) async fn orders_read(
    consumer: &StreamConsumer,
    n: usize,
    timeout: Duration,
    quiet: Duration,
) -> HashMap<(String, String), usize> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        if seen.len() >= n && quiet_until.is_none() {
            quiet_until = Some(tokio::time::Instant::now() + quiet);
        }
        let Ok(next) = tokio::time::timeout_at(quiet_until.unwrap_or(deadline), consumer.recv()).await else {
            assert!(
                quiet_until.is_some(),
                "{} of {n} orders in sales.orders within {timeout:?}",
                seen.len()
            );
            return seen;
        };
        let Ok(message) = next else { continue };
        if kafka_runtime::watermark::is_mark(message.key()) {
            continue;
        }
        let order: EnrichedOrder = schemas::decode(message.payload().unwrap()).unwrap();
        *seen.entry((order.organization_id, order.order.id)).or_default() += 1;
    }
}

/// Stops `worker` as soon as it has processed its first records and starts it again
/// under the same id; returns the new worker and the too-late orders the first one
/// counted (a stopped worker's metrics go with it).
async fn restart_after_first_records(env: &TestEnv, worker: Worker) -> (Worker, f64) {
    let records = worker.when_processed(1.0).await;
    let too_late = too_late_orders(std::slice::from_ref(&worker)).await;
    let (stage, id) = (worker.stage, worker.id.clone());
    worker.stop().await;
    println!("{stage} {id} stopped after its first {records} records, and started again");
    (Worker::start(env, stage, &id).await, too_late)
}

#[tokio::test]
async fn a_restart_after_the_first_fetch_and_a_replica_added_mid_backlog_drop_nothing() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = month_plan(43, now);
    let expected = expected(&plan, now);
    write_backlog(&env, &plan).await;
    let inputs = (plan.past.len() + plan.past_later.len()) as f64;
    let orders = simulator::plan::order_ids(&plan.past);

    // Not waiting for readiness: the first records are processed as soon as the
    // partitions are assigned, and the restarts are to come right after them.
    let enricher = Worker::start(&env, "enricher", "w1").await;
    let attributor = Worker::start(&env, "attributor", "w1").await;
    let reporter = Worker::start(&env, "reporter", "w1").await;
    let ((attributor, _), (reporter, reporter_w2, too_late_first), enricher_w2) = tokio::join!(
        restart_after_first_records(&env, attributor),
        async {
            let (reporter, too_late) = restart_after_first_records(&env, reporter).await;
            // A second reporter as soon as the restarted one is at work again: its input
            // comes as the attributor gets through the backlog, so most is still ahead.
            let records = reporter.when_processed(1.0).await;
            println!("reporter w2 started after {records} records of w1");
            (reporter, Worker::start(&env, "reporter", "w2").await, too_late)
        },
        async {
            // A second enricher early enough that the first still has most of the
            // backlog ahead of it, however fast it goes.
            let records = enricher.when_processed(inputs / 4.0).await;
            println!("enricher w2 started after {records} of about {inputs} records of w1");
            Worker::start(&env, "enricher", "w2").await
        },
    );
    let workers = vec![enricher, enricher_w2, attributor, reporter, reporter_w2];
    for worker in &workers {
        worker.ready().await;
    }

    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    await_reports(&reports, &expected, REPORTS_TIMEOUT).await;
    // Every order once in sales.orders, none twice.
    let sales_orders = env.consumer(&env.topic(Topic::Orders), "read_committed");
    let seen = orders_read(&sales_orders, orders.len(), REPORTS_TIMEOUT, Duration::from_secs(3)).await;
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "orders in sales.orders more than once: {twice:?}");
    assert_eq!(seen.len(), orders.len(), "every order in sales.orders");
    let too_late = too_late_first + too_late_orders(&workers).await;
    assert_eq!(too_late, 0.0, "no order may come too late");
    stop_all(workers).await;
}
