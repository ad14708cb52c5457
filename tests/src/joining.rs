//! A stage with two co-partitioned inputs, a table and a stream of the same key, that
//! joins them, repartitions the result under another key, and fires event-time timers:
//! the runtime features the real stages build on, in miniature.

use kafka_runtime::task::{Application, Decoded, Record, Reject, StoreSpec, Task, TaskContext};
use schemas::values::Timestamp;

pub const TABLE: &str = "join.table";
pub const STREAM: &str = "join.stream";
pub const JOINED: &str = "join.joined";
pub const REMINDERS: &str = "join.reminders";
const NAMES: &str = "names";

/// Table records: `customer -> name`. Stream records: `customer -> order_id`. Each order
/// is emitted as `order_id -> "customer:name"` (repartitioned by order id), and one
/// second of event time after an order a reminder `customer -> order_id` is emitted.
/// The two inputs are joined by event time (the record timestamps).
#[derive(Debug, Clone)]
pub struct Joining {
    pub id: String,
    pub prefix: String,
}

impl Application for Joining {
    fn id(&self) -> &str {
        &self.id
    }

    fn inputs(&self) -> Vec<String> {
        vec![format!("{}{TABLE}", self.prefix), format!("{}{STREAM}", self.prefix)]
    }

    fn synchronized_inputs(&self) -> Vec<String> {
        self.inputs()
    }

    fn stores(&self) -> Vec<StoreSpec> {
        StoreSpec::key_value(&[NAMES])
    }

    fn create_task(&self, _partition: i32) -> Box<dyn Task> {
        Box::new(JoinTask {
            prefix: self.prefix.clone(),
        })
    }
}

struct JoinTask {
    prefix: String,
}

impl Task for JoinTask {
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>, _decoded: Decoded) -> Result<(), Reject> {
        let key = record.key.ok_or_else(|| Reject("a record needs a key".into()))?;
        let value = record.value.ok_or_else(|| Reject("a record needs a value".into()))?;
        if record.topic.ends_with(TABLE) {
            ctx.store(NAMES).put(key, value.to_vec());
            return Ok(());
        }
        let name = ctx
            .store(NAMES)
            .get(key)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| b"?".to_vec());
        let joined = [key, b":", &name].concat();
        let topic = format!("{}{JOINED}", self.prefix);
        ctx.emit(&topic, Some(value), Some(&joined));
        let at = Timestamp(ctx.watermark().micros() + 1_000_000);
        ctx.schedule(at, &[key, b"\0", value].concat());
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut TaskContext<'_>, _at: Timestamp, tag: &[u8]) {
        if let Some(split) = tag.iter().position(|b| *b == 0) {
            let topic = format!("{}{REMINDERS}", self.prefix);
            ctx.emit(&topic, Some(&tag[..split]), Some(&tag[split + 1..]));
        }
    }
}
