//! ingest's payload shapes over real HTTP against the real broker: an array where the
//! contract says object, a control character in an id, too many discounts or cart
//! lines, and a huge bogus value are each a 422 naming the field, and none of them
//! reaches `sales.events.raw`; a page URL with userinfo is accepted and stored without it.

use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use sales_tests::{TestEnv, read_exactly};
use schemas::records::WidgetEvent;
use schemas::topics::Topic;
use serde_json::{Value, json};

use crate::ingest::{ORG, RunningIngest, settings};

/// An order with every optional object and id present: a sales channel, a discount,
/// a line item's sku and variant.
fn order_body(order_id: &str) -> Value {
    json!({
        "organization_id": ORG,
        "customer_id": "c-shapes",
        "event_id": uuid::Uuid::new_v4().to_string(),
        "page": { "url": "https://shop.example.com/checkout/thanks", "title": "Thank you", "referrer": "" },
        "name": "store_order_was_created",
        "data": { "order": { "id": order_id, "order_number": format!("#{order_id}"), "currency": "USD",
            "total_price": 149.99,
            "sales_channel": { "id": "web", "name": "Online Store" },
            "discounts": [ { "code": "SPRING10" } ],
            "line_items": [ { "product_id": "123456789", "title": "Merino Wool Crew Neck", "quantity": 1,
                "price": 149.99, "sku": "MW-CREW-M", "variant_id": "987" } ] } }
    })
}

/// A cart event with the product's every id present.
fn cart_body() -> Value {
    json!({
        "organization_id": ORG,
        "customer_id": "c-shapes",
        "event_id": uuid::Uuid::new_v4().to_string(),
        "page": { "url": "https://shop.example.com/p/crew" },
        "name": "store_product_added_to_cart",
        "data": { "cart_lines": [ { "total_price": 299.98, "currency": "USD", "quantity": 2,
            "product": { "id": 123456789, "title": "Merino Wool Crew Neck", "price": 149.99,
                "sku": "MW-CREW-M", "variant_id": 987 } } ] }
    })
}

async fn start(env: &TestEnv) -> RunningIngest {
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], Some(100_000)))
        .await;
    RunningIngest::start(env, &["--ip-rate", "100000", "--ip-burst", "100000"]).await
}

/// Reads exactly the events of `event_ids` from `sales.events.raw` (read_committed), in
/// any order, and makes sure no other record follows within a few seconds.
async fn stored_events(env: &TestEnv, event_ids: &[&str]) -> Vec<WidgetEvent> {
    let consumer: StreamConsumer = env.consumer(&env.topic(Topic::EventsRaw), "read_committed");
    let records = read_exactly(
        &consumer,
        "sales.events.raw",
        event_ids.len(),
        Duration::from_secs(30),
        Duration::from_secs(3),
    )
    .await;
    let events: Vec<WidgetEvent> = records
        .iter()
        .map(|(_, value)| schemas::decode(value.as_deref().unwrap()).unwrap())
        .collect();
    let mut stored: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let mut expected = event_ids.to_vec();
    stored.sort_unstable();
    expected.sort_unstable();
    assert_eq!(stored, expected, "only the accepted events are stored");
    events
}

/// Every object position of the two events: the body, the JSON pointer, the field
/// path, and the object's values as an array in field order (what serde's derived
/// reading took by position before).
fn object_positions() -> Vec<(Value, &'static str, &'static str, Value)> {
    let line_item = json!({ "product_id": "1", "title": "Crew", "quantity": 1, "price": 1 });
    let product = json!({ "id": "1", "title": "Crew" });
    let order = order_body("1042");
    let cart = cart_body();
    vec![
        (
            order.clone(),
            "/page",
            "page",
            json!(["https://shop.example.com/t", "Thanks", ""]),
        ),
        (
            order.clone(),
            "/data",
            "data",
            json!([{ "id": "1", "order_number": "1", "currency": "USD", "total_price": 1,
                "line_items": [line_item] }]),
        ),
        (
            order.clone(),
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
            order.clone(),
            "/data/order/sales_channel",
            "data.order.sales_channel",
            json!(["web", "Online Store"]),
        ),
        (
            order.clone(),
            "/data/order/discounts/0",
            "data.order.discounts[0]",
            json!(["SPRING10"]),
        ),
        (
            order.clone(),
            "/data/order/line_items/0",
            "data.order.line_items[0]",
            json!(["123456789", "Merino Wool Crew Neck", 1, 149.99, null, null, null, null]),
        ),
        (
            cart.clone(),
            "/page",
            "page",
            json!(["https://shop.example.com/p", null, null]),
        ),
        (
            cart.clone(),
            "/data",
            "data",
            json!([[{ "total_price": 1, "currency": "USD", "quantity": 1, "product": product }]]),
        ),
        (
            cart.clone(),
            "/data/cart_lines/0",
            "data.cart_lines[0]",
            json!([299.98, "USD", 2, product]),
        ),
        (
            cart,
            "/data/cart_lines/0/product",
            "data.cart_lines[0].product",
            json!(["123456789", "Merino Wool Crew Neck", 149.99, null, null, null]),
        ),
    ]
}

