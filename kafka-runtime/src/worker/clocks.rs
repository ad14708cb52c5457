//! A task's input watermarks kept in its `watermarks` store, so that a restore brings
//! back exactly the watermarks of the committed transaction.

use std::collections::BTreeSet;

use crate::task::{Clocks, Stores};
use crate::watermark::InputClock;

/// The clocks of a task's `inputs` (those in `written` written by stage tasks), as
/// restored from its `watermarks` store.
pub(crate) fn load(inputs: &[String], written: &BTreeSet<String>, stores: &Stores) -> Clocks {
    let mut clocks = Clocks {
        inputs: inputs
            .iter()
            .cloned()
            .map(|input| {
                let clock = if written.contains(&input) {
                    InputClock::written()
                } else {
                    InputClock::source()
                };
                (input, clock)
            })
            .collect(),
    };
    for (key, value) in stores.watermarks.prefix(&[]) {
        let topic_end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
        let topic = String::from_utf8_lossy(&key[..topic_end]);
        if let Some(clock) = clocks.clock_mut(&topic) {
            clock.restore(value);
        }
    }
    clocks
}

/// Writes the clocks into the `watermarks` store, one entry per input (only a changed
/// entry becomes a changelog record).
pub(crate) fn save(clocks: &Clocks, stores: &mut Stores) {
    for (topic, clock) in &clocks.inputs {
        let mut key = topic.as_bytes().to_vec();
        key.push(0);
        // Earlier versions kept a written input one writer to an entry, under longer
        // keys: gone once the input's clock is kept whole.
        let stale: Vec<Vec<u8>> = stores
            .watermarks
            .prefix(&key)
            .filter(|(k, _)| k.len() > key.len())
            .map(|(k, _)| k.to_vec())
            .collect();
        for old in stale {
            stores.watermarks.delete(&old);
        }
        let value = clock.entry();
        if stores.watermarks.get(&key) != Some(value.as_slice()) {
            stores.watermarks.put(&key, value);
        }
    }
}
