//! A customer's chats, built from the chat platform's events in whatever order they
//! arrive, and the questions asked of them.

use schemas::records::{AgentJoin, ChatEvent, ChatEventKind, ChatState, CustomerChats};
use schemas::values::Timestamp;

/// How many chat event ids a customer's entry remembers, to drop a replayed event.
/// Applying an event twice changes nothing anyway (starts, ends and joins keep their
/// earliest time); the ids make that explicit and cheap.
pub const REMEMBERED_EVENT_IDS: usize = 32;

/// Applies one chat event to a customer's chats. Returns `false` when the event was
/// already applied.
///
/// Events may come in any order: a join before its chat's start, an end before a join.
/// A chat keeps the earliest start, end and join time it is told of, so applying the
/// same events in any order gives the same chats.
pub fn apply(chats: &mut CustomerChats, event: &ChatEvent) -> bool {
    if chats.event_ids.contains(&event.event_id) {
        return false;
    }
    chats.event_ids.push(event.event_id.clone());
    if chats.event_ids.len() > REMEMBERED_EVENT_IDS {
        let excess = chats.event_ids.len() - REMEMBERED_EVENT_IDS;
        chats.event_ids.drain(..excess);
    }
    let chat = match chats.chats.iter().position(|c| c.chat_id == event.chat_id) {
        Some(index) => &mut chats.chats[index],
        None => {
            chats.chats.push(new_chat(&event.chat_id));
            chats.chats.last_mut().expect("just pushed")
        }
    };
    apply_to_chat(chat, event);
    true
}

/// A chat known by its id only, before any of its events is applied.
pub fn new_chat(chat_id: &str) -> ChatState {
    ChatState {
        chat_id: chat_id.to_string(),
        team_id: None,
        started_at: None,
        ended_at: None,
        agents: Vec::new(),
    }
}

/// Applies one event of a chat to it: the earliest start (with its team), the earliest
/// end, and each agent's earliest join are kept, so any order of events, and any replay,
/// gives the same chat.
pub fn apply_to_chat(chat: &mut ChatState, event: &ChatEvent) {
    match event.kind {
        ChatEventKind::ChatStarted => {
            if chat.started_at.is_none_or(|at| event.at < at) {
                chat.started_at = Some(event.at);
                // The team of a chat is its team at start.
                chat.team_id = event.team_id.clone();
            }
        }
        ChatEventKind::ChatEnded => {
            chat.ended_at = Some(chat.ended_at.map_or(event.at, |at| at.min(event.at)));
        }
        ChatEventKind::AgentJoined => {
            if let Some(agent) = &event.agent {
                match chat.agents.iter_mut().find(|j| j.agent.id == agent.id) {
                    Some(join) if event.at < join.joined_at => {
                        join.joined_at = event.at;
                        join.agent.kind = agent.kind;
                    }
                    Some(_) => {}
                    None => chat.agents.push(AgentJoin {
                        agent: agent.clone(),
                        joined_at: event.at,
                    }),
                }
                chat.agents
                    .sort_by(|a, b| (a.joined_at, &a.agent.id).cmp(&(b.joined_at, &b.agent.id)));
            }
        }
    }
}

/// Whether `chat` is live at `at`: started at or before it, not yet ended, and with an
/// agent who had joined by then. A chat ends at its `ended_at`: an event at that very
/// microsecond comes after the chat.
pub fn is_active_at(chat: &ChatState, at: Timestamp) -> bool {
    chat.started_at.is_some_and(|start| start <= at)
        && chat.ended_at.is_none_or(|end| at < end)
        && chat.agents.iter().any(|join| join.joined_at <= at)
}

/// The chat whose agents should hear of what the customer does at `at`: among the chats
/// active then, the one that started last (on equal starts, the greater chat id), the
/// same tie-break as attribution's last touch.
pub fn active_chat(chats: &CustomerChats, at: Timestamp) -> Option<&ChatState> {
    chats
        .chats
        .iter()
        .filter(|chat| is_active_at(chat, at))
        .max_by(|a, b| (a.started_at, &a.chat_id).cmp(&(b.started_at, &b.chat_id)))
}

