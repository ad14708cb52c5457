//! The attributor's hold and release, run by the runtime's broker-free task driver: an
//! order waits until the chat stream's watermark has passed its time, so a chat event
//! that arrives after the order but happened before it still earns the order.

use std::time::Duration;

use attributor::app::{Attributor, PENDING, Windows};
use attributor::metrics::AttributorMetrics;
use kafka_runtime::driver::TaskDriver;
use schemas::keys;
use schemas::records::{AttributedOrder, ChatEvent, ChatEventKind, CustomerOrderSummary, EnrichedOrder};
use schemas::samples::Sample;
use schemas::topics::{Topic, TopicNames};
use schemas::values::Timestamp;

const MINUTE: i64 = 60_000_000;
const DAY: Duration = Duration::from_secs(86_400);
/// 2026-11-27T10:00:00Z
const T: Timestamp = Timestamp(1_795_773_600_000_000);

struct Setup {
    driver: TaskDriver,
    chats: String,
    orders: String,
    attributed: String,
    customer_orders: String,
}

fn setup() -> Setup {
    let topics = TopicNames::new("t.").unwrap();
    let windows = Windows {
        attribution: 30 * DAY,
        grace: 2 * DAY,
        history: 90 * DAY,
    };
    let app = Attributor::new("attributor", &topics, windows, AttributorMetrics::default());
    Setup {
        driver: TaskDriver::new(app, 0),
        chats: topics.name(Topic::ChatSessions),
        orders: topics.name(Topic::Orders),
        attributed: topics.name(Topic::OrdersAttributed),
        customer_orders: topics.name(Topic::CustomerOrders),
    }
}

fn order(id: &str, at: Timestamp) -> EnrichedOrder {
    let mut order = EnrichedOrder::sample();
    order.order.id = id.into();
    order.order.order_number = format!("#{id}");
    order.placed_at = at;
    order.active_chat_id = None;
    order
}

fn chat_event(id: &str, kind: ChatEventKind, at: Timestamp) -> ChatEvent {
    let mut event = ChatEvent::sample();
    event.event_id = id.into();
    event.kind = kind;
    event.at = at;
    if kind != ChatEventKind::AgentJoined {
        event.agent = None;
    }
    event
}

fn customer_key(org: &str, customer: &str) -> Vec<u8> {
    keys::org_customer(org, customer).into_bytes()
}

impl Setup {
    fn pipe_order(&mut self, order: &EnrichedOrder) {
        let key = customer_key(&order.organization_id, &order.customer_id);
        let value = schemas::encode(order).unwrap();
        self.driver.pipe(&self.orders, &key, &value).unwrap();
    }

    fn pipe_chat(&mut self, event: &ChatEvent) {
        let key = customer_key(&event.organization_id, &event.customer_id);
        let value = schemas::encode(event).unwrap();
        self.driver.pipe(&self.chats, &key, &value).unwrap();
    }

    fn decisions(&mut self) -> Vec<AttributedOrder> {
        self.driver
            .take_outputs_to(&self.attributed)
            .iter()
            .map(|o| schemas::decode(o.value.as_deref().unwrap()).unwrap())
            .collect()
    }
}

#[test]
fn an_order_waits_for_the_chat_watermark_and_goes_to_the_chat_that_came_after_it() {
    let mut s = setup();
    let placed = order("1001", T);
    s.pipe_order(&placed);
    assert!(s.decisions().is_empty(), "no chat event up to T is known yet: held");
    assert_eq!(s.driver.store(PENDING).len(), 1);

    // The chat happened before the order but arrives after it.
    let started = chat_event("ce-1", ChatEventKind::ChatStarted, Timestamp(T.0 - 10 * MINUTE));
    let joined = chat_event("ce-2", ChatEventKind::AgentJoined, Timestamp(T.0 - 5 * MINUTE));
    s.pipe_chat(&started);
    s.pipe_chat(&joined);
    assert!(
        s.decisions().is_empty(),
        "the chat stream is at T - 5 min, before the order: still held"
    );

    s.driver.advance(&s.chats.clone(), Timestamp(T.0 + 1));
    let decided = s.decisions();
    assert_eq!(decided.len(), 1, "released once the chat watermark passed T");
    let attribution = decided[0].attribution.as_ref().expect("attributed");
    assert_eq!(attribution.chat_id, started.chat_id);
    assert_eq!(attribution.time_to_order_micros, 10 * MINUTE);
    assert_eq!(s.driver.store(PENDING).len(), 0);

    let sidebar = s.driver.take_outputs_to(&s.customer_orders.clone());
    assert_eq!(
        sidebar.len(),
        1,
        "the customer's sidebar summary goes out with the decision"
    );
    let summary: CustomerOrderSummary = schemas::decode(sidebar[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(summary.recent_orders[0].order_id, "1001");
}

#[test]
fn an_order_behind_the_chat_watermark_is_decided_at_once_and_one_without_a_chat_unattributed() {
    let mut s = setup();
    s.pipe_chat(&chat_event(
        "ce-1",
        ChatEventKind::ChatStarted,
        Timestamp(T.0 - 10 * MINUTE),
    ));
    s.pipe_chat(&chat_event(
        "ce-2",
        ChatEventKind::AgentJoined,
        Timestamp(T.0 - 5 * MINUTE),
    ));
    s.driver.advance(&s.chats.clone(), Timestamp(T.0 + MINUTE));

    s.pipe_order(&order("1002", T));
    let decided = s.decisions();
    assert_eq!(decided.len(), 1, "every chat event up to T is in: no hold");
    assert!(decided[0].attribution.is_some());

    let mut stranger = order("1003", T);
    stranger.customer_id = "c-never-chatted".into();
    s.pipe_order(&stranger);
    let decided = s.decisions();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].attribution, None, "no chat of this customer: unattributed");
}

#[test]
fn the_decisions_watermark_stays_behind_a_held_order_and_a_restart_keeps_the_hold() {
    let mut s = setup();
    let (orders, chats, attributed) = (s.orders.clone(), s.chats.clone(), s.attributed.clone());
    s.pipe_order(&order("1004", T));
    s.driver.advance(&orders, Timestamp(T.0 + MINUTE));
    assert_eq!(
        s.driver.output_watermark(&attributed),
        T,
        "the held order keeps the decisions' watermark at its time"
    );

    // Everything the task knows is in its stores: a restart loses nothing.
    s.driver.restart();
    assert_eq!(s.driver.store(PENDING).len(), 1);
    assert_eq!(s.driver.input_watermark(&orders), Timestamp(T.0 + MINUTE));

    s.driver.advance(&chats, Timestamp(T.0 + 1));
    let decided = s.decisions();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].attribution, None);
    assert_eq!(s.driver.output_watermark(&attributed), Timestamp(T.0 + MINUTE));
}

#[test]
fn a_record_that_does_not_decode_is_rejected_and_leaves_nothing_behind() {
    let mut s = setup();
    let orders = s.orders.clone();
    let rejected = s.driver.pipe(&orders, b"org_8d2f:c-5e1b2a", b"not avro").unwrap_err();
    assert!(rejected.0.contains("not a valid EnrichedOrder record"), "{rejected:?}");
    assert!(s.driver.take_outputs().is_empty());
    assert_eq!(s.driver.store(PENDING).len(), 0);
}
