//! From the bytes a storefront posts to a [`WidgetEvent`], or to the exact reason it is
//! refused. Amounts are read from the JSON number's own text into decimals, never
//! through a float. The field rules themselves are shared with the enricher
//! ([`schemas::validation`]); this module only knows the JSON shape.

use std::marker::PhantomData;

use rust_decimal::Decimal;
use schemas::records::{CartLine, CartProduct, EventName, LineItem, Order, Page, SalesChannel, WidgetEvent};
use schemas::validation::{
    FieldError, FieldErrorKind, MAX_DISCOUNTS, MAX_QUOTED, quoted, validate_widget_event, without_userinfo,
};
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
    /// Every message, ours and serde's, goes through [`short_message`]: an answer never
    /// echoes more than a short prefix of what the client sent.
    fn new(code: RejectCode, message: impl Into<String>, field: Option<String>) -> Self {
        Rejection {
            code,
            message: short_message(message.into()),
            field,
        }
    }
}

/// The longest message an answer carries; every message of this module is shorter, so
/// only an echo of client input left uncut by [`shorten_quotes`] could reach it.
const MAX_MESSAGE: usize = 400;

/// `message` with every quoted value cut to its first [`MAX_QUOTED`] characters (serde
/// quotes the client's value in full: `invalid type: string "…60 KB…", expected i32`),
/// and the whole cut to [`MAX_MESSAGE`] characters.
fn short_message(message: String) -> String {
    let mut message = if message.contains('"') {
        shorten_quotes(&message)
    } else {
        message
    };
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// Cuts each `"`-quoted part of `message` (Rust's or JSON's escaping: `\"`, `\\`, `\n`,
/// `\u{1f}`, `\u001f`) after [`MAX_QUOTED`] characters, an escape counting as one, and
/// marks the cut with `…` before the closing quote.
fn shorten_quotes(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE * 2));
    let mut chars = message.chars().peekable();
    // Characters shown of the quoted part being read, when one is.
    let mut quote: Option<usize> = None;
    while let Some(c) = chars.next() {
        let Some(shown) = quote else {
            out.push(c);
            if c == '"' {
                quote = Some(0);
            }
            continue;
        };
        if c == '"' {
            if shown > MAX_QUOTED {
                out.push('…');
            }
            out.push('"');
            quote = None;
            continue;
        }
        let mut unit = String::from(c);
        if c == '\\'
            && let Some(escaped) = chars.next()
        {
            unit.push(escaped);
            if escaped == 'u' {
                if chars.peek() == Some(&'{') {
                    // \u{1f}
                    while let Some(hex) = chars.next_if(|&h| h != '"') {
                        unit.push(hex);
                        if hex == '}' {
                            break;
                        }
                    }
                } else {
                    // \u001f
                    for _ in 0..4 {
                        if let Some(hex) = chars.next_if(char::is_ascii_hexdigit) {
                            unit.push(hex);
                        }
                    }
                }
            }
        }
        if shown < MAX_QUOTED {
            out.push_str(&unit);
        }
        quote = Some(shown + 1);
    }
    if quote.is_some_and(|shown| shown > MAX_QUOTED) {
        out.push('…');
    }
    out
}

/// At most [`MAX_QUOTED`] characters of `text`, then `…` when there were more.
fn prefix(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_QUOTED) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

/// A posted event that passed every rule of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    pub event: WidgetEvent,
    /// The host of `page.url`, lower case.
    pub page_host: String,
    /// The customer's signature as sent, checked against the organization's settings
    /// by [`crate::identity`].
    pub customer_signature: Option<String>,
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
                    "unknown event {}; expected store_order_was_created, store_product_added_to_cart or store_product_removed_from_cart",
                    quoted(other)
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
            // Counted as sent: the record keeps only the discounts with a code, and
            // validation counts those.
            if data.order.discounts.len() > MAX_DISCOUNTS {
                return Err(Rejection::new(
                    RejectCode::InvalidField,
                    format!("must hold at most {MAX_DISCOUNTS} discounts"),
                    Some("data.order.discounts".into()),
                ));
            }
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
            // A page reached through `https://user:pass@shop.example/...` is accepted
            // without its userinfo: a store's order must not be lost over how the page
            // was reached, and credentials must never reach a topic.
            url: without_userinfo(&envelope.page.url).unwrap_or(envelope.page.url),
            title: envelope.page.title,
            referrer: envelope.page.referrer,
        },
        occurred_at,
        received_at,
        order,
        cart_lines,
        identity_verified: false,
    };
    let page_host = validate_widget_event(&event).map_err(|e| renumber_discounts(e, &kept_discounts))?;
    Ok(ParsedEvent {
        event,
        page_host,
        customer_signature: envelope.customer_signature,
    })
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