/// The moment after which a chat is of no more use once `retention` has passed: its end,
/// or for a chat never seen to end, the last thing heard of it (an open chat silent for
/// the whole retention is taken as abandoned, so a lost `chat_ended` cannot pin it in
/// memory forever).
pub fn settled_at(chat: &ChatState) -> Timestamp {
    if let Some(end) = chat.ended_at {
        return end;
    }
    let joins = chat.agents.iter().map(|j| j.joined_at);
    chat.started_at
        .into_iter()
        .chain(joins)
        .max()
        .unwrap_or(Timestamp(i64::MIN))
}

/// Drops the chats settled more than `retention_micros` before `now` (event time), and
/// returns when the whole entry may go: when its last chat leaves. `None` when no chat
/// is left.
pub fn prune(chats: &mut CustomerChats, now: Timestamp, retention_micros: i64) -> Option<Timestamp> {
    let expiry = |chat: &ChatState| Timestamp(settled_at(chat).micros().saturating_add(retention_micros));
    chats.chats.retain(|chat| expiry(chat) >= now);
    chats.chats.iter().map(expiry).max()
}

#[cfg(test)]
mod tests {
    use schemas::records::{Agent, AgentKind};

    use super::*;

    const MINUTE: i64 = 60_000_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    fn t(minutes: i64) -> Timestamp {
        Timestamp(1_800_000_000_000_000 + minutes * MINUTE)
    }

    fn event(id: &str, chat: &str, kind: ChatEventKind, at: Timestamp) -> ChatEvent {
        ChatEvent {
            event_id: id.into(),
            organization_id: "org".into(),
            customer_id: "c".into(),
            chat_id: chat.into(),
            kind,
            at,
            team_id: (kind == ChatEventKind::ChatStarted).then(|| "sales".into()),
            agent: (kind == ChatEventKind::AgentJoined).then(|| Agent {
                id: format!("agent-{id}"),
                kind: AgentKind::Human,
            }),
        }
    }

    /// A chat started at `start`, joined at `join` (if any), ended at `end` (if any).
    fn chats_with(list: &[(&str, i64, Option<i64>, Option<i64>)]) -> CustomerChats {
        let mut chats = CustomerChats::default();
        for (chat, start, join, end) in list {
            apply(
                &mut chats,
                &event(&format!("{chat}-s"), chat, ChatEventKind::ChatStarted, t(*start)),
            );
            if let Some(join) = join {
                apply(
                    &mut chats,
                    &event(&format!("{chat}-j"), chat, ChatEventKind::AgentJoined, t(*join)),
                );
            }
            if let Some(end) = end {
                apply(
                    &mut chats,
                    &event(&format!("{chat}-e"), chat, ChatEventKind::ChatEnded, t(*end)),
                );
            }
        }
        chats
    }

    fn active_id(chats: &CustomerChats, at: Timestamp) -> Option<&str> {
        active_chat(chats, at).map(|c| c.chat_id.as_str())
    }

    #[test]
    fn an_order_before_the_chat_started_has_no_live_chat() {
        let chats = chats_with(&[("k1", 10, Some(11), Some(30))]);
        assert_eq!(active_id(&chats, t(9)), None);
    }

    #[test]
    fn an_order_during_the_chat_goes_to_it_once_an_agent_has_joined() {
        let chats = chats_with(&[("k1", 10, Some(11), Some(30))]);
        assert_eq!(active_id(&chats, t(10)), None, "started, but nobody has joined yet");
        assert_eq!(
            active_id(&chats, t(11)),
            Some("k1"),
            "the join's own microsecond counts"
        );
        assert_eq!(active_id(&chats, t(20)), Some("k1"));
    }