/// Every id of the two events (the currencies beside them): the body, the JSON pointer,
/// the field path.
fn ids() -> Vec<(Value, &'static str, &'static str)> {
    let order = order_body("1042");
    let cart = cart_body();
    let order_ids = [
        ("/organization_id", "organization_id"),
        ("/customer_id", "customer_id"),
        ("/event_id", "event_id"),
        ("/data/order/id", "data.order.id"),
        ("/data/order/order_number", "data.order.order_number"),
        ("/data/order/currency", "data.order.currency"),
        ("/data/order/sales_channel/id", "data.order.sales_channel.id"),
        ("/data/order/discounts/0/code", "data.order.discounts[0].code"),
        (
            "/data/order/line_items/0/product_id",
            "data.order.line_items[0].product_id",
        ),
        ("/data/order/line_items/0/sku", "data.order.line_items[0].sku"),
        (
            "/data/order/line_items/0/variant_id",
            "data.order.line_items[0].variant_id",
        ),
    ];
    let cart_ids = [
        ("/data/cart_lines/0/currency", "data.cart_lines[0].currency"),
        ("/data/cart_lines/0/product/id", "data.cart_lines[0].product.id"),
        ("/data/cart_lines/0/product/sku", "data.cart_lines[0].product.sku"),
        (
            "/data/cart_lines/0/product/variant_id",
            "data.cart_lines[0].product.variant_id",
        ),
    ];
    order_ids
        .into_iter()
        .map(|(pointer, field)| (order.clone(), pointer, field))
        .chain(
            cart_ids
                .into_iter()
                .map(|(pointer, field)| (cart.clone(), pointer, field)),
        )
        .collect()
}

