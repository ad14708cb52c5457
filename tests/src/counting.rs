//! A counting stage on the exactly-once runtime, the yardstick of the runtime's tests:
//! every input record `key -> "inc"` raises the key's count in a store and emits
//! `key -> count`. Exactly once means each key's outputs read `1, 2, ..., n` with no
//! number missing or repeated, and `n` is the number of inputs of that key.

use kafka_runtime::task::{Application, Decoded, Record, Reject, StoreSpec, Task, TaskContext};

pub const INPUT: &str = "counter.in";
pub const OUTPUT: &str = "counter.out";
const COUNTS: &str = "counts";

#[derive(Debug, Clone)]
pub struct Counting {
    pub id: String,
    pub prefix: String,
}

impl Application for Counting {
    fn id(&self) -> &str {
        &self.id
    }

    fn inputs(&self) -> Vec<String> {
        vec![format!("{}{INPUT}", self.prefix)]
    }

    fn stores(&self) -> Vec<StoreSpec> {
        StoreSpec::key_value(&[COUNTS])
    }

    fn create_task(&self, _partition: i32) -> Box<dyn Task> {
        Box::new(CountTask {
            output: format!("{}{OUTPUT}", self.prefix),
        })
    }
}

struct CountTask {
    output: String,
}

impl Task for CountTask {
    fn process(&mut self, ctx: &mut TaskContext<'_>, record: &Record<'_>, _decoded: Decoded) -> Result<(), Reject> {
        let key = record.key.ok_or_else(|| Reject("a count needs a key".into()))?;
        // Writes, then fails: the runtime must roll the write back with the record.
        let fails_after_writing = record.value == Some(b"inc-then-reject");
        if record.value != Some(b"inc") && !fails_after_writing {
            return Err(Reject(format!(
                "not an increment: {:?}",
                record.value.map(String::from_utf8_lossy)
            )));
        }
        let store = ctx.store(COUNTS);
        let count = store
            .get(key)
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
            + 1;
        store.put(key, count.to_be_bytes().to_vec());
        if fails_after_writing {
            return Err(Reject("rejected after writing".into()));
        }
        let output = self.output.clone();
        ctx.emit(&output, Some(key), Some(count.to_string().as_bytes()));
        Ok(())
    }
}
