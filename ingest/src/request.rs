//! From the bytes a storefront posts to a [`WidgetEvent`], or to the exact reason it is
//! refused. Amounts are read from the JSON number's own text into decimals, never
//! through a float. The field rules themselves are shared with the enricher
//! ([`schemas::validation`]); this module only knows the JSON shape.

use rust_decimal::Decimal;
use schemas::records::{CartLine, CartProduct, EventName, LineItem, Order, Page, SalesChannel, WidgetEvent};
use schemas::validation::{FieldError, FieldErrorKind, validate_widget_event};
use schemas::values::{Money, Timestamp};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::value::RawValue;

/// Why a payload is refused, in the API's terms (a 422 answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
    /// Path of the offending field, when there is one.
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    MalformedJson,
    MissingField,
    InvalidField,
    UnknownEvent,
}

impl RejectCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectCode::MalformedJson => "malformed_json",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::UnknownEvent => "unknown_event",
        }
    }
}

impl From<schemas::validation::FieldError> for Rejection {
    fn from(e: schemas::validation::FieldError) -> Self {
        let code = match e.kind {
            FieldErrorKind::Missing => RejectCode::MissingField,
            FieldErrorKind::Invalid => RejectCode::InvalidField,
        };
        Rejection::new(code, e.message, Some(e.field))
    }
}

impl Rejection {
    fn new(code: RejectCode, message: impl Into<String>, field: Option<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            field,
        }
    }
}

/// A posted event that passed every rule of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    pub event: WidgetEvent,
    /// The host of `page.url`, lower case.
    pub page_host: String,
}

/// Parses and validates one posted event. `event_id` is assigned when absent;
/// `received_at` is the caller's clock, the event's time for every window downstream.
pub fn parse_event(body: &[u8], received_at: Timestamp) -> Result<WidgetEvent, Rejection> {
    parse_event_with_host(body, received_at).map(|parsed| parsed.event)
}

/// [`parse_event`], also giving the page host that validation has already read out of
/// `page.url`, so that the caller need not parse the URL again.
pub fn parse_event_with_host(body: &[u8], received_at: Timestamp) -> Result<ParsedEvent, Rejection> {
    // serde would also read a struct from a JSON array, by position; the API takes objects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Rejection::new(
            RejectCode::MalformedJson,
            "the body must be a JSON object",
            None,
        ));
    }
    let envelope: Envelope<'_> = from_json(body, "")?;
    let name = match envelope.name.as_str() {
        "store_order_was_created" => EventName::StoreOrderWasCreated,
        "store_product_added_to_cart" => EventName::StoreProductAddedToCart,
        "store_product_removed_from_cart" => EventName::StoreProductRemovedFromCart,
        other => {
            return Err(Rejection::new(
                RejectCode::UnknownEvent,
                format!(
                    "unknown event {other:?}; expected store_order_was_created, store_product_added_to_cart or store_product_removed_from_cart"
                ),
                Some("name".into()),
            ));
        }
    };
    // Positions in the request of the discounts the record keeps.
    let mut kept_discounts = Vec::new();
    let (order, cart_lines) = match name {
        EventName::StoreOrderWasCreated => {
            let data: OrderData = from_json(envelope.data.get().as_bytes(), "data")?;
            kept_discounts = data
                .order
                .discounts
                .iter()
                .enumerate()
                .filter(|(_, d)| d.code.is_some())
                .map(|(i, _)| i)
                .collect();
            (Some(data.order.into()), Vec::new())
        }
        EventName::StoreProductAddedToCart | EventName::StoreProductRemovedFromCart => {
            let data: CartData = from_json(envelope.data.get().as_bytes(), "data")?;
            (None, data.cart_lines.into_iter().map(CartLine::from).collect())
        }
    };
    let occurred_at = envelope
        .occurred_at
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| Timestamp::from_datetime(t.to_utc()))
                .map_err(|_| {
                    Rejection::new(
                        RejectCode::InvalidField,
                        "must be an RFC 3339 time such as 2026-11-27T10:15:30Z",
                        Some("occurred_at".into()),
                    )
                })
        })
        .transpose()?;
    let event = WidgetEvent {
        event_id: envelope
            .event_id
            .map(|id| canonical_event_id(id.0))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        organization_id: envelope.organization_id,
        customer_id: envelope.customer_id,
        name,
        page: Page {
            url: envelope.page.url,
            title: envelope.page.title,
            referrer: envelope.page.referrer,
        },
        occurred_at,
        received_at,
        order,
        cart_lines,
    };
    let page_host = validate_widget_event(&event).map_err(|e| renumber_discounts(e, &kept_discounts))?;
    Ok(ParsedEvent { event, page_host })
}

