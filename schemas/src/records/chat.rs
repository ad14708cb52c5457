//! `chat.sessions`: the chat platform's contract with us, shaped as DESIGN.md fixes it.

use serde::{Deserialize, Serialize};

use crate::values::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct ChatEvent {
    pub event_id: String,
    pub organization_id: String,
    pub customer_id: String,
    pub chat_id: String,
    pub kind: ChatEventKind,
    pub at: Timestamp,
    /// On `chat_started`.
    pub team_id: Option<String>,
    /// On `agent_joined`.
    pub agent: Option<Agent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ChatEventKind {
    ChatStarted,
    AgentJoined,
    ChatEnded,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
pub struct Agent {
    pub id: String,
    pub kind: AgentKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "arbitrary"), derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Human,
    Ai,
}
