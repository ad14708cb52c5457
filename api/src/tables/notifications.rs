//! Recent notifications of each organization and each chat, and the feed of new ones,
//! with what event streams need to resume without a gap or a repeat.
//!
//! A stream's position is a [`Cursor`]: the last offset it has seen in each partition of
//! `inbox.notifications`. Offsets are the topic's own, so a cursor means the same to
//! every replica and after a restart. A chat's notifications share a partition (the key
//! is `org:chat_id`); an organization's are spread over all of them, hence one offset
//! per partition.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, MutexGuard, PoisonError};

use kafka_runtime::follow::Followed;
use schemas::records::AgentNotification;
use tokio::sync::broadcast;

use super::{Limits, NotLoaded, Tables};

/// One notification, ready to send.
#[derive(Debug)]
pub struct Note {
    pub partition: i32,
    pub offset: i64,
    pub organization_id: String,
    pub chat_id: String,
    /// When it happened (µs since the epoch): the order of a list.
    pub at: i64,
    /// The notification as JSON (decimals as strings, times RFC 3339).
    pub json: String,
}

/// The last offset seen in each partition (-1: none yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Vec<i64>);

impl Cursor {
    /// The position an event id names: `o0.o1.…`, one offset per partition.
    pub fn parse(text: &str, partitions: usize) -> Option<Cursor> {
        let offsets: Vec<i64> = text.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
        (offsets.len() == partitions && offsets.iter().all(|o| *o >= -1)).then_some(Cursor(offsets))
    }

    pub fn id(&self) -> String {
        self.0.iter().map(i64::to_string).collect::<Vec<_>>().join(".")
    }

    /// Whether `note` comes after this position.
    pub fn is_before(&self, note: &Note) -> bool {
        usize::try_from(note.partition)
            .ok()
            .and_then(|p| self.0.get(p))
            .is_some_and(|seen| note.offset > *seen)
    }

    /// Moves past `note`.
    pub fn pass(&mut self, note: &Note) {
        if let Some(seen) = usize::try_from(note.partition).ok().and_then(|p| self.0.get_mut(p)) {
            *seen = (*seen).max(note.offset);
        }
    }
}

/// The recent notifications of one organization or chat, oldest first.
#[derive(Debug, Default)]
struct History {
    notes: VecDeque<Arc<Note>>,
    /// The highest offset dropped from the front, per partition: a cursor behind it may
    /// have missed something.
    dropped: HashMap<i32, i64>,
}

impl History {
    fn push(&mut self, note: Arc<Note>, cap: usize) {
        self.notes.push_back(note);
        while self.notes.len() > cap {
            if let Some(old) = self.notes.pop_front() {
                let dropped = self.dropped.entry(old.partition).or_insert(-1);
                *dropped = (*dropped).max(old.offset);
            }
        }
    }

    /// Whether notes after `cursor` were dropped (the history cannot fill the gap).
    fn misses(&self, cursor: &Cursor) -> bool {
        self.dropped.iter().any(|(partition, dropped)| {
            usize::try_from(*partition)
                .ok()
                .and_then(|p| cursor.0.get(p))
                .is_some_and(|seen| seen < dropped)
        })
    }
}

/// Every history, and where the follower stands.
#[derive(Debug)]
pub(super) struct Notes {
    limits: Limits,
    by_org: HashMap<String, History>,
    by_chat: HashMap<(String, String), History>,
    /// The last offset applied in each partition: "now" for a stream starting without
    /// Last-Event-ID.
    applied: Vec<i64>,
    partitions: usize,
    feed: broadcast::Sender<Arc<Note>>,
}

impl Notes {
    pub(super) fn new(limits: Limits) -> Self {
        Notes {
            limits,
            by_org: HashMap::new(),
            by_chat: HashMap::new(),
            applied: Vec::new(),
            partitions: 0,
            feed: broadcast::channel(limits.stream_buffer).0,
        }
    }

    pub(super) fn set_partitions(&mut self, partitions: usize) {
        self.partitions = partitions;
        self.applied.resize(partitions, -1);
    }

