//! Restore: the stores of newly assigned partitions read back from their changelogs, up
//! to the last committed transaction.
//!
//! Every transaction writes, into each changelog partition it touches, a checkpoint: the
//! input offsets it commits. A restore reads until it has seen the checkpoint of the
//! committed offsets, so it cannot stop before the last committed transaction's records
//! become visible (the broker answers a commit before it has written the commit markers
//! to every partition).
//!
//! Every changelog partition of the assignment is read at once by one consumer (a single
//! start-up, and one fetch serves them all), each from a queue of its own, so that its
//! end is its own, and a batch at a time ([`kafka_batch`]): a per-record poll cost a
//! queue lock, a clock read and a handle per record. Reader threads, one per core, share the
//! queues out; each gathers its records per store and builds the store's maps once, from
//! the keys in order, when its partitions are read ([`crate::store::KvStore::rebuild`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kafka_batch::{Event, PartitionBatches, Record as BatchRecord};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::values::Timestamp;

use crate::config::KafkaArgs;
use crate::error::{Error, Result};
use crate::store::{KvStore, Rebuild};
use crate::task::{StoreSpec, Stores};

/// Key and header of the checkpoint records.
pub(crate) const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
pub(crate) const CHECKPOINT_HEADER: &str = "checkpoint";
/// The header names as the C API looks them up ([`CHECKPOINT_HEADER`] and
/// [`crate::store::EXPIRES_AT_HEADER`]; a test checks they agree).
const CHECKPOINT_HEADER_C: &CStr = c"checkpoint";
const EXPIRES_AT_HEADER_C: &CStr = c"expires-at";

/// How long a restore may take before the worker gives up.
const RESTORE_BOUND: Duration = Duration::from_secs(600);
/// Records read from one changelog partition before the next one's turn.
const TURN: usize = 4096;
/// Bytes fetched ahead, over all the changelog partitions of a restore, and the bounds
/// of each one's share.
const PREFETCH_BYTES: usize = 64 << 20;
const PREFETCH_MIN: usize = 1 << 20;
const PREFETCH_MAX: usize = 16 << 20;
/// Reader threads of a restore at most.
const MAX_READERS: usize = 4;

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

/// Wakes the restore when a changelog partition's queue gets something to read.
#[derive(Debug, Default)]
struct Wake {
    woken: Mutex<bool>,
    ring: Condvar,
}

impl Wake {
    fn ring(&self) {
        *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.ring.notify_one();
    }

