//! State stores: in-memory maps of one task (one input partition), each backed by a
//! compacted changelog topic partition.
//!
//! Every change is remembered until the next commit, when the worker writes it to the
//! changelog inside the same transaction as the outputs and input offsets; so what a
//! restore reads back is exactly the state that goes with the committed offsets. A
//! delete is a tombstone. An entry may carry an expiry in event time; it travels in the
//! changelog record's `expires-at` header (the value stays the stage's own Avro record)
//! and the store deletes the entry once the task's watermark passes it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use schemas::values::Timestamp;

/// Name of the changelog header carrying an entry's expiry (8 bytes, big-endian micros).
pub const EXPIRES_AT_HEADER: &str = "expires-at";

/// One change to write to the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub expires_at: Option<Timestamp>,
}

/// A key that sorts by time first: `at` as 8 big-endian bytes with the sign bit flipped
/// (so that byte order is time order, before the epoch included), then `rest`. Timers
/// and the stages' held records are keyed so, and read back in time order.
pub fn time_key(at: Timestamp, rest: &[u8]) -> Vec<u8> {
    let mut key = ((at.micros() as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    key.extend_from_slice(rest);
    key
}

/// The time a key made by [`time_key`] starts with, and the rest of it.
pub fn key_time(key: &[u8]) -> Option<(Timestamp, &[u8])> {
    let (at, rest) = key.split_first_chunk::<8>()?;
    Some((Timestamp((u64::from_be_bytes(*at) ^ (1 << 63)) as i64), rest))
}

/// A value with its optional expiry.
type Entry = (Vec<u8>, Option<Timestamp>);

/// A rebuild compacts what it has gathered (sorted by key, the latest version of each
/// kept) once it holds this many records and twice what the last compaction kept: a
/// changelog the broker has not compacted yet then never has every version of its keys
/// held at once, and each record is moved a few times at most.
const REBUILD_COMPACT_AT: usize = 1 << 16;

/// A store being rebuilt from its changelog, for [`KvStore::rebuild`]: the records are
/// gathered in changelog order and the maps are built once, from keys in order, at the
/// end (much cheaper than a tree insert per record).
#[derive(Debug, Default)]
pub(crate) struct Rebuild {
    /// The records kept by the last compaction (in key order, one per key, no
    /// tombstones), then those read since, in changelog order. `None` is a tombstone.
    records: Vec<(Vec<u8>, Option<Entry>)>,
    /// How many records the last compaction kept.
    kept: usize,
}

impl Rebuild {
    /// The next changelog record (`None` is a tombstone).
    pub(crate) fn push(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, expires_at: Option<Timestamp>) {
        self.records.push((key, value.map(|v| (v, expires_at))));
        if self.records.len() >= REBUILD_COMPACT_AT.max(2 * self.kept) {
            self.compact();
        }
    }

    /// Records gathered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }

    /// Keeps the latest record of each key, drops tombstones, and leaves the records in
    /// key order.
    fn compact(&mut self) {
        // A stable sort: the versions of a key stay in changelog order.
        self.records.sort_by(|a, b| a.0.cmp(&b.0));
        // `dedup_by` keeps the first of a run of equal keys: move each later version
        // into that place, so the latest is the one kept.
        self.records.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        self.records.retain(|(_, entry)| entry.is_some());
        self.kept = self.records.len();
    }
}

/// A key-value store with optional per-entry expiry by event time.
#[derive(Debug, Default)]
pub struct KvStore {
    entries: BTreeMap<Vec<u8>, Entry>,
    /// (expiry, key) of entries that expire, to find the expired ones in order.
    expiries: BTreeSet<(Timestamp, Vec<u8>)>,
    /// Keys changed since the last commit: their changelog records are read from the
    /// entries (or are tombstones) when the commit takes them, so a put copies nothing.
    dirty: HashSet<Vec<u8>>,
    bytes: usize,
    /// While a record is being processed: what each key it touched held before (the
    /// entry, and whether it was already changed since the commit), so a rejected record
    /// leaves no trace.
    undo: Option<Vec<Undo>>,
}

#[derive(Debug)]
struct Undo {
    key: Vec<u8>,
    /// What the key held before: the entry the change replaced, moved here.
    entry: Option<Entry>,
    /// Whether the key was already changed since the last commit.
    was_dirty: bool,
}

impl KvStore {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(|(value, _)| value.as_slice())
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.put_expiring(key, value, None);
    }

    /// Stores `value`, to be deleted once the task's watermark passes `expires_at`.
    pub fn put_expiring(&mut self, key: &[u8], value: Vec<u8>, expires_at: Option<Timestamp>) {
        let before = self.apply(key, Some((value, expires_at)));
        self.changed(key, before);
    }

    pub fn delete(&mut self, key: &[u8]) {
        if self.entries.contains_key(key) {
            let before = self.apply(key, None);
            self.changed(key, before);
        }
    }

    /// Marks `key` changed, and while a record is processed remembers what it held.
    fn changed(&mut self, key: &[u8], before: Option<Entry>) {
        let was_dirty = !self.dirty.insert(key.to_vec());
        if let Some(undo) = self.undo.as_mut() {
            undo.push(Undo {
                key: key.to_vec(),
                entry: before,
                was_dirty,
            });
        }
    }

    /// Entries with keys in `[from, to)`, in key order.
    pub fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.entries
            .range(from.to_vec()..to.to_vec())
            .map(|(k, (v, _))| (k.as_slice(), v.as_slice()))
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.entries
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, (v, _))| (k.as_slice(), v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Of a store keyed by [`time_key`]: the earliest time it holds.
    pub fn earliest_time(&self) -> Option<Timestamp> {
        self.entries
            .keys()
            .next()
            .and_then(|key| key_time(key))
            .map(|(at, _)| at)
    }

    /// Of a store keyed by [`time_key`]: removes and returns the earliest entry (key and
    /// value) when its time is before `before`.
    pub fn pop_earliest_before(&mut self, before: Timestamp) -> Option<(Vec<u8>, Vec<u8>)> {
        let (key, (value, _)) = self.entries.first_key_value()?;
        if key_time(key).is_none_or(|(at, _)| at >= before) {
            return None;
        }
        let (key, value) = (key.clone(), value.clone());
        self.delete(&key);
        Some((key, value))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes held (keys and values).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Deletes every entry whose expiry is at or before `watermark`; returns how many.
    pub fn expire(&mut self, watermark: Timestamp) -> usize {
        let expired: Vec<Vec<u8>> = self
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= watermark)
            .map(|(_, key)| key.clone())
            .collect();
        for key in &expired {
            self.delete(key);
        }
        expired.len()
    }

    /// The changes since the last call, to write to the changelog.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let entries = &self.entries;
        self.dirty
            .drain()
            .map(|key| match entries.get(&key) {
                Some((value, expires_at)) => Change {
                    value: Some(value.clone()),
                    expires_at: *expires_at,
                    key,
                },
                None => Change {
                    key,
                    value: None,
                    expires_at: None,
                },
            })
            .collect()
    }

    /// Starts remembering changes, so that [`KvStore::rollback`] can undo them.
    pub(crate) fn savepoint(&mut self) {
        self.undo = Some(Vec::new());
    }

    /// Keeps the changes made since the savepoint.
    pub(crate) fn release(&mut self) {
        self.undo = None;
    }

    /// Undoes every change made since the savepoint.
    pub(crate) fn rollback(&mut self) {
        for undo in self.undo.take().unwrap_or_default().into_iter().rev() {
            self.apply(&undo.key, undo.entry);
            if !undo.was_dirty {
                self.dirty.remove(&undo.key);
            }
        }
    }

    /// Applies the changelog records gathered in `rebuild` (not themselves changes to
    /// write back), as [`KvStore::restore`] of each in turn would.
    pub(crate) fn rebuild(&mut self, mut rebuild: Rebuild) {
        rebuild.compact();
        if !self.entries.is_empty() || self.undo.is_some() {
            for (key, entry) in rebuild.records {
                self.apply(&key, entry);
            }
            return;
        }
        let entries: Vec<(Vec<u8>, Entry)> = rebuild
            .records
            .into_iter()
            .filter_map(|(key, entry)| entry.map(|entry| (key, entry)))
            .collect();
        self.bytes = entries.iter().map(|(key, (value, _))| key.len() + value.len()).sum();
        self.expiries = entries
            .iter()
            .filter_map(|(key, (_, expiry))| expiry.map(|at| (at, key.clone())))
            .collect();
        // In key order already: the tree is built in one pass.
        self.entries = entries.into_iter().collect();
    }

    /// Applies a changelog record during restore (not itself a change to write back).
    pub fn restore(&mut self, key: &[u8], value: Option<Vec<u8>>, expires_at: Option<Timestamp>) {
        self.apply(key, value.map(|v| (v, expires_at)));
    }

    /// Sets what `key` holds; returns what it held.
    fn apply(&mut self, key: &[u8], entry: Option<Entry>) -> Option<Entry> {
        let before = self.entries.remove(key);
        if let Some((old, old_expiry)) = &before {
            self.bytes -= key.len() + old.len();
            if let Some(at) = old_expiry {
                self.expiries.remove(&(*at, key.to_vec()));
            }
        }
        if let Some((value, expiry)) = entry {
            self.bytes += key.len() + value.len();
            if let Some(at) = expiry {
                self.expiries.insert((at, key.to_vec()));
            }
            self.entries.insert(key.to_vec(), (value, expiry));
        }
        before
    }
}

