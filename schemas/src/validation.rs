//! The rules every widget event must pass, whoever wrote it: ingest applies them to
//! what a storefront posts, and the enricher to records trusted producers put straight
//! into `sales.events.raw`. One implementation, so the two can never disagree.
//!
//! Field paths are those of the public JSON API (`data.order.line_items[0].quantity`),
//! so a store's developer can find the field in what they sent.

use crate::records::{CartLine, ChatEvent, ChatEventKind, EventName, LineItem, Order, WidgetEvent};
use crate::values::Money;

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// Path of the field in the JSON API, such as `data.order.line_items[0].quantity`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// A required field is absent.
    Missing,
    /// A field is present but its value breaks a rule.
    Invalid,
}

impl FieldError {
    pub fn missing(field: impl Into<String>) -> Self {
        let field = field.into();
        FieldError {
            kind: FieldErrorKind::Missing,
            message: format!("{field} is required"),
            field,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            message: message.into(),
        }
    }
}

type Check = Result<(), FieldError>;

/// Limits that keep one event small enough to handle and display.
pub const MAX_ID_LEN: usize = 256;
pub const MAX_TEXT_LEN: usize = 1024;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_LINES: usize = 500;
/// Discounts of one order: far more than any real checkout stacks.
pub const MAX_DISCOUNTS: usize = 100;
/// How much of a client's value an error message quotes: enough to recognize it, never
/// a 60 KB value echoed back.
pub const MAX_QUOTED: usize = 64;

/// Checks a widget event against every rule of the API. Returns the host of
/// `page.url` (lower case), which ingest then checks against the connected websites.
pub fn validate_widget_event(event: &WidgetEvent) -> Result<String, FieldError> {
    organization_id("organization_id", &event.organization_id)?;
    customer_id("customer_id", &event.customer_id)?;
    uuid("event_id", &event.event_id)?;
    let page_host = http_url("page.url", &event.page.url)?;
    optional_text("page.title", event.page.title.as_deref())?;
    optional_text("page.referrer", event.page.referrer.as_deref())?;
    match event.name {
        EventName::StoreOrderWasCreated => {
            let order = event.order.as_ref().ok_or_else(|| FieldError::missing("data.order"))?;
            validate_order("data.order", order)?;
        }
        EventName::StoreProductAddedToCart | EventName::StoreProductRemovedFromCart => {
            lines("data.cart_lines", &event.cart_lines, validate_cart_line)?;
        }
    }
    Ok(page_host)
}

/// Checks a chat event from the chat platform: the ids every join needs, and the agent
/// of an `agent_joined`.
pub fn validate_chat_event(event: &ChatEvent) -> Result<(), FieldError> {
    organization_id("organization_id", &event.organization_id)?;
    customer_id("customer_id", &event.customer_id)?;
    text("event_id", &event.event_id, MAX_ID_LEN)?;
    text("chat_id", &event.chat_id, MAX_ID_LEN)?;
    if let Some(team) = &event.team_id {
        text("team_id", team, MAX_ID_LEN)?;
    }
    match (&event.kind, &event.agent) {
        (ChatEventKind::AgentJoined, None) => Err(FieldError::missing("agent")),
        (ChatEventKind::AgentJoined, Some(agent)) => text("agent.id", &agent.id, MAX_ID_LEN),
        _ => Ok(()),
    }
}

