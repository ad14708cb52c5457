//! `salesctl tail <topic>`: any topic's records as JSON lines, decoded by the writer
//! schema's fingerprint and shown in the record's current schema, read with
//! `read_committed` so that only committed records appear.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::topic_admin::assign_whole_topic;
use kafka_runtime::watermark::{Mark, is_mark};
use rdkafka::Offset;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The topic, as named in the design (`sales.orders`, `accounts.organizations`, a
    /// changelog...); the deployment's topic prefix is put in front of it.
    pub topic: String,

    /// Start from the oldest record kept instead of only new ones.
    #[arg(long, env = "SALESCTL_TAIL_FROM_BEGINNING")]
    pub from_beginning: bool,

    /// Stop after printing this many records.
    #[arg(long, env = "SALESCTL_TAIL_MAX")]
    pub max: Option<u64>,

    /// Stop when no record arrives for this long (for scripts); without it, tail
    /// follows the topic until interrupted.
    #[arg(long, env = "SALESCTL_TAIL_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Also print the watermark marks the stages write into the topics other stages
    /// read (`sales.orders.by-id`, `sales.orders`, `sales.orders.attributed`); they are
    /// skipped otherwise.
    #[arg(long, env = "SALESCTL_TAIL_WATERMARKS")]
    pub watermarks: bool,
}

/// Prints records of the topic to `out`, one JSON object a line; returns how many.
pub async fn tail(kafka: &KafkaArgs, args: &TailArgs, out: &mut impl Write) -> anyhow::Result<u64> {
    let topic = format!("{}{}", kafka.topic_names()?.prefix(), args.topic);
    let consumer: StreamConsumer = kafka
        .client_config("salesctl-tail")
        // librdkafka wants a group id, but tail never joins the group: it assigns the
        // partitions itself and never commits, so it cannot disturb any stage.
        .set("group.id", "salesctl-tail")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("cannot create the consumer")?;

    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    assign_whole_topic(&consumer, &topic, start)?;

    let mut printed = 0;
    // The idle timeout counts from the last record printed: the stages keep writing
    // watermark marks into their topics, which are skipped, and must not keep tail alive.
    let idle_until = |idle: Duration| tokio::time::Instant::now() + idle;
    let mut deadline = args.idle_timeout.map(idle_until);
    while args.max.is_none_or(|max| printed < max) {
        let message = match deadline {
            Some(at) => match tokio::time::timeout_at(at, consumer.recv()).await {
                Ok(message) => message,
                Err(_) => break,
            },
            None => consumer.recv().await,
        }
        .with_context(|| format!("cannot read from {topic}"))?;
        if is_mark(message.key()) && !args.watermarks {
            continue;
        }
        writeln!(out, "{}", render(&message))?;
        printed += 1;
        deadline = args.idle_timeout.map(idle_until);
    }
    out.flush()?;
    Ok(printed)
}

/// One record as a JSON object: where it is, its key, and its value or why the value
/// could not be decoded.
pub fn render(message: &BorrowedMessage<'_>) -> Value {
    let mut line = json!({
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": message.timestamp().to_millis(),
        "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
    });
    let mark = is_mark(message.key())
        .then(|| message.payload().and_then(Mark::decode))
        .flatten();
    let fields = match (mark, message.payload()) {
        (Some(mark), _) => json!({
            "watermark": {
                "writer": format!("{}/{}", mark.app, mark.task),
                "writers": mark.writers,
                "at": mark.at.to_string(),
            }
        }),
        (None, None) => json!({ "value": null }),
        (None, Some(bytes)) => match schemas::codec::decode_json(bytes) {
            Ok(decoded) => json!({
                "record": decoded.record,
                "schema_version": decoded.version,
                "value": decoded.value,
            }),
            Err(e) => json!({ "error": e.to_string(), "bytes": bytes.len() }),
        },
    };
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    line
}
