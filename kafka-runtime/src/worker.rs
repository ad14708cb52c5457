//! The exactly-once processing loop every stateful stage runs.
//!
//! One worker is one consumer in the stage's consumer group and one transactional
//! producer. Records are handed to the task of their partition; the task's outputs, its
//! state changes (as changelog records) and the input offsets go into one Kafka
//! transaction, committed every commit interval or every `commit_max_records` records.
//! A `read_committed` reader downstream therefore sees each input's effects exactly
//! once, whatever crashes: an uncommitted transaction is aborted (by us, by the broker's
//! timeout, or by the fencing of a restarted worker with the same id), and the next owner
//! of the partition restores the stores from the changelog to the committed point and
//! resumes from the committed offsets.
//!
//! Rebalances use the eager range assignor: it is the one rdkafka offers that keeps
//! partition `p` of every co-partitioned input with the same worker (the cooperative
//! sticky assignor does not). On revocation the open transaction is committed before the
//! partitions are let go; on assignment the tasks are restored before any record of
//! theirs is processed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::records::DeadLetter;
use schemas::topics::Cleanup;
use schemas::values::Timestamp;

use crate::admin::ReadyCheck;
use crate::config::{KafkaArgs, ProcessingArgs};
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::store::EXPIRES_AT_HEADER;
use crate::task::{Application, Output, Record, Reject, Stores, TaskContext, timer_at};
use crate::topic_admin::{WantedTopic, ensure, partition_count};

/// How long a Kafka call of the loop may block before it is treated as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Outputs larger than this are refused by the broker's default `message.max.bytes`;
/// the input that produced one is dead-lettered instead of failing every retry.
const MAX_RECORD_BYTES: usize = 900 * 1024;
/// How much of a poison record's key and value its dead letter keeps.
const DEAD_LETTER_BYTES: usize = 256 * 1024;
/// Key and header of the checkpoint records: every transaction writes, into each
/// changelog partition it touches, the input offsets it commits. A restore reads until
/// it has seen the checkpoint of the committed offsets, so it cannot stop before the
/// last committed transaction's records become visible (the broker answers a commit
/// before it has written the commit markers to every partition).
const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
const CHECKPOINT_HEADER: &str = "checkpoint";
/// Aborts in a row (no commit between) after which the worker gives up and exits.
const MAX_ABORTS_IN_A_ROW: u32 = 10;

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub kafka: KafkaArgs,
    /// The loop's settings. The worker's id (`processing.worker_id()`) makes its
    /// transactional id `<app>-<worker_id>`, so a restarted worker fences its previous
    /// incarnation and aborts its open transaction at once instead of leaving it to time
    /// out.
    pub processing: ProcessingArgs,
}

/// The runtime's metrics.
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    pub records: Counter,
    pub commits: Counter,
    /// Time to commit a transaction (outputs flushed, offsets added, commit answered).
    pub commit_seconds: Histogram,
    pub aborts: Counter,
    pub dead_letters: Counter,
    pub restored_records: Counter,
    pub restore_seconds: Histogram,
    /// Duration of the latest restore.
    pub last_restore_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub store_keys: Gauge,
    pub store_bytes: Gauge,
}

impl RuntimeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RuntimeMetrics {
            records: Counter::default(),
            commits: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            aborts: Counter::default(),
            dead_letters: Counter::default(),
            restored_records: Counter::default(),
            restore_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            last_restore_seconds: Gauge::default(),
            store_keys: Gauge::default(),
            store_bytes: Gauge::default(),
        };
        registry.register("stream_records", "Input records processed", metrics.records.clone());
        registry.register("stream_commits", "Transactions committed", metrics.commits.clone());
        registry.register(
            "stream_commit_seconds",
            "Time to commit a transaction, from the first changelog write to the broker's answer",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "stream_aborts",
            "Transactions aborted and rewound",
            metrics.aborts.clone(),
        );
        registry.register(
            "stream_dead_letters",
            "Records sent to the dead-letter topic",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "stream_restored_records",
            "Changelog records read to restore stores",
            metrics.restored_records.clone(),
        );
        registry.register(
            "stream_restore_seconds",
            "Time to restore the stores of newly assigned partitions",
            metrics.restore_seconds.clone(),
        );
        registry.register(
            "stream_last_restore_seconds",
            "Duration of the latest restore",
            metrics.last_restore_seconds.clone(),
        );
        registry.register(
            "stream_store_keys",
            "Keys held in this worker's stores",
            metrics.store_keys.clone(),
        );
        registry.register(
            "stream_store_bytes",
            "Bytes of keys and values held in this worker's stores",
            metrics.store_bytes.clone(),
        );
        metrics
    }
}

/// The changelog topic of a store: `<prefix><app>.<store>-changelog`.
pub fn changelog_topic(prefix: &str, app: &str, store: &str) -> String {
    format!("{prefix}{app}.{store}-changelog")
}

