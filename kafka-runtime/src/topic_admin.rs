//! Creates the pipeline's topics and checks the ones that already exist.
//!
//! Creation is idempotent: a topic that exists with the right partition count and
//! cleanup policy is left alone. One that exists with the wrong partition count or
//! cleanup policy, or with fewer replicas than asked, is reported as a problem, never
//! accepted: a wrong partition count breaks co-partitioning, a wrong cleanup policy
//! loses state or keeps it forever, and too few replicas lose acknowledged records
//! with a broker.
//!
//! Every topic created also gets `min.insync.replicas` (see [`min_insync_replicas`]):
//! how many replicas hold a record before a producer with `acks=all` (ingest, every
//! stage) is told it is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use schemas::topics::{Cleanup, Topic};

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
    /// The fewest replicas any of its partitions has.
    pub replication: i32,
    pub min_insync_replicas: Option<String>,
    pub cleanup_policy: Option<String>,
    pub retention_ms: Option<String>,
}

/// A topic as it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedTopic {
    pub name: String,
    pub partitions: i32,
    pub cleanup: Cleanup,
}

/// The `min.insync.replicas` of a topic with `replication` replicas: one less than the
/// replicas, so that a write survives losing any one broker while one broker may be
/// down without stopping writes, but at most a majority of them (3 of 5), and at least
/// 1. So 1 for one or two replicas, 2 for three, 3 for four or five.
pub fn min_insync_replicas(replication: i32) -> i32 {
    (replication - 1).min(replication / 2 + 1).max(1)
}