#[tokio::test]
async fn wrong_shapes_bad_ids_and_huge_values_are_refused_and_never_stored() {
    let env = TestEnv::new().await;
    let ingest = start(&env).await;

    // body, the field the 422 names, and the message when it is known in full
    let mut cases: Vec<(Value, String, Option<String>)> = Vec::new();
    for (body, pointer, field, array) in object_positions() {
        for array in [array, json!([])] {
            let mut body = body.clone();
            *body.pointer_mut(pointer).unwrap() = array;
            cases.push((body, field.into(), Some("must be a JSON object, not an array".into())));
        }
    }
    for (body, pointer, field) in ids() {
        let mut body = body.clone();
        let id = body.pointer_mut(pointer).unwrap();
        let text = id.as_str().map_or_else(|| id.to_string(), str::to_string);
        // serde_json writes it as the escape \u0000, as a client's JSON would.
        *id = json!(format!("{text}\u{0}"));
        cases.push((body, field.into(), None));
    }
    let mut discounts = order_body("d");
    discounts["data"]["order"]["discounts"] = json!(vec![json!({ "code": "SPRING10" }); 101]);
    cases.push((discounts, "data.order.discounts".into(), None));
    let mut codeless = order_body("d");
    codeless["data"]["order"]["discounts"] = json!(vec![json!({}); 101]);
    cases.push((codeless, "data.order.discounts".into(), None));
    let mut cart_lines = cart_body();
    let line = json!({ "total_price": 1, "currency": "USD", "quantity": 1, "product": { "id": "1", "title": "t" } });
    cart_lines["data"]["cart_lines"] = json!(vec![line; 501]);
    cases.push((cart_lines, "data.cart_lines".into(), None));

    for (body, field, message) in &cases {
        let answer = ingest.post(body).await;
        assert_eq!(answer.status, 422, "{field}: {}", answer.body);
        let json = answer.json();
        assert_eq!(json["error_code"], "invalid_field", "{field}: {}", answer.body);
        assert_eq!(json["field"], field.as_str(), "{}", answer.body);
        if let Some(message) = message {
            assert_eq!(json["message"], message.as_str(), "{field}");
        }
    }

    // A 60 KB bogus value, wherever a message could echo it: a short message, quoting
    // at most the value's first 64 characters.
    let huge = "A".repeat(60_000);
    let shown = format!("{}…", &huge[..64]);
    let mut huge_cases = Vec::new();
    for (pointer, field, echoed) in [
        ("/name", "name", true),
        ("/data/order/currency", "data.order.currency", true),
        (
            "/data/order/line_items/0/quantity",
            "data.order.line_items[0].quantity",
            true,
        ),
        ("/data/order/sales_channel", "data.order.sales_channel", true),
        ("/data/order/total_price", "data.order.total_price", false),
        ("/data/order/id", "data.order.id", false),
    ] {
        let mut body = order_body("h");
        *body.pointer_mut(pointer).unwrap() = json!(huge);
        huge_cases.push((body.to_string().into_bytes(), field, echoed.then(|| shown.clone())));
    }
    let nines = "9".repeat(60_000);
    let digits = order_body("h")
        .to_string()
        .replace("\"total_price\":149.99", &format!("\"total_price\":{nines}"));
    huge_cases.push((
        digits.into_bytes(),
        "data.order.total_price",
        Some(format!("{}…", &nines[..64])),
    ));
    for (body, field, shown) in huge_cases {
        assert!(body.len() > 60_000 && body.len() < 64 * 1024, "{}", body.len());
        let answer = sales_tests::http(
            ingest.public,
            "POST",
            "/v1/events",
            &[("Content-Type", "application/json")],
            &body,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 422, "{field}: {}", answer.body);
        let json = answer.json();
        let code = if field == "name" {
            "unknown_event"
        } else {
            "invalid_field"
        };
        assert_eq!(json["error_code"], code, "{}", answer.body);
        assert_eq!(json["field"], field, "{}", answer.body);
        let message = json["message"].as_str().unwrap();
        if let Some(shown) = shown {
            assert!(message.contains(&shown), "{field}: {message}");
        }
        assert!(answer.body.len() < 400, "{field}: {}", answer.body);
    }

    // Valid events last: only they arrive.
    let order = order_body("marker");
    let cart = cart_body();
    for marker in [&order, &cart] {
        let answer = ingest.post(marker).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let events = stored_events(
        &env,
        &[order["event_id"].as_str().unwrap(), cart["event_id"].as_str().unwrap()],
    )
    .await;
    let stored_order = events.iter().find_map(|e| e.order.as_ref()).unwrap();
    assert_eq!(stored_order.id, "marker");
    assert_eq!(stored_order.discount_codes, ["SPRING10"]);
    ingest.stop().await;
}

#[tokio::test]
async fn a_page_url_with_userinfo_is_stored_without_it() {
    let env = TestEnv::new().await;
    let ingest = start(&env).await;

    let mut body = order_body("u-1");
    body["page"]["url"] = json!("https://shopper:s3cr3t-pw@shop.example.com/checkout/thanks?step=done");
    let answer = ingest.post(&body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let event_id = answer.json()["event_id"].as_str().unwrap().to_string();

    let consumer: StreamConsumer = env.consumer(&env.topic(Topic::EventsRaw), "read_committed");
    let records = read_exactly(
        &consumer,
        "sales.events.raw",
        1,
        Duration::from_secs(30),
        Duration::from_secs(1),
    )
    .await;
    let (key, value) = &records[0];
    let value = value.as_deref().unwrap();
    let event: WidgetEvent = schemas::decode(value).unwrap();
    assert_eq!(event.event_id, event_id);
    assert_eq!(event.page.url, "https://shop.example.com/checkout/thanks?step=done");
    // Nowhere in the record, key or value.
    for bytes in [key.as_deref().unwrap(), value] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("s3cr3t-pw") && !text.contains("shopper"), "{text}");
    }
    ingest.stop().await;
}
