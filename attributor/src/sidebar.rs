//! The customer's order history for the agent's sidebar: the last orders with their
//! timing and chat, the order count, and the spend per currency.

use schemas::records::{AttributedOrder, CurrencyAmount, CustomerOrderSummary, SaleTiming, SidebarOrder};
use schemas::values::Money;

/// Orders the sidebar lists.
pub const RECENT_ORDERS: usize = 20;

/// The summary after `order` (`previous`: the summary so far, if any).
pub fn add_order(previous: Option<CustomerOrderSummary>, order: &AttributedOrder) -> CustomerOrderSummary {
    let mut summary = previous.unwrap_or_else(|| CustomerOrderSummary {
        organization_id: order.organization_id.clone(),
        customer_id: order.customer_id.clone(),
        recent_orders: Vec::new(),
        order_count: 0,
        spend: Vec::new(),
        orders_during_chat: 0,
        orders_after_chat: 0,
        updated_at: order.placed_at,
    });
    let attribution = order.attribution.as_ref();
    summary.recent_orders.push(SidebarOrder {
        order_id: order.order_id.clone(),
        order_number: order.order_number.clone(),
        total: order.total,
        currency: order.currency.clone(),
        placed_at: order.placed_at,
        chat_id: attribution.map(|a| a.chat_id.clone()),
        sale_timing: attribution.map(|a| a.sale_timing),
    });
    // Newest first; an order that arrives late takes its place by time.
    summary
        .recent_orders
        .sort_by(|a, b| (b.placed_at, &b.order_id).cmp(&(a.placed_at, &a.order_id)));
    summary.recent_orders.truncate(RECENT_ORDERS);
    summary.order_count += 1;
    match attribution.map(|a| a.sale_timing) {
        Some(SaleTiming::DuringChat) => summary.orders_during_chat += 1,
        Some(SaleTiming::AfterChat) => summary.orders_after_chat += 1,
        None => {}
    }
    match summary.spend.iter_mut().find(|s| s.currency == order.currency) {
        Some(spend) => spend.amount = Money::new(spend.amount.value() + order.total.value()).unwrap_or(spend.amount),
        None => {
            summary.spend.push(CurrencyAmount {
                currency: order.currency.clone(),
                amount: order.total,
            });
            summary.spend.sort_by(|a, b| a.currency.cmp(&b.currency));
        }
    }
    summary.updated_at = summary.updated_at.max(order.placed_at);
    summary
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use schemas::records::{Attribution, HandledBy};
    use schemas::values::Timestamp;

    use super::*;

    fn order(id: u32, at: i64, total: &str, currency: &str, timing: Option<SaleTiming>) -> AttributedOrder {
        AttributedOrder {
            organization_id: "org".into(),
            customer_id: "c".into(),
            order_id: id.to_string(),
            order_number: format!("#{id}"),
            currency: currency.into(),
            total: Money::new(Decimal::from_str(total).unwrap()).unwrap(),
            placed_at: Timestamp(at),
            attribution: timing.map(|sale_timing| Attribution {
                chat_id: "k".into(),
                team_id: None,
                chat_started_at: Timestamp(0),
                chat_ended_at: None,
                agents: Vec::new(),
                handled_by: HandledBy::HumanOnly,
                ai_agent_chat: false,
                sale_timing,
                time_to_order_micros: at,
            }),
        }
    }

    #[test]
    fn counts_spend_per_currency_and_timing() {
        let mut summary = None;
        for o in [
            order(1, 10, "10.50", "USD", Some(SaleTiming::DuringChat)),
            order(2, 20, "5", "EUR", Some(SaleTiming::AfterChat)),
            order(3, 30, "1.25", "USD", None),
        ] {
            summary = Some(add_order(summary, &o));
        }
        let summary = summary.unwrap();
        assert_eq!(summary.order_count, 3);
        assert_eq!((summary.orders_during_chat, summary.orders_after_chat), (1, 1));
        let spend: Vec<(String, String)> = summary
            .spend
            .iter()
            .map(|s| (s.currency.clone(), s.amount.to_string()))
            .collect();
        assert_eq!(spend, [("EUR".into(), "5".into()), ("USD".into(), "11.75".into())]);
        assert_eq!(summary.recent_orders[0].order_id, "3", "newest first");
        assert_eq!(summary.recent_orders[2].chat_id.as_deref(), Some("k"));
    }

    #[test]
    fn only_the_last_20_orders_are_listed_but_all_are_counted() {
        let mut summary = None;
        for i in 0..25 {
            summary = Some(add_order(summary, &order(i, i64::from(i), "1", "USD", None)));
        }
        let summary = summary.unwrap();
        assert_eq!(summary.recent_orders.len(), RECENT_ORDERS);
        assert_eq!(summary.order_count, 25);
        assert_eq!(summary.recent_orders.last().unwrap().order_id, "5");
    }
}