/// `organization_id`: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn organization_id(field: &str, value: &str) -> Check {
    if value.is_empty() || value.len() > 64 {
        return Err(FieldError::invalid(field, "must be 1 to 64 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(FieldError::invalid(
            field,
            "may contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// `customer_id`: 1 to 128 printable characters.
pub fn customer_id(field: &str, value: &str) -> Check {
    let chars = value.chars().count();
    if chars == 0 || chars > 128 {
        return Err(FieldError::invalid(field, "must be 1 to 128 characters"));
    }
    no_control_characters(field, value)
}

/// An identifier the store sends (order id and number, product and variant ids, SKU,
/// discount code, sales channel id): not blank, at most [`MAX_ID_LEN`] characters, no
/// control character.
pub fn id(field: &str, value: &str) -> Check {
    text(field, value, MAX_ID_LEN)?;
    no_control_characters(field, value)
}

/// An optional identifier, when present: as [`id`], except that it may be blank
/// (platforms send `"sku": ""` for a product without one, and an order must not be
/// lost over it).
fn optional_id(field: &str, value: Option<&str>) -> Check {
    let Some(value) = value else { return Ok(()) };
    if value.chars().count() > MAX_ID_LEN {
        return Err(FieldError::invalid(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    no_control_characters(field, value)
}

/// The rule of every id: no control character, neither C0 (U+0000 to U+001F: NUL, line
/// breaks, escape...) nor DEL (U+007F) nor C1 (U+0080 to U+009F). Ids end up in record
/// keys, logs, dedupe and the agent's inbox, where a NUL truncates and the others garble
/// or forge what is shown.
pub fn no_control_characters(field: &str, value: &str) -> Check {
    if value.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            field,
            "must not contain control characters (U+0000 to U+001F, U+007F to U+009F)",
        ));
    }
    Ok(())
}

/// `value` quoted for an error message: at most [`MAX_QUOTED`] characters of it, then
/// `…` when it is longer.
pub fn quoted(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED) {
        None => format!("{value:?}"),
        Some((cut, _)) => {
            let mut shown = format!("{:?}", &value[..cut]);
            shown.insert(shown.len() - 1, '…');
            shown
        }
    }
}

fn uuid(field: &str, value: &str) -> Check {
    uuid::Uuid::parse_str(value)
        .map(|_| ())
        .map_err(|_| FieldError::invalid(field, "must be a UUID such as 0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11"))
}

/// `value` without its userinfo (`https://user:pass@shop.example/...` becomes
/// `https://shop.example/...`), or `None` when it has none or is no URL with a host
/// (validation then judges the value as it is). The host is the one the URL parser
/// finds, so what follows an `@` is never mistaken for it. The URL comes back in its
/// parsed (normalized) spelling.
pub fn without_userinfo(value: &str) -> Option<String> {
    // No `@`, no userinfo: the common case costs no parse.
    if !value.contains('@') {
        return None;
    }
    let mut url = url::Url::parse(value).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    Some(url.into())
}

/// An absolute http(s) URL with a host; returns the host.
pub fn http_url(field: &str, value: &str) -> Result<String, FieldError> {
    if value.len() > MAX_URL_LEN {
        return Err(FieldError::invalid(
            field,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let url =
        url::Url::parse(value).map_err(|e| FieldError::invalid(field, format!("must be an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FieldError::invalid(field, "must be an http or https URL"));
    }
    url.host_str()
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| FieldError::invalid(field, "must have a host"))
}

/// A host as connected websites are kept and compared: no surrounding spaces, no
/// trailing dot (`shop.example.com.` is the same host), lower case.
pub fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A connected website as an operator gives it: a host name such as shop.example.com
/// (its subdomains are connected with it), returned normalized. A URL, a port or a path
/// is refused with a hint.
pub fn website_host(field: &str, website: &str) -> Result<String, FieldError> {
    let host = normalize_host(website);
    if host.contains("://") || host.contains('/') || host.contains(':') {
        return Err(FieldError::invalid(
            field,
            format!("{}: give the host only, such as shop.example.com", quoted(website)),
        ));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(FieldError::invalid(
            field,
            format!(
                "{} is not a host name; give one such as shop.example.com",
                quoted(website)
            ),
        ));
    }
    Ok(host)
}

fn optional_url(field: &str, value: Option<&str>) -> Check {
    value.map_or(Ok(()), |v| http_url(field, v).map(|_| ()))
}

fn text(field: &str, value: &str, max: usize) -> Check {
    if value.trim().is_empty() {
        return Err(FieldError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(FieldError::invalid(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

fn optional_text(field: &str, value: Option<&str>) -> Check {
    match value {
        Some(v) if v.chars().count() > MAX_TEXT_LEN => Err(FieldError::invalid(
            field,
            format!("must be at most {MAX_TEXT_LEN} characters"),
        )),
        _ => Ok(()),
    }
}

fn non_negative(field: &str, amount: &Money) -> Check {
    if amount.value().is_sign_negative() && !amount.value().is_zero() {
        return Err(FieldError::invalid(field, "must be at least 0"));
    }
    Ok(())
}

fn quantity(field: &str, value: i32) -> Check {
    if value < 1 {
        return Err(FieldError::invalid(field, "must be an integer of at least 1"));
    }
    Ok(())
}

/// An ISO 4217 currency code in use.
pub fn currency(field: &str, value: &str) -> Check {
    if ISO_4217.binary_search(&value).is_err() {
        return Err(FieldError::invalid(
            field,
            format!("{} is not an ISO 4217 currency code such as USD", quoted(value)),
        ));
    }
    Ok(())
}

fn lines<T>(field: &str, items: &[T], check: fn(&str, &T) -> Check) -> Check {
    if items.is_empty() {
        return Err(FieldError::invalid(field, "must hold at least one line"));
    }
    if items.len() > MAX_LINES {
        return Err(FieldError::invalid(
            field,
            format!("must hold at most {MAX_LINES} lines"),
        ));
    }
    items
        .iter()
        .enumerate()
        .try_for_each(|(i, item)| check(&format!("{field}[{i}]"), item))
}

fn validate_order(field: &str, order: &Order) -> Check {
    id(&format!("{field}.id"), &order.id)?;
    id(&format!("{field}.order_number"), &order.order_number)?;
    currency(&format!("{field}.currency"), &order.currency)?;
    non_negative(&format!("{field}.total_price"), &order.total_price)?;
    for (name, amount) in [
        ("subtotal_price", &order.subtotal_price),
        ("shipping_price", &order.shipping_price),
        ("tax_price", &order.tax_price),
    ] {
        if let Some(amount) = amount {
            non_negative(&format!("{field}.{name}"), amount)?;
        }
    }
    optional_url(&format!("{field}.status_page_url"), order.status_page_url.as_deref())?;
    if let Some(channel) = &order.sales_channel {
        optional_id(&format!("{field}.sales_channel.id"), channel.id.as_deref())?;
    }
    if order.discount_codes.len() > MAX_DISCOUNTS {
        return Err(FieldError::invalid(
            format!("{field}.discounts"),
            format!("must hold at most {MAX_DISCOUNTS} discounts"),
        ));
    }
    for (i, code) in order.discount_codes.iter().enumerate() {
        id(&format!("{field}.discounts[{i}].code"), code)?;
    }
    lines(&format!("{field}.line_items"), &order.line_items, validate_line_item)
}

fn validate_line_item(field: &str, item: &LineItem) -> Check {
    id(&format!("{field}.product_id"), &item.product_id)?;
    text(&format!("{field}.title"), &item.title, MAX_TEXT_LEN)?;
    quantity(&format!("{field}.quantity"), item.quantity)?;
    non_negative(&format!("{field}.price"), &item.price)?;
    optional_id(&format!("{field}.sku"), item.sku.as_deref())?;
    optional_id(&format!("{field}.variant_id"), item.variant_id.as_deref())?;
    optional_text(&format!("{field}.variant_title"), item.variant_title.as_deref())?;
    // The inbox renders thumbnails: only web URLs, never javascript: or data: ones.
    optional_url(&format!("{field}.thumbnail_url"), item.thumbnail_url.as_deref())
}

fn validate_cart_line(field: &str, line: &CartLine) -> Check {
    non_negative(&format!("{field}.total_price"), &line.total_price)?;
    currency(&format!("{field}.currency"), &line.currency)?;
    quantity(&format!("{field}.quantity"), line.quantity)?;
    id(&format!("{field}.product.id"), &line.product.id)?;
    text(&format!("{field}.product.title"), &line.product.title, MAX_TEXT_LEN)?;
    if let Some(price) = &line.product.price {
        non_negative(&format!("{field}.product.price"), price)?;
    }
    optional_id(&format!("{field}.product.sku"), line.product.sku.as_deref())?;
    optional_id(
        &format!("{field}.product.variant_id"),
        line.product.variant_id.as_deref(),
    )?;
    optional_url(
        &format!("{field}.product.thumbnail_url"),
        line.product.thumbnail_url.as_deref(),
    )
}

/// Active ISO 4217 currency codes, sorted for binary search.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLF",
    "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XAG", "XAU",
    "XCD", "XCG", "XOF", "XPD", "XPF", "XPT", "YER", "ZAR", "ZMW", "ZWG",
];

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::samples::Sample;
    use crate::values::ScaledDecimal;

    fn order_event() -> WidgetEvent {
        WidgetEvent::sample()
    }

    fn error_of(event: &WidgetEvent) -> FieldError {
        validate_widget_event(event).unwrap_err()
    }

    #[test]
    fn the_currency_list_is_sorted_for_binary_search() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_sample_order_event_is_valid() {
        assert_eq!(
            validate_widget_event(&order_event()),
            Ok("shop.example.com".to_string())
        );
    }

    #[test]
    fn a_zero_quantity_names_its_line() {
        let mut event = order_event();
        event.order.as_mut().unwrap().line_items[0].quantity = 0;
        let err = error_of(&event);
        assert_eq!(
            (err.kind, err.field.as_str()),
            (FieldErrorKind::Invalid, "data.order.line_items[0].quantity")
        );
    }

    #[test]
    fn an_order_event_without_an_order_is_missing_data_order() {
        let mut event = order_event();
        event.order = None;
        assert_eq!(error_of(&event), FieldError::missing("data.order"));
    }

    #[test]
    fn a_cart_event_needs_at_least_one_line() {
        let mut event = order_event();
        event.name = EventName::StoreProductAddedToCart;
        event.cart_lines.clear();
        assert_eq!(error_of(&event).field, "data.cart_lines");
    }

    #[test]
    fn a_negative_total_is_refused() {
        let mut event = order_event();
        event.order.as_mut().unwrap().total_price = ScaledDecimal(rust_decimal::Decimal::from_str("-0.01").unwrap());
        assert_eq!(error_of(&event).field, "data.order.total_price");
    }

    #[test]
    fn an_unknown_currency_is_refused() {
        let mut event = order_event();
        event.order.as_mut().unwrap().currency = "usd".into();
        assert_eq!(error_of(&event).field, "data.order.currency");
    }

    #[test]
    fn a_javascript_thumbnail_is_refused() {
        let mut event = order_event();
        event.order.as_mut().unwrap().line_items[0].thumbnail_url = Some("javascript:alert(1)".into());
        assert_eq!(error_of(&event).field, "data.order.line_items[0].thumbnail_url");
    }

    #[test]
    fn a_relative_page_url_is_refused() {
        let mut event = order_event();
        event.page.url = "/checkout/thanks".into();
        assert_eq!(error_of(&event).field, "page.url");
    }

    #[test]
    fn organization_ids_follow_their_pattern() {
        assert!(organization_id("o", "org_8d2f-X").is_ok());
        assert!(organization_id("o", "").is_err());
        assert!(organization_id("o", "org 1").is_err());
        assert!(organization_id("o", &"a".repeat(65)).is_err());
    }

    #[test]
    fn customer_ids_are_printable_and_bounded() {
        assert!(customer_id("c", "c-5e1b2a ü").is_ok());
        assert!(customer_id("c", "a\u{7}b").is_err());
        assert!(customer_id("c", &"é".repeat(128)).is_ok());
        assert!(customer_id("c", &"é".repeat(129)).is_err());
    }

    #[test]
    fn website_hosts_are_normalized() {
        assert_eq!(website_host("w", " Shop.Example.com. ").unwrap(), "shop.example.com");
        assert_eq!(normalize_host("Shop.Example.COM."), "shop.example.com");
    }

    #[test]
    fn a_website_that_is_no_host_name_is_refused_with_a_hint() {
        for bad in [
            "https://shop.example.com",
            "shop.example.com/path",
            "shop.example.com:8080",
        ] {
            let err = website_host("--website", bad).unwrap_err();
            assert!(err.to_string().contains("host only"), "{err}");
        }
        for bad in ["", "shop..example.com", "-shop.example.com", "shop_1.example.com"] {
            assert!(website_host("--website", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_event_id_is_refused() {
        let mut event = order_event();
        event.event_id = "not-a-uuid".into();
        assert_eq!(error_of(&event).field, "event_id");
    }

    fn cart_event() -> WidgetEvent {
        let mut event = order_event();
        event.name = EventName::StoreProductAddedToCart;
        event.order = None;
        event
    }

    /// An id's API path, the valid event that has it, and its setter.
    type IdCase = (&'static str, fn() -> WidgetEvent, fn(&mut WidgetEvent, String));

    /// Every id of a widget event (the currencies too): the order event's, then the
    /// cart event's.
    fn every_id() -> Vec<IdCase> {
        fn order(e: &mut WidgetEvent) -> &mut Order {
            e.order.as_mut().unwrap()
        }
        fn cart(e: &mut WidgetEvent) -> &mut CartLine {
            &mut e.cart_lines[0]
        }
        vec![
            ("organization_id", order_event, |e, v| e.organization_id = v),
            ("customer_id", order_event, |e, v| e.customer_id = v),
            ("event_id", order_event, |e, v| e.event_id = v),
            ("data.order.id", order_event, |e, v| order(e).id = v),
            ("data.order.order_number", order_event, |e, v| order(e).order_number = v),
            ("data.order.sales_channel.id", order_event, |e, v| {
                order(e).sales_channel.as_mut().unwrap().id = Some(v)
            }),
            ("data.order.discounts[0].code", order_event, |e, v| {
                order(e).discount_codes[0] = v
            }),
            ("data.order.line_items[0].product_id", order_event, |e, v| {
                order(e).line_items[0].product_id = v
            }),
            ("data.order.line_items[0].sku", order_event, |e, v| {
                order(e).line_items[0].sku = Some(v)
            }),
            ("data.order.line_items[0].variant_id", order_event, |e, v| {
                order(e).line_items[0].variant_id = Some(v)
            }),
            ("data.order.currency", order_event, |e, v| order(e).currency = v),
            ("data.cart_lines[0].product.id", cart_event, |e, v| {
                cart(e).product.id = v
            }),
            ("data.cart_lines[0].product.sku", cart_event, |e, v| {
                cart(e).product.sku = Some(v)
            }),
            ("data.cart_lines[0].product.variant_id", cart_event, |e, v| {
                cart(e).product.variant_id = Some(v)
            }),
            ("data.cart_lines[0].currency", cart_event, |e, v| cart(e).currency = v),
        ]
    }

    #[test]
    fn every_id_refuses_control_characters() {
        assert_eq!(validate_widget_event(&cart_event()), Ok("shop.example.com".to_string()));
        for (field, event, set) in every_id() {
            for bad in ['\0', '\u{1}', '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}'] {
                let mut e = event();
                set(&mut e, format!("12{bad}34"));
                let err = error_of(&e);
                assert_eq!(
                    (err.kind, err.field.as_str()),
                    (FieldErrorKind::Invalid, field),
                    "{bad:?}"
                );
            }
            // A printable id of the same shape passes, so it was the character.
            let mut e = event();
            set(&mut e, "1234".into());
            if field == "event_id" || field.ends_with("currency") {
                continue;
            }
            assert!(validate_widget_event(&e).is_ok(), "{field}");
        }
    }

    #[test]
    fn ids_are_bounded_and_optional_ones_may_be_empty() {
        for (field, event, set) in every_id() {
            let mut e = event();
            set(&mut e, "7".repeat(MAX_ID_LEN + 1));
            assert_eq!(error_of(&e).field, field);
        }
        let mut event = order_event();
        let order = event.order.as_mut().unwrap();
        order.line_items[0].sku = Some(String::new());
        order.line_items[0].variant_id = Some(" ".into());
        order.sales_channel.as_mut().unwrap().id = Some(String::new());
        order.line_items[0].product_id = "é".repeat(MAX_ID_LEN);
        assert!(validate_widget_event(&event).is_ok());
        order_of(&mut event).id = " ".into();
        assert_eq!(error_of(&event).field, "data.order.id");
    }

    fn order_of(event: &mut WidgetEvent) -> &mut Order {
        event.order.as_mut().unwrap()
    }

    #[test]
    fn discounts_are_bounded() {
        let mut event = order_event();
        order_of(&mut event).discount_codes = (0..MAX_DISCOUNTS).map(|i| format!("CODE{i}")).collect();
        assert!(validate_widget_event(&event).is_ok());
        order_of(&mut event).discount_codes.push("ONE-TOO-MANY".into());
        let err = error_of(&event);
        assert_eq!(
            (err.kind, err.field.as_str()),
            (FieldErrorKind::Invalid, "data.order.discounts")
        );
    }

    #[test]
    fn line_items_and_cart_lines_are_bounded() {
        let mut event = order_event();
        let line = order_of(&mut event).line_items[0].clone();
        order_of(&mut event).line_items = vec![line.clone(); MAX_LINES];
        assert!(validate_widget_event(&event).is_ok());
        order_of(&mut event).line_items.push(line);
        assert_eq!(error_of(&event).field, "data.order.line_items");

        let mut event = cart_event();
        let line = event.cart_lines[0].clone();
        event.cart_lines = vec![line.clone(); MAX_LINES];
        assert!(validate_widget_event(&event).is_ok());
        event.cart_lines.push(line);
        assert_eq!(error_of(&event).field, "data.cart_lines");
    }

    #[test]
    fn userinfo_is_stripped_from_a_url_and_only_userinfo() {
        for (url, stripped) in [
            (
                "https://user:pass@shop.example.com/thanks?x=1#y",
                "https://shop.example.com/thanks?x=1#y",
            ),
            (
                "https://user@shop.example.com/thanks",
                "https://shop.example.com/thanks",
            ),
            ("https://:secret@shop.example.com", "https://shop.example.com/"),
            (
                "http://a%40b:p%3Aw@Shop.Example.com:8080/p",
                "http://shop.example.com:8080/p",
            ),
        ] {
            assert_eq!(without_userinfo(url).as_deref(), Some(stripped), "{url}");
            assert_eq!(
                http_url("page.url", stripped).unwrap(),
                http_url("page.url", url).unwrap()
            );
        }
        // What follows an @ in the path, the query or after a backslash is no userinfo:
        // the host stays the one the parser finds.
        for url in [
            "https://shop.example.com/a@b",
            "https://shop.example.com/?to=me@example.com",
            "https://shop.example.com",
            "not a url @ all",
            "mailto:me@example.com",
            "https://evil.example\\@shop.example.com/",
        ] {
            assert_eq!(without_userinfo(url), None, "{url}");
        }
        // A backslash ends the authority of an http(s) URL: this host is evil.example,
        // and stripping never turns it into the text after the @.
        assert_eq!(
            http_url("page.url", "https://evil.example\\@shop.example.com/").unwrap(),
            "evil.example"
        );
    }

    #[test]
    fn quoted_values_are_cut_short() {
        assert_eq!(quoted("usd"), "\"usd\"");
        let long = "x".repeat(60_000);
        let shown = quoted(&long);
        assert_eq!(shown, format!("\"{}…\"", "x".repeat(MAX_QUOTED)));
        assert_eq!(quoted(&"é".repeat(MAX_QUOTED)), format!("{:?}", "é".repeat(MAX_QUOTED)));
        let mut event = order_event();
        order_of(&mut event).currency = long;
        let err = error_of(&event);
        assert_eq!(err.field, "data.order.currency");
        assert!(err.message.len() < 200, "{}", err.message);
    }
}

#[cfg(test)]
mod chat_tests {
    use super::*;
    use crate::records::Agent;
    use crate::samples::Sample;

    #[test]
    fn a_sample_chat_event_passes_and_a_join_without_agent_does_not() {
        let mut event = ChatEvent::sample();
        event.kind = ChatEventKind::AgentJoined;
        assert_eq!(validate_chat_event(&event), Ok(()));
        event.agent = None;
        assert_eq!(validate_chat_event(&event).unwrap_err().field, "agent");
        event.agent = Some(Agent {
            id: " ".into(),
            kind: crate::records::AgentKind::Ai,
        });
        assert_eq!(validate_chat_event(&event).unwrap_err().field, "agent.id");
    }

    #[test]
    fn chat_ids_must_be_present() {
        let mut event = ChatEvent::sample();
        event.chat_id = String::new();
        assert_eq!(validate_chat_event(&event).unwrap_err().field, "chat_id");
        let mut event = ChatEvent::sample();
        event.organization_id = "bad org".into();
        assert_eq!(validate_chat_event(&event).unwrap_err().field, "organization_id");
    }
}
