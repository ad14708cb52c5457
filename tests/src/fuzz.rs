//! Mutated widget events: a valid order with one thing broken, for throwing at ingest.

use proptest::prelude::*;
use serde_json::{Value, json};

/// The valid order every mutation starts from.
pub fn valid_order(organization_id: &str) -> Value {
    json!({
        "organization_id": organization_id,
        "customer_id": "c-fuzz",
        "event_id": "0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11",
        "page": { "url": "https://shop.example.com/checkout/thanks", "title": "Thank you", "referrer": "" },
        "name": "store_order_was_created",
        "data": { "order": { "id": "1042", "order_number": "#1042", "currency": "USD", "total_price": 149.99,
            "subtotal_price": 139.99, "discounts": [ { "code": "WELCOME10" } ],
            "line_items": [ { "product_id": "123456789", "title": "Merino Wool Crew Neck", "quantity": 1,
                "price": 149.99, "thumbnail_url": "https://cdn.example.com/crew.jpg" } ] } }
    })
}

/// JSON pointers to every value in `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12f64).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{ "x": 1 }])),
    ]
}

/// One mutation of the valid order, as the bytes a client would send.
#[derive(Debug, Clone)]
pub enum Mutation {
    Remove(prop::sample::Index),
    Replace(prop::sample::Index, Value),
    /// The total's text replaced by any number text (huge, tiny, negative, exponents).
    NumberText(String),
    Truncate(prop::sample::Index),
    InsertByte(prop::sample::Index, u8),
}

pub fn mutations() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        (any::<prop::sample::Index>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        "-?[0-9]{1,40}(\\.[0-9]{0,12})?([eE]-?[0-9]{1,4})?".prop_map(Mutation::NumberText),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::InsertByte(i, b)),
    ]
}

/// The body after applying `mutation` to the valid order of `organization_id`.
pub fn mutated_body(organization_id: &str, mutation: &Mutation) -> Vec<u8> {
    let mut value = valid_order(organization_id);
    let mut paths = Vec::new();
    pointers(&value, String::new(), &mut paths);
    match mutation {
        Mutation::Remove(index) => {
            let path = index.get(&paths).as_str();
            let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        items.remove(i);
                    }
                }
                _ => {}
            }
            value.to_string().into_bytes()
        }
        Mutation::Replace(index, replacement) => {
            if let Some(slot) = value.pointer_mut(index.get(&paths).as_str()) {
                *slot = replacement.clone();
            }
            value.to_string().into_bytes()
        }
        Mutation::NumberText(text) => value.to_string().replacen("149.99", text, 1).into_bytes(),
        Mutation::Truncate(index) => {
            let mut bytes = value.to_string().into_bytes();
            bytes.truncate(index.index(bytes.len()));
            bytes
        }
        Mutation::InsertByte(index, byte) => {
            let mut bytes = value.to_string().into_bytes();
            bytes.insert(index.index(bytes.len()), *byte);
            bytes
        }
    }
}
