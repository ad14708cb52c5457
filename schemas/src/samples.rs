//! One fully populated instance of every record: every optional field set, every list
//! non-empty. They are the committed fixtures' content, the benchmarks' input and the
//! probe that finds a Rust type drifting from its schema.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::records::*;
use crate::values::{Money, Seconds, Timestamp};

/// A record with a fully populated sample.
pub trait Sample: Record {
    fn sample() -> Self;
}

fn money(text: &str) -> Money {
    Money::new(Decimal::from_str(text).unwrap_or_default()).unwrap_or_default()
}

fn s(text: &str) -> String {
    text.to_string()
}

/// 2026-11-27T10:15:30.123456Z
const T0: i64 = 1_795_774_530_123_456;

fn at(offset_seconds: i64) -> Timestamp {
    Timestamp(T0 + offset_seconds * 1_000_000)
}

fn agent(kind: AgentKind) -> Agent {
    let id = match kind {
        AgentKind::Human => "agent-ana",
        AgentKind::Ai => "ai-assistant",
    };
    Agent { id: s(id), kind }
}

fn order() -> Order {
    Order {
        id: s("1042"),
        order_number: s("#1042"),
        currency: s("USD"),
        total_price: money("149.99"),
        subtotal_price: Some(money("139.99")),
        shipping_price: Some(money("5.00")),
        tax_price: Some(money("5.00")),
        status_page_url: Some(s("https://shop.example.com/orders/1042")),
        sales_channel: Some(SalesChannel {
            id: Some(s("web")),
            name: Some(s("Online Store")),
        }),
        discount_codes: vec![s("WELCOME10")],
        line_items: vec![LineItem {
            product_id: s("123456789"),
            title: s("Merino Wool Crew Neck"),
            quantity: 1,
            price: money("149.99"),
            sku: Some(s("MW-CREW-M")),
            variant_id: Some(s("987")),
            variant_title: Some(s("M / Navy")),
            thumbnail_url: Some(s("https://cdn.example.com/crew.jpg")),
        }],
    }
}

fn item() -> NotificationItem {
    NotificationItem {
        product_id: s("123456789"),
        title: s("Merino Wool Crew Neck"),
        quantity: 2,
        unit_price: Some(money("74.995")),
        line_total: Some(money("149.99")),
        currency: s("USD"),
        thumbnail_url: Some(s("https://cdn.example.com/crew.jpg")),
    }
}

fn enriched_order() -> EnrichedOrder {
    EnrichedOrder {
        event_id: s("0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11"),
        organization_id: s("org_8d2f"),
        customer_id: s("c-5e1b2a"),
        placed_at: at(0),
        occurred_at: Some(at(-1)),
        page_url: s("https://shop.example.com/checkout/thanks"),
        order: order(),
        active_chat_id: Some(s("chat-77")),
    }
}

fn top_order() -> TopOrder {
    TopOrder {
        order_id: s("1042"),
        order_number: s("#1042"),
        customer_id: s("c-5e1b2a"),
        total: money("149.99"),
        placed_at: at(0),
        chat_id: Some(s("chat-77")),
    }
}

fn timing() -> TimingBreakdown {
    TimingBreakdown {
        sale_timing: SaleTiming::DuringChat,
        orders: 1,
        revenue: money("149.99"),
    }
}

fn team() -> TeamBreakdown {
    TeamBreakdown {
        team_id: Some(s("team-sales")),
        orders: 1,
        revenue: money("149.99"),
    }
}

fn section() -> SalesSection {
    SalesSection {
        currencies: vec![CurrencyTotals {
            currency: s("USD"),
            orders: 1,
            revenue: money("149.99"),
            average_time_to_order_seconds: Some(
                Seconds::new(Decimal::from_str("754.250001").unwrap_or_default()).unwrap_or_default(),
            ),
            by_sale_timing: vec![timing()],
            by_team: vec![team()],
            top_orders: vec![top_order()],
        }],
    }
}

