//! The API against the real broker: its tables restored from the topics and served only
//! to tokens of their organization, the report query equal to the library's answer, and
//! event streams that resume after a kill of the API without a gap or a repeat.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::api::{EventStream, Next, bearer};
use sales_tests::{TestEnv, await_ready, free_local_addr, http, metric_value, run_stage, stage_args};
use schemas::records::{AgentNotification, CustomerOrderSummary, DailySalesReport, ExchangeRate, WinsCounter};
use schemas::samples::Sample;
use schemas::topics::Topic;

use crate::chaos::StageProcess;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Writes records to the test's topics, as the stages would.
struct Records {
    producer: FutureProducer,
}

impl Records {
    fn new(env: &TestEnv) -> Self {
        Records {
            producer: env.client_config().set("acks", "all").create().unwrap(),
        }
    }

    async fn send(&self, env: &TestEnv, topic: Topic, key: &str, value: Vec<u8>) {
        self.producer
            .send(FutureRecord::to(&env.topic(topic)).key(key).payload(&value), TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("cannot write to {topic:?}: {e}"));
    }

    async fn notification(&self, env: &TestEnv, org: &str, chat: &str, id: &str) {
        let mut n = AgentNotification::sample();
        (n.organization_id, n.chat_id, n.notification_id) = (org.into(), chat.into(), id.into());
        let key = schemas::keys::org_chat(org, chat);
        self.send(env, Topic::Notifications, &key, schemas::encode(&n).unwrap())
            .await;
    }

    async fn wins(&self, env: &TestEnv, org: &str, wins: i64) {
        let mut counter = WinsCounter::sample();
        counter.organization_id = org.into();
        counter.timezone = "UTC".into();
        counter.date = chrono::Utc::now().date_naive().to_string();
        counter.wins = wins;
        self.send(env, Topic::Wins, org, schemas::encode(&counter).unwrap())
            .await;
    }
}

fn report(org: &str, date: &str, revision: i32) -> DailySalesReport {
    let mut r = DailySalesReport::sample();
    (r.organization_id, r.date, r.revision) = (org.into(), date.into(), revision);
    r.cells[0].orders += i64::from(revision);
    r
}

async fn get(addr: std::net::SocketAddr, path: &str, authorization: Option<&str>) -> sales_tests::HttpAnswer {
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
    http(addr, "GET", path, &headers, b"").await.unwrap()
}

