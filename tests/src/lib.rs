//! The harness of the integration tests: a real Kafka broker, shared by every test, and
//! a private namespace (topic prefix, group ids, transactional ids) for each test so
//! they run in parallel without seeing each other's records.
//!
//! The broker is the one `KAFKA_BOOTSTRAP_SERVERS` names (`scripts/test.sh` starts a
//! local one and sets it); without it, a broker is started with testcontainers, which
//! needs a Docker engine.

pub mod api;
pub mod bench;
pub mod counting;
pub mod fuzz;
pub mod joining;
pub mod reference;

use std::time::Duration;

use kafka_runtime::config::KafkaArgs;
use kafka_runtime::topic_admin::{TopicsReport, ensure_topics};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use schemas::topics::{Topic, TopicNames};
use testcontainers_modules::kafka::apache;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::sync::OnceCell;

/// The Kafka version the tests run against in a container; the same as the local broker.
pub const KAFKA_IMAGE_TAG: &str = "4.1.1";

/// Partitions of the topics each test creates: fewer than production's default keeps
/// topic creation quick, more than one keeps partitioning honest.
pub const TEST_PARTITIONS: i32 = 3;

struct Broker {
    bootstrap: String,
    // Kept for the life of the test binary; testcontainers removes it afterwards.
    _container: Option<ContainerAsync<apache::Kafka>>,
}

static BROKER: OnceCell<Broker> = OnceCell::const_new();

/// The bootstrap servers of the shared test broker, starting it on first use.
pub async fn bootstrap_servers() -> &'static str {
    let broker = BROKER
        .get_or_init(|| async {
            if let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
                && !bootstrap.trim().is_empty()
            {
                return Broker {
                    bootstrap,
                    _container: None,
                };
            }
            let container = apache::Kafka::default()
                .with_jvm_image()
                .with_tag(KAFKA_IMAGE_TAG)
                .start()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "KAFKA_BOOTSTRAP_SERVERS is not set and testcontainers could not start Kafka ({e}). \
                         Run scripts/test.sh, which starts a local broker without Docker."
                    )
                });
            let port = container
                .get_host_port_ipv4(apache::KAFKA_PORT)
                .await
                .unwrap_or_else(|e| panic!("cannot read the Kafka container's port: {e}"));
            Broker {
                bootstrap: format!("127.0.0.1:{port}"),
                _container: Some(container),
            }
        })
        .await;
    &broker.bootstrap
}

/// One test's private corner of the shared broker.
#[derive(Debug, Clone)]
pub struct TestEnv {
    pub kafka: KafkaArgs,
    pub names: TopicNames,
    id: String,
}

impl TestEnv {
    /// A fresh namespace: a random topic prefix such as `t-1a2b3c4d.`.
    pub async fn new() -> Self {
        let id = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let kafka = KafkaArgs {
            bootstrap_servers: bootstrap_servers().await.to_string(),
            topic_prefix: format!("{id}."),
        };
        let names = kafka
            .topic_names()
            .unwrap_or_else(|e| panic!("test prefix refused: {e}"));
        TestEnv { kafka, names, id }
    }

    /// Creates every topic of the pipeline under this test's prefix.
    pub async fn create_topics(&self) -> TopicsReport {
        self.create_topics_replicated(1).await
    }

    /// Creates every topic of the pipeline under this test's prefix with `replication`
    /// replicas (on a cluster of that many brokers at least).
    pub async fn create_topics_replicated(&self, replication: i32) -> TopicsReport {
        ensure_topics(&self.kafka, TEST_PARTITIONS, replication)
            .await
            .unwrap_or_else(|e| panic!("cannot create topics: {e}"))
    }

    pub fn topic(&self, topic: Topic) -> String {
        self.names.name(topic)
    }

    /// A consumer group id (or transactional id) unique to this test.
    pub fn unique_id(&self, what: &str) -> String {
        format!("{}-{what}", self.id)
    }