fn cell() -> SalesCell {
    SalesCell {
        sale_timing: SaleTiming::DuringChat,
        team_id: Some(s("team-sales")),
        other_teams: false,
        handled_by: HandledBy::AiAndHuman,
        currency: s("USD"),
        orders: 1,
        revenue: money("149.99"),
        time_to_order_sum_micros: 754_250_001,
        top_orders: vec![CellOrder {
            order_id: s("5012345"),
            order_number: s("#1042"),
            total: money("149.99"),
            placed_at: at(0),
            time_to_order_micros: 754_250_001,
            chat_id: s("chat-77"),
        }],
    }
}

impl Sample for OrganizationSettings {
    fn sample() -> Self {
        OrganizationSettings {
            organization_id: s("org_8d2f"),
            websites: vec![s("shop.example.com"), s("example.com")],
            timezone: s("Europe/Warsaw"),
            rate_limit_per_second: Some(150),
            rate_limit_burst: Some(300),
            updated_at: Some(at(-3600)),
            identity_mode: IdentityMode::Optional,
            identity_key_id: Some(s("shop-2026-11")),
            identity_previous_key_id: Some(s("shop-2026-05")),
        }
    }
}

impl Sample for WidgetEvent {
    fn sample() -> Self {
        WidgetEvent {
            event_id: s("0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11"),
            organization_id: s("org_8d2f"),
            customer_id: s("c-5e1b2a"),
            name: EventName::StoreOrderWasCreated,
            page: Page {
                url: s("https://shop.example.com/checkout/thanks"),
                title: Some(s("Thank you")),
                referrer: Some(s("https://shop.example.com/cart")),
            },
            occurred_at: Some(at(-1)),
            received_at: at(0),
            order: Some(order()),
            cart_lines: vec![CartLine {
                total_price: money("149.99"),
                currency: s("USD"),
                quantity: 1,
                product: CartProduct {
                    id: s("123456789"),
                    title: s("Merino Wool Crew Neck"),
                    price: Some(money("149.99")),
                    sku: Some(s("MW-CREW-M")),
                    variant_id: Some(s("987")),
                    thumbnail_url: Some(s("https://cdn.example.com/crew.jpg")),
                },
            }],
            identity_verified: true,
        }
    }
}

impl Sample for ChatEvent {
    fn sample() -> Self {
        ChatEvent {
            event_id: s("ce-1"),
            organization_id: s("org_8d2f"),
            customer_id: s("c-5e1b2a"),
            chat_id: s("chat-77"),
            kind: ChatEventKind::AgentJoined,
            at: at(-754),
            team_id: Some(s("team-sales")),
            agent: Some(agent(AgentKind::Ai)),
        }
    }
}

impl Sample for EnrichedOrder {
    fn sample() -> Self {
        enriched_order()
    }
}

impl Sample for AgentNotification {
    fn sample() -> Self {
        AgentNotification {
            notification_id: s("0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11"),
            organization_id: s("org_8d2f"),
            customer_id: s("c-5e1b2a"),
            chat_id: s("chat-77"),
            kind: NotificationKind::OrderCreated,
            at: at(0),
            order_id: Some(s("1042")),
            order_number: Some(s("#1042")),
            total: Some(money("149.99")),
            currency: Some(s("USD")),
            items: vec![item()],
            cart_lines: vec![item()],
            cart_subtotals: vec![CurrencyAmount {
                currency: s("USD"),
                amount: money("149.99"),
            }],
        }
    }
}

impl Sample for CustomerOrderSummary {
    fn sample() -> Self {
        CustomerOrderSummary {
            organization_id: s("org_8d2f"),
            customer_id: s("c-5e1b2a"),
            recent_orders: vec![SidebarOrder {
                order_id: s("1042"),
                order_number: s("#1042"),
                total: money("149.99"),
                currency: s("USD"),
                placed_at: at(0),
                chat_id: Some(s("chat-77")),
                sale_timing: Some(SaleTiming::DuringChat),
            }],
            order_count: 3,
            spend: vec![CurrencyAmount {
                currency: s("USD"),
                amount: money("420.50"),
            }],
            orders_during_chat: 1,
            orders_after_chat: 1,
            updated_at: at(0),
        }
    }
}

