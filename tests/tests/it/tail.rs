//! `salesctl tail` against the real broker: records of two schema versions, a record
//! no schema explains, and an aborted transaction that must not show.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sales_tests::TestEnv;
use salesctl::tail::{TailArgs, tail};
use schemas::Record;
use schemas::records::OrganizationSettings;
use schemas::samples::Sample;
use schemas::topics::Topic;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn send(producer: &FutureProducer, topic: &str, payload: &[u8]) {
    producer
        .send(FutureRecord::to(topic).key("org_8d2f").payload(payload), TIMEOUT)
        .await
        .unwrap_or_else(|(e, _)| panic!("send failed: {e}"));
}

#[tokio::test]
async fn tail_prints_records_of_two_schema_versions_and_skips_aborted_ones() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let topic = env.topic(Topic::Organizations);

    // Written by a v1 writer (the committed fixture) and by today's writer.
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/fixtures/OrganizationSettings.v1.avro");
    let v1 = std::fs::read(fixture).unwrap();
    let mut settings = OrganizationSettings::sample();
    settings.organization_id = "org_v2".into();
    let v2 = schemas::encode(&settings).unwrap();

    let producer = env.transactional_producer("tail");
    producer.init_transactions(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &v1).await;
    producer.commit_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send(
        &producer,
        &topic,
        &schemas::encode(&OrganizationSettings::sample()).unwrap(),
    )
    .await;
    producer.abort_transaction(TIMEOUT).unwrap();
    producer.begin_transaction().unwrap();
    send(&producer, &topic, &v2).await;
    send(&producer, &topic, b"{\"not\": \"avro\"}").await;
    producer.commit_transaction(TIMEOUT).unwrap();

    let args = TailArgs {
        topic: Topic::Organizations.base_name().to_string(),
        from_beginning: true,
        max: Some(3),
        idle_timeout: Some(Duration::from_secs(20)),
        watermarks: false,
    };
    let mut out = Vec::new();
    let printed = tail(&env.kafka, &args, &mut out).await.unwrap();
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed, 3, "{lines:?}");

    assert_eq!(lines[0]["record"], "sales.pipeline.OrganizationSettings");
    assert_eq!(lines[0]["schema_version"], 1);
    assert_eq!(lines[0]["value"]["organization_id"], "org_8d2f");
    // Fields added since v1 read as their defaults.
    assert_eq!(lines[0]["value"]["rate_limit_burst"], Value::Null);
    assert_eq!(lines[0]["value"]["identity_mode"], "off");

    let today = schemas::codec::current_version(OrganizationSettings::NAME)
        .unwrap()
        .version;
    assert!(today > 1);
    assert_eq!(
        lines[1]["schema_version"], today,
        "the aborted record must not be printed: {lines:?}"
    );
    assert_eq!(lines[1]["value"]["organization_id"], "org_v2");
    assert_eq!(lines[1]["value"]["rate_limit_burst"], 300);
    assert_eq!(lines[1]["key"], "org_8d2f");

    let error = lines[2]["error"].as_str().unwrap();
    assert!(error.contains("single-object marker"), "{error}");
}

#[tokio::test]
async fn tail_of_a_missing_topic_says_so() {
    let env = TestEnv::new().await;
    let args = TailArgs {
        topic: "no.such.topic".into(),
        from_beginning: true,
        max: Some(1),
        idle_timeout: None,
        watermarks: false,
    };
    let err = tail(&env.kafka, &args, &mut Vec::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
}

#[tokio::test]
async fn tail_skips_watermark_marks_and_they_do_not_keep_it_from_going_idle() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let topic = env.topic(Topic::OrdersAttributed);
    let producer: FutureProducer = env.client_config().set("acks", "all").create().unwrap();
    send(&producer, &topic, b"not a record").await;
    // A writer stage marking the topic every 200 ms, all along.
    let _clock = env.upstream_clock(&topic);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut args = TailArgs {
        topic: Topic::OrdersAttributed.base_name().to_string(),
        from_beginning: true,
        max: None,
        idle_timeout: Some(Duration::from_secs(2)),
        watermarks: false,
    };
    let mut out = Vec::new();
    let printed = tokio::time::timeout(TIMEOUT, tail(&env.kafka, &args, &mut out))
        .await
        .expect("tail stops once no record but marks came for the idle timeout")
        .unwrap();
    assert_eq!(printed, 1, "{}", String::from_utf8_lossy(&out));

    args.watermarks = true;
    args.max = Some(4);
    let mut out = Vec::new();
    tail(&env.kafka, &args, &mut out).await.unwrap();
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Asked for, the marks are printed as such (partitions interleave, so in any order
    // with the one record).
    let marks = lines
        .iter()
        .filter(|l| l["watermark"]["writer"] == "test-upstream/0")
        .count();
    assert!(marks >= 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["watermark"].is_object() || l["error"].is_string()),
        "{lines:?}"
    );
}