#[tokio::test]
async fn tables_are_restored_and_served_to_tokens_of_their_organization_only() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let records = Records::new(&env);
    let mut summary = CustomerOrderSummary::sample();
    (summary.organization_id, summary.customer_id) = ("org_a".into(), "c1".into());
    records
        .send(
            &env,
            Topic::CustomerOrders,
            "org_a:c1",
            schemas::encode(&summary).unwrap(),
        )
        .await;
    records.wins(&env, "org_a", 7).await;
    for (date, revision) in [("2026-11-27", 1), ("2026-11-28", 1), ("2026-11-28", 2)] {
        let key = schemas::keys::org_date("org_a", date);
        let value = schemas::encode(&report("org_a", date, revision)).unwrap();
        records.send(&env, Topic::ReportsDaily, &key, value).await;
    }
    let rate = ExchangeRate::sample();
    let key = schemas::keys::date_currency(&rate.date, &rate.currency);
    records
        .send(&env, Topic::FxRatesDaily, &key, schemas::encode(&rate).unwrap())
        .await;
    for (org, chat, id) in [
        ("org_a", "k1", "n1"),
        ("org_b", "z1", "x1"),
        ("org_a", "k2", "n2"),
        ("org_a", "k1", "n3"),
    ] {
        records.notification(&env, org, chat, id).await;
    }

    let (admin, public) = (free_local_addr(), free_local_addr());
    let shutdown = kafka_runtime::shutdown::Shutdown::new();
    let mut args = stage_args(&env, "api", admin, public);
    args.extend(["--cors-origins".into(), "https://console.example.com".into()]);
    let task = run_stage("api", args, shutdown.clone());
    await_ready(admin, "the api to restore its tables", TIMEOUT).await;
    let a = bearer("org_a");
    let a = Some(a.as_str());

    // The sidebar, and a customer without orders.
    let answer = get(public, "/v1/orgs/org_a/customers/c1/orders", a).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(
        (json["order_count"].as_i64(), json["spend"][0]["amount"].as_str()),
        (Some(3), Some("420.50"))
    );
    assert_eq!(json["recent_orders"][0]["order_number"], "#1042");
    let none = get(public, "/v1/orgs/org_a/customers/nobody/orders", a).await.json();
    assert_eq!(
        (
            none["order_count"].as_i64(),
            none["recent_orders"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    // The wins counter of today.
    let wins = get(public, "/v1/orgs/org_a/wins", a).await.json();
    assert_eq!(wins["wins"], 7, "{wins}");
    assert_eq!(wins["date"], chrono::Utc::now().date_naive().to_string());

    // The report query answers what the library answers for the latest revisions.
    for filter in [
        "",
        "&currency=EUR",
        "&ai=true&timing=after_chat",
        "&team=team-sales&team=none",
    ] {
        let path = format!("/v1/orgs/org_a/reports?from=2026-11-27&to=2026-11-28{filter}");
        let answer = get(public, &path, a).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let query = salesctl_query(&path);
        // As the API holds them: written and read back.
        let latest = [report("org_a", "2026-11-27", 1), report("org_a", "2026-11-28", 2)]
            .map(|r| schemas::decode::<DailySalesReport>(&schemas::encode(&r).unwrap()).unwrap());
        let rates = rules::fx::RateTable::from_records([&rate]);
        let expected = rules::query::answer(&query, &latest, &rates);
        assert_eq!(answer.json(), serde_json::to_value(&expected).unwrap(), "{path}");
    }
    let facets = get(public, "/v1/orgs/org_a/reports/facets?from=2026-11-27&to=2026-11-28", a)
        .await
        .json();
    assert_eq!(facets["teams"], serde_json::json!(["team-sales"]), "{facets}");

    // Notifications: the organization's and one chat's, oldest first, nobody else's.
    let all = get(public, "/v1/orgs/org_a/notifications", a).await.json();
    let ids: Vec<&str> = all["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notification_id"].as_str().unwrap())
        .collect();
    assert_eq!(sorted(ids.iter().map(|i| i.to_string()).collect()), ["n1", "n2", "n3"]);
    let k1 = get(public, "/v1/orgs/org_a/chats/k1/notifications?limit=1", a)
        .await
        .json();
    assert_eq!(k1["notifications"][0]["notification_id"], "n3");
    assert_eq!(k1["notifications"][0]["total"], "149.99", "money is a decimal string");

    // Nobody reads another organization's data, and every refusal says why.
    let expired = expired_token("org_a");
    let forged = format!(
        "Bearer {}",
        accounts::tokens::mint_hs256(
            b"not the API's secret but 32 bytes or more",
            "sales-api",
            "organization_id",
            "org_a",
            "x",
            Duration::from_secs(60),
        )
        .unwrap()
    );
    let unsigned = format!("Bearer {}", unsigned_token("org_a"));
    for (path, authorization, status, code) in [
        ("/v1/orgs/org_b/wins", a, 403, "wrong_organization"),
        ("/v1/orgs/org_b/notifications", a, 403, "wrong_organization"),
        ("/v1/orgs/org_a/wins", None, 401, "missing_token"),
        ("/v1/orgs/org_a/wins", Some(expired.as_str()), 401, "token_expired"),
        ("/v1/orgs/org_a/wins", Some(forged.as_str()), 401, "invalid_token"),
        ("/v1/orgs/org_a/wins", Some(unsigned.as_str()), 401, "invalid_token"),
        (
            "/v1/orgs/org_a/reports?from=2026-11-28&to=2026-11-27",
            a,
            400,
            "invalid_parameter",
        ),
        (
            "/v1/orgs/org_a/reports?from=2026-11-27&to=2026-11-28&currency=eur",
            a,
            400,
            "invalid_parameter",
        ),
        (
            "/v1/orgs/org_a/reports?from=2026-11-27&to=2026-11-28&colour=red",
            a,
            400,
            "unknown_parameter",
        ),
        ("/v1/orgs/org_a/nothing", a, 404, "not_found"),
    ] {
        let answer = get(public, path, authorization).await;
        assert_eq!(
            (answer.status, answer.json()["error_code"].as_str()),
            (status, Some(code)),
            "{path}: {}",
            answer.body
        );
    }
    let (_, metrics) = sales_tests::http_get(admin, "/metrics").await.unwrap();
    assert_eq!(metric_value(&metrics, "api_auth_refusals_total"), 6.0, "{metrics}");

    // CORS for the configured origin only.
    let preflight = |origin: &'static str| {
        let headers = [("Origin", origin), ("Access-Control-Request-Method", "GET")];
        async move {
            http(public, "OPTIONS", "/v1/orgs/org_a/wins", &headers, b"")
                .await
                .unwrap()
        }
    };
    let allowed = preflight("https://console.example.com").await;
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://console.example.com")
    );
    let refused = preflight("https://evil.example.net").await;
    assert_eq!(
        (refused.status, refused.header("access-control-allow-origin")),
        (403, None)
    );

    // The description and the console are public.
    let openapi = get(public, "/openapi.json", None).await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/v1/orgs/{org}/wins/stream"].is_object());
    let console = get(public, "/console/", None).await;
    assert_eq!(console.status, 200);
    assert!(console.header("content-type").unwrap().starts_with("text/html"));

    shutdown.trigger();
    let stopped = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the api stops")
        .unwrap();
    if let Err(e) = stopped {
        panic!("the api stopped with an error: {e:#}");
    }
}