/// A discount without a code is left out of the record, so the record's discount `i` is
/// the request's discount `kept[i]`; an error names the one in the request.
fn renumber_discounts(mut error: FieldError, kept: &[usize]) -> FieldError {
    const PREFIX: &str = "data.order.discounts[";
    if let Some(rest) = error.field.strip_prefix(PREFIX)
        && let Some((index, tail)) = rest.split_once(']')
        && let Some(position) = index.parse::<usize>().ok().and_then(|i| kept.get(i))
    {
        error.field = format!("{PREFIX}{position}]{tail}");
    }
    error
}

/// One UUID has many spellings (upper case, braces, no hyphens, `urn:uuid:`); downstream
/// dedupe compares ids as text, so every spelling becomes the lower-case hyphenated one.
/// Text that is no UUID is kept for validation to refuse with the field named.
fn canonical_event_id(id: String) -> String {
    match uuid::Uuid::parse_str(&id) {
        Ok(uuid) => uuid.hyphenated().to_string(),
        Err(_) => id,
    }
}

/// Deserializes `bytes`, turning serde's errors into rejections with field paths
/// (`prefix` is the path of the JSON being read within the whole body).
fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], prefix: &str) -> Result<T, Rejection> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| reject(&e, prefix))?;
    deserializer.end().map_err(|_| {
        Rejection::new(
            RejectCode::MalformedJson,
            "unexpected characters after the JSON value",
            None,
        )
    })?;
    Ok(value)
}

fn reject(error: &serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> Rejection {
    use serde_json::error::Category;
    let inner = error.inner();
    if matches!(inner.classify(), Category::Syntax | Category::Eof | Category::Io) {
        return Rejection::new(
            RejectCode::MalformedJson,
            format!("the body is not valid JSON: {inner}"),
            None,
        );
    }
    let mut message = inner.to_string();
    // serde_json appends the position; the field path says more to an API user.
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let path = error.path().to_string();
    let mut field = match (prefix, path.as_str()) {
        (_, ".") if prefix.is_empty() => String::new(),
        (_, ".") => prefix.to_string(),
        ("", path) => path.to_string(),
        (prefix, path) => format!("{prefix}.{path}"),
    };
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = if field.is_empty() {
            missing.to_string()
        } else {
            format!("{field}.{missing}")
        };
        return Rejection::new(RejectCode::MissingField, format!("{field} is required"), Some(field));
    }
    if field.is_empty() {
        return Rejection::new(RejectCode::MalformedJson, "the body must be a JSON object", None);
    }
    Rejection::new(RejectCode::InvalidField, message, Some(field))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    organization_id: String,
    customer_id: String,
    event_id: Option<Id>,
    page: PageIn,
    name: String,
    #[serde(borrow)]
    data: &'a RawValue,
    occurred_at: Option<String>,
}

#[derive(Deserialize)]
struct PageIn {
    url: String,
    title: Option<String>,
    referrer: Option<String>,
}

#[derive(Deserialize)]
struct OrderData {
    order: OrderIn,
}

