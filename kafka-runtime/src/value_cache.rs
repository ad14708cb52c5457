//! A key-value store's values kept decoded beside it and written behind: for a value read
//! and rewritten by many records in a row (the reporter's day, rewritten by each of its
//! orders), which is then decoded once and encoded once per commit, not at every record.
//!
//! - A value taken from the cache is the one last put, or, when the cache has none or
//!   one the store no longer holds the bytes of (a rollback, a restore, any other write
//!   of the key), the one the store holds.
//! - A value put is kept *dirty*: the store still holds the bytes of the one before,
//!   until [`ValueCache::flush`] encodes it into the store. The task calls `flush` from
//!   [`crate::task::Task::flush`], which the runtime calls before every commit takes the
//!   stores' changes. So only the cache may write the keys it holds dirty.
//! - A record rejected after it took or put a value leaves no trace here either: a dirty
//!   value taken is a copy (the cache keeps the one from before the record), and what a
//!   record put is undone by [`ValueCache::settle`]`(false)`, which the task calls from
//!   [`crate::task::Task::settle`].

use std::collections::HashMap;

use schemas::values::Timestamp;

use crate::task::{Reject, TaskContext, encode};

/// What the store holds of a cached value.
#[derive(Debug, Clone)]
enum Written {
    /// Exactly these bytes: the value's encoding.
    Clean(Vec<u8>),
    /// Something older: the value is to be written, expiring at this time.
    Dirty(Option<Timestamp>),
}

/// A kept value and what the store holds of it.
type Slot<R> = (R, Written);

/// See the module documentation.
#[derive(Debug)]
pub struct ValueCache<R> {
    store: &'static str,
    entries: HashMap<Vec<u8>, Slot<R>>,
    /// What each key put since the last [`ValueCache::settle`] held before it.
    undo: Vec<(Vec<u8>, Option<Slot<R>>)>,
    capacity: usize,
}

impl<R: schemas::Record + Clone> ValueCache<R> {
    /// A cache of the values of `store`, at most `capacity` of them besides those put
    /// since the last flush.
    pub fn new(store: &'static str, capacity: usize) -> Self {
        ValueCache {
            store,
            entries: HashMap::new(),
            undo: Vec::new(),
            capacity,
        }
    }

    /// The value under `key`, to be changed and put back (or dropped).
    pub fn take(&mut self, ctx: &mut TaskContext<'_>, key: &[u8]) -> Result<Option<R>, Reject> {
        match self.entries.get(key) {
            // A copy: should the record be rejected, the value from before it stays.
            Some((value, Written::Dirty(_))) => return Ok(Some(value.clone())),
            Some((_, Written::Clean(bytes))) if ctx.store(self.store).get(key) == Some(bytes.as_slice()) => {
                // The store holds it, and a rejected record's rollback restores it there.
                if let Some((value, _)) = self.entries.remove(key) {
                    return Ok(Some(value));
                }
            }
            _ => {}
        }
        self.entries.remove(key);
        ctx.load(self.store, key)
    }

