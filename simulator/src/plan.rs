//! The simulated trade, as the list of records the store and the chat platform send.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use schemas::records::{
    Agent, AgentKind, CartLine, CartProduct, ChatEvent, ChatEventKind, EventName, IdentityMode, LineItem, Order,
    OrganizationSettings, Page, WidgetEvent,
};
use schemas::values::{Money, Timestamp};

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// An organization of the simulation.
#[derive(Debug, Clone)]
pub struct Shop {
    pub id: &'static str,
    pub timezone: &'static str,
    pub website: &'static str,
    /// Currencies it sells in; JPY has no minor unit.
    pub currencies: &'static [&'static str],
}

pub const SHOPS: [Shop; 3] = [
    Shop {
        id: "org_nordic",
        timezone: "Europe/Warsaw",
        website: "nordic-knits.example.com",
        currencies: &["EUR", "PLN"],
    },
    Shop {
        id: "org_harbor",
        timezone: "America/New_York",
        website: "harbor-goods.example.com",
        currencies: &["USD"],
    },
    Shop {
        id: "org_sakura",
        timezone: "Asia/Tokyo",
        website: "sakura-tea.example.com",
        currencies: &["JPY"],
    },
];

/// One record to send.
// A plan is built once and read in order; boxing the larger variant buys nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Chat(ChatEvent),
    Widget(WidgetEvent),
}

impl Write {
    /// The record's own time.
    pub fn at(&self) -> Timestamp {
        match self {
            Write::Chat(e) => e.at,
            Write::Widget(e) => e.received_at,
        }
    }
}

/// What the simulation sends, in the order it sends it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub organizations: Vec<OrganizationSettings>,
    /// The past days, written straight to the topics in this order.
    pub past: Vec<Write>,
    /// Orders fired again from a second device, written once `past` is through.
    pub past_later: Vec<Write>,
    /// Today: chat events written, widget events posted to ingest (which stamps their
    /// time), in this order.
    pub today: Vec<Write>,
}

impl Plan {
    /// Every widget event that is an order, past and today.
    pub fn orders(&self) -> impl Iterator<Item = &WidgetEvent> {
        self.past
            .iter()
            .chain(&self.past_later)
            .chain(&self.today)
            .filter_map(|w| match w {
                Write::Widget(e) if e.name == EventName::StoreOrderWasCreated => Some(e),
                _ => None,
            })
    }
}

impl Plan {
    /// Today's widget events other than orders (cart changes), for live traffic that can
    /// be sent again and again with new event ids without placing an order twice.
    pub fn today_cart_events(&self) -> Vec<WidgetEvent> {
        self.today
            .iter()
            .filter_map(|w| match w {
                Write::Widget(e) if e.name != EventName::StoreOrderWasCreated => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// For every order whose customer saw a chat end in the past days, the time from that
    /// end (the last one written, if several) to the order, in microseconds.
    pub fn orders_after_chat_end(&self) -> Vec<i64> {
        let ends: std::collections::HashMap<(&str, &str), i64> = self
            .past
            .iter()
            .filter_map(|w| match w {
                Write::Chat(e) if e.kind == ChatEventKind::ChatEnded => {
                    Some(((e.organization_id.as_str(), e.customer_id.as_str()), e.at.micros()))
                }
                _ => None,
            })
            .collect();
        self.orders()
            .filter_map(|o| {
                let end = ends.get(&(o.organization_id.as_str(), o.customer_id.as_str()))?;
                Some(o.received_at.micros() - end)
            })
            .collect()
    }
}

/// The (organization, order id) of every order among `writes`, each once.
pub fn order_ids(writes: &[Write]) -> std::collections::HashSet<(String, String)> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Widget(e) if e.name == EventName::StoreOrderWasCreated => {
                e.order.as_ref().map(|o| (e.organization_id.clone(), o.id.clone()))
            }
            _ => None,
        })
        .collect()
}

struct Gen {
    rng: StdRng,
    next_order: u64,
    next_customer: u64,
}

/// What happens in one customer's visit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Visit {
    OrderDuringChat,
    OrderDaysAfterChat,
    OrderLongAfterChat,
    /// A chat, then an order 29 days after its end (attributed) and another 30 days and
    /// a microsecond after it (just outside the window): both only when they still fall
    /// in the past days, so in a shorter plan the visit is a chat without an order.
    OrderMonthAfterChat,
    OrderWithoutChat,
    OrderInUnansweredChat,
    BrowseOnly,
}

impl Gen {
    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn price(&mut self, currency: &str) -> Decimal {
        if currency == "JPY" {
            Decimal::from(self.rng.random_range(5..120) * 100)
        } else {
            Decimal::new(self.rng.random_range(499..19_999), 2)
        }
    }

