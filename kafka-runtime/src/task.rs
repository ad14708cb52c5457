//! What a stage plugs into the exactly-once runtime: an [`Application`] names its input
//! topics and stores and creates one [`Task`] per input partition; a task turns records
//! into outputs and state changes through its [`TaskContext`].
//!
//! A task sees the partition `p` of every input topic (they are co-partitioned), owns the
//! stores of that partition, and never deals with transactions, offsets or rebalances.

use std::any::Any;
use std::collections::BTreeMap;
use std::time::Duration;

use schemas::values::Timestamp;

use crate::store::{KvStore, WindowStore, time_key};
use crate::watermark::{BEGINNING, InputClock};

/// One input record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The full topic name.
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The Kafka record timestamp, in milliseconds.
    pub timestamp_ms: Option<i64>,
}

impl Record<'_> {
    /// The record's value decoded as an `R`: a record without a value, or whose value is
    /// not an `R`, is rejected.
    pub fn decode<R: schemas::Record>(&self) -> Result<R, Reject> {
        let value = self.value.ok_or_else(|| Reject("a record without a value".into()))?;
        let name = R::NAME.rsplit('.').next().unwrap_or(R::NAME);
        schemas::decode::<R>(value).map_err(|e| Reject(format!("not a valid {name} record: {e}")))
    }

    /// The Kafka record timestamp as an event time.
    pub fn kafka_time(&self) -> Option<Timestamp> {
        self.timestamp_ms.map(|ms| Timestamp(ms.saturating_mul(1000)))
    }

    /// Checks that the record's key is `expected`, the key its value implies: a record
    /// keyed otherwise sits in a partition where the state it needs is not.
    pub fn expect_key(&self, expected: &str) -> Result<(), Reject> {
        match self.key {
            Some(key) if key == expected.as_bytes() => Ok(()),
            Some(key) => Err(Reject(format!(
                "key {:?} does not match {expected:?}, the key its value implies",
                String::from_utf8_lossy(key)
            ))),
            None => Err(Reject(format!("no key; expected {expected:?}"))),
        }
    }
}

/// A record's value as its application decoded it, once, before its task sees it
/// ([`Application::decode`]): the runtime reads the event time from it (to order the
/// synchronized inputs and move the watermark) and the task takes the value, so no record
/// is decoded twice.
pub struct Decoded {
    value: Option<Box<dyn Any + Send>>,
    event_time: Option<Timestamp>,
}

impl Decoded {
    /// Nothing decoded, only the event time: the task reads the record's bytes itself.
    pub fn untyped(event_time: Option<Timestamp>) -> Self {
        Decoded {
            value: None,
            event_time,
        }
    }

    /// A decoded value and the event time read from it.
    pub fn new<T: Any + Send>(value: T, event_time: Option<Timestamp>) -> Self {
        Decoded {
            value: Some(Box::new(value)),
            event_time,
        }
    }

    pub fn event_time(&self) -> Option<Timestamp> {
        self.event_time
    }

    /// The decoded value, when there is one and it is a `T`.
    pub fn take<T: Any>(self) -> Option<T> {
        self.value?.downcast::<T>().ok().map(|value| *value)
    }
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("value", &self.value.as_ref().map(|_| ".."))
            .field("event_time", &self.event_time)
            .finish()
    }
}

/// Encodes a record of the data contracts for a store or an output; should it fail,
/// the input that led to it is rejected.
pub fn encode<R: schemas::Record>(record: &R) -> Result<Vec<u8>, Reject> {
    schemas::encode(record).map_err(|e| Reject(format!("cannot encode a {}: {e}", std::any::type_name::<R>())))
}

/// Why a record cannot be processed: it goes to the dead-letter topic with this reason
/// and the stage moves past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject(pub String);

// Only the errors that mean "this record is bad" become a rejection with `?`: a value
// that does not decode, a field that fails validation, a key that is not text. Any other
// failure must be handled where it happens, not dead-lettered by accident.
impl From<schemas::CodecError> for Reject {
    fn from(e: schemas::CodecError) -> Self {
        Reject(e.to_string())
    }
}

impl From<schemas::validation::FieldError> for Reject {
    fn from(e: schemas::validation::FieldError) -> Self {
        Reject(e.to_string())
    }
}

impl From<std::str::Utf8Error> for Reject {
    fn from(e: std::str::Utf8Error) -> Self {
        Reject(format!("not UTF-8: {e}"))
    }
}

/// The kind of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    KeyValue,
    /// Windows kept for this long after they start.
    Window {
        retention: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: &'static str,
    pub kind: StoreKind,
}