struct TaskState {
    task: Box<dyn crate::task::Task>,
    stores: Stores,
    stream_time: Timestamp,
    last_input: Instant,
    /// Records of the synchronized inputs not yet processed, per input, in offset order.
    /// Never committed: the offsets only move when a record is processed.
    waiting: BTreeMap<String, VecDeque<Polled>>,
    /// Since when a synchronized input has had no record while another had some.
    blocked_since: Option<Instant>,
}

/// A record taken from the consumer, with its event time.
struct Polled {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    event_time: Option<Timestamp>,
}

impl Polled {
    fn record(&self) -> Record<'_> {
        Record {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// The part of the worker the rebalance callbacks need as well as the loop.
struct Core {
    app: Arc<dyn Application>,
    producer: ThreadedProducer<DefaultProducerContext>,
    /// Store name to its changelog topic (the timers included).
    changelogs: BTreeMap<&'static str, String>,
    dead_letter_topic: String,
    tasks: BTreeMap<i32, TaskState>,
    /// Next offset to consume per input (topic, partition), not yet committed.
    offsets: HashMap<(String, i32), i64>,
    txn_open: bool,
    uncommitted: u32,
    last_commit: Instant,
    /// Partitions assigned by the last rebalance whose tasks are not yet restored.
    to_restore: Option<BTreeSet<i32>>,
    /// An error raised inside a rebalance callback, for the loop to act on.
    failure: Option<Error>,
    /// Set once the worker is leaving because of an error: from then on nothing may be
    /// committed (a revocation while closing only aborts).
    poisoned: bool,
    /// Aborts since the last successful commit; too many in a row end the worker.
    aborts_in_a_row: u32,
    /// Partitions that processed records in the open transaction.
    touched: BTreeSet<i32>,
    metrics: RuntimeMetrics,
    kafka: KafkaArgs,
    idle_advance: Duration,
    /// The application's inputs joined by event time.
    synchronized: Vec<String>,
    max_task_idle: Duration,
}

struct Rebalancer {
    core: Arc<Mutex<Core>>,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let mut core = lock(&self.core);
            if core.poisoned || std::thread::panicking() {
                // Leaving after an error: what is in memory may be half done.
                let _ = core.abort();
                core.tasks.clear();
                core.offsets.clear();
                core.to_restore = None;
                return;
            }
            // Commit what was done for the partitions before they go: the next owner
            // starts exactly where this transaction ends.
            let committed = match consumer.group_metadata() {
                Some(group) => core.commit(&group),
                None => Err(Error::Config("no consumer group metadata at revocation".into())),
            };
            if let Err(e) = committed {
                tracing::warn!(error = %e, "commit at revocation failed; aborting");
                if let Err(fatal) = core.abort() {
                    core.failure = Some(fatal);
                }
            }
            core.tasks.clear();
            core.offsets.clear();
            core.to_restore = None;
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assignment) => {
                let partitions = assignment.elements().iter().map(|e| e.partition()).collect();
                lock(&self.core).to_restore = Some(partitions);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// Whether a failed transactional call may be fixed by aborting and rewinding, or
/// leaves the producer unusable (fenced by a newer incarnation, or fatal).
fn classify(e: KafkaError, what: &str) -> Error {
    let fatal = match &e {
        KafkaError::Transaction(t) => t.is_fatal() || !t.txn_requires_abort() && !t.is_retriable(),
        _ => false,
    };
    if fatal {
        Error::Task(format!("{what}: {e} (the producer cannot continue)"))
    } else {
        Error::kafka(what.to_string(), e)
    }
}

impl Core {
    fn is_fatal(error: &Error) -> bool {
        matches!(error, Error::Task(_))
    }

    fn begin(&mut self) -> Result<()> {
        if !self.txn_open {
            self.producer
                .begin_transaction()
                .map_err(|e| classify(e, "cannot begin a transaction"))?;
            self.txn_open = true;
        }
        Ok(())
    }

    fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        self.begin()?;
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // The local queue is full: the producer's thread is sending; wait for room.
                Err((KafkaError::MessageProduction(Code::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(classify(e, "cannot send a record")),
            }
        }
    }

    /// Sends a task's outputs in the open transaction (the partitioner places them by key).
    fn send_outputs(&mut self, outputs: Vec<Output>) -> Result<()> {
        for output in outputs {
            self.send(
                &output.topic,
                None,
                output.key.as_deref(),
                output.value.as_deref(),
                None,
            )?;
        }
        Ok(())
    }

    /// Writes the stores' changes to their changelogs, adds the input offsets, and
    /// commits the transaction.
    fn commit(&mut self, group: &ConsumerGroupMetadata) -> Result<()> {
        let mut changes = Vec::new();
        for (partition, task) in &mut self.tasks {
            for (store, kv) in task.stores.all_mut() {
                for change in kv.take_changes() {
                    changes.push((*partition, store, change));
                }
            }
        }
        if !self.txn_open && changes.is_empty() && self.uncommitted == 0 {
            self.last_commit = Instant::now();
            return Ok(());
        }
        let started = Instant::now();
        for (partition, store, change) in changes {
            let topic = self
                .changelogs
                .get(store)
                .cloned()
                .ok_or_else(|| Error::Config(format!("no changelog for store {store}")))?;
            let headers = change.expires_at.map(|at| {
                OwnedHeaders::new().insert(Header {
                    key: EXPIRES_AT_HEADER,
                    value: Some(&at.micros().to_be_bytes()[..]),
                })
            });
            self.send(
                &topic,
                Some(partition),
                Some(&change.key),
                change.value.as_deref(),
                headers,
            )?;
        }
        for partition in std::mem::take(&mut self.touched) {
            let checkpoint = encode_checkpoint(&self.offsets, partition);
            let topics: Vec<String> = self.changelogs.values().cloned().collect();
            for topic in topics {
                let header = OwnedHeaders::new().insert(Header {
                    key: CHECKPOINT_HEADER,
                    value: Some(&b"1"[..]),
                });
                self.send(
                    &topic,
                    Some(partition),
                    Some(CHECKPOINT_KEY),
                    Some(checkpoint.as_bytes()),
                    Some(header),
                )?;
            }
        }
        self.begin()?;
        // The offsets of every owned partition go into every transaction, even one
        // holding only timer outputs or expiries: sending them is what checks this
        // worker's group generation, so a worker that lost its partitions is fenced.
        if !self.offsets.is_empty() {
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in &self.offsets {
                offsets
                    .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| Error::kafka("bad offset", e))?;
            }
            self.producer
                .send_offsets_to_transaction(&offsets, group, CALL_TIMEOUT)
                .map_err(|e| classify(e, "cannot add the input offsets to the transaction"))?;
        }
        self.await_delivery()?;
        // A timed-out commit may be retried: the retry resumes the same commit.
        let mut attempts = 0;
        loop {
            match self.producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 3 => attempts += 1,
                Err(e) => return Err(classify(e, "cannot commit the transaction")),
            }
        }
        self.txn_open = false;
        self.uncommitted = 0;
        self.aborts_in_a_row = 0;
        self.last_commit = Instant::now();
        self.metrics.commits.inc();
        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Waits until the broker has acknowledged every record sent. `commit_transaction`
    /// does this itself, but by polling for up to 100 ms at a time for delivery reports
    /// that the producer's own polling thread has usually taken already: every commit
    /// would last a tenth of a second. Here the polling thread serves the reports and
    /// this loop only watches the count.
    fn await_delivery(&self) -> Result<()> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(Error::kafka(
                    "records not acknowledged before the commit",
                    KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// Aborts the open transaction and forgets every task: their in-memory state holds
    /// changes that are now void, so they are restored from the changelogs again.
    fn abort(&mut self) -> Result<()> {
        if self.txn_open {
            self.producer
                .abort_transaction(CALL_TIMEOUT)
                .map_err(|e| classify(e, "cannot abort the transaction"))?;
            self.txn_open = false;
        }
        self.metrics.aborts.inc();
        self.aborts_in_a_row += 1;
        self.touched.clear();
        self.offsets.clear();
        self.uncommitted = 0;
        let mut partitions: BTreeSet<i32> = self.tasks.keys().copied().collect();
        partitions.extend(self.to_restore.take().unwrap_or_default());
        self.tasks.clear();
        if !partitions.is_empty() {
            self.to_restore = Some(partitions);
        }
        Ok(())
    }

    /// Builds the tasks of `partitions`, their stores restored from the changelogs up to
    /// the last committed transaction.
    fn restore(&mut self, partitions: &BTreeSet<i32>) -> Result<()> {
        let started = Instant::now();
        let specs = self.app.stores();
        let mut stores: BTreeMap<i32, Stores> = partitions.iter().map(|p| (*p, Stores::new(&specs))).collect();
        let restore_consumer: BaseConsumer<QuietEof> = self
            .kafka
            .client_config(&format!("{}-restore", self.app.id()))
            .set("group.id", format!("{}-restore", self.app.id()))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // An empty or fully read partition answers at once instead of after the
            // default half-second fetch wait.
            .set("fetch.wait.max.ms", "10")
            .create_with_context(QuietEof)
            .map_err(|e| Error::kafka("cannot create the restore consumer", e))?;
        // One changelog at a time: an end-of-partition event names only the partition,
        // so with a single topic assigned it is unambiguous.
        let mut restored = 0u64;
        let deadline = Instant::now() + Duration::from_secs(600);
        for (store, topic) in &self.changelogs {
            let mut assignment = TopicPartitionList::new();
            for partition in partitions {
                assignment
                    .add_partition_offset(topic, *partition, Offset::Beginning)
                    .map_err(|e| Error::kafka("bad restore assignment", e))?;
            }
            restore_consumer
                .assign(&assignment)
                .map_err(|e| Error::kafka("cannot assign a changelog", e))?;
            let mut pending = partitions.clone();
            let mut checkpoints: HashMap<i32, HashMap<String, i64>> = HashMap::new();
            while !pending.is_empty() {
                if Instant::now() > deadline {
                    return Err(Error::Task(format!(
                        "restore of {topic} did not reach its end in 10 minutes"
                    )));
                }
                match restore_consumer.poll(Duration::from_millis(200)) {
                    None => {}
                    // With read_committed the end is the last stable offset: everything
                    // committed is read, nothing of an open or aborted transaction.
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        // The end, unless the committed transaction's records are not
                        // all visible yet: then more arrive, and another end after them.
                        let caught_up = match checkpoints.get(&partition) {
                            // A changelog without checkpoints (a store new in this
                            // version) has nothing to wait for.
                            None => true,
                            Some(seen) => self
                                .offsets
                                .iter()
                                .filter(|((_, p), _)| *p == partition)
                                .all(|((input, _), committed)| seen.get(input).is_some_and(|at| at >= committed)),
                        };
                        if caught_up {
                            pending.remove(&partition);
                        }
                    }
                    // A broker restarting or a slow network: keep reading until the deadline.
                    Some(Err(e)) if !matches!(e, KafkaError::MessageConsumptionFatal(_)) => {
                        tracing::warn!(error = %e, topic = %topic, "restore read failed; retrying");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Some(Err(e)) => return Err(Error::kafka(format!("cannot read {topic}"), e)),
                    Some(Ok(message)) => {
                        let is_checkpoint = message
                            .headers()
                            .is_some_and(|headers| headers.iter().any(|h| h.key == CHECKPOINT_HEADER));
                        if is_checkpoint {
                            let text = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                            checkpoints.insert(message.partition(), decode_checkpoint(&text));
                            continue;
                        }
                        let (Some(target), Some(key)) = (stores.get_mut(&message.partition()), message.key()) else {
                            continue;
                        };
                        let expires_at = message.headers().and_then(|headers| {
                            headers
                                .iter()
                                .find(|h| h.key == EXPIRES_AT_HEADER)
                                .and_then(|h| h.value)
                                .and_then(|v| <[u8; 8]>::try_from(v).ok().map(|b| Timestamp(i64::from_be_bytes(b))))
                        });
                        let value = message.payload().map(<[u8]>::to_vec);
                        if let Some((_, kv)) = target.all_mut().find(|(name, _)| name == store) {
                            kv.restore(key, value, expires_at);
                        }
                        restored += 1;
                    }
                }
            }
        }
        for (partition, stores) in stores {
            self.tasks.insert(
                partition,
                TaskState {
                    task: self.app.create_task(partition),
                    stores,
                    stream_time: Timestamp(i64::MIN),
                    last_input: Instant::now(),
                    waiting: BTreeMap::new(),
                    blocked_since: None,
                },
            );
        }
        self.metrics.restored_records.inc_by(restored);
        self.metrics.restore_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.last_restore_seconds.set(started.elapsed().as_secs_f64());
        self.update_store_gauges();
        tracing::info!(partitions = ?partitions, restored, seconds = started.elapsed().as_secs_f64(), "tasks restored");
        Ok(())
    }

    fn update_store_gauges(&self) {
        let keys: usize = self.tasks.values().map(|t| t.stores.keys()).sum();
        let bytes: usize = self.tasks.values().map(|t| t.stores.bytes()).sum();
        self.metrics.store_keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.metrics.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Takes a record from the consumer: a record of a synchronized input waits in its
    /// task for [`Core::drain_synchronized`]; any other is processed at once.
    fn accept(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) -> Result<()> {
        let record = Record {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            value: message.payload(),
            timestamp_ms: message.timestamp().to_millis(),
        };
        let event_time = std::panic::catch_unwind(AssertUnwindSafe(|| self.app.event_time(&record))).unwrap_or(None);
        // Only a record that has to wait is copied out of the consumer's buffer.
        if self.synchronized.len() > 1
            && self.synchronized.iter().any(|input| input == record.topic)
            && let Some(task) = self.tasks.get_mut(&record.partition)
        {
            task.waiting
                .entry(record.topic.to_string())
                .or_default()
                .push_back(Polled {
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset: record.offset,
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                    timestamp_ms: record.timestamp_ms,
                    event_time,
                });
            return Ok(());
        }
        self.process(&record, event_time)
    }

    /// Processes the waiting records of the synchronized inputs, earliest event time
    /// first, as far as the rule of [`Core::next_synchronized`] allows.
    fn drain_synchronized(&mut self) -> Result<()> {
        if self.synchronized.len() < 2 {
            return Ok(());
        }
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for partition in partitions {
            while let Some(next) = self.next_synchronized(partition) {
                self.process(&next.record(), next.event_time)?;
            }
        }
        Ok(())
    }

    /// The waiting record to process next in `partition`: the one with the earliest event
    /// time (on a tie, the input named first), once every synchronized input has a
    /// record waiting, or once one has had none for `max_task_idle`; after that wait the
    /// task goes on without waiting until every input has records again.
    fn next_synchronized(&mut self, partition: i32) -> Option<Polled> {
        let task = self.tasks.get_mut(&partition)?;
        let heads: Vec<Option<Timestamp>> = self
            .synchronized
            .iter()
            .map(|input| {
                let head = task.waiting.get(input).and_then(VecDeque::front)?;
                Some(head.event_time.unwrap_or(Timestamp(i64::MIN)))
            })
            .collect();
        let (earliest, some_empty) = earliest_head(&heads);
        let input = &self.synchronized[earliest?];
        if some_empty {
            let since = *task.blocked_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.max_task_idle {
                return None;
            }
        } else {
            task.blocked_since = None;
        }
        task.waiting.get_mut(input)?.pop_front()
    }

    /// Hands one record to its task and sends what it produced.
    fn process(&mut self, record: &Record<'_>, event_time: Option<Timestamp>) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&record.partition) else {
            // A record fetched for a partition this worker no longer owns: its offset is
            // not recorded, so its owner reads it again.
            tracing::debug!(
                partition = record.partition,
                "record of a partition without a task skipped"
            );
            return Ok(());
        };
        if let Some(at) = event_time {
            task.stream_time = task.stream_time.max(at);
        }
        task.last_input = Instant::now();
        let mut outputs = Vec::new();
        // A rejected record must leave no trace in the stores: remember what it changes.
        for (_, store) in task.stores.all_mut() {
            store.savepoint();
        }
        let outcome = {
            let mut ctx = TaskContext {
                partition: record.partition,
                stream_time: task.stream_time,
                stores: &mut task.stores,
                outputs: &mut outputs,
            };
            // A panicking task must not crash-loop the stage on one record: the record is
            // dead-lettered like any rejected one.
            std::panic::catch_unwind(AssertUnwindSafe(|| task.task.process(&mut ctx, record)))
                .unwrap_or_else(|panic| Err(Reject(format!("the stage panicked: {}", panic_message(&panic)))))
        };
        // An output the broker would refuse fails every retry: refuse the input instead.
        let largest = outputs
            .iter()
            .map(|o| o.value.as_ref().map_or(0, Vec::len) + o.key.as_ref().map_or(0, Vec::len))
            .max();
        let outcome = match (outcome, largest) {
            (Ok(()), Some(bytes)) if bytes > MAX_RECORD_BYTES => Err(Reject(format!(
                "an output of {bytes} bytes exceeds the {MAX_RECORD_BYTES}-byte record limit"
            ))),
            (outcome, _) => outcome,
        };
        if let Some(task) = self.tasks.get_mut(&record.partition) {
            for (_, store) in task.stores.all_mut() {
                if outcome.is_err() {
                    store.rollback();
                } else {
                    store.release();
                }
            }
        }
        if let Err(Reject(reason)) = outcome {
            // What a rejected record emitted before failing is not sent, only its dead
            // letter; its store changes were rolled back above.
            outputs.clear();
            outputs.push(self.dead_letter(record, reason));
        }
        let partition = record.partition;
        self.fire_timers(partition, &mut outputs);
        self.send_outputs(outputs)?;
        self.offsets
            .insert((record.topic.to_string(), partition), record.offset + 1);
        self.touched.insert(partition);
        self.uncommitted += 1;
        self.metrics.records.inc();
        Ok(())
    }

    fn dead_letter(&self, record: &Record<'_>, reason: String) -> Output {
        self.metrics.dead_letters.inc();
        tracing::warn!(topic = record.topic, partition = record.partition, offset = record.offset, %reason, "record dead-lettered");
        let letter = DeadLetter {
            reason,
            stage: self.app.id().to_string(),
            source_topic: record.topic.to_string(),
            source_partition: record.partition,
            source_offset: record.offset,
            // Bounded, so that a huge poison record cannot make an unsendable dead letter.
            source_key: record.key.map(|k| k[..k.len().min(DEAD_LETTER_BYTES)].to_vec()),
            source_value: record.value.map(|v| v[..v.len().min(DEAD_LETTER_BYTES)].to_vec()),
            failed_at: Timestamp::from_datetime(chrono::Utc::now()),
        };
        // A dead letter always encodes; should it not, the reason still gets through.
        let value = schemas::encode(&letter).unwrap_or_else(|e| e.to_string().into_bytes());
        Output {
            topic: self.dead_letter_topic.clone(),
            key: record.key.map(|k| k[..k.len().min(DEAD_LETTER_BYTES)].to_vec()),
            value: Some(value),
        }
    }

    /// Runs the task's timers that are due at its stream time, and expires store entries.
    fn fire_timers(&mut self, partition: i32, outputs: &mut Vec<Output>) {
        let Some(task) = self.tasks.get_mut(&partition) else {
            return;
        };
        loop {
            let due = task.stores.timers.prefix(&[]).next().and_then(|(key, _)| {
                timer_at(key)
                    .filter(|(at, _)| *at <= task.stream_time)
                    .map(|(at, tag)| (key.to_vec(), at, tag.to_vec()))
            });
            let Some((key, at, tag)) = due else { break };
            task.stores.timers.delete(&key);
            let mut ctx = TaskContext {
                partition,
                stream_time: task.stream_time,
                stores: &mut task.stores,
                outputs,
            };
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| task.task.on_timer(&mut ctx, at, &tag))) {
                tracing::error!(panic = %panic_message(&panic), "a timer panicked; it is dropped");
            }
        }
        for (_, store) in task.stores.all_mut() {
            store.expire(task.stream_time);
        }
    }

    /// Tasks whose input went quiet take the wall clock as stream time, so timers and
    /// expiry still happen without new records.
    fn advance_idle(&mut self) -> Result<()> {
        let now = Timestamp::from_datetime(chrono::Utc::now());
        let idle: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.last_input.elapsed() >= self.idle_advance && t.stream_time < now)
            .map(|(p, _)| *p)
            .collect();
        for partition in idle {
            let mut outputs = Vec::new();
            if let Some(task) = self.tasks.get_mut(&partition) {
                task.stream_time = now;
                task.last_input = Instant::now();
            }
            self.fire_timers(partition, &mut outputs);
            self.send_outputs(outputs)?;
        }
        Ok(())
    }
}

/// A consumer context that does not log end-of-partition events as errors: reaching
/// the end is what restoring and settings loading wait for.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::error!(error = %error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// Of the heads of the synchronized inputs' queues (`None`: nothing waiting), the index of
/// the earliest (the first on a tie), and whether some queue is empty.
fn earliest_head(heads: &[Option<Timestamp>]) -> (Option<usize>, bool) {
    let mut earliest: Option<(Timestamp, usize)> = None;
    for (index, head) in heads.iter().enumerate() {
        if let Some(at) = head
            && earliest.is_none_or(|(best, _)| *at < best)
        {
            earliest = Some((*at, index));
        }
    }
    (earliest.map(|(_, index)| index), heads.iter().any(Option::is_none))
}

/// The input offsets of `partition` as checkpoint text: one `topic offset` a line.
fn encode_checkpoint(offsets: &HashMap<(String, i32), i64>, partition: i32) -> String {
    let mut lines: Vec<String> = offsets
        .iter()
        .filter(|((_, p), _)| *p == partition)
        .map(|((topic, _), offset)| format!("{topic} {offset}"))
        .collect();
    lines.sort();
    lines.join("\n")
}

fn decode_checkpoint(text: &str) -> HashMap<String, i64> {
    text.lines()
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(topic, offset)| offset.parse().ok().map(|o| (topic.to_string(), o)))
        .collect()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Creates the changelog topics of `app`'s stores (compacted, one partition per input
/// partition) when they are missing, and checks them when they exist.
async fn ensure_changelogs(
    kafka: &KafkaArgs,
    app: &dyn Application,
    replication: i32,
) -> Result<BTreeMap<&'static str, String>> {
    let first_input = app
        .inputs()
        .into_iter()
        .next()
        .ok_or_else(|| Error::Config("an application needs an input".into()))?;
    let partitions = partition_count(kafka, &first_input).await?.ok_or_else(|| {
        Error::Config(format!(
            "input topic {first_input} does not exist; run `salesctl topics create`"
        ))
    })?;
    for input in app.inputs() {
        let count = partition_count(kafka, &input).await?;
        if count != Some(partitions) {
            return Err(Error::Config(format!(
                "input {input} has {count:?} partitions but {first_input} has {partitions}; co-partitioned inputs must match"
            )));
        }
    }
    let prefix = kafka.topic_names()?.prefix().to_string();
    let mut changelogs: BTreeMap<&'static str, String> = app
        .stores()
        .iter()
        .map(|s| (s.name, changelog_topic(&prefix, app.id(), s.name)))
        .collect();
    changelogs.insert(
        crate::task::TIMERS_STORE,
        changelog_topic(&prefix, app.id(), crate::task::TIMERS_STORE),
    );
    let wanted: Vec<WantedTopic> = changelogs
        .values()
        .map(|name| WantedTopic {
            name: name.clone(),
            partitions,
            cleanup: Cleanup::Compact,
        })
        .collect();
    let report = ensure(kafka, &wanted, replication).await?;
    if let Some((topic, problem)) = report.problems().next() {
        return Err(Error::Config(format!("changelog {topic} {problem}")));
    }
    Ok(changelogs)
}

