//! Checkpoints: what a transaction writes into changelog partitions so that a restore
//! knows it has read everything the last committed transaction wrote.
//!
//! The broker answers a commit before it has written the commit markers to every
//! partition, so a `read_committed` reader may reach a changelog partition's end before
//! the last transaction's records there are visible. Each transaction that touches a
//! task partition `p` therefore numbers itself (the task's checkpoint sequence) and
//! writes a checkpoint, key `\0checkpoint` with a `checkpoint` header:
//!
//! - into every changelog partition `p` it wrote store changes to: the input offsets it
//!   commits and its sequence number (`#seq n`);
//! - and always into the anchor, partition `p` of the `watermarks` changelog: the
//!   offsets, its sequence number, and for every other store the sequence number of the
//!   last checkpoint written into that store's changelog partition (`#last store n`).
//!
//! A restore reads the anchor until its checkpoint holds the committed offsets (then the
//! last transaction's records are visible there), and each other changelog partition
//! until it has seen the checkpoint the anchor names for its store. A partition the last
//! transactions did not write needs no new record: its last writer was an earlier
//! transaction of a producer that, before its next transaction, waited for all its
//! markers (the coordinator answers "concurrent transactions" until then), or of an
//! earlier owner whose successor's restore waited for them.
//!
//! Checkpoints written before sequences existed carry offsets only and went into every
//! changelog partition of each transaction: an anchor without a sequence means every
//! partition is read until its own checkpoint holds the committed offsets, as then.
//! Topic names cannot hold `#`, so the lines an older reader does not know read to it
//! as offsets of inputs it does not have, and are ignored.

use std::collections::{BTreeMap, HashMap};

/// Key and header of the checkpoint records.
pub(crate) const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";
pub(crate) const CHECKPOINT_HEADER: &str = "checkpoint";

const SEQ: &str = "#seq";
const LAST: &str = "#last";

/// One checkpoint record, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Input topic → the next offset the transaction committed (its partition's).
    pub(crate) offsets: HashMap<String, i64>,
    /// The transaction's number in its task's sequence; none in checkpoints written
    /// before sequences existed.
    pub(crate) seq: Option<u64>,
    /// In an anchor: store → the sequence number of the last checkpoint written into
    /// the store's changelog partition.
    pub(crate) last: BTreeMap<String, u64>,
}

impl Checkpoint {
    /// The checkpoint text: `topic offset` lines of `partition`'s inputs, then `#seq n`
    /// and, in an anchor, `#last store n` lines.
    pub(crate) fn encode(
        offsets: &HashMap<(String, i32), i64>,
        partition: i32,
        seq: u64,
        last: Option<&BTreeMap<String, u64>>,
    ) -> String {
        let mut lines: Vec<String> = offsets
            .iter()
            .filter(|((_, p), _)| *p == partition)
            .map(|((topic, _), offset)| format!("{topic} {offset}"))
            .collect();
        lines.sort();
        lines.push(format!("{SEQ} {seq}"));
        for (store, seq) in last.into_iter().flatten() {
            lines.push(format!("{LAST} {store} {seq}"));
        }
        lines.join("\n")
    }

    /// Reads checkpoint text; a line it cannot read is ignored.
    pub(crate) fn decode(text: &str) -> Self {
        let mut checkpoint = Checkpoint::default();
        for line in text.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some(SEQ), Some(seq), None, None) => checkpoint.seq = seq.parse().ok(),
                (Some(LAST), Some(store), Some(seq), None) => {
                    if let Ok(seq) = seq.parse() {
                        checkpoint.last.insert(store.to_string(), seq);
                    }
                }
                (Some(topic), Some(offset), None, None) if !topic.starts_with('#') => {
                    if let Ok(offset) = offset.parse() {
                        checkpoint.offsets.insert(topic.to_string(), offset);
                    }
                }
                _ => {}
            }
        }
        checkpoint
    }

    /// Whether this checkpoint holds `partition`'s `committed` offsets: every input's at
    /// least.
    fn holds(&self, committed: &HashMap<(String, i32), i64>, partition: i32) -> bool {
        committed
            .iter()
            .filter(|((_, p), _)| *p == partition)
            .all(|((input, _), offset)| self.offsets.get(input).is_some_and(|at| at >= offset))
    }
}

/// A task's own account of its checkpoints, carried from one transaction to the next
/// and restored from its anchor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lineage {
    /// The sequence number of the task's last committed transaction.
    pub(crate) seq: u64,
    /// Store → the sequence number of the last checkpoint in its changelog partition.
    pub(crate) last: BTreeMap<String, u64>,
}

impl Lineage {
    /// The lineage an anchor's latest checkpoint carries on.
    pub(crate) fn of_anchor(anchor: Option<&Checkpoint>) -> Self {
        anchor.map_or_else(Lineage::default, |checkpoint| Lineage {
            seq: checkpoint.seq.unwrap_or(0),
            last: checkpoint.last.clone(),
        })
    }
}

/// Whether an anchor, read to its end with `latest` as its last checkpoint, holds the
/// last committed transaction: it has no checkpoint (nothing was ever committed with
/// one), or its checkpoint holds the committed offsets.
pub(crate) fn anchor_complete(
    latest: Option<&Checkpoint>,
    committed: &HashMap<(String, i32), i64>,
    partition: i32,
) -> bool {
    latest.is_none_or(|checkpoint| checkpoint.holds(committed, partition))
}

/// What a changelog partition other than the anchor must show before its restore is
/// complete, from its task's complete anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requirement {
    /// The anchor has sequences: each store's partition must show the checkpoint the
    /// anchor names for it (none named: nothing to wait for).
    Sequences(BTreeMap<String, u64>),
    /// The anchor predates sequences (or has no checkpoint): each partition must show a
    /// checkpoint holding the committed offsets, or have none at all.
    Offsets,
}

