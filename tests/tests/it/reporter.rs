//! The reporter through the real broker: attributed orders in, daily reports and wins
//! counters out, a late order revising a published day, and a replay from scratch
//! (consumer group and changelogs deleted) giving the same reports.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use clap::Parser;
use kafka_runtime::shutdown::Shutdown;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sales_tests::{KeyValue, TestEnv, await_ready, eventually, free_local_addr, read_exactly};
use schemas::records::{
    Agent, AgentKind, AttributedOrder, Attribution, DailySalesReport, HandledBy, IdentityMode, OrganizationSettings,
    SaleTiming, WinsCounter,
};
use schemas::topics::Topic;
use schemas::values::{Money, Timestamp};

const ORG: &str = "org_rp";
const TIMEOUT: Duration = Duration::from_secs(60);

fn warsaw(text: &str) -> Timestamp {
    let tz: chrono_tz::Tz = "Europe/Warsaw".parse().unwrap();
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    Timestamp::from_datetime(
        tz.from_local_datetime(&local)
            .earliest()
            .unwrap()
            .with_timezone(&chrono::Utc),
    )
}

fn order(id: &str, at: &str, total: &str, currency: &str, ai: Option<bool>) -> AttributedOrder {
    let placed_at = warsaw(at);
    AttributedOrder {
        organization_id: ORG.into(),
        customer_id: format!("c-{id}"),
        order_id: id.into(),
        order_number: format!("#{id}"),
        currency: currency.into(),
        total: Money::new(total.parse().unwrap()).unwrap(),
        placed_at,
        attribution: ai.map(|ai| Attribution {
            chat_id: format!("chat-{id}"),
            team_id: Some("team-a".into()),
            chat_started_at: Timestamp(placed_at.micros() - 60_000_000),
            chat_ended_at: None,
            agents: vec![Agent {
                id: "a1".into(),
                kind: if ai { AgentKind::Ai } else { AgentKind::Human },
            }],
            handled_by: if ai { HandledBy::AiOnly } else { HandledBy::HumanOnly },
            ai_agent_chat: ai,
            sale_timing: SaleTiming::DuringChat,
            time_to_order_micros: 60_000_000,
        }),
    }
}

struct RunningReporter {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_reporter(env: &TestEnv, group: &str) -> RunningReporter {
    let admin = free_local_addr();
    let admin_text = admin.to_string();
    let config = reporter::Config::try_parse_from([
        "reporter",
        "--bootstrap-servers",
        &env.kafka.bootstrap_servers,
        "--topic-prefix",
        &env.kafka.topic_prefix,
        "--admin-addr",
        &admin_text,
        "--group-id",
        group,
        "--worker-id",
        "w1",
        "--idle-advance",
        "1s",
        "--revision-delay",
        "2s",
    ])
    .unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(reporter::run(config, shutdown.clone()));
    await_ready(admin, "the reporter to be ready", TIMEOUT).await;
    RunningReporter { shutdown, task }
}

/// A failed test must not leave the worker thread running: the test runtime would wait
/// for it forever.
impl Drop for RunningReporter {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl RunningReporter {
    async fn stop(mut self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// The latest report of each day, revision and publication time aside.
fn by_day(records: &[KeyValue]) -> BTreeMap<String, DailySalesReport> {
    let mut days = BTreeMap::new();
    for (_, value) in records {
        let mut report: DailySalesReport = schemas::decode(value.as_deref().unwrap()).unwrap();
        let kept: Option<&DailySalesReport> = days.get(&report.date);
        if kept.is_none_or(|k| k.revision <= report.revision) {
            report.revision = 0;
            report.published_at = Timestamp(0);
            days.insert(report.date.clone(), report);
        }
    }
    days
}

#[tokio::test]
async fn daily_reports_close_revise_and_replay_to_the_same_figures() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&OrganizationSettings {
        organization_id: ORG.into(),
        websites: vec!["shop.example.com".into()],
        timezone: "Europe/Warsaw".into(),
        rate_limit_per_second: None,
        rate_limit_burst: None,
        updated_at: None,
        identity_mode: IdentityMode::Off,
        identity_key_id: None,
        identity_previous_key_id: None,
    })
    .await;
    let group = env.unique_id("reporter");
    let reporter = start_reporter(&env, &group).await;