    fn push(&mut self, note: Note) {
        let note = Arc::new(note);
        if let Ok(p) = usize::try_from(note.partition) {
            if self.applied.len() <= p {
                self.applied.resize(p + 1, -1);
            }
            self.applied[p] = self.applied[p].max(note.offset);
        }
        self.by_org
            .entry(note.organization_id.clone())
            .or_default()
            .push(Arc::clone(&note), self.limits.org_history);
        self.by_chat
            .entry((note.organization_id.clone(), note.chat_id.clone()))
            .or_default()
            .push(Arc::clone(&note), self.limits.chat_history);
        // Sent under the lock that pushed it: a stream that subscribed and then read the
        // history sees every note in one or the other (or both; the cursor skips repeats).
        let _ = self.feed.send(note);
    }
}

/// Which notifications a stream or list is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization(String),
    Chat(String, String),
}

impl Scope {
    pub fn includes(&self, note: &Note) -> bool {
        match self {
            Scope::Organization(org) => note.organization_id == *org,
            Scope::Chat(org, chat) => note.organization_id == *org && note.chat_id == *chat,
        }
    }
}

/// Where a stream starts: what it sends first, and the live feed after it.
#[derive(Debug)]
pub struct Start {
    /// Notes after the cursor still held, oldest first.
    pub backlog: Vec<Arc<Note>>,
    /// The position before the backlog.
    pub cursor: Cursor,
    /// The history no longer holds everything after the asked position.
    pub truncated: bool,
    /// The asked position named other partitions than the topic has (or was garbage):
    /// the stream starts from now.
    pub unknown_position: bool,
    pub feed: broadcast::Receiver<Arc<Note>>,
}

impl Tables {
    pub(super) fn notes(&self) -> MutexGuard<'_, Notes> {
        self.inner.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn apply_notification(&self, record: Followed<'_>) -> Result<(), String> {
        let Some(value) = record.value else {
            return Ok(());
        };
        let notification: AgentNotification = schemas::decode(value).map_err(|e| e.to_string())?;
        let mut json = schemas::codec::decode_json(value).map_err(|e| e.to_string())?.value;
        crate::money::trim_amounts(&mut json);
        let note = Note {
            partition: record.partition,
            offset: record.offset,
            organization_id: notification.organization_id,
            chat_id: notification.chat_id,
            at: notification.at.micros(),
            json: json.to_string(),
        };
        let mut notes = self.notes();
        notes.push(note);
        let held = notes.by_chat.len();
        drop(notes);
        self.inner
            .metrics
            .table_records
            .get_or_create(&super::table_label("notification-chats"))
            .set(held as i64);
        Ok(())
    }

    /// The scope's recent notifications, oldest first (by when they happened; the
    /// chats of an organization are read from several partitions), at most `limit`.
    pub fn recent_notifications(&self, scope: &Scope, limit: usize) -> Result<Vec<Arc<Note>>, NotLoaded> {
        Self::check(&self.inner.loaded.notifications, "notifications")?;
        let notes = self.notes();
        let history = match scope {
            Scope::Organization(org) => notes.by_org.get(org),
            Scope::Chat(org, chat) => notes.by_chat.get(&(org.clone(), chat.clone())),
        };
        let mut recent: Vec<Arc<Note>> = history.map(|h| h.notes.iter().cloned().collect()).unwrap_or_default();
        recent.sort_by_key(|n| (n.at, n.partition, n.offset));
        let skip = recent.len().saturating_sub(limit);
        Ok(recent.split_off(skip))
    }

