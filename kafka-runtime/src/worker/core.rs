//! The worker's task set: hands each record to the task of its partition, keeps the
//! tasks' watermarks, fires their timers, and commits their outputs, state changes,
//! watermark marks and input offsets together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::message::{Header, OwnedHeaders};
use schemas::records::DeadLetter;
use schemas::values::Timestamp;

use super::ends::Ends;
use super::merge::Polled;
use super::metrics::RuntimeMetrics;
use super::restore::{CHECKPOINT_HEADER, CHECKPOINT_KEY, encode_checkpoint};
use super::task_state::TaskState;
use super::transaction::{Transaction, offset_list};
use crate::config::KafkaArgs;
use crate::error::{Error, Result};
use crate::store::EXPIRES_AT_HEADER;
use crate::task::{Application, Decoded, Output, Record, Reject};
use crate::watermark::{BEGINNING, Mark, batch_key, encode_marks, is_mark};

/// How often idle inputs are looked at at most (see [`Core::advance_idle`]).
const IDLE_CHECK: Duration = Duration::from_millis(20);
/// How long after the consumer got its connection to a partition's leader back that
/// partition may be idle-advanced: the writers' producers lost it too, and send what
/// they held meanwhile once they are back, librdkafka's reconnect backoff growing to 10 s.
const LEADER_SETTLE: Duration = Duration::from_secs(10);
/// How much of a poison record's key and value its dead letter keeps.
const DEAD_LETTER_BYTES: usize = 256 * 1024;

/// What the worker knows of its application's shape, fixed at start.
pub(crate) struct Shape {
    pub(crate) app: Arc<dyn Application>,
    /// The consumer group (the deployment's prefix and the application's id).
    pub(crate) group_id: String,
    /// Store name to its changelog topic (the runtime's own stores included).
    pub(crate) changelogs: BTreeMap<&'static str, String>,
    pub(crate) dead_letter_topic: String,
    /// The inputs joined by event time.
    pub(crate) synchronized: Vec<String>,
    /// Inputs whose watermark comes from their writers' marks.
    pub(crate) written: BTreeSet<String>,
    /// Watermarked outputs: topic, its partition count, and the inputs that feed it.
    pub(crate) marked_outputs: Vec<(String, i32, Vec<String>)>,
    /// How many tasks this application has (its inputs' partition count).
    pub(crate) task_count: i32,
    pub(crate) max_task_idle: Duration,
    pub(crate) idle_advance: Duration,
    pub(crate) allowed_lateness: Duration,
}

/// The part of the worker the rebalance callbacks need as well as the loop.
pub(crate) struct Core {
    pub(crate) shape: Shape,
    pub(crate) tx: Transaction,
    pub(crate) tasks: BTreeMap<i32, TaskState>,
    /// Next offset to consume per input (topic, partition), not yet committed.
    pub(crate) offsets: HashMap<(String, i32), i64>,
    /// Partitions assigned by the last rebalance whose tasks are not yet restored.
    pub(crate) to_restore: Option<BTreeSet<i32>>,
    /// An error raised inside a rebalance callback, for the loop to act on.
    pub(crate) failure: Option<Error>,
    /// Set once the worker is leaving because of an error: from then on nothing may be
    /// committed (a revocation while closing only aborts).
    pub(crate) poisoned: bool,
    /// Partitions that processed records in the open transaction.
    touched: BTreeSet<i32>,
    /// When [`Core::advance_idle`] last looked at the tasks.
    idle_checked: Instant,
    pub(crate) metrics: RuntimeMetrics,
    pub(crate) kafka: KafkaArgs,
}

impl Core {
    pub(crate) fn new(shape: Shape, tx: Transaction, metrics: RuntimeMetrics, kafka: KafkaArgs) -> Self {
        Core {
            shape,
            tx,
            tasks: BTreeMap::new(),
            offsets: HashMap::new(),
            to_restore: None,
            failure: None,
            poisoned: false,
            touched: BTreeSet::new(),
            idle_checked: Instant::now(),
            metrics,
            kafka,
        }
    }

    pub(crate) fn is_fatal(error: &Error) -> bool {
        matches!(error, Error::Task(_) | Error::Fatal { .. })
    }

    /// Forgets every task and offset (after a revocation or on the way out).
    pub(crate) fn clear(&mut self) {
        self.tasks.clear();
        self.offsets.clear();
        self.to_restore = None;
    }

    /// Sends a task's outputs in the open transaction (the partitioner places them by key).
    fn send_outputs(&mut self, outputs: Vec<Output>) -> Result<()> {
        for output in outputs {
            self.tx.send(
                &output.topic,
                None,
                output.key.as_deref(),
                output.value.as_deref(),
                None,
            )?;
        }
        Ok(())
    }

