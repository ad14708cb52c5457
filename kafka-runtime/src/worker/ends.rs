//! Where the consumer stands in each partition, from its statistics (every 200 ms):
//! how the worker learns that a source partition is read to its end without asking the
//! broker, whose answer would queue behind the consumer's long-polling fetch.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where the consumer stands in one partition, from its latest statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionEnd {
    /// The next offset the consumer will fetch.
    pub(crate) next_fetch: i64,
    /// The offset after the last record handed to the worker (negative: none yet).
    pub(crate) delivered: i64,
    /// The partition's last stable offset: the end a `read_committed` reader reaches.
    pub(crate) stable_end: i64,
    /// Since when the consumer has been connected to the partition's leader (`None`:
    /// not connected, or the leader unknown). While it is not, the offsets above are
    /// the last ones known, and what the writers send meanwhile waits in their producers.
    pub(crate) leader_up_since: Option<Instant>,
}

impl PartitionEnd {
    /// Whether everything stable in the partition has been fetched, handed over and
    /// processed (`processed`: the next offset after the last processed record). One
    /// offset of slack on each side is a transaction's commit marker, which takes an
    /// offset but is never handed over.
    pub(crate) fn caught_up(&self, processed: Option<i64>) -> bool {
        // Before the first fetch of a partition the ends are not known (negative).
        if self.stable_end < 0 || self.next_fetch < self.stable_end {
            return false;
        }
        if self.delivered < 0 {
            // Nothing handed over since the assignment: caught up if there was nothing.
            return processed.unwrap_or(0) + 1 >= self.stable_end;
        }
        self.delivered + 1 >= self.next_fetch && processed.is_some_and(|p| p + 1 >= self.delivered)
    }

    /// Whether the consumer has been connected to the partition's leader for `settle`
    /// at least: only then does a quiet partition mean that nothing is being written.
    pub(crate) fn leader_settled(&self, settle: Duration) -> bool {
        self.leader_up_since.is_some_and(|since| since.elapsed() >= settle)
    }
}

/// How long ago a connection never lost counts as made.
const NEVER_LOST: Duration = Duration::from_secs(24 * 3600);

/// The latest [`PartitionEnd`] of every (topic, partition) the consumer reads.
pub(crate) type Ends = Mutex<HashMap<(String, i32), PartitionEnd>>;

