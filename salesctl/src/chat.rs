//! `salesctl chat open|end`: writes a customer's chat events to `chat.sessions`, as the
//! chat platform does. For demos and trials: a chat opened here for the customer a
//! store's page names receives that page's cart and order notifications.

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use kafka_runtime::config::KafkaArgs;
use schemas::records::{Agent, AgentKind, ChatEvent, ChatEventKind};
use schemas::topics::Topic;
use schemas::values::Timestamp;

use crate::write;

#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Start a chat of a customer and have an agent join it, now.
    Open(OpenArgs),
    /// End a customer's chat, now.
    End(ChatArgs),
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The organization id.
    #[arg(long, env = "SALESCTL_CHAT_ORG")]
    pub org: String,

    /// The customer id, as the store's pages name the customer.
    #[arg(long, env = "SALESCTL_CHAT_CUSTOMER")]
    pub customer: String,

    /// The chat id.
    #[arg(long, env = "SALESCTL_CHAT_ID")]
    pub chat: String,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[command(flatten)]
    pub chat: ChatArgs,

    /// Who joins the chat: an AI agent or a person.
    #[arg(long, env = "SALESCTL_CHAT_AGENT", value_enum, default_value = "ai")]
    pub agent: AgentArg,

    /// The agent's id.
    #[arg(long, env = "SALESCTL_CHAT_AGENT_ID", default_value = "agent-1")]
    pub agent_id: String,

    /// The team the chat is routed to.
    #[arg(long, env = "SALESCTL_CHAT_TEAM")]
    pub team: Option<String>,
}

/// `--agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentArg {
    Ai,
    Human,
}

/// The chat events a command writes, in order, each checked by the chat contract.
pub fn events(command: &ChatCommand, at: Timestamp) -> anyhow::Result<Vec<ChatEvent>> {
    let event = |args: &ChatArgs, kind, team_id, agent| ChatEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        organization_id: args.org.clone(),
        customer_id: args.customer.clone(),
        chat_id: args.chat.clone(),
        kind,
        at,
        team_id,
        agent,
    };
    let events = match command {
        ChatCommand::Open(open) => {
            let agent = Agent {
                id: open.agent_id.clone(),
                kind: match open.agent {
                    AgentArg::Ai => AgentKind::Ai,
                    AgentArg::Human => AgentKind::Human,
                },
            };
            vec![
                event(&open.chat, ChatEventKind::ChatStarted, open.team.clone(), None),
                event(&open.chat, ChatEventKind::AgentJoined, None, Some(agent)),
            ]
        }
        ChatCommand::End(args) => vec![event(args, ChatEventKind::ChatEnded, None, None)],
    };
    for event in &events {
        schemas::validation::validate_chat_event(event).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(events)
}

pub async fn run(kafka: &KafkaArgs, command: ChatCommand) -> anyhow::Result<()> {
    let events = events(&command, Timestamp::from_datetime(chrono::Utc::now()))?;
    let topic = kafka.topic_names()?.name(Topic::ChatSessions);
    let producer = write::producer(kafka, "salesctl-chat")?;
    for event in &events {
        let key = schemas::keys::org_customer(&event.organization_id, &event.customer_id);
        let written = write::send(&producer, kafka, &topic, &key, &schemas::encode(event)?).await?;
        println!(
            "chat {} of {} in {}: {} written to {topic} (partition {}, offset {})",
            event.chat_id,
            event.customer_id,
            event.organization_id,
            kind_name(event.kind),
            written.partition,
            written.offset
        );
    }
    Ok(())
}

/// The kind as the contract spells it.
fn kind_name(kind: ChatEventKind) -> &'static str {
    match kind {
        ChatEventKind::ChatStarted => "chat_started",
        ChatEventKind::AgentJoined => "agent_joined",
        ChatEventKind::ChatEnded => "chat_ended",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ChatCommand,
    }

    fn events_of(args: &[&str]) -> anyhow::Result<Vec<ChatEvent>> {
        events(&Cli::try_parse_from([&["x"], args].concat())?.command, Timestamp(7))
    }

    #[test]
    fn open_starts_the_chat_and_an_agent_joins_it_at_once() {
        let events = events_of(&[
            "open",
            "--org",
            "org_1",
            "--customer",
            "c-1",
            "--chat",
            "k-1",
            "--team",
            "sales",
        ])
        .unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [ChatEventKind::ChatStarted, ChatEventKind::AgentJoined]);
        assert!(events.iter().all(|e| e.at == Timestamp(7) && e.chat_id == "k-1"));
        assert_eq!(events[0].team_id.as_deref(), Some("sales"));
        assert_eq!(events[1].agent.as_ref().map(|a| a.kind), Some(AgentKind::Ai));
        assert_ne!(events[0].event_id, events[1].event_id);
    }

    #[test]
    fn end_ends_it() {
        let events = events_of(&["end", "--org", "org_1", "--customer", "c-1", "--chat", "k-1"]).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, ChatEventKind::ChatEnded);
    }

    #[test]
    fn ids_the_contract_refuses_are_refused() {
        let error = events_of(&["open", "--org", "not an org!", "--customer", "c-1", "--chat", "k-1"]).unwrap_err();
        assert!(error.to_string().contains("organization_id"), "{error}");
    }
}