    fn chat(&mut self, shop: &Shop, customer: &str, chat: &str, kind: ChatEventKind, at: i64) -> ChatEvent {
        ChatEvent {
            event_id: self.uuid(),
            organization_id: shop.id.into(),
            customer_id: customer.into(),
            chat_id: chat.into(),
            kind,
            at: Timestamp(at),
            team_id: None,
            agent: None,
        }
    }

    fn widget(&mut self, shop: &Shop, customer: &str, name: EventName, at: i64, path: &str) -> WidgetEvent {
        WidgetEvent {
            event_id: self.uuid(),
            organization_id: shop.id.into(),
            customer_id: customer.into(),
            name,
            page: Page {
                url: format!("https://{}{path}", shop.website),
                title: None,
                referrer: None,
            },
            occurred_at: None,
            received_at: Timestamp(at),
            order: None,
            cart_lines: Vec::new(),
            identity_verified: false,
        }
    }

    fn cart(&mut self, shop: &Shop, customer: &str, currency: &str, added: bool, at: i64) -> WidgetEvent {
        let name = if added {
            EventName::StoreProductAddedToCart
        } else {
            EventName::StoreProductRemovedFromCart
        };
        let mut event = self.widget(shop, customer, name, at, "/cart");
        let product = self.rng.random_range(1..40);
        let price = self.price(currency);
        let quantity = self.rng.random_range(1..3);
        event.cart_lines = vec![CartLine {
            total_price: Money::new(price * Decimal::from(quantity)).unwrap_or_default(),
            currency: currency.into(),
            quantity,
            product: CartProduct {
                id: format!("p-{product}"),
                title: format!("Product {product}"),
                price: Some(Money::new(price).unwrap_or_default()),
                sku: None,
                variant_id: None,
                // Some shops send no pictures: the inbox shows its placeholder.
                thumbnail_url: (product % 3 != 0).then(|| format!("https://cdn.{}/p-{product}.jpg", shop.website)),
            },
        }];
        event
    }

    fn order(&mut self, shop: &Shop, customer: &str, currency: &str, at: i64) -> WidgetEvent {
        let mut event = self.widget(shop, customer, EventName::StoreOrderWasCreated, at, "/checkout/thanks");
        self.next_order += 1;
        let id = self.next_order;
        let lines: Vec<LineItem> = (0..self.rng.random_range(1..4))
            .map(|_| {
                let product = self.rng.random_range(1..40);
                LineItem {
                    product_id: format!("p-{product}"),
                    title: format!("Product {product}"),
                    quantity: self.rng.random_range(1..3),
                    price: Money::new(self.price(currency)).unwrap_or_default(),
                    sku: None,
                    variant_id: None,
                    variant_title: None,
                    thumbnail_url: (product % 3 != 0).then(|| format!("https://cdn.{}/p-{product}.jpg", shop.website)),
                }
            })
            .collect();
        let total: Decimal = lines.iter().map(|l| l.price.value() * Decimal::from(l.quantity)).sum();
        event.order = Some(Order {
            id: id.to_string(),
            order_number: format!("#{id}"),
            currency: currency.into(),
            total_price: Money::new(total).unwrap_or_default(),
            subtotal_price: None,
            shipping_price: None,
            tax_price: None,
            status_page_url: None,
            sales_channel: None,
            discount_codes: Vec::new(),
            line_items: lines,
        });
        event
    }

    /// A chat: started with a team, agents joined (a person, an AI agent, or the AI
    /// first and a person after a handoff), ended `length` later unless `open`.
    /// Returns the events in time order.
    fn chat_session(
        &mut self,
        shop: &Shop,
        customer: &str,
        start: i64,
        length: i64,
        joined: bool,
        open: bool,
    ) -> Vec<ChatEvent> {
        let chat = format!("chat-{}", &self.uuid()[..8]);
        let mut started = self.chat(shop, customer, &chat, ChatEventKind::ChatStarted, start);
        started.team_id = Some(["team-sales", "team-support"][self.rng.random_range(0..2)].into());
        let mut events = vec![started];
        if joined {
            let agents: &[(&str, AgentKind, i64)] = match self.rng.random_range(0..3) {
                0 => &[("agent-ana", AgentKind::Human, 30 * SECOND)],
                1 => &[("ai-assistant", AgentKind::Ai, SECOND)],
                _ => &[
                    ("ai-assistant", AgentKind::Ai, SECOND),
                    ("agent-ben", AgentKind::Human, 3 * MINUTE),
                ],
            };
            for (id, kind, after) in agents {
                let mut join = self.chat(shop, customer, &chat, ChatEventKind::AgentJoined, start + after);
                join.agent = Some(Agent {
                    id: (*id).into(),
                    kind: *kind,
                });
                events.push(join);
            }
        }
        if !open {
            events.push(self.chat(shop, customer, &chat, ChatEventKind::ChatEnded, start + length));
        }
        events
    }
}

