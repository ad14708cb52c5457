//! The attributor through the real broker: chat events and orders in, attributed orders
//! and sidebar summaries out, including chat events that arrive after their order,
//! before the chat stream's watermark passes it and after (late).

use std::time::Duration;

use clap::Parser;
use kafka_runtime::shutdown::Shutdown;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::{TestEnv, await_ready, free_local_addr, http_get, metric_value, read_exactly};
use schemas::keys;
use schemas::records::{
    Agent, AgentKind, AttributedOrder, ChatEvent, ChatEventKind, CustomerOrderSummary, EnrichedOrder, HandledBy,
    SaleTiming,
};
use schemas::samples::Sample;
use schemas::topics::Topic;
use schemas::values::Timestamp;

const ORG: &str = "org_at";
const TIMEOUT: Duration = Duration::from_secs(60);
const MINUTE: i64 = 60_000_000;

struct Writer {
    producer: FutureProducer,
    chats: String,
    orders: String,
}

impl Writer {
    async fn chat(&self, customer: &str, chat: &str, kind: ChatEventKind, at: i64, agent: Option<AgentKind>) {
        let event = ChatEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            organization_id: ORG.into(),
            customer_id: customer.into(),
            chat_id: chat.into(),
            kind,
            at: Timestamp(at),
            team_id: (kind == ChatEventKind::ChatStarted).then(|| "team-a".into()),
            agent: agent.map(|kind| Agent {
                id: format!("agent-{kind:?}"),
                kind,
            }),
        };
        self.send(&self.chats, customer, schemas::encode(&event).unwrap()).await;
    }

    async fn order(&self, customer: &str, order_id: &str, at: i64) {
        let mut order = EnrichedOrder::sample();
        order.organization_id = ORG.into();
        order.customer_id = customer.into();
        order.order.id = order_id.into();
        order.order.order_number = format!("#{order_id}");
        order.placed_at = Timestamp(at);
        self.send(&self.orders, customer, schemas::encode(&order).unwrap())
            .await;
    }

    async fn send(&self, topic: &str, customer: &str, value: Vec<u8>) {
        let key = keys::org_customer(ORG, customer);
        self.producer
            .send(FutureRecord::to(topic).key(&key).payload(&value), TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("cannot write to {topic}: {e}"));
    }
}

/// Stops the stage when a failed assertion unwinds the test: the test runtime would
/// otherwise wait for its worker thread forever.
struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

