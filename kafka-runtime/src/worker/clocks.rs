//! A task's input watermarks kept in its `watermarks` store, so that a restore brings
//! back exactly the watermarks of the committed transaction.

use crate::task::{Clocks, Stores};
use crate::watermark::InputClock;

use super::core::Shape;

/// The clocks of a task's inputs, as restored from its `watermarks` store.
pub(crate) fn load(shape: &Shape, stores: &Stores) -> Clocks {
    let mut clocks = Clocks {
        inputs: shape
            .app
            .inputs()
            .into_iter()
            .map(|input| {
                let clock = if shape.written.contains(&input) {
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
