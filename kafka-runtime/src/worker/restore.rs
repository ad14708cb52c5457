//! Restore: the stores of newly assigned partitions read back from their changelogs, up
//! to the last committed transaction.
//!
//! Every transaction writes, into each changelog partition it touches, a checkpoint: the
//! input offsets it commits. A restore reads until it has seen the checkpoint of the
//! committed offsets, so it cannot stop before the last committed transaction's records
//! become visible (the broker answers a commit before it has written the commit markers
//! to every partition).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::values::Timestamp;

use crate::config::KafkaArgs;
use crate::error::{Error, Result};
use crate::store::EXPIRES_AT_HEADER;
use crate::task::{StoreSpec, Stores};

/// Key and header of the checkpoint records.
pub(crate) const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
pub(crate) const CHECKPOINT_HEADER: &str = "checkpoint";

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

/// Reads the changelogs (store name → topic) of `partitions` into fresh stores, until
/// each partition's checkpoint of the `committed` input offsets is visible. Returns the
/// stores and how many records were read.
pub(crate) fn restore(
    kafka: &KafkaArgs,
    group_id: &str,
    specs: &[StoreSpec],
    changelogs: &BTreeMap<&'static str, String>,
    partitions: &BTreeSet<i32>,
    committed: &HashMap<(String, i32), i64>,
) -> Result<(BTreeMap<i32, Stores>, u64)> {
    let mut stores: BTreeMap<i32, Stores> = partitions.iter().map(|p| (*p, Stores::new(specs))).collect();
    let restore_consumer: BaseConsumer<QuietEof> = kafka
        .client_config(&format!("{group_id}-restore"))
        .set("group.id", format!("{group_id}-restore"))
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
    for (store, topic) in changelogs {
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
                        Some(seen) => committed
                            .iter()
                            .filter(|((_, p), _)| *p == partition)
                            .all(|((input, _), offset)| seen.get(input).is_some_and(|at| at >= offset)),
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
    Ok((stores, restored))
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
    fn a_garbled_checkpoint_line_is_ignored() {
        assert_eq!(
            decode_checkpoint("t.in x\nnoise\nt.b 3"),
            HashMap::from([("t.b".to_string(), 3)])
        );
    }
}
