//! A customer's cart, kept from the added and removed events, and the notification
//! items built from cart lines and order lines.

use rust_decimal::Decimal;
use schemas::records::{CartLine, CartState, CurrencyAmount, EventName, NotificationItem, Order};
use schemas::values::{Money, Timestamp};

/// Lines a cart keeps at most; past it the oldest line goes. A real cart is far smaller,
/// a runaway script is not.
pub const MAX_CART_LINES: usize = 500;

fn money(value: Decimal) -> Money {
    // Sums and products of amounts with at most four decimal places keep at most four,
    // and stay far below 28 digits for any real cart.
    Money::new(value).unwrap_or_default()
}

/// The notification item of one line of a cart event.
pub fn cart_item(line: &CartLine) -> NotificationItem {
    NotificationItem {
        product_id: line.product.id.clone(),
        title: line.product.title.clone(),
        quantity: line.quantity,
        unit_price: line.product.price,
        line_total: Some(line.total_price),
        currency: line.currency.clone(),
        thumbnail_url: line.product.thumbnail_url.clone(),
    }
}

/// The notification items of an order: each line with its unit price and line total
/// (unit price times quantity), in the order's currency.
pub fn order_items(order: &Order) -> Vec<NotificationItem> {
    order
        .line_items
        .iter()
        .map(|item| NotificationItem {
            product_id: item.product_id.clone(),
            title: item.title.clone(),
            quantity: item.quantity,
            unit_price: Some(item.price),
            line_total: Some(money(item.price.value() * Decimal::from(item.quantity))),
            currency: order.currency.clone(),
            thumbnail_url: item.thumbnail_url.clone(),
        })
        .collect()
}

/// Applies a cart event to the cart (`None`: an empty cart). A line is a product in a
/// currency: adding raises its quantity and total, removing lowers them and drops the
/// line at zero. Removing what the cart does not hold changes nothing.
pub fn apply(cart: Option<CartState>, name: EventName, lines: &[CartLine], at: Timestamp) -> CartState {
    let mut cart = cart.unwrap_or(CartState {
        lines: Vec::new(),
        updated_at: at,
    });
    cart.updated_at = cart.updated_at.max(at);
    for line in lines {
        let position = cart
            .lines
            .iter()
            .position(|l| l.product_id == line.product.id && l.currency == line.currency);
        let added_total = line.total_price.value();
        match (name, position) {
            (EventName::StoreProductAddedToCart, Some(index)) => {
                let kept = &mut cart.lines[index];
                kept.quantity = kept.quantity.saturating_add(line.quantity);
                kept.line_total = Some(money(
                    kept.line_total.map_or(Decimal::ZERO, |t| t.value()) + added_total,
                ));
                kept.title = line.product.title.clone();
                kept.unit_price = line.product.price.or(kept.unit_price);
                kept.thumbnail_url = line.product.thumbnail_url.clone().or(kept.thumbnail_url.take());
            }
            (EventName::StoreProductAddedToCart, None) => {
                cart.lines.push(cart_item(line));
                if cart.lines.len() > MAX_CART_LINES {
                    cart.lines.remove(0);
                }
            }
            (EventName::StoreProductRemovedFromCart, Some(index)) => {
                let kept = &mut cart.lines[index];
                kept.quantity = kept.quantity.saturating_sub(line.quantity);
                let left = kept.line_total.map_or(Decimal::ZERO, |t| t.value()) - added_total;
                kept.line_total = Some(money(left.max(Decimal::ZERO)));
                if kept.quantity <= 0 {
                    cart.lines.remove(index);
                }
            }
            (EventName::StoreProductRemovedFromCart, None) | (EventName::StoreOrderWasCreated, _) => {}
        }
    }
    cart
}