/// A windowed store: values per (key, window start), kept for `retention` of event time
/// after the window starts. Built on [`KvStore`]: the composite key is the key, a zero
/// byte, and the window start as big-endian micros, so a key's windows sort in time.
#[derive(Debug, Default)]
pub struct WindowStore {
    inner: KvStore,
    retention_micros: i64,
}

impl WindowStore {
    pub fn new(retention: std::time::Duration) -> Self {
        WindowStore {
            inner: KvStore::default(),
            retention_micros: i64::try_from(retention.as_micros()).unwrap_or(i64::MAX),
        }
    }

    fn composite(key: &[u8], window_start: Timestamp) -> Vec<u8> {
        let mut composite = Vec::with_capacity(key.len() + 9);
        composite.extend_from_slice(key);
        composite.push(0);
        // Flipping the sign bit keeps negative times sorted before positive ones.
        composite.extend_from_slice(&((window_start.micros() as u64) ^ (1 << 63)).to_be_bytes());
        composite
    }

    pub fn put(&mut self, key: &[u8], window_start: Timestamp, value: Vec<u8>) {
        let expires = Timestamp(window_start.micros().saturating_add(self.retention_micros));
        self.inner
            .put_expiring(&Self::composite(key, window_start), value, Some(expires));
    }

    pub fn get(&self, key: &[u8], window_start: Timestamp) -> Option<&[u8]> {
        self.inner.get(&Self::composite(key, window_start))
    }

