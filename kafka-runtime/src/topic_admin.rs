//! Creates the pipeline's topics and checks the ones that already exist.
//!
//! Creation is idempotent: a topic that exists with the right partition count and
//! cleanup policy is left alone. One that exists with the wrong partition count or
//! cleanup policy is reported as a problem, never accepted: a wrong partition count
//! breaks co-partitioning and a wrong cleanup policy loses state or keeps it forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use schemas::topics::{Topic, TopicSpec};

use crate::config::KafkaArgs;
use crate::error::{Error, Result};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The first request: how long to wait for an unreachable broker before saying so.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// What was found or done for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    /// It existed and matches; `notes` are differences that are not errors (a retention
    /// an operator tuned on purpose, say).
    Exists {
        notes: Vec<String>,
    },
    /// It exists but cannot be used as it is.
    Mismatch {
        problems: Vec<String>,
    },
}

/// The outcome for every topic, in catalogue order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsReport {
    pub topics: Vec<(String, TopicOutcome)>,
}

impl TopicsReport {
    pub fn created(&self) -> usize {
        self.topics.iter().filter(|(_, o)| *o == TopicOutcome::Created).count()
    }

    pub fn problems(&self) -> impl Iterator<Item = (&str, &str)> {
        self.topics.iter().flat_map(|(name, outcome)| match outcome {
            TopicOutcome::Mismatch { problems } => problems.iter().map(|p| (name.as_str(), p.as_str())).collect(),
            _ => Vec::new(),
        })
    }
}

/// What the broker says about an existing topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: i32,
    pub cleanup_policy: Option<String>,
    pub retention_ms: Option<String>,
}

/// Compares an existing topic with its contract. Pure, so the rules are tested without
/// a broker.
pub fn verify(spec: &TopicSpec, partitions: i32, observed: &ObservedTopic) -> TopicOutcome {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if observed.partitions != partitions {
        problems.push(format!(
            "has {} partitions, expected {partitions}; co-partitioned topics must share one count (recreate it, or run with --partitions {})",
            observed.partitions, observed.partitions
        ));
    }
    let expected_policy = spec.cleanup.policy();
    match observed.cleanup_policy.as_deref() {
        Some(policy) if policy == expected_policy => {}
        Some(policy) => problems.push(format!("has cleanup.policy={policy}, expected {expected_policy}")),
        None => problems.push(format!("reports no cleanup.policy, expected {expected_policy}")),
    }
    if let Some(expected) = spec.cleanup.retention_ms() {
        let actual = observed.retention_ms.as_deref().unwrap_or("unknown");
        if actual != expected.to_string() {
            notes.push(format!("retention.ms={actual}, the default is {expected}"));
        }
    }
    if problems.is_empty() {
        TopicOutcome::Exists { notes }
    } else {
        TopicOutcome::Mismatch { problems }
    }
}

/// Creates every missing topic with `partitions` partitions and checks the existing ones.
pub async fn ensure_topics(kafka: &KafkaArgs, partitions: i32, replication: i32) -> Result<TopicsReport> {
    if partitions < 1 {
        return Err(Error::Config(format!(
            "--partitions must be at least 1, got {partitions}"
        )));
    }
    if replication < 1 {
        return Err(Error::Config(format!(
            "--replication-factor must be at least 1, got {replication}"
        )));
    }
    let names = kafka.topic_names()?;
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        kafka
            .client_config("salesctl-admin")
            .create()
            .map_err(|e| Error::kafka("cannot create the admin client", e))?,
    );
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));

    let existing = topic_partitions(&admin).await.map_err(|e| match e {
        Error::Kafka { source, .. } => Error::kafka(
            format!(
                "cannot read cluster metadata from {} (is Kafka running there?)",
                kafka.bootstrap_servers
            ),
            source,
        ),
        other => other,
    })?;
    // (full name, contract, retention.ms as the broker wants it)
    let wanted: Vec<(String, TopicSpec, Option<String>)> = Topic::ALL
        .iter()
        .map(|t| {
            (
                names.name(*t),
                t.spec(),
                t.spec().cleanup.retention_ms().map(|ms| ms.to_string()),
            )
        })
        .collect();
    let to_create: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|(name, _, _)| !existing.contains_key(name))
        .map(|(name, spec, retention)| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                .set("cleanup.policy", spec.cleanup.policy());
            match retention {
                Some(ms) => topic.set("retention.ms", ms),
                None => topic,
            }
        })
        .collect();

    let mut created = Vec::new();
    if !to_create.is_empty() {
        let results = admin
            .create_topics(&to_create, &options)
            .await
            .map_err(|e| Error::kafka("cannot create topics", e))?;
        for result in results {
            match result {
                Ok(name) => created.push(name),
                // Someone else created it between our look and our create: check it below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(Error::kafka(
                        format!("cannot create topic {name}"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ));
                }
            }
        }
    }

    let to_check: Vec<&str> = wanted
        .iter()
        .map(|(name, _, _)| name.as_str())
        .filter(|name| !created.iter().any(|c| c == name))
        .collect();
    let observed = observe(&admin, &to_check, &options).await?;

    let topics = wanted
        .iter()
        .map(|(name, spec, _)| {
            let outcome = if created.contains(name) {
                TopicOutcome::Created
            } else {
                match observed.get(name) {
                    Some(seen) => verify(spec, partitions, seen),
                    None => TopicOutcome::Mismatch {
                        problems: vec!["was not found after creation".into()],
                    },
                }
            };
            (name.clone(), outcome)
        })
        .collect();
    Ok(TopicsReport { topics })
}

