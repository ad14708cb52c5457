//! The worker's transactional producer: one open transaction at a time, holding the
//! outputs, the changelog records and the input offsets of everything processed since the
//! last commit.

use std::cell::Cell;
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode as Code;
use rdkafka::{Offset, TopicPartitionList};

use crate::admin::ReadyCheck;
use crate::error::{Error, Result};

/// How long a Kafka call of the loop may block before it is treated as failed.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long adding the offsets, committing or aborting waits at a time: a call that
/// times out is called again (it resumes where it was), and meanwhile `/readyz` says
/// what it waits for.
const CALL_STEP: Duration = Duration::from_secs(5);
/// How long a commit may go on resuming before it fails (and the transaction is aborted).
const COMMIT_BOUND: Duration = Duration::from_secs(120);

pub(crate) struct Transaction {
    producer: ThreadedProducer<DefaultProducerContext>,
    open: bool,
    /// Input records processed in the open transaction.
    pub(crate) uncommitted: u32,
    pub(crate) last_commit: Instant,
    /// Aborts since the last successful commit.
    pub(crate) aborts_in_a_row: u32,
    /// Failures since the last successful commit that waiting for the brokers does not
    /// mend; too many in a row end the worker.
    pub(crate) failures_in_a_row: u32,
    /// Where a call that has to wait for the brokers says so (the stage's `state` check).
    pub(crate) waits: Option<ReadyCheck>,
    /// Whether the open commit said it was waiting.
    waited: Cell<bool>,
}

/// Whether a failed transactional call may be fixed by aborting and rewinding, needs a
/// new producer (fenced), or leaves nothing to retry (fatal).
pub(crate) fn classify(e: KafkaError, what: &str) -> Error {
    let context = what.to_string();
    if is_fenced(&e) {
        return Error::Fenced { context, source: e };
    }
    let fatal = match &e {
        KafkaError::Transaction(t) => t.is_fatal() || !t.txn_requires_abort() && !t.is_retriable(),
        _ => false,
    };
    if fatal {
        Error::Fatal { context, source: e }
    } else {
        Error::kafka(context, e)
    }
}

/// The producer's epoch is no longer the coordinator's: librdkafka's `_FENCED`, or the
/// broker's answers that say the same.
fn is_fenced(e: &KafkaError) -> bool {
    e.rdkafka_error_code()
        .is_some_and(|code| matches!(code, Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch))
}

impl Transaction {
    /// The transactional producer `transactional_id`; fences any earlier producer with
    /// that id and aborts its open transaction.
    pub(crate) fn init(kafka: &crate::config::KafkaArgs, transactional_id: &str, known_topic: &str) -> Result<Self> {
        let producer: ThreadedProducer<DefaultProducerContext> = kafka
            .client_config(transactional_id)
            .set("transactional.id", transactional_id)
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
        crate::broker::connect_now(producer.client(), known_topic);
        // After a predecessor killed mid-transaction, the coordinator answers "concurrent
        // transactions" until it has aborted that transaction, and librdkafka would ask
        // again only after 500 ms.
        crate::broker::nudging(producer.client(), known_topic, || {
            producer.init_transactions(CALL_TIMEOUT)
        })
        .map_err(|e| classify(e, "cannot initialize transactions"))?;
        Ok(Transaction {
            producer,
            open: false,
            uncommitted: 0,
            last_commit: Instant::now(),
            aborts_in_a_row: 0,
            failures_in_a_row: 0,
            waits: None,
            waited: Cell::new(false),
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    fn begin(&mut self) -> Result<()> {
        if !self.open {
            self.producer
                .begin_transaction()
                .map_err(|e| classify(e, "cannot begin a transaction"))?;
            self.open = true;
        }
        Ok(())
    }

    /// Sends one record in the transaction (opened if needed); without a partition the
    /// partitioner places it by key.
    pub(crate) fn send(
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

    /// Adds `offsets` (every owned input partition's next offset) and commits.
    pub(crate) fn commit(&mut self, offsets: &TopicPartitionList, group: &ConsumerGroupMetadata) -> Result<()> {
        self.begin()?;
        // The offsets of every owned partition go into every transaction, even one
        // holding only timer outputs or expiries: sending them is what checks this
        // worker's group generation, so a worker that lost its partitions is fenced.
        if offsets.count() > 0 {
            let what = (
                "adding the input offsets",
                "cannot add the input offsets to the transaction",
            );
            self.patiently(what, CALL_TIMEOUT, |producer, step| {
                producer.send_offsets_to_transaction(offsets, group, step)
            })?;
        }
        self.await_delivery()?;
        // A timed-out commit may be retried: the retry resumes the same commit.
        let what = ("committing", "cannot commit the transaction");
        self.patiently(what, COMMIT_BOUND, |producer, step| producer.commit_transaction(step))?;
        if self.waited.take()
            && let Some(ready) = &self.waits
        {
            ready.set(true);
        }
        self.open = false;
        self.uncommitted = 0;
        self.aborts_in_a_row = 0;
        self.failures_in_a_row = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Runs a transactional `call` that may time out and be called again to resume,
    /// `CALL_STEP` at a time, for at most `bound`, saying on the readiness check that it
    /// waits for the brokers while it does. `what`: what it is doing, and its error.
    fn patiently(
        &self,
        (doing, failed): (&str, &str),
        bound: Duration,
        mut call: impl FnMut(&ThreadedProducer<DefaultProducerContext>, Duration) -> rdkafka::error::KafkaResult<()>,
    ) -> Result<()> {
        let (started, at) = (Instant::now(), chrono::Utc::now());
        loop {
            match call(&self.producer, CALL_STEP) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(e)) if e.is_retriable() && started.elapsed() < bound => {
                    if let Some(ready) = &self.waits {
                        ready.fail(format!(
                            "waiting for the brokers since {} ({doing}): {e}",
                            super::backoff::rfc3339(at)
                        ));
                        self.waited.set(true);
                    }
                }
                Err(e) => return Err(classify(e, failed)),
            }
        }
    }

    /// Marks the time of a commit that had nothing to commit.
    pub(crate) fn nothing_to_commit(&mut self) {
        self.last_commit = Instant::now();
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

    /// Aborts the open transaction, if any.
    /// One that times out (the coordinator is away) stays open: calling this again
    /// resumes it, which the worker does while it waits for the brokers.
    pub(crate) fn abort(&mut self) -> Result<()> {
        self.uncommitted = 0;
        if self.open {
            self.producer
                .abort_transaction(CALL_STEP)
                .map_err(|e| classify(e, "cannot abort the transaction"))?;
            self.open = false;
        }
        Ok(())
    }
}

/// The offsets as the list the transaction takes.
pub(crate) fn offset_list<'a>(
    offsets: impl IntoIterator<Item = (&'a (String, i32), &'a i64)>,
) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| Error::kafka("bad offset", e))?;
    }
    Ok(list)
}
