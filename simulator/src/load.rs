//! A steady load at a chosen rate, the benchmarks' load generator: customers in live
//! chats an agent joined add products to their carts, take some out and order, each
//! widget event posted to ingest over HTTP, while the chat platform hands some of those
//! chats over to new ones. The same seed sends the same events in the same order; only
//! their times come from the clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_runtime::config::KafkaArgs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rust_decimal::Decimal;
use schemas::keys;
use schemas::records::{
    Agent, AgentKind, CartLine, CartProduct, ChatEvent, ChatEventKind, EventName, IdentityMode, LineItem, Order,
    OrganizationSettings, Page, WidgetEvent,
};
use schemas::topics::Topic;
use schemas::values::{Money, Timestamp};
use tokio::sync::Semaphore;

use crate::keep_alive::KeepAlive;
use crate::write::post_kept;

/// The organization the load trades under.
pub const ORGANIZATION: &str = "org_load";
/// Its connected website.
pub const WEBSITE: &str = "load-shop.example.com";

const CURRENCIES: [&str; 2] = ["USD", "EUR"];
const PRODUCTS: u32 = 60;
const TEAMS: [&str; 2] = ["team-sales", "team-support"];

/// A line of a customer's cart as the load remembers it, so a removal takes out what is
/// there and an order checks out what was added.
#[derive(Debug, Clone)]
struct Line {
    product: u32,
    quantity: i32,
}

#[derive(Debug, Clone)]
struct Customer {
    id: String,
    currency: &'static str,
    /// Chats this customer has had; the live one is the last.
    chats: u32,
    cart: Vec<Line>,
}

impl Customer {
    fn chat_id(&self) -> String {
        format!("chat-{}-{}", self.id, self.chats)
    }
}

/// The load's state: who is shopping, what is in their carts, which chat is live.
#[derive(Debug)]
pub struct Load {
    rng: StdRng,
    customers: Vec<Customer>,
    next_order: u64,
}

impl Load {
    /// `customers` customers, each to be put in a live chat by [`Load::opening_chats`].
    pub fn new(seed: u64, customers: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let customers = (0..customers.max(1))
            .map(|i| Customer {
                id: format!("load-{i}"),
                currency: CURRENCIES[rng.random_range(0..CURRENCIES.len())],
                chats: 1,
                cart: Vec::new(),
            })
            .collect();
        Load {
            rng,
            customers,
            next_order: 1_000_000,
        }
    }

    /// The organization's settings, with a rate limit no load reaches: the benchmarks
    /// measure the pipeline, not the limiter.
    pub fn organization(&self) -> OrganizationSettings {
        OrganizationSettings {
            organization_id: ORGANIZATION.into(),
            websites: vec![WEBSITE.into()],
            timezone: "UTC".into(),
            rate_limit_per_second: Some(i32::MAX),
            rate_limit_burst: Some(i32::MAX),
            updated_at: None,
            identity_mode: IdentityMode::Off,
            identity_key_id: None,
            identity_previous_key_id: None,
        }
    }

    /// Every customer's chat, started at `at` and joined by an agent just after: to be
    /// written before the load starts, so every widget event has a live chat.
    pub fn opening_chats(&mut self, at: Timestamp) -> Vec<ChatEvent> {
        let mut events = Vec::with_capacity(self.customers.len() * 2);
        for i in 0..self.customers.len() {
            let chat = self.customers[i].chat_id();
            events.extend(self.open_chat(i, &chat, at));
        }
        events
    }

    /// One customer's live chat handed over to a new one: the new chat starts and an
    /// agent joins at `at`, the old one ends just after, so the customer is never
    /// without a live chat. A chat platform's stream never stands still, and the
    /// attributor decides an order once its partition's chat stream has passed it.
    pub fn handover(&mut self, at: Timestamp) -> Vec<ChatEvent> {
        let i = self.rng.random_range(0..self.customers.len());
        let old = self.customers[i].chat_id();
        self.customers[i].chats += 1;
        let new = self.customers[i].chat_id();
        let mut events = self.open_chat(i, &new, at);
        let ended = self.chat_event(i, &old, ChatEventKind::ChatEnded, Timestamp(at.micros() + 1));
        events.push(ended);
        events
    }

