//! The store's script (`widget/sales-widget.js`, served by ingest at `/v1/widget.js`) in a
//! real headless Chromium, driven over WebDriver: the example storefront of
//! `widget/example/` on a loopback port, the real ingest in-process, and what reaches
//! `sales.events.raw` read back with read_committed.
//!
//! The browser and the storefront are `browser.rs`'s: each test has a browser session of
//! its own with a fresh profile, so its localStorage starts empty.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use fantoccini::Locator;
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use sales_tests::{TestEnv, eventually, free_local_addr};
use schemas::records::{EventName, IdentityMode, OrganizationSettings, WidgetEvent};
use schemas::topics::Topic;
use serde_json::json;

use crate::browser::{Browser, Storefront};
use crate::ingest::{ORG, RunningIngest, settings};

impl Browser {
    /// Reports a cart event the way a page does; `product` tells it apart.
    async fn add_to_cart(&self, product: &str) {
        let script = "LiveChatWidget.call('track_sales_event', { name: 'store_product_added_to_cart', \
            data: { cart_lines: [{ total_price: 12.5, currency: 'EUR', quantity: 1, \
            product: { id: arguments[0], title: 'Marker ' + arguments[0] } }] } })";
        self.execute(script, vec![json!(product)]).await;
    }
}

/// The stub a store puts before anything that calls the widget (README).
const STUB: &str = "<script>window.LiveChatWidget=window.LiveChatWidget||{_q:[],call(){this._q.push(['call',...arguments])},get(){}};</script>";

// ---------------------------------------------------------------------------------------
// one test's world: topics, the organization, ingest, the storefront, a reader

struct Shop {
    env: TestEnv,
    ingest: RunningIngest,
    store: Storefront,
    events: StreamConsumer,
    /// Records read so far: key and event.
    read: Vec<(String, WidgetEvent)>,
}

impl Shop {
    /// The organization connects `127.0.0.1`; the storefront is served on `store_ip`.
    async fn start(organization: OrganizationSettings, store_ip: &str, ingest_args: &[&str]) -> Self {
        let env = TestEnv::new().await;
        env.create_topics().await;
        env.put_organization(&organization).await;
        let ingest = RunningIngest::start_at(
            &env.kafka.bootstrap_servers,
            &env.kafka.topic_prefix,
            free_local_addr(),
            ingest_args,
        )
        .await;
        let store = Storefront::serve(store_ip, ingest.public, &[]).await;
        let events = env.consumer(&env.topic(Topic::EventsRaw), "read_committed");
        Shop {
            env,
            ingest,
            store,
            events,
            read: Vec::new(),
        }
    }

    async fn connected(rate: Option<i32>) -> Self {
        Self::start(settings(&["127.0.0.1"], rate), "127.0.0.1", &[]).await
    }

    /// Reads `sales.events.raw` until `done` holds for the records read, or panics.
    async fn read_until(&mut self, what: &str, done: impl Fn(&[(String, WidgetEvent)]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done(&self.read) {
            let Ok(message) = tokio::time::timeout_at(deadline, self.events.recv()).await else {
                panic!("timed out waiting for {what}; read: {:#?}", self.read);
            };
            // A topic created moments ago may be unknown to the first metadata request.
            let Ok(message) = message else { continue };
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            self.read
                .push((key, schemas::decode(message.payload().unwrap()).unwrap()));
        }
    }

    /// Reads until the cart event of the marker product `product` is in.
    async fn read_through_marker(&mut self, product: &str) {
        self.read_until(&format!("the marker {product}"), |read| {
            read.iter().any(|(_, e)| product_ids(e).contains(&product.to_string()))
        })
        .await;
    }

    fn orders(&self) -> Vec<&WidgetEvent> {
        self.read
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.name == EventName::StoreOrderWasCreated)
            .collect()
    }
}

fn product_ids(event: &WidgetEvent) -> Vec<String> {
    event.cart_lines.iter().map(|l| l.product.id.clone()).collect()
}

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}

// ---------------------------------------------------------------------------------------
// the tests

