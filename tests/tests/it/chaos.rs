//! The whole chain under chaos: every stage its own process, a supervisor killing a
//! random stream stage with SIGKILL every few seconds and starting it again, and the
//! broker restarted once, while a simulated week of trade and live HTTP traffic go
//! through (the past written while they run, or in full before they start: a backlog).
//! The daily reports must still equal the reference exactly, and every event
//! ingest answered 202 for must be in `sales.events.raw`.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::Message;
use sales_tests::reference::expected_reports;
use sales_tests::{
    PAST_WHILE_RUNNING_IDLE_ADVANCE, PrivateBroker, TestEnv, await_ready, free_local_addr, read_exactly, stage_args,
    with_flag,
};
use schemas::records::WidgetEvent;
use schemas::topics::Topic;
use schemas::values::Timestamp;

use crate::pipeline::await_reports;

const STREAM_STAGES: [&str; 3] = ["enricher", "attributor", "reporter"];

/// A stage run as a process of its own, so that it can be killed with SIGKILL.
pub(crate) struct StageProcess {
    pub(crate) name: &'static str,
    args: Vec<String>,
    pub(crate) admin: std::net::SocketAddr,
    child: Child,
    /// Where its log goes (appended to by every incarnation), if anywhere.
    log: Option<std::path::PathBuf>,
}

impl StageProcess {
    pub(crate) fn spawn(name: &'static str, args: Vec<String>, admin: std::net::SocketAddr) -> Self {
        Self::spawn_logged(name, args, admin, None)
    }

    /// Starts the stage, its warnings and the runtime's own lines (`kafka_runtime=info`)
    /// appended to `log` when given.
    pub(crate) fn spawn_logged(
        name: &'static str,
        args: Vec<String>,
        admin: std::net::SocketAddr,
        log: Option<std::path::PathBuf>,
    ) -> Self {
        let stderr = match &log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())),
            None => Stdio::null(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_stage"))
            .args(&args)
            .env(
                "RUST_LOG",
                match &log {
                    // SALES_TEST_STAGE_LOG: another filter for the logged stages' lines.
                    Some(_) => {
                        std::env::var("SALES_TEST_STAGE_LOG").unwrap_or_else(|_| "warn,kafka_runtime=info".into())
                    }
                    None => "warn".into(),
                },
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        StageProcess {
            name,
            args,
            admin,
            child,
            log,
        }
    }

    pub(crate) fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = StageProcess::spawn_logged(self.name, self.args.clone(), self.admin, self.log.take());
    }

    /// How the process ended, or `None` while it runs.
    pub(crate) fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stages' logs of one test, in a folder of their own; the end of each is printed
/// when the test fails, so a failure in CI says what the stages were doing.
pub(crate) struct StageLogs(std::path::PathBuf);

impl StageLogs {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        StageLogs(dir)
    }

    pub(crate) fn of(&self, stage: &str) -> std::path::PathBuf {
        self.0.join(format!("{stage}.log"))
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for StageLogs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            eprintln!(
                "---- the end of {} ----\n{}",
                path.display(),
                sales_tests::bench::tail(&path)
            );
        }
    }
}

