//! Watermarks: how far event time has provably advanced, per input of a task, carried
//! across every repartition.
//!
//! A watermark `W` of an input says "no record with an event time before `W` will come
//! from it any more". A task's watermark is the minimum over its inputs; rules that wait
//! for time to pass (holds, expiry, dedupe, day closing) read it, never the highest time
//! seen, so the pacing of a backlog cannot make them decide early.
//!
//! Two kinds of input:
//! - a **source** (`sales.events.raw`, `chat.sessions`: written by ingest, trusted
//!   producers or the chat platform, each partition in its own time order): the highest
//!   event time processed in the partition, raised by the wall clock minus the allowed
//!   lateness only while the consumer is caught up to the partition's end and idle (a
//!   mark found in a source, from a writer that promises "nothing earlier than T from
//!   me", raises it too; ingest writes none, since trusted producers share its
//!   partitions and a promise of ingest alone would make their records late);
//! - a topic **written by stage tasks** (a repartition, the next stage's input): every
//!   writer task sends its output watermark as a mark to every partition of the topic
//!   inside its transactions, and the reader takes the minimum over all writers; a
//!   writer that has not reported yet holds it at the beginning of time.
//!
//! A mark is a record of its own in the topic, told apart by its key (it starts with a
//! zero byte, which no key of the data contracts does), so it commits and aborts with the
//! writer's outputs and survives crashes exactly like them. A worker sends one record per
//! partition for all its tasks together: their marks, one line each.

use std::collections::BTreeMap;

use schemas::values::Timestamp;

/// The first bytes of a mark's key; the rest names the writer.
pub const MARK_KEY_PREFIX: &[u8] = b"\0watermark\0";

/// The earliest time: an input that has told nothing yet.
pub const BEGINNING: Timestamp = Timestamp(i64::MIN);

/// One writer's promise: nothing before `at` will come from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The writing application (a stage's group id, or an ingest replica).
    pub app: String,
    /// The writing task (its input partition), or a replica number.
    pub task: i32,
    /// How many writer tasks the writing application has: the reader waits for all.
    pub writers: i32,
    pub at: Timestamp,
}

impl Mark {
    /// The mark's record key: unique per writer, starting with [`MARK_KEY_PREFIX`].
    pub fn key(&self) -> Vec<u8> {
        let mut key = MARK_KEY_PREFIX.to_vec();
        key.extend_from_slice(format!("{}/{}", self.app, self.task).as_bytes());
        key
    }

    /// The mark's record value: `app task writers micros`, tab separated.
    pub fn value(&self) -> Vec<u8> {
        format!("{}\t{}\t{}\t{}", self.app, self.task, self.writers, self.at.micros()).into_bytes()
    }

    pub fn decode(value: &[u8]) -> Option<Mark> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split('\t');
        let mark = Mark {
            app: fields.next()?.to_string(),
            task: fields.next()?.parse().ok()?,
            writers: fields.next()?.parse().ok()?,
            at: Timestamp(fields.next()?.parse().ok()?),
        };
        (fields.next().is_none() && mark.writers > 0).then_some(mark)
    }
}

/// The key of the marks a worker of application `app` sends together.
pub fn batch_key(app: &str) -> Vec<u8> {
    let mut key = MARK_KEY_PREFIX.to_vec();
    key.extend_from_slice(app.as_bytes());
    key
}

/// Several writers' marks as one record value: each one's [`Mark::value`], a line each.
pub fn encode_marks(marks: &[Mark]) -> Vec<u8> {
    let lines: Vec<Vec<u8>> = marks.iter().map(Mark::value).collect();
    lines.join(&b'\n')
}

/// The marks of a record value written by [`encode_marks`] (a single mark's value
/// included); `None` when any line is not a mark.
pub fn decode_marks(value: &[u8]) -> Option<Vec<Mark>> {
    value.split(|b| *b == b'\n').map(Mark::decode).collect()
}

/// Whether a record with this key is a mark, not data.
pub fn is_mark(key: Option<&[u8]>) -> bool {
    key.is_some_and(|k| k.starts_with(MARK_KEY_PREFIX))
}

/// The watermark of one input partition of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputClock {
    /// A source: the highest event time processed (or promised by a mark, or taken from
    /// the wall clock while caught up).
    Source { at: Timestamp },
    /// Written by stage tasks: each writer's latest mark, and how many writers each
    /// writing application has.
    Written {
        writers: BTreeMap<(String, i32), Timestamp>,
        expected: BTreeMap<String, i32>,
    },
}

impl InputClock {
    pub fn source() -> Self {
        InputClock::Source { at: BEGINNING }
    }