#[tokio::test]
async fn a_visit_sends_its_cart_changes_and_order_with_identity_page_and_exact_amounts() {
    let mut shop = Shop::connected(None).await;
    let browser = Browser::open().await;
    let product_page = shop.store.url("/index.html");
    browser.goto(&product_page).await;
    browser.widget_loaded().await;

    let quantity = browser.client.find(Locator::Css("#quantity")).await.unwrap();
    quantity.clear().await.unwrap();
    quantity.send_keys("2").await.unwrap();
    // At a shopper's pace: each change acknowledged before the next click. (A page left
    // while its request is on the way cannot see the answer; its next page sends the
    // event again, with the same event_id, which the pipeline drops as a copy.)
    browser.click("#add").await;
    browser.outbox_empty().await;
    browser.click("#remove").await;
    browser.outbox_empty().await;
    browser.click("#checkout").await;
    browser.widget_loaded().await;
    let thanks_page = browser.client.current_url().await.unwrap().to_string();
    assert!(thanks_page.contains("/thanks.html?order="), "{thanks_page}");
    let customer = browser.customer_id().await;
    assert!(is_uuid(&customer), "a random first-party id: {customer}");

    browser.outbox_empty().await;
    // Anything sent goes oldest first: a marker sent now is read after every copy.
    browser.add_to_cart("end-of-visit").await;
    shop.read_through_marker("end-of-visit").await;
    assert_eq!(shop.read.len(), 4, "{:#?}", shop.read);
    shop.read.pop();
    let key = format!("{ORG}:{customer}");
    let names: Vec<_> = shop.read.iter().map(|(_, e)| e.name).collect();
    assert_eq!(
        names,
        [
            EventName::StoreProductAddedToCart,
            EventName::StoreProductRemovedFromCart,
            EventName::StoreOrderWasCreated
        ],
        "{:#?}",
        shop.read
    );
    for (record_key, event) in &shop.read {
        assert_eq!(record_key, &key);
        assert_eq!(event.organization_id, ORG);
        assert_eq!(event.customer_id, customer);
        assert!(is_uuid(&event.event_id), "{}", event.event_id);
        assert!(event.occurred_at.is_some(), "the client's time is attached");
    }
    let ids: HashSet<_> = shop.read.iter().map(|(_, e)| &e.event_id).collect();
    assert_eq!(ids.len(), 3, "one event id per event");

    let (added, removed, order) = (&shop.read[0].1, &shop.read[1].1, &shop.read[2].1);
    for cart_event in [added, removed] {
        assert_eq!(cart_event.page.url, product_page);
        assert_eq!(
            cart_event.page.title.as_deref(),
            Some("Merino Wool Crew Neck · Example Store")
        );
        assert_eq!(cart_event.cart_lines.len(), 1);
        assert_eq!(cart_event.cart_lines[0].product.id, "123456789");
        assert_eq!(cart_event.cart_lines[0].currency, "USD");
    }
    assert_eq!(added.cart_lines[0].quantity, 2);
    assert_eq!(added.cart_lines[0].total_price.to_string(), "299.9800");
    assert_eq!(
        added.cart_lines[0]
            .product
            .price
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("149.9900")
    );
    assert_eq!(removed.cart_lines[0].quantity, 1);
    assert_eq!(removed.cart_lines[0].total_price.to_string(), "149.9900");

    assert_eq!(order.page.url, thanks_page);
    assert_eq!(order.page.title.as_deref(), Some("Thank you · Example Store"));
    assert_eq!(
        order.page.referrer.as_deref(),
        Some(product_page.as_str()),
        "the page the customer came from"
    );
    let placed = order.order.as_ref().unwrap();
    assert!(thanks_page.ends_with(&format!("order={}", placed.id)), "{thanks_page}");
    assert_eq!(placed.currency, "USD");
    assert_eq!(placed.total_price.to_string(), "154.9900");
    assert_eq!(
        placed.subtotal_price.as_ref().map(ToString::to_string).as_deref(),
        Some("149.9900")
    );
    assert_eq!(
        placed.shipping_price.as_ref().map(ToString::to_string).as_deref(),
        Some("5.0000")
    );
    assert_eq!(placed.line_items.len(), 1);
    assert_eq!(placed.line_items[0].quantity, 1);
    assert_eq!(placed.line_items[0].price.to_string(), "149.9900");
    browser.close().await;
    shop.ingest.stop().await;
}

