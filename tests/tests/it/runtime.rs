//! The exactly-once runtime against the real broker: a counting stage killed with
//! SIGKILL again and again, replicas added and killed mid-run, and a poison record.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kafka_runtime::topic_admin::{WantedTopic, ensure};
use rand::{Rng, SeedableRng};
use rdkafka::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::counting::{Counting, INPUT, OUTPUT};
use sales_tests::{InProcessWorker, TEST_PARTITIONS, TestEnv};
use schemas::records::DeadLetter;
use schemas::topics::{Cleanup, Topic};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn setup(env: &TestEnv) {
    env.create_topics().await;
    let retention = Cleanup::Delete {
        retention: Duration::from_secs(86_400),
    };
    let wanted: Vec<WantedTopic> = [INPUT, OUTPUT]
        .iter()
        .map(|t| WantedTopic {
            name: format!("{}{t}", env.kafka.topic_prefix),
            partitions: TEST_PARTITIONS,
            cleanup: retention,
        })
        .collect();
    ensure(&env.kafka, &wanted, 1).await.unwrap();
    // A worker started at once checks its inputs: on a loaded broker a topic created
    // moments ago may not be in the metadata yet.
    for topic in &wanted {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while kafka_runtime::topic_admin::partition_count(&env.kafka, &topic.name)
            .await
            .ok()
            .flatten()
            != Some(TEST_PARTITIONS)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not in the metadata after 30 s",
                topic.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends `records` increments over `keys` keys; returns how many each key got.
async fn produce(env: &TestEnv, records: usize, keys: usize, seed: u64) -> HashMap<String, u64> {
    let producer: FutureProducer = env
        .client_config()
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let topic = format!("{}{INPUT}", env.kafka.topic_prefix);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut expected = HashMap::new();
    let mut deliveries = Vec::with_capacity(records);
    for _ in 0..records {
        let key = format!("k{}", rng.random_range(0..keys));
        *expected.entry(key.clone()).or_insert(0) += 1;
        let mut record = FutureRecord::to(&topic).key(&key).payload("inc");
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                // A slow broker (a loaded machine) fills the local queue: wait for room.
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => panic!("cannot produce the input: {e}"),
            }
        }
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }
    expected
}