/// A struct serde would also read from a JSON array, by position (`["1042", "#1042",
/// "USD", 149.99, ...]` as an order); where the contract says object, only an object
/// will do. Each payload struct below derives its field reading as an inherent
/// `deserialize` (`#[serde(remote = "Self")]`) and [`objects_only!`] gives it the
/// `Deserialize` impl, which hands that reading a JSON object and refuses anything else.
trait FromObject<'de>: Sized {
    fn from_object<A: de::MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// Accepts a JSON object only; an array is "must be a JSON object", any other value
/// serde's "invalid type: ..., expected a JSON object".
struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: FromObject<'de>> de::Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_object(map)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Err(de::Error::custom("must be a JSON object, not an array"))
    }
}

macro_rules! objects_only {
    ($($name:ident),+ $(,)?) => {$(
        impl<'de> FromObject<'de> for $name {
            fn from_object<A: de::MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
                // The derived (remote = "Self") reading, fed the object's entries.
                $name::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // `any`, not `map`: serde_json's `deserialize_map` refuses an array with a
                // message naming the Rust type; this way the visitor words it.
                deserializer.deserialize_any(ObjectVisitor(PhantomData))
            }
        }
    )+};
}

// Every struct read from the payload but the envelope (the body itself, checked to be
// an object before it is read).
objects_only!(
    PageIn,
    OrderData,
    OrderIn,
    SalesChannelIn,
    DiscountIn,
    LineItemIn,
    CartData,
    CartLineIn,
    CartProductIn,
);

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
    customer_signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
