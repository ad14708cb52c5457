//! The harness end to end: topics created on the real broker, records produced in
//! transactions, and a `read_committed` reader that sees exactly the committed ones.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sales_tests::TestEnv;
use schemas::keys;
use schemas::topics::Topic;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn send_in_transaction(producer: &FutureProducer, topic: &str, key: &str, value: &str, commit: bool) {
    producer.begin_transaction().unwrap();
    producer
        .send(FutureRecord::to(topic).key(key).payload(value), TIMEOUT)
        .await
        .unwrap_or_else(|(e, _)| panic!("send failed: {e}"));
    if commit {
        producer.commit_transaction(TIMEOUT).unwrap();
    } else {
        producer.abort_transaction(TIMEOUT).unwrap();
    }
}

async fn read_values(consumer: &StreamConsumer, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    while values.len() < count {
        let message = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records arrived: {values:?}", values.len()));
        // A topic created moments ago may be unknown to the first metadata request.
        let Ok(message) = message else { continue };
        values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
    }
    values
}

#[tokio::test]
async fn an_aborted_transaction_stays_invisible_to_read_committed_readers() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let topic = env.topic(Topic::EventsRaw);
    // One key, so all records land in one partition and keep their order.
    let key = keys::org_customer("org_1", "c-1");

    let producer = env.transactional_producer("harness");
    producer.init_transactions(TIMEOUT).unwrap();
    send_in_transaction(&producer, &topic, &key, "committed-1", true).await;
    send_in_transaction(&producer, &topic, &key, "aborted", false).await;
    send_in_transaction(&producer, &topic, &key, "committed-2", true).await;

    // "committed-2" follows "aborted" in the partition, so once it is read, the aborted
    // record would already have been delivered had the reader not filtered it.
    let committed = read_values(&env.consumer(&topic, "read_committed"), 2).await;
    assert_eq!(committed, ["committed-1", "committed-2"]);

    // The aborted record is really in the log: a read_uncommitted reader sees it.
    let uncommitted = read_values(&env.consumer(&topic, "read_uncommitted"), 3).await;
    assert_eq!(uncommitted, ["committed-1", "aborted", "committed-2"]);
}