impl StoreSpec {
    /// Key-value stores with these names.
    pub fn key_value(names: &[&'static str]) -> Vec<StoreSpec> {
        names
            .iter()
            .map(|name| StoreSpec {
                name,
                kind: StoreKind::KeyValue,
            })
            .collect()
    }
}

/// A stage's processing logic.
pub trait Application: Send + Sync + 'static {
    /// The application id: consumer group, transactional id prefix and changelog names
    /// (`<prefix><id>.<store>-changelog`).
    fn id(&self) -> &str;

    /// Full names of the co-partitioned input topics.
    fn inputs(&self) -> Vec<String>;

    /// Inputs joined by event time: while a task has records of more than one of them,
    /// it processes the earliest first (after waiting up to `max_task_idle` for an input
    /// that has none yet), so a backlog on both sides is joined as it happened, whichever
    /// topic the consumer delivers first. Other inputs are processed as they arrive.
    fn synchronized_inputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Inputs written by stage tasks (a repartition topic, an earlier stage's output):
    /// their watermark is the minimum over the marks of every writer task. Every other
    /// input is a source, whose watermark follows its own records.
    fn written_inputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Outputs that another stage (or this one) reads as a written input, each with the
    /// inputs whose records lead to its records: the task sends every partition of such
    /// an output the minimum of those inputs' watermarks (and of what it still holds, see
    /// [`Task::held_since`]) inside its transactions.
    fn watermarked_outputs(&self) -> Vec<(String, Vec<String>)> {
        Vec::new()
    }

    /// The task's stores.
    fn stores(&self) -> Vec<StoreSpec> {
        Vec::new()
    }

    /// The logic of one input partition.
    fn create_task(&self, partition: i32) -> Box<dyn Task>;

    /// Decodes a record once, as it is taken from the consumer: its value for the task
    /// and its event time (see [`Decoded`]). An error means the record cannot be
    /// processed: it is dead-lettered with that reason, and its task never sees it. By
    /// default nothing is decoded and the event time is the Kafka record timestamp.
    fn decode(&self, record: &Record<'_>) -> Result<Decoded, Reject> {
        Ok(Decoded::untyped(record.kafka_time()))
    }
}

pub trait Task: Send {
    /// Handles one record, with what [`Application::decode`] made of it.
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>, decoded: Decoded) -> Result<(), Reject>;

    /// A timer set with [`TaskContext::schedule`] is due: the task's watermark has
    /// reached `at`.
    fn on_timer(&mut self, _ctx: &mut TaskContext<'_>, _at: Timestamp, _tag: &[u8]) {}

    /// The watermark of an input advanced: decide what was waiting for it.
    fn on_watermark(&mut self, _ctx: &mut TaskContext<'_>) {}

    /// The earliest event time of a record the task still holds and may yet send to
    /// `output` (a watermarked output): the output's watermark stays behind it.
    fn held_since(&mut self, _ctx: &mut TaskContext<'_>, _output: &str) -> Option<Timestamp> {
        None
    }

    /// The record last handed to [`Task::process`] was kept (`true`), or rejected
    /// (`false`) and its changes to the stores undone: settle what the task keeps beside
    /// its stores the same way (a [`crate::value_cache::ValueCache`]).
    fn settle(&mut self, _kept: bool) {}

    /// A commit is about to take the stores' changes: write into the stores what the
    /// task keeps beside them (a [`crate::value_cache::ValueCache`]'s values). A failure
    /// fails the commit, and the task starts again from the last one.
    fn flush(&mut self, _ctx: &mut TaskContext<'_>) -> Result<(), Reject> {
        Ok(())
    }
}

/// An output record, sent in the open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The stores of one task, by name.
#[derive(Debug, Default)]
pub struct Stores {
    pub(crate) kv: BTreeMap<&'static str, KvStore>,
    pub(crate) windows: BTreeMap<&'static str, WindowStore>,
    /// Timers: key [`time_key`]`(at, tag)`, empty value.
    pub(crate) timers: KvStore,
    /// The inputs' watermarks: key `input topic ++ \0 ++ clock entry`.
    pub(crate) watermarks: KvStore,
}

impl Stores {
    pub(crate) fn new(specs: &[StoreSpec]) -> Self {
        let mut stores = Stores::default();
        for spec in specs {
            match spec.kind {
                StoreKind::KeyValue => {
                    stores.kv.insert(spec.name, KvStore::default());
                }
                StoreKind::Window { retention } => {
                    stores.windows.insert(spec.name, WindowStore::new(retention));
                }
            }
        }
        stores
    }

    /// Every store as a plain key-value store, with its name (`timers` for the timers).
    pub(crate) fn all_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut KvStore)> {
        self.kv
            .iter_mut()
            .map(|(name, store)| (*name, store))
            .chain(self.windows.iter_mut().map(|(name, w)| (*name, w.store())))
            .chain(std::iter::once((TIMERS_STORE, &mut self.timers)))
            .chain(std::iter::once((WATERMARKS_STORE, &mut self.watermarks)))
    }

    pub(crate) fn bytes(&self) -> usize {
        self.kv.values().map(KvStore::bytes).sum::<usize>()
            + self.windows.values().map(|w| w.bytes()).sum::<usize>()
            + self.timers.bytes()
            + self.watermarks.bytes()
    }

    pub(crate) fn keys(&self) -> usize {
        self.kv.values().map(KvStore::len).sum::<usize>()
            + self.windows.values().map(WindowStore::len).sum::<usize>()
            + self.timers.len()
            + self.watermarks.len()
    }
}

/// The internal store holding a task's timers.
pub const TIMERS_STORE: &str = "timers";
/// The internal store holding a task's input watermarks.
pub const WATERMARKS_STORE: &str = "watermarks";

/// The watermarks of a task's inputs (partition `p` of each).
#[derive(Debug, Clone, Default)]
pub struct Clocks {
    pub(crate) inputs: Vec<(String, InputClock)>,
}

impl Clocks {
    /// The task's watermark: the minimum over its inputs.
    pub fn watermark(&self) -> Timestamp {
        crate::watermark::min_of(self.inputs.iter().map(|(_, c)| c))
    }