    /// Forgets the rings so far: the queues are about to be read.
    fn reset(&self) {
        *self.woken.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// Waits for a ring since the last reset, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        let woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        let _woken = self
            .ring
            .wait_timeout_while(woken, timeout, |woken| !*woken)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// One changelog partition being read: its own queue of the restore consumer, so its
/// end-of-partition event, which names the partition but not the topic, is its own.
struct Source<'a, 's> {
    topic: &'a str,
    partition: i32,
    queue: PartitionBatches<QuietEof>,
    records: Rebuild,
    /// The input offsets of the latest checkpoint read.
    checkpoint: Option<HashMap<String, i64>>,
    /// Read up to the checkpoint of the committed offsets.
    done: bool,
    /// The store the records are for.
    target: Option<&'s mut KvStore>,
}

impl Source<'_, '_> {
    /// Reads what the queue holds, at most `TURN` records; returns how many events were
    /// read and how many of them were store records.
    fn read(&mut self, committed: &HashMap<(String, i32), i64>) -> Result<(usize, u64)> {
        let (mut events, mut restored) = (0, 0);
        let mut fatal = None;
        while events < TURN && !self.done && fatal.is_none() {
            let (records, checkpoint, done) = (&mut self.records, &mut self.checkpoint, &mut self.done);
            let (topic, partition) = (self.topic, self.partition);
            let read = self.queue.drain(TURN - events, |event| match event {
                Event::Record(record) => restored += take(records, checkpoint, &record),
                // With read_committed the end is the last stable offset: everything
                // committed is read, nothing of an open or aborted transaction.
                Event::End => {
                    // The end, unless the committed transaction's records are not all
                    // visible yet: then more arrive, and another end after them.
                    *done = match &*checkpoint {
                        // A changelog without checkpoints (a store new in this version)
                        // has nothing to wait for.
                        None => true,
                        Some(seen) => committed
                            .iter()
                            .filter(|((_, p), _)| *p == partition)
                            .all(|((input, _), offset)| seen.get(input).is_some_and(|at| at >= offset)),
                    };
                }
                Event::Error(code @ RDKafkaErrorCode::Fatal) => {
                    fatal.get_or_insert(code);
                }
                // A broker restarting or a slow network: keep reading until the deadline.
                Event::Error(code) => {
                    tracing::warn!(error = %code, topic, partition, "restore read failed; retrying");
                }
            });
            if read == 0 {
                break;
            }
            events += read;
        }
        if let Some(code) = fatal {
            return Err(Error::kafka(
                format!("cannot read {}", self.topic),
                KafkaError::MessageConsumptionFatal(code),
            ));
        }
        Ok((events, restored))
    }
}

/// Takes a changelog record: a checkpoint, or a record of the store. Returns how many
/// store records it was (0 or 1).
fn take(records: &mut Rebuild, checkpoint: &mut Option<HashMap<String, i64>>, record: &BatchRecord<'_>) -> u64 {
    let Some(key) = record.key() else {
        return 0;
    };
    // Only a checkpoint has the checkpoint key; the header tells it from a store key
    // that happens to be the same bytes.
    if key == CHECKPOINT_KEY && record.header(CHECKPOINT_HEADER_C).is_some() {
        let text = String::from_utf8_lossy(record.payload().unwrap_or_default());
        *checkpoint = Some(decode_checkpoint(&text));
        return 0;
    }
    let expires_at = record
        .header(EXPIRES_AT_HEADER_C)
        .flatten()
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map(|b| Timestamp(i64::from_be_bytes(b)));
    records.push(key.to_vec(), record.payload().map(<[u8]>::to_vec), expires_at);
    1
}

/// Reads the changelogs (store name → topic) of `partitions` into fresh stores, until
/// each partition's checkpoint of the `committed` input offsets is visible. Returns the
/// stores and how many records were read.
///
/// Every changelog partition is assigned at once, so their fetches start together and
/// share each round trip to the broker; each is read from a queue of its own.
pub(crate) fn restore(
    kafka: &KafkaArgs,
    group_id: &str,
    specs: &[StoreSpec],
    changelogs: &BTreeMap<&'static str, String>,
    partitions: &BTreeSet<i32>,
    committed: &HashMap<(String, i32), i64>,
) -> Result<(BTreeMap<i32, Stores>, u64)> {
    let mut stores: BTreeMap<i32, Stores> = partitions.iter().map(|p| (*p, Stores::new(specs))).collect();
    let sources = changelogs.len() * partitions.len();
    if sources == 0 {
        return Ok((stores, 0));
    }
    let started = Instant::now();
    let prefetch = (PREFETCH_BYTES / sources).clamp(PREFETCH_MIN, PREFETCH_MAX);
    let consumer: Arc<BaseConsumer<QuietEof>> = Arc::new(
        kafka
            .client_config(&format!("{group_id}-restore"))
            .set("group.id", format!("{group_id}-restore"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // Every changelog is read from offset 0, a concrete offset: the beginning as
            // a logical offset would have to be looked up first, and librdkafka puts
            // that lookup off by half a second when, as here, the partition's leader is
            // not known yet. Should the log not start at 0 any more (records deleted),
            // the fetch is out of range and the earliest offset is taken.
            .set("auto.offset.reset", "earliest")
            // An empty or fully read partition answers at once instead of after the
            // default half-second fetch wait.
            .set("fetch.wait.max.ms", "10")
            // Each partition's queue is bounded by bytes, not by a count of records;
            // and a queue above its bound is fetched again soon after it is read, not
            // after the default second.
            .set("queued.min.messages", "10000000")
            .set("queued.max.messages.kbytes", (prefetch / 1024).to_string())
            .set("max.partition.fetch.bytes", (prefetch / 2).to_string())
            .set("fetch.queue.backoff.ms", "2")
            .create_with_context(QuietEof)
            .map_err(|e| Error::kafka("cannot create the restore consumer", e))?,
    );
    let mut assignment = TopicPartitionList::new();
    for topic in changelogs.values() {
        for partition in partitions {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(0))
                .map_err(|e| Error::kafka("bad restore assignment", e))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka("cannot assign the changelogs", e))?;
    // The partitions are shared out among reader threads, one per core: polling a
    // queue and copying each record out is most of a restore's work.
    let readers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_READERS)
        .min(sources);
    let mut targets: HashMap<(i32, &str), &mut KvStore> = stores
        .iter_mut()
        .flat_map(|(partition, stores)| stores.all_mut().map(move |(name, kv)| ((*partition, name), kv)))
        .collect();
    let mut shares: Vec<Share<'_, '_>> = (0..readers).map(|_| Share::default()).collect();
    let mut next = 0;
    for (store, topic) in changelogs {
        for partition in partitions {
            // Split before the first poll: the partition's records and its end then
            // only ever reach its own queue.
            let mut queue = PartitionBatches::split(&consumer, topic, *partition)
                .ok_or_else(|| Error::Task(format!("no queue for {topic} [{partition}]")))?;
            let share = &mut shares[next % readers];
            next += 1;
            let wake = Arc::clone(&share.wake);
            queue.on_nonempty(move || wake.ring());
            share.sources.push(Source {
                topic,
                partition: *partition,
                queue,
                records: Rebuild::default(),
                checkpoint: None,
                done: false,
                target: targets.remove(&(*partition, *store)),
            });
        }
    }

    let deadline = started + RESTORE_BOUND;
    let stop = AtomicBool::new(false);
    let finished = Wake::default();
    let (results, failure) = std::thread::scope(|scope| {
        let mut failure = None;
        let mut readers = Vec::with_capacity(shares.len());
        for share in shares {
            let (stop, finished) = (&stop, &finished);
            let reader = std::thread::Builder::new()
                .name("restore-reader".into())
                .spawn_scoped(scope, move || {
                    let result = share.read(committed, deadline, stop);
                    finished.ring();
                    result
                });
            match reader {
                Ok(reader) => readers.push(reader),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    failure.get_or_insert(Error::Task(format!("cannot start a restore reader: {e}")));
                }
            }
        }
        // Meanwhile, what concerns the client as a whole (the broker unreachable).
        loop {
            finished.reset();
            if readers.iter().all(|r| r.is_finished()) {
                break;
            }
            while let Some(event) = consumer.poll(Duration::ZERO) {
                match event {
                    Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                        failure.get_or_insert(Error::kafka("cannot read the changelogs", e));
                        stop.store(true, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "restore read failed; retrying"),
                    // A record fetched between the assignment and the split of its
                    // partition's queue (a slow thread on a loaded machine) comes here,
                    // and its partition's reader would never see it: the restore fails
                    // and is done again, never finished without it.
                    Ok(message) => {
                        tracing::warn!(
                            topic = message.topic(),
                            partition = message.partition(),
                            "a changelog record came outside its partition queue; the restore starts again"
                        );
                        failure.get_or_insert(Error::kafka(
                            format!(
                                "a record of {} [{}] came outside its partition queue",
                                message.topic(),
                                message.partition()
                            ),
                            KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::Fail),
                        ));
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            finished.wait(Duration::from_millis(100));
        }
        let results: Vec<_> = readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(Error::Task("a restore reader panicked".into())))
            })
            .collect();
        (results, failure)
    });
    let mut restored = 0;
    let mut queues = Vec::new();
    let mut first_error = failure;
    for result in results {
        match result {
            Ok(Some((records, done))) => {
                restored += records;
                queues.extend(done);
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // Closing the consumer takes a while (librdkafka's threads wind down); the stores do
    // not wait for it.
    let closing = std::thread::Builder::new()
        .name("restore-close".into())
        .spawn(move || drop((queues, consumer)));
    if let Err(e) = closing {
        tracing::warn!(error = %e, "cannot close the restore consumer in the background");
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if stop.into_inner() {
        return Err(Error::Task("restore stopped".into()));
    }
    tracing::debug!(
        restored,
        seconds = started.elapsed().as_secs_f64(),
        readers,
        "changelogs read"
    );
    Ok((stores, restored))
}

/// The changelog partitions one reader thread reads, and what wakes it.
#[derive(Default)]
struct Share<'a, 's> {
    sources: Vec<Source<'a, 's>>,
    wake: Arc<Wake>,
}

impl Share<'_, '_> {
    /// Reads every partition of the share up to the checkpoint of the `committed`
    /// offsets, then builds their stores. Returns how many store records were read, and
    /// the partitions' queues, to be closed with the consumer; `None` when told to `stop`
    /// (another reader failed), and sets `stop` when it fails itself.
    fn read(
        mut self,
        committed: &HashMap<(String, i32), i64>,
        deadline: Instant,
        stop: &AtomicBool,
    ) -> Result<Option<(u64, Vec<PartitionBatches<QuietEof>>)>> {
        let mut restored = 0u64;
        while self.sources.iter().any(|s| !s.done) {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if Instant::now() > deadline {
                let behind: Vec<String> = self
                    .sources
                    .iter()
                    .filter(|s| !s.done)
                    .map(|s| format!("{} [{}]", s.topic, s.partition))
                    .collect();
                stop.store(true, Ordering::Relaxed);
                return Err(Error::Task(format!(
                    "restore of {} did not reach its end in 10 minutes",
                    behind.join(", ")
                )));
            }
            self.wake.reset();
            let mut events = 0;
            for source in self.sources.iter_mut().filter(|s| !s.done) {
                let (read, records) = source
                    .read(committed)
                    .inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
                events += read;
                restored += records;
            }
            if events == 0 {
                self.wake.wait(Duration::from_millis(100));
            }
        }
        let mut queues = Vec::with_capacity(self.sources.len());
        for source in self.sources {
            queues.push(source.queue);
            if let Some(kv) = source.target {
                kv.rebuild(source.records);
            }
        }
        Ok(Some((restored, queues)))
    }
}

/// The input offsets of `partition` as checkpoint text: one `topic offset` a line.
pub(crate) fn encode_checkpoint(offsets: &HashMap<(String, i32), i64>, partition: i32) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EXPIRES_AT_HEADER;

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
    fn the_headers_looked_up_are_the_ones_written() {
        assert_eq!(CHECKPOINT_HEADER_C.to_str(), Ok(CHECKPOINT_HEADER));
        assert_eq!(EXPIRES_AT_HEADER_C.to_str(), Ok(EXPIRES_AT_HEADER));
    }

    #[test]
    fn a_garbled_checkpoint_line_is_ignored() {
        assert_eq!(
            decode_checkpoint("t.in x\nnoise\nt.b 3"),
            HashMap::from([("t.b".to_string(), 3)])
        );
    }
}