#[tokio::test]
async fn the_thank_you_page_reloaded_three_times_sends_its_order_once() {
    let mut shop = Shop::connected(None).await;
    let mut browser = Browser::open().await;
    browser.goto(&shop.store.url("/index.html")).await;
    browser.widget_loaded().await;
    browser.click("#add").await;
    browser.outbox_empty().await;
    browser.click("#checkout").await;
    browser.widget_loaded().await;
    browser.outbox_empty().await;

    for _ in 0..3 {
        browser.client.refresh().await.unwrap();
        browser.widget_loaded().await;
        browser.outbox_empty().await;
    }
    // The marker is sent after anything the reloads queued (the outbox goes oldest first).
    browser.add_to_cart("after-reloads").await;
    shop.read_through_marker("after-reloads").await;
    assert_eq!(shop.orders().len(), 1, "{:#?}", shop.read);
    assert!(browser.warnings().await.is_empty(), "{:?}", browser.console);
    browser.close().await;
    shop.ingest.stop().await;
}

#[tokio::test]
async fn calls_made_before_the_script_loaded_are_sent_once_it_loads() {
    // Signed identities required: the queued set_customer must have been applied, in
    // order, before the queued event was sent, or ingest would refuse it.
    let keys_dir = std::env::temp_dir().join(format!("widget-it-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&keys_dir).unwrap();
    let keys_file = keys_dir.join("identity-keys");
    let secret = "widget-test-secret-0123456789";
    std::fs::File::create(&keys_file)
        .unwrap()
        .write_all(format!("shop-key={secret}\n").as_bytes())
        .unwrap();
    let organization = OrganizationSettings {
        identity_mode: IdentityMode::Required,
        identity_key_id: Some("shop-key".into()),
        ..settings(&["127.0.0.1"], None)
    };
    let mut shop = Shop::start(
        organization,
        "127.0.0.1",
        &["--identity-keys-file", keys_file.to_str().unwrap()],
    )
    .await;
    let signature = accounts::identity::sign(secret.as_bytes(), ORG, "c-queued");
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Queued</title>{STUB}<script>
        LiveChatWidget.call('set_customer', {{ id: 'c-queued', signature: '{signature}' }});
        LiveChatWidget.call('track_sales_event', {{ name: 'store_product_added_to_cart',
          data: {{ cart_lines: [{{ total_price: 20.5, currency: 'EUR', quantity: 1,
          product: {{ id: 'queued', title: 'Queued' }} }}] }} }});
        </script></head><body>no widget script yet</body></html>"
    );
    let store = Storefront::serve("127.0.0.1", shop.ingest.public, &[("/queued.html", page)]).await;
    let browser = Browser::open().await;
    browser.goto(&store.url("/queued.html")).await;
    let queued = browser
        .execute(
            "return [LiveChatWidget._q.length, document.querySelectorAll('script[src]').length]",
            vec![],
        )
        .await;
    assert_eq!(
        queued,
        json!([2, 0]),
        "both calls wait in the stub's queue, no script loaded"
    );

    // The script tag as the README has it, without data-ingest-url: ingest is the
    // script's own origin.
    browser
        .execute(
            "const s = document.createElement('script'); s.async = true; \
             s.src = arguments[0] + '/v1/widget.js'; s.dataset.organizationId = arguments[1]; \
             document.head.append(s);",
            vec![json!(format!("http://{}", shop.ingest.public)), json!(ORG)],
        )
        .await;
    browser.widget_loaded().await;
    shop.read_through_marker("queued").await;
    let (key, event) = &shop.read[0];
    assert_eq!(key, &format!("{ORG}:c-queued"));
    assert_eq!(event.customer_id, "c-queued");
    assert!(event.identity_verified, "the queued signature was sent");
    assert_eq!(event.cart_lines[0].total_price.to_string(), "20.5000");
    assert_eq!(event.page.url, store.url("/queued.html"));
    assert_eq!(
        browser.execute("return LiveChatWidget._q.length", vec![]).await,
        json!(0)
    );
    assert_eq!(browser.customer_id().await, "c-queued");
    browser.outbox_empty().await;
    assert_eq!(shop.read.len(), 1, "{:#?}", shop.read);
    browser.close().await;
    shop.ingest.stop().await;
    let _ = std::fs::remove_dir_all(&keys_dir);
}

#[tokio::test]
async fn another_widgets_livechatwidget_keeps_its_own_calls() {
    let mut shop = Shop::connected(None).await;
    // Another chat widget's object, with its own queue format (['call', [name, ...]])
    // holding one of its calls and one of ours.
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Other widget</title><script>
        window.__other = [];
        window.LiveChatWidget = {{
          _q: [['call', ['track_sales_event', {{ name: 'store_product_added_to_cart', data: {{ cart_lines: [
                {{ total_price: 3, currency: 'USD', quantity: 1, product: {{ id: 'queued-in-other', title: 'Q' }} }}] }} }}]],
               ['call', ['maximize']]],
          _h: null,
          call(name) {{ window.__other.push(name); }},
          get(name) {{ return 'other:' + name; }},
        }};
        </script>
        <script async src=\"http://{ingest}/v1/widget.js\" data-organization-id=\"{ORG}\" data-ingest-url=\"http://{ingest}\"></script>
        </head><body>another widget</body></html>",
        ingest = shop.ingest.public
    );
    let store = Storefront::serve("127.0.0.1", shop.ingest.public, &[("/other.html", page)]).await;
    let browser = Browser::open().await;
    browser.goto(&store.url("/other.html")).await;
    browser.widget_loaded().await;
    let answers = browser
        .execute(
            "LiveChatWidget.call('maximize'); \
             return [window.__other, LiveChatWidget.get('state'), LiveChatWidget._q, LiveChatWidget.get('customer_id')]",
            vec![],
        )
        .await;
    assert_eq!(answers[0], json!(["maximize"]), "its calls reach it: {answers}");
    assert_eq!(answers[1], json!("other:state"));
    assert_eq!(
        answers[2],
        json!([["call", ["maximize"]]]),
        "its queued call stays for it"
    );
    assert!(is_uuid(answers[3].as_str().unwrap()), "{answers}");

    // A script that replaces the object later: its calls still reach it, and ours work.
    browser
        .execute(
            "window.LiveChatWidget = { call(name) { window.__other.push('replaced:' + name); } }; \
             LiveChatWidget.call('hide');",
            vec![],
        )
        .await;
    browser.add_to_cart("after-replacement").await;
    assert_eq!(
        browser.execute("return window.__other", vec![]).await,
        json!(["maximize", "replaced:hide"])
    );
    shop.read_through_marker("after-replacement").await;
    let products: Vec<_> = shop.read.iter().flat_map(|(_, e)| product_ids(e)).collect();
    assert_eq!(products, ["queued-in-other", "after-replacement"]);
    browser.close().await;
    shop.ingest.stop().await;
}