/// Compares an existing topic with its contract, `replication` replicas included (more
/// are fine, fewer are not). Pure, so the rules are tested without a broker.
pub fn verify(wanted: &WantedTopic, observed: &ObservedTopic, replication: i32) -> TopicOutcome {
    let partitions = wanted.partitions;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if observed.partitions != partitions {
        problems.push(format!(
            "has {} partitions, expected {partitions}; co-partitioned topics must share one count (recreate it, or run with --partitions {})",
            observed.partitions, observed.partitions
        ));
    }
    if observed.replication < replication {
        problems.push(format!(
            "has {} replicas, expected {replication}; a broker lost would lose acknowledged records (add replicas with a partition reassignment, recreate it, or run with --replication {})",
            observed.replication, observed.replication
        ));
    }
    if replication > 1 {
        let expected = min_insync_replicas(replication);
        let actual = observed.min_insync_replicas.as_deref().unwrap_or("unknown");
        if actual != expected.to_string() {
            notes.push(format!(
                "min.insync.replicas={actual}, the default for {replication} replicas is {expected}"
            ));
        }
    }
    let expected_policy = wanted.cleanup.policy();
    match observed.cleanup_policy.as_deref() {
        Some(policy) if policy == expected_policy => {}
        Some(policy) => problems.push(format!("has cleanup.policy={policy}, expected {expected_policy}")),
        None => problems.push(format!("reports no cleanup.policy, expected {expected_policy}")),
    }
    if let Some(expected) = wanted.cleanup.retention_ms() {
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

/// Creates every missing topic of the pipeline with `partitions` partitions and checks
/// the existing ones.
pub async fn ensure_topics(kafka: &KafkaArgs, partitions: i32, replication: i32) -> Result<TopicsReport> {
    if partitions < 1 {
        return Err(Error::Config(format!(
            "--partitions must be at least 1, got {partitions}"
        )));
    }
    let names = kafka.topic_names()?;
    let wanted: Vec<WantedTopic> = Topic::ALL
        .iter()
        .map(|t| WantedTopic {
            name: names.name(*t),
            partitions,
            cleanup: t.spec().cleanup,
        })
        .collect();
    ensure(kafka, &wanted, replication).await
}

/// Creates the missing topics of `wanted` and checks the existing ones.
pub async fn ensure(kafka: &KafkaArgs, wanted: &[WantedTopic], replication: i32) -> Result<TopicsReport> {
    TopicAdmin::new(kafka)?.ensure(wanted, replication).await
}

/// One admin client for a series of topic lookups and checks (a worker's start makes
/// several): each client costs a connection, and closing one waits for its polling
/// thread, which is why the last one is closed off the caller's path.
pub struct TopicAdmin {
    admin: Option<Arc<AdminClient<DefaultClientContext>>>,
    bootstrap_servers: String,
}

impl std::fmt::Debug for TopicAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicAdmin")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl Drop for TopicAdmin {
    fn drop(&mut self) {
        if let Some(admin) = self.admin.take() {
            let closing = std::thread::Builder::new()
                .name("admin-close".into())
                .spawn(move || drop(admin));
            if let Err(e) = closing {
                tracing::warn!(error = %e, "cannot close the admin client in the background");
            }
        }
    }
}

impl TopicAdmin {
    pub fn new(kafka: &KafkaArgs) -> Result<Self> {
        let admin = kafka
            .client_config("topic-admin")
            .create()
            .map_err(|e| Error::kafka("cannot create the admin client", e))?;
        Ok(TopicAdmin {
            admin: Some(Arc::new(admin)),
            bootstrap_servers: kafka.bootstrap_servers.clone(),
        })
    }

    fn client(&self) -> &Arc<AdminClient<DefaultClientContext>> {
        self.admin
            .as_ref()
            .expect("the admin client is only taken when dropped")
    }

    /// The partition count of every topic of the cluster, read at once.
    pub async fn partition_counts(&self) -> Result<HashMap<String, i32>> {
        Ok(topic_partitions(self.client())
            .await?
            .into_iter()
            .map(|(name, shape)| (name, shape.partitions))
            .collect())
    }

    /// Creates the missing topics of `wanted` and checks the existing ones.
    pub async fn ensure(&self, wanted: &[WantedTopic], replication: i32) -> Result<TopicsReport> {
        let (admin, bootstrap_servers) = (self.client(), &self.bootstrap_servers);
        if replication < 1 {
            return Err(Error::Config(format!(
                "--replication must be at least 1, got {replication}"
            )));
        }
        let options = AdminOptions::new()
            .operation_timeout(Some(ADMIN_TIMEOUT))
            .request_timeout(Some(ADMIN_TIMEOUT));

        let existing = topic_partitions(admin).await.map_err(|e| match e {
            Error::Kafka { source, .. } => Error::kafka(
                format!("cannot read cluster metadata from {bootstrap_servers} (is Kafka running there?)"),
                source,
            ),
            other => other,
        })?;
        let retention: Vec<Option<String>> = wanted
            .iter()
            .map(|w| w.cleanup.retention_ms().map(|ms| ms.to_string()))
            .collect();
        // Set on every topic, one replica included: a cluster's brokers may default to 2,
        // which would leave a topic of one replica unwritable.
        let min_isr = min_insync_replicas(replication).to_string();
        let to_create: Vec<NewTopic<'_>> = wanted
            .iter()
            .zip(&retention)
            .filter(|(w, _)| !existing.contains_key(&w.name))
            .map(|(w, retention)| {
                let mut topic = NewTopic::new(&w.name, w.partitions, TopicReplication::Fixed(replication))
                    .set("cleanup.policy", w.cleanup.policy());
                if let Some(ms) = retention {
                    topic = topic.set("retention.ms", ms);
                }
                topic.set("min.insync.replicas", &min_isr)
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

        await_visible(admin, wanted, &created).await?;

        let to_check: Vec<&str> = wanted
            .iter()
            .map(|w| w.name.as_str())
            .filter(|name| !created.iter().any(|c| c == name))
            .collect();
        let observed = observe(admin, &to_check, &options).await?;

        let topics = wanted
            .iter()
            .map(|w| {
                let outcome = if created.contains(&w.name) {
                    TopicOutcome::Created
                } else {
                    match observed.get(&w.name) {
                        Some(seen) => verify(w, seen, replication),
                        None => TopicOutcome::Mismatch {
                            problems: vec!["was not found after creation".into()],
                        },
                    }
                };
                (w.name.clone(), outcome)
            })
            .collect();
        Ok(TopicsReport { topics })
    }
}

/// The partition count of `topic`, or `None` when it does not exist (one lookup; a
/// series of them shares a [`TopicAdmin`]).
pub async fn partition_count(kafka: &KafkaArgs, topic: &str) -> Result<Option<i32>> {
    Ok(TopicAdmin::new(kafka)?.partition_counts().await?.get(topic).copied())
}

/// Assigns every partition of `topic` to `consumer` from `start`, without joining a
/// group (for readers that must see the whole topic: settings followers, `tail`);
/// returns the partition count. A missing topic is a configuration error naming the fix.
pub fn assign_whole_topic<C, K>(consumer: &K, topic: &str, start: rdkafka::Offset) -> Result<usize>
where
    C: rdkafka::consumer::ConsumerContext,
    K: rdkafka::consumer::Consumer<C>,
{
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| Error::kafka(format!("cannot read metadata of {topic}"), e))?;
    let partitions = match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().len(),
        _ => {
            return Err(Error::Config(format!(
                "topic {topic} does not exist; run `salesctl topics create`"
            )));
        }
    };
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        let partition =
            i32::try_from(partition).map_err(|_| Error::Config(format!("{topic} has too many partitions")))?;
        assignment
            .add_partition_offset(topic, partition, start)
            .map_err(|e| Error::kafka(format!("cannot assign {topic}"), e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Error::kafka(format!("cannot assign {topic}"), e))?;
    Ok(partitions)
}

/// How a topic is laid out over the brokers.
#[derive(Debug, Clone, Copy)]
struct Shape {
    partitions: i32,
    /// The fewest replicas of any partition.
    replication: i32,
}

/// Partition count and replication of every topic in the cluster.
async fn topic_partitions(admin: &Arc<AdminClient<DefaultClientContext>>) -> Result<HashMap<String, Shape>> {
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
            let replication = t.partitions().iter().map(|p| p.replicas().len()).min().unwrap_or(0);
            (
                t.name().to_string(),
                Shape {
                    partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                    replication: i32::try_from(replication).unwrap_or(i32::MAX),
                },
            )
        })
        .collect())
}

