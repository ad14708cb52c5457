//! The whole chain on a real cluster: three Kafka nodes of a private cluster (started
//! here through `scripts/kafka-local.sh --brokers 3`, on ports of its own), every topic
//! and changelog with three replicas and `min.insync.replicas` 2. A backlog is in the
//! topics before the stages start, more of the past is written while they run, live
//! events go through ingest all along, and a supervisor SIGKILLs a random stream stage
//! every few seconds. Meanwhile:
//!
//! 1. the node that leads the most partitions of `sales.orders` is SIGKILLed, and
//!    started again once its partitions have new leaders;
//! 2. a rolling restart stops and starts the three nodes gracefully, one by one, each
//!    once the previous one has caught up;
//! 3. two nodes are SIGKILLed: with one node of three, no partition has the two
//!    in-sync replicas a write needs (and the quorum is lost). Ingest must answer 503
//!    with `Retry-After`, the stages must wait (no process exits, `/readyz` says why),
//!    and everything must resume by itself once a second node is back.
//!
//! The daily reports must still equal the reference, no order may be in `sales.orders`
//! twice, and every event ingest answered 202 for must be in `sales.events.raw`: an
//! answer while a partition has no leader, or too few replicas, is a 503, never a 202.
//! The stall of each phase is printed (`--nocapture`), and the stages' logs are kept in
//! a folder named at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use sales_tests::reference::expected_reports;
use sales_tests::{PrivateCluster, TestEnv, await_ready, free_local_addr, http, http_get, stage_args};
use schemas::records::WidgetEvent;
use schemas::topics::Topic;
use schemas::values::Timestamp;

use crate::backlog::orders_read;
use crate::chaos::{StageLogs, StageProcess, assert_all_in_raw};
use crate::pipeline::await_reports;

const NODES: u16 = 3;
/// How long the cluster stays with one node of three.
const ONE_NODE_LEFT: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(180);

/// What ingest answered to one POST.
#[derive(Debug, Clone)]
struct Answer {
    at: Instant,
    /// 0 when no answer came (the connection failed).
    status: u16,
    retry_after: bool,
    body: String,
}

/// An event ingest took: its id, when it was first posted and when it got its 202.
#[derive(Debug, Clone)]
struct Accepted {
    event_id: String,
    first_try: Instant,
    accepted: Instant,
}

#[derive(Debug, Default)]
struct Traffic {
    answers: Vec<Answer>,
    accepted: Vec<Accepted>,
}