    /// Starts a stream of `scope` after `last_event_id` (or from now).
    pub fn start_notifications(&self, scope: &Scope, last_event_id: Option<&str>) -> Result<Start, NotLoaded> {
        Self::check(&self.inner.loaded.notifications, "notifications")?;
        let notes = self.notes();
        let feed = notes.feed.subscribe();
        let now = Cursor(notes.applied.clone());
        let asked = last_event_id.map(|id| Cursor::parse(id, notes.partitions));
        let unknown_position = matches!(asked, Some(None));
        let Some(Some(cursor)) = asked else {
            return Ok(Start {
                backlog: Vec::new(),
                cursor: now,
                truncated: false,
                unknown_position,
                feed,
            });
        };
        let history = match scope {
            Scope::Organization(org) => notes.by_org.get(org),
            Scope::Chat(org, chat) => notes.by_chat.get(&(org.clone(), chat.clone())),
        };
        let (backlog, truncated) = history.map_or((Vec::new(), false), |h| {
            let backlog = h.notes.iter().filter(|n| cursor.is_before(n)).cloned().collect();
            (backlog, h.misses(&cursor))
        });
        Ok(Start {
            backlog,
            cursor,
            truncated,
            unknown_position: false,
            feed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(partition: i32, offset: i64, chat: &str) -> Note {
        Note {
            partition,
            offset,
            organization_id: "org_a".into(),
            chat_id: chat.into(),
            at: offset,
            json: "{}".into(),
        }
    }

    #[test]
    fn a_cursor_round_trips_and_refuses_another_partition_count() {
        let cursor = Cursor::parse("-1.12.7", 3).unwrap();
        assert_eq!(cursor.id(), "-1.12.7");
        assert_eq!(Cursor::parse("-1.12.7", 4), None);
        assert_eq!(Cursor::parse("1.x.2", 3), None);
        assert_eq!(Cursor::parse("1.-2.2", 3), None);
    }

    #[test]
    fn a_cursor_passes_notes_once() {
        let mut cursor = Cursor::parse("-1.5", 2).unwrap();
        assert!(cursor.is_before(&note(0, 0, "k")));
        assert!(!cursor.is_before(&note(1, 5, "k")));
        cursor.pass(&note(1, 9, "k"));
        assert!(!cursor.is_before(&note(1, 6, "k")));
        assert_eq!(cursor.id(), "-1.9");
    }

    #[test]
    fn a_history_knows_when_a_cursor_fell_behind_what_it_dropped() {
        let mut history = History::default();
        for offset in 0..5 {
            history.push(Arc::new(note(0, offset, "k")), 3);
        }
        assert_eq!(history.notes.len(), 3);
        assert!(history.misses(&Cursor::parse("0", 1).unwrap()), "1 was dropped");
        assert!(!history.misses(&Cursor::parse("1", 1).unwrap()));
    }

    #[test]
    fn a_stream_resumed_gets_exactly_what_came_after_its_position() {
        let tables = Tables::new(
            Limits {
                chat_history: 10,
                org_history: 10,
                stream_buffer: 16,
            },
            crate::metrics::ApiMetrics::default(),
        );
        tables.notes().set_partitions(2);
        tables
            .inner
            .loaded
            .notifications
            .store(true, std::sync::atomic::Ordering::Release);
        for (p, o, chat) in [(0, 0, "k1"), (1, 0, "k2"), (0, 1, "k1"), (1, 1, "k2")] {
            tables.notes().push(note(p, o, chat));
        }
        let org = Scope::Organization("org_a".into());
        let start = tables.start_notifications(&org, Some("0.-1")).unwrap();
        let got: Vec<(i32, i64)> = start.backlog.iter().map(|n| (n.partition, n.offset)).collect();
        assert_eq!(got, [(1, 0), (0, 1), (1, 1)]);
        let chat = Scope::Chat("org_a".into(), "k2".into());
        let start = tables.start_notifications(&chat, Some("1.0")).unwrap();
        let got: Vec<(i32, i64)> = start.backlog.iter().map(|n| (n.partition, n.offset)).collect();
        assert_eq!(got, [(1, 1)]);
        let fresh = tables.start_notifications(&org, None).unwrap();
        assert!(fresh.backlog.is_empty());
        assert_eq!(fresh.cursor.id(), "1.1");
        let garbage = tables.start_notifications(&org, Some("zzz")).unwrap();
        assert!(garbage.unknown_position && garbage.backlog.is_empty());
    }
}