/// Waits until every topic of `created` shows all its partitions in the metadata the
/// brokers answer with. A create is answered once the controller has it, before every
/// broker knows the topic: a stage started right after `salesctl topics create` would
/// otherwise be told its input does not exist.
async fn await_visible(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    wanted: &[WantedTopic],
    created: &[String],
) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    loop {
        let seen = topic_partitions(admin).await?;
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| created.contains(&w.name))
            .filter(|w| seen.get(&w.name).is_none_or(|shape| shape.partitions < w.partitions))
            .map(|w| w.name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= ADMIN_TIMEOUT {
            return Err(Error::Config(format!(
                "topics created but not in the cluster's metadata after {ADMIN_TIMEOUT:?}: {}",
                missing.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    // A topic another client created a moment ago may not show its partitions in the
    // metadata yet; wait briefly rather than report it as having none.
    let mut partitions = topic_partitions(admin).await?;
    for _ in 0..25 {
        if names
            .iter()
            .all(|n| partitions.get(*n).is_some_and(|shape| shape.partitions > 0))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        partitions = topic_partitions(admin).await?;
    }
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
        let shape = partitions.get(*name);
        observed.insert(
            name.to_string(),
            ObservedTopic {
                partitions: shape.map_or(0, |s| s.partitions),
                replication: shape.map_or(0, |s| s.replication),
                min_insync_replicas: config("min.insync.replicas"),
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

    fn wanted(topic: Topic) -> WantedTopic {
        WantedTopic {
            name: topic.base_name().into(),
            partitions: 6,
            cleanup: topic.spec().cleanup,
        }
    }

    fn seen(partitions: i32, policy: &str, retention: &str) -> ObservedTopic {
        ObservedTopic {
            partitions,
            replication: 1,
            min_insync_replicas: Some("1".into()),
            cleanup_policy: Some(policy.into()),
            retention_ms: Some(retention.into()),
        }
    }

    #[test]
    fn a_topic_as_designed_is_accepted_without_notes() {
        let spec = wanted(Topic::EventsRaw);
        assert_eq!(
            verify(&spec, &seen(6, "delete", "604800000"), 1),
            TopicOutcome::Exists { notes: vec![] }
        );
    }

    #[test]
    fn a_wrong_partition_count_is_a_problem() {
        let spec = wanted(Topic::EventsRaw);
        let TopicOutcome::Mismatch { problems } = verify(&spec, &seen(3, "delete", "604800000"), 1) else {
            panic!("accepted a topic with 3 partitions");
        };
        assert!(problems[0].contains("has 3 partitions, expected 6"), "{problems:?}");
    }

    #[test]
    fn a_table_that_deletes_instead_of_compacting_is_a_problem() {
        let spec = wanted(Topic::Wins);
        let outcome = verify(&spec, &seen(6, "delete", "604800000"), 1);
        assert!(
            matches!(outcome, TopicOutcome::Mismatch { ref problems } if problems[0].contains("expected compact")),
            "{outcome:?}"
        );
    }

    #[test]
    fn compact_and_delete_is_not_compact() {
        let spec = wanted(Topic::Organizations);
        assert!(matches!(
            verify(&spec, &seen(6, "compact,delete", "-1"), 1),
            TopicOutcome::Mismatch { .. }
        ));
    }

    #[test]
    fn fewer_replicas_than_asked_is_a_problem_like_a_wrong_partition_count() {
        let spec = wanted(Topic::Orders);
        let outcome = verify(&spec, &seen(6, "delete", "3024000000"), 3);
        let TopicOutcome::Mismatch { problems } = outcome else {
            panic!("accepted a topic with 1 replica where 3 were asked: {outcome:?}");
        };
        assert!(problems[0].contains("has 1 replicas, expected 3"), "{problems:?}");
    }

    #[test]
    fn more_replicas_than_asked_are_fine_and_a_tuned_min_isr_is_a_note() {
        let spec = wanted(Topic::Orders);
        let mut three = seen(6, "delete", "3024000000");
        three.replication = 3;
        three.min_insync_replicas = Some("2".into());
        assert_eq!(verify(&spec, &three, 1), TopicOutcome::Exists { notes: vec![] });
        assert_eq!(verify(&spec, &three, 3), TopicOutcome::Exists { notes: vec![] });
        three.min_insync_replicas = Some("1".into());
        let outcome = verify(&spec, &three, 3);
        assert!(
            matches!(&outcome, TopicOutcome::Exists { notes } if notes[0].contains("min.insync.replicas=1, the default for 3 replicas is 2")),
            "{outcome:?}"
        );
    }

    #[test]
    fn min_isr_is_one_less_than_the_replicas_at_most_a_majority() {
        let rule: Vec<i32> = (1..=6).map(min_insync_replicas).collect();
        assert_eq!(rule, [1, 1, 2, 3, 3, 4]);
    }

    #[test]
    fn a_tuned_retention_is_a_note_not_a_problem() {
        let spec = wanted(Topic::DeadLetter);
        let outcome = verify(&spec, &seen(6, "delete", "86400000"), 1);
        assert!(
            matches!(outcome, TopicOutcome::Exists { ref notes } if notes.len() == 1),
            "{outcome:?}"
        );
    }
}
