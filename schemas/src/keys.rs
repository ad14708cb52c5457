//! Record keys. Customer-keyed topics are co-partitioned, so every producer must build
//! the key bytes the same way: through these functions.

/// `org:customer`, the key of every customer-keyed topic (`sales.events.raw`,
/// `chat.sessions`, `sales.orders`, `sales.customer-orders`).
pub fn org_customer(organization_id: &str, customer_id: &str) -> String {
    format!("{organization_id}:{customer_id}")
}

/// `org:order_id`, the key of the dedupe repartition topic `sales.orders.by-id`.
pub fn org_order(organization_id: &str, order_id: &str) -> String {
    format!("{organization_id}:{order_id}")
}

/// `org:chat_id`, the key of `inbox.notifications`.
pub fn org_chat(organization_id: &str, chat_id: &str) -> String {
    format!("{organization_id}:{chat_id}")
}

/// `org:date` (date as `YYYY-MM-DD`, org-local), the key of `sales.reports.daily`.
pub fn org_date(organization_id: &str, date_iso: &str) -> String {
    format!("{organization_id}:{date_iso}")
}

/// `date:currency` (`YYYY-MM-DD:PLN`), the key of `fx.rates.daily`.
pub fn date_currency(date_iso: &str, currency: &str) -> String {
    format!("{date_iso}:{currency}")
}

/// Splits a two-part key at its first `:`. Organization ids never contain `:`
/// (they are `[A-Za-z0-9_-]`), so the first colon always ends the organization.
pub fn split(key: &str) -> Option<(&str, &str)> {
    key.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_id_with_colons_stays_whole_when_split() {
        let key = org_customer("org_1", "c:1:2");
        assert_eq!(key, "org_1:c:1:2");
        assert_eq!(split(&key), Some(("org_1", "c:1:2")));
    }

    #[test]
    fn a_key_without_separator_does_not_split() {
        assert_eq!(split("org_1"), None);
    }
}