    fn open_chat(&mut self, i: usize, chat: &str, at: Timestamp) -> Vec<ChatEvent> {
        let mut started = self.chat_event(i, chat, ChatEventKind::ChatStarted, at);
        started.team_id = Some(TEAMS[self.rng.random_range(0..TEAMS.len())].into());
        let mut joined = self.chat_event(i, chat, ChatEventKind::AgentJoined, Timestamp(at.micros() + 1));
        joined.agent = Some(if self.rng.random_bool(0.5) {
            Agent {
                id: "ai-assistant".into(),
                kind: AgentKind::Ai,
            }
        } else {
            Agent {
                id: "agent-ana".into(),
                kind: AgentKind::Human,
            }
        });
        vec![started, joined]
    }

    fn chat_event(&mut self, i: usize, chat: &str, kind: ChatEventKind, at: Timestamp) -> ChatEvent {
        ChatEvent {
            event_id: self.uuid(),
            organization_id: ORGANIZATION.into(),
            customer_id: self.customers[i].id.clone(),
            chat_id: chat.into(),
            kind,
            at,
            team_id: None,
            agent: None,
        }
    }

    /// The next widget event: of a customer picked at random, an order one time in
    /// five (of the cart, or of one product when the cart is empty), a removal of a
    /// product in the cart one in ten, else a product added. `at` fills `received_at`,
    /// which ingest stamps again.
    pub fn next_widget(&mut self, at: Timestamp) -> WidgetEvent {
        let i = self.rng.random_range(0..self.customers.len());
        let roll = self.rng.random_range(0..100);
        let mut event = WidgetEvent {
            event_id: self.uuid(),
            organization_id: ORGANIZATION.into(),
            customer_id: self.customers[i].id.clone(),
            name: EventName::StoreProductAddedToCart,
            page: Page {
                url: format!("https://{WEBSITE}/cart"),
                title: None,
                referrer: None,
            },
            occurred_at: None,
            received_at: at,
            order: None,
            cart_lines: Vec::new(),
            identity_verified: false,
        };
        let currency = self.customers[i].currency;
        match roll {
            0..20 => {
                if self.customers[i].cart.is_empty() {
                    let product = self.rng.random_range(1..=PRODUCTS);
                    self.customers[i].cart.push(Line { product, quantity: 1 });
                }
                let lines = std::mem::take(&mut self.customers[i].cart);
                self.next_order += 1;
                let id = self.next_order.to_string();
                let line_items: Vec<LineItem> = lines
                    .iter()
                    .map(|l| LineItem {
                        product_id: product_id(l.product),
                        title: title(l.product),
                        quantity: l.quantity,
                        price: Money::new(price(l.product, currency)).unwrap_or_default(),
                        sku: None,
                        variant_id: None,
                        variant_title: None,
                        thumbnail_url: None,
                    })
                    .collect();
                let total: Decimal = lines
                    .iter()
                    .map(|l| price(l.product, currency) * Decimal::from(l.quantity))
                    .sum();
                event.name = EventName::StoreOrderWasCreated;
                event.page.url = format!("https://{WEBSITE}/checkout/thanks");
                event.order = Some(Order {
                    order_number: format!("#{id}"),
                    id,
                    currency: currency.into(),
                    total_price: Money::new(total).unwrap_or_default(),
                    subtotal_price: None,
                    shipping_price: None,
                    tax_price: None,
                    status_page_url: None,
                    sales_channel: None,
                    discount_codes: Vec::new(),
                    line_items,
                });
            }
            20..30 if !self.customers[i].cart.is_empty() => {
                let cart = &mut self.customers[i].cart;
                let at_line = self.rng.random_range(0..cart.len());
                let product = cart[at_line].product;
                cart[at_line].quantity -= 1;
                if cart[at_line].quantity == 0 {
                    cart.remove(at_line);
                }
                event.name = EventName::StoreProductRemovedFromCart;
                event.cart_lines = vec![cart_line(product, 1, currency)];
            }
            _ => {
                let product = self.rng.random_range(1..=PRODUCTS);
                let quantity = self.rng.random_range(1..3);
                let cart = &mut self.customers[i].cart;
                match cart.iter_mut().find(|l| l.product == product) {
                    Some(line) => line.quantity += quantity,
                    None => cart.push(Line { product, quantity }),
                }
                event.cart_lines = vec![cart_line(product, quantity, currency)];
            }
        }
        event
    }

    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }
}

