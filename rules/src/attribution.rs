//! Attribution (DESIGN.md section 4): the chat that earned an order, if any.
//!
//! An order at T of customer C is attributed to the chat K of C with
//! `K.started_at ≤ T ≤ K.ended_at + window` (an open chat has no end) in which at least
//! one agent had joined at or before T; among several, the one that started last (on
//! equal starts, the greater chat id). Only agents that joined at or before T count.

use schemas::records::{Agent, AgentKind, Attribution, ChatState, HandledBy, SaleTiming};
use schemas::values::Timestamp;

/// Thirty days, the attribution window of the design, in microseconds.
pub const DEFAULT_WINDOW_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;

/// Whether `chat` may claim an order placed at `at`.
pub fn is_eligible(chat: &ChatState, at: Timestamp, window_micros: i64) -> bool {
    let Some(start) = chat.started_at else {
        return false;
    };
    start <= at
        && chat
            .ended_at
            .is_none_or(|end| at.micros() <= end.micros().saturating_add(window_micros))
        && chat.agents.iter().any(|join| join.joined_at <= at)
}

/// The attribution of an order placed at `at` among `chats` (the customer's), or `None`
/// when no chat qualifies.
pub fn attribute<'a>(
    chats: impl IntoIterator<Item = &'a ChatState>,
    at: Timestamp,
    window_micros: i64,
) -> Option<Attribution> {
    let chat = chats
        .into_iter()
        .filter(|chat| is_eligible(chat, at, window_micros))
        .max_by(|a, b| (a.started_at, &a.chat_id).cmp(&(b.started_at, &b.chat_id)))?;
    let started_at = chat.started_at?;
    let agents: Vec<Agent> = chat
        .agents
        .iter()
        .filter(|join| join.joined_at <= at)
        .map(|join| join.agent.clone())
        .collect();
    let ai = agents.iter().any(|a| a.kind == AgentKind::Ai);
    let human = agents.iter().any(|a| a.kind == AgentKind::Human);
    let handled_by = match (ai, human) {
        (true, true) => HandledBy::AiAndHuman,
        (true, false) => HandledBy::AiOnly,
        _ => HandledBy::HumanOnly,
    };
    let sale_timing = match chat.ended_at {
        Some(end) if at > end => SaleTiming::AfterChat,
        _ => SaleTiming::DuringChat,
    };
    Some(Attribution {
        chat_id: chat.chat_id.clone(),
        team_id: chat.team_id.clone(),
        chat_started_at: started_at,
        // Only an end already past at T: whether a later end has arrived yet depends on
        // when the order is decided, and the record must not.
        chat_ended_at: chat.ended_at.filter(|end| *end <= at),
        agents,
        handled_by,
        ai_agent_chat: ai,
        sale_timing,
        time_to_order_micros: at.micros() - started_at.micros(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use schemas::records::{ChatEvent, ChatEventKind};

    use super::*;
    use crate::chats::{apply_to_chat, new_chat};

    const SECOND: i64 = 1_000_000;
    const DAY: i64 = 24 * 3600 * SECOND;
    const W: i64 = DEFAULT_WINDOW_MICROS;
    const T0: i64 = 1_800_000_000_000_000;

    fn agent(id: &str, kind: AgentKind) -> Agent {
        Agent { id: id.into(), kind }
    }

    fn ev(chat: &str, kind: ChatEventKind, at: i64, agent: Option<Agent>) -> ChatEvent {
        ChatEvent {
            event_id: format!("{chat}-{kind:?}-{at}"),
            organization_id: "org".into(),
            customer_id: "c".into(),
            chat_id: chat.into(),
            kind,
            at: Timestamp(at),
            team_id: (kind == ChatEventKind::ChatStarted).then(|| format!("team-{chat}")),
            agent,
        }
    }

    /// A chat from its events.
    fn chat(id: &str, start: i64, joins: &[(&str, AgentKind, i64)], end: Option<i64>) -> ChatState {
        let mut chat = new_chat(id);
        apply_to_chat(&mut chat, &ev(id, ChatEventKind::ChatStarted, start, None));
        for (agent_id, kind, at) in joins {
            apply_to_chat(
                &mut chat,
                &ev(id, ChatEventKind::AgentJoined, *at, Some(agent(agent_id, *kind))),
            );
        }
        if let Some(end) = end {
            apply_to_chat(&mut chat, &ev(id, ChatEventKind::ChatEnded, end, None));
        }
        chat
    }

    fn human(at: i64) -> [(&'static str, AgentKind, i64); 1] {
        [("ana", AgentKind::Human, at)]
    }

    #[test]
    fn an_order_exactly_at_the_chat_start_is_attributed_once_an_agent_is_there() {
        let k = chat("k", T0, &human(T0), Some(T0 + 600 * SECOND));
        let a = attribute([&k], Timestamp(T0), W).unwrap();
        assert_eq!(a.time_to_order_micros, 0);
        assert_eq!(a.sale_timing, SaleTiming::DuringChat);
        let late_join = chat("k", T0, &human(T0 + 1), None);
        assert_eq!(attribute([&late_join], Timestamp(T0), W), None);
    }

    #[test]
    fn the_window_ends_exactly_30_days_after_the_chat_ended() {
        let end = T0 + 3600 * SECOND;
        let k = chat("k", T0, &human(T0 + SECOND), Some(end));
        let last = attribute([&k], Timestamp(end + 30 * DAY), W).unwrap();
        assert_eq!(last.sale_timing, SaleTiming::AfterChat);
        assert_eq!(last.time_to_order_micros, end + 30 * DAY - T0);
        assert_eq!(
            attribute([&k], Timestamp(end + 30 * DAY + 1), W),
            None,
            "one microsecond later"
        );
        let at_end = attribute([&k], Timestamp(end), W).unwrap();
        assert_eq!(
            at_end.sale_timing,
            SaleTiming::DuringChat,
            "at the end's own microsecond"
        );
        assert_eq!(
            attribute([&k], Timestamp(end + 1), W).unwrap().sale_timing,
            SaleTiming::AfterChat
        );
    }

    #[test]
    fn before_the_chat_started_nothing_is_attributed() {
        let k = chat("k", T0, &human(T0), None);
        assert_eq!(attribute([&k], Timestamp(T0 - 1), W), None);
    }

    #[test]
    fn overlapping_chats_go_to_the_one_started_last_and_ties_to_the_greater_id() {
        let early = chat("a", T0, &human(T0), None);
        let late = chat("b", T0 + 10 * SECOND, &human(T0 + 10 * SECOND), Some(T0 + 20 * SECOND));
        assert_eq!(
            attribute([&early, &late], Timestamp(T0 + 5 * SECOND), W)
                .unwrap()
                .chat_id,
            "a"
        );
        let a = attribute([&early, &late], Timestamp(T0 + 30 * SECOND), W).unwrap();
        assert_eq!(
            a.chat_id, "b",
            "the later chat, even though it ended and the earlier is open"
        );
        assert_eq!(a.sale_timing, SaleTiming::AfterChat);
        let twin = chat("c", T0, &human(T0), None);
        assert_eq!(
            attribute([&twin, &early], Timestamp(T0 + SECOND), W).unwrap().chat_id,
            "c"
        );
    }

    #[test]
    fn a_chat_no_agent_joined_earns_nothing_and_does_not_hide_an_older_one() {
        let joined = chat("a", T0, &human(T0), Some(T0 + 60 * SECOND));
        let unjoined = chat("b", T0 + 120 * SECOND, &[], Some(T0 + 180 * SECOND));
        assert_eq!(attribute([&unjoined], Timestamp(T0 + 150 * SECOND), W), None);
        let a = attribute([&joined, &unjoined], Timestamp(T0 + 150 * SECOND), W).unwrap();
        assert_eq!(a.chat_id, "a");
    }

    #[test]
    fn only_agents_joined_by_the_order_count_for_handled_by_and_the_ai_flag() {
        let k = chat(
            "k",
            T0,
            &[("bot", AgentKind::Ai, T0), ("ana", AgentKind::Human, T0 + 100 * SECOND)],
            None,
        );
        let early = attribute([&k], Timestamp(T0 + 50 * SECOND), W).unwrap();
        assert_eq!(early.handled_by, HandledBy::AiOnly);
        assert!(early.ai_agent_chat);
        assert_eq!(early.agents, [agent("bot", AgentKind::Ai)]);
        let later = attribute([&k], Timestamp(T0 + 100 * SECOND), W).unwrap();
        assert_eq!(later.handled_by, HandledBy::AiAndHuman);
        assert_eq!(later.agents.len(), 2);
        let people = chat("p", T0, &human(T0), None);
        let a = attribute([&people], Timestamp(T0 + 1), W).unwrap();
        assert_eq!((a.handled_by, a.ai_agent_chat), (HandledBy::HumanOnly, false));
        assert_eq!(a.team_id.as_deref(), Some("team-p"));
    }

    /// The reference: straight from the raw events, every chat scanned, no shared code.
    fn reference(events: &[ChatEvent], at: i64, window: i64) -> Option<(String, i64, Vec<String>, SaleTiming)> {
        let mut ids: Vec<&str> = events.iter().map(|e| e.chat_id.as_str()).collect();
        ids.sort();
        ids.dedup();
        let mut best: Option<(i64, &str, Option<i64>)> = None;
        for id in ids {
            let of = |kind: ChatEventKind| events.iter().filter(move |e| e.chat_id == id && e.kind == kind);
            let Some(start) = of(ChatEventKind::ChatStarted).map(|e| e.at.0).min() else {
                continue;
            };
            let end = of(ChatEventKind::ChatEnded).map(|e| e.at.0).min();
            let joined = of(ChatEventKind::AgentJoined).any(|e| e.at.0 <= at);
            let in_window = start <= at && end.is_none_or(|end| at <= end + window);
            if joined && in_window && best.is_none_or(|(s, i, _)| (start, id) > (s, i)) {
                best = Some((start, id, end));
            }
        }
        let (start, id, end) = best?;
        let mut agents: Vec<(i64, String)> = Vec::new();
        for e in events
            .iter()
            .filter(|e| e.chat_id == id && e.kind == ChatEventKind::AgentJoined)
        {
            let agent = e.agent.as_ref().unwrap().id.clone();
            match agents.iter_mut().find(|(_, a)| *a == agent) {
                Some(kept) => kept.0 = kept.0.min(e.at.0),
                None => agents.push((e.at.0, agent)),
            }
        }
        agents.retain(|(joined, _)| *joined <= at);
        agents.sort();
        let timing = if end.is_some_and(|end| at > end) {
            SaleTiming::AfterChat
        } else {
            SaleTiming::DuringChat
        };
        Some((
            id.to_string(),
            at - start,
            agents.into_iter().map(|(_, a)| a).collect(),
            timing,
        ))
    }

    fn timeline() -> impl Strategy<Value = (Vec<ChatEvent>, Vec<i64>)> {
        // Times on a coarse grid of hours over ~70 days, so that starts, ends, joins,
        // orders and the window's edge often coincide to the microsecond.
        let hour = 3600 * SECOND;
        let time = (0i64..1700).prop_map(move |h| T0 + h * hour);
        let event = (0usize..4, 0usize..3, time.clone(), 0usize..3, any::<bool>()).prop_map(
            |(chat, kind, at, agent_no, ai)| {
                let chat = format!("k{chat}");
                let kind = [
                    ChatEventKind::ChatStarted,
                    ChatEventKind::AgentJoined,
                    ChatEventKind::ChatEnded,
                ][kind];
                let agent = (kind == ChatEventKind::AgentJoined).then(|| {
                    agent(
                        &format!("agent{agent_no}"),
                        if ai { AgentKind::Ai } else { AgentKind::Human },
                    )
                });
                ev(&chat, kind, at, agent)
            },
        );
        (
            proptest::collection::vec(event, 0..14),
            proptest::collection::vec(time, 1..6),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_rule_agrees_with_a_brute_force_scan_of_every_chat((events, orders) in timeline()) {
            // An agent's kind must not change between its joins for the reference's
            // agent list to compare by id; keep the first kind per agent id.
            let mut events = events;
            let mut kinds: Vec<(String, AgentKind)> = Vec::new();
            for e in events.iter_mut() {
                if let Some(a) = e.agent.as_mut() {
                    match kinds.iter().find(|(id, _)| *id == a.id) {
                        Some((_, kind)) => a.kind = *kind,
                        None => kinds.push((a.id.clone(), a.kind)),
                    }
                }
            }
            let mut chats: Vec<ChatState> = Vec::new();
            for e in &events {
                match chats.iter_mut().find(|c| c.chat_id == e.chat_id) {
                    Some(chat) => apply_to_chat(chat, e),
                    None => {
                        let mut chat = new_chat(&e.chat_id);
                        apply_to_chat(&mut chat, e);
                        chats.push(chat);
                    }
                }
            }
            for at in orders {
                let got = attribute(&chats, Timestamp(at), W)
                    .map(|a| (a.chat_id, a.time_to_order_micros, a.agents.into_iter().map(|a| a.id).collect::<Vec<_>>(), a.sale_timing));
                prop_assert_eq!(got, reference(&events, at, W));
            }
        }
    }
}
