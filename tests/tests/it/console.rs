//! The agent console (`/console/` on `api`) in a real headless Chromium, against the real
//! pipeline in-process and the real broker: a customer of the example store in a chat
//! with an AI agent places an order in a browser of their own, and the agent's console
//! shows it live in the chat's feed (items, placeholder thumbnail), counts the win, and
//! shows the customer's new order, count and spend in the sidebar; a simulated week of
//! the same organization shows on the reports page with exactly the figures of
//! `salesctl report --format json` for the same filters. Each view is saved as a
//! screenshot under `target/screenshots/` (`console-*.png`).
//!
//! The browser and the storefront are `browser.rs`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, Weekday};
use fantoccini::Locator;
use kafka_runtime::shutdown::Shutdown;
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use sales_tests::reference::expected_reports;
use sales_tests::{TestEnv, await_ready, free_local_addr, run_stage, stage_args, with_flag};
use salesctl::chat::{AgentArg, ChatArgs, ChatCommand, OpenArgs};
use salesctl::fx::{FxCommand, ImportArgs};
use salesctl::report::ReportArgs;
use schemas::records::AgentNotification;
use schemas::topics::Topic;
use schemas::values::Timestamp;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::browser::{Browser, Storefront};
use crate::pipeline::await_reports;

/// The simulator's shop in Europe/Warsaw (EUR and PLN), which also runs the example
/// store on 127.0.0.1.
const ORG: &str = "org_nordic";
const CUSTOMER: &str = "visitor-1";
const CHAT: &str = "store-chat-1";
const SEED: u64 = 42;
const DAYS: u32 = 7;
const VISITS: u32 = 8;
/// The reporter's grace after a day's end (its default).
const GRACE_MICROS: i64 = 3_600_000_000;
const TIMEOUT: Duration = Duration::from_secs(90);
/// What the page is given to show something the pipeline has already written.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// From the order's receipt by ingest to its card on the agent's screen.
const LIVE_WITHIN_MS: i64 = 2000;
/// The agent's window: wide enough for the chat list, the feed and the sidebar side by side.
const WINDOW: (u32, u32) = (1280, 1000);

/// How long the stream stages wait before a quiet source partition takes the wall clock
/// (`--idle-advance`), and how far behind it (`--allowed-lateness`). An order reaches its
/// chat once the enricher's dedupe has seen the watermark of `sales.orders.by-id` pass it
/// (a copy from another device may still come), and that watermark passes an order
/// placed at T once its partition has been quiet for the idle advance and the wall
/// clock minus the allowed lateness is past T: about 2.5 s with the defaults (1 s and
/// 2 s), under a second with these.
const ORDER_HOLD: [(&str, &str); 2] = [("--idle-advance", "500ms"), ("--allowed-lateness", "500ms")];

/// Every stage of the pipeline and the API in this process, on the test's topics, the
/// stream stages with [`ORDER_HOLD`]; stopped when dropped.
struct Stages {
    ingest: SocketAddr,
    api: SocketAddr,
    shutdown: Shutdown,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl Stages {
    async fn start(env: &TestEnv) -> Self {
        let (ingest, api) = (free_local_addr(), free_local_addr());
        let shutdown = Shutdown::new();
        let mut admins = Vec::new();
        let mut tasks = Vec::new();
        for stage in ["ingest", "enricher", "attributor", "reporter", "api"] {
            let admin = free_local_addr();
            let public = if stage == "api" { api } else { ingest };
            let mut argv = stage_args(env, stage, admin, public);
            if matches!(stage, "enricher" | "attributor" | "reporter") {
                for (flag, value) in ORDER_HOLD {
                    argv = with_flag(argv, flag, value);
                }
            }
            tasks.push((stage, run_stage(stage, argv, shutdown.clone())));
            admins.push((stage, admin));
        }
        for (stage, admin) in admins {
            await_ready(admin, &format!("{stage} to be ready"), TIMEOUT).await;
        }
        Stages {
            ingest,
            api,
            shutdown,
            tasks,
        }
    }

    async fn stop(mut self) {
        self.shutdown.trigger();
        for (stage, task) in std::mem::take(&mut self.tasks) {
            let stopped = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .unwrap_or_else(|_| panic!("{stage} stops within 30 s"))
                .unwrap();
            if let Err(e) = stopped {
                panic!("{stage} stopped with an error: {e:#}");
            }
        }
    }
}

impl Drop for Stages {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Where the screenshots go: `target/screenshots/` (under `CARGO_TARGET_DIR` when set).
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        )
        .join("screenshots")
}

