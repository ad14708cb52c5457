//! The merge of synchronized inputs: records of inputs joined by event time wait in
//! their task, one queue per input, and are handed on earliest first.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use schemas::values::Timestamp;

use crate::task::{Decoded, Record, Reject};

/// A record taken from the consumer, with its event time.
pub(crate) struct Polled {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp_ms: Option<i64>,
    /// What the application decoded, with the event time (nothing for a mark).
    pub(crate) decoded: Result<Decoded, Reject>,
    /// A watermark mark, not data: applied as soon as it reaches the head of its queue,
    /// so it never counts before the records written ahead of it.
    pub(crate) mark: bool,
}

impl Polled {
    pub(crate) fn copy(record: &Record<'_>, decoded: Result<Decoded, Reject>, mark: bool) -> Self {
        Polled {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            timestamp_ms: record.timestamp_ms,
            decoded,
            mark,
        }
    }

    /// The decoded value, taken out; the record stays to be read.
    pub(crate) fn take(mut self) -> (Self, Result<Decoded, Reject>) {
        let decoded = std::mem::replace(&mut self.decoded, Ok(Decoded::untyped(None)));
        (self, decoded)
    }

    /// The record's event time, as its application decoded it (none for a mark or a
    /// record that did not decode).
    pub(crate) fn event_time(&self) -> Option<Timestamp> {
        self.decoded.as_ref().ok().and_then(Decoded::event_time)
    }

    pub(crate) fn record(&self) -> Record<'_> {
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

/// The waiting records of one task's synchronized inputs.
#[derive(Default)]
pub(crate) struct Merge {
    /// Per input, in offset order. Never committed: offsets only move when a record is
    /// processed.
    waiting: BTreeMap<String, VecDeque<Polled>>,
    /// Since when a synchronized input has had no record while another had some.
    blocked_since: Option<Instant>,
}

impl Merge {
    pub(crate) fn push(&mut self, polled: Polled) {
        self.waiting.entry(polled.topic.clone()).or_default().push_back(polled);
    }

    /// Starts the wait for a quiet input afresh: an input whose partition has not been
    /// fetched yet is not quiet, only unknown, however long that first fetch takes.
    pub(crate) fn restart_wait(&mut self) {
        self.blocked_since = None;
    }

    /// Whether records of `input` are waiting.
    pub(crate) fn has_waiting(&self, input: &str) -> bool {
        self.waiting.get(input).is_some_and(|q| !q.is_empty())
    }

    /// The next entry to hand on: a mark at the head of a queue at once; else the record
    /// with the earliest event time (on a tie, the input named first in `inputs`), once
    /// every input has a record waiting, or once one has had none for `max_task_idle`;
    /// after that wait the task goes on without waiting until every input has records
    /// again. A quiet input's watermark does not shorten the wait: when it follows the
    /// wall clock, a record of the other input that is older than the allowed lateness
    /// would otherwise overtake an older record of this one still on its way.
    pub(crate) fn next(&mut self, inputs: &[String], max_task_idle: Duration) -> Option<Polled> {
        for input in inputs {
            if let Some(queue) = self.waiting.get_mut(input)
                && queue.front().is_some_and(|p| p.mark)
            {
                return queue.pop_front();
            }
        }
        let heads: Vec<Option<Timestamp>> = inputs
            .iter()
            .map(|input| {
                let head = self.waiting.get(input).and_then(VecDeque::front)?;
                Some(head.event_time().unwrap_or(Timestamp(i64::MIN)))
            })
            .collect();
        let (earliest, some_empty) = earliest_head(&heads);
        let earliest = earliest?;
        if some_empty {
            let since = *self.blocked_since.get_or_insert_with(Instant::now);
            if since.elapsed() < max_task_idle {
                return None;
            }
        } else {
            self.blocked_since = None;
        }
        self.waiting.get_mut(&inputs[earliest])?.pop_front()
    }
}

/// Of the heads of the synchronized inputs' queues (`None`: nothing waiting), the index of
/// the earliest (the first on a tie), and whether some queue is empty.
pub(crate) fn earliest_head(heads: &[Option<Timestamp>]) -> (Option<usize>, bool) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_head_goes_first_and_a_tie_goes_to_the_input_named_first() {
        let t = Timestamp;
        assert_eq!(earliest_head(&[Some(t(5)), Some(t(3))]), (Some(1), false));
        assert_eq!(earliest_head(&[Some(t(3)), Some(t(3))]), (Some(0), false));
        assert_eq!(earliest_head(&[None, Some(t(9))]), (Some(1), true));
        assert_eq!(earliest_head(&[None, None]), (None, true));
    }

    fn polled(topic: &str, offset: i64, at: i64, mark: bool) -> Polled {
        Polled {
            topic: topic.into(),
            partition: 0,
            offset,
            key: None,
            value: None,
            timestamp_ms: None,
            decoded: Ok(Decoded::untyped(Some(Timestamp(at)))),
            mark,
        }
    }

    #[test]
    fn a_quiet_input_is_waited_for_then_the_other_goes_on() {
        let inputs = ["a".to_string(), "b".to_string()];
        let mut merge = Merge::default();
        merge.push(polled("b", 0, 10, false));
        assert!(
            merge.next(&inputs, Duration::from_secs(3600)).is_none(),
            "a may still send 5..10"
        );
        assert_eq!(merge.next(&inputs, Duration::ZERO).map(|p| p.offset), Some(0));
    }

    #[test]
    fn a_mark_goes_first_and_records_go_in_time_order() {
        let inputs = ["a".to_string(), "b".to_string()];
        let mut merge = Merge::default();
        merge.push(polled("a", 0, 7, false));
        merge.push(polled("b", 0, 3, false));
        merge.push(polled("b", 1, 0, true));
        let order: Vec<(String, i64)> = std::iter::from_fn(|| merge.next(&inputs, Duration::ZERO))
            .map(|p| (p.topic, p.offset))
            .collect();
        assert_eq!(order, [("b".into(), 0), ("b".into(), 1), ("a".into(), 0)]);
    }
}