#[derive(Deserialize)]
struct OrderIn {
    id: Id,
    order_number: Id,
    currency: String,
    total_price: Amount,
    subtotal_price: Option<Amount>,
    shipping_price: Option<Amount>,
    tax_price: Option<Amount>,
    status_page_url: Option<String>,
    sales_channel: Option<SalesChannelIn>,
    #[serde(default)]
    discounts: Vec<DiscountIn>,
    line_items: Vec<LineItemIn>,
}

#[derive(Deserialize)]
struct SalesChannelIn {
    id: Option<Id>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct DiscountIn {
    /// Optional: some platforms report automatic discounts without a code. Such a
    /// discount has nothing to keep, since the record holds only codes.
    code: Option<String>,
}

#[derive(Deserialize)]
struct LineItemIn {
    product_id: Id,
    title: String,
    quantity: i32,
    price: Amount,
    sku: Option<String>,
    variant_id: Option<Id>,
    variant_title: Option<String>,
    thumbnail_url: Option<String>,
}

#[derive(Deserialize)]
struct CartData {
    cart_lines: Vec<CartLineIn>,
}

#[derive(Deserialize)]
struct CartLineIn {
    total_price: Amount,
    currency: String,
    quantity: i32,
    product: CartProductIn,
}

#[derive(Deserialize)]
struct CartProductIn {
    id: Id,
    title: String,
    price: Option<Amount>,
    sku: Option<String>,
    variant_id: Option<Id>,
    thumbnail_url: Option<String>,
}

impl From<OrderIn> for Order {
    fn from(o: OrderIn) -> Order {
        Order {
            id: o.id.0,
            order_number: o.order_number.0,
            currency: o.currency,
            total_price: o.total_price.0,
            subtotal_price: o.subtotal_price.map(|a| a.0),
            shipping_price: o.shipping_price.map(|a| a.0),
            tax_price: o.tax_price.map(|a| a.0),
            status_page_url: o.status_page_url,
            sales_channel: o.sales_channel.map(|c| SalesChannel {
                id: c.id.map(|i| i.0),
                name: c.name,
            }),
            discount_codes: o.discounts.into_iter().filter_map(|d| d.code).collect(),
            line_items: o
                .line_items
                .into_iter()
                .map(|l| LineItem {
                    product_id: l.product_id.0,
                    title: l.title,
                    quantity: l.quantity,
                    price: l.price.0,
                    sku: l.sku,
                    variant_id: l.variant_id.map(|i| i.0),
                    variant_title: l.variant_title,
                    thumbnail_url: l.thumbnail_url,
                })
                .collect(),
        }
    }
}

impl From<CartLineIn> for CartLine {
    fn from(l: CartLineIn) -> CartLine {
        CartLine {
            total_price: l.total_price.0,
            currency: l.currency,
            quantity: l.quantity,
            product: CartProduct {
                id: l.product.id.0,
                title: l.product.title,
                price: l.product.price.map(|a| a.0),
                sku: l.product.sku,
                variant_id: l.product.variant_id.map(|i| i.0),
                thumbnail_url: l.product.thumbnail_url,
            },
        }
    }
}

/// An identifier the store may send as a string or as an integer (many platforms'
/// product and order ids are numbers); kept as the text it was sent as.
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// An amount read exactly from the JSON number's text.
struct Amount(Money);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        parse_amount(raw.get()).map(Amount).map_err(de::Error::custom)
    }
}

/// A JSON number's text as money: at least 0, at most 4 decimal places, at most 28
/// significant digits. Strings, booleans and the like are refused: an amount is a number.
pub fn parse_amount(text: &str) -> Result<Money, String> {
    let text = text.trim();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(format!("must be a number, got {text}"));
    }
    let decimal = exact_decimal(text).ok_or_else(|| {
        format!(
            "{text} is not an amount this API can carry exactly; send at most 4 decimal places and 28 significant digits"
        )
    })?;
    if decimal.is_sign_negative() && !decimal.is_zero() {
        return Err("must be at least 0".into());
    }
    Money::new(decimal).map_err(|e| match e {
        schemas::values::DecimalError::TooPrecise { .. } => format!("{text} has more than 4 decimal places"),
        other => other.to_string(),
    })
}