impl Sample for AttributedOrder {
    fn sample() -> Self {
        AttributedOrder {
            organization_id: s("org_8d2f"),
            customer_id: s("c-5e1b2a"),
            order_id: s("1042"),
            order_number: s("#1042"),
            currency: s("USD"),
            total: money("149.99"),
            placed_at: at(0),
            attribution: Some(Attribution {
                chat_id: s("chat-77"),
                team_id: Some(s("team-sales")),
                chat_started_at: at(-754),
                chat_ended_at: Some(at(-60)),
                agents: vec![agent(AgentKind::Ai), agent(AgentKind::Human)],
                handled_by: HandledBy::AiAndHuman,
                ai_agent_chat: true,
                sale_timing: SaleTiming::AfterChat,
                time_to_order_micros: 754_000_000,
            }),
        }
    }
}

impl Sample for WinsCounter {
    fn sample() -> Self {
        WinsCounter {
            organization_id: s("org_8d2f"),
            date: s("2026-11-27"),
            timezone: s("Europe/Warsaw"),
            wins: 7,
            updated_at: at(0),
        }
    }
}

impl Sample for DailySalesReport {
    fn sample() -> Self {
        DailySalesReport {
            organization_id: s("org_8d2f"),
            date: s("2026-11-27"),
            timezone: s("Europe/Warsaw"),
            revision: 1,
            published_at: at(86_400),
            all_sales: section(),
            ai_agent_sales: section(),
            cells: vec![cell()],
            teams_merged: 0,
        }
    }
}

impl Sample for DeadLetter {
    fn sample() -> Self {
        DeadLetter {
            reason: s("unknown writer schema fingerprint 0123456789abcdef"),
            stage: s("enricher"),
            source_topic: s("sales.events.raw"),
            source_partition: 3,
            source_offset: 1_234,
            source_key: Some(b"org_8d2f:c-5e1b2a".to_vec()),
            source_value: Some(vec![0xC3, 0x01, 0xDE, 0xAD]),
            failed_at: at(5),
        }
    }
}

impl Sample for CustomerChats {
    fn sample() -> Self {
        CustomerChats {
            chats: vec![ChatState {
                chat_id: s("chat-77"),
                team_id: Some(s("team-sales")),
                started_at: Some(at(-754)),
                ended_at: Some(at(-60)),
                agents: vec![AgentJoin {
                    agent: agent(AgentKind::Human),
                    joined_at: at(-700),
                }],
            }],
            event_ids: vec![s("ce-1"), s("ce-2")],
        }
    }
}

impl Sample for CartState {
    fn sample() -> Self {
        CartState {
            lines: vec![item()],
            updated_at: at(-30),
        }
    }
}

impl Sample for SeenOrder {
    fn sample() -> Self {
        SeenOrder {
            event_id: s("0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11"),
            customer_id: s("c-5e1b2a"),
            first_seen_at: at(0),
        }
    }
}

impl Sample for SeenEvent {
    fn sample() -> Self {
        SeenEvent { seen_at: at(0) }
    }
}

impl Sample for PendingOrder {
    fn sample() -> Self {
        PendingOrder {
            order: enriched_order(),
            hold_until: at(30),
        }
    }
}

impl Sample for ReportState {
    fn sample() -> Self {
        ReportState {
            organization_id: s("org_8d2f"),
            date: s("2026-11-27"),
            timezone: s("Europe/Warsaw"),
            published_revision: Some(0),
            sections: vec![SectionState {
                ai_agent_only: true,
                currency: s("USD"),
                orders: 1,
                revenue: money("149.99"),
                time_to_order_sum_micros: 754_000_000,
                time_to_order_count: 1,
                by_sale_timing: vec![timing()],
                by_team: vec![team()],
                top_orders: vec![top_order()],
            }],
            cells: vec![cell()],
            team_ids: vec![s("team-sales")],
        }
    }
}

impl Sample for ExchangeRate {
    fn sample() -> Self {
        ExchangeRate {
            date: s("2026-11-27"),
            base_currency: s("EUR"),
            currency: s("PLN"),
            rate: crate::values::Rate::new(Decimal::from_str("4.2235").unwrap_or_default()).unwrap_or_default(),
            source: s("ecb"),
        }
    }
}