struct PageIn {
    url: String,
    title: Option<String>,
    referrer: Option<String>,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
struct OrderData {
    order: OrderIn,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
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
#[serde(remote = "Self")]
struct SalesChannelIn {
    id: Option<Id>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
struct DiscountIn {
    /// Optional: some platforms report automatic discounts without a code. Such a
    /// discount has nothing to keep, since the record holds only codes.
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
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
#[serde(remote = "Self")]
struct CartData {
    cart_lines: Vec<CartLineIn>,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
struct CartLineIn {
    total_price: Amount,
    currency: String,
    quantity: i32,
    product: CartProductIn,
}

#[derive(Deserialize)]
#[serde(remote = "Self")]
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
        let got = match text.as_bytes().first() {
            Some(b'"') => "a string".into(),
            Some(b'{') => "an object".into(),
            Some(b'[') => "an array".into(),
            Some(b't' | b'f') => "a boolean".into(),
            Some(b'n') => "null".into(),
            _ => prefix(text),
        };
        return Err(format!("must be a number, got {got}"));
    }
    // A number's text is quoted only in part: a client may send 60 KB of digits.
    let decimal = exact_decimal(text).ok_or_else(|| {
        format!(
            "{} is not an amount this API can carry exactly; send at most 4 decimal places and 28 significant digits",
            prefix(text)
        )
    })?;
    if decimal.is_sign_negative() && !decimal.is_zero() {
        return Err("must be at least 0".into());
    }
    Money::new(decimal).map_err(|e| match e {
        schemas::values::DecimalError::TooPrecise { .. } => format!("{} has more than 4 decimal places", prefix(text)),
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

    /// The order body with every optional object present: a sales channel, a discount.
    fn full_order_body() -> Value {
        let mut body = order_body();
        body["data"]["order"]["sales_channel"] = json!({ "id": "web", "name": "Online Store" });
        body["data"]["order"]["discounts"] = json!([{ "code": "SPRING10" }]);
        body["data"]["order"]["line_items"][0]["sku"] = json!("MW-CREW-M");
        body["data"]["order"]["line_items"][0]["variant_id"] = json!("987");
        body
    }

    fn full_cart_body() -> Value {
        let mut body = cart_body();
        body["data"]["cart_lines"][0]["product"]["sku"] = json!("MW-CREW-M");
        body["data"]["cart_lines"][0]["product"]["variant_id"] = json!(987);
        body
    }

    /// A valid body of one of the two events.
    type Body = fn() -> Value;

    /// Every object position of both events: the body, the JSON pointer, the field
    /// path, and the object's values as an array in field order, which serde's derived
    /// reading takes by position.
    fn object_positions() -> Vec<(Body, &'static str, &'static str, Value)> {
        let line_item = json!({ "product_id": "1", "title": "Crew", "quantity": 1, "price": 1 });
        let cart_product = json!({ "id": "1", "title": "Crew" });
        vec![
            (
                full_order_body,
                "/page",
                "page",
                json!(["https://shop.example.com/t", "Thanks", ""]),
            ),
            (
                full_order_body,
                "/data",
                "data",
                json!([{ "id": "1", "order_number": "1", "currency": "USD",
                "total_price": 1, "line_items": [line_item] }]),
            ),
            (
                full_order_body,
                "/data/order",
                "data.order",
                json!([
                    "1042",
                    "#1042",
                    "USD",
                    149.99,
                    null,
                    null,
                    null,
                    null,
                    null,
                    [],
                    [line_item]
                ]),
            ),
            (
                full_order_body,
                "/data/order/sales_channel",
                "data.order.sales_channel",
                json!(["web", "Online Store"]),
            ),
            (
                full_order_body,
                "/data/order/discounts/0",
                "data.order.discounts[0]",
                json!(["SPRING10"]),
            ),
            (
                full_order_body,
                "/data/order/line_items/0",
                "data.order.line_items[0]",
                json!(["123456789", "Merino Wool Crew Neck", 1, 149.99, null, null, null, null]),
            ),
            (
                full_cart_body,
                "/page",
                "page",
                json!(["https://shop.example.com/p", null, null]),
            ),
            (
                full_cart_body,
                "/data",
                "data",
                json!([[{ "total_price": 1, "currency": "USD", "quantity": 1,
                "product": cart_product }]]),
            ),
            (
                full_cart_body,
                "/data/cart_lines/0",
                "data.cart_lines[0]",
                json!([299.98, "USD", 2, cart_product]),
            ),
            (
                full_cart_body,
                "/data/cart_lines/0/product",
                "data.cart_lines[0].product",
                json!(["123456789", "Merino Wool Crew Neck", 149.99, null, null, null]),
            ),
        ]
    }

    #[test]
    fn every_payload_struct_would_read_an_array_by_position() {
        // What the positions below refuse, serde's derived reading alone takes: so the
        // refusals come from the object rule, not from a malformed array.
        macro_rules! by_position {
            ($name:ident, $array:expr) => {
                let text = $array.to_string();
                // The inherent, derived reading (`remote = "Self"`), before the object rule.
                let read = $name::deserialize(&mut serde_json::Deserializer::from_str(&text));
                assert!(read.is_ok(), "{}: {text}", stringify!($name));
            };
        }
        let arrays: Vec<Value> = object_positions().into_iter().map(|(_, _, _, array)| array).collect();
        by_position!(PageIn, arrays[0]);
        by_position!(OrderData, arrays[1]);
        by_position!(OrderIn, arrays[2]);
        by_position!(SalesChannelIn, arrays[3]);
        by_position!(DiscountIn, arrays[4]);
        by_position!(LineItemIn, arrays[5]);
        by_position!(PageIn, arrays[6]);
        by_position!(CartData, arrays[7]);
        by_position!(CartLineIn, arrays[8]);
        by_position!(CartProductIn, arrays[9]);
    }

    #[test]
    fn an_array_is_refused_at_every_object_position() {
        for (body, pointer, field, array) in object_positions() {
            assert!(parse(&body()).is_ok(), "{field}: the body is valid as it is");
            for array in [array, json!([])] {
                let mut body = body();
                *body.pointer_mut(pointer).unwrap() = array.clone();
                let r = parse(&body).unwrap_err();
                assert_eq!(
                    (r.code, r.field.as_deref(), r.message.as_str()),
                    (
                        RejectCode::InvalidField,
                        Some(field),
                        "must be a JSON object, not an array"
                    ),
                    "{array}"
                );
            }
        }
    }

    #[test]
    fn other_values_at_an_object_position_are_refused_too() {
        for value in [json!("https://shop.example.com/t"), json!(1), json!(true)] {
            let mut body = full_order_body();
            body["data"]["order"]["line_items"][0] = value.clone();
            let r = parse(&body).unwrap_err();
            assert_eq!(r.field.as_deref(), Some("data.order.line_items[0]"), "{value}");
            assert!(r.message.ends_with("expected a JSON object"), "{}", r.message);
        }
        let mut body = full_order_body();
        body["page"] = json!(null);
        assert_eq!(rejection(&body), (RejectCode::InvalidField, Some("page".into())));
        // An optional object may still be null or absent.
        body = full_order_body();
        body["data"]["order"]["sales_channel"] = json!(null);
        assert!(parse(&body).is_ok());
    }

    /// Every id of both events: the body, its JSON pointer and its field path.
    const IDS: [(Body, &str, &str); 13] = [
        (full_order_body, "/organization_id", "organization_id"),
        (full_order_body, "/customer_id", "customer_id"),
        (full_order_body, "/event_id", "event_id"),
        (full_order_body, "/data/order/id", "data.order.id"),
        (full_order_body, "/data/order/order_number", "data.order.order_number"),
        (
            full_order_body,
            "/data/order/sales_channel/id",
            "data.order.sales_channel.id",
        ),
        (
            full_order_body,
            "/data/order/discounts/0/code",
            "data.order.discounts[0].code",
        ),
        (
            full_order_body,
            "/data/order/line_items/0/product_id",
            "data.order.line_items[0].product_id",
        ),
        (
            full_order_body,
            "/data/order/line_items/0/sku",
            "data.order.line_items[0].sku",
        ),
        (
            full_order_body,
            "/data/order/line_items/0/variant_id",
            "data.order.line_items[0].variant_id",
        ),
        (
            full_cart_body,
            "/data/cart_lines/0/product/id",
            "data.cart_lines[0].product.id",
        ),
        (
            full_cart_body,
            "/data/cart_lines/0/product/sku",
            "data.cart_lines[0].product.sku",
        ),
        (
            full_cart_body,
            "/data/cart_lines/0/product/variant_id",
            "data.cart_lines[0].product.variant_id",
        ),
    ];

    #[test]
    fn a_control_character_in_any_id_is_refused_with_its_path() {
        for (body, pointer, field) in IDS {
            assert!(parse(&body()).is_ok(), "{field}: the body is valid as it is");
            for bad in ["\0", "\u{1}", "\t", "\u{7f}", "\u{85}", "\u{9f}"] {
                let mut body = body();
                let id = body.pointer_mut(pointer).unwrap();
                *id = json!(format!("{}{bad}", id.as_str().map_or("1".to_string(), str::to_string)));
                assert_eq!(
                    rejection(&body),
                    (RejectCode::InvalidField, Some(field.to_string())),
                    "{bad:?}"
                );
            }
        }
        // Written as the JSON escape a client sends.
        let raw = full_order_body().to_string().replace("\"#1042\"", "\"#10\\u000042\"");
        let r = parse_event(raw.as_bytes(), NOW).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("data.order.order_number"));
    }

    #[test]
    fn discounts_are_counted_as_sent() {
        let mut body = full_order_body();
        body["data"]["order"]["discounts"] = json!(vec![json!({}); MAX_DISCOUNTS]);
        assert!(parse(&body).is_ok());
        for discount in [json!({}), json!({ "code": "SPRING10" })] {
            body["data"]["order"]["discounts"] = json!(vec![discount; MAX_DISCOUNTS + 1]);
            assert_eq!(
                rejection(&body),
                (RejectCode::InvalidField, Some("data.order.discounts".into()))
            );
        }
    }

    #[test]
    fn cart_lines_and_line_items_are_bounded() {
        let limit = schemas::validation::MAX_LINES;
        let mut body = full_cart_body();
        let line = body["data"]["cart_lines"][0].clone();
        body["data"]["cart_lines"] = json!(vec![line.clone(); limit]);
        assert!(parse(&body).is_ok());
        body["data"]["cart_lines"] = json!(vec![line; limit + 1]);
        assert_eq!(
            rejection(&body),
            (RejectCode::InvalidField, Some("data.cart_lines".into()))
        );
        let mut body = full_order_body();
        let item = body["data"]["order"]["line_items"][0].clone();
        body["data"]["order"]["line_items"] = json!(vec![item; limit + 1]);
        assert_eq!(
            rejection(&body),
            (RejectCode::InvalidField, Some("data.order.line_items".into()))
        );
    }

    #[test]
    fn userinfo_is_stripped_from_the_page_url() {
        let mut body = full_order_body();
        body["page"]["url"] = json!("https://user:pass@shop.example.com/checkout/thanks?x=1");
        let parsed = parse_event_with_host(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(parsed.event.page.url, "https://shop.example.com/checkout/thanks?x=1");
        assert_eq!(parsed.page_host, "shop.example.com");
        body["page"]["url"] = json!("https://user@shop.example.com/");
        assert_eq!(parse(&body).unwrap().page.url, "https://shop.example.com/");
        // Without userinfo the URL is kept as it was spelled.
        body["page"]["url"] = json!("HTTPS://Shop.Example.com/a@b");
        assert_eq!(parse(&body).unwrap().page.url, "HTTPS://Shop.Example.com/a@b");
    }

    #[test]
    fn a_huge_value_is_quoted_only_in_part() {
        let huge = "A".repeat(60_000);
        let digits = "1".repeat(60_000);
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/name", json!(huge), "name"),
            (
                "/data/order/line_items/0/quantity",
                json!(huge),
                "data.order.line_items[0].quantity",
            ),
            ("/data/order/currency", json!(huge), "data.order.currency"),
            ("/data/order/total_price", json!(huge), "data.order.total_price"),
            ("/data/order/total_price", json!([huge]), "data.order.total_price"),
            ("/page", json!(huge), "page"),
            ("/page/url", json!(format!("https://{huge}")), "page.url"),
            ("/data/order/id", json!(huge), "data.order.id"),
            (
                "/data/order/line_items/0/thumbnail_url",
                json!(huge),
                "data.order.line_items[0].thumbnail_url",
            ),
            ("/occurred_at", json!(huge), "occurred_at"),
            (
                "/data/order/line_items/0/product_id",
                json!({ "x": huge }),
                "data.order.line_items[0].product_id",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut body = full_order_body();
            // The field is set whether or not the body had it.
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            body.pointer_mut(parent).unwrap()[key] = value;
            let r = parse(&body).unwrap_err();
            assert_eq!(r.field.as_deref(), Some(field), "{}", r.message);
            assert!(r.message.chars().count() < 250, "{field}: {}", r.message);
        }
        // A number's own text, 60 000 digits of it.
        let raw = full_order_body()
            .to_string()
            .replace("\"total_price\":149.99", &format!("\"total_price\":{digits}"));
        let r = parse_event(raw.as_bytes(), NOW).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("data.order.total_price"));
        assert!(
            r.message.starts_with(&format!("{}…", &digits[..MAX_QUOTED])),
            "{}",
            r.message
        );
        assert!(r.message.chars().count() < 250, "{}", r.message);
        // The prefix shown is the value's own.
        let mut body = full_order_body();
        body["name"] = json!(huge);
        let r = parse(&body).unwrap_err();
        assert!(
            r.message
                .starts_with(&format!("unknown event \"{}…\";", &huge[..MAX_QUOTED])),
            "{}",
            r.message
        );
    }

    #[test]
    fn quoted_parts_of_a_message_are_cut_at_whole_characters() {
        let long = format!("{}\"\\\u{0}\u{1f}é{}", "a".repeat(MAX_QUOTED - 4), "b".repeat(500));
        let message = format!("invalid type: string {long:?}, expected i32");
        let short = shorten_quotes(&message);
        assert_eq!(
            short,
            format!(
                "invalid type: string \"{}\\\"\\\\\\0\\u{{1f}}…\", expected i32",
                "a".repeat(MAX_QUOTED - 4)
            )
        );
        // JSON's escapes too, and a quote at the limit is left whole.
        let json_quoted = format!(
            "got \"{}\\u0000{}\" and \"{}\"",
            "a".repeat(MAX_QUOTED - 1),
            "b".repeat(9),
            "c".repeat(MAX_QUOTED)
        );
        assert_eq!(
            shorten_quotes(&json_quoted),
            format!(
                "got \"{}\\u0000…\" and \"{}\"",
                "a".repeat(MAX_QUOTED - 1),
                "c".repeat(MAX_QUOTED)
            )
        );
        // What quoted() already cut stays as it is.
        let once = quoted(&"z".repeat(1000));
        assert_eq!(shorten_quotes(&once), once);
        // An unterminated quote is cut as well, and no message is ever long.
        assert_eq!(
            shorten_quotes(&format!("\"{}", "x".repeat(100))),
            format!("\"{}…", "x".repeat(MAX_QUOTED))
        );
        assert_eq!(short_message("y".repeat(10_000)).chars().count(), MAX_MESSAGE + 1);
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