    let producer: FutureProducer = env.client_config().set("acks", "all").create().unwrap();
    let input = env.topic(Topic::OrdersAttributed);
    let send = |o: AttributedOrder| {
        let (producer, input) = (producer.clone(), input.clone());
        async move {
            let value = schemas::encode(&o).unwrap();
            producer
                .send(FutureRecord::to(&input).key(ORG).payload(&value), TIMEOUT)
                .await
                .unwrap();
        }
    };
    // Three recent days (the wall clock closes them; a daylight-saving day is covered by
    // the rollup's unit tests).
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Warsaw)
        .date_naive();
    let [d1, d2, d3] = [4u64, 3, 2].map(|back| (today - chrono::Days::new(back)).to_string());
    let at = |day: &str, time: &str| format!("{day} {time}");
    send(order("1", &at(&d1, "10:00:00"), "100.10", "USD", Some(false))).await;
    send(order("2", &at(&d1, "11:00:00"), "50", "EUR", Some(true))).await;
    send(order("5", &at(&d1, "12:00:00"), "999", "USD", None)).await;
    send(order("3", &at(&d2, "23:59:59.999999"), "10", "USD", Some(true))).await;
    send(order("4", &at(&d3, "00:00:00"), "20", "USD", Some(false))).await;
    // The attributor's tasks would mark the topic's watermark; here it follows the wall
    // clock from now on, so the past days close, each with all of its orders (written
    // before the first mark).
    let _clock = env.upstream_clock(&input);

    // Every day closes: the 28th by the orders' own time, the others by the wall clock
    // once the input is quiet.
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    let first = read_exactly(&reports, "the first reports", 3, TIMEOUT, Duration::ZERO).await;
    let days = by_day(&first);
    assert_eq!(days.keys().collect::<Vec<_>>(), [&d1, &d2, &d3]);
    let day28 = &days[&d1];
    assert_eq!(day28.timezone, "Europe/Warsaw");
    let all: Vec<(&str, i64)> = day28
        .all_sales
        .currencies
        .iter()
        .map(|c| (c.currency.as_str(), c.orders))
        .collect();
    assert_eq!(all, [("EUR", 1), ("USD", 1)], "the unattributed order counts nowhere");
    assert_eq!(day28.ai_agent_sales.currencies.len(), 1);
    assert_eq!(
        days[&d2].all_sales.currencies[0].orders, 1,
        "23:59:59.999999 is still its day"
    );
    assert_eq!(days[&d3].all_sales.currencies[0].orders, 1, "midnight is the next day");

    // A late order for the first day: the day is published again as revision 2.
    send(order("6", &at(&d1, "20:00:00"), "0.90", "USD", Some(false))).await;
    let revised = read_exactly(&reports, "the revision", 1, TIMEOUT, Duration::from_secs(3)).await;
    let report: DailySalesReport = schemas::decode(revised[0].1.as_deref().unwrap()).unwrap();
    assert_eq!((report.date.as_str(), report.revision), (d1.as_str(), 2));
    let usd = report
        .all_sales
        .currencies
        .iter()
        .find(|c| c.currency == "USD")
        .unwrap();
    assert_eq!(
        (usd.orders, usd.revenue.value().normalize().to_string().as_str()),
        (2, "101")
    );
    assert_eq!(usd.top_orders[0].order_id, "1");