/// Exchange rates of the weekdays from `from` to `to` (per 1 EUR, the ECB's layout: none
/// at weekends, which use Friday's), imported as `salesctl fx import` does.
async fn import_rates(env: &TestEnv, from: NaiveDate, to: NaiveDate) {
    let mut csv = String::from("Date,PLN,USD,JPY,\n");
    for (i, day) in from.iter_days().take_while(|d| *d <= to).enumerate() {
        if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            continue;
        }
        csv.push_str(&format!(
            "{day},4.{:04},1.0{:03},16{}.25,\n",
            2310 + 37 * i,
            412 + 9 * i,
            i % 10
        ));
    }
    let dir = std::env::temp_dir().join(format!("console-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("eurofxref-hist.csv");
    std::fs::write(&file, csv).unwrap();
    let import = FxCommand::Import(ImportArgs {
        file,
        base: "EUR".into(),
        source: None,
    });
    salesctl::fx::run(&env.kafka, import, &mut Vec::new())
        .await
        .unwrap_or_else(|e| panic!("salesctl fx import: {e:#}"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// When the notification `id` was written to `inbox.notifications`: its record's
/// timestamp, in milliseconds since the epoch.
async fn written_at(consumer: &StreamConsumer, id: &str) -> i64 {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            panic!("the notification {id} is not in inbox.notifications after {TIMEOUT:?}");
        };
        // A topic created moments ago may be unknown to the first metadata request.
        let Ok(message) = next else { continue };
        let decoded = message.payload().map(schemas::decode::<AgentNotification>);
        if let Some(Ok(notification)) = decoded
            && notification.notification_id == id
        {
            return message.timestamp().to_millis().expect("records carry their time");
        }
    }
}

/// Runs `script` in the page until `ok` holds for what it returns, and returns that; or
/// panics naming what was expected and what the page showed last.
async fn page_shows(
    browser: &Browser,
    expected: &str,
    timeout: Duration,
    script: &str,
    args: Vec<Value>,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let shown = browser.execute(script, args.clone()).await;
        if ok(&shown) {
            return shown;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("expected {expected} within {timeout:?}; the page showed: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the first element `arguments[0]` selects, whitespace collapsed, or null.
const TEXT: &str = "const e = document.querySelector(arguments[0]); \
    return e ? e.textContent.replace(/\\s+/g, ' ').trim() : null;";

/// Waits until the element `selector` selects reads `want`.
async fn shows_text(browser: &Browser, what: &str, selector: &str, want: &str) {
    page_shows(
        browser,
        &format!("{what} ({selector}) to read {want:?}"),
        PAGE_TIMEOUT,
        TEXT,
        vec![json!(selector)],
        |shown| shown.as_str() == Some(want),
    )
    .await;
}

async fn text(browser: &Browser, selector: &str) -> Option<String> {
    browser
        .execute(TEXT, vec![json!(selector)])
        .await
        .as_str()
        .map(str::to_string)
}

async fn wins_shown(browser: &Browser) -> i64 {
    let shown = text(browser, "[data-testid=wins-count]").await;
    shown
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("expected a number in wins-count; the page showed {shown:?}"))
}

/// Fails when the page shows a value the script did not have as text: `null`,
/// `undefined`, `NaN`, `[object Object]`.
async fn no_stray_values(browser: &Browser, view: &str) {
    let stray = browser
        .execute(
            r#"
            const found = [];
            const walker = document.createTreeWalker(document.getElementById('app'), NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
              if (/\b(null|undefined|NaN)\b|\[object /.test(node.data)) {
                found.push(node.parentElement.outerHTML.slice(0, 300));
              }
            }
            return found;
            "#,
            vec![],
        )
        .await;
    assert_eq!(
        stray,
        json!([]),
        "expected no null, undefined or NaN written on the {view}; the page showed these elements"
    );
}

/// An amount as a JSON answer writes it (a decimal string, or a number).
fn figure(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A revenue cell of the Days table as the page must write it for a day of `answer`.
fn day_revenue(day: &Value) -> String {
    if let Some(c) = day["converted"].as_object() {
        let mut cell = format!("{} {}", figure(&c["revenue"]), figure(&c["currency"]));
        let missing: Vec<String> = c["not_converted"].as_array().unwrap().iter().map(figure).collect();
        if !missing.is_empty() {
            cell.push_str(&format!(" + not converted: {}", missing.join(", ")));
        }
        return cell;
    }
    let revenue: Vec<String> = day["revenue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", figure(&r["revenue"]), figure(&r["currency"])))
        .collect();
    if revenue.is_empty() {
        "0".into()
    } else {
        revenue.join(" + ")
    }
}

/// The figures of the reports page that `answer` (the JSON of `salesctl report`) must
/// give: total orders, revenue by currency, the converted total, and each day's row.
fn expected_figures(answer: &Value) -> Value {
    let totals = &answer["totals"];
    json!({
        "orders": figure(&totals["orders"]),
        "revenue": totals["revenue"].as_array().unwrap().iter()
            .map(|r| json!([figure(&r["currency"]), figure(&r["revenue"])]))
            .collect::<Vec<_>>(),
        "converted": totals["converted"].as_object().map(|c| figure(&c["revenue"])),
        "days": answer["days"].as_array().unwrap().iter()
            .map(|d| json!([figure(&d["date"]), figure(&d["orders"]), day_revenue(d)]))
            .collect::<Vec<_>>(),
    })
}

/// The figures the reports page shows, in the shape of [`expected_figures`], and its
/// status and chart.
const REPORT_FIGURES: &str = r#"
    const t = (e) => (e ? e.textContent.replace(/\s+/g, ' ').trim() : null);
    const all = (s) => [...document.querySelectorAll(s)];
    const status = document.querySelector('[data-testid=report-status]');
    return {
      status: status.dataset.state,
      status_text: t(status),
      title: t(document.querySelector('[data-testid=report-title]')),
      bars: all('[data-testid=report-chart-bar]').length,
      figures: {
        orders: t(document.querySelector('[data-testid=report-total-orders]')),
        revenue: all('[data-testid=report-revenue]').map((e) => [e.dataset.currency, t(e)]),
        converted: t(document.querySelector('[data-testid=report-converted]')),
        days: all('[data-testid=report-day]').map((r) => [r.dataset.date,
          t(r.querySelector('[data-testid=report-day-orders]')),
          t(r.querySelector('[data-testid=report-day-revenue]'))]),
      },
    };
"#;

/// One filter combination of the reports page and of `salesctl report`.
struct Filter {
    name: &'static str,
    ai: bool,
    currency: Option<&'static str>,
    timing: Option<&'static str>,
    teams: &'static [&'static str],
}

/// Sets the report form to `filter` over `from..=to`, applies it, and waits until the
/// page shows exactly what `salesctl report --by-day --format json` prints for it.
async fn check_report(env: &TestEnv, console: &Browser, filter: &Filter, from: NaiveDate, to: NaiveDate) {
    let args = ReportArgs {
        org: ORG.into(),
        from,
        to,
        json: false,
        currency: filter.currency.map(str::to_string),
        timing: filter.timing.map(str::to_string),
        team: filter.teams.iter().map(|t| t.to_string()).collect(),
        ai: filter.ai,
        by_day: true,
        format: Some("json".into()),
    };
    let mut printed = Vec::new();
    salesctl::report::run(&env.kafka, &args, &mut printed)
        .await
        .unwrap_or_else(|e| panic!("salesctl report ({}): {e:#}", filter.name));
    let answer: Value = serde_json::from_slice(&printed).unwrap();
    let want = expected_figures(&answer);
    assert!(
        want["days"].as_array().is_some_and(|d| !d.is_empty()),
        "{}: the simulated week has orders in this filter: {answer}",
        filter.name
    );

    // The team list offers the teams of the days shown (their facets, read at start).
    page_shows(
        console,
        &format!("the team filter to offer {:?}", filter.teams),
        PAGE_TIMEOUT,
        "return [...document.getElementById('report-team').options].map((o) => o.value);",
        vec![],
        |offered| {
            filter
                .teams
                .iter()
                .all(|t| offered.as_array().is_some_and(|o| o.contains(&json!(t))))
        },
    )
    .await;
    // The form as a person fills it: dates, currency, timing, teams, the AI switch.
    console
        .execute(
            r#"
            const [from, to, currency, timing, teams, ai] = arguments;
            const set = (id, value) => {
              const e = document.getElementById(id);
              e.value = value;
              e.dispatchEvent(new Event('input', { bubbles: true }));
              e.dispatchEvent(new Event('change', { bubbles: true }));
            };
            set('report-from', from);
            set('report-to', to);
            set('report-currency', currency);
            set('report-timing', timing);
            for (const option of document.getElementById('report-team').options) option.selected = teams.includes(option.value);
            if (document.getElementById('report-ai').checked !== ai) document.getElementById('report-ai').click();
            // Marks the answer on screen now as the one before this filter.
            document.getElementById('report-status').dataset.state = 'stale';
            "#,
            vec![
                json!(from.to_string()),
                json!(to.to_string()),
                json!(filter.currency.unwrap_or_default()),
                json!(filter.timing.unwrap_or_default()),
                json!(filter.teams),
                json!(filter.ai),
            ],
        )
        .await;
    let selected = console
        .execute(
            "return [...document.getElementById('report-team').selectedOptions].map((o) => o.value)",
            vec![],
        )
        .await;
    assert_eq!(selected, json!(filter.teams), "{}: the teams selected", filter.name);
    console.click("[data-testid=report-apply]").await;
    let days = (to - from).num_days() + 1;
    let shown = page_shows(
        console,
        &format!(
            "the reports page ({}, {from} to {to}) to be ready with salesctl's figures {want} and a chart of {days} bars",
            filter.name
        ),
        PAGE_TIMEOUT,
        REPORT_FIGURES,
        vec![],
        |shown| shown["status"] == "ready" && shown["figures"] == want && shown["bars"] == days,
    )
    .await;
    let title = shown["title"].as_str().unwrap_or_default();
    let section = if filter.ai { "AI Agent Sales" } else { "All Sales" };
    assert!(
        title.starts_with(section) && title.contains(&format!("{from} to {to}")),
        "{}: expected a title naming {section} and the days; the page showed {title:?}",
        filter.name
    );
}

#[tokio::test]
async fn a_live_order_reaches_the_console_and_a_simulated_week_shows_as_salesctl_reports_it() {
    let started = std::time::Instant::now();
    let env = TestEnv::new().await;
    env.create_topics().await;
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = simulator::plan(SEED, DAYS, VISITS, now);
    let mut organizations = plan.organizations.clone();
    organizations
        .iter_mut()
        .find(|o| o.organization_id == ORG)
        .expect("the simulator's shop")
        .websites
        .push("127.0.0.1".into());
    let producer = simulator::write::producer(&env.kafka).unwrap();
    simulator::write::organizations(&env.kafka, &producer, &organizations)
        .await
        .unwrap();
    let expected = expected_reports(&plan, now, GRACE_MICROS);
    let prefix = format!("{ORG}:");
    let week: Vec<NaiveDate> = expected
        .keys()
        .filter_map(|key| key.strip_prefix(&prefix)?.parse().ok())
        .collect();
    let (first, last) = (*week.first().unwrap(), *week.last().unwrap());
    assert!(week.len() >= 5, "a simulated week closes most of its days: {week:?}");
    import_rates(&env, first - chrono::Days::new(4), last + chrono::Days::new(2)).await;

    // The week is in the topics before the stages start, as a backlog: written once the
    // stages' quiet sources had taken the wall clock, every record of it would be late
    // (processed at once, in whatever order it arrives), and an order that reached the
    // attributor before its chat event would lose its chat.
    simulator::write::records(&env.kafka, &producer, &plan.past)
        .await
        .unwrap();
    let stages = Stages::start(&env).await;
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    await_reports(&reports, &expected, TIMEOUT).await;
    eprintln!("console: the week is reported after {:?}", started.elapsed());

    // The chat platform opens a chat of the store's visitor with an AI agent.
    salesctl::chat::run(
        &env.kafka,
        ChatCommand::Open(OpenArgs {
            chat: ChatArgs {
                org: ORG.into(),
                customer: CUSTOMER.into(),
                chat: CHAT.into(),
            },
            agent: AgentArg::Ai,
            agent_id: "agent-ai-1".into(),
            team: Some("team-sales".into()),
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("salesctl chat open: {e:#}"));

    // The agent's console.
    let mut console = Browser::open_sized(WINDOW.0, WINDOW.1).await;
    let token = sales_tests::api::token(ORG);
    console
        .goto(&format!("http://{}/console/#org={ORG}&token={token}", stages.api))
        .await;
    page_shows(
        &console,
        "the console's streams to be live (connection-status data-state=live)",
        PAGE_TIMEOUT,
        "const e = document.querySelector('[data-testid=connection-status]'); \
         return [e.dataset.state, e.textContent, location.hash];",
        vec![],
        |shown| shown[0] == "live",
    )
    .await;
    let address = console.client.current_url().await.unwrap().to_string();
    assert!(
        !address.contains(&token),
        "expected the token gone from the address bar once read; it shows {address}"
    );
    shows_text(&console, "the organization", "[data-testid=org-id]", ORG).await;

    // The customer, in a browser of their own, on the store's product page.
    let store = Storefront::serve_with(
        "127.0.0.1",
        &json!({
            "ingestUrl": format!("http://{}", stages.ingest),
            "organizationId": ORG,
            "customerId": CUSTOMER,
        }),
        &[],
    )
    .await;
    let customer = Browser::open().await;
    customer.goto(&store.url("/index.html")).await;
    customer.widget_loaded().await;
    assert_eq!(customer.customer_id().await, CUSTOMER);
    customer.click("#add").await;
    customer.outbox_empty().await;

    // The cart change brings the chat to the list; the agent opens it.
    let row = format!("[data-testid=chat-row][data-chat-id=\"{CHAT}\"]");
    page_shows(
        &console,
        &format!("the chat {CHAT} in the chat list after its customer's cart change"),
        TIMEOUT,
        "return [...document.querySelectorAll('[data-testid=chat-row]')].map((r) => r.textContent.replace(/\\s+/g, ' ').trim());",
        vec![],
        |rows| rows.as_array().is_some_and(|r| r.iter().any(|r| r.as_str().is_some_and(|r| r.starts_with(CHAT)))),
    )
    .await;
    console.click(&row).await;
    page_shows(
        &console,
        "the open chat's feed with its cart notification",
        PAGE_TIMEOUT,
        "return [...document.querySelectorAll('#feed [data-testid=notification]')].map((n) => n.dataset.kind);",
        vec![],
        |kinds| kinds == &json!(["product_added_to_cart"]),
    )
    .await;
    shows_text(
        &console,
        "the sidebar's customer",
        "[data-testid=sidebar-customer]",
        CUSTOMER,
    )
    .await;
    shows_text(
        &console,
        "the sidebar's order count",
        "[data-testid=sidebar-order-count]",
        "0",
    )
    .await;

    // The counter shown is the API's, with every win of the week in (unchanged for a
    // second): the order must add one.
    let wins_path = format!("/v1/orgs/{ORG}/wins");
    let authorization = sales_tests::api::bearer(ORG);
    let api_wins = || async {
        let answer = sales_tests::http(stages.api, "GET", &wins_path, &[("Authorization", &authorization)], b"")
            .await
            .unwrap();
        answer.json()["wins"]
            .as_i64()
            .unwrap_or_else(|| panic!("GET {wins_path}: {}", answer.body))
    };
    let mut api_wins_now = api_wins().await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = api_wins().await;
        if again == api_wins_now {
            break;
        }
        api_wins_now = again;
    }
    let api_wins = api_wins_now;
    shows_text(
        &console,
        "the wins counter",
        "[data-testid=wins-count]",
        &api_wins.to_string(),
    )
    .await;
    let wins_before = wins_shown(&console).await;

    // The arrival of the order's card, timed by the page itself.
    console
        .execute(
            r#"
            window.__orderCard = null;
            new MutationObserver((_, observer) => {
              const card = document.querySelector('#feed [data-testid=notification][data-kind=order_created]');
              if (!card) return;
              window.__orderCard = {
                id: card.dataset.notificationId,
                shown_at: Date.now(),
                at: Date.parse(card.querySelector('time').getAttribute('datetime')),
              };
              observer.disconnect();
            }).observe(document.getElementById('feed'), { childList: true, subtree: true });
            "#,
            vec![],
        )
        .await;
    let notifications = env.consumer(&env.topic(Topic::Notifications), "read_committed");
    customer.click("#checkout").await;
    customer.widget_loaded().await;
    customer.outbox_empty().await;
    let thanks = customer.client.current_url().await.unwrap();
    let order_id = thanks
        .query_pairs()
        .find(|(name, _)| name == "order")
        .map(|(_, id)| id.into_owned())
        .unwrap_or_else(|| panic!("the thanks page names its order: {thanks}"));

    let card = page_shows(
        &console,
        "the order's card in the open chat's feed",
        TIMEOUT,
        "return window.__orderCard;",
        vec![],
        Value::is_object,
    )
    .await;
    let (received, shown_at) = (card["at"].as_i64().unwrap(), card["shown_at"].as_i64().unwrap());
    let written = written_at(&notifications, card["id"].as_str().unwrap()).await;
    let latency = format!(
        "{} ms from ingest's receipt to the screen: {} ms to inbox.notifications, {} ms from there to the screen",
        shown_at - received,
        written - received,
        shown_at - written
    );
    assert!(
        shown_at - received <= LIVE_WITHIN_MS,
        "expected the order's card on screen within {LIVE_WITHIN_MS} ms of ingest receiving the order; it took {latency}"
    );
    eprintln!("console: the order's card took {latency}");
    let number = format!("#{}", &order_id[order_id.len().saturating_sub(6)..]);
    let want = json!({
        "first": true,
        "number": number,
        "total": "154.99",
        "items": [{
            "product": "123456789",
            "title": "Merino Wool Crew Neck",
            "quantity": "× 1",
            "total": "149.99 USD",
            "placeholder": "true",
            "loaded": true,
        }],
    });
    // The card's thumbnail is an image of its own: it may finish loading after the card shows.
    page_shows(
        &console,
        &format!("the order's card (newest first) with its item and the loaded placeholder thumbnail: {want}"),
        PAGE_TIMEOUT,
        r#"
            const t = (e) => (e ? e.textContent.replace(/\s+/g, ' ').trim() : null);
            const card = document.querySelector('#feed [data-testid=notification][data-kind=order_created]');
            return {
              first: document.querySelector('#feed [data-testid=notification]') === card,
              number: t(card.querySelector('[data-testid=order-number]')),
              total: t(card.querySelector('[data-testid=order-total]')),
              items: [...card.querySelectorAll('[data-testid=notification-item]')].map((item) => {
                const img = item.querySelector('[data-testid=item-thumbnail]');
                return {
                  product: item.dataset.productId,
                  title: t(item.querySelector('.item-title')),
                  quantity: t(item.querySelector('.item-qty')),
                  total: t(item.querySelector('.item-total')),
                  placeholder: img.dataset.placeholder || null,
                  loaded: img.complete && img.naturalWidth > 0,
                };
              }),
            };
            "#,
        vec![],
        |shown| shown == &want,
    )
    .await;

    // The win: counted by the reporter on the organization's day, pushed to the counter.
    shows_text(
        &console,
        "the wins counter, one up",
        "[data-testid=wins-count]",
        &(wins_before + 1).to_string(),
    )
    .await;

    // The sidebar: the order, the new count and spend.
    let order_row = format!("[data-testid=sidebar-order][data-order-id=\"{order_id}\"]");
    page_shows(
        &console,
        &format!("the order {order_id} in the sidebar, with 1 order and 154.99 USD spent"),
        PAGE_TIMEOUT,
        r#"
        const t = (e) => (e ? e.textContent.replace(/\s+/g, ' ').trim() : null);
        return {
          count: t(document.querySelector('[data-testid=sidebar-order-count]')),
          during: t(document.querySelector('[data-testid=sidebar-during]')),
          spend: [...document.querySelectorAll('[data-testid=sidebar-spend] li')].map((li) => [li.dataset.currency || null, t(li)]),
          order: [...document.querySelectorAll(arguments[0])].map((row) => ({
            number: t(row.querySelector('.order-number')),
            total: t(row.querySelector('.order-total')),
            meta: t(row.querySelector('.order-meta')),
          })),
        };
        "#,
        vec![json!(order_row)],
        |shown| {
            shown["count"] == "1"
                && shown["during"] == "1"
                && shown["spend"] == json!([["USD", "154.99 USD"]])
                && shown["order"].as_array().is_some_and(|rows| {
                    rows.len() == 1
                        && rows[0]["number"] == number.as_str()
                        && rows[0]["total"] == "154.99 USD"
                        && rows[0]["meta"]
                            .as_str()
                            .is_some_and(|m| m.contains(&format!("chat {CHAT}")) && m.contains("during chat"))
                })
        },
    )
    .await;
    let dir = screenshot_dir();
    // A new card is highlighted once; it must not replay when the feed is shown again.
    page_shows(
        &console,
        "the new cards' highlight to end (no .is-new left in the feed)",
        PAGE_TIMEOUT,
        "return [...document.querySelectorAll('#feed .is-new')].map((c) => c.dataset.kind);",
        vec![],
        |left| left == &json!([]),
    )
    .await;
    no_stray_values(&console, "chats view").await;
    console.screenshot(&dir.join("console-chats.png")).await;
    // The sidebar alone, in a window about as tall as its content.
    console.client.set_window_size(WINDOW.0, 620).await.unwrap();
    let sidebar = console
        .client
        .find(Locator::Css("[data-testid=sidebar]"))
        .await
        .unwrap();
    page_shows(
        &console,
        "the sidebar to fit the smaller window",
        PAGE_TIMEOUT,
        "return document.querySelector('[data-testid=sidebar]').getBoundingClientRect().bottom <= innerHeight;",
        vec![],
        |fits| fits == &json!(true),
    )
    .await;
    let png = sidebar
        .screenshot()
        .await
        .unwrap_or_else(|e| panic!("cannot take the sidebar's screenshot: {e}"));
    std::fs::write(dir.join("console-sidebar.png"), png).unwrap();
    console.client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
    customer.close().await;

    // The reports page: the simulated week, as salesctl reports it.
    console.click("[data-testid=tab-reports]").await;
    page_shows(
        &console,
        "the reports page's first answer (report-status ready)",
        PAGE_TIMEOUT,
        "return [document.querySelector('[data-testid=report-status]').dataset.state, \
         document.querySelector('[data-testid=report-status]').textContent];",
        vec![],
        |shown| shown[0] == "ready",
    )
    .await;
    let filters = [
        Filter {
            name: "All Sales by day",
            ai: false,
            currency: None,
            timing: None,
            teams: &[],
        },
        Filter {
            name: "AI Agent Sales in EUR",
            ai: true,
            currency: Some("EUR"),
            timing: None,
            teams: &[],
        },
        Filter {
            name: "All Sales during chat of team-sales, in PLN",
            ai: false,
            currency: Some("PLN"),
            timing: Some("during_chat"),
            teams: &["team-sales"],
        },
    ];
    for filter in &filters {
        check_report(&env, &console, filter, first, last).await;
        no_stray_values(&console, &format!("reports page ({})", filter.name)).await;
    }
    check_report(&env, &console, &filters[1], first, last).await;
    console.screenshot(&dir.join("console-reports.png")).await;

    let errors: Vec<(String, String)> = console
        .console_messages()
        .await
        .iter()
        .filter(|(level, _)| level == "SEVERE")
        .cloned()
        .collect();
    assert!(errors.is_empty(), "the console's page logged errors: {errors:?}");
    console.close().await;
    stages.stop().await;
    eprintln!("console: done after {:?}", started.elapsed());
}