    /// Writes the stores' changes to their changelogs, the watermark marks to the
    /// watermarked outputs, adds the input offsets, and commits the transaction.
    pub(crate) fn commit(&mut self, group: &ConsumerGroupMetadata) -> Result<()> {
        let mut flushed = Vec::new();
        for (partition, task) in &mut self.tasks {
            let outputs = task.flush().map_err(|Reject(reason)| {
                Error::Task(format!(
                    "task {partition} could not write its stores before the commit: {reason}"
                ))
            })?;
            flushed.extend(outputs);
        }
        self.send_outputs(flushed)?;
        let marks = self.marks();
        let mut changes = Vec::new();
        for (partition, task) in &mut self.tasks {
            if std::mem::take(&mut task.clocks_dirty) {
                super::clocks::save(&task.clocks, &mut task.stores);
            }
            for (store, kv) in task.stores.all_mut() {
                for change in kv.take_changes() {
                    changes.push((*partition, store, change));
                }
            }
        }
        if !self.tx.is_open() && changes.is_empty() && marks.is_empty() && self.tx.uncommitted == 0 {
            self.tx.nothing_to_commit();
            return Ok(());
        }
        let started = Instant::now();
        for (partition, store, change) in changes {
            let topic = self
                .shape
                .changelogs
                .get(store)
                .ok_or_else(|| Error::Config(format!("no changelog for store {store}")))?;
            let headers = change.expires_at.map(|at| {
                OwnedHeaders::new().insert(Header {
                    key: EXPIRES_AT_HEADER,
                    value: Some(&at.micros().to_be_bytes()[..]),
                })
            });
            self.tx.send(
                topic,
                Some(partition),
                Some(&change.key),
                change.value.as_deref(),
                headers,
            )?;
        }
        let key = batch_key(self.shape.app.id());
        for (topic, partitions, batch) in &marks {
            let value = encode_marks(batch);
            for partition in 0..*partitions {
                self.tx.send(topic, Some(partition), Some(&key), Some(&value), None)?;
            }
            self.metrics.marks_sent.inc_by(u64::try_from(*partitions).unwrap_or(0));
        }
        for partition in std::mem::take(&mut self.touched) {
            let checkpoint = encode_checkpoint(&self.offsets, partition);
            for topic in self.shape.changelogs.values() {
                let header = OwnedHeaders::new().insert(Header {
                    key: CHECKPOINT_HEADER,
                    value: Some(&b"1"[..]),
                });
                self.tx.send(
                    topic,
                    Some(partition),
                    Some(CHECKPOINT_KEY),
                    Some(checkpoint.as_bytes()),
                    Some(header),
                )?;
            }
        }
        let offsets = offset_list(&self.offsets)?;
        self.tx.commit(&offsets, group)?;
        // Only now are the marks promises downstream: remember them as sent.
        for (topic, _, batch) in marks {
            for mark in batch {
                if let Some(task) = self.tasks.get_mut(&mark.task) {
                    task.sent.insert(topic.clone(), mark.at);
                }
            }
        }
        self.metrics.commits.inc();
        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The marks to send, per watermarked output (with its partition count): one for
    /// each task whose watermark for it advanced. They go to every partition of the
    /// output as one record (a worker's tasks together), not one record per task.
    fn marks(&mut self) -> Vec<(String, i32, Vec<Mark>)> {
        let app = self.shape.app.id().to_string();
        let mut marks = Vec::new();
        for (output, partitions, from) in &self.shape.marked_outputs {
            let mut batch = Vec::new();
            for (partition, task) in &mut self.tasks {
                let at = task.output_watermark(output, from);
                if at == BEGINNING || task.sent.get(output).is_some_and(|sent| *sent >= at) {
                    continue;
                }
                batch.push(Mark {
                    app: app.clone(),
                    task: *partition,
                    writers: self.shape.task_count,
                    at,
                });
            }
            if !batch.is_empty() {
                marks.push((output.clone(), *partitions, batch));
            }
        }
        marks
    }

    /// Aborts the open transaction and forgets every task: their in-memory state holds
    /// changes that are now void, so they are restored from the changelogs again.
    pub(crate) fn abort(&mut self) -> Result<()> {
        self.tx.abort()?;
        self.forget_uncommitted();
        Ok(())
    }

    /// After the producer was fenced: its transaction is gone with everything in it, so
    /// `fresh` (a new producer of the same transactional id) takes over and the tasks are
    /// restored from the last commit, as after an abort.
    pub(crate) fn replace_producer(&mut self, mut fresh: Transaction) {
        fresh.aborts_in_a_row = self.tx.aborts_in_a_row;
        fresh.failures_in_a_row = self.tx.failures_in_a_row + 1;
        fresh.waits = self.tx.waits.take();
        self.tx = fresh;
        self.forget_uncommitted();
    }

    /// Drops the tasks' uncommitted work: their partitions are restored again.
    fn forget_uncommitted(&mut self) {
        self.metrics.aborts.inc();
        self.tx.aborts_in_a_row += 1;
        self.touched.clear();
        self.offsets.clear();
        let mut partitions: BTreeSet<i32> = self.tasks.keys().copied().collect();
        partitions.extend(self.to_restore.take().unwrap_or_default());
        self.tasks.clear();
        if !partitions.is_empty() {
            self.to_restore = Some(partitions);
        }
    }

    /// Builds the tasks of `partitions`, their stores and watermarks restored from the
    /// changelogs up to the last committed transaction.
    pub(crate) fn restore(&mut self, partitions: &BTreeSet<i32>) -> Result<()> {
        let started = Instant::now();
        let specs = self.shape.app.stores();
        let (stores, restored) = super::restore::restore(
            &self.kafka,
            &self.shape.group_id,
            &specs,
            &self.shape.changelogs,
            partitions,
            &self.offsets,
        )?;
        for (partition, stores) in stores {
            let task = TaskState::new(self.shape.app.as_ref(), partition, stores, &self.shape.written);
            self.tasks.insert(partition, task);
        }
        self.metrics.restored_records.inc_by(restored);
        self.metrics.restore_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.last_restore_seconds.set(started.elapsed().as_secs_f64());
        self.update_gauges();
        tracing::info!(partitions = ?partitions, restored, seconds = started.elapsed().as_secs_f64(), "tasks restored");
        Ok(())
    }

    pub(crate) fn update_gauges(&self) {
        let keys: usize = self.tasks.values().map(|t| t.stores.keys()).sum();
        let bytes: usize = self.tasks.values().map(|t| t.stores.bytes()).sum();
        self.metrics.store_keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.metrics.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        if let Some(lowest) = self.tasks.values().map(|t| t.clocks.watermark()).min() {
            self.metrics.watermark_micros.set(lowest.micros());
        }
    }

    /// Takes a record from the consumer: a record of a synchronized input waits in its
    /// task for [`Core::drain_synchronized`]; any other is processed at once.
    pub(crate) fn accept(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) -> Result<()> {
        use rdkafka::Message;
        let record = Record {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            value: message.payload(),
            timestamp_ms: message.timestamp().to_millis(),
        };
        let mark = is_mark(record.key);
        let decoded = if mark {
            Ok(Decoded::untyped(None))
        } else {
            super::task_state::decode(self.shape.app.as_ref(), &record)
        };
        // Only a record that has to wait is copied out of the consumer's buffer.
        if self.shape.synchronized.len() > 1
            && self.shape.synchronized.iter().any(|input| input == record.topic)
            && let Some(task) = self.tasks.get_mut(&record.partition)
        {
            task.merge.push(Polled::copy(&record, decoded, mark));
            return Ok(());
        }
        self.handle(&record, decoded, mark)
    }

    /// Processes the waiting records of the synchronized inputs, earliest event time
    /// first, as far as the merge's rule allows.
    ///
    /// A task waits while any of its synchronized partitions has not been fetched yet
    /// (its end is unknown in the consumer's statistics): right after an assignment one
    /// input's first fetch may come well after the other's, and going on without it
    /// would process the other input's records before older ones of this one.
    pub(crate) fn drain_synchronized(&mut self, ends: &Ends) -> Result<()> {
        if self.shape.synchronized.len() < 2 {
            return Ok(());
        }
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for partition in partitions {
            // Once known, a task's inputs stay fetched until it is created again: the
            // statistics are looked up (a lock and a key per input) only until then.
            let known = self.tasks.get(&partition).is_some_and(|task| task.fetched);
            let fetched = known || {
                let ends = ends.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                self.shape.synchronized.iter().all(|input| {
                    ends.get(&(input.clone(), partition))
                        .is_some_and(|end| end.stable_end >= 0)
                })
            };
            if fetched && let Some(task) = self.tasks.get_mut(&partition) {
                task.fetched = true;
            }
            // Until then only records of every input at once are taken, earliest first.
            let max_task_idle = if fetched {
                self.shape.max_task_idle
            } else {
                if let Some(task) = self.tasks.get_mut(&partition) {
                    task.merge.restart_wait();
                }
                Duration::MAX
            };
            while let Some(next) = self
                .tasks
                .get_mut(&partition)
                .and_then(|task| task.merge.next(&self.shape.synchronized, max_task_idle))
            {
                let (record, decoded) = next.take();
                self.handle(&record.record(), decoded, record.mark)?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, record: &Record<'_>, decoded: Result<Decoded, Reject>, mark: bool) -> Result<()> {
        if mark {
            self.apply_mark(record)
        } else {
            self.process(record, decoded)
        }
    }

    /// A writer's mark: raises the input's watermark; the task sees only the effect.
    fn apply_mark(&mut self, record: &Record<'_>) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&record.partition) else {
            return Ok(());
        };
        if !task.apply_mark(record.topic, record.value) {
            tracing::warn!(
                topic = record.topic,
                offset = record.offset,
                "a garbled watermark mark ignored"
            );
        }
        self.advanced(record.partition)?;
        self.record_offset(record);
        Ok(())
    }

    fn record_offset(&mut self, record: &Record<'_>) {
        self.offsets
            .insert((record.topic.to_string(), record.partition), record.offset + 1);
        self.touched.insert(record.partition);
        self.tx.uncommitted += 1;
    }

    /// Hands one record to its task and sends what it produced.
    fn process(&mut self, record: &Record<'_>, decoded: Result<Decoded, Reject>) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&record.partition) else {
            // A record fetched for a partition this worker no longer owns: its offset is
            // not recorded, so its owner reads it again.
            tracing::debug!(
                partition = record.partition,
                "record of a partition without a task skipped"
            );
            return Ok(());
        };
        let processed = task.process(record, decoded);
        if processed.late {
            self.metrics.late_records.inc();
        }
        let mut outputs = processed.outputs;
        if let Some(reason) = processed.rejected {
            // A rejected record sends only its dead letter; its store changes were rolled
            // back.
            outputs.push(self.dead_letter(record, reason));
        }
        self.send_outputs(outputs)?;
        self.advanced(record.partition)?;
        self.record_offset(record);
        self.metrics.records.inc();
        Ok(())
    }

    fn dead_letter(&self, record: &Record<'_>, reason: String) -> Output {
        self.metrics.dead_letters.inc();
        tracing::warn!(topic = record.topic, partition = record.partition, offset = record.offset, %reason, "record dead-lettered");
        let letter = DeadLetter {
            reason,
            stage: self.shape.app.id().to_string(),
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
            topic: self.shape.dead_letter_topic.clone(),
            key: record.key.map(|k| k[..k.len().min(DEAD_LETTER_BYTES)].to_vec()),
            value: Some(value),
        }
    }

    /// After the task's inputs may have moved: tells the task of its watermarks, runs
    /// the timers due at its watermark, and expires store entries.
    fn advanced(&mut self, partition: i32) -> Result<()> {
        let Some(task) = self.tasks.get_mut(&partition) else {
            return Ok(());
        };
        let outputs = task.advanced();
        self.send_outputs(outputs)
    }

    /// Source inputs with nothing waiting, quiet for the idle advance and read to the
    /// end of their partition (as the consumer's latest statistics, `ends`, tell) take
    /// the wall clock minus the allowed lateness as their watermark, so timers and
    /// expiry still happen without new records. Never while records wait, nor within
    /// [`LEADER_SETTLE`] of the consumer getting its connection to the partition's
    /// leader back (the writers' records held meanwhile are still to come).
    pub(crate) fn advance_idle(&mut self, ends_of: &Ends) -> Result<()> {
        // Called on every turn of the loop, but the idle advance works in seconds: a look
        // every few tens of milliseconds is as good, and spares a clock read per input
        // and task on every record.
        if self.idle_checked.elapsed() < IDLE_CHECK {
            return Ok(());
        }
        self.idle_checked = Instant::now();
        let now = Timestamp::from_datetime(chrono::Utc::now());
        let to = Timestamp(
            now.micros()
                .saturating_sub(schemas::values::duration_micros(self.shape.allowed_lateness)),
        );
        // Called on every turn of the loop: the statistics are locked and the keys built
        // only for an input that is quiet long enough and behind the wall clock.
        let mut ends = None;
        let mut moved_partitions = Vec::new();
        for (partition, task) in &mut self.tasks {
            let mut moved = false;
            for (input, since) in &task.quiet_since {
                if since.elapsed() < self.shape.idle_advance
                    || task.merge.has_waiting(input)
                    || task.clocks.input(input) >= to
                {
                    continue;
                }
                let ends =
                    ends.get_or_insert_with(|| ends_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                let key = (input.clone(), *partition);
                let caught_up = ends.get(&key).is_some_and(|end| {
                    end.caught_up(self.offsets.get(&key).copied()) && end.leader_settled(LEADER_SETTLE)
                });
                if caught_up
                    && let Some(clock) = task.clocks.clock_mut(input)
                    && clock.advance_to(to)
                {
                    moved = true;
                }
            }
            if moved {
                task.clocks_dirty = true;
                moved_partitions.push(*partition);
            }
        }
        drop(ends);
        for partition in moved_partitions {
            self.advanced(partition)?;
            self.touched.insert(partition);
        }
        Ok(())
    }
}