    /// The windows of `key` starting in `[from, to)`, oldest first.
    pub fn fetch(&self, key: &[u8], from: Timestamp, to: Timestamp) -> Vec<(Timestamp, &[u8])> {
        let (low, high) = (Self::composite(key, from), Self::composite(key, to));
        self.inner
            .range(&low, &high)
            .map(|(k, v)| {
                let mut be = [0u8; 8];
                be.copy_from_slice(&k[k.len() - 8..]);
                (Timestamp((u64::from_be_bytes(be) ^ (1 << 63)) as i64), v)
            })
            .collect()
    }

    pub fn store(&mut self) -> &mut KvStore {
        &mut self.inner
    }

    pub fn bytes(&self) -> usize {
        self.inner.bytes()
    }

    /// Windows held, over all keys.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_the_latest_per_key_and_deletes_are_tombstones() {
        let mut store = KvStore::default();
        store.put(b"a", b"1".to_vec());
        store.put(b"a", b"2".to_vec());
        store.put(b"b", b"1".to_vec());
        store.delete(b"b");
        let mut changes = store.take_changes();
        changes.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            changes[0],
            Change {
                key: b"a".to_vec(),
                value: Some(b"2".to_vec()),
                expires_at: None
            }
        );
        assert_eq!(
            changes[1],
            Change {
                key: b"b".to_vec(),
                value: None,
                expires_at: None
            }
        );
        assert!(store.take_changes().is_empty());
    }

    #[test]
    fn entries_expire_by_event_time_with_a_tombstone() {
        let mut store = KvStore::default();
        store.put_expiring(b"old", b"x".to_vec(), Some(Timestamp(100)));
        store.put_expiring(b"new", b"y".to_vec(), Some(Timestamp(200)));
        store.take_changes();
        assert_eq!(store.expire(Timestamp(150)), 1);
        assert_eq!(store.get(b"old"), None);
        assert_eq!(store.get(b"new"), Some(&b"y"[..]));
        assert_eq!(
            store.take_changes(),
            [Change {
                key: b"old".to_vec(),
                value: None,
                expires_at: None
            }]
        );
    }

    #[test]
    fn a_rewrite_moves_the_expiry() {
        let mut store = KvStore::default();
        store.put_expiring(b"k", b"1".to_vec(), Some(Timestamp(100)));
        store.put_expiring(b"k", b"2".to_vec(), Some(Timestamp(300)));
        assert_eq!(store.expire(Timestamp(200)), 0);
        assert_eq!(store.get(b"k"), Some(&b"2"[..]));
    }

    #[test]
    fn restore_rebuilds_without_recording_changes() {
        let mut store = KvStore::default();
        store.restore(b"k", Some(b"v".to_vec()), Some(Timestamp(5)));
        assert!(store.take_changes().is_empty());
        assert_eq!(store.bytes(), 2);
        assert_eq!(store.expire(Timestamp(5)), 1);
    }

    #[test]
    fn a_rebuild_equals_the_records_applied_one_by_one() {
        // Versions of keys out of order, rewrites, tombstones, a key deleted and put
        // again, expiries moved and dropped.
        type Record = (Vec<u8>, Option<Vec<u8>>, Option<Timestamp>);
        let mut records: Vec<Record> = Vec::new();
        for round in 0..4u8 {
            for k in [7u8, 3, 9, 1, 3, 5] {
                let key = vec![b'k', k];
                let value = (round + k) % 3 != 0;
                let expiry = (k % 2 == 0).then_some(Timestamp(i64::from(round) * 10 + i64::from(k)));
                records.push((key, value.then(|| vec![round, k]), expiry));
            }
        }
        let mut one_by_one = KvStore::default();
        let mut rebuild = Rebuild::default();
        for (key, value, expiry) in &records {
            one_by_one.restore(key, value.clone(), *expiry);
            rebuild.push(key.clone(), value.clone(), *expiry);
        }
        let mut rebuilt = KvStore::default();
        rebuilt.rebuild(rebuild);
        assert_eq!(rebuilt.entries, one_by_one.entries);
        assert_eq!(rebuilt.expiries, one_by_one.expiries);
        assert_eq!(rebuilt.bytes(), one_by_one.bytes());
        assert!(rebuilt.take_changes().is_empty());
    }

    #[test]
    fn a_rebuild_compacts_as_it_goes_and_keeps_the_latest_version() {
        let mut rebuild = Rebuild::default();
        for version in 0..(REBUILD_COMPACT_AT as u64 + 10) {
            let key = (version % 4).to_be_bytes().to_vec();
            let value = (version % 5 != 4).then(|| version.to_be_bytes().to_vec());
            rebuild.push(key, value, None);
        }
        assert!(rebuild.len() < 20, "compacted on the way: {}", rebuild.len());
        let mut store = KvStore::default();
        store.rebuild(rebuild);
        let last = REBUILD_COMPACT_AT as u64 + 9;
        for key in 0..4u64 {
            let latest = (0..=last).rev().find(|v| v % 4 == key).unwrap();
            let expected = (latest % 5 != 4).then(|| latest.to_be_bytes().to_vec());
            assert_eq!(store.get(&key.to_be_bytes()).map(<[u8]>::to_vec), expected);
        }
    }

    #[test]
    fn a_rollback_undoes_every_change_since_the_savepoint() {
        let mut store = KvStore::default();
        store.put(b"kept", b"1".to_vec());
        store.put(b"changed", b"old".to_vec());
        store.take_changes();
        store.put(b"pending", b"p".to_vec());
        store.savepoint();
        store.put(b"changed", b"new".to_vec());
        store.put_expiring(b"added", b"x".to_vec(), Some(Timestamp(5)));
        store.delete(b"kept");
        store.put(b"pending", b"q".to_vec());
        store.rollback();
        assert_eq!(store.get(b"kept"), Some(&b"1"[..]));
        assert_eq!(store.get(b"changed"), Some(&b"old"[..]));
        assert_eq!(store.get(b"added"), None);
        assert_eq!(
            store.expire(Timestamp(10)),
            0,
            "the expiry of the undone entry is gone too"
        );
        assert_eq!(
            store.take_changes(),
            [Change {
                key: b"pending".to_vec(),
                value: Some(b"p".to_vec()),
                expires_at: None
            }]
        );
    }

    #[test]
    fn prefix_scans_stop_at_the_prefix() {
        let mut store = KvStore::default();
        for key in ["a:1", "a:2", "b:1"] {
            store.put(key.as_bytes(), vec![]);
        }
        let keys: Vec<_> = store.prefix(b"a:").map(|(k, _)| k.to_vec()).collect();
        assert_eq!(keys, [b"a:1".to_vec(), b"a:2".to_vec()]);
    }

    #[test]
    fn windows_come_back_in_time_order_and_expire_after_retention() {
        let mut store = WindowStore::new(std::time::Duration::from_micros(1000));
        store.put(b"k", Timestamp(-50), b"neg".to_vec());
        store.put(b"k", Timestamp(200), b"b".to_vec());
        store.put(b"k", Timestamp(100), b"a".to_vec());
        store.put(b"kk", Timestamp(100), b"other key".to_vec());
        let windows = store.fetch(b"k", Timestamp(-100), Timestamp(1000));
        assert_eq!(
            windows,
            [
                (Timestamp(-50), &b"neg"[..]),
                (Timestamp(100), &b"a"[..]),
                (Timestamp(200), &b"b"[..])
            ]
        );
        assert_eq!(store.store().expire(Timestamp(1100)), 3);
        assert_eq!(store.fetch(b"k", Timestamp(-100), Timestamp(1000)).len(), 1);
    }

    #[test]
    fn a_time_keyed_store_gives_its_entries_back_in_time_order_up_to_a_bound() {
        let mut store = KvStore::default();
        for (at, rest) in [(7, "b"), (-3, "a"), (7, "a"), (20, "z")] {
            store.put(&time_key(Timestamp(at), rest.as_bytes()), rest.as_bytes().to_vec());
        }
        assert_eq!(
            store.earliest_time(),
            Some(Timestamp(-3)),
            "before the epoch sorts first"
        );
        let mut popped = Vec::new();
        while let Some((key, _)) = store.pop_earliest_before(Timestamp(20)) {
            let (at, rest) = key_time(&key).unwrap();
            popped.push((at.micros(), String::from_utf8(rest.to_vec()).unwrap()));
        }
        assert_eq!(popped, [(-3, "a".into()), (7, "a".into()), (7, "b".into())]);
        assert_eq!(store.earliest_time(), Some(Timestamp(20)), "20 is not before 20");
        assert_eq!(store.take_changes().iter().filter(|c| c.value.is_none()).count(), 3);
    }
}
