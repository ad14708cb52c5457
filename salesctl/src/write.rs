//! Writing one record as an operator command does: an idempotent producer, every
//! in-sync replica's acknowledgement, and the place it was written to.

use std::time::Duration;

use anyhow::Context;
use kafka_runtime::config::KafkaArgs;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Where a record was written.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub partition: i32,
    pub offset: i64,
}

/// A producer for a command's records; `client` names it in the broker's logs.
pub fn producer(kafka: &KafkaArgs, client: &str) -> anyhow::Result<FutureProducer> {
    kafka
        .client_config(client)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "15000")
        .create()
        .context("cannot create the producer")
}

/// Writes one record and waits for the broker's acknowledgement.
pub async fn send(
    producer: &FutureProducer,
    kafka: &KafkaArgs,
    topic: &str,
    key: &str,
    value: &[u8],
) -> anyhow::Result<Written> {
    let delivery = producer
        .send(FutureRecord::to(topic).key(key).payload(value), Duration::from_secs(15))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("cannot write to {topic} at {}", kafka.bootstrap_servers))?;
    Ok(Written {
        partition: delivery.partition,
        offset: delivery.offset,
    })
}