/// Takes the three offsets the worker needs of each partition from the consumer's
/// statistics JSON; reading only them, so that a field another librdkafka version names
/// differently cannot cost the whole update.
pub(crate) fn update(ends: &Ends, statistics: &[u8]) {
    let Ok(stats) = serde_json::from_slice::<serde_json::Value>(statistics) else {
        return;
    };
    let Some(topics) = stats.get("topics").and_then(serde_json::Value::as_object) else {
        return;
    };
    // Since when each broker (by node id) has been connected, from its state's age; a
    // connection never lost counts as settled (a fresh start has nothing in flight).
    let now = Instant::now();
    let up_since: HashMap<i64, Instant> = stats
        .get("brokers")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|brokers| brokers.values())
        .filter(|broker| broker.get("state").and_then(serde_json::Value::as_str) == Some("UP"))
        .filter_map(|broker| {
            let node = broker.get("nodeid").and_then(serde_json::Value::as_i64)?;
            let age = broker.get("stateage").and_then(serde_json::Value::as_u64)?;
            let never_lost = broker.get("disconnects").and_then(serde_json::Value::as_u64) == Some(0);
            let age = if never_lost {
                NEVER_LOST
            } else {
                Duration::from_micros(age)
            };
            Some((node, now.checked_sub(age).unwrap_or(now)))
        })
        .collect();
    let mut ends = ends.lock().unwrap_or_else(PoisonError::into_inner);
    for (name, topic) in topics {
        let Some(partitions) = topic.get("partitions").and_then(serde_json::Value::as_object) else {
            continue;
        };
        for (partition, stats) in partitions {
            let offset = |field: &str| stats.get(field).and_then(serde_json::Value::as_i64);
            let (Ok(partition), Some(next_fetch), Some(delivered), Some(stable_end)) = (
                partition.parse::<i32>(),
                offset("next_offset"),
                offset("app_offset"),
                offset("ls_offset"),
            ) else {
                continue;
            };
            if partition >= 0 {
                let leader_up_since = offset("leader").and_then(|leader| up_since.get(&leader).copied());
                ends.insert(
                    (name.clone(), partition),
                    PartitionEnd {
                        next_fetch,
                        delivered,
                        stable_end,
                        leader_up_since,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(next_fetch: i64, delivered: i64, stable_end: i64) -> PartitionEnd {
        PartitionEnd {
            next_fetch,
            delivered,
            stable_end,
            leader_up_since: None,
        }
    }

    #[test]
    fn caught_up_means_fetched_handed_over_and_processed() {
        assert!(end(10, 10, 10).caught_up(Some(10)));
        assert!(!end(8, 8, 10).caught_up(Some(8)), "more to fetch");
        assert!(!end(10, 6, 10).caught_up(Some(6)), "fetched, not handed over yet");
        assert!(!end(10, 10, 10).caught_up(Some(7)), "handed over, not processed");
        assert!(end(11, 10, 11).caught_up(Some(10)), "a commit marker at the end");
        assert!(end(0, -1001, 0).caught_up(None), "an empty partition");
        assert!(!end(5, -1001, 5).caught_up(None), "records never handed over");
        assert!(end(5, -1001, 5).caught_up(Some(5)), "all processed before a restart");
        assert!(!end(-1001, -1001, -1001).caught_up(None), "not fetched yet: unknown");
    }

    #[test]
    fn the_ends_are_read_from_the_statistics_and_the_rest_is_ignored() {
        let ends = Ends::default();
        let json = br#"{"topics": {"t.in": {"partitions": {
            "0": {"next_offset": 12, "app_offset": 12, "ls_offset": 12, "other": "x"},
            "-1": {"next_offset": 0, "app_offset": 0, "ls_offset": 0},
            "1": {"next_offset": 3}
        }}}}"#;
        update(&ends, json);
        update(&ends, b"{not json");
        let ends = ends.lock().unwrap();
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[&("t.in".to_string(), 0)], end(12, 12, 12));
    }

    #[test]
    fn a_partition_settles_only_once_its_leader_has_been_connected_long_enough() {
        let ends = Ends::default();
        let json = br#"{"brokers": {
            "b:9092/1": {"nodeid": 1, "state": "UP", "stateage": 30000000, "disconnects": 1},
            "b:9093/2": {"nodeid": 2, "state": "UP", "stateage": 1000000, "disconnects": 2},
            "b:9094/3": {"nodeid": 3, "state": "TRY_CONNECT", "stateage": 60000000, "disconnects": 1},
            "b:9095/4": {"nodeid": 4, "state": "UP", "stateage": 1000000, "disconnects": 0}
        }, "topics": {"t.in": {"partitions": {
            "0": {"next_offset": 1, "app_offset": 1, "ls_offset": 1, "leader": 1},
            "1": {"next_offset": 1, "app_offset": 1, "ls_offset": 1, "leader": 2},
            "2": {"next_offset": 1, "app_offset": 1, "ls_offset": 1, "leader": 3},
            "3": {"next_offset": 1, "app_offset": 1, "ls_offset": 1, "leader": -1},
            "4": {"next_offset": 1, "app_offset": 1, "ls_offset": 1, "leader": 4}
        }}}}"#;
        update(&ends, json);
        let ends = ends.lock().unwrap();
        let settled = |p: i32| ends[&("t.in".to_string(), p)].leader_settled(Duration::from_secs(10));
        assert!(settled(0), "reconnected 30 s ago");
        assert!(!settled(1), "reconnected a second ago");
        assert!(settled(4), "connected a second ago, never lost: a fresh start");
        assert!(!settled(2), "not connected");
        assert!(!settled(3), "no leader known");
    }
}
