//! Every stage binary's shell against the real broker: the admin listener answers,
//! readiness follows the broker, metrics are served, and shutdown ends the run cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use kafka_runtime::shutdown::Shutdown;
use sales_tests::{TestEnv, await_ready, free_local_addr, http_get};

/// Starts a stage, waits until `/readyz` says ready, reads `/healthz` and `/metrics`,
/// runs the stage's own `checks`, then requests shutdown and expects `run` to return
/// `Ok` promptly.
async fn stage_serves_admin_and_stops<R, C>(stage: &str, admin: SocketAddr, shutdown: Shutdown, run: R, checks: C)
where
    R: Future<Output = anyhow::Result<()>> + Send + 'static,
    C: Future<Output = ()>,
{
    let mut task = tokio::spawn(run);

    // A start on a busy machine (a transactional producer, a group join, a restore) may
    // take a while; the last answer says what it waited on. A stage that ends before it
    // is ready (its admin address taken, a failed start) says why at once.
    let what = format!("{stage} /readyz to answer 200");
    tokio::select! {
        () = await_ready(admin, &what, Duration::from_secs(60)) => {}
        ended = &mut task => panic!("{stage} ended before it was ready: {:?}", ended.map(|r| r.map_err(|e| format!("{e:#}")))),
    }
    let (_, body) = http_get(admin, "/readyz").await.unwrap();
    assert!(body.contains(r#""broker":true"#), "{stage}: {body}");
    if stage == "ingest" || stage == "reporter" {
        assert!(body.contains(r#""settings":true"#), "{stage}: {body}");
    }

    let (status, _) = http_get(admin, "/healthz").await.unwrap();
    assert_eq!(status, 200, "{stage} /healthz");

    let (status, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(status, 200, "{stage} /metrics");
    assert!(metrics.contains("kafka_broker_up 1"), "{stage}: {metrics}");
    assert!(metrics.contains(&format!(r#"stage="{stage}""#)), "{stage}: {metrics}");
    checks.await;

    shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap_or_else(|_| panic!("{stage} did not stop within 15 s of shutdown"))
        .unwrap();
    result.unwrap_or_else(|e| panic!("{stage} ended with an error: {e:#}"));
    assert!(
        http_get(admin, "/healthz").await.is_err(),
        "{stage} admin listener still up after shutdown"
    );
}

fn args(env: &TestEnv, binary: &str, admin: SocketAddr) -> Vec<String> {
    [
        binary,
        "--bootstrap-servers",
        &env.kafka.bootstrap_servers,
        "--topic-prefix",
        &env.kafka.topic_prefix,
    ]
    .into_iter()
    .map(String::from)
    .chain(["--admin-addr".to_string(), admin.to_string()])
    .collect()
}

#[tokio::test]
async fn the_enricher_becomes_ready_and_stops_on_shutdown() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let admin = free_local_addr();
    let config = enricher::Config::try_parse_from(args(&env, "enricher", admin)).unwrap();
    let shutdown = Shutdown::new();
    stage_serves_admin_and_stops(
        "enricher",
        admin,
        shutdown.clone(),
        enricher::run(config, shutdown),
        async {},
    )
    .await;
}

#[tokio::test]
async fn the_attributor_becomes_ready_and_stops_on_shutdown() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let admin = free_local_addr();
    let config = attributor::Config::try_parse_from(args(&env, "attributor", admin)).unwrap();
    let shutdown = Shutdown::new();
    stage_serves_admin_and_stops(
        "attributor",
        admin,
        shutdown.clone(),
        attributor::run(config, shutdown),
        async {},
    )
    .await;
}

#[tokio::test]
async fn the_reporter_becomes_ready_and_stops_on_shutdown() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let admin = free_local_addr();
    let config = reporter::Config::try_parse_from(args(&env, "reporter", admin)).unwrap();
    let shutdown = Shutdown::new();
    stage_serves_admin_and_stops(
        "reporter",
        admin,
        shutdown.clone(),
        reporter::run(config, shutdown),
        async {},
    )
    .await;
}

#[tokio::test]
async fn ingest_becomes_ready_serves_only_v1_publicly_and_stops_on_shutdown() {
    let env = TestEnv::new().await;
    // Ready means organization settings loaded, which needs their topic.
    env.create_topics().await;
    let admin = free_local_addr();
    let public = free_local_addr();
    let mut argv = args(&env, "ingest", admin);
    argv.extend(["--listen-addr".to_string(), public.to_string()]);
    let config = ingest::Config::try_parse_from(argv).unwrap();
    let shutdown = Shutdown::new();
    let check_public = async move {
        let (status, body) = http_get(public, "/healthz").await.unwrap();
        assert_eq!(status, 404, "health must not be served publicly: {body}");
    };
    stage_serves_admin_and_stops(
        "ingest",
        admin,
        shutdown.clone(),
        ingest::run(config, shutdown),
        check_public,
    )
    .await;
}

#[tokio::test]
async fn a_stage_with_an_unusable_prefix_fails_at_start_with_the_reason() {
    let admin = free_local_addr().to_string();
    let argv = ["reporter", "--topic-prefix", "bad prefix", "--admin-addr", &admin];
    let config = reporter::Config::try_parse_from(argv).unwrap();
    let err = reporter::run(config, Shutdown::new()).await.unwrap_err();
    assert!(format!("{err:#}").contains("topic prefix"), "{err:#}");
}

#[tokio::test]
async fn ingest_without_its_topics_exits_with_the_reason() {
    let env = TestEnv::new().await;
    let (public, admin) = (free_local_addr().to_string(), free_local_addr().to_string());
    let mut argv = args(&env, "ingest", admin.parse().unwrap());
    argv.extend(["--listen-addr".to_string(), public]);
    let config = ingest::Config::try_parse_from(argv).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), ingest::run(config, Shutdown::new()))
        .await
        .unwrap();
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("salesctl topics create"), "{err}");
}

#[tokio::test]
async fn the_reporter_without_its_topics_exits_with_the_reason() {
    // Its settings come first: their missing topic must end the stage, not leave it
    // "starting" for ever.
    let env = TestEnv::new().await;
    let admin = free_local_addr();
    let config = reporter::Config::try_parse_from(args(&env, "reporter", admin)).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), reporter::run(config, Shutdown::new()))
        .await
        .expect("the reporter did not end within 30 s without its topics");
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("salesctl topics create"), "{err}");
}
