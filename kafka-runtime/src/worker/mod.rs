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
//!
//! A failure the brokers cause and mend by themselves (a leader lost, too few in-sync
//! replicas, a coordinator moving) is waited out with growing pauses, the stage not
//! ready meanwhile ([`backoff`]); only other failures count toward the give-up limit.
//! A producer the coordinator fenced or forgot is replaced; a worker whose member the
//! group no longer knows starts over in the same process (a new producer, consumer and
//! tasks, restored from the last commit), as a restarted process would.
//!
//! The worker's parts, each a file of this folder: [`core`] (the task set: records,
//! watermarks, timers, commits), [`transaction`] (the transactional producer),
//! [`restore`] (stores read back from changelogs), [`merge`] (synchronized inputs in
//! event-time order), [`clocks`] (input watermarks kept as state), [`ends`] (where the
//! consumer stands in each partition), [`namesake`] (no two live workers under one id),
//! [`backoff`] (waiting out the brokers) and [`metrics`].

mod backoff;
pub(crate) mod clocks;
mod core;
mod ends;
mod merge;
mod metrics;
mod namesake;
mod restore;
pub(crate) mod task_state;
mod transaction;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::topics::Cleanup;

use self::backoff::Backoff;
use self::core::{Core, Shape};
use self::ends::Ends;
pub use self::metrics::RuntimeMetrics;
pub use self::restore::QuietEof;
use self::transaction::{CALL_TIMEOUT, Transaction};
use crate::admin::ReadyCheck;
use crate::config::{KafkaArgs, ProcessingArgs};
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::task::Application;
use crate::topic_admin::{TopicAdmin, WantedTopic};

/// How long a worker that stopped heartbeating stays in the group.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures in a row (no commit between) after which the worker gives up and exits;
/// failures the brokers cause and mend by themselves do not count.
const MAX_ABORTS_IN_A_ROW: u32 = 10;

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub kafka: KafkaArgs,
    /// The loop's settings. The worker's id (`processing.worker_id()`) makes its
    /// transactional id `<prefix><app>-<worker_id>`, so a restarted worker fences its
    /// previous incarnation and aborts its open transaction at once instead of leaving it
    /// to time out.
    pub processing: ProcessingArgs,
}

/// The changelog topic of a store: `<prefix><app>.<store>-changelog`.
pub fn changelog_topic(prefix: &str, app: &str, store: &str) -> String {
    format!("{prefix}{app}.{store}-changelog")
}

/// The consumer group of `app` in the deployment of `kafka`: the topic prefix in front,
/// so two deployments that share a broker never share a group or a transactional id.
pub fn group_id(kafka: &KafkaArgs, app: &str) -> String {
    format!("{}{app}", kafka.topic_prefix)
}

