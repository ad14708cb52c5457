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

/// Writes the clocks into the `watermarks` store (only changed entries become changelog
/// records: an unchanged value is not written again).
pub(crate) fn save(clocks: &Clocks, stores: &mut Stores) {
    for (topic, clock) in &clocks.inputs {
        for (suffix, value) in clock.entries() {
            let mut key = topic.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&suffix);
            if stores.watermarks.get(&key) != Some(value.as_slice()) {
                stores.watermarks.put(&key, value);
            }
        }
    }
}