    /// Client settings pointing at the shared broker.
    pub fn client_config(&self) -> ClientConfig {
        self.kafka.client_config(&self.unique_id("client"))
    }

    /// Writes an organization's settings to this test's `accounts.organizations`, as
    /// `salesctl org put` does.
    pub async fn put_organization(&self, settings: &schemas::records::OrganizationSettings) {
        let producer: FutureProducer = self.client_config().set("acks", "all").create().unwrap();
        let value = schemas::encode(settings).unwrap();
        let topic = self.topic(Topic::Organizations);
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key(&settings.organization_id)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("cannot write organization settings: {e}"));
    }

    pub fn transactional_producer(&self, transactional_id: &str) -> FutureProducer {
        self.client_config()
            .set("transactional.id", self.unique_id(transactional_id))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .unwrap_or_else(|e| panic!("cannot create a transactional producer: {e}"))
    }

    /// A consumer of `topic` from its beginning, in a group of its own, with the given
    /// isolation level (`read_committed` or `read_uncommitted`).
    pub fn consumer(&self, topic: &str, isolation: &str) -> StreamConsumer {
        let consumer: StreamConsumer = self
            .client_config()
            // A group of its own: two readers in one group would split the topics.
            .set(
                "group.id",
                self.unique_id(&format!("reader-{isolation}-{}", uuid::Uuid::new_v4())),
            )
            .set("isolation.level", isolation)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("cannot create a consumer: {e}"));
        consumer
            .subscribe(&[topic])
            .unwrap_or_else(|e| panic!("cannot subscribe to {topic}: {e}"));
        consumer
    }
}

/// Stands in for the stage that writes a topic a stage reads as a written input: one
/// writer whose watermark follows the wall clock, marked on every partition every 200 ms
/// until dropped.
#[derive(Debug)]
pub struct UpstreamClock(tokio::task::JoinHandle<()>);

impl Drop for UpstreamClock {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TestEnv {
    pub fn upstream_clock(&self, topic: &str) -> UpstreamClock {
        let producer: FutureProducer = self.client_config().set("acks", "all").create().unwrap();
        let topic = topic.to_string();
        UpstreamClock(tokio::spawn(async move {
            loop {
                let mark = kafka_runtime::watermark::Mark {
                    app: "test-upstream".into(),
                    task: 0,
                    writers: 1,
                    at: schemas::values::Timestamp::from_datetime(chrono::Utc::now()),
                };
                for partition in 0..TEST_PARTITIONS {
                    let (key, value) = (mark.key(), mark.value());
                    let record = rdkafka::producer::FutureRecord::to(&topic)
                        .partition(partition)
                        .key(&key)
                        .payload(&value);
                    let _ = producer.send(record, Duration::from_secs(5)).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }
}

/// A record read back: key and value bytes.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Reads `n` records from `consumer` (panicking if they do not come within `timeout`),
/// then waits `quiet` to make sure no more follow: a duplicate would.
pub async fn read_exactly(
    consumer: &StreamConsumer,
    what: &str,
    n: usize,
    timeout: Duration,
    quiet: Duration,
) -> Vec<KeyValue> {
    use rdkafka::Message;
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while records.len() < n {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => panic!("{what}: {} of {n} records within {timeout:?}", records.len()),
            // A topic created moments ago may be unknown to the first metadata request.
            Ok(Err(_)) => continue,
            // A watermark mark of the runtime is not data.
            Ok(Ok(m)) if kafka_runtime::watermark::is_mark(m.key()) => {}
            Ok(Ok(m)) => records.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec))),
        }
    }
    let quiet_until = tokio::time::Instant::now() + quiet;
    while let Ok(next) = tokio::time::timeout_at(quiet_until, consumer.recv()).await {
        if let Ok(m) = next
            && !kafka_runtime::watermark::is_mark(m.key())
        {
            panic!(
                "{what}: more than {n} records; the next has key {:?}",
                m.key().map(String::from_utf8_lossy)
            );
        }
    }
    records
}

/// A private broker, so that stopping it does not disturb the other tests.
#[derive(Debug)]
pub struct PrivateBroker {
    pub port: u16,
    controller_port: u16,
}

impl PrivateBroker {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-local.sh")
    }