/// Partition count of every topic in the cluster.
async fn topic_partitions(admin: &Arc<AdminClient<DefaultClientContext>>) -> Result<HashMap<String, i32>> {
    let client = Arc::clone(admin);
    // librdkafka's metadata call blocks its thread; keep it off the async workers.
    let metadata = tokio::task::spawn_blocking(move || client.inner().fetch_metadata(None, METADATA_TIMEOUT))
        .await
        .map_err(|e| Error::Task(format!("metadata request: {e}")))?
        .map_err(|e| Error::kafka("cannot read cluster metadata", e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            (
                t.name().to_string(),
                i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
            )
        })
        .collect())
}

/// Partition count and relevant configs of the named topics.
async fn observe(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    names: &[&str],
    options: &AdminOptions,
) -> Result<HashMap<String, ObservedTopic>> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let partitions = topic_partitions(admin).await?;
    let specifiers: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let described = admin
        .describe_configs(&specifiers, options)
        .await
        .map_err(|e| Error::kafka("cannot describe topic configs", e))?;
    let mut observed = HashMap::new();
    for (name, result) in names.iter().zip(described) {
        let resource = result.map_err(|code| {
            Error::kafka(
                format!("cannot describe topic {name}"),
                rdkafka::error::KafkaError::AdminOp(code),
            )
        })?;
        let config = |key: &str| resource.get(key).and_then(|entry| entry.value.clone());
        observed.insert(
            name.to_string(),
            ObservedTopic {
                partitions: partitions.get(*name).copied().unwrap_or(0),
                cleanup_policy: config("cleanup.policy"),
                retention_ms: config("retention.ms"),
            },
        );
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(partitions: i32, policy: &str, retention: &str) -> ObservedTopic {
        ObservedTopic {
            partitions,
            cleanup_policy: Some(policy.into()),
            retention_ms: Some(retention.into()),
        }
    }

    #[test]
    fn a_topic_as_designed_is_accepted_without_notes() {
        let spec = Topic::EventsRaw.spec();
        assert_eq!(
            verify(&spec, 6, &seen(6, "delete", "604800000")),
            TopicOutcome::Exists { notes: vec![] }
        );
    }

    #[test]
    fn a_wrong_partition_count_is_a_problem() {
        let spec = Topic::EventsRaw.spec();
        let TopicOutcome::Mismatch { problems } = verify(&spec, 6, &seen(3, "delete", "604800000")) else {
            panic!("accepted a topic with 3 partitions");
        };
        assert!(problems[0].contains("has 3 partitions, expected 6"), "{problems:?}");
    }

    #[test]
    fn a_table_that_deletes_instead_of_compacting_is_a_problem() {
        let spec = Topic::Wins.spec();
        let outcome = verify(&spec, 6, &seen(6, "delete", "604800000"));
        assert!(
            matches!(outcome, TopicOutcome::Mismatch { ref problems } if problems[0].contains("expected compact")),
            "{outcome:?}"
        );
    }

    #[test]
    fn compact_and_delete_is_not_compact() {
        let spec = Topic::Organizations.spec();
        assert!(matches!(
            verify(&spec, 6, &seen(6, "compact,delete", "-1")),
            TopicOutcome::Mismatch { .. }
        ));
    }

    #[test]
    fn a_tuned_retention_is_a_note_not_a_problem() {
        let spec = Topic::DeadLetter.spec();
        let outcome = verify(&spec, 6, &seen(6, "delete", "86400000"));
        assert!(
            matches!(outcome, TopicOutcome::Exists { ref notes } if notes.len() == 1),
            "{outcome:?}"
        );
    }
}