struct Rebalancer {
    core: Arc<Mutex<Core>>,
    /// Where the consumer stands in each partition, from its statistics: the worker
    /// learns that a source partition is read to its end without asking the broker
    /// (a request would queue behind the consumer's long-polling fetch).
    ends: Arc<Ends>,
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClientContext for Rebalancer {
    fn stats_raw(&self, statistics: &[u8]) {
        ends::update(&self.ends, statistics);
    }
}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let mut core = lock(&self.core);
            if core.poisoned || std::thread::panicking() {
                // Leaving after an error: what is in memory may be half done.
                let _ = core.abort();
                core.clear();
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
            core.clear();
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

/// Checks the inputs (co-partitioned), creates the changelog topics of `app`'s stores
/// (compacted, one partition per input partition) when they are missing and checks them
/// when they exist, and reads the partition counts of the watermarked outputs.
async fn prepare(kafka: &KafkaArgs, app: Arc<dyn Application>, processing: &ProcessingArgs) -> Result<Shape> {
    let first_input = app
        .inputs()
        .into_iter()
        .next()
        .ok_or_else(|| Error::Config("an application needs an input".into()))?;
    // One admin client and one look at the cluster's topics for the whole start.
    let admin = TopicAdmin::new(kafka)?;
    let counts = admin.partition_counts().await?;
    let partition_count = |topic: &str| counts.get(topic).copied();
    let partitions = partition_count(&first_input).ok_or_else(|| {
        Error::Config(format!(
            "input topic {first_input} does not exist; run `salesctl topics create`"
        ))
    })?;
    for input in app.inputs() {
        let count = partition_count(&input);
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
    for internal in [crate::task::TIMERS_STORE, crate::task::WATERMARKS_STORE] {
        changelogs.insert(internal, changelog_topic(&prefix, app.id(), internal));
    }
    let wanted: Vec<WantedTopic> = changelogs
        .values()
        .map(|name| WantedTopic {
            name: name.clone(),
            partitions,
            cleanup: Cleanup::Compact,
        })
        .collect();
    let report = admin.ensure(&wanted, processing.changelog_replication).await?;
    if let Some((topic, problem)) = report.problems().next() {
        return Err(Error::Config(format!("changelog {topic} {problem}")));
    }
    let inputs = app.inputs();
    let written: BTreeSet<String> = app.written_inputs().into_iter().collect();
    if let Some(stray) = written.iter().find(|w| !inputs.contains(w)) {
        return Err(Error::Config(format!("written input {stray} is not an input")));
    }
    let mut marked_outputs = Vec::new();
    for (output, from) in app.watermarked_outputs() {
        if let Some(stray) = from.iter().find(|f| !inputs.contains(f)) {
            return Err(Error::Config(format!(
                "{output} is fed by {stray}, which is not an input"
            )));
        }
        let count = partition_count(&output).ok_or_else(|| {
            Error::Config(format!(
                "output topic {output} does not exist; run `salesctl topics create`"
            ))
        })?;
        marked_outputs.push((output, count, from));
    }
    Ok(Shape {
        group_id: group_id(kafka, app.id()),
        changelogs,
        dead_letter_topic: kafka.topic_names()?.name(schemas::topics::Topic::DeadLetter),
        synchronized: app.synchronized_inputs(),
        written,
        marked_outputs,
        task_count: partitions,
        max_task_idle: processing.max_task_idle,
        idle_advance: processing.idle_advance,
        allowed_lateness: processing.allowed_lateness,
        app,
    })
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
    loop {
        ready.fail("starting: reading the topics");
        let prepared = backoff::retry_async("reading the topics", &ready, &shutdown, || {
            prepare(&config.kafka, Arc::clone(&app), &config.processing)
        })
        .await?;
        let Some(shape) = prepared else {
            return Ok(());
        };
        let (config, metrics, ready, shutdown) = (config.clone(), metrics.clone(), ready.clone(), shutdown.clone());
        let ended = tokio::task::spawn_blocking(move || run_blocking(shape, config, metrics, ready, shutdown))
            .await
            .map_err(|e| Error::Task(format!("worker thread: {e}")))??;
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::StartOver => {
                tracing::warn!("the consumer group does not know this worker's member; the worker starts over");
            }
        }
    }
}

/// How a worker's loop ended without an error.
enum Ended {
    /// Shutdown was asked for.
    Stopped,
    /// The consumer group no longer knows this worker's member (replaced behind its back
    /// while the coordinator moved): the worker starts again from its last commit, with
    /// a new producer, consumer and tasks, as a restarted process would.
    StartOver,
}

fn run_blocking(
    shape: Shape,
    config: WorkerConfig,
    metrics: RuntimeMetrics,
    ready: ReadyCheck,
    shutdown: Shutdown,
) -> Result<Ended> {
    let worker_id = config.processing.worker_id();
    let app = Arc::clone(&shape.app);
    let group = shape.group_id.clone();
    let member = format!("{group}-{worker_id}");
    ready.fail("starting the transactional producer");
    let inputs = app.inputs();
    let started = backoff::retry("starting the transactional producer", &ready, &shutdown, || {
        namesake::refuse_a_live_namesake(&config.kafka, &group, &worker_id, SESSION_TIMEOUT)?;
        // Fences any earlier producer with this transactional id and aborts its open
        // transaction.
        Transaction::init(&config.kafka, &member, first_input(&inputs))
    })?;
    let Some(mut tx) = started else {
        return Ok(Ended::Stopped);
    };
    tx.waits = Some(ready.clone());
    let core = Arc::new(Mutex::new(Core::new(shape, tx, metrics, config.kafka.clone())));
    let ends: Arc<Ends> = Arc::default();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let consumer = join_group(&config.kafka, &group, &worker_id, &inputs, &core, &ends)?;
    tracing::info!(app = app.id(), group = %group, worker = %worker_id, inputs = ?inputs, "worker started");
    ready.fail("waiting for the consumer group to assign partitions");

    let commit_interval = config.processing.commit_interval;
    let max_records = config.processing.commit_max_records;
    let mut recovery = Recovery {
        kafka: &config.kafka,
        worker_id: &worker_id,
        ready: &ready,
        shutdown: &shutdown,
        backoff: Backoff::default(),
        membership_lost: 0,
        rejoin: false,
    };
    let result = loop {
        if shutdown.is_triggered() {
            break Ok(Ended::Stopped);
        }
        if recovery.rejoin {
            break Ok(Ended::StartOver);
        }
        // Rebalance callbacks run inside poll, so the core is not locked here.
        let message = consumer.poll(Duration::from_millis(20));
        let mut guard = lock(&core);
        let core = &mut *guard;
        // A failure inside a rebalance callback is recovered from as one of the loop.
        if let Some(failure) = core.failure.take() {
            match recovery.recover(core, failure) {
                Ok(()) => continue,
                Err(stop) => break stop.into_result(core),
            }
        }
        let step = (|| -> Result<()> {
            if let Some(partitions) = core.to_restore.take() {
                // Records of these partitions may already be buffered in the consumer;
                // rewinding to the committed offsets makes sure none is skipped. Until
                // both succeed the partitions stay pending (and the stage not ready).
                ready.fail(format!("restoring the stores of partitions {partitions:?}"));
                let restored = rewind(&consumer, &partitions, core.tx.aborts_in_a_row > 0).and_then(|offsets| {
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
                // The group gave this worker's static id to another member: a live
                // namesake, or this very worker's member replaced behind its back while
                // the coordinator moved (recovered from by joining again).
                Some(Err(e @ KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId))) => {
                    return Err(Error::kafka("the consumer group fenced this worker's member", e));
                }
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(Error::Fatal {
                        context: "consuming".into(),
                        source: e,
                    });
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => {}
            }
            core.drain_synchronized(&ends)?;
            core.advance_idle(&ends)?;
            if core.tx.uncommitted >= max_records || core.tx.last_commit.elapsed() >= commit_interval {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| Error::Config("no consumer group metadata".into()))?;
                core.commit(&group)?;
                core.update_gauges();
            }
            Ok(())
        })();
        match step {
            Ok(()) => {
                // A commit went through: the brokers serve again.
                if core.tx.aborts_in_a_row == 0 {
                    recovery.resumed(core);
                }
            }
            Err(e) => {
                if let Err(stop) = recovery.recover(core, e) {
                    break stop.into_result(core);
                }
            }
        }
    };

    // Graceful end: commit what is done, then leave the group (the revocation callback
    // finds nothing left to commit).
    {
        let mut core = lock(&core);
        if matches!(result, Ok(Ended::Stopped)) && !core.poisoned {
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
            let _ = core.tx.abort();
            core.clear();
        }
    }
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(app = app.id(), worker = %worker_id, "worker stopped");
    result
}

/// The worker's consumer: a member of `group` under the static id `worker_id`,
/// subscribed to `inputs`, its rebalances handled by `core`.
fn join_group(
    kafka: &KafkaArgs,
    group: &str,
    worker_id: &str,
    inputs: &[&str],
    core: &Arc<Mutex<Core>>,
    ends: &Arc<Ends>,
) -> Result<BaseConsumer<Rebalancer>> {
    let consumer: BaseConsumer<Rebalancer> = kafka
        .client_config(&namesake::client_id(group, worker_id))
        .set("group.id", group)
        // Static membership: a restarted worker takes its partitions back at once, and
        // the broker fences an older incarnation with the same id.
        .set("group.instance.id", worker_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", SESSION_TIMEOUT.as_millis().to_string())
        // Above the restore bound (10 minutes): a long restore must not cost the
        // worker its group membership.
        .set("max.poll.interval.ms", "900000")
        .set("heartbeat.interval.ms", "1000")
        // How fresh the knowledge of each partition's end is (see `Rebalancer::ends`).
        .set("statistics.interval.ms", "200")
        .create_with_context(Rebalancer {
            core: Arc::clone(core),
            ends: Arc::clone(ends),
        })
        .map_err(|e| Error::kafka("cannot create the consumer", e))?;
    consumer
        .subscribe(inputs)
        .map_err(|e| Error::kafka("cannot subscribe", e))?;
    Ok(consumer)
}

/// Failures of a transaction's offsets saying the group coordinator does not know this
/// worker's member as the consumer sees it: the member was dropped or replaced while
/// the coordinator was away (a broker outage), or the group moved on.
fn lost_membership(e: &Error) -> bool {
    use RDKafkaErrorCode::{FencedInstanceId, IllegalGeneration, UnknownMemberId};
    membership_code(e).is_some_and(|code| matches!(code, UnknownMemberId | IllegalGeneration | FencedInstanceId))
}

/// A group rebalancing right now: the transaction is aborted and the worker goes on at
/// once, its partitions following the rebalance.
fn rebalancing(e: &Error) -> bool {
    membership_code(e) == Some(RDKafkaErrorCode::RebalanceInProgress)
}

fn membership_code(e: &Error) -> Option<RDKafkaErrorCode> {
    match e {
        Error::Kafka { source, .. } => source.rdkafka_error_code(),
        _ => None,
    }
}

/// The transactional producer is fenced, or failed for good (librdkafka's fatal errors,
/// as when the coordinator ended its transaction or lost its sequence numbers while the
/// producer could not reach it): a new producer of the same transactional id goes on
/// from the last commit, as a restarted process would. The consumer's fatal errors are
/// not the producer's.
fn producer_cannot_go_on(e: &Error) -> bool {
    match e {
        Error::Fenced { .. } => true,
        Error::Fatal { source, .. } => !matches!(source, KafkaError::MessageConsumptionFatal(_)),
        _ => false,
    }
}

/// Membership failures in a row (no commit between) after which the worker starts
/// over; one is enough when the member was fenced (its consumer cannot go on). A
/// rebalance alone causes one or two, which the next transactions mend.
const REJOIN_AFTER: u32 = 5;

/// Why the loop stops.
enum Stop {
    /// A failure that waiting or a new producer cannot mend.
    Failed(Error),
    /// Shutdown was asked for while a failure was being recovered from.
    Shutdown,
}

impl Stop {
    fn into_result(self, core: &mut Core) -> Result<Ended> {
        match self {
            Stop::Failed(e) => Err(e),
            Stop::Shutdown => {
                // Whatever the failure left in memory may be half done: nothing of it is
                // committed on the way out.
                core.poisoned = true;
                Ok(Ended::Stopped)
            }
        }
    }
}

/// What the loop does with a failure: abort and rewind (a new producer if it was
/// fenced), then wait out a failure of the brokers, or count any other one toward the
/// give-up limit.
struct Recovery<'a> {
    kafka: &'a KafkaArgs,
    worker_id: &'a str,
    ready: &'a ReadyCheck,
    shutdown: &'a Shutdown,
    backoff: Backoff,
    /// Failures in a row saying the group does not know this worker's member.
    membership_lost: u32,
    /// Set when the worker has to start over (the loop ends for it).
    rejoin: bool,
}

impl Recovery<'_> {
    fn recover(&mut self, core: &mut Core, e: Error) -> Result<(), Stop> {
        if producer_cannot_go_on(&e) {
            return self.renew(core, &e);
        }
        if Core::is_fatal(&e) {
            return Err(Stop::Failed(e));
        }
        let retriable = e.is_retriable();
        tracing::warn!(error = %DisplayChain(&e), retriable, "transaction failed; aborting and rewinding to the committed offsets");
        // The abort itself needs the transaction coordinator, which may be the broker
        // that is gone: it is retried until it goes through.
        loop {
            match core.abort() {
                Ok(()) => break,
                Err(gone) if producer_cannot_go_on(&gone) => return self.renew(core, &gone),
                Err(a) if a.is_retriable() => self.wait(core, "aborting the transaction", &a)?,
                Err(fatal) => return Err(Stop::Failed(fatal)),
            }
        }
        if lost_membership(&e) {
            // Usually the consumer joins again by itself and the next transaction
            // carries the new generation; a member replaced behind its back (static
            // membership across a coordinator's failover) does not, so the worker starts
            // over, unless another live process holds this worker id.
            self.membership_lost += 1;
            let fenced = membership_code(&e) == Some(RDKafkaErrorCode::FencedInstanceId);
            if fenced || self.membership_lost >= REJOIN_AFTER {
                self.membership_lost = 0;
                let group = core.shape.group_id.clone();
                match namesake::successor(self.kafka, &group, self.worker_id) {
                    Ok(Some(place)) => {
                        return Err(Stop::Failed(Error::Config(format!(
                            "WORKER_ID {:?} is in use by a live worker on {place} ({}); this worker stops",
                            self.worker_id,
                            DisplayChain(&e)
                        ))));
                    }
                    Ok(None) => {}
                    Err(lookup) if lookup.is_retriable() => return self.wait(core, "looking up the group", &lookup),
                    Err(lookup) => return Err(Stop::Failed(lookup)),
                }
                tracing::warn!(error = %DisplayChain(&e), "the consumer group does not know this worker's member; starting over");
                self.rejoin = true;
                return Ok(());
            }
            // A rebalance moved the group on (a new generation): the consumer follows by
            // itself, and the next transaction carries the new generation, so the worker
            // goes on at once, as after any abort.
            Ok(())
        } else if rebalancing(&e) {
            Ok(())
        } else if retriable {
            core.metrics.broker_waits.inc();
            self.wait(core, "the transaction", &e)
        } else {
            core.tx.failures_in_a_row += 1;
            if core.tx.failures_in_a_row >= MAX_ABORTS_IN_A_ROW {
                return Err(Stop::Failed(Error::Task(format!(
                    "{MAX_ABORTS_IN_A_ROW} transactions in a row failed; last: {}",
                    DisplayChain(&e)
                ))));
            }
            Ok(())
        }
    }

    /// A new producer for a fenced one, waiting out brokers that cannot start it yet.
    fn renew(&mut self, core: &mut Core, cause: &Error) -> Result<(), Stop> {
        loop {
            match renew_producer(core, self.kafka, self.worker_id, cause) {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retriable() => self.wait(core, "starting a new producer", &e)?,
                Err(e) => return Err(Stop::Failed(e)),
            }
        }
    }

    fn wait(&mut self, core: &Core, what: &str, e: &Error) -> Result<(), Stop> {
        core.metrics.waiting_for_brokers.set(1);
        if self.backoff.wait(what, e, self.ready, self.shutdown) {
            Ok(())
        } else {
            Err(Stop::Shutdown)
        }
    }

    /// A commit went through after failures were waited out.
    fn resumed(&mut self, core: &Core) {
        self.membership_lost = 0;
        if let Some(waited) = self.backoff.reset() {
            core.metrics.waiting_for_brokers.set(0);
            tracing::info!(?waited, "the brokers serve again; transactions commit");
        }
    }
}

/// Replaces a fenced producer: a new one with the same transactional id (which bumps
/// the epoch again and aborts whatever is left of the old transaction), and the tasks
/// restored from the last commit. Fencing happens when the coordinator ends a transaction
/// that outlived `transaction.timeout.ms` (this process stalled); a newer incarnation of
/// this worker would also have fenced the consumer's static membership, which is fatal.
/// Counted with the aborts, so a producer fenced again and again still ends the worker.
fn renew_producer(core: &mut Core, kafka: &KafkaArgs, worker_id: &str, cause: &Error) -> Result<()> {
    let group = core.shape.group_id.clone();
    if let Some(place) = namesake::successor(kafka, &group, worker_id)? {
        return Err(Error::Config(format!(
            "fenced by a successor with WORKER_ID {worker_id:?} on {place} ({}); this worker stops",
            DisplayChain(cause)
        )));
    }
    tracing::warn!(error = %DisplayChain(cause), "the producer was fenced or failed; starting a new one and restoring from the last commit");
    if core.tx.failures_in_a_row >= MAX_ABORTS_IN_A_ROW {
        return Err(Error::Task(format!(
            "{MAX_ABORTS_IN_A_ROW} transactions in a row failed; last: {}",
            DisplayChain(cause)
        )));
    }
    let fresh = Transaction::init(
        kafka,
        &format!("{group}-{worker_id}"),
        first_input(&core.shape.app.inputs()),
    )?;
    core.replace_producer(fresh);
    Ok(())
}

/// The first input of an application (`prepare` refuses one without), a topic known to
/// exist.
fn first_input(inputs: &[String]) -> &str {
    inputs.first().map_or("", String::as_str)
}

/// An error and its sources, `: `-separated, for one log line.
struct DisplayChain<'a>(&'a Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
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