#[tokio::test]
async fn an_order_without_currency_is_warned_about_and_not_sent() {
    let mut shop = Shop::connected(None).await;
    let mut browser = Browser::open().await;
    browser.goto(&shop.store.url("/index.html")).await;
    browser.widget_loaded().await;
    browser
        .execute(
            "LiveChatWidget.call('track_sales_event', { name: 'store_order_was_created', data: { order: {
               id: 'no-currency', order_number: '#1', total_price: 10,
               line_items: [{ product_id: 'p', title: 'P', quantity: 1, price: 10 }] } } })",
            vec![],
        )
        .await;
    let warning = browser.warning_containing("data.order.currency").await;
    assert!(warning.contains("missing_field"), "{warning}");
    assert!(warning.contains("store_order_was_created"), "{warning}");
    assert_eq!(browser.outbox().await, 0, "nothing waits to be sent");

    // Anything sent goes oldest first: the marker arriving alone proves the order never went.
    browser.add_to_cart("after-invalid").await;
    shop.read_through_marker("after-invalid").await;
    assert!(shop.orders().is_empty(), "{:#?}", shop.read);
    assert_eq!(shop.read.len(), 1, "{:#?}", shop.read);
    let metrics = shop.ingest.metrics().await;
    assert!(
        !metrics.contains("status=\"422\""),
        "ingest saw no refused event: {metrics}"
    );
    browser.close().await;
    shop.ingest.stop().await;
}

