//! The enricher end to end through the real broker: widget events over HTTP to ingest,
//! chat events written to `chat.sessions`, notifications and orders read back with
//! `read_committed`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kafka_runtime::shutdown::Shutdown;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::{TestEnv, await_ready, free_local_addr, http_get, read_exactly};
use schemas::keys;
use schemas::records::{
    Agent, AgentKind, AgentNotification, ChatEvent, ChatEventKind, DeadLetter, EnrichedOrder, NotificationKind,
    WidgetEvent,
};
use schemas::samples::Sample;
use schemas::topics::Topic;
use schemas::values::Timestamp;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::ingest::{ORG, RunningIngest, order, settings};

const TIMEOUT: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_secs(3);
const PAGE: &str = "https://shop.example.com/checkout/thanks";

pub(crate) struct RunningEnricher {
    pub(crate) admin: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningEnricher {
    pub(crate) async fn start(env: &TestEnv, extra: &[&str]) -> Self {
        let admin = free_local_addr();
        let (admin_text, group) = (admin.to_string(), env.unique_id("enricher"));
        let mut argv = vec![
            "enricher",
            "--bootstrap-servers",
            &env.kafka.bootstrap_servers,
            "--topic-prefix",
            &env.kafka.topic_prefix,
            "--admin-addr",
            &admin_text,
            "--group-id",
            &group,
            "--worker-id",
            "w1",
        ];
        argv.extend_from_slice(extra);
        let config = enricher::Config::try_parse_from(argv).unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(enricher::run(config, shutdown.clone()));
        await_ready(admin, "the enricher to be ready", TIMEOUT).await;
        RunningEnricher { admin, shutdown, task }
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the enricher stops within 30 s")
            .unwrap()
            .unwrap();
    }
}

impl Drop for RunningEnricher {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

fn chat_event(customer: &str, chat: &str, kind: ChatEventKind, at: Timestamp, agent: Option<AgentKind>) -> ChatEvent {
    ChatEvent {
        event_id: uuid::Uuid::new_v4().to_string(),
        organization_id: ORG.into(),
        customer_id: customer.into(),
        chat_id: chat.into(),
        kind,
        at,
        team_id: (kind == ChatEventKind::ChatStarted).then(|| "team-sales".into()),
        agent: agent.map(|kind| Agent {
            id: format!("agent-{chat}"),
            kind,
        }),
    }
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, value: &[u8]) {
    producer
        .send(FutureRecord::to(topic).key(key).payload(value), TIMEOUT)
        .await
        .unwrap_or_else(|(e, _)| panic!("cannot write to {topic}: {e}"));
}

fn cart_added(customer: &str, event_id: &str) -> Value {
    json!({
        "organization_id": ORG,
        "customer_id": customer,
        "event_id": event_id,
        "page": { "url": "https://shop.example.com/products/socks" },
        "name": "store_product_added_to_cart",
        "data": { "cart_lines": [ { "total_price": 25.50, "currency": "USD", "quantity": 2,
            "product": { "id": "socks-1", "title": "Wool Socks", "price": 12.75 } } ] }
    })
}

fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

#[tokio::test]
async fn cart_and_order_reach_the_live_chat_once_and_duplicates_are_dropped() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], None)).await;
    let ingest = RunningIngest::start(&env, &[]).await;
    let enricher = RunningEnricher::start(&env, &["--commit-interval", "100ms"]).await;

    // c-1 is in a chat an agent joined; c-9's chat has no agent yet.
    let producer: FutureProducer = env.client_config().set("acks", "all").create().unwrap();
    let chats = env.topic(Topic::ChatSessions);
    let started = Timestamp(now().micros() - 120_000_000);
    let joined = Timestamp(started.micros() + 1_000_000);
    for (customer, event) in [
        (
            "c-1",
            chat_event("c-1", "K1", ChatEventKind::ChatStarted, started, None),
        ),
        (
            "c-1",
            chat_event("c-1", "K1", ChatEventKind::AgentJoined, joined, Some(AgentKind::Ai)),
        ),
        (
            "c-9",
            chat_event("c-9", "K9", ChatEventKind::ChatStarted, started, None),
        ),
    ] {
        send(
            &producer,
            &chats,
            &keys::org_customer(ORG, customer),
            &schemas::encode(&event).unwrap(),
        )
        .await;
    }

    // A cart event, and the client's retry of it with the same event id.
    let cart_id = uuid::Uuid::new_v4().to_string();
    for _ in 0..2 {
        let answer = ingest.post(&cart_added("c-1", &cart_id)).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    // The order, then (once it is through) a reload and the thank-you page opened on a
    // second device under another customer id.
    let mut with_no_thumbnail = order("c-1", "5001", PAGE);
    with_no_thumbnail["data"]["order"]["line_items"][0]
        .as_object_mut()
        .unwrap()
        .remove("thumbnail_url");
    assert_eq!(ingest.post(&with_no_thumbnail).await.status, 202);
    let orders = env.consumer(&env.topic(Topic::Orders), "read_committed");
    let first = read_exactly(&orders, "the first order", 1, TIMEOUT, Duration::ZERO).await;
    for customer in ["c-1", "c-2"] {
        assert_eq!(ingest.post(&order(customer, "5001", PAGE)).await.status, 202);
    }
    // An order in a chat no agent joined: kept, but nobody to notify.
    assert_eq!(ingest.post(&order("c-9", "5002", PAGE)).await.status, 202);
    // A trusted producer's record that breaks the rules: dead-lettered.
    let mut invalid = WidgetEvent::sample();
    invalid.organization_id = ORG.into();
    invalid.order.as_mut().unwrap().currency = "dollars".into();
    let invalid_key = keys::org_customer(ORG, &invalid.customer_id);
    send(
        &producer,
        &env.topic(Topic::EventsRaw),
        &invalid_key,
        &schemas::encode(&invalid).unwrap(),
    )
    .await;

    // sales.orders: 5001 once (from c-1, with its chat), 5002 once.
    let rest = read_exactly(&orders, "sales.orders", 1, TIMEOUT, QUIET).await;
    let decoded: Vec<EnrichedOrder> = first
        .iter()
        .chain(&rest)
        .map(|(_, v)| schemas::decode(v.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(decoded[0].order.id, "5001");
    assert_eq!(decoded[0].customer_id, "c-1");
    assert_eq!(decoded[0].active_chat_id.as_deref(), Some("K1"));
    assert_eq!(first[0].0.as_deref(), Some(keys::org_customer(ORG, "c-1").as_bytes()));
    assert_eq!(decoded[1].order.id, "5002");
    assert_eq!(decoded[1].active_chat_id, None);

    // inbox.notifications: the cart once, the order once, both in K1.
    let inbox = env.consumer(&env.topic(Topic::Notifications), "read_committed");
    let notifications: Vec<(Vec<u8>, AgentNotification)> = read_exactly(&inbox, "notifications", 2, TIMEOUT, QUIET)
        .await
        .into_iter()
        .map(|(k, v)| (k.unwrap(), schemas::decode(&v.unwrap()).unwrap()))
        .collect();
    let key = keys::org_chat(ORG, "K1");
    assert!(notifications.iter().all(|(k, _)| k == key.as_bytes()));
    let cart = &notifications
        .iter()
        .find(|(_, n)| n.kind == NotificationKind::ProductAddedToCart)
        .unwrap()
        .1;
    assert_eq!(cart.notification_id, cart_id);
    assert_eq!(cart.items[0].title, "Wool Socks");
    assert_eq!(cart.cart_lines[0].quantity, 2);
    assert_eq!(cart.cart_subtotals[0].amount.to_string(), "25.5000");
    let ordered = &notifications
        .iter()
        .find(|(_, n)| n.kind == NotificationKind::OrderCreated)
        .unwrap()
        .1;
    assert_eq!(ordered.order_number.as_deref(), Some("#5001"));
    assert_eq!(ordered.total.map(|t| t.to_string()).as_deref(), Some("149.9900"));
    assert_eq!(ordered.currency.as_deref(), Some("USD"));
    let item = &ordered.items[0];
    assert_eq!((item.title.as_str(), item.quantity), ("Merino Wool Crew Neck", 1));
    assert_eq!(item.unit_price.map(|p| p.to_string()).as_deref(), Some("149.9900"));
    assert_eq!(
        item.thumbnail_url, None,
        "no thumbnail sent: the inbox shows its placeholder"
    );

    let dead = env.consumer(&env.topic(Topic::DeadLetter), "read_committed");
    let letters = read_exactly(&dead, "dead letters", 1, TIMEOUT, Duration::ZERO).await;
    let letter: DeadLetter = schemas::decode(letters[0].1.as_deref().unwrap()).unwrap();
    assert!(letter.reason.contains("data.order.currency"), "{}", letter.reason);

    let (_, metrics) = http_get(enricher.admin, "/metrics").await.unwrap();
    assert!(metrics.contains("enricher_duplicate_orders_total 2"), "{metrics}");
    assert!(metrics.contains("enricher_duplicate_events_total 1"), "{metrics}");
    enricher.stop().await;
    ingest.stop().await;
}
