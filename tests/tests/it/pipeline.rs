//! The whole chain against an independent expectation: a simulated week of trade in,
//! the daily reports out, compared field by field with what a plain reference
//! implementation computes from the simulator's own records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kafka_runtime::shutdown::Shutdown;
use rdkafka::Message;
use rdkafka::consumer::StreamConsumer;
use sales_tests::reference::expected_reports;
use sales_tests::{TestEnv, await_ready, free_local_addr, http_get, read_exactly, run_stage, stage_args};
use schemas::records::{AgentNotification, DailySalesReport, EventName};
use schemas::topics::Topic;
use schemas::values::Timestamp;
use simulator::Write;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every stage of the pipeline in this process, on the test's topics.
pub(crate) struct Pipeline {
    pub(crate) ingest: SocketAddr,
    pub(crate) admins: Vec<(&'static str, SocketAddr)>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Pipeline {
    pub(crate) async fn start(env: &TestEnv) -> Self {
        let shutdown = Shutdown::new();
        let ingest = free_local_addr();
        let mut admins = Vec::new();
        let mut tasks = Vec::new();
        for stage in ["ingest", "enricher", "attributor", "reporter"] {
            let admin = free_local_addr();
            let argv = stage_args(env, stage, admin, ingest);
            tasks.push(run_stage(stage, argv, shutdown.clone()));
            admins.push((stage, admin));
        }
        for (stage, admin) in &admins {
            await_ready(*admin, &format!("{stage} to be ready"), TIMEOUT).await;
        }
        Pipeline {
            ingest,
            admins,
            shutdown,
            tasks,
        }
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.trigger();
        for task in std::mem::take(&mut self.tasks) {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a stage stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }
}

/// A report's orders as `all/AI`, each summed over its currencies.
fn order_counts(report: &DailySalesReport) -> String {
    let orders = |section: &schemas::records::SalesSection| section.currencies.iter().map(|c| c.orders).sum::<i64>();
    format!("{}/{}", orders(&report.all_sales), orders(&report.ai_agent_sales))
}

/// Reads `sales.reports.daily` until its latest report of each day (revision and
/// publication time aside) equals `expected` for every expected day.
pub(crate) async fn await_reports(
    consumer: &StreamConsumer,
    expected: &BTreeMap<String, DailySalesReport>,
    timeout: Duration,
) -> BTreeMap<String, DailySalesReport> {
    let mut latest: BTreeMap<String, DailySalesReport> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let matches = expected.iter().all(|(key, want)| latest.get(key) == Some(want));
        if matches {
            return latest;
        }
        let Ok(next) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            let differing: Vec<&String> = expected.keys().filter(|k| latest.get(*k) != expected.get(*k)).collect();
            let first = differing.first().map(|k| (latest.get(*k), &expected[*k]));
            // Orders of each differing day, all and AI, got against wanted: whether
            // orders are missing, extra, or only placed otherwise shows at a glance.
            let counts: Vec<String> = differing
                .iter()
                .map(|k| {
                    let got = latest.get(*k).map_or_else(|| "none".to_string(), order_counts);
                    format!("{k}: got {got}, wanted {}", order_counts(&expected[*k]))
                })
                .collect();
            panic!(
                "the reports differ from the expectation on {} of {} days: {differing:?}\norders (all/AI): {counts:?}\nfirst: got {:#?}\nwanted {:#?}",
                differing.len(),
                expected.len(),
                first.map(|f| f.0),
                first.map(|f| f.1)
            );
        };
        let Ok(message) = next else { continue };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let mut report: DailySalesReport = schemas::decode(message.payload().unwrap()).unwrap();
        report.revision = 0;
        report.published_at = Timestamp(0);
        latest.insert(key, report);
    }
}

#[tokio::test]
async fn a_simulated_week_gives_exactly_the_reports_of_the_reference() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = simulator::plan(11, 7, 8, now);
    let producer = simulator::write::producer(&env.kafka).unwrap();
    simulator::write::organizations(&env.kafka, &producer, &plan.organizations)
        .await
        .unwrap();
    // The past is in the topics before the stages start: written once their quiet
    // sources had taken the wall clock, it would be late (processed at once, in whatever
    // order it arrives) and its attribution would depend on that order.
    simulator::write::records(&env.kafka, &producer, &plan.past)
        .await
        .unwrap();
    let pipeline = Pipeline::start(&env).await;
    // The second device's copies once the originals are through the dedupe.
    let originals = simulator::plan::order_ids(&plan.past);
    let orders = env.consumer(&env.topic(Topic::Orders), "read_committed");
    read_exactly(&orders, "the past orders", originals.len(), TIMEOUT, Duration::ZERO).await;
    simulator::write::records(&env.kafka, &producer, &plan.past_later)
        .await
        .unwrap();
    let accepted = simulator::write::today(&env.kafka, &producer, pipeline.ingest, &plan.today)
        .await
        .unwrap();
    assert_eq!(
        accepted,
        plan.today.iter().filter(|w| matches!(w, Write::Widget(_))).count()
    );

    // Every closed day's report, exactly as the reference computes it.
    let expected = expected_reports(&plan, now, 3_600_000_000);
    assert!(
        expected.len() >= 12,
        "a week of three shops closes many days: {}",
        expected.len()
    );
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    await_reports(&reports, &expected, TIMEOUT).await;

    // Today's live orders reached their chats.
    let inbox = env.consumer(&env.topic(Topic::Notifications), "read_committed");
    let today_orders: Vec<String> = plan
        .today
        .iter()
        .filter_map(|w| match w {
            Write::Widget(e) if e.name == EventName::StoreOrderWasCreated => Some(e.event_id.clone()),
            _ => None,
        })
        .collect();
    let enricher = pipeline.admins.iter().find(|(s, _)| *s == "enricher").unwrap().1;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !today_orders.iter().all(|id| seen.contains(id)) {
        if tokio::time::Instant::now() > deadline {
            // What the enricher knows of time, to tell a held order from a lost one.
            let (_, metrics) = http_get(enricher, "/metrics").await.unwrap_or_default();
            let time: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("stream_") || l.starts_with("enricher_"))
                .collect();
            let missing: Vec<&String> = today_orders.iter().filter(|id| !seen.contains(id)).collect();
            panic!(
                "today's order notifications missing after {TIMEOUT:?}: {missing:?}\nenricher:\n{}",
                time.join("\n")
            );
        }
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(500), inbox.recv()).await
            && let Ok(n) = schemas::decode::<AgentNotification>(message.payload().unwrap_or_default())
        {
            seen.push(n.notification_id);
        }
    }

    // The orders fired twice were dropped and counted.
    let all = plan.orders().count();
    let unique: std::collections::HashSet<(&str, &str)> = plan
        .orders()
        .map(|e| (e.organization_id.as_str(), e.order.as_ref().unwrap().id.as_str()))
        .collect();
    let (_, metrics) = http_get(enricher, "/metrics").await.unwrap();
    let line = format!("enricher_duplicate_orders_total {}", all - unique.len());
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    pipeline.stop().await;
}