/// The query a report path asks, built as `salesctl report` builds it.
fn salesctl_query(path: &str) -> rules::query::Query {
    let url = url::Url::parse(&format!("http://x{path}")).unwrap();
    let mut query = rules::query::Query {
        organization_id: "org_a".into(),
        ..Default::default()
    };
    for (name, value) in url.query_pairs() {
        match &*name {
            "from" => query.from = value.into_owned(),
            "to" => query.to = value.into_owned(),
            "currency" => query.currency = Some(value.into_owned()),
            "timing" => query.timing = Some(rules::query::parse_timing(&value).unwrap()),
            "team" => query.teams.push(rules::query::TeamFilter::parse(&value)),
            "ai" => query.ai = value == "true",
            other => panic!("{other}"),
        }
    }
    query.teams.sort();
    query
}

fn expired_token(org: &str) -> String {
    // Signed with the right secret: only the expiry is wrong.
    let claims = serde_json::json!({
        "aud": "sales-api",
        "exp": chrono::Utc::now().timestamp() - 3600,
        "organization_id": org,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(sales_tests::api::JWT_SECRET.as_bytes());
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    )
}

/// A token of `org` whose header says `alg: none`, without a signature.
fn unsigned_token(org: &str) -> String {
    // `{"alg":"none","typ":"JWT"}`, base64url.
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let minted = sales_tests::api::token(org);
    let claims = minted.split('.').nth(1).unwrap();
    format!("{header}.{claims}.")
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn in_chat(events: &[sales_tests::api::SseEvent], chat: &str) -> Vec<String> {
    let of_chat: Vec<_> = events.iter().filter(|e| e.json()["chat_id"] == chat).cloned().collect();
    ids(&of_chat)
}

fn ids(events: &[sales_tests::api::SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.json()["notification_id"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[tokio::test]
async fn event_streams_resume_after_a_kill_of_the_api_without_a_gap_or_a_repeat() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let records = Records::new(&env);
    records.notification(&env, "org_a", "k1", "old").await;

    let (admin, public) = (free_local_addr(), free_local_addr());
    let mut args = stage_args(&env, "api", admin, public);
    args.extend(["--stream-buffer".into(), "16".into()]);
    let mut api = StageProcess::spawn("api", args, admin);
    await_ready(admin, "the api", TIMEOUT).await;
    let a = bearer("org_a");
    let auth = [("Authorization", a.as_str())];

    // A stream without Last-Event-ID starts from now.
    let mut org = EventStream::open(public, "/v1/orgs/org_a/notifications/stream", &auth)
        .await
        .unwrap();
    assert_eq!(org.status, 200);
    assert_eq!(org.header("content-type"), Some("text/event-stream"));
    let mut chat = EventStream::open(public, "/v1/orgs/org_a/chats/k2/notifications/stream", &auth)
        .await
        .unwrap();
    let mut wins = EventStream::open(public, "/v1/orgs/org_a/wins/stream", &auth)
        .await
        .unwrap();
    let Next::Event(first_wins) = wins.next(TIMEOUT).await else {
        panic!("the counter comes first")
    };
    assert_eq!(
        (first_wins.event.as_str(), first_wins.json()["wins"].as_i64()),
        ("wins", Some(0))
    );
    for (chat_id, id) in [("k1", "n1"), ("k2", "n2"), ("k1", "n3")] {
        records.notification(&env, "org_a", chat_id, id).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match org.next(TIMEOUT).await {
            Next::Event(e) => seen.push(e),
            other => panic!("after {seen:?}: {other:?}"),
        }
    }
    assert_eq!(ids(&seen), ["n1", "n2", "n3"]);
    let Next::Event(only_k2) = chat.next(TIMEOUT).await else {
        panic!("k2's notification")
    };
    assert_eq!(ids(&[only_k2]), ["n2"]);
    let after_n1 = seen[0].id.clone().unwrap();
    let after_n3 = seen[2].id.clone().unwrap();

    // The API is killed; notifications keep coming while it is down.
    records.wins(&env, "org_a", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop((org, chat));
    let wins_seen = wins.drain(Duration::from_secs(2)).await;
    let last_wins_id = wins_seen.last().and_then(|e| e.id.clone()).expect("the win arrived");
    api.kill_and_restart();
    for (chat_id, id) in [("k2", "n4"), ("k1", "n5"), ("k2", "n6")] {
        records.notification(&env, "org_a", chat_id, id).await;
    }
    await_ready(admin, "the restarted api", TIMEOUT).await;

    // Resumed where each client was: nothing missed, nothing repeated.
    let a_ref = a.as_str();
    let resume = |id: String| async move {
        let headers = [("Authorization", a_ref), ("Last-Event-ID", id.as_str())];
        let mut stream = EventStream::open(public, "/v1/orgs/org_a/notifications/stream", &headers)
            .await
            .unwrap();
        let events = stream.drain(Duration::from_secs(3)).await;
        (events, stream.comments)
    };
    // Each chat's notifications come in order; chats in other partitions interleave as
    // the API read them.
    let (events, keepalives) = resume(after_n3).await;
    assert_eq!(sorted(ids(&events)), ["n4", "n5", "n6"]);
    assert_eq!(in_chat(&events, "k2"), ["n4", "n6"]);
    assert!(keepalives >= 1, "an idle stream sends keep-alives");
    let (events, _) = resume(after_n1).await;
    assert_eq!(sorted(ids(&events)), ["n2", "n3", "n4", "n5", "n6"]);
    assert_eq!(in_chat(&events, "k2"), ["n2", "n4", "n6"]);
    let headers = [("Authorization", a.as_str()), ("Last-Event-ID", last_wins_id.as_str())];
    let mut wins = EventStream::open(public, "/v1/orgs/org_a/wins/stream", &headers)
        .await
        .unwrap();
    assert_eq!(
        wins.next(Duration::from_secs(2)).await,
        Next::TimedOut,
        "an unchanged counter is not sent again"
    );
    records.wins(&env, "org_a", 2).await;
    let Next::Event(changed) = wins.next(TIMEOUT).await else {
        panic!("the change")
    };
    assert_eq!(changed.json()["wins"], 2);

    // A client that stops reading is not buffered for: told why, then disconnected.
    let mut slow = EventStream::open(public, "/v1/orgs/org_a/notifications/stream", &auth)
        .await
        .unwrap();
    let producer = &records;
    let writes = (0..3000).map(|i| {
        let env = &env;
        async move {
            producer
                .notification(env, "org_a", "k9", &format!("flood-{i}-{}", "x".repeat(2000)))
                .await
        }
    });
    futures::future::join_all(writes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = slow.drain(Duration::from_secs(10)).await;
    let last = events.last().expect("some events");
    assert_eq!(
        (last.event.as_str(), last.json()["error_code"].as_str()),
        ("error", Some("slow_consumer")),
        "{} events",
        events.len()
    );
    assert!(events.len() < 3000, "{} events: it was not buffered for", events.len());
    assert_eq!(slow.next(Duration::from_secs(5)).await, Next::Closed);
    let (_, metrics) = sales_tests::http_get(admin, "/metrics").await.unwrap();
    assert_eq!(
        metric_value(
            &metrics,
            r#"api_stream_ends_total{stream="notifications",reason="slow_consumer"}"#
        ),
        1.0,
        "{metrics}"
    );
}
