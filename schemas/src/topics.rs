//! Every topic of the pipeline (DESIGN.md section 3), in one place.
//!
//! A deployment may put a prefix in front of every name (`SALES_TOPIC_PREFIX`), so that
//! tests and side-by-side runs share one broker; [`TopicNames`] applies it.

use std::fmt;
use std::time::Duration;

/// Partition count of every topic unless the operator chooses another. Customer-keyed
/// topics must share one count to stay co-partitioned, so there is a single setting.
pub const DEFAULT_PARTITIONS: i32 = 6;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The topics of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    Organizations,
    EventsRaw,
    ChatSessions,
    OrdersById,
    Orders,
    Notifications,
    CustomerOrders,
    OrdersAttributed,
    Wins,
    ReportsDaily,
    DeadLetter,
    FxRatesDaily,
}

/// How a topic's records are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `org`
    Org,
    /// `org:customer`; topics with this key are co-partitioned.
    OrgCustomer,
    /// `org:order_id`
    OrgOrderId,
    /// `org:chat_id`
    OrgChatId,
    /// `org:date`
    OrgDate,
    /// `date:currency`
    DateCurrency,
    /// The key of the record that was dead-lettered, whatever it was.
    SourceKey,
}

/// What the broker does with old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// `cleanup.policy=compact`: the latest value per key is kept.
    Compact,
    /// `cleanup.policy=delete` with this `retention.ms`.
    Delete { retention: Duration },
}

impl Cleanup {
    /// The value of the topic's `cleanup.policy` config.
    pub fn policy(&self) -> &'static str {
        match self {
            Cleanup::Compact => "compact",
            Cleanup::Delete { .. } => "delete",
        }
    }

    /// The value of the topic's `retention.ms` config, when it sets one.
    pub fn retention_ms(&self) -> Option<u128> {
        match self {
            Cleanup::Compact => None,
            Cleanup::Delete { retention } => Some(retention.as_millis()),
        }
    }
}

/// A topic's contract: its name without prefix, key, value type and cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub topic: Topic,
    pub name: &'static str,
    pub key: KeyFormat,
    /// The Avro record type of the values.
    pub value: &'static str,
    pub cleanup: Cleanup,
}

impl Topic {
    /// Every topic, in the order of DESIGN.md section 3.
    pub const ALL: [Topic; 12] = [
        Topic::Organizations,
        Topic::EventsRaw,
        Topic::ChatSessions,
        Topic::OrdersById,
        Topic::Orders,
        Topic::Notifications,
        Topic::CustomerOrders,
        Topic::OrdersAttributed,
        Topic::Wins,
        Topic::ReportsDaily,
        Topic::DeadLetter,
        Topic::FxRatesDaily,
    ];

    pub fn spec(self) -> TopicSpec {
        use Cleanup::*;
        use KeyFormat::*;
        let (name, key, value, cleanup) = match self {
            Topic::Organizations => ("accounts.organizations", Org, "OrganizationSettings", Compact),
            Topic::EventsRaw => ("sales.events.raw", OrgCustomer, "WidgetEvent", days(7)),
            Topic::ChatSessions => ("chat.sessions", OrgCustomer, "ChatEvent", days(35)),
            Topic::OrdersById => ("sales.orders.by-id", OrgOrderId, "EnrichedOrder", days(7)),
            Topic::Orders => ("sales.orders", OrgCustomer, "EnrichedOrder", days(35)),
            Topic::Notifications => ("inbox.notifications", OrgChatId, "AgentNotification", days(7)),
            Topic::CustomerOrders => ("sales.customer-orders", OrgCustomer, "CustomerOrderSummary", Compact),
            Topic::OrdersAttributed => ("sales.orders.attributed", Org, "AttributedOrder", days(35)),
            Topic::Wins => ("sales.wins", Org, "WinsCounter", Compact),
            Topic::ReportsDaily => ("sales.reports.daily", OrgDate, "DailySalesReport", Compact),
            Topic::DeadLetter => ("sales.dead-letter", SourceKey, "DeadLetter", days(14)),
            Topic::FxRatesDaily => ("fx.rates.daily", DateCurrency, "ExchangeRate", Compact),
        };
        TopicSpec {
            topic: self,
            name,
            key,
            value,
            cleanup,
        }
    }