    #[test]
    fn an_order_after_the_chat_ended_has_no_live_chat() {
        let chats = chats_with(&[("k1", 10, Some(11), Some(30))]);
        assert_eq!(active_id(&chats, Timestamp(t(30).micros() - 1)), Some("k1"));
        assert_eq!(
            active_id(&chats, t(30)),
            None,
            "the end's own microsecond is after the chat"
        );
        assert_eq!(active_id(&chats, t(31)), None);
    }

    #[test]
    fn with_two_chats_open_the_one_started_last_wins() {
        let chats = chats_with(&[("k1", 10, Some(11), None), ("k2", 15, Some(16), None)]);
        assert_eq!(active_id(&chats, t(12)), Some("k1"));
        assert_eq!(active_id(&chats, t(20)), Some("k2"));
        let tied = chats_with(&[("b", 10, Some(11), None), ("a", 10, Some(11), None)]);
        assert_eq!(active_id(&tied, t(12)), Some("b"), "equal starts: the greater chat id");
    }

    #[test]
    fn a_chat_no_agent_joined_has_no_one_to_notify() {
        let chats = chats_with(&[("k1", 10, None, None)]);
        assert_eq!(active_id(&chats, t(20)), None);
        let both = chats_with(&[("k1", 10, Some(11), None), ("k2", 15, None, None)]);
        assert_eq!(
            active_id(&both, t(20)),
            Some("k1"),
            "the unjoined later chat does not hide the joined one"
        );
    }

    #[test]
    fn events_out_of_order_and_replayed_give_the_same_chats() {
        let events = [
            event("e", "k1", ChatEventKind::ChatEnded, t(30)),
            event("j", "k1", ChatEventKind::AgentJoined, t(11)),
            event("s", "k1", ChatEventKind::ChatStarted, t(10)),
        ];
        let mut forward = CustomerChats::default();
        for e in events.iter().rev() {
            assert!(apply(&mut forward, e));
        }
        let mut backward = CustomerChats::default();
        for e in &events {
            apply(&mut backward, e);
        }
        assert!(!apply(&mut backward, &events[1]), "a replay is recognised");
        assert_eq!(forward.chats, backward.chats);
        assert_eq!(active_id(&backward, t(20)), Some("k1"));
    }

    #[test]
    fn the_remembered_event_ids_are_bounded() {
        let mut chats = CustomerChats::default();
        for i in 0..100 {
            apply(
                &mut chats,
                &event(&format!("e{i}"), "k", ChatEventKind::AgentJoined, t(i)),
            );
        }
        assert_eq!(chats.event_ids.len(), REMEMBERED_EVENT_IDS);
        assert_eq!(chats.event_ids.last().map(String::as_str), Some("e99"));
    }

    #[test]
    fn ended_chats_leave_after_the_retention_and_the_entry_with_the_last() {
        let mut chats = chats_with(&[("old", 0, Some(1), Some(10)), ("new", 100, Some(101), Some(200))]);
        let retention = 30 * DAY;
        let expiry = prune(&mut chats, t(10 + 30 * 24 * 60), retention);
        assert_eq!(
            chats.chats.len(),
            2,
            "exactly at its end plus the retention, a chat is kept"
        );
        assert_eq!(expiry, Some(Timestamp(t(200).micros() + retention)));
        prune(&mut chats, Timestamp(t(10).micros() + retention + 1), retention);
        assert_eq!(chats.chats.len(), 1);
        assert_eq!(
            prune(&mut chats, Timestamp(t(200).micros() + retention + 1), retention),
            None
        );
        assert!(chats.chats.is_empty());
    }

    #[test]
    fn an_open_chat_is_kept_while_it_is_heard_of() {
        let mut chats = chats_with(&[("open", 0, Some(5), None)]);
        let retention = 30 * DAY;
        assert_eq!(
            prune(&mut chats, t(60), retention),
            Some(Timestamp(t(5).micros() + retention))
        );
        prune(&mut chats, Timestamp(t(5).micros() + retention + 1), retention);
        assert!(chats.chats.is_empty(), "silent for the whole retention: abandoned");
    }
}