/// Runs one worker of `app` until shutdown (then commits and leaves the group) or until
/// an error it cannot recover from (then the process should exit non-zero and be
/// restarted; nothing uncommitted becomes visible).
pub async fn run(
    app: Arc<dyn Application>,
    config: WorkerConfig,
    metrics: RuntimeMetrics,
    ready: ReadyCheck,
    shutdown: Shutdown,
) -> Result<()> {
    config.processing.validate()?;
    let changelogs = ensure_changelogs(&config.kafka, app.as_ref(), config.processing.changelog_replication).await?;
    let dead_letter_topic = config.kafka.topic_names()?.name(schemas::topics::Topic::DeadLetter);
    tokio::task::spawn_blocking(move || {
        run_blocking(app, config, changelogs, dead_letter_topic, metrics, ready, shutdown)
    })
    .await
    .map_err(|e| Error::Task(format!("worker thread: {e}")))?
}

fn run_blocking(
    app: Arc<dyn Application>,
    config: WorkerConfig,
    changelogs: BTreeMap<&'static str, String>,
    dead_letter_topic: String,
    metrics: RuntimeMetrics,
    ready: ReadyCheck,
    shutdown: Shutdown,
) -> Result<()> {
    let worker_id = config.processing.worker_id();
    let transactional_id = format!("{}-{}", app.id(), worker_id);
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .kafka
        .client_config(&transactional_id)
        .set("transactional.id", &transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // A worker that dies without a successor leaves its transaction open this long
        // at most, holding back read_committed readers of its outputs.
        .set("transaction.timeout.ms", "10000")
        .set("linger.ms", "5")
        // Right after a commit the broker is still writing the commit markers, and
        // answers the next transaction's first partitions with CONCURRENT_TRANSACTIONS;
        // librdkafka retries after this backoff, whose 100 ms default would add a tenth
        // of a second to every transaction.
        .set("retry.backoff.ms", "5")
        .create()
        .map_err(|e| Error::kafka("cannot create the transactional producer", e))?;
    // Fences any earlier producer with this transactional id and aborts its open
    // transaction.
    producer
        .init_transactions(CALL_TIMEOUT)
        .map_err(|e| classify(e, "cannot initialize transactions"))?;

    let core = Arc::new(Mutex::new(Core {
        app: Arc::clone(&app),
        producer,
        changelogs,
        dead_letter_topic,
        tasks: BTreeMap::new(),
        offsets: HashMap::new(),
        txn_open: false,
        uncommitted: 0,
        last_commit: Instant::now(),
        to_restore: None,
        failure: None,
        poisoned: false,
        aborts_in_a_row: 0,
        touched: BTreeSet::new(),
        metrics,
        kafka: config.kafka.clone(),
        idle_advance: config.processing.idle_advance,
        synchronized: app.synchronized_inputs(),
        max_task_idle: config.processing.max_task_idle,
    }));
    let consumer: BaseConsumer<Rebalancer> = config
        .kafka
        .client_config(&format!("{}-{}", app.id(), worker_id))
        .set("group.id", app.id())
        // Static membership: a restarted worker takes its partitions back at once, and
        // the broker fences an older incarnation with the same id.
        .set("group.instance.id", &worker_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        // Above the restore bound (10 minutes): a long restore must not cost the
        // worker its group membership.
        .set("max.poll.interval.ms", "900000")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(Rebalancer {
            core: Arc::clone(&core),
        })
        .map_err(|e| Error::kafka("cannot create the consumer", e))?;
    let inputs = app.inputs();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&inputs)
        .map_err(|e| Error::kafka("cannot subscribe", e))?;
    tracing::info!(app = app.id(), worker = %worker_id, inputs = ?inputs, "worker started");

    let commit_interval = config.processing.commit_interval;
    let max_records = config.processing.commit_max_records;
    let result = loop {
        if shutdown.is_triggered() {
            break Ok(());
        }
        // Rebalance callbacks run inside poll, so the core is not locked here.
        let message = consumer.poll(Duration::from_millis(20));
        let mut guard = lock(&core);
        let core = &mut *guard;
        if let Some(failure) = core.failure.take() {
            break Err(failure);
        }
        let step = (|| -> Result<()> {
            if let Some(partitions) = core.to_restore.take() {
                // Records of these partitions may already be buffered in the consumer;
                // rewinding to the committed offsets makes sure none is skipped. Until
                // both succeed the partitions stay pending (and the stage not ready).
                ready.set(false);
                let restored = rewind(&consumer, &partitions, core.aborts_in_a_row > 0).and_then(|offsets| {
                    core.offsets.extend(offsets);
                    core.restore(&partitions)
                });
                if let Err(e) = restored {
                    let mut pending = core.to_restore.take().unwrap_or_default();
                    pending.extend(partitions);
                    core.to_restore = Some(pending);
                    return Err(e);
                }
                ready.set(true);
                return Ok(());
            }
            match message {
                Some(Ok(message)) => core.accept(&message)?,
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(Error::Task(format!("the consumer cannot continue: {e}")));
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => {}
            }
            core.drain_synchronized()?;
            core.advance_idle()?;
            if core.uncommitted >= max_records || core.last_commit.elapsed() >= commit_interval {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| Error::Config("no consumer group metadata".into()))?;
                core.commit(&group)?;
                core.update_store_gauges();
            }
            Ok(())
        })();
        if let Err(e) = step {
            if Core::is_fatal(&e) {
                break Err(e);
            }
            tracing::warn!(error = %e, "transaction failed; aborting and rewinding to the committed offsets");
            if let Err(fatal) = core.abort() {
                break Err(fatal);
            }
            if core.aborts_in_a_row >= MAX_ABORTS_IN_A_ROW {
                break Err(Error::Task(format!(
                    "{MAX_ABORTS_IN_A_ROW} transactions in a row failed; last: {e}"
                )));
            }
        }
    };

    // Graceful end: commit what is done, then leave the group (the revocation callback
    // finds nothing left to commit).
    {
        let mut core = lock(&core);
        if result.is_ok() {
            if let Some(group) = consumer.group_metadata()
                && let Err(e) = core.commit(&group)
            {
                tracing::warn!(error = %e, "final commit failed; aborting");
                let _ = core.abort();
            }
        } else {
            // Nothing half done may be committed, not even by the revocation that
            // closing the consumer runs.
            core.poisoned = true;
            if core.txn_open {
                let _ = core.producer.abort_transaction(CALL_TIMEOUT);
                core.txn_open = false;
            }
            core.offsets.clear();
            core.tasks.clear();
        }
    }
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(app = app.id(), worker = %worker_id, "worker stopped");
    result
}

