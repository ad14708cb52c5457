//! One task with everything that is its own (its stores, its inputs' watermarks, the
//! records of its synchronized inputs waiting their turn, what it last promised
//! downstream) and the steps that run it: a record, a writer's mark, its watermark
//! moving. The worker and the broker-free [`crate::driver::TaskDriver`] share them, so a
//! test of a stage's logic runs exactly what the stage runs.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use schemas::values::Timestamp;

use super::merge::Merge;
use crate::store::key_time;
use crate::task::{Application, Clocks, Decoded, Output, Record, Reject, Stores, Task, TaskContext};
use crate::watermark::{BEGINNING, decode_marks};

/// Outputs larger than this are refused by the broker's default `message.max.bytes`;
/// the input that produced one is dead-lettered instead of failing every retry.
pub(crate) const MAX_RECORD_BYTES: usize = 900 * 1024;

pub(crate) struct TaskState {
    pub(crate) task: Box<dyn Task>,
    pub(crate) partition: i32,
    pub(crate) stores: Stores,
    pub(crate) clocks: Clocks,
    /// The clocks changed since they were last written to the `watermarks` store.
    pub(crate) clocks_dirty: bool,
    /// When each source input last had a record (or the task was created).
    pub(crate) quiet_since: HashMap<String, Instant>,
    /// The watermark last sent to each watermarked output.
    pub(crate) sent: HashMap<String, Timestamp>,
    pub(crate) merge: Merge,
    /// Every synchronized input of the task has had its first fetch.
    pub(crate) fetched: bool,
}

/// What handing a record to its task came to.
pub(crate) struct Processed {
    /// What the task sent; nothing when it rejected the record.
    pub(crate) outputs: Vec<Output>,
    /// Why the task rejected the record (its store changes are rolled back).
    pub(crate) rejected: Option<String>,
    /// The record was behind its input's watermark.
    pub(crate) late: bool,
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Decodes a record once; a panic of the application's decoder is a rejection.
pub(crate) fn decode(app: &dyn Application, record: &Record<'_>) -> Result<Decoded, Reject> {
    std::panic::catch_unwind(AssertUnwindSafe(|| app.decode(record))).unwrap_or_else(|panic| {
        Err(Reject(format!(
            "the stage panicked decoding it: {}",
            panic_message(&panic)
        )))
    })
}

impl TaskState {
    /// The task of `partition` on `stores`, its inputs' watermarks read back from them
    /// (those in `written` are written by stage tasks).
    pub(crate) fn new(app: &dyn Application, partition: i32, stores: Stores, written: &BTreeSet<String>) -> Self {
        let inputs = app.inputs();
        let clocks = super::clocks::load(&inputs, written, &stores);
        let now = Instant::now();
        let quiet_since = inputs
            .into_iter()
            .filter(|input| !written.contains(input))
            .map(|input| (input, now))
            .collect();
        TaskState {
            task: app.create_task(partition),
            partition,
            stores,
            clocks,
            clocks_dirty: false,
            quiet_since,
            sent: HashMap::new(),
            merge: Merge::default(),
            fetched: false,
        }
    }

    fn context<'a>(&'a mut self, outputs: &'a mut Vec<Output>) -> (&'a mut Box<dyn Task>, TaskContext<'a>) {
        (
            &mut self.task,
            TaskContext {
                partition: self.partition,
                clocks: &self.clocks,
                stores: &mut self.stores,
                outputs,
            },
        )
    }