fn product_id(product: u32) -> String {
    format!("p-{product}")
}

fn title(product: u32) -> String {
    format!("Product {product}")
}

/// A product's unit price: fixed per product, so a cart's lines add up across events.
fn price(product: u32, currency: &str) -> Decimal {
    let cents = 499 + i64::from(product) * 1_237 % 15_000;
    match currency {
        "EUR" => Decimal::new(cents * 9 / 10, 2),
        _ => Decimal::new(cents, 2),
    }
}

fn cart_line(product: u32, quantity: i32, currency: &str) -> CartLine {
    let unit = price(product, currency);
    CartLine {
        total_price: Money::new(unit * Decimal::from(quantity)).unwrap_or_default(),
        currency: currency.into(),
        quantity,
        product: CartProduct {
            id: product_id(product),
            title: title(product),
            price: Some(Money::new(unit).unwrap_or_default()),
            sku: None,
            variant_id: None,
            thumbnail_url: None,
        },
    }
}

/// How a load runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Widget events posted per second.
    pub rate: u32,
    /// How long the load lasts.
    pub duration: Duration,
    /// A chat handover (three chat events) every this many widget events; 0 for none.
    pub handover_every: u32,
    /// Requests in flight at most. Beyond it the load falls behind its schedule instead
    /// of opening ever more connections, so a pipeline that cannot keep up shows as a
    /// lower rate, not as a pile of sockets.
    pub max_in_flight: usize,
}

/// One widget event the load posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub event_id: String,
    pub name: EventName,
    /// The order's id, for an order.
    pub order_id: Option<String>,
    /// When the schedule wanted it sent.
    pub due: Instant,
    /// When the last answer came.
    pub answered: Instant,
    /// The last answer's status; 0 when ingest could not be reached.
    pub status: u16,
}

impl Posted {
    pub fn accepted(&self) -> bool {
        self.status == 202
    }
}

/// What a load sent.
#[derive(Debug)]
pub struct Outcome {
    /// Every widget event, in the order they were due.
    pub posted: Vec<Posted>,
    /// Chat events written, and those the broker did not acknowledge.
    pub chat_events: u64,
    pub chat_events_failed: u64,
    /// When the last answer came.
    pub finished: Instant,
}

/// Sends `load` at `settings.rate` widget events per second for `settings.duration`,
/// the first due at `start`: each posted to ingest at `ingest` over HTTP/1.1 on a kept
/// connection, as a browser keeps its connection to a site, a 429 or 503 retried with
/// the same `event_id` as a widget does; the chat
/// handovers written straight to `chat.sessions`, as the chat platform does.
pub async fn run(
    kafka: &KafkaArgs,
    producer: &FutureProducer,
    ingest: SocketAddr,
    load: &mut Load,
    settings: &Settings,
    start: Instant,
) -> anyhow::Result<Outcome> {
    let chats = kafka.topic_names()?.name(Topic::ChatSessions);
    let rate = f64::from(settings.rate.max(1));
    let total = (rate * settings.duration.as_secs_f64()).round() as u64;
    let in_flight = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
    let client = Arc::new(KeepAlive::new(ingest));
    let mut chat_events = 0u64;
    let mut senders = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut deliveries = Vec::new();
    let mut acknowledgements = Vec::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let now = Timestamp::from_datetime(chrono::Utc::now());
        if settings.handover_every > 0 && i % u64::from(settings.handover_every) == 0 {
            for event in load.handover(now) {
                let key = keys::org_customer(&event.organization_id, &event.customer_id);
                let value = schemas::encode(&event)?;
                // Enqueued here, in order, and acknowledged in the background: the
                // schedule must not wait for the broker.
                let record = FutureRecord::to(&chats).key(&key).payload(&value);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
                chat_events += 1;
            }
            if deliveries.len() >= 64 {
                acknowledgements.push(tokio::spawn(failed_deliveries(std::mem::take(&mut deliveries))));
            }
        }
        let event = load.next_widget(now);
        let permit = Arc::clone(&in_flight).acquire_owned().await?;
        let client = Arc::clone(&client);
        senders.push(tokio::spawn(async move {
            let status = post_as_a_widget(&client, &event).await;
            let answered = Instant::now();
            drop(permit);
            Posted {
                order_id: event.order.as_ref().map(|o| o.id.clone()),
                event_id: event.event_id,
                name: event.name,
                due,
                answered,
                status,
            }
        }));
    }
    let mut posted = Vec::with_capacity(senders.len());
    for sender in senders {
        posted.push(sender.await?);
    }
    let finished = posted.iter().map(|p| p.answered).max().unwrap_or(start);
    let mut chat_events_failed = failed_deliveries(deliveries).await;
    for batch in acknowledgements {
        chat_events_failed += batch.await?;
    }
    Ok(Outcome {
        posted,
        chat_events,
        chat_events_failed,
        finished,
    })
}