    /// The topic's name without any prefix.
    pub fn base_name(self) -> &'static str {
        self.spec().name
    }

    /// The topic whose unprefixed name is `name`.
    pub fn from_base_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.base_name() == name)
    }
}

fn days(n: u64) -> Cleanup {
    Cleanup::Delete {
        retention: DAY * n as u32,
    }
}

/// Why a topic prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPrefix(pub String);

impl fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidPrefix {}

/// Kafka's own limit on a topic name's length.
const MAX_TOPIC_NAME: usize = 249;

/// Topic names under one deployment's prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    /// Checks the prefix against Kafka's rules for topic names (`[A-Za-z0-9._-]`, and
    /// short enough that the longest topic name still fits), so that a bad prefix fails
    /// at start-up with its reason instead of at the first produce.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        if let Some(bad) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidPrefix(format!(
                "topic prefix {prefix:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
            )));
        }
        // Changelog topics (`<app>.<store>-changelog`) are longer than the fixed names;
        // keep generous room for them.
        let longest = Topic::ALL.iter().map(|t| t.base_name().len()).max().unwrap_or(0) + 64;
        if prefix.len() + longest > MAX_TOPIC_NAME {
            return Err(InvalidPrefix(format!(
                "topic prefix is {} characters; at most {} are allowed",
                prefix.len(),
                MAX_TOPIC_NAME - longest
            )));
        }
        Ok(TopicNames { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full name of `topic` under this prefix.
    pub fn name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.base_name())
    }

    /// The topic a full name refers to under this prefix, if any.
    pub fn parse(&self, full_name: &str) -> Option<Topic> {
        full_name.strip_prefix(&self.prefix).and_then(Topic::from_base_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_a_distinct_name() {
        let mut names: Vec<_> = Topic::ALL.iter().map(|t| t.base_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Topic::ALL.len());
    }

    #[test]
    fn the_prefix_goes_in_front_of_every_name_and_parses_back() {
        let names = TopicNames::new("t-1.").unwrap();
        for topic in Topic::ALL {
            let full = names.name(topic);
            assert!(full.starts_with("t-1."));
            assert_eq!(names.parse(&full), Some(topic));
        }
        assert_eq!(names.parse("sales.orders"), None);
    }

    #[test]
    fn compacted_topics_are_the_tables_of_the_design() {
        let compacted: Vec<_> = Topic::ALL
            .into_iter()
            .filter(|t| t.spec().cleanup == Cleanup::Compact)
            .map(Topic::base_name)
            .collect();
        assert_eq!(
            compacted,
            [
                "accounts.organizations",
                "sales.customer-orders",
                "sales.wins",
                "sales.reports.daily",
                "fx.rates.daily"
            ]
        );
    }

    #[test]
    fn retention_of_the_raw_events_is_seven_days() {
        assert_eq!(Topic::EventsRaw.spec().cleanup.retention_ms(), Some(604_800_000));
        assert_eq!(Topic::ChatSessions.spec().cleanup.retention_ms(), Some(3_024_000_000));
    }

    #[test]
    fn a_prefix_with_a_slash_is_refused_with_its_reason() {
        let err = TopicNames::new("a/b").unwrap_err();
        assert!(err.0.contains("'/'"), "{err}");
    }

    #[test]
    fn an_overlong_prefix_is_refused() {
        assert!(TopicNames::new("x".repeat(200)).is_err());
        assert!(TopicNames::new("x".repeat(100)).is_ok());
    }
}
