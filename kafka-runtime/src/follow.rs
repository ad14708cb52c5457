//! Following a topic as a table: every record from the beginning, then each new one as
//! it is committed, for processes that serve what a topic holds (organization settings
//! in ingest and the reporter, the API's tables). No group membership, no commits: every
//! replica reads everything, and a restart reads it again.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::admin::ReadyCheck;
use crate::config::KafkaArgs;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::topic_admin::assign_whole_topic;
use crate::watermark::is_mark;
use crate::worker::QuietEof;

/// One record of a followed topic.
#[derive(Debug, Clone, Copy)]
pub struct Followed<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

/// What a follower tells its owner besides the records.
pub trait Follower: Send {
    /// One committed record, in the order of its partition.
    fn apply(&mut self, record: Followed<'_>);
    /// Every partition has been read to the end it had when following started (or
    /// later): the table is as complete as the topic. Called once.
    fn loaded(&mut self, partitions: usize) {
        let _ = partitions;
    }
}

/// Reads `topic` (`read_committed`) from its beginning until shutdown, handing each
/// record to `follower`; sets `ready` once every partition has been read to its end.
/// Watermark marks are skipped. A broker error is logged and retried.
pub async fn follow(
    kafka: &KafkaArgs,
    client: &str,
    topic: &str,
    ready: ReadyCheck,
    shutdown: Shutdown,
    follower: &mut dyn Follower,
) -> Result<()> {
    let consumer: StreamConsumer<QuietEof> = kafka
        .client_config(client)
        // librdkafka wants a group id; the partitions are assigned, never joined.
        .set("group.id", client)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // Read from offset 0, a concrete offset: the beginning as a logical offset would
        // be looked up first, which librdkafka puts off by half a second while the
        // partition's leader is not known yet. A log that no longer starts at 0 is out of
        // range, and the earliest offset is taken.
        .set("auto.offset.reset", "earliest")
        // A partition's end is told by a fetch that finds nothing more, which the broker
        // holds this long: with the default half second, every table's loading took
        // half a second longer than its reading. Idle, the follower asks ten times a
        // second.
        .set("fetch.wait.max.ms", "100")
        // A table restored at start is read in bulk: large fetches. The queue stays at
        // librdkafka's 64 MiB: memory freed after the restore is not given back.
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        .create_with_context(QuietEof)
        .map_err(|e| Error::kafka(format!("cannot create the consumer of {topic}"), e))?;
    let partitions = assign_whole_topic(&consumer, topic, Offset::Offset(0))?;
    let mut at_end = vec![false; partitions];
    let mut loaded = false;
    loop {
        let message = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                if is_mark(message.key()) {
                    continue;
                }
                follower.apply(Followed {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key(),
                    value: message.payload(),
                });
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                if let Some(flag) = usize::try_from(partition).ok().and_then(|p| at_end.get_mut(p)) {
                    *flag = true;
                }
                if !loaded && at_end.iter().all(|e| *e) {
                    loaded = true;
                    follower.loaded(partitions);
                    ready.set(true);
                }
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, "reading failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
