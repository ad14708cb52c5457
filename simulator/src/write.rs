//! Sends a plan: organization settings and past days straight to Kafka, today's widget
//! events through ingest over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use kafka_runtime::config::KafkaArgs;
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::keys;
use schemas::records::{EventName, OrganizationSettings, WidgetEvent};
use schemas::topics::Topic;
use serde_json::{Value, json};

use crate::http::http;
use crate::keep_alive::KeepAlive;
use crate::plan::{Plan, Write};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A trusted producer: idempotent, acks from every replica.
pub fn producer(kafka: &KafkaArgs) -> anyhow::Result<FutureProducer> {
    kafka
        .client_config("simulator")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .context("cannot create the simulator's producer")
}

/// Writes the organizations' settings, as `salesctl org put` does.
pub async fn organizations(
    kafka: &KafkaArgs,
    producer: &FutureProducer,
    orgs: &[OrganizationSettings],
) -> anyhow::Result<()> {
    let topic = kafka.topic_names()?.name(Topic::Organizations);
    for org in orgs {
        let value = schemas::encode(org)?;
        producer
            .send(
                FutureRecord::to(&topic).key(&org.organization_id).payload(&value),
                SEND_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("cannot write the settings of {}", org.organization_id))?;
    }
    Ok(())
}

/// Writes records straight to `chat.sessions` and `sales.events.raw`, in order (each
/// topic's records of one customer keep their order: one partition, one producer).
pub async fn records(kafka: &KafkaArgs, producer: &FutureProducer, writes: &[Write]) -> anyhow::Result<()> {
    let names = kafka.topic_names()?;
    let (chats, raw) = (names.name(Topic::ChatSessions), names.name(Topic::EventsRaw));
    let mut pending = Vec::with_capacity(writes.len());
    for write in writes {
        let (topic, key, value) = match write {
            Write::Chat(e) => (
                &chats,
                keys::org_customer(&e.organization_id, &e.customer_id),
                schemas::encode(e)?,
            ),
            Write::Widget(e) => (
                &raw,
                keys::org_customer(&e.organization_id, &e.customer_id),
                schemas::encode(e)?,
            ),
        };
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in pending {
        delivery
            .await
            .context("the producer went away")?
            .map_err(|(e, _)| e)
            .context("a record was not acknowledged")?;
    }
    Ok(())
}

/// A backfill of `plan`'s past: the organizations, the trade in its time order, then the
/// second device's copies (later, as they come; the earliest placed copy counts
/// whenever each arrives).
pub async fn past(kafka: &KafkaArgs, producer: &FutureProducer, plan: &Plan) -> anyhow::Result<()> {
    organizations(kafka, producer, &plan.organizations).await?;
    records(kafka, producer, &plan.past).await?;
    records(kafka, producer, &plan.past_later).await
}

/// The widget event as a storefront posts it (the public API's JSON).
pub fn api_json(event: &WidgetEvent) -> Value {
    let amount = |m: &schemas::values::Money| -> Value {
        serde_json::from_str(&m.value().normalize().to_string()).unwrap_or(Value::Null)
    };
    let data = match event.name {
        EventName::StoreOrderWasCreated => {
            let order = event.order.as_ref();
            json!({ "order": order.map(|o| json!({
                "id": o.id, "order_number": o.order_number, "currency": o.currency,
                "total_price": amount(&o.total_price),
                "line_items": o.line_items.iter().map(|l| {
                    let mut item = json!({ "product_id": l.product_id, "title": l.title,
                        "quantity": l.quantity, "price": amount(&l.price) });
                    if let Some(url) = &l.thumbnail_url { item["thumbnail_url"] = json!(url); }
                    item
                }).collect::<Vec<_>>(),
            })) })
        }
        _ => json!({ "cart_lines": event.cart_lines.iter().map(|l| {
            let mut product = json!({ "id": l.product.id, "title": l.product.title });
            if let Some(price) = &l.product.price { product["price"] = amount(price); }
            if let Some(url) = &l.product.thumbnail_url { product["thumbnail_url"] = json!(url); }
            json!({ "total_price": amount(&l.total_price), "currency": l.currency, "quantity": l.quantity,
                "product": product })
        }).collect::<Vec<_>>() }),
    };
    json!({
        "organization_id": event.organization_id,
        "customer_id": event.customer_id,
        "event_id": event.event_id,
        "page": { "url": event.page.url },
        "name": event.name.as_str(),
        "data": data,
    })
}

/// Posts a widget event to ingest; returns the answer's status and body.
pub async fn post(ingest: SocketAddr, event: &WidgetEvent) -> anyhow::Result<(u16, String)> {
    let body = api_json(event).to_string();
    let answer = http(ingest, "POST", EVENTS_PATH, JSON, body.as_bytes())
        .await
        .with_context(|| format!("cannot reach ingest at {ingest}"))?;
    Ok((answer.status, answer.body))
}

/// [`post`] on one of `ingest`'s kept connections.
pub async fn post_kept(ingest: &KeepAlive, event: &WidgetEvent) -> anyhow::Result<(u16, String)> {
    let body = api_json(event).to_string();
    let answer = ingest
        .request("POST", EVENTS_PATH, JSON, body.as_bytes())
        .await
        .context("cannot reach ingest")?;
    Ok((answer.status, answer.body))
}

const EVENTS_PATH: &str = "/v1/events";
const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

/// Sends today's trade: chat events straight to Kafka, widget events through ingest
/// (retrying a 429 or 503 as a widget would). Returns how many ingest accepted.
pub async fn today(
    kafka: &KafkaArgs,
    producer: &FutureProducer,
    ingest: SocketAddr,
    writes: &[Write],
) -> anyhow::Result<usize> {
    let mut accepted = 0;
    for write in writes {
        match write {
            Write::Chat(_) => records(kafka, producer, std::slice::from_ref(write)).await?,
            Write::Widget(event) => {
                let mut attempts = 0;
                loop {
                    let (status, body) = post(ingest, event).await?;
                    match status {
                        202 => break,
                        // Rate limited, the broker slow, or the organization's settings
                        // not yet seen by ingest: a widget tries again.
                        429 | 503 if attempts < 20 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        422 if body.contains("unknown_organization") && attempts < 40 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        _ => anyhow::bail!("ingest answered {status}: {body}"),
                    }
                }
                accepted += 1;
            }
        }
    }
    Ok(accepted)
}