/// Reads the output with read_committed until `total` records arrived (or nothing new
/// came for `idle`); returns each key's counts in order.
async fn read_counts(env: &TestEnv, total: u64, idle: Duration) -> HashMap<String, Vec<u64>> {
    let consumer = env.consumer(&format!("{}{OUTPUT}", env.kafka.topic_prefix), "read_committed");
    let mut counts: HashMap<String, Vec<u64>> = HashMap::new();
    let mut read = 0;
    while read < total {
        let Ok(message) = tokio::time::timeout(idle, consumer.recv()).await else {
            break;
        };
        let Ok(message) = message else { continue };
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let count: u64 = std::str::from_utf8(message.payload().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        counts.entry(key).or_default().push(count);
        read += 1;
    }
    counts
}

/// Every key's outputs are exactly 1..=n with n its number of inputs.
fn assert_exactly_once(expected: &HashMap<String, u64>, counts: &HashMap<String, Vec<u64>>) {
    let mut problems = Vec::new();
    for (key, n) in expected {
        let seen = counts.get(key).cloned().unwrap_or_default();
        let wanted: Vec<u64> = (1..=*n).collect();
        if seen != wanted {
            let duplicates = seen.len() as i64 - seen.iter().collect::<std::collections::HashSet<_>>().len() as i64;
            problems.push(format!(
                "{key}: {} outputs for {n} inputs, {duplicates} repeated, last {:?}",
                seen.len(),
                seen.last()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} keys wrong:\n{}",
        problems.len(),
        problems.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

struct WorkerProcess(Child);

impl WorkerProcess {
    fn spawn(env: &TestEnv, app: &str, worker: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_counting_stage"))
            .args([
                "--bootstrap-servers",
                &env.kafka.bootstrap_servers,
                "--topic-prefix",
                &env.kafka.topic_prefix,
            ])
            .args([
                "--app-id",
                app,
                "--worker-id",
                worker,
                "--commit-interval",
                "100ms",
                "--idle-advance",
                "1h",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        WorkerProcess(child)
    }

    /// Sends a signal (`-STOP`, `-CONT`) to the process.
    fn signal(&self, name: &str) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success(), "kill {name} {pid}");
    }

    /// SIGKILL: no commit, no goodbye.
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// SIGTERM, and the exit status of a graceful stop.
    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        let status = self.0.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the output with read_committed in the background, so a test can act on the
/// progress it sees.
struct OutputWatch {
    counts: Arc<std::sync::Mutex<HashMap<String, Vec<u64>>>>,
    read: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl OutputWatch {
    fn start(env: &TestEnv) -> Self {
        let consumer = env.consumer(&format!("{}{OUTPUT}", env.kafka.topic_prefix), "read_committed");
        let counts: Arc<std::sync::Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn({
            let (counts, read) = (Arc::clone(&counts), Arc::clone(&read));
            async move {
                loop {
                    // A topic created moments ago may be unknown to the first metadata
                    // request: such errors pass, the records come.
                    let Ok(message) = consumer.recv().await else { continue };
                    let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
                    let count: u64 = std::str::from_utf8(message.payload().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    counts.lock().unwrap().entry(key).or_default().push(count);
                    read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        OutputWatch { counts, read, task }
    }

    fn read(&self) -> usize {
        self.read.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait_for(&self, at_least: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.read() < at_least {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Waits until nothing new arrives for `quiet`, then returns what was read.
    async fn settle(self, quiet: Duration) -> HashMap<String, Vec<u64>> {
        let mut last = self.read();
        loop {
            tokio::time::sleep(quiet).await;
            if self.read() == last {
                break;
            }
            last = self.read();
        }
        self.task.abort();
        self.counts.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_counting_stage_killed_again_and_again_counts_every_record_exactly_once() {
    let env = TestEnv::new().await;
    setup(&env).await;
    let app = env.unique_id("counter");
    // Enough input that a worker cannot finish it between two kills: the runtime
    // processes tens of thousands of records a second.
    let records = 200_000;
    let expected = produce(&env, records, 200, 7).await;
    let watch = OutputWatch::start(&env);

    // Each incarnation is killed with SIGKILL once the committed output has passed a
    // mark, plus a random moment: always mid-run, with a transaction open.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut killed_at = Vec::new();
    for mark in [20_000, 60_000, 100_000, 140_000] {
        let worker = WorkerProcess::spawn(&env, &app, "w1");
        assert!(
            watch.wait_for(mark, Duration::from_secs(60)).await,
            "no progress past {mark}"
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
        worker.kill();
        killed_at.push(watch.read());
    }
    assert!(
        killed_at.iter().all(|k| *k < records),
        "every kill must land mid-run: {killed_at:?}"
    );

    let worker = WorkerProcess::spawn(&env, &app, "w1");
    assert!(
        watch.wait_for(records, Duration::from_secs(120)).await,
        "only {} of {records} outputs",
        watch.read()
    );
    assert!(worker.terminate().success(), "a graceful stop exits 0");
    let counts = watch.settle(Duration::from_secs(2)).await;
    assert_exactly_once(&expected, &counts);
    assert_eq!(
        counts.values().map(Vec::len).sum::<usize>(),
        records,
        "no duplicate trails behind"
    );
}

#[tokio::test]
async fn replicas_added_and_killed_mid_run_keep_the_counts_exact() {
    let env = TestEnv::new().await;
    setup(&env).await;
    let app = env.unique_id("counter");
    let watch = OutputWatch::start(&env);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut add = |batch: HashMap<String, u64>| {
        for (key, n) in batch {
            *expected.entry(key).or_insert(0) += n;
        }
    };

    // Two replicas build state in every partition.
    let w1 = WorkerProcess::spawn(&env, &app, "w1");
    let w2 = WorkerProcess::spawn(&env, &app, "w2");
    add(produce(&env, 10_000, 150, 1).await);
    assert!(
        watch.wait_for(10_000, Duration::from_secs(60)).await,
        "{} of 10000",
        watch.read()
    );

    // A third joins: partitions move, and their counts must continue from the
    // changelog, not restart.
    let w3 = WorkerProcess::spawn(&env, &app, "w3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    add(produce(&env, 10_000, 150, 2).await);
    assert!(
        watch.wait_for(20_000, Duration::from_secs(60)).await,
        "{} of 20000",
        watch.read()
    );

    // One dies for good: its partitions move once its session expires.
    w1.kill();
    add(produce(&env, 10_000, 150, 3).await);
    assert!(
        watch.wait_for(30_000, Duration::from_secs(90)).await,
        "{} of 30000",
        watch.read()
    );

    assert!(w2.terminate().success());
    assert!(w3.terminate().success());
    let counts = watch.settle(Duration::from_secs(2)).await;
    assert_exactly_once(&expected, &counts);
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_processing_continues_behind_it() {
    let env = TestEnv::new().await;
    setup(&env).await;
    let app = Arc::new(Counting {
        id: env.unique_id("counter"),
        prefix: env.kafka.topic_prefix.clone(),
    });
    let producer: FutureProducer = env.client_config().set("acks", "all").create().unwrap();
    let input = format!("{}{INPUT}", env.kafka.topic_prefix);
    for value in ["inc", "\u{0}garbage", "inc-then-reject", "inc"] {
        producer
            .send(FutureRecord::to(&input).key("k").payload(value), TIMEOUT)
            .await
            .unwrap();
    }

    let worker = InProcessWorker::start(&env.kafka, app, Duration::from_millis(50), Duration::from_secs(3600));

    // The count the rejected record wrote was rolled back with it: the last increment
    // is 2, not 3, and nothing more follows.
    let counts = read_counts(&env, 3, Duration::from_secs(5)).await;
    assert_eq!(
        counts["k"],
        [1, 2],
        "the records after the poison are counted, the rejected write undone"
    );

    let dead = env.consumer(&env.topic(Topic::DeadLetter), "read_committed");
    let message = tokio::time::timeout(TIMEOUT, dead.recv()).await.unwrap().unwrap();
    let letter: DeadLetter = schemas::decode(message.payload().unwrap()).unwrap();
    assert!(letter.reason.contains("not an increment"), "{}", letter.reason);
    assert_eq!(
        (letter.source_topic.as_str(), letter.source_offset),
        (input.as_str(), 1)
    );
    assert_eq!(letter.source_value.as_deref(), Some("\u{0}garbage".as_bytes()));
    let message = tokio::time::timeout(TIMEOUT, dead.recv()).await.unwrap().unwrap();
    let letter: DeadLetter = schemas::decode(message.payload().unwrap()).unwrap();
    assert_eq!(
        (letter.reason.as_str(), letter.source_offset),
        ("rejected after writing", 2)
    );
    assert_eq!(worker.metrics.dead_letters.get(), 2);

    tokio::time::timeout(TIMEOUT, worker.stop()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_task_joins_co_partitioned_inputs_repartitions_and_fires_timers_on_idle_input() {
    use sales_tests::joining::{JOINED, Joining, REMINDERS, STREAM, TABLE};

    let env = TestEnv::new().await;
    env.create_topics().await;
    let prefix = env.kafka.topic_prefix.clone();
    let retention = Cleanup::Delete {
        retention: Duration::from_secs(86_400),
    };
    let wanted: Vec<WantedTopic> = [TABLE, STREAM, JOINED, REMINDERS]
        .iter()
        .map(|t| WantedTopic {
            name: format!("{prefix}{t}"),
            partitions: TEST_PARTITIONS,
            cleanup: retention,
        })
        .collect();
    ensure(&env.kafka, &wanted, 1).await.unwrap();

    // A backlog on both inputs, the orders written before the names they join with but
    // a minute later in event time: the task takes the earlier records first, whichever
    // topic the consumer delivers first.
    let producer: FutureProducer = env.client_config().set("acks", "all").create().unwrap();
    let names_at = chrono::Utc::now().timestamp_millis() - 120_000;
    for (i, (customer, order)) in [("c1", "o-1"), ("c2", "o-2"), ("c3", "o-3"), ("c1", "o-4")]
        .iter()
        .enumerate()
    {
        let topic = format!("{prefix}{STREAM}");
        let record = FutureRecord::to(&topic)
            .key(*customer)
            .payload(*order)
            .timestamp(names_at + 60_000 + i as i64);
        producer.send(record, TIMEOUT).await.unwrap();
    }
    for (customer, name) in [("c1", "Ana"), ("c2", "Bo"), ("c3", "Cy")] {
        let topic = format!("{prefix}{TABLE}");
        let record = FutureRecord::to(&topic).key(customer).payload(name).timestamp(names_at);
        producer.send(record, TIMEOUT).await.unwrap();
    }
    let app = Arc::new(Joining {
        id: env.unique_id("join"),
        prefix: prefix.clone(),
    });
    // No more input after the orders: the wall clock moves the timers.
    let worker = InProcessWorker::start(&env.kafka, app, Duration::from_millis(50), Duration::from_secs(1));

    let read = |topic: String, n: usize| {
        let consumer = env.consumer(&topic, "read_committed");
        async move {
            let topic = topic.clone();
            let mut records = Vec::new();
            while records.len() < n {
                let Ok(message) = tokio::time::timeout(TIMEOUT, consumer.recv()).await.unwrap() else {
                    continue;
                };
                let text = |b: Option<&[u8]>| String::from_utf8(b.unwrap().to_vec()).unwrap();
                records.push((text(message.key()), text(message.payload())));
            }
            // Exactly n: nothing more trails behind (a duplicate would).
            let more = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
            assert!(!matches!(more, Ok(Ok(_))), "more than {n} records in {topic}");
            records.sort();
            records
        }
    };
    // The table and the stream of one customer meet in one task, whichever topic a
    // record came from; the result is keyed by order id.
    let joined = read(format!("{prefix}{JOINED}"), 4).await;
    assert_eq!(
        joined,
        [
            ("o-1".into(), "c1:Ana".into()),
            ("o-2".into(), "c2:Bo".into()),
            ("o-3".into(), "c3:Cy".into()),
            ("o-4".into(), "c1:Ana".into())
        ]
    );
    let reminders = read(format!("{prefix}{REMINDERS}"), 4).await;
    assert_eq!(reminders.len(), 4, "{reminders:?}");
    assert!(reminders.contains(&("c1".into(), "o-4".into())));

    tokio::time::timeout(TIMEOUT, worker.stop()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_second_worker_with_the_same_id_fences_the_first_which_exits_with_an_error() {
    let env = TestEnv::new().await;
    setup(&env).await;
    let app = env.unique_id("counter");
    let watch = OutputWatch::start(&env);
    let mut expected = produce(&env, 20_000, 100, 5).await;

    let zombie = WorkerProcess::spawn(&env, &app, "w1");
    assert!(
        watch.wait_for(2_000, Duration::from_secs(60)).await,
        "the worker counted {} records within 60 s of its start, not the first 2000 of 20000",
        watch.read()
    );
    // The worker hangs (frozen, as a long pause would): it stops heartbeating and the
    // group drops it after the session timeout. A successor with the same worker id
    // waits for that (a live namesake it would refuse), then its transactional id and
    // group instance id take over; woken up, the zombie finds itself fenced.
    zombie.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen_at = watch.read();
    // More input once the zombie is frozen: the successor has work to take over even
    // when the zombie had got through the first records before it froze.
    for (key, count) in produce(&env, 5_000, 100, 6).await {
        *expected.entry(key).or_insert(0) += count;
    }
    let successor = WorkerProcess::spawn(&env, &app, "w1");
    assert!(
        watch.wait_for(frozen_at + 500, Duration::from_secs(90)).await,
        "the successor took over: {} of 25000, {frozen_at} when the zombie froze",
        watch.read()
    );
    zombie.signal("-CONT");

    let mut zombie = zombie;
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = zombie.0.try_wait().unwrap() {
                std::mem::forget(zombie);
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let status = status.expect("the fenced worker must stop on its own");
    assert!(!status.success(), "a fenced worker exits non-zero: {status}");

    assert!(
        watch.wait_for(25_000, Duration::from_secs(90)).await,
        "{} of 25000",
        watch.read()
    );
    assert!(successor.terminate().success());
    let counts = watch.settle(Duration::from_secs(2)).await;
    assert_exactly_once(&expected, &counts);
}

#[tokio::test]
async fn a_worker_frozen_past_its_transaction_timeout_renews_its_producer_and_counts_exactly_once() {
    let env = TestEnv::new().await;
    setup(&env).await;
    let app = env.unique_id("counter");
    let watch = OutputWatch::start(&env);
    let expected = produce(&env, 20_000, 100, 9).await;

    let worker = WorkerProcess::spawn(&env, &app, "w1");
    assert!(
        watch.wait_for(2_000, Duration::from_secs(60)).await,
        "the worker counted {} records within 60 s of its start, not the first 2000 of 20000",
        watch.read()
    );
    // Frozen with a transaction open (a long pause of the process, a starved machine):
    // the coordinator aborts the transaction after transaction.timeout.ms (10 s) and
    // fences the producer, and the group drops the member. Nobody replaces it, so when
    // it wakes up it must carry on by itself, not exit.
    worker.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(14)).await;
    worker.signal("-CONT");

    assert!(
        watch.wait_for(20_000, Duration::from_secs(90)).await,
        "the woken worker went on: {} of 20000",
        watch.read()
    );
    let mut worker = worker;
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "the woken worker is still running"
    );
    assert!(worker.terminate().success(), "a graceful stop exits 0");
    let counts = watch.settle(Duration::from_secs(2)).await;
    assert_exactly_once(&expected, &counts);
}