    pub fn written() -> Self {
        InputClock::Written {
            writers: BTreeMap::new(),
            expected: BTreeMap::new(),
        }
    }

    /// The input's watermark: for a written input, the minimum over every writer of every
    /// application that has written a mark, or the beginning while one has not.
    pub fn watermark(&self) -> Timestamp {
        match self {
            InputClock::Source { at } => *at,
            InputClock::Written { writers, expected } => {
                if expected.is_empty() {
                    return BEGINNING;
                }
                // Both maps are in application order: one pass over them, no lookups (this
                // runs for every record).
                let mut min = Timestamp(i64::MAX);
                let mut writers = writers.iter().peekable();
                for (app, count) in expected {
                    while writers.next_if(|((writer, _), _)| writer < app).is_some() {}
                    let mut heard = 0;
                    while let Some(((_, task), at)) = writers.next_if(|((writer, _), _)| writer == app) {
                        if (0..*count).contains(task) {
                            heard += 1;
                            min = min.min(*at);
                        }
                    }
                    if heard < *count {
                        return BEGINNING;
                    }
                }
                min
            }
        }
    }

    /// A data record at `at` was processed. Returns whether it was late (behind the
    /// watermark); a source's watermark follows it.
    pub fn observe(&mut self, at: Timestamp) -> bool {
        let late = at < self.watermark();
        if let InputClock::Source { at: watermark } = self {
            *watermark = (*watermark).max(at);
        }
        late
    }

    /// A mark was read. Marks only ever raise a writer's watermark, so a mark replayed
    /// after a restart changes nothing.
    pub fn apply(&mut self, mark: &Mark) {
        match self {
            InputClock::Source { at } => *at = (*at).max(mark.at),
            InputClock::Written { writers, expected } => {
                expected.insert(mark.app.clone(), mark.writers);
                let entry = writers.entry((mark.app.clone(), mark.task)).or_insert(BEGINNING);
                *entry = (*entry).max(mark.at);
            }
        }
    }

    /// Raises a source's watermark to `at` (the wall clock minus the allowed lateness);
    /// a written input only moves with its writers' marks.
    pub fn advance_to(&mut self, at: Timestamp) -> bool {
        match self {
            InputClock::Source { at: watermark } if *watermark < at => {
                *watermark = at;
                true
            }
            _ => false,
        }
    }

    /// The clock as one store value, to survive restarts: a source's time, or every
    /// writer's latest mark.
    pub fn entry(&self) -> Vec<u8> {
        match self {
            InputClock::Source { at } => at.micros().to_string().into_bytes(),
            InputClock::Written { writers, expected } => {
                let marks: Vec<Mark> = writers
                    .iter()
                    .map(|((app, task), at)| Mark {
                        app: app.clone(),
                        task: *task,
                        writers: expected.get(app).copied().unwrap_or(1),
                        at: *at,
                    })
                    .collect();
                encode_marks(&marks)
            }
        }
    }

    /// Restores a value written by [`InputClock::entry`] (or, for a written input, one
    /// writer's mark, as earlier versions kept them).
    pub fn restore(&mut self, value: &[u8]) {
        match self {
            InputClock::Source { at } => {
                if let Some(micros) = std::str::from_utf8(value).ok().and_then(|t| t.parse().ok()) {
                    *at = (*at).max(Timestamp(micros));
                }
            }
            InputClock::Written { .. } => {
                for mark in decode_marks(value).unwrap_or_default() {
                    self.apply(&mark);
                }
            }
        }
    }
}

