//! A broker-free driver for one task of an application, the role Kafka Streams'
//! `TopologyTestDriver` plays: records and watermarks go in, outputs and store contents
//! come out, through the very steps the worker runs (the worker's
//! `task_state` module), so a stage's rules (holds, releases, revisions, dedupe) are
//! unit-tested as plain functions. Transactions, offsets, restores and rebalances are
//! the worker's and are tested against a real broker.
//!
//! ```text
//! let mut driver = TaskDriver::new(app, 0);
//! driver.pipe(&orders, key, &value)?;            // processed at once, outputs kept
//! driver.advance(&chats, Timestamp(1_000_000));  // the input's watermark moves
//! let sent = driver.take_outputs_to(&attributed);
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use schemas::values::Timestamp;

use crate::store::KvStore;
use crate::task::{Application, Output, Record, Reject, Stores};
use crate::watermark::{Mark, is_mark};
use crate::worker::task_state::TaskState;

/// The application id marks sent by [`TaskDriver::advance`] come from.
pub const DRIVER_WRITER: &str = "task-driver";

/// One task of an application, run without a broker.
pub struct TaskDriver {
    app: Arc<dyn Application>,
    written: BTreeSet<String>,
    state: TaskState,
    outputs: Vec<Output>,
    /// The next offset of each input.
    offsets: HashMap<String, i64>,
}

impl std::fmt::Debug for TaskDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDriver")
            .field("app", &self.app.id())
            .field("partition", &self.state.partition)
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl TaskDriver {
    /// The task of `partition`, with empty stores and every input at the beginning of time.
    pub fn new(app: impl Application, partition: i32) -> Self {
        let app: Arc<dyn Application> = Arc::new(app);
        let written: BTreeSet<String> = app.written_inputs().into_iter().collect();
        let state = TaskState::new(app.as_ref(), partition, Stores::new(&app.stores()), &written);
        TaskDriver {
            app,
            written,
            state,
            outputs: Vec::new(),
            offsets: HashMap::new(),
        }
    }

    /// Feeds a record of input `topic`, as the worker would: its event time read by the
    /// application, the task run, then its watermark, timers and expiry. A rejected
    /// record changes nothing and sends nothing (the worker would dead-letter it).
    pub fn pipe(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), Reject> {
        self.pipe_record(topic, Some(key), Some(value), None)
    }

    /// [`TaskDriver::pipe`] with every field of the record: a missing key or value, the
    /// Kafka timestamp (milliseconds). A record keyed as a mark is applied as one.
    pub fn pipe_record(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), Reject> {
        assert!(
            self.app.inputs().iter().any(|input| input == topic),
            "{topic:?} is not an input of {}",
            self.app.id()
        );
        let offset = self.offsets.entry(topic.to_string()).or_insert(0);
        let record = Record {
            topic,
            partition: self.state.partition,
            offset: *offset,
            key,
            value,
            timestamp_ms,
        };
        *offset += 1;
        if is_mark(key) {
            assert!(self.state.apply_mark(topic, value), "a mark that does not decode");
            self.after();
            return Ok(());
        }
        let decoded = crate::worker::task_state::decode(self.app.as_ref(), &record);
        let processed = self.state.process(&record, decoded);
        self.outputs.extend(processed.outputs);
        self.after();
        match processed.rejected {
            Some(reason) => Err(Reject(reason)),
            None => Ok(()),
        }
    }

    /// Moves the watermark of input `topic` to `at` (never back): for an input written
    /// by stage tasks, as a mark of a single writer ([`DRIVER_WRITER`]); for a source, as
    /// the wall clock does while it is caught up and quiet. Then the task reacts.
    pub fn advance(&mut self, topic: &str, at: Timestamp) {
        if self.written.contains(topic) {
            let mark = Mark {
                app: DRIVER_WRITER.into(),
                task: 0,
                writers: 1,
                at,
            };
            self.mark(topic, &mark);
            return;
        }
        let clock = self
            .state
            .clocks
            .clock_mut(topic)
            .unwrap_or_else(|| panic!("{topic:?} is not an input"));
        clock.advance_to(at);
        self.state.clocks_dirty = true;
        self.after();
    }

    /// A writer's mark read from input `topic`.
    pub fn mark(&mut self, topic: &str, mark: &Mark) {
        self.pipe_record(topic, Some(&mark.key()), Some(&mark.value()), None)
            .expect("a mark is never rejected");
    }

    /// What the worker does before each commit: the task writes into its stores what it
    /// keeps beside them ([`crate::value_cache::ValueCache`]). [`TaskDriver::store`]
    /// shows such values as of the last commit.
    pub fn commit(&mut self) {
        let outputs = self.state.flush().expect("the task could not write its stores");
        self.outputs.extend(outputs);
    }

    fn after(&mut self) {
        let outputs = self.state.advanced();
        self.outputs.extend(outputs);
    }

    /// The task's watermark (the minimum over its inputs).
    pub fn watermark(&self) -> Timestamp {
        self.state.clocks.watermark()
    }

    /// The watermark of one input.
    pub fn input_watermark(&self, topic: &str) -> Timestamp {
        self.state.clocks.input(topic)
    }

    /// The watermark the task would send now to watermarked output `output`.
    pub fn output_watermark(&mut self, output: &str) -> Timestamp {
        let from = self
            .app
            .watermarked_outputs()
            .into_iter()
            .find(|(topic, _)| topic == output)
            .map(|(_, from)| from)
            .unwrap_or_else(|| panic!("{output:?} is not a watermarked output"));
        self.state.output_watermark(output, &from)
    }

    /// Everything sent since the last take, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// What was sent to `topic` since the last take; outputs to other topics stay.
    pub fn take_outputs_to(&mut self, topic: &str) -> Vec<Output> {
        let (to, rest) = std::mem::take(&mut self.outputs)
            .into_iter()
            .partition(|o| o.topic == topic);
        self.outputs = rest;
        to
    }

    /// The key-value store `name`.
    pub fn store(&self, name: &str) -> &KvStore {
        self.state
            .stores
            .kv
            .get(name)
            .unwrap_or_else(|| panic!("store {name:?} is not declared by the application"))
    }

    /// Timers set and not yet fired.
    pub fn pending_timers(&self) -> usize {
        self.state.stores.timers.len()
    }

    /// A restart from the committed state: the changes so far are taken as committed, the
    /// watermarks read back from their store, and a new task created on the stores, so
    /// nothing the task kept outside its stores survives (as after a restore).
    pub fn restart(&mut self) {
        self.commit();
        crate::worker::clocks::save(&self.state.clocks, &mut self.state.stores);
        for (_, store) in self.state.stores.all_mut() {
            store.take_changes();
        }
        let stores = std::mem::take(&mut self.state.stores);
        self.state = TaskState::new(self.app.as_ref(), self.state.partition, stores, &self.written);
    }
}