/// Positions the consumer at the committed offsets of every input partition in
/// `partitions` (or their beginning when nothing is committed), and returns the committed
/// offsets. Right after an assignment a seek may be refused because fetching has not
/// started, and librdkafka then starts from the committed offsets anyway; after an abort
/// (`strict`) every seek must succeed, or records past the aborted ones would be skipped.
fn rewind(
    consumer: &BaseConsumer<Rebalancer>,
    partitions: &BTreeSet<i32>,
    strict: bool,
) -> Result<HashMap<(String, i32), i64>> {
    let assignment = consumer
        .assignment()
        .map_err(|e| Error::kafka("cannot read the assignment", e))?;
    let mut wanted = TopicPartitionList::new();
    for element in assignment.elements() {
        if partitions.contains(&element.partition()) {
            wanted.add_partition(element.topic(), element.partition());
        }
    }
    let mut committed_offsets = HashMap::new();
    if wanted.count() == 0 {
        return Ok(committed_offsets);
    }
    let committed = consumer
        .committed_offsets(wanted, CALL_TIMEOUT)
        .map_err(|e| Error::kafka("cannot read committed offsets", e))?;
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(o) => {
                committed_offsets.insert((element.topic().to_string(), element.partition()), o);
                Offset::Offset(o)
            }
            _ => Offset::Beginning,
        };
        match consumer.seek(element.topic(), element.partition(), offset, CALL_TIMEOUT) {
            Ok(()) => {}
            Err(e) if strict => return Err(Error::kafka("cannot seek to the committed offset", e)),
            Err(_) => {}
        }
    }
    Ok(committed_offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_holds_the_offsets_of_its_partition_only() {
        let offsets = HashMap::from([
            (("t.in".to_string(), 0), 42),
            (("t.other".to_string(), 0), 7),
            (("t.in".to_string(), 1), 99),
        ]);
        let text = encode_checkpoint(&offsets, 0);
        assert_eq!(text, "t.in 42\nt.other 7");
        assert_eq!(
            decode_checkpoint(&text),
            HashMap::from([("t.in".to_string(), 42), ("t.other".to_string(), 7)])
        );
    }

    #[test]
    fn the_earliest_head_goes_first_and_a_tie_goes_to_the_input_named_first() {
        let t = Timestamp;
        assert_eq!(earliest_head(&[Some(t(5)), Some(t(3))]), (Some(1), false));
        assert_eq!(earliest_head(&[Some(t(3)), Some(t(3))]), (Some(0), false));
        assert_eq!(earliest_head(&[None, Some(t(9))]), (Some(1), true));
        assert_eq!(earliest_head(&[None, None]), (None, true));
    }

    #[test]
    fn a_garbled_checkpoint_line_is_ignored() {
        assert_eq!(
            decode_checkpoint("t.in x\nnoise\nt.b 3"),
            HashMap::from([("t.b".to_string(), 3)])
        );
    }
}