/// The decimal a number's text stands for, or `None` when a `Decimal` cannot hold it
/// exactly. `Decimal::from_str` and `from_scientific` round what does not fit (so
/// 149.99000000000000000000000000001 would become 149.99), which for money is a
/// silently different amount.
fn exact_decimal(text: &str) -> Option<Decimal> {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return Decimal::from_str_exact(text).ok();
    };
    let mantissa = Decimal::from_str_exact(mantissa).ok()?;
    // An exponent too large for an i32 could only give zero or an overflow.
    let exponent: i32 = exponent.parse().ok()?;
    if mantissa.is_zero() {
        return Some(Decimal::ZERO);
    }
    let mut digits = mantissa.mantissa();
    // value = digits × 10^power
    let power = i64::from(exponent) - i64::from(mantissa.scale());
    if power >= 0 {
        let factor = 10i128.checked_pow(u32::try_from(power).ok()?)?;
        Decimal::try_from_i128_with_scale(digits.checked_mul(factor)?, 0).ok()
    } else {
        let mut scale = u64::try_from(-power).ok()?;
        // 1500e-30 is 1.5e-27: trailing zeros of the digits are not precision.
        while scale > u64::from(Decimal::MAX_SCALE) && digits % 10 == 0 {
            digits /= 10;
            scale -= 1;
        }
        Decimal::try_from_i128_with_scale(digits, u32::try_from(scale).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::{Value, json};

    use super::*;

    const NOW: Timestamp = Timestamp(1_795_774_530_123_456);

    fn order_body() -> Value {
        json!({
            "organization_id": "org_8d2f",
            "customer_id": "c-5e1b2a",
            "event_id": "0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11",
            "page": { "url": "https://shop.example.com/checkout/thanks", "title": "Thank you", "referrer": "" },
            "name": "store_order_was_created",
            "data": { "order": { "id": "1042", "order_number": "#1042", "currency": "USD", "total_price": 149.99,
                "line_items": [ { "product_id": "123456789", "title": "Merino Wool Crew Neck", "quantity": 1, "price": 149.99 } ] } }
        })
    }

    fn cart_body() -> Value {
        json!({
            "organization_id": "org_8d2f",
            "customer_id": "c-5e1b2a",
            "page": { "url": "https://shop.example.com/p/crew" },
            "name": "store_product_added_to_cart",
            "data": { "cart_lines": [ { "total_price": 299.98, "currency": "USD", "quantity": 2,
                "product": { "id": 123456789, "title": "Merino Wool Crew Neck", "price": 149.99 } } ] }
        })
    }

    fn parse(body: &Value) -> Result<WidgetEvent, Rejection> {
        parse_event(body.to_string().as_bytes(), NOW)
    }

    fn rejection(body: &Value) -> (RejectCode, Option<String>) {
        let r = parse(body).unwrap_err();
        (r.code, r.field)
    }

    #[test]
    fn the_design_example_is_accepted_with_an_exact_total() {
        let event = parse(&order_body()).unwrap();
        let order = event.order.unwrap();
        assert_eq!(order.total_price.value(), Decimal::from_str("149.99").unwrap());
        assert_eq!(event.received_at, NOW);
        assert_eq!(event.event_id, "0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11");
    }

    #[test]
    fn amounts_never_pass_through_a_float() {
        // 0.1 + 0.2 style values and 17 significant digits survive exactly.
        let mut body = order_body();
        body["data"]["order"]["total_price"] = serde_json::from_str("12345678901234.5678").unwrap();
        let raw = body.to_string().replace("12345678901234.568", "12345678901234.5678");
        let event = parse_event(raw.as_bytes(), NOW).unwrap();
        assert_eq!(
            event.order.unwrap().total_price.value(),
            Decimal::from_str("12345678901234.5678").unwrap()
        );
    }

    #[test]
    fn every_spelling_of_one_event_id_is_the_same_id() {
        for spelling in [
            "0B7E4C1E-1F39-4C9A-9D0E-3F0C2B7A9E11",
            "0b7e4c1e1f394c9a9d0e3f0c2b7a9e11",
            "{0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11}",
            "urn:uuid:0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11",
        ] {
            let mut body = order_body();
            body["event_id"] = json!(spelling);
            assert_eq!(
                parse(&body).unwrap().event_id,
                "0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11",
                "{spelling}"
            );
        }
        let mut body = order_body();
        body["event_id"] = json!("not-a-uuid");
        assert_eq!(rejection(&body), (RejectCode::InvalidField, Some("event_id".into())));
    }

    #[test]
    fn a_discount_without_a_code_is_accepted_and_left_out() {
        let mut body = order_body();
        body["data"]["order"]["discounts"] = json!([{}, { "code": "SPRING10" }, { "code": null }]);
        let order = parse(&body).unwrap().order.unwrap();
        assert_eq!(order.discount_codes, ["SPRING10"]);
        // An error still names the discount as the request numbers it.
        body["data"]["order"]["discounts"] = json!([{}, { "code": " " }]);
        assert_eq!(
            rejection(&body),
            (RejectCode::InvalidField, Some("data.order.discounts[1].code".into()))
        );
    }

    #[test]
    fn the_page_host_comes_with_the_event() {
        let mut body = cart_body();
        body["page"]["url"] = json!("https://Shop.Example.com/p/crew");
        let parsed = parse_event_with_host(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(parsed.page_host, "shop.example.com");
    }

    #[test]
    fn a_missing_event_id_is_assigned() {
        let event = parse(&cart_body()).unwrap();
        assert!(uuid::Uuid::parse_str(&event.event_id).is_ok());
        assert_eq!(
            event.cart_lines[0].product.id, "123456789",
            "numeric ids are kept as text"
        );
    }

    #[test]
    fn broken_json_is_malformed() {
        assert_eq!(
            parse_event(b"{\"organization_id\": ", NOW).unwrap_err().code,
            RejectCode::MalformedJson
        );
        assert_eq!(parse_event(b"[1, 2]", NOW).unwrap_err().code, RejectCode::MalformedJson);
        let trailing = format!("{} {{}}", order_body());
        assert_eq!(
            parse_event(trailing.as_bytes(), NOW).unwrap_err().code,
            RejectCode::MalformedJson
        );
    }

    #[test]
    fn a_missing_top_level_field_is_named() {
        let mut body = order_body();
        body.as_object_mut().unwrap().remove("customer_id");
        assert_eq!(rejection(&body), (RejectCode::MissingField, Some("customer_id".into())));
    }

    #[test]
    fn a_missing_nested_field_has_its_full_path() {
        let mut body = order_body();
        body["data"]["order"]["line_items"][0]
            .as_object_mut()
            .unwrap()
            .remove("price");
        assert_eq!(
            rejection(&body),
            (RejectCode::MissingField, Some("data.order.line_items[0].price".into()))
        );
    }

    #[test]
    fn a_fractional_quantity_is_an_invalid_field() {
        let mut body = order_body();
        body["data"]["order"]["line_items"][0]["quantity"] = json!(1.5);
        assert_eq!(
            rejection(&body),
            (
                RejectCode::InvalidField,
                Some("data.order.line_items[0].quantity".into())
            )
        );
    }

    #[test]
    fn a_zero_quantity_is_an_invalid_field() {
        let mut body = order_body();
        body["data"]["order"]["line_items"][0]["quantity"] = json!(0);
        assert_eq!(
            rejection(&body),
            (
                RejectCode::InvalidField,
                Some("data.order.line_items[0].quantity".into())
            )
        );
    }

    #[test]
    fn an_unknown_event_name_is_unknown_event() {
        let mut body = order_body();
        body["name"] = json!("store_coupon_applied");
        assert_eq!(rejection(&body), (RejectCode::UnknownEvent, Some("name".into())));
    }

    #[test]
    fn negative_too_precise_and_string_amounts_are_refused() {
        for bad in [json!(-1), json!("149.99"), json!(true)] {
            let mut body = order_body();
            body["data"]["order"]["total_price"] = bad;
            assert_eq!(
                rejection(&body),
                (RejectCode::InvalidField, Some("data.order.total_price".into()))
            );
        }
        let raw = order_body()
            .to_string()
            .replace("\"total_price\":149.99", "\"total_price\":149.99001");
        let r = parse_event(raw.as_bytes(), NOW).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("data.order.total_price"));
        assert!(r.message.contains("more than 4 decimal places"), "{}", r.message);
        let raw = order_body()
            .to_string()
            .replace("\"total_price\":149.99", "\"total_price\":1e400");
        assert_eq!(
            parse_event(raw.as_bytes(), NOW).unwrap_err().code,
            RejectCode::InvalidField
        );
    }

    #[test]
    fn amounts_in_scientific_notation_are_read_exactly() {
        for (text, value) in [
            ("1.4999e2", "149.99"),
            ("14999E-2", "149.99"),
            ("1.5e+3", "1500"),
            ("0e400", "0"),
            ("150000e-3", "150"),
            ("10000000000000000000000000e-29", "0.0001"),
            ("9.999999999999999999999999999e23", "999999999999999999999999.9999"),
        ] {
            assert_eq!(
                parse_amount(text).unwrap().value(),
                Decimal::from_str(value).unwrap(),
                "{text}"
            );
        }
        assert!(parse_amount("1e-5").is_err());
        assert!(parse_amount("1e28").is_err());
        assert!(parse_amount("1e400").is_err());
        assert!(parse_amount("1e-400").is_err());
        assert!(parse_amount("1e99999999999").is_err());
    }

    #[test]
    fn amounts_beyond_28_digits_are_refused_not_rounded() {
        for text in [
            "149.99000000000000000000000000001",
            "0.00000000000000000000000000000001",
            "1.00000000000000000000000000000001e1",
            "123456789012345678901234567890",
            "1.5e-30",
        ] {
            let message = parse_amount(text).unwrap_err();
            assert!(message.contains(text), "{text}: {message}");
        }
        // Over HTTP the refusal is an invalid field, named.
        let raw = order_body().to_string().replace(
            "\"total_price\":149.99",
            "\"total_price\":149.99000000000000000000000000001",
        );
        let r = parse_event(raw.as_bytes(), NOW).unwrap_err();
        assert_eq!(
            (r.code, r.field.as_deref()),
            (RejectCode::InvalidField, Some("data.order.total_price"))
        );
    }

    #[test]
    fn a_cart_event_needs_cart_lines() {
        let mut body = cart_body();
        body["data"] = json!({});
        assert_eq!(
            rejection(&body),
            (RejectCode::MissingField, Some("data.cart_lines".into()))
        );
    }

    #[test]
    fn a_bad_occurred_at_is_named() {
        let mut body = cart_body();
        body["occurred_at"] = json!("yesterday");
        assert_eq!(rejection(&body), (RejectCode::InvalidField, Some("occurred_at".into())));
    }

    #[test]
    fn shared_rules_apply_after_parsing() {
        let mut body = order_body();
        body["organization_id"] = json!("org with spaces");
        assert_eq!(
            rejection(&body),
            (RejectCode::InvalidField, Some("organization_id".into()))
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_event(&bytes, Timestamp(0));
        }

        #[test]
        fn random_json_objects_are_refused_without_panicking(text in "\\{(\"[a-z_]{1,12}\": ?(null|true|-?[0-9]{1,30}(\\.[0-9]{1,8})?|\"\\PC{0,10}\"|\\{\\}|\\[\\]), ?){0,8}\"x\": 1\\}") {
            let _ = parse_event(text.as_bytes(), Timestamp(0));
        }
    }
}