    // The wins counter: 1, 2 on the first day, 1 on each of the next; the late order of
    // the first day is not a win of the current day.
    let wins = env.consumer(&env.topic(Topic::Wins), "read_committed");
    let counters: Vec<(String, i64)> = read_exactly(&wins, "wins", 4, TIMEOUT, Duration::from_secs(2))
        .await
        .into_iter()
        .map(|(_, v)| schemas::decode::<WinsCounter>(&v.unwrap()).unwrap())
        .map(|w| (w.date, w.wins))
        .collect();
    assert_eq!(
        counters,
        [(d1.clone(), 1), (d1.clone(), 2), (d2.clone(), 1), (d3.clone(), 1)]
    );
    reporter.stop().await;

    // What the operator sees: the latest revision of each day, as tables and as JSON.
    let mut args = salesctl::report::ReportArgs {
        org: ORG.into(),
        from: d1.parse().unwrap(),
        to: d3.parse().unwrap(),
        json: false,
        currency: None,
        timing: None,
        team: Vec::new(),
        ai: false,
        by_day: false,
        format: None,
    };
    let mut table = Vec::new();
    salesctl::report::run(&env.kafka, &args, &mut table).await.unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(
        table.contains(&format!("{ORG}  {d1}  (Europe/Warsaw, revision 2")),
        "{table}"
    );
    assert_eq!(table.matches("AI Agent Sales").count(), 3, "{table}");
    args.json = true;
    let mut json = Vec::new();
    salesctl::report::run(&env.kafka, &args, &mut json).await.unwrap();
    let json = String::from_utf8(json).unwrap();
    assert_eq!(json.lines().count(), 3);
    // The report query over the same days' cells: the orders of All Sales, by day.
    let section_orders: i64 = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .flat_map(|r| r["all_sales"]["currencies"].as_array().unwrap().clone())
        .map(|c| c["orders"].as_i64().unwrap())
        .sum();
    args.json = false;
    (args.by_day, args.format) = (true, Some("json".into()));
    let mut answer = Vec::new();
    salesctl::report::run(&env.kafka, &args, &mut answer).await.unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["totals"]["orders"], section_orders, "{answer}");
    assert_eq!(answer["days"].as_array().unwrap().len(), 3, "{answer}");
    (args.by_day, args.format) = (false, None);
    args.from = args.to;
    args.to = args.from - chrono::Days::new(1);
    let refused = salesctl::report::run(&env.kafka, &args, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("is after --to"), "{refused}");

    // Replay: the reporter's consumer group and changelogs deleted, a run from the start
    // of its input publishes the same days (revision numbers and publication time aside).
    let admin: AdminClient<DefaultClientContext> = env.client_config().create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    eventually("the reporter's group to be deleted", TIMEOUT, || async {
        // A static member stays in the group until its session times out.
        let deployed = kafka_runtime::worker::group_id(&env.kafka, &group);
        let results = admin.delete_groups(&[&deployed], &options).await.ok()?;
        results.iter().all(Result::is_ok).then_some(())
    })
    .await;
    let changelogs: Vec<String> = ["days", "wins", "revisions", "timers", "watermarks"]
        .iter()
        .map(|store| kafka_runtime::worker::changelog_topic(&env.kafka.topic_prefix, &group, store))
        .collect();
    let names: Vec<&str> = changelogs.iter().map(String::as_str).collect();
    admin.delete_topics(&names, &options).await.unwrap();
    eventually("the changelogs to be gone", TIMEOUT, || async {
        let mut gone = true;
        for name in &changelogs {
            gone &= kafka_runtime::topic_admin::partition_count(&env.kafka, name)
                .await
                .ok()
                .flatten()
                .is_none();
        }
        gone.then_some(())
    })
    .await;
    let replay = start_reporter(&env, &group).await;
    // The replay publishes the first day before the late order and again after it, then
    // the other two days.
    let again = read_exactly(&reports, "the replayed reports", 4, TIMEOUT, Duration::from_secs(3)).await;
    let mut before = first.clone();
    before.extend(revised);
    assert_eq!(by_day(&again), by_day(&before));
    replay.stop().await;
}