    /// The watermark of input `topic` (the beginning for a topic that is not an input).
    pub fn input(&self, topic: &str) -> Timestamp {
        self.clock(topic).map_or(BEGINNING, InputClock::watermark)
    }

    pub(crate) fn clock(&self, topic: &str) -> Option<&InputClock> {
        self.inputs.iter().find(|(t, _)| t == topic).map(|(_, c)| c)
    }

    pub(crate) fn clock_mut(&mut self, topic: &str) -> Option<&mut InputClock> {
        self.inputs.iter_mut().find(|(t, _)| t == topic).map(|(_, c)| c)
    }
}

/// What a task may do while handling a record or a timer.
#[derive(Debug)]
pub struct TaskContext<'a> {
    pub(crate) partition: i32,
    pub(crate) clocks: &'a Clocks,
    pub(crate) stores: &'a mut Stores,
    pub(crate) outputs: &'a mut Vec<Output>,
}

impl TaskContext<'_> {
    /// The input partition this task owns.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The task's watermark, the minimum over its inputs': no record earlier than it is
    /// expected any more. Timers and store expiry follow it.
    pub fn watermark(&self) -> Timestamp {
        self.clocks.watermark()
    }

    /// The watermark of one input (its full topic name).
    pub fn input_watermark(&self, topic: &str) -> Timestamp {
        self.clocks.input(topic)
    }

    /// Sends a record to `topic` in the open transaction (the default partitioner places
    /// it by key, so customer-keyed outputs stay co-partitioned).
    pub fn emit(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.outputs.push(Output {
            topic: topic.to_string(),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
        });
    }

    /// The key-value store named `name` (declared in [`Application::stores`]).
    pub fn store(&mut self, name: &str) -> &mut KvStore {
        self.stores
            .kv
            .get_mut(name)
            .unwrap_or_else(|| panic!("store {name:?} is not declared by the application"))
    }

    /// The value under `key` in the key-value store `store`, decoded.
    pub fn load<R: schemas::Record>(&mut self, store: &str, key: &[u8]) -> Result<Option<R>, Reject> {
        self.store(store)
            .get(key)
            .map(|bytes| {
                schemas::decode::<R>(bytes).map_err(|e| Reject(format!("store {store} holds a bad value: {e}")))
            })
            .transpose()
    }

    /// The windowed store named `name`.
    pub fn window_store(&mut self, name: &str) -> &mut WindowStore {
        self.stores
            .windows
            .get_mut(name)
            .unwrap_or_else(|| panic!("window store {name:?} is not declared by the application"))
    }

    /// Calls [`Task::on_timer`] with `tag` once the task's watermark reaches `at`. Timers are
    /// state: they survive restarts and move with the partition.
    pub fn schedule(&mut self, at: Timestamp, tag: &[u8]) {
        self.stores.timers.put(&time_key(at, tag), Vec::new());
    }

    pub fn cancel(&mut self, at: Timestamp, tag: &[u8]) {
        self.stores.timers.delete(&time_key(at, tag));
    }
}
