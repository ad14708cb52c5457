//! Amounts as people read them. Records keep money at a fixed scale of 4 (`420.5000`);
//! the API shows each amount as [`rules::fx::shown`] does: the zeros beyond its
//! currency's minor unit taken off (`420.50` USD, `1200` JPY), never rounded.

use serde_json::Value;

/// The decimal fields of an object that has a `currency`.
const AMOUNT_FIELDS: [&str; 4] = ["amount", "total", "unit_price", "line_total"];

/// Trims the amounts of every object in `value` that names its currency.
pub fn trim_amounts(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(trim_amounts),
        Value::Object(fields) => {
            let currency = fields.get("currency").and_then(Value::as_str).map(str::to_string);
            for (name, field) in fields.iter_mut() {
                match (&currency, field) {
                    (Some(currency), Value::String(text)) if AMOUNT_FIELDS.contains(&name.as_str()) => {
                        if let Ok(amount) = text.parse::<rust_decimal::Decimal>() {
                            *text = rules::fx::shown(amount, currency).to_string();
                        }
                    }
                    (_, nested) => trim_amounts(nested),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_amounts_beside_a_currency_are_trimmed() {
        let mut value = json!({
            "total": "149.9900", "currency": "USD",
            "items": [{"line_total": "10.0000", "currency": "JPY", "title": "10.0000"}],
            "spend": [{"amount": "1.5000", "currency": "KWD"}],
            "note": {"amount": "2.0000"}
        });
        trim_amounts(&mut value);
        assert_eq!(value["total"], "149.99");
        assert_eq!(value["items"][0]["line_total"], "10");
        assert_eq!(value["items"][0]["title"], "10.0000");
        assert_eq!(value["spend"][0]["amount"], "1.500");
        assert_eq!(value["note"]["amount"], "2.0000", "no currency, no trimming");
    }
}