/// The cart's subtotal in each of its currencies, never summed across currencies.
pub fn subtotals(lines: &[NotificationItem]) -> Vec<CurrencyAmount> {
    let mut totals: Vec<CurrencyAmount> = Vec::new();
    for line in lines {
        let amount = line.line_total.map_or(Decimal::ZERO, |t| t.value());
        match totals.iter_mut().find(|t| t.currency == line.currency) {
            Some(total) => total.amount = money(total.amount.value() + amount),
            None => totals.push(CurrencyAmount {
                currency: line.currency.clone(),
                amount: money(amount),
            }),
        }
    }
    totals.sort_by(|a, b| a.currency.cmp(&b.currency));
    totals
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use schemas::records::CartProduct;

    use super::*;

    fn m(text: &str) -> Money {
        Money::new(Decimal::from_str(text).unwrap()).unwrap()
    }

    fn line(product: &str, quantity: i32, total: &str, currency: &str) -> CartLine {
        CartLine {
            total_price: m(total),
            currency: currency.into(),
            quantity,
            product: CartProduct {
                id: product.into(),
                title: format!("Product {product}"),
                price: None,
                sku: None,
                variant_id: None,
                thumbnail_url: None,
            },
        }
    }

    const ADD: EventName = EventName::StoreProductAddedToCart;
    const REMOVE: EventName = EventName::StoreProductRemovedFromCart;

    #[test]
    fn adding_the_same_product_raises_its_quantity_and_total() {
        let cart = apply(None, ADD, &[line("p1", 1, "10.50", "USD")], Timestamp(1));
        let cart = apply(Some(cart), ADD, &[line("p1", 2, "21.00", "USD")], Timestamp(2));
        assert_eq!(cart.lines.len(), 1);
        assert_eq!(cart.lines[0].quantity, 3);
        assert_eq!(cart.lines[0].line_total, Some(m("31.50")));
        assert_eq!(cart.updated_at, Timestamp(2));
    }

    #[test]
    fn removing_lowers_and_drops_the_line_at_zero_and_ignores_unknown_products() {
        let cart = apply(
            None,
            ADD,
            &[line("p1", 2, "20", "USD"), line("p2", 1, "5", "USD")],
            Timestamp(1),
        );
        let cart = apply(
            Some(cart),
            REMOVE,
            &[line("p1", 1, "10", "USD"), line("zz", 1, "1", "USD")],
            Timestamp(2),
        );
        assert_eq!(cart.lines[0].quantity, 1);
        assert_eq!(cart.lines[0].line_total, Some(m("10")));
        let cart = apply(Some(cart), REMOVE, &[line("p1", 5, "50", "USD")], Timestamp(3));
        assert_eq!(cart.lines.len(), 1);
        assert_eq!(cart.lines[0].product_id, "p2");
    }

    #[test]
    fn subtotals_are_per_currency() {
        let cart = apply(
            None,
            ADD,
            &[
                line("p1", 1, "10.25", "USD"),
                line("p2", 1, "3", "EUR"),
                line("p3", 2, "4.75", "USD"),
            ],
            Timestamp(1),
        );
        let totals = subtotals(&cart.lines);
        assert_eq!(
            totals,
            [
                CurrencyAmount {
                    currency: "EUR".into(),
                    amount: m("3")
                },
                CurrencyAmount {
                    currency: "USD".into(),
                    amount: m("15.00")
                }
            ]
        );
    }

    #[test]
    fn the_same_product_in_two_currencies_is_two_lines() {
        let cart = apply(
            None,
            ADD,
            &[line("p1", 1, "10", "USD"), line("p1", 1, "9", "EUR")],
            Timestamp(1),
        );
        assert_eq!(cart.lines.len(), 2);
    }

    #[test]
    fn a_cart_keeps_its_newest_lines_only() {
        let lines: Vec<CartLine> = (0..MAX_CART_LINES + 3)
            .map(|i| line(&format!("p{i}"), 1, "1", "USD"))
            .collect();
        let cart = apply(None, ADD, &lines, Timestamp(1));
        assert_eq!(cart.lines.len(), MAX_CART_LINES);
        assert_eq!(cart.lines[0].product_id, "p3");
    }

    #[test]
    fn order_items_carry_unit_price_line_total_and_a_missing_thumbnail_as_none() {
        use schemas::samples::Sample;
        let mut order = schemas::records::WidgetEvent::sample().order.unwrap();
        order.line_items[0].quantity = 3;
        order.line_items[0].price = m("19.99");
        order.line_items[0].thumbnail_url = None;
        let items = order_items(&order);
        assert_eq!(items[0].unit_price, Some(m("19.99")));
        assert_eq!(items[0].line_total, Some(m("59.97")));
        assert_eq!(items[0].thumbnail_url, None);
        assert_eq!(items[0].currency, order.currency);
    }
}