fn decode_all<R: schemas::Record>(records: Vec<sales_tests::KeyValue>) -> Vec<R> {
    records
        .into_iter()
        .map(|(_, v)| schemas::decode(&v.unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn orders_are_attributed_also_when_their_chat_events_come_late() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let admin = free_local_addr();
    let (admin_text, group) = (admin.to_string(), env.unique_id("attributor"));
    let config = attributor::Config::try_parse_from([
        "attributor",
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
    ])
    .unwrap();
    let shutdown = Shutdown::new();
    let _stop_on_failure = StopOnDrop(shutdown.clone());
    let task = tokio::spawn(attributor::run(config, shutdown.clone()));
    await_ready(admin, "the attributor to be ready", TIMEOUT).await;

    let w = Writer {
        producer: env.client_config().set("acks", "all").create().unwrap(),
        chats: env.topic(Topic::ChatSessions),
        orders: env.topic(Topic::Orders),
    };
    let attributed = env.consumer(&env.topic(Topic::OrdersAttributed), "read_committed");
    let summaries = env.consumer(&env.topic(Topic::CustomerOrders), "read_committed");
    // Event times ten days ahead: the wall clock, which moves a quiet task's time, never
    // reaches them, so only the events move time here.
    let base = Timestamp::from_datetime(chrono::Utc::now()).micros() + 10 * 24 * 60 * MINUTE;
    use ChatEventKind::{AgentJoined, ChatEnded, ChatStarted};

    // 1. The chat is known before the order: decided at once.
    w.chat("c1", "K1", ChatStarted, base, None).await;
    w.chat("c1", "K1", AgentJoined, base + 1_000_000, Some(AgentKind::Ai))
        .await;
    w.chat("c1", "K1", ChatEnded, base + 10 * MINUTE, None).await;
    w.order("c1", "O1", base + 5 * MINUTE).await;
    let first: Vec<AttributedOrder> = decode_all(read_exactly(&attributed, "O1", 1, TIMEOUT, Duration::ZERO).await);
    let a = first[0].attribution.as_ref().expect("O1 is attributed");
    assert_eq!((a.chat_id.as_str(), a.sale_timing), ("K1", SaleTiming::DuringChat));
    assert_eq!((a.handled_by, a.ai_agent_chat), (HandledBy::AiOnly, true));
    assert_eq!(a.time_to_order_micros, 5 * MINUTE);
    assert_eq!(a.team_id.as_deref(), Some("team-a"));

    // 2. The order first, its chat's events after it, before the watermark passes it.
    let t2 = base + 60 * MINUTE;
    w.order("c2", "O2", t2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.chat("c2", "K2", ChatStarted, t2 - MINUTE, None).await;
    w.chat("c2", "K2", AgentJoined, t2 - MINUTE + 1_000_000, Some(AgentKind::Human))
        .await;
    w.chat("c2", "K2", ChatEnded, t2 + 10_000_000, None).await;
    let second: Vec<AttributedOrder> = decode_all(read_exactly(&attributed, "O2", 1, TIMEOUT, Duration::ZERO).await);
    assert_eq!(second[0].order_id, "O2");
    let a = second[0].attribution.as_ref().expect("O2 waited for its chat");
    assert_eq!((a.chat_id.as_str(), a.handled_by), ("K2", HandledBy::HumanOnly));

    // 3. A chat event behind the chat stream's watermark (genuinely late) cannot change
    // a decision already made: a chat of c3 without agents moves the watermark of its
    // partition past O3, which is decided without the chat whose events come after.
    let t3 = base + 120 * MINUTE;
    w.order("c3", "O3", t3).await;
    w.chat("c3", "K3x", ChatStarted, t3 + MINUTE, None).await;
    let third: Vec<AttributedOrder> = decode_all(read_exactly(&attributed, "O3", 1, TIMEOUT, Duration::ZERO).await);
    assert_eq!(third[0].order_id, "O3");
    assert_eq!(
        third[0].attribution, None,
        "decided once the chat watermark passed it, before its chat was known"
    );
    w.chat("c3", "K3", ChatStarted, t3 - MINUTE, None).await;
    w.chat("c3", "K3", AgentJoined, t3 - MINUTE + 1, Some(AgentKind::Human))
        .await;
    w.chat("c3", "K3", ChatEnded, t3 + 60 * MINUTE, None).await;
    // A later order of c3 sees the late chat.
    w.order("c3", "O4", t3 + 31_000_000).await;
    let fourth: Vec<AttributedOrder> =
        decode_all(read_exactly(&attributed, "O4", 1, TIMEOUT, Duration::from_secs(3)).await);
    assert_eq!(fourth[0].order_id, "O4");
    assert_eq!(fourth[0].attribution.as_ref().map(|a| a.chat_id.as_str()), Some("K3"));
    assert_eq!(first[0].organization_id, ORG);

    // The sidebar: one summary per order, the last of c3 counting both its orders.
    let summaries: Vec<CustomerOrderSummary> =
        decode_all(read_exactly(&summaries, "summaries", 4, TIMEOUT, Duration::from_secs(2)).await);
    let c3 = summaries.iter().rfind(|s| s.customer_id == "c3").unwrap();
    assert_eq!(c3.order_count, 2);
    assert_eq!(c3.orders_during_chat, 1);
    assert_eq!(c3.recent_orders[0].order_id, "O4");
    assert_eq!(c3.recent_orders[0].chat_id.as_deref(), Some("K3"));
    assert_eq!(c3.spend[0].amount.value() * rust_decimal::Decimal::from(1), {
        let price = EnrichedOrder::sample().order.total_price.value();
        price + price
    });

    // Metrics count processing, not commits: records replayed after an aborted
    // transaction (a slow broker) are counted again, so with aborts they may be higher.
    let (_, metrics) = http_get(admin, "/metrics").await.unwrap();
    let aborted = metric_value(&metrics, "stream_aborts_total") > 0.0;
    for (series, expected) in [
        (
            r#"attributor_orders_total{outcome="unattributed",released_by="watermark"}"#,
            1.0,
        ),
        ("stream_late_records_total", 2.0),
    ] {
        let value = metric_value(&metrics, series);
        assert!(
            value == expected || aborted && value > expected,
            "{series} is {value}, expected {expected}:\n{metrics}"
        );
    }
    shutdown.trigger();
    let stopped = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the attributor stops within 30 s of shutdown")
        .expect("the attributor task does not panic");
    if let Err(e) = stopped {
        panic!("the attributor stopped with an error: {e:#}");
    }
}