/// The simulated trade of `days` days before `now`'s UTC day, `visits` customer visits
/// per organization and day, and a few live visits today (at `now`).
pub fn plan(seed: u64, days: u32, visits: u32, now: Timestamp) -> Plan {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
        next_order: 1000,
        next_customer: 0,
    };
    let today = now.micros() - now.micros().rem_euclid(DAY);
    let mut plan = Plan::default();
    // Writes with the time they are sent at: the record's own time, except chat events
    // that arrive late, sent just after the order they explain.
    let mut past: Vec<(i64, Write)> = Vec::new();
    let mut later: Vec<(i64, Write)> = Vec::new();
    for shop in &SHOPS {
        plan.organizations.push(OrganizationSettings {
            organization_id: shop.id.into(),
            websites: vec![shop.website.into()],
            timezone: shop.timezone.into(),
            rate_limit_per_second: Some(10_000),
            rate_limit_burst: Some(20_000),
            updated_at: None,
            identity_mode: IdentityMode::Off,
            identity_key_id: None,
            identity_previous_key_id: None,
        });
        for day in 0..i64::from(days) {
            let day_start = today - (i64::from(days) - day) * DAY;
            for _ in 0..visits {
                g.next_customer += 1;
                let customer = format!("cust-{}", g.next_customer);
                let currency = shop.currencies[g.rng.random_range(0..shop.currencies.len())];
                let t0 = day_start + g.rng.random_range(0..DAY - 2 * HOUR);
                let visit = match g.rng.random_range(0..100) {
                    0..25 => Visit::OrderDuringChat,
                    25..40 => Visit::OrderDaysAfterChat,
                    40..48 => Visit::OrderLongAfterChat,
                    48..68 => Visit::OrderWithoutChat,
                    68..78 => Visit::OrderInUnansweredChat,
                    // Taken from the browsing visits, which it resembles in a short plan.
                    78..84 => Visit::OrderMonthAfterChat,
                    _ => Visit::BrowseOnly,
                };
                let mut writes: Vec<(i64, Write)> = Vec::new();
                let cart_at = t0 + 2 * MINUTE;
                writes.push((cart_at, Write::Widget(g.cart(shop, &customer, currency, true, cart_at))));
                if g.rng.random_bool(0.3) {
                    let at = cart_at + MINUTE;
                    writes.push((at, Write::Widget(g.cart(shop, &customer, currency, false, at))));
                }
                // The end of the chat of an order a month after it.
                let month_chat_end = t0 + 10 * MINUTE;
                let order_at = match visit {
                    Visit::OrderDuringChat | Visit::OrderInUnansweredChat => Some(t0 + 6 * MINUTE),
                    Visit::OrderDaysAfterChat => Some(t0 + g.rng.random_range(HOUR..3 * DAY)),
                    Visit::OrderLongAfterChat | Visit::OrderWithoutChat => Some(t0 + 10 * MINUTE),
                    Visit::OrderMonthAfterChat => Some(month_chat_end + 29 * DAY),
                    Visit::BrowseOnly => None,
                }
                // Orders stay in the past days; today's trade is live.
                .filter(|at| *at < today - HOUR);
                let outside_window_at = Some(month_chat_end + 30 * DAY + 1)
                    .filter(|at| visit == Visit::OrderMonthAfterChat && *at < today - HOUR);
                let chat = match visit {
                    Visit::OrderDuringChat | Visit::BrowseOnly => {
                        g.chat_session(shop, &customer, t0, 15 * MINUTE, true, false)
                    }
                    Visit::OrderDaysAfterChat | Visit::OrderMonthAfterChat => {
                        g.chat_session(shop, &customer, t0, 10 * MINUTE, true, false)
                    }
                    Visit::OrderLongAfterChat => {
                        g.chat_session(shop, &customer, t0 - 33 * DAY, 10 * MINUTE, true, false)
                    }
                    Visit::OrderInUnansweredChat => g.chat_session(shop, &customer, t0, 15 * MINUTE, false, false),
                    Visit::OrderWithoutChat => Vec::new(),
                };
                // A fifth of the chats during which an order is placed reach us late:
                // after the order.
                let late = visit == Visit::OrderDuringChat && g.rng.random_bool(0.2);
                for event in chat {
                    let sent = match order_at {
                        Some(order) if late && event.at.micros() <= order => order + 1,
                        _ => event.at.micros(),
                    };
                    writes.push((sent, Write::Chat(event)));
                }
                if let Some(at) = order_at {
                    let order = g.order(shop, &customer, currency, at);
                    if g.rng.random_bool(0.1) {
                        // The confirmation page reloaded: the same order, a new event.
                        let mut again = order.clone();
                        again.event_id = g.uuid();
                        again.received_at = Timestamp(at + 20 * SECOND);
                        writes.push((at + 20 * SECOND, Write::Widget(again)));
                    }
                    if g.rng.random_bool(0.08) {
                        // Opened on a second device, under another customer id.
                        let mut again = order.clone();
                        again.event_id = g.uuid();
                        again.customer_id = format!("{customer}-phone");
                        again.received_at = Timestamp(at + 3 * MINUTE);
                        later.push((at + 3 * MINUTE, Write::Widget(again)));
                    }
                    writes.push((at, Write::Widget(order)));
                }
                if let Some(at) = outside_window_at {
                    writes.push((at, Write::Widget(g.order(shop, &customer, currency, at))));
                }
                past.extend(writes);
            }
        }
        // Today, live: a customer in a chat an agent answered fills a cart and orders.
        for _ in 0..2 {
            g.next_customer += 1;
            let customer = format!("cust-{}", g.next_customer);
            let currency = shop.currencies[0];
            for event in g.chat_session(shop, &customer, now.micros() - 10 * MINUTE, 0, true, true) {
                plan.today.push(Write::Chat(event));
            }
            let at = now.micros();
            plan.today
                .push(Write::Widget(g.cart(shop, &customer, currency, true, at)));
            plan.today.push(Write::Widget(g.order(shop, &customer, currency, at)));
        }
    }
    // Sent in time order; records of one time keep their order (a chat start before its
    // join, an order before its late chat events).
    past.sort_by_key(|(sent, _)| *sent);
    later.sort_by_key(|(sent, _)| *sent);
    plan.past = past.into_iter().map(|(_, w)| w).collect();
    plan.past_later = later.into_iter().map(|(_, w)| w).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_795_774_530_123_456);

    #[test]
    fn a_seed_gives_the_same_plan_and_another_seed_another() {
        let a = plan(7, 7, 10, NOW);
        let b = plan(7, 7, 10, NOW);
        assert_eq!(a.past, b.past);
        assert_eq!(a.today, b.today);
        assert_ne!(plan(8, 7, 10, NOW).past, a.past);
    }

    #[test]
    fn every_widget_event_passes_the_rules_and_past_trade_stays_in_the_past() {
        let p = plan(1, 7, 20, NOW);
        let today = NOW.micros() - NOW.micros().rem_euclid(DAY);
        for write in p.past.iter().chain(&p.past_later).chain(&p.today) {
            match write {
                Write::Widget(e) => {
                    schemas::validation::validate_widget_event(e).unwrap();
                }
                Write::Chat(e) => schemas::validation::validate_chat_event(e).unwrap(),
            }
        }
        assert!(p.past.iter().all(|w| match w {
            Write::Widget(e) => e.received_at.micros() < today,
            Write::Chat(_) => true,
        }));
    }

    #[test]
    fn the_plan_has_duplicates_late_chats_and_every_kind_of_visit() {
        let p = plan(3, 7, 30, NOW);
        let orders: Vec<&WidgetEvent> = p.orders().collect();
        let mut ids: Vec<(&str, &str)> = orders
            .iter()
            .map(|o| (o.organization_id.as_str(), o.order.as_ref().unwrap().id.as_str()))
            .collect();
        let all = ids.len();
        ids.sort();
        ids.dedup();
        assert!(ids.len() < all, "some orders are fired twice");
        assert!(!p.past_later.is_empty(), "some from a second device");
        // A late chat event: sent after an order although it happened before it.
        let mut late = false;
        let mut last_order: Option<i64> = None;
        for w in &p.past {
            match w {
                Write::Widget(e) if e.order.is_some() => last_order = Some(e.received_at.micros()),
                Write::Chat(e) => late |= last_order.is_some_and(|o| e.at.micros() < o),
                _ => {}
            }
        }
        assert!(late);
    }

    #[test]
    fn a_month_long_plan_has_orders_29_days_and_just_over_30_days_after_a_chat() {
        let after_chat = plan(3, 36, 10, NOW).orders_after_chat_end();
        assert!(after_chat.contains(&(29 * DAY)));
        assert!(after_chat.contains(&(30 * DAY + 1)));
        // A week-long plan has no room for them: those visits order nothing.
        let week = plan(3, 7, 10, NOW);
        assert!(week.orders().all(|o| {
            week.past.iter().all(|w| match w {
                Write::Chat(e) if e.kind == ChatEventKind::ChatEnded && e.customer_id == o.customer_id => {
                    ![29 * DAY, 30 * DAY + 1].contains(&(o.received_at.micros() - e.at.micros()))
                }
                _ => true,
            })
        }));
    }
}