/// Posts a live cart event until ingest accepts it (retrying refusals while the broker
/// restarts); returns its event id, or `None` if it never got a 202.
async fn post_until_accepted(ingest: std::net::SocketAddr, event: &WidgetEvent) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match simulator::write::post(ingest, event).await {
            Ok((202, _)) => return Some(event.event_id.clone()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// How the past days reach the topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Past {
    /// Written in chunks while the stages run and are killed.
    Live,
    /// Written in full before any stage starts: the stages meet it as a backlog.
    Backlog,
}

#[tokio::test]
async fn killed_workers_and_a_broker_restart_change_no_figure() {
    chaos(Past::Live).await;
}

#[tokio::test]
async fn killed_workers_and_a_broker_restart_change_no_figure_of_a_backlog() {
    chaos(Past::Backlog).await;
}

async fn chaos(past: Past) {
    let broker = Arc::new(tokio::task::spawn_blocking(PrivateBroker::start).await.unwrap());
    let mut env = TestEnv::new().await;
    env.kafka.bootstrap_servers = broker.bootstrap();
    env.create_topics().await;
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = simulator::plan(23, 7, 8, now);
    let producer = simulator::write::producer(&env.kafka).unwrap();
    match past {
        Past::Backlog => simulator::write::past(&env.kafka, &producer, &plan).await.unwrap(),
        Past::Live => simulator::write::organizations(&env.kafka, &producer, &plan.organizations)
            .await
            .unwrap(),
    }

    let logs = StageLogs::new(&env.unique_id("chaos-logs"));
    let public = free_local_addr();
    let mut stages: Vec<StageProcess> = ["ingest", "enricher", "attributor", "reporter"]
        .into_iter()
        .map(|name| {
            let admin = free_local_addr();
            let mut args = stage_args(&env, name, admin, public);
            if past == Past::Live && name != "ingest" {
                args = with_flag(args, "--idle-advance", PAST_WHILE_RUNNING_IDLE_ADVANCE);
            }
            StageProcess::spawn_logged(name, args, admin, Some(logs.of(name)))
        })
        .collect();
    for stage in &stages {
        await_ready(
            stage.admin,
            &format!("{} to be ready", stage.name),
            Duration::from_secs(90),
        )
        .await;
    }

    // The supervisor: a random stream stage killed and started again every 2.5 s, and
    // the broker restarted once, until the traffic is through.
    let chaos = Arc::new(AtomicBool::new(true));
    let supervisor = {
        let (chaos, broker) = (Arc::clone(&chaos), Arc::clone(&broker));
        let mut stream: Vec<StageProcess> = stages.split_off(1);
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let (mut kills, mut restarted_broker) = (0, false);
            while chaos.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                if kills == 4 && !restarted_broker {
                    let broker = Arc::clone(&broker);
                    tokio::task::spawn_blocking(move || broker.restart()).await.unwrap();
                    restarted_broker = true;
                    continue;
                }
                let victim = &mut stream[rng.random_range(0..STREAM_STAGES.len())];
                victim.kill_and_restart();
                kills += 1;
            }
            (kills, restarted_broker, stream)
        })
    };

    // Live traffic through ingest all along, and the past days written in chunks.
    let live = plan.today_cart_events();
    let ingest = public;
    let poster = tokio::spawn(async move {
        let mut accepted = Vec::new();
        for round in 0..120 {
            let mut event = live[round % live.len()].clone();
            event.event_id = uuid::Uuid::new_v4().to_string();
            if let Some(id) = post_until_accepted(ingest, &event).await {
                accepted.push(id);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        accepted
    });
    if past == Past::Live {
        for chunk in plan.past.chunks(plan.past.len() / 8 + 1) {
            simulator::write::records(&env.kafka, &producer, chunk).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let originals = simulator::plan::order_ids(&plan.past);
    let orders = env.consumer(&env.topic(Topic::Orders), "read_committed");
    read_exactly(
        &orders,
        "the past orders",
        originals.len(),
        Duration::from_secs(240),
        Duration::ZERO,
    )
    .await;
    if past == Past::Live {
        simulator::write::records(&env.kafka, &producer, &plan.past_later)
            .await
            .unwrap();
    }
    let accepted = poster.await.unwrap();
    chaos.store(false, Ordering::Release);
    let (kills, restarted_broker, _stream) = supervisor.await.unwrap();
    assert!(
        kills >= 5 && restarted_broker,
        "{kills} kills, broker restarted: {restarted_broker}"
    );

    // Exactly the reference's reports, and no second copy of any order.
    let expected = expected_reports(&plan, now, 3_600_000_000);
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    await_reports(&reports, &expected, Duration::from_secs(240)).await;
    read_exactly(
        &orders,
        "no duplicate order",
        0,
        Duration::from_secs(1),
        Duration::from_secs(3),
    )
    .await;

    // Nothing ingest answered 202 for is missing.
    assert_eq!(accepted.len(), 120, "every live event was accepted in the end");
    assert_all_in_raw(&env, accepted).await;
}

/// Every event id of `accepted` (events ingest answered 202 for) is in
/// `sales.events.raw`, read with read_committed.
pub(crate) async fn assert_all_in_raw(env: &TestEnv, accepted: impl IntoIterator<Item = String>) {
    let raw = env.consumer(&env.topic(Topic::EventsRaw), "read_committed");
    let mut missing: HashSet<String> = accepted.into_iter().collect();
    let total = missing.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() && Instant::now() < deadline {
        if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), raw.recv()).await
            && let Some(Ok(event)) = message.payload().map(schemas::decode::<WidgetEvent>)
        {
            missing.remove(&event.event_id);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {total} accepted events missing from sales.events.raw",
        missing.len()
    );
}