    /// Keeps `value` as the one under `key`, expiring at `expires_at`, to be written to
    /// the store by the next [`ValueCache::flush`].
    pub fn put(&mut self, key: &[u8], value: R, expires_at: Option<Timestamp>) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            // Only values the store holds are let go: the dirty ones wait for the flush,
            // which cannot happen inside a record (a rejection would roll it back).
            self.entries
                .retain(|_, (_, written)| matches!(written, Written::Dirty(_)));
        }
        let before = self.entries.insert(key.to_vec(), (value, Written::Dirty(expires_at)));
        self.undo.push((key.to_vec(), before));
    }

    /// Writes every dirty value into the store.
    pub fn flush(&mut self, ctx: &mut TaskContext<'_>) -> Result<(), Reject> {
        for (key, (value, written)) in &mut self.entries {
            if let Written::Dirty(expires_at) = *written {
                let bytes = encode(value)?;
                ctx.store(self.store).put_expiring(key, bytes.clone(), expires_at);
                *written = Written::Clean(bytes);
            }
        }
        Ok(())
    }

    /// Ends a record: kept (`true`), or rejected (`false`), when what it put is undone.
    pub fn settle(&mut self, kept: bool) {
        if kept {
            self.undo.clear();
            return;
        }
        // Latest first, so each key ends as it was before the record.
        while let Some((key, before)) = self.undo.pop() {
            match before {
                Some(entry) => self.entries.insert(key, entry),
                None => self.entries.remove(&key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use schemas::records::SeenEvent;

    use super::*;
    use crate::task::{Clocks, StoreSpec, Stores};

    fn seen(micros: i64) -> SeenEvent {
        SeenEvent {
            seen_at: Timestamp(micros),
        }
    }

    /// Runs `f` with a context over `stores`.
    fn with_ctx<T>(stores: &mut Stores, f: impl FnOnce(&mut TaskContext<'_>) -> T) -> T {
        let clocks = Clocks::default();
        let mut outputs = Vec::new();
        let mut ctx = TaskContext {
            partition: 0,
            clocks: &clocks,
            stores,
            outputs: &mut outputs,
        };
        f(&mut ctx)
    }

    #[test]
    fn a_value_put_reaches_the_store_at_the_flush_and_is_served_until_then() {
        let mut stores = Stores::new(&StoreSpec::key_value(&["s"]));
        let mut cache = ValueCache::<SeenEvent>::new("s", 8);
        with_ctx(&mut stores, |ctx| {
            cache.put(b"k", seen(1), None);
            cache.settle(true);
            assert_eq!(ctx.load::<SeenEvent>("s", b"k").unwrap(), None, "not written yet");
            assert_eq!(cache.take(ctx, b"k").unwrap(), Some(seen(1)));
            cache.put(b"k", seen(2), None);
            cache.settle(true);
            cache.flush(ctx).unwrap();
            assert_eq!(ctx.load::<SeenEvent>("s", b"k").unwrap(), Some(seen(2)), "written");
            assert_eq!(cache.take(ctx, b"k").unwrap(), Some(seen(2)));
        });
    }

    #[test]
    fn a_clean_value_is_served_only_while_the_store_holds_its_bytes() {
        let mut stores = Stores::new(&StoreSpec::key_value(&["s"]));
        let mut cache = ValueCache::<SeenEvent>::new("s", 8);
        with_ctx(&mut stores, |ctx| {
            cache.put(b"k", seen(2), None);
            cache.flush(ctx).unwrap();
            // Written behind the cache's back (as a rollback or a restore would).
            ctx.store("s").put(b"k", encode(&seen(3)).unwrap());
            assert_eq!(cache.take(ctx, b"k").unwrap(), Some(seen(3)));

            cache.put(b"k", seen(4), None);
            cache.flush(ctx).unwrap();
            ctx.store("s").delete(b"k");
            assert_eq!(cache.take(ctx, b"k").unwrap(), None);
        });
    }

    #[test]
    fn a_rejected_record_leaves_the_values_as_they_were_before_it() {
        let mut stores = Stores::new(&StoreSpec::key_value(&["s"]));
        let mut cache = ValueCache::<SeenEvent>::new("s", 8);
        with_ctx(&mut stores, |ctx| {
            cache.put(b"k", seen(1), None);
            cache.settle(true);
            // A record takes the dirty value, puts a changed one, and is rejected.
            let taken = cache.take(ctx, b"k").unwrap().unwrap();
            cache.put(b"k", seen(taken.seen_at.0 + 1), None);
            cache.put(b"new", seen(9), None);
            cache.settle(false);
            assert_eq!(cache.take(ctx, b"k").unwrap(), Some(seen(1)));
            assert_eq!(cache.take(ctx, b"new").unwrap(), None);
            // One that takes it and fails before putting it back changes nothing.
            let _ = cache.take(ctx, b"k").unwrap();
            cache.settle(false);
            assert_eq!(cache.take(ctx, b"k").unwrap(), Some(seen(1)));
        });
    }

    #[test]
    fn a_full_cache_lets_go_of_written_values_only() {
        let mut stores = Stores::new(&StoreSpec::key_value(&["s"]));
        let mut cache = ValueCache::<SeenEvent>::new("s", 2);
        with_ctx(&mut stores, |ctx| {
            for (i, key) in [&b"a"[..], b"b", b"c"].into_iter().enumerate() {
                cache.put(key, seen(i as i64), None);
                cache.settle(true);
            }
            assert_eq!(cache.entries.len(), 3, "dirty values wait for the flush");
            cache.flush(ctx).unwrap();
            cache.put(b"d", seen(3), None);
            assert_eq!(cache.entries.len(), 1, "written ones are let go");
            for (i, key) in [&b"a"[..], b"b", b"c", b"d"].into_iter().enumerate() {
                assert_eq!(cache.take(ctx, key).unwrap(), Some(seen(i as i64)));
            }
        });
    }
}
