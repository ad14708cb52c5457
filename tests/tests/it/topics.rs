//! `salesctl topics create` semantics against the real broker.

use kafka_runtime::topic_admin::{TopicOutcome, ensure_topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sales_tests::{TEST_PARTITIONS, TestEnv};
use schemas::topics::Topic;

#[tokio::test]
async fn creating_topics_twice_creates_nothing_the_second_time() {
    let env = TestEnv::new().await;

    let first = env.create_topics().await;
    assert_eq!(first.created(), Topic::ALL.len(), "{first:?}");

    let second = env.create_topics().await;
    assert_eq!(second.created(), 0, "{second:?}");
    assert!(
        second
            .topics
            .iter()
            .all(|(_, o)| *o == TopicOutcome::Exists { notes: vec![] }),
        "{second:?}"
    );
    for topic in Topic::ALL {
        assert!(
            second.topics.iter().any(|(name, _)| *name == env.topic(topic)),
            "{topic:?} missing"
        );
    }
}

#[tokio::test]
async fn a_topic_with_the_wrong_partitions_and_policy_is_reported_not_accepted() {
    let env = TestEnv::new().await;
    let wins = env.topic(Topic::Wins);
    let admin: AdminClient<DefaultClientContext> = env.client_config().create().unwrap();
    admin
        .create_topics(
            &[NewTopic::new(&wins, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "delete")],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });

    let report = ensure_topics(&env.kafka, TEST_PARTITIONS, 1).await.unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 2, "{report:?}");
    assert!(problems.iter().all(|(name, _)| *name == wins));
    assert!(
        problems[0]
            .1
            .contains(&format!("has 1 partitions, expected {TEST_PARTITIONS}")),
        "{problems:?}"
    );
    assert!(
        problems[1].1.contains("cleanup.policy=delete, expected compact"),
        "{problems:?}"
    );
    // Every other topic was still created.
    assert_eq!(report.created(), Topic::ALL.len() - 1);
}