    /// Hands one data record to the task, with what [`decode`] made of it. A rejected
    /// record (one that did not decode, a [`Reject`], a panic, an output the broker would
    /// refuse) leaves no trace in the stores and sends nothing.
    pub(crate) fn process(&mut self, record: &Record<'_>, decoded: Result<Decoded, Reject>) -> Processed {
        let mut late = false;
        if let Some(at) = decoded.as_ref().ok().and_then(Decoded::event_time)
            && let Some(clock) = self.clocks.clock_mut(record.topic)
        {
            late = clock.observe(at);
            self.clocks_dirty = true;
        }
        if let Some(quiet) = self.quiet_since.get_mut(record.topic) {
            *quiet = Instant::now();
        }
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(Reject(reason)) => {
                return Processed {
                    outputs: Vec::new(),
                    rejected: Some(reason),
                    late,
                };
            }
        };
        let mut outputs = Vec::new();
        // A rejected record must leave no trace in the stores: remember what it changes.
        for (_, store) in self.stores.all_mut() {
            store.savepoint();
        }
        let outcome = {
            let (task, mut ctx) = self.context(&mut outputs);
            // A panicking task must not crash-loop the stage on one record: the record is
            // dead-lettered like any rejected one.
            std::panic::catch_unwind(AssertUnwindSafe(|| task.process(&mut ctx, record, decoded)))
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
        for (_, store) in self.stores.all_mut() {
            if outcome.is_err() {
                store.rollback();
            } else {
                store.release();
            }
        }
        self.task.settle(outcome.is_ok());
        match outcome {
            Ok(()) => Processed {
                outputs,
                rejected: None,
                late,
            },
            // What a rejected record emitted before failing is not sent.
            Err(Reject(reason)) => Processed {
                outputs: Vec::new(),
                rejected: Some(reason),
                late,
            },
        }
    }

    /// Has the task write into its stores what it keeps beside them, before a commit
    /// takes their changes; returns what it sent meanwhile.
    pub(crate) fn flush(&mut self) -> Result<Vec<Output>, Reject> {
        let mut outputs = Vec::new();
        let (task, mut ctx) = self.context(&mut outputs);
        task.flush(&mut ctx)?;
        Ok(outputs)
    }

    /// A writer's mark read from `topic`: raises that input's watermark. Returns false
    /// when the mark does not decode (it is then ignored).
    pub(crate) fn apply_mark(&mut self, topic: &str, value: Option<&[u8]>) -> bool {
        let Some(marks) = value.and_then(decode_marks) else {
            return false;
        };
        if let Some(clock) = self.clocks.clock_mut(topic) {
            for mark in &marks {
                clock.apply(mark);
            }
            self.clocks_dirty = true;
        }
        true
    }

    /// After the task's inputs may have moved: tells the task of its watermarks, runs
    /// the timers due at its watermark, and expires store entries. Returns what the task
    /// sent meanwhile.
    pub(crate) fn advanced(&mut self) -> Vec<Output> {
        let mut outputs = Vec::new();
        {
            let (task, mut ctx) = self.context(&mut outputs);
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| task.on_watermark(&mut ctx))) {
                tracing::error!(panic = %panic_message(&panic), "the watermark handler panicked");
            }
        }
        let watermark = self.clocks.watermark();
        loop {
            let due = self.stores.timers.prefix(&[]).next().and_then(|(key, _)| {
                key_time(key)
                    .filter(|(at, _)| *at <= watermark)
                    .map(|(at, tag)| (key.to_vec(), at, tag.to_vec()))
            });
            let Some((key, at, tag)) = due else { break };
            self.stores.timers.delete(&key);
            let (task, mut ctx) = self.context(&mut outputs);
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| task.on_timer(&mut ctx, at, &tag))) {
                tracing::error!(panic = %panic_message(&panic), "a timer panicked; it is dropped");
            }
        }
        // What the watermark and the timers changed is kept: no record to reject.
        self.task.settle(true);
        for (_, store) in self.stores.all_mut() {
            store.expire(watermark);
        }
        outputs
    }

    /// How far the task can promise `output` is: the minimum of the watermarks of the
    /// inputs that feed it (`from`) and of what the task still holds for it.
    pub(crate) fn output_watermark(&mut self, output: &str, from: &[String]) -> Timestamp {
        let fed = from
            .iter()
            .map(|input| self.clocks.input(input))
            .min()
            .unwrap_or(BEGINNING);
        let mut discard = Vec::new();
        let held = {
            let (task, mut ctx) = self.context(&mut discard);
            std::panic::catch_unwind(AssertUnwindSafe(|| task.held_since(&mut ctx, output))).unwrap_or(Some(BEGINNING))
        };
        held.map_or(fed, |h| h.min(fed))
    }
}