impl Requirement {
    pub(crate) fn of_anchor(anchor: Option<&Checkpoint>) -> Self {
        match anchor {
            Some(checkpoint) if checkpoint.seq.is_some() => Requirement::Sequences(checkpoint.last.clone()),
            _ => Requirement::Offsets,
        }
    }

    /// Whether `store`'s changelog partition, read to its end with `latest` as its
    /// last checkpoint, holds everything committed.
    pub(crate) fn met(
        &self,
        store: &str,
        latest: Option<&Checkpoint>,
        committed: &HashMap<(String, i32), i64>,
        partition: i32,
    ) -> bool {
        match self {
            Requirement::Sequences(last) => match last.get(store) {
                None => true,
                Some(wanted) => latest.and_then(|c| c.seq).is_some_and(|seen| seen >= *wanted),
            },
            Requirement::Offsets => anchor_complete(latest, committed, partition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(pairs: &[(&str, i32, i64)]) -> HashMap<(String, i32), i64> {
        pairs.iter().map(|(t, p, o)| ((t.to_string(), *p), *o)).collect()
    }

    #[test]
    fn a_checkpoint_holds_the_offsets_of_its_partition_only() {
        let offsets = committed(&[("t.in", 0, 42), ("t.other", 0, 7), ("t.in", 1, 99)]);
        let text = Checkpoint::encode(&offsets, 0, 5, None);
        assert_eq!(text, "t.in 42\nt.other 7\n#seq 5");
        assert_eq!(
            Checkpoint::decode(&text),
            Checkpoint {
                offsets: HashMap::from([("t.in".to_string(), 42), ("t.other".to_string(), 7)]),
                seq: Some(5),
                last: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn an_anchor_names_the_last_checkpoint_of_each_store() {
        let last = BTreeMap::from([("carts".to_string(), 4), ("chats".to_string(), 2)]);
        let text = Checkpoint::encode(&committed(&[("t.in", 3, 10)]), 3, 5, Some(&last));
        assert_eq!(text, "t.in 10\n#seq 5\n#last carts 4\n#last chats 2");
        let anchor = Checkpoint::decode(&text);
        assert_eq!(anchor.last, last);
        assert_eq!(
            Lineage::of_anchor(Some(&anchor)),
            Lineage {
                seq: 5,
                last: last.clone()
            }
        );
        assert_eq!(Requirement::of_anchor(Some(&anchor)), Requirement::Sequences(last));
    }

    #[test]
    fn a_garbled_checkpoint_line_is_ignored() {
        let checkpoint = Checkpoint::decode("t.in x\nnoise\nt.b 3\n#seq\n#last carts\n#other 4");
        assert_eq!(checkpoint.offsets, HashMap::from([("t.b".to_string(), 3)]));
        assert_eq!((checkpoint.seq, checkpoint.last.len()), (None, 0));
    }

    #[test]
    fn an_anchor_is_complete_once_its_checkpoint_holds_the_committed_offsets() {
        let committed = committed(&[("t.in", 0, 42), ("t.b", 0, 7), ("t.in", 1, 500)]);
        let behind = Checkpoint::decode("t.in 41\nt.b 7\n#seq 3");
        let there = Checkpoint::decode("t.in 42\nt.b 7\n#seq 4");
        assert!(!anchor_complete(Some(&behind), &committed, 0));
        assert!(anchor_complete(Some(&there), &committed, 0));
        // Partition 1's offsets are not partition 0's business.
        assert!(!anchor_complete(Some(&there), &committed, 1));
        // Nothing ever checkpointed: nothing to wait for.
        assert!(anchor_complete(None, &committed, 0));
    }

    #[test]
    fn a_store_waits_for_the_checkpoint_its_anchor_names() {
        let committed = committed(&[("t.in", 0, 42)]);
        let anchor = Checkpoint::decode("t.in 42\n#seq 9\n#last carts 7");
        let requirement = Requirement::of_anchor(Some(&anchor));
        let older = Checkpoint::decode("t.in 30\n#seq 6");
        let named = Checkpoint::decode("t.in 35\n#seq 7");
        assert!(!requirement.met("carts", Some(&older), &committed, 0));
        assert!(!requirement.met("carts", None, &committed, 0));
        // Its own offsets are older than the committed ones: the later transactions
        // did not write to it, which is what the anchor says.
        assert!(requirement.met("carts", Some(&named), &committed, 0));
        // A store the anchor does not name was never written since: read to its end.
        assert!(requirement.met("chats", None, &committed, 0));
        assert!(requirement.met("chats", Some(&older), &committed, 0));
    }

    #[test]
    fn checkpoints_from_before_sequences_hold_the_committed_offsets_everywhere() {
        let committed = committed(&[("t.in", 0, 42)]);
        let anchor = Checkpoint::decode("t.in 42");
        assert!(anchor_complete(Some(&anchor), &committed, 0));
        let requirement = Requirement::of_anchor(Some(&anchor));
        assert_eq!(requirement, Requirement::Offsets);
        assert!(!requirement.met("carts", Some(&Checkpoint::decode("t.in 41")), &committed, 0));
        assert!(requirement.met("carts", Some(&Checkpoint::decode("t.in 42")), &committed, 0));
        assert!(requirement.met("carts", None, &committed, 0));
        assert_eq!(Requirement::of_anchor(None), Requirement::Offsets);
        assert_eq!(Lineage::of_anchor(Some(&anchor)), Lineage::default());
    }
}