/// Posts live cart events to ingest one after another until `stop`, each retried with
/// its event id until it gets a 202, and records every answer.
async fn post_live(
    ingest: SocketAddr,
    live: Vec<WidgetEvent>,
    offset: usize,
    traffic: Arc<Mutex<Traffic>>,
    stop: Arc<AtomicBool>,
) {
    let mut round = offset;
    while !stop.load(Ordering::Acquire) {
        let mut event = live[round % live.len()].clone();
        round += 1;
        event.event_id = uuid::Uuid::new_v4().to_string();
        let body = simulator::write::api_json(&event).to_string();
        let first_try = Instant::now();
        loop {
            let answer = http(
                ingest,
                "POST",
                "/v1/events",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await;
            let at = Instant::now();
            let (status, retry_after, text) = match answer {
                Ok(a) => (a.status, a.header("retry-after").is_some(), a.body),
                Err(e) => (0, false, e.to_string()),
            };
            {
                let mut traffic = traffic.lock().unwrap();
                traffic.answers.push(Answer {
                    at,
                    status,
                    retry_after,
                    body: text,
                });
                if status == 202 {
                    traffic.accepted.push(Accepted {
                        event_id: event.event_id.clone(),
                        first_try,
                        accepted: at,
                    });
                }
            }
            if status == 202 {
                break;
            }
            // An event not taken is retried (with its id) until the end of the test: the
            // last phase waits for every event posted to be accepted.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A phase of the test: its name and when it began and ended.
#[derive(Debug, Clone)]
struct Phase {
    name: String,
    from: Instant,
    to: Instant,
}

/// Leaders and in-sync replicas of every partition of the cluster, as the metadata of
/// any node that answers tells.
#[derive(Debug, Default)]
struct Layout {
    /// Topic to (partition, leader or -1, in-sync replicas, replicas).
    topics: BTreeMap<String, Vec<(i32, i32, usize, usize)>>,
}

impl Layout {
    async fn read(env: &TestEnv) -> Option<Layout> {
        let config = env.client_config();
        tokio::task::spawn_blocking(move || {
            let client: BaseConsumer = config.create().ok()?;
            let metadata = client.fetch_metadata(None, Duration::from_secs(5)).ok()?;
            let topics = metadata
                .topics()
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions()
                        .iter()
                        .map(|p| (p.id(), p.leader(), p.isr().len(), p.replicas().len()))
                        .collect();
                    (t.name().to_string(), partitions)
                })
                .collect();
            Some(Layout { topics })
        })
        .await
        .ok()
        .flatten()
    }

    /// The node leading the most partitions of `topic`.
    fn busiest_leader(&self, topic: &str) -> Option<u16> {
        let mut led: BTreeMap<i32, usize> = BTreeMap::new();
        for (_, leader, _, _) in self.topics.get(topic)? {
            *led.entry(*leader).or_default() += 1;
        }
        let (leader, _) = led.into_iter().filter(|(l, _)| *l > 0).max_by_key(|(_, n)| *n)?;
        u16::try_from(leader).ok()
    }

    /// Whether every partition of every topic has a leader and all its replicas in sync.
    fn healthy(&self) -> bool {
        !self.topics.is_empty()
            && self
                .topics
                .values()
                .flatten()
                .all(|(_, leader, isr, replicas)| *leader > 0 && isr == replicas)
    }

    /// Whether every partition of `topics` has a leader that is not `down`.
    fn led_without(&self, topics: &[String], down: u16) -> bool {
        topics.iter().all(|topic| {
            self.topics.get(topic).is_some_and(|partitions| {
                partitions
                    .iter()
                    .all(|(_, leader, _, _)| *leader > 0 && *leader != i32::from(down))
            })
        })
    }
}

/// Waits until every partition of the cluster has a leader and all its replicas in sync.
async fn await_healthy(env: &TestEnv, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        if Layout::read(env).await.is_some_and(|l| l.healthy()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "{what}: the cluster is not healthy within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs a blocking operation of the cluster (the script) off the async workers.
async fn on_cluster(cluster: &Arc<PrivateCluster>, op: impl FnOnce(&PrivateCluster) + Send + 'static) -> Duration {
    let started = Instant::now();
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || op(&cluster)).await.unwrap();
    started.elapsed()
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Prints, for each phase, the answers ingest gave and how long events waited for their
/// 202: the stall a client saw.
fn stall_table(traffic: &Traffic, phases: &[Phase]) {
    for phase in phases {
        let answers: Vec<&Answer> = traffic
            .answers
            .iter()
            .filter(|a| a.at >= phase.from && a.at <= phase.to)
            .collect();
        let count = |status: u16| answers.iter().filter(|a| a.status == status).count();
        // The longest an event waiting during the phase waited for its 202 (one posted
        // before and one still waiting at its end count too, up to the phase's end).
        let longest_wait = traffic
            .accepted
            .iter()
            .filter(|a| a.accepted >= phase.from && a.first_try <= phase.to)
            .map(|a| a.accepted.min(phase.to) - a.first_try)
            .max()
            .unwrap_or_default();
        // The longest time without any 202 during the phase.
        let mut times: Vec<Instant> = traffic
            .accepted
            .iter()
            .map(|a| a.accepted)
            .filter(|at| *at >= phase.from && *at <= phase.to)
            .collect();
        times.sort();
        let mut edges = vec![phase.from];
        edges.extend(times);
        edges.push(phase.to);
        let longest_gap = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        println!(
            "cluster: {:<44} {:>7}  202: {:>4}  503: {:>3}  longest wait for a 202: {:>6}  longest time without a 202: {:>6}",
            phase.name,
            seconds(phase.to - phase.from),
            count(202),
            count(503),
            seconds(longest_wait),
            seconds(longest_gap)
        );
    }
}

/// The resident memory of process `pid`, in MiB.
fn resident_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The `/readyz` answer of a stage: status and body.
async fn readyz(admin: SocketAddr) -> (u16, String) {
    http_get(admin, "/readyz").await.unwrap_or((0, String::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_a_rolling_restart_and_one_node_of_three_lose_and_duplicate_nothing() {
    let test_started = Instant::now();
    let cluster = Arc::new(
        tokio::task::spawn_blocking(|| PrivateCluster::start(NODES))
            .await
            .unwrap(),
    );
    println!(
        "cluster: {NODES} nodes on {} ready after {}",
        cluster.bootstrap(),
        seconds(test_started.elapsed())
    );
    let mut env = TestEnv::new().await;
    env.kafka.bootstrap_servers = cluster.bootstrap();
    let topics = env.create_topics_replicated(i32::from(NODES)).await;
    assert_eq!(topics.problems().count(), 0, "{topics:?}");
    let logs = StageLogs::new(&format!("sales-cluster-test-{}", env.unique_id("logs")));

    // A backlog: the organizations and the first half of the past, before any stage runs.
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let plan = simulator::plan(23, 4, 6, now);
    let producer = simulator::write::producer(&env.kafka).unwrap();
    simulator::write::organizations(&env.kafka, &producer, &plan.organizations)
        .await
        .unwrap();
    let (backlog, rest) = plan.past.split_at(plan.past.len() / 2);
    simulator::write::records(&env.kafka, &producer, backlog).await.unwrap();

    let public = free_local_addr();
    let mut ingest = None;
    let mut stream = Vec::new();
    for name in ["ingest", "enricher", "attributor", "reporter"] {
        let admin = free_local_addr();
        let mut args = stage_args(&env, name, admin, public);
        if name != "ingest" {
            args.extend(["--changelog-replication".into(), NODES.to_string()]);
        }
        let stage = StageProcess::spawn_logged(name, args, admin, Some(logs.of(name)));
        if name == "ingest" {
            ingest = Some(stage);
        } else {
            stream.push(stage);
        }
    }
    let mut ingest = ingest.expect("ingest runs");
    for stage in std::iter::once(&ingest).chain(&stream) {
        await_ready(stage.admin, &format!("{} to be ready", stage.name), TIMEOUT).await;
    }
    println!(
        "cluster: stages ready after {}; {} backlog records, {} more to come",
        seconds(test_started.elapsed()),
        backlog.len(),
        rest.len() + plan.past_later.len()
    );

    // The supervisor: a random stream stage killed and started again every 2.5 s while
    // `killing` is set.
    let stream = Arc::new(Mutex::new(stream));
    let killing = Arc::new(AtomicBool::new(true));
    let done = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (stream, killing, done) = (Arc::clone(&stream), Arc::clone(&killing), Arc::clone(&done));
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut kills = 0;
            while !done.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                if killing.load(Ordering::Acquire) {
                    let mut stream = stream.lock().unwrap();
                    let victim = rng.random_range(0..stream.len());
                    stream[victim].kill_and_restart();
                    kills += 1;
                }
            }
            kills
        })
    };

    // Live traffic through ingest all along, from three clients.
    let live = plan.today_cart_events();
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let stop_posting = Arc::new(AtomicBool::new(false));
    let posters: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(post_live(
                public,
                live.clone(),
                i * 7,
                Arc::clone(&traffic),
                Arc::clone(&stop_posting),
            ))
        })
        .collect();
    // The rest of the past, in chunks, while the cluster is shaken.
    let writer = {
        let (kafka, producer, rest) = (env.kafka.clone(), producer.clone(), rest.to_vec());
        tokio::spawn(async move {
            for chunk in rest.chunks(rest.len() / 8 + 1) {
                simulator::write::records(&kafka, &producer, chunk).await.unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let mut phases = Vec::new();
    let watched = [env.topic(Topic::Orders), env.topic(Topic::EventsRaw)];

    // 1. The busiest leader of sales.orders killed, and started again once its
    // partitions have other leaders.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let layout = Layout::read(&env).await.expect("the cluster's metadata");
    let victim = layout
        .busiest_leader(&env.topic(Topic::Orders))
        .expect("sales.orders has leaders");
    let from = Instant::now();
    on_cluster(&cluster, move |c| c.kill(victim)).await;
    let leaderless = loop {
        if Layout::read(&env)
            .await
            .is_some_and(|l| l.led_without(&watched, victim))
        {
            break from.elapsed();
        }
        assert!(from.elapsed() < TIMEOUT, "no new leaders within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "cluster: node {victim} (leading the most partitions of sales.orders) killed; its partitions had new leaders after {}",
        seconds(leaderless)
    );
    let restarted = on_cluster(&cluster, move |c| c.restart(victim)).await;
    let caught_up = await_healthy(&env, "after the killed node's restart").await;
    println!(
        "cluster: node {victim} started again in {}, every partition in sync {} later",
        seconds(restarted),
        seconds(caught_up)
    );
    phases.push(Phase {
        name: format!("leader node {victim} killed, until in sync again"),
        from,
        to: Instant::now(),
    });

    // 2. A rolling restart, one node after the other.
    for node in 1..=NODES {
        let from = Instant::now();
        let restarted = on_cluster(&cluster, move |c| c.restart(node)).await;
        let caught_up = await_healthy(&env, "during the rolling restart").await;
        println!(
            "cluster: rolling restart: node {node} stopped and started in {}, every partition in sync {} later",
            seconds(restarted),
            seconds(caught_up)
        );
        phases.push(Phase {
            name: format!("rolling restart of node {node}"),
            from,
            to: Instant::now(),
        });
    }
    writer.await.unwrap();

    // 3. One node of three: below min.insync.replicas, and without a quorum.
    killing.store(false, Ordering::Release);
    let (left, gone) = (1, [2, 3]);
    let from = Instant::now();
    for node in gone {
        on_cluster(&cluster, move |c| c.kill(node)).await;
    }
    println!("cluster: nodes {gone:?} killed, node {left} alone");
    let mut stage_answers = BTreeMap::new();
    let hold_until = from + ONE_NODE_LEFT;
    while Instant::now() < hold_until {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let admins: Vec<(&'static str, SocketAddr)> =
            stream.lock().unwrap().iter().map(|s| (s.name, s.admin)).collect();
        for (name, admin) in admins {
            // 0: no answer (a stage killed just before is still starting).
            let answer = readyz(admin).await;
            if answer.0 != 200 && answer.0 != 0 {
                stage_answers.insert(name, answer);
            }
        }
        for stage in stream.lock().unwrap().iter_mut().chain(std::iter::once(&mut ingest)) {
            let exit = stage.exit_status();
            assert!(
                exit.is_none(),
                "{} exited with one node of three left ({exit:?}); logs in {}",
                stage.name,
                logs.dir().display()
            );
        }
    }
    for (name, (status, body)) in &stage_answers {
        println!("cluster: {name} /readyz with one node left: {status} {body}");
    }
    phases.push(Phase {
        name: "one node of three".into(),
        from,
        to: Instant::now(),
    });
    let outage_503: Vec<String> = {
        let traffic = traffic.lock().unwrap();
        traffic
            .answers
            .iter()
            .filter(|a| a.at >= from && a.status == 503)
            .map(|a| a.body.clone())
            .collect()
    };
    let first = outage_503.first().expect("ingest answered 503 with one node of three");
    println!(
        "cluster: ingest with one node left: {} answers 503, such as {first}",
        outage_503.len()
    );
    // A stage meets the outage only when it has something to commit: with ingest
    // answering 503 and no new chat events, a stage whose last transaction went through
    // before the nodes went may sit idle and ready. At least one met it; any stage not
    // ready says why.
    assert!(
        !stage_answers.is_empty(),
        "every stage said it was ready all along with one node of three"
    );
    for (name, (status, body)) in &stage_answers {
        assert_eq!(*status, 503, "{name}: {body}");
        let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert!(
            answer["reasons"]["state"].as_str().is_some_and(|r| !r.is_empty()),
            "{name} /readyz says not why its state is not ready: {body}"
        );
    }

    // A second node back: everything resumes by itself.
    let from = Instant::now();
    let restarted = on_cluster(&cluster, move |c| c.restart(gone[0])).await;
    let resumed = loop {
        let accepted = traffic.lock().unwrap().accepted.iter().any(|a| a.accepted > from);
        if accepted {
            break from.elapsed();
        }
        assert!(
            from.elapsed() < TIMEOUT,
            "ingest took no event within {TIMEOUT:?} of a second node's return"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let admins: Vec<(&'static str, SocketAddr)> = stream.lock().unwrap().iter().map(|s| (s.name, s.admin)).collect();
    for (name, admin) in &admins {
        await_ready(*admin, &format!("{name} to be ready again"), TIMEOUT).await;
    }
    println!(
        "cluster: node {} back after {}; ingest took events again {} after its start, every stage ready again after {}",
        gone[0],
        seconds(restarted),
        seconds(resumed),
        seconds(from.elapsed())
    );
    phases.push(Phase {
        name: format!("node {} back, until every stage is ready", gone[0]),
        from,
        to: Instant::now(),
    });
    // The third node comes back while the rest is checked.
    let third = {
        let cluster = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || cluster.restart(gone[1]))
    };

    // The rest: every past order through, then the second device's copies.
    let originals = simulator::plan::order_ids(&plan.past);
    let orders = env.consumer(&env.topic(Topic::Orders), "read_committed");
    orders_read(&orders, originals.len(), TIMEOUT, Duration::ZERO).await;
    simulator::write::records(&env.kafka, &producer, &plan.past_later)
        .await
        .unwrap();
    stop_posting.store(true, Ordering::Release);
    for poster in posters {
        poster.await.unwrap();
    }
    done.store(true, Ordering::Release);
    let kills = supervisor.await.unwrap();

    // Exactly the reference's reports, and every order once in sales.orders.
    let expected = expected_reports(&plan, now, 3_600_000_000);
    let reports = env.consumer(&env.topic(Topic::ReportsDaily), "read_committed");
    await_reports(&reports, &expected, TIMEOUT).await;
    let sales_orders = env.consumer(&env.topic(Topic::Orders), "read_committed");
    let seen = orders_read(&sales_orders, originals.len(), TIMEOUT, Duration::from_secs(3)).await;
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "orders in sales.orders more than once: {twice:?}");
    assert_eq!(seen.len(), originals.len(), "every order in sales.orders");

    // Ingest answered 202 or 503 (with Retry-After), nothing else; and every 202 is in
    // sales.events.raw.
    let traffic = std::mem::take(&mut *traffic.lock().unwrap());
    let odd: Vec<&Answer> = traffic
        .answers
        .iter()
        .filter(|a| !(a.status == 202 || a.status == 503 && a.retry_after))
        .collect();
    assert!(
        odd.is_empty(),
        "answers other than 202 and 503 with Retry-After: {odd:?}"
    );
    assert_all_in_raw(&env, traffic.accepted.iter().map(|a| a.event_id.clone())).await;

    // No stage ended by itself, after the outage either.
    for stage in stream.lock().unwrap().iter_mut().chain(std::iter::once(&mut ingest)) {
        let exit = stage.exit_status();
        assert!(
            exit.is_none(),
            "{} exited ({exit:?}); logs in {}",
            stage.name,
            logs.dir().display()
        );
    }
    third.await.unwrap();
    await_healthy(&env, "with every node back").await;
    stall_table(&traffic, &phases);
    let memory: Vec<String> = (1..=NODES)
        .map(|node| {
            let rss = cluster.pid(node).and_then(resident_mib);
            format!("node {node}: {}", rss.map_or("?".into(), |mib| format!("{mib} MiB")))
        })
        .collect();
    println!("cluster: resident memory at the end: {}", memory.join(", "));
    println!(
        "cluster: {} events accepted, {} answers, {kills} stage kills; {} days of reports as the reference's; stage logs in {}; {} in all",
        traffic.accepted.len(),
        traffic.answers.len(),
        expected.len(),
        logs.dir().display(),
        seconds(test_started.elapsed())
    );
    assert!(kills >= 5, "only {kills} stage kills");
    drop(ingest);
    drop(stream);
}