/// How many of `deliveries` the broker did not acknowledge.
async fn failed_deliveries(deliveries: Vec<DeliveryFuture>) -> u64 {
    let mut failed = 0;
    for delivery in deliveries {
        if !matches!(delivery.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    failed
}

/// Posts `event` until ingest answers something other than "try again"; the last status.
async fn post_as_a_widget(ingest: &KeepAlive, event: &WidgetEvent) -> u16 {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let status = match post_kept(ingest, event).await {
            Ok((status, _)) => status,
            Err(_) => 0,
        };
        if !matches!(status, 0 | 429 | 503) || attempts >= 10 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Timestamp = Timestamp(1_795_774_530_123_456);

    fn events(seed: u64) -> Vec<WidgetEvent> {
        let mut load = Load::new(seed, 20);
        (0..500).map(|_| load.next_widget(AT)).collect()
    }

    #[test]
    fn a_seed_sends_the_same_events_and_another_seed_others() {
        assert_eq!(events(7), events(7));
        assert_ne!(events(7), events(8));
    }

    #[test]
    fn every_event_passes_the_rules_and_every_order_is_new() {
        let mut load = Load::new(3, 20);
        for event in load.opening_chats(AT).iter().chain(&load.handover(AT)) {
            schemas::validation::validate_chat_event(event).unwrap();
        }
        let events: Vec<WidgetEvent> = (0..2_000).map(|_| load.next_widget(AT)).collect();
        let mut orders = Vec::new();
        for event in &events {
            schemas::validation::validate_widget_event(event).unwrap();
            if let Some(order) = &event.order {
                let sum: Decimal = order
                    .line_items
                    .iter()
                    .map(|l| l.price.value() * Decimal::from(l.quantity))
                    .sum();
                assert_eq!(order.total_price.value(), sum);
                orders.push(order.id.clone());
            }
        }
        let all = orders.len();
        assert!(all > 300 && all < 500, "about one event in five is an order: {all}");
        orders.sort();
        orders.dedup();
        assert_eq!(orders.len(), all);
        assert!(events.iter().any(|e| e.name == EventName::StoreProductRemovedFromCart));
    }

    #[test]
    fn a_handover_opens_the_new_chat_before_the_old_one_ends() {
        let mut load = Load::new(1, 1);
        let opening = load.opening_chats(AT);
        let handover = load.handover(Timestamp(AT.micros() + 1_000));
        assert_eq!(handover[0].kind, ChatEventKind::ChatStarted);
        assert_eq!(handover[1].kind, ChatEventKind::AgentJoined);
        assert_eq!(handover[2].kind, ChatEventKind::ChatEnded);
        assert_eq!(handover[2].chat_id, opening[0].chat_id);
        assert_ne!(handover[0].chat_id, opening[0].chat_id);
        assert!(handover[1].at <= handover[2].at);
    }
}