#[tokio::test]
async fn ten_fast_calls_over_a_rate_of_one_a_second_all_arrive_once() {
    let mut shop = Shop::connected(Some(1)).await;
    let browser = Browser::open().await;
    browser.goto(&shop.store.url("/index.html")).await;
    browser.widget_loaded().await;
    let products: Vec<String> = (0..10).map(|i| format!("fast-{i}")).collect();
    browser
        .execute(
            "for (const id of arguments[0]) LiveChatWidget.call('track_sales_event', { \
               name: 'store_product_added_to_cart', data: { cart_lines: [{ total_price: 1.1, \
               currency: 'USD', quantity: 1, product: { id, title: id } }] } });",
            vec![json!(products)],
        )
        .await;
    shop.read_until("ten records", |read| read.len() >= 10).await;
    browser.outbox_empty().await;
    // Every event was acknowledged; anything sent twice would be in by now too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    browser.add_to_cart("last").await;
    shop.read_through_marker("last").await;

    let sent: Vec<_> = shop
        .read
        .iter()
        .flat_map(|(_, e)| product_ids(e))
        .filter(|id| id != "last")
        .collect();
    assert_eq!(sent, products, "all ten, once each, in the order called");
    let event_ids: HashSet<_> = shop.read.iter().map(|(_, e)| &e.event_id).collect();
    assert_eq!(event_ids.len(), shop.read.len());
    let metrics = shop.ingest.metrics().await;
    assert!(
        metrics.contains("status=\"429\",error_code=\"rate_limited\""),
        "the rate limit was met and waited out: {metrics}"
    );
    browser.close().await;
    shop.ingest.stop().await;
}

#[tokio::test]
async fn an_order_fired_while_ingest_is_down_arrives_once_on_the_next_visit() {
    let mut shop = Shop::connected(None).await;
    let public = shop.ingest.public;
    let browser = Browser::open().await;
    browser.goto(&shop.store.url("/index.html")).await;
    browser.widget_loaded().await;
    browser.click("#add").await;
    shop.read_until("the cart event", |read| read.len() == 1).await;
    browser.outbox_empty().await;

    shop.ingest.stop().await;
    // The thanks page loads the widget from the browser's cache (max-age) and fires
    // the order, which cannot be sent.
    browser.click("#checkout").await;
    browser.widget_loaded().await;
    eventually("a failed try of the order", Duration::from_secs(15), || async {
        let script = "const k = Object.keys(localStorage).find(k => k.startsWith('lcw_sales_e:')); \
                      const e = k && JSON.parse(localStorage.getItem(k)); \
                      return !!e && e.body.name === 'store_order_was_created' && e.next < Date.now() + 10000";
        (browser.execute(script, vec![]).await == json!(true)).then_some(())
    })
    .await;
    // The page is closed (a new tab takes over the browser).
    let thanks = browser.client.window().await.unwrap();
    let tab = browser.client.new_window(true).await.unwrap();
    browser.client.close_window().await.unwrap();
    browser.client.switch_to_window(tab.handle).await.unwrap();
    assert_eq!(browser.client.windows().await.unwrap().len(), 1);
    assert_ne!(browser.client.window().await.unwrap(), thanks);

    shop.ingest = RunningIngest::start_at(
        &shop.env.kafka.bootstrap_servers,
        &shop.env.kafka.topic_prefix,
        public,
        &[],
    )
    .await;
    browser.goto(&shop.store.url("/index.html")).await;
    browser.widget_loaded().await;
    browser.outbox_empty().await;
    browser.add_to_cart("next-visit").await;
    shop.read_through_marker("next-visit").await;
    assert_eq!(shop.orders().len(), 1, "{:#?}", shop.read);
    assert_eq!(shop.read.len(), 3, "{:#?}", shop.read);
    browser.close().await;
    shop.ingest.stop().await;
}

#[tokio::test]
async fn a_page_on_a_website_never_connected_is_told_so_in_the_console() {
    // The organization connects 127.0.0.1; the store is served on 127.0.0.2.
    let shop = Shop::start(settings(&["127.0.0.1"], None), "127.0.0.2", &[]).await;
    assert!(shop.store.origin.starts_with("http://127.0.0.2:"));
    let mut browser = Browser::open().await;
    browser.goto(&shop.store.url("/index.html")).await;
    browser.widget_loaded().await;
    browser.click("#add").await;
    let warning = browser.warning_containing("website_not_connected").await;
    assert!(warning.contains("127.0.0.2"), "{warning}");
    assert!(warning.contains("page.url"), "{warning}");
    browser.outbox_empty().await;
    let metrics = shop.ingest.metrics().await;
    assert!(
        metrics.contains(&format!(
            "ingest_website_not_connected_total{{organization=\"{ORG}\"}} 1"
        )),
        "{metrics}"
    );
    browser.close().await;
    shop.ingest.stop().await;
}