/// The watermark of `clocks` together: their minimum (the beginning when there are none).
pub fn min_of<'a>(clocks: impl IntoIterator<Item = &'a InputClock>) -> Timestamp {
    clocks.into_iter().map(InputClock::watermark).min().unwrap_or(BEGINNING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(app: &str, task: i32, writers: i32, at: i64) -> Mark {
        Mark {
            app: app.into(),
            task,
            writers,
            at: Timestamp(at),
        }
    }

    #[test]
    fn a_mark_round_trips_and_is_told_from_data_by_its_key() {
        let m = mark("sales-enricher", 4, 6, -12);
        assert_eq!(Mark::decode(&m.value()), Some(m.clone()));
        assert!(is_mark(Some(&m.key())));
        assert!(!is_mark(Some(b"org_1:cust_1")));
        assert!(!is_mark(None));
        assert_eq!(Mark::decode(b"a\t1\t0\t5"), None, "no writers");
        assert_eq!(Mark::decode(b"a\t1\t2"), None, "truncated");
    }

    #[test]
    fn a_written_input_is_the_minimum_over_every_writer() {
        let mut clock = InputClock::written();
        assert_eq!(clock.watermark(), BEGINNING);
        clock.apply(&mark("up", 0, 3, 50));
        clock.apply(&mark("up", 2, 3, 10));
        assert_eq!(
            clock.watermark(),
            BEGINNING,
            "writer 1 has not reported: it holds the rest back"
        );
        clock.apply(&mark("up", 1, 3, 30));
        assert_eq!(clock.watermark(), Timestamp(10));
        clock.apply(&mark("up", 2, 3, 70));
        assert_eq!(clock.watermark(), Timestamp(30));
        clock.apply(&mark("up", 1, 3, 20));
        assert_eq!(
            clock.watermark(),
            Timestamp(30),
            "a replayed older mark changes nothing"
        );
    }

    #[test]
    fn a_writer_beyond_the_writer_count_neither_fills_a_gap_nor_holds_back() {
        let mut clock = InputClock::written();
        clock.apply(&mark("up", 0, 2, 40));
        clock.apply(&mark("up", 5, 2, 10));
        assert_eq!(clock.watermark(), BEGINNING, "writer 1 has not reported");
        clock.apply(&mark("up", 1, 2, 60));
        assert_eq!(clock.watermark(), Timestamp(40));
    }

    #[test]
    fn two_writing_applications_each_need_all_their_writers() {
        let mut clock = InputClock::written();
        clock.apply(&mark("a", 0, 1, 40));
        assert_eq!(clock.watermark(), Timestamp(40));
        clock.apply(&mark("b", 0, 2, 90));
        assert_eq!(clock.watermark(), BEGINNING);
        clock.apply(&mark("b", 1, 2, 20));
        assert_eq!(clock.watermark(), Timestamp(20));
    }

    #[test]
    fn a_source_follows_its_records_and_counts_the_late_ones() {
        let mut clock = InputClock::source();
        assert!(!clock.observe(Timestamp(5)));
        assert!(!clock.observe(Timestamp(5)), "the same time again is not late");
        assert!(clock.observe(Timestamp(3)));
        assert_eq!(clock.watermark(), Timestamp(5));
        assert!(clock.advance_to(Timestamp(9)));
        assert!(!clock.advance_to(Timestamp(7)), "never backwards");
        assert_eq!(clock.watermark(), Timestamp(9));
    }

    #[test]
    fn a_record_behind_a_written_watermark_is_late_but_moves_nothing() {
        let mut clock = InputClock::written();
        clock.apply(&mark("up", 0, 1, 100));
        assert!(clock.observe(Timestamp(99)));
        assert!(!clock.observe(Timestamp(100)));
        assert!(!clock.advance_to(Timestamp(500)), "only marks move a written input");
        assert_eq!(clock.watermark(), Timestamp(100));
    }

    #[test]
    fn a_clock_restored_from_its_entries_is_the_same_clock() {
        let mut written = InputClock::written();
        written.apply(&mark("up", 0, 2, 7));
        written.apply(&mark("up", 1, 2, 9));
        let mut restored = InputClock::written();
        restored.restore(&written.entry());
        assert_eq!(restored, written);

        let mut source = InputClock::source();
        source.observe(Timestamp(-3));
        let mut restored = InputClock::source();
        restored.restore(&source.entry());
        assert_eq!(restored, source);

        // A clock kept one writer to an entry, as earlier versions did, restores too.
        let mut restored = InputClock::written();
        restored.restore(&mark("up", 0, 2, 7).value());
        restored.restore(&mark("up", 1, 2, 9).value());
        assert_eq!(restored, written);
    }

    #[test]
    fn a_worker_sends_its_tasks_marks_as_one_record() {
        let marks = [mark("sales-enricher", 0, 6, 10), mark("sales-enricher", 3, 6, -4)];
        let value = encode_marks(&marks);
        assert_eq!(decode_marks(&value), Some(marks.to_vec()));
        assert_eq!(decode_marks(&marks[0].value()), Some(vec![marks[0].clone()]));
        assert_eq!(decode_marks(b"a\t1\t2\t3\nnot a mark"), None);
        assert!(is_mark(Some(&batch_key("sales-enricher"))));
    }

    #[test]
    fn a_task_is_as_far_as_its_slowest_input() {
        let mut a = InputClock::source();
        a.observe(Timestamp(10));
        let mut b = InputClock::source();
        b.observe(Timestamp(4));
        assert_eq!(min_of([&a, &b]), Timestamp(4));
        assert_eq!(min_of([]), BEGINNING);
    }
}