    fn command(&self, action: &str) -> std::process::Output {
        std::process::Command::new("bash")
            .arg(Self::script())
            .arg(action)
            .env("KAFKA_LOCAL_PORT", self.port.to_string())
            .env("KAFKA_LOCAL_CONTROLLER_PORT", self.controller_port.to_string())
            .env("KAFKA_LOCAL_HEAP", "512m")
            .output()
            .unwrap()
    }

    /// Starts a broker on free ports (blocking: call it from `spawn_blocking`).
    pub fn start() -> Self {
        let broker = PrivateBroker {
            port: free_local_addr().port(),
            controller_port: free_local_addr().port(),
        };
        let output = broker.command("start");
        assert!(
            output.status.success(),
            "private broker: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        broker
    }

    pub fn pid(&self) -> String {
        let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        std::fs::read_to_string(format!("{dir}/sales-kafka-{}/kafka.pid", self.port))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Freezes the broker process: connections stay open but nothing is answered.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl PrivateBroker {
    /// The bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker gracefully and starts it again on the same data (blocking).
    pub fn restart(&self) {
        let output = self.command("restart");
        assert!(
            output.status.success(),
            "private broker restart: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.command("stop");
    }
}

/// A private cluster of `nodes` Kafka nodes (each a broker and a voter of the KRaft
/// quorum; internal topics with 3 replicas and min.insync.replicas 2), run by
/// `scripts/kafka-local.sh --brokers N` on ports of its own: node `i` (from 1) serves
/// clients on `base_port + i - 1` and its controller on `base_port + nodes + i - 1`.
/// Stopped, its data deleted, when dropped, also when a test fails.
#[derive(Debug)]
pub struct PrivateCluster {
    pub base_port: u16,
    pub nodes: u16,
}

impl PrivateCluster {
    fn command(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("bash")
            .arg(PrivateBroker::script())
            .arg("--brokers")
            .arg(self.nodes.to_string())
            .args(args)
            .env("KAFKA_LOCAL_PORT", self.base_port.to_string())
            .env_remove("KAFKA_LOCAL_CONTROLLER_PORT")
            .env_remove("KAFKA_LOCAL_BROKERS")
            .env("KAFKA_LOCAL_HEAP", "384m")
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) {
        let output = self.command(args);
        assert!(
            output.status.success(),
            "private cluster `{}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts a cluster of `nodes` on free ports and waits until every node serves
    /// (blocking: call it from `spawn_blocking`).
    pub fn start(nodes: u16) -> Self {
        let cluster = PrivateCluster {
            base_port: free_local_ports(2 * nodes).port(),
            nodes,
        };
        cluster.run(&["start"]);
        cluster
    }

    /// Every node's client address, comma separated.
    pub fn bootstrap(&self) -> String {
        (0..self.nodes)
            .map(|i| format!("127.0.0.1:{}", self.base_port + i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills node `node` with SIGKILL, as a crash would; its data stays (blocking).
    pub fn kill(&self, node: u16) {
        self.run(&["kill", &node.to_string()]);
    }

    /// Starts node `node` again on its data, stopping it gracefully first if it runs,
    /// and waits until it serves (blocking).
    pub fn restart(&self, node: u16) {
        self.run(&["restart", &node.to_string()]);
    }

    /// The pid of node `node`, if the script runs it.
    pub fn pid(&self, node: u16) -> Option<u32> {
        let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
        let file = format!("{dir}/sales-kafka-cluster-{}/node-{node}/kafka.pid", self.base_port);
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.command(&["stop"]);
    }
}

/// The stream stages' idle advance in a test that writes past days while they run:
/// longer than the writing takes (chunks 2 s apart, kills, a broker's restart), so that no
/// source takes the wall clock between two chunks. Otherwise every later chunk would be
/// late (processed at once, in whatever order it arrives: an order reaching the
/// attributor before its chat event would lose its chat), and the figures would depend
/// on the timing of the faults rather than on the records.
pub const PAST_WHILE_RUNNING_IDLE_ADVANCE: &str = "30s";

/// `argv` with `flag` set to `value`, in place when it is there already.
pub fn with_flag(mut argv: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match argv.iter().position(|a| a == flag) {
        Some(at) => argv[at + 1] = value.to_string(),
        None => argv.extend([flag.to_string(), value.to_string()]),
    }
    argv
}

/// The flags of a pipeline stage on the test's topics: its admin listener, ingest's
/// public listener, a group of the test's own, worker `w1`, and a one-second idle
/// advance so that quiet days close quickly.
pub fn stage_args(env: &TestEnv, name: &str, admin: std::net::SocketAddr, public: std::net::SocketAddr) -> Vec<String> {
    let mut args: Vec<String> = [
        name,
        "--bootstrap-servers",
        &env.kafka.bootstrap_servers,
        "--topic-prefix",
        &env.kafka.topic_prefix,
        "--admin-addr",
        &admin.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if name == "api" {
        args.extend([
            "--listen-addr".into(),
            public.to_string(),
            "--jwt-secret-file".into(),
            api::secret_file().display().to_string(),
            "--keepalive".into(),
            "1s".into(),
        ]);
        return args;
    }
    if name == "ingest" {
        args.extend(["--listen-addr".into(), public.to_string()]);
        args.extend([
            "--ip-rate".into(),
            "100000".into(),
            "--ip-burst".into(),
            "100000".into(),
        ]);
    } else {
        args.extend([
            "--group-id".into(),
            env.unique_id(name),
            "--worker-id".into(),
            "w1".into(),
            "--idle-advance".into(),
            "1s".into(),
        ]);
    }
    if name == "reporter" {
        args.extend(["--revision-delay".into(), "2s".into()]);
    }
    args
}

/// Runs the pipeline stage `name` (`ingest`, `enricher`, `attributor`, `reporter` or `api`) in
/// this process with the command line `argv` (as [`stage_args`] makes it) until
/// `shutdown`.
pub fn run_stage(
    name: &str,
    argv: Vec<String>,
    shutdown: kafka_runtime::shutdown::Shutdown,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    use clap::Parser;
    match name {
        "ingest" => tokio::spawn(ingest::run(ingest::Config::try_parse_from(argv).unwrap(), shutdown)),
        "enricher" => tokio::spawn(enricher::run(enricher::Config::try_parse_from(argv).unwrap(), shutdown)),
        "attributor" => tokio::spawn(attributor::run(
            attributor::Config::try_parse_from(argv).unwrap(),
            shutdown,
        )),
        "reporter" => tokio::spawn(reporter::run(reporter::Config::try_parse_from(argv).unwrap(), shutdown)),
        "api" => tokio::spawn(::api::run(::api::Config::try_parse_from(argv).unwrap(), shutdown)),
        other => panic!("{other} is not a stage of the pipeline"),
    }
}

/// Waits until the admin listener at `admin` answers `/readyz` with 200, or panics
/// after `timeout` saying that `what` was awaited.
pub async fn await_ready(admin: std::net::SocketAddr, what: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = http_get(admin, "/readyz").await;
        if matches!(answer, Ok((200, _))) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            // The answer names the checks still failing: what a slow start waited on.
            panic!("timed out after {timeout:?} waiting for {what}; /readyz answered {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free port on 127.0.0.1 for a listener a test starts.
///
/// The port is taken below the kernel's ephemeral range: a port picked there (say by
/// binding port 0) is free again once the probe closes, and any outgoing connection
/// (the many Kafka clients of a test run) may take it as its local port before the
/// listener binds it, which then fails to start. Ports below the range are never given
/// to outgoing connections. Each call in this process gets another port; the start
/// depends on the process id, so concurrent test processes rarely meet.
pub fn free_local_addr() -> std::net::SocketAddr {
    free_local_ports(1)
}

/// The first of `count` consecutive free ports on 127.0.0.1, taken as
/// [`free_local_addr`] takes one (for a cluster whose nodes listen side by side).
pub fn free_local_ports(count: u16) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let count = u32::from(count.max(1));
    let (low, high) = (10_000u32, ephemeral_start.max(10_001 + count));
    let span = high - low - count + 1;
    let start = std::process::id().wrapping_mul(7919) % span;
    let addr = |port: u32| std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap_or(u16::MAX)));
    for _ in 0..span {
        let first = low + (start + NEXT.fetch_add(count, Ordering::Relaxed)) % span;
        if (first..first + count).all(|port| std::net::TcpListener::bind(addr(port)).is_ok()) {
            return addr(first);
        }
    }
    panic!("no {count} free consecutive ports on 127.0.0.1 between {low} and {high}")
}

pub use simulator::http::{HttpAnswer, http, http_get};

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout` saying
/// what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A worker of the exactly-once runtime running inside this process.
#[derive(Debug)]
pub struct InProcessWorker {
    pub metrics: kafka_runtime::worker::RuntimeMetrics,
    pub readiness: kafka_runtime::admin::Readiness,
    pub shutdown: kafka_runtime::shutdown::Shutdown,
    task: tokio::task::JoinHandle<Result<(), kafka_runtime::Error>>,
}

/// A test that fails leaves its worker behind: stop it, or the test runtime would wait
/// for the worker's thread forever when it shuts down.
impl Drop for InProcessWorker {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl InProcessWorker {
    /// Starts worker `w1` of `app` (its restore is done once `readiness` says ready).
    pub fn start(
        kafka: &KafkaArgs,
        app: std::sync::Arc<dyn kafka_runtime::task::Application>,
        commit_interval: Duration,
        idle_advance: Duration,
    ) -> Self {
        let metrics =
            kafka_runtime::worker::RuntimeMetrics::register(&mut prometheus_client::registry::Registry::default());
        let readiness = kafka_runtime::admin::Readiness::default();
        let shutdown = kafka_runtime::shutdown::Shutdown::new();
        let config = kafka_runtime::worker::WorkerConfig {
            kafka: kafka.clone(),
            processing: kafka_runtime::config::ProcessingArgs {
                commit_interval,
                commit_max_records: 10_000,
                max_task_idle: Duration::from_millis(20),
                idle_advance,
                allowed_lateness: Duration::from_secs(2),
                worker_id: Some("w1".into()),
                changelog_replication: 1,
            },
        };
        let task = tokio::spawn(kafka_runtime::worker::run(
            app,
            config,
            metrics.clone(),
            readiness.check("state"),
            shutdown.clone(),
        ));
        InProcessWorker {
            metrics,
            readiness,
            shutdown,
            task,
        }
    }

    /// Stops the worker as SIGTERM would and returns how its run ended.
    pub async fn stop(mut self) -> Result<(), kafka_runtime::Error> {
        self.shutdown.trigger();
        (&mut self.task)
            .await
            .unwrap_or_else(|e| panic!("worker task failed: {e}"))
    }
}

/// The value of `name` in Prometheus text, on the line whose labels include `labels`;
/// summed over the lines that match; 0 when there is none yet.
pub fn metric_labelled(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, tags) = match series.split_once('{') {
                Some((metric, tags)) => (metric, tags.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = metric == name
                && labels.iter().all(|(k, v)| {
                    tags.split(',')
                        .any(|tag| tag.split_once('=') == Some((k, &format!("\"{v}\""))))
                });
            wanted.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The sum of the samples of metric `name` (every label set) in Prometheus text; a
/// series with labels is named with them: `name{label="value"}`.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
