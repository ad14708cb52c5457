//! ingest's public connections against clients that do not play fair, over real TCP with
//! the real broker behind: slow and idle clients, a thousand held connections, caps,
//! shutdown with an unfinished request head, protocol errors, and forwarded addresses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sales_tests::{TestEnv, eventually, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::ingest::{RequestsInFlight, RunningIngest, order, settings};

const UNFINISHED_HEAD: &str = "POST /v1/events HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\n";

/// A connection from `local` (any 127.x address) that has sent `sent`.
async fn connect_from(local: IpAddr, to: SocketAddr, sent: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream
}

async fn connect(to: SocketAddr, sent: &[u8]) -> TcpStream {
    connect_from(IpAddr::from([127, 0, 0, 1]), to, sent).await
}

/// Reads until the server closes the connection (or `limit` passes, which fails the
/// test); everything it sent.
async fn until_closed(stream: &mut TcpStream, limit: Duration, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what}: still open after {limit:?}");
    received
}

/// The status and JSON body of one answer in `received`.
fn answer(received: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer in {text:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// The value of a metric line `name` (labels included) in the `/metrics` text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_in_time() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], None)).await;
    let ingest = RunningIngest::start(&env, &["--header-timeout", "2s", "--idle-timeout", "1s"]).await;

    // A connection that never sends a byte.
    let started = Instant::now();
    let mut silent = connect(ingest.public, b"").await;
    until_closed(&mut silent, Duration::from_secs(5), "a silent connection").await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "closed after {waited:?}");

    // A kept-alive connection after its answer.
    let mut kept = connect(ingest.public, b"GET /v1/openapi.json HTTP/1.1\r\nHost: ingest\r\n\r\n").await;
    let received = until_closed(&mut kept, Duration::from_secs(5), "a kept-alive idle connection").await;
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200 "));

    // Slowloris: a header line every 300 ms, so the connection is never idle, but the
    // head is never finished: closed at the header timeout, not when the client stops.
    let started = Instant::now();
    let stream = connect(ingest.public, UNFINISHED_HEAD.as_bytes()).await;
    let (mut reader, mut writer) = stream.into_split();
    let dripping = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer.write_all(format!("X-Drip-{i}: 1\r\n").as_bytes()).await.is_err() {
                return i;
            }
        }
        100
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let waited = started.elapsed();
    assert!(closed.is_ok(), "a slowloris head still open after 8 s");
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(5),
        "a slowloris head closed after {waited:?}, the header timeout is 2 s"
    );
    dripping.abort();

    let metrics = ingest.metrics().await;
    assert!(
        metric(&metrics, r#"ingest_connections_closed_total{reason="idle"}"#) >= Some(2.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, r#"ingest_connections_closed_total{reason="header_timeout"}"#) >= Some(1.0),
        "{metrics}"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_thousand_held_connections_do_not_stop_the_service_and_all_are_closed() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], None)).await;
    let ingest = RunningIngest::start(
        &env,
        &[
            "--header-timeout",
            "6s",
            "--idle-timeout",
            "6s",
            "--max-connections-per-ip",
            "2000",
        ],
    )
    .await;

    let padding = format!("X-Pad: {}", "p".repeat(1000));
    let mut held = Vec::new();
    for _ in 0..1000 {
        held.push(connect(ingest.public, format!("{UNFINISHED_HEAD}{padding}").as_bytes()).await);
    }
    eventually("1,000 connections open", Duration::from_secs(10), || async {
        (metric(&ingest.metrics().await, "ingest_connections_open") == Some(1000.0)).then_some(())
    })
    .await;

    // The service still answers while they are held.
    let accepted = ingest
        .post(&order("c-held", "held-1", "https://shop.example.com/thanks"))
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);

    let deadline = Duration::from_secs(10);
    for (i, stream) in held.iter_mut().enumerate() {
        until_closed(stream, deadline, &format!("held connection {i}")).await;
    }
    eventually("every held connection closed", Duration::from_secs(5), || async {
        (metric(&ingest.metrics().await, "ingest_connections_open") == Some(0.0)).then_some(())
    })
    .await;
    ingest.stop().await;
}

#[tokio::test]
async fn connections_over_a_cap_are_answered_503_at_once() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], None)).await;
    let ingest = RunningIngest::start(&env, &["--max-connections-per-ip", "3", "--max-connections", "5"]).await;
    let (first, second, third) = (
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([127, 0, 0, 2]),
        IpAddr::from([127, 0, 0, 3]),
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(first, ingest.public, UNFINISHED_HEAD.as_bytes()).await);
    }
    eventually("3 connections open", Duration::from_secs(5), || async {
        (metric(&ingest.metrics().await, "ingest_connections_open") == Some(3.0)).then_some(())
    })
    .await;

    let refused_in_time = |local: IpAddr| {
        let public = ingest.public;
        async move {
            let started = Instant::now();
            let mut stream = connect_from(local, public, b"").await;
            let received = until_closed(&mut stream, Duration::from_secs(2), "a refused connection").await;
            (answer(&received), started.elapsed())
        }
    };
    let ((status, body), took) = refused_in_time(first).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (503, Some("too_many_connections"))
    );
    assert!(body["message"].as_str().unwrap().contains("client address"), "{body}");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");

    for _ in 0..2 {
        held.push(connect_from(second, ingest.public, UNFINISHED_HEAD.as_bytes()).await);
    }
    eventually("5 connections open", Duration::from_secs(5), || async {
        (metric(&ingest.metrics().await, "ingest_connections_open") == Some(5.0)).then_some(())
    })
    .await;
    let ((status, body), _) = refused_in_time(third).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (503, Some("too_many_connections"))
    );
    assert!(body["message"].as_str().unwrap().contains("this service"), "{body}");

    // A freed place is taken again.
    drop(held.remove(0));
    eventually("a freed place to be taken", Duration::from_secs(5), || async {
        let mut stream = connect_from(
            first,
            ingest.public,
            b"GET /v1/openapi.json HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n\r\n",
        )
        .await;
        let received = until_closed(&mut stream, Duration::from_secs(5), "a request").await;
        (answer(&received).0 == 200).then_some(())
    })
    .await;
    let metrics = ingest.metrics().await;
    assert_eq!(
        metric(&metrics, r#"ingest_connections_refused_total{reason="per_ip"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, r#"ingest_connections_refused_total{reason="total"}"#) >= Some(1.0),
        "{metrics}"
    );
    drop(held);
    ingest.stop().await;
}

#[tokio::test]
async fn shutdown_with_an_unfinished_head_ends_at_the_drain_deadline_and_loses_no_202() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], Some(100_000)))
        .await;
    let ingest = RunningIngest::start(
        &env,
        &[
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
            "--drain-timeout",
            "2s",
            "--ip-rate",
            "100000",
            "--ip-burst",
            "100000",
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(ingest.public, UNFINISHED_HEAD.as_bytes()).await);
    }
    let in_flight = RequestsInFlight::start(ingest.public, "c-deadline", 40, Duration::from_millis(3));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let took = ingest.stop_within(Duration::from_secs(15)).await;
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a drain timeout of 2 s"
    );
    for (i, stream) in held.iter_mut().enumerate() {
        until_closed(
            stream,
            Duration::from_secs(1),
            &format!("held connection {i} after shutdown"),
        )
        .await;
    }
    in_flight.assert_every_202_is_stored(&env).await;
}

#[tokio::test]
async fn protocol_errors_are_answered_in_json_and_only_http_1_is_served() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], None)).await;
    let ingest = RunningIngest::start(&env, &[]).await;
    let exchange = |sent: Vec<u8>| {
        let public = ingest.public;
        async move {
            let mut stream = connect(public, &sent).await;
            until_closed(&mut stream, Duration::from_secs(15), "a refused request").await
        }
    };

    for garbage in [
        &b"BLAH\r\n\r\n"[..],
        b"GET /v1/openapi.json HTTP/3.0\r\nHost: ingest\r\n\r\n",
        b"GET /v1/openapi.json HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /v1/openapi.json HTTP/1.1\r\nHost: in\x00gest\r\n\r\n",
    ] {
        let (status, body) = answer(&exchange(garbage.to_vec()).await);
        assert_eq!(
            (status, body["error_code"].as_str()),
            (400, Some("bad_request")),
            "{}",
            String::from_utf8_lossy(garbage)
        );
    }
    let huge = format!(
        "GET /v1/openapi.json HTTP/1.1\r\nHost: ingest\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let (status, body) = answer(&exchange(huge.into_bytes()).await);
    assert_eq!((status, body["error_code"].as_str()), (431, Some("headers_too_large")));
    assert!(body["message"].as_str().unwrap().contains("16384"), "{body}");

    // HTTP/2 with prior knowledge is not spoken here: the connection is closed unanswered.
    let preface = exchange(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()).await;
    assert!(preface.is_empty(), "{}", String::from_utf8_lossy(&preface));

    // HTTP/1.0 and HTTP/1.1 are.
    let old = exchange(b"GET /v1/openapi.json HTTP/1.0\r\n\r\n".to_vec()).await;
    assert!(String::from_utf8_lossy(&old).starts_with("HTTP/1.0 200 "));
    let metrics = ingest.metrics().await;
    assert!(
        metric(&metrics, r#"ingest_connections_closed_total{reason="protocol_error"}"#) >= Some(5.0),
        "{metrics}"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn forwarded_addresses_in_every_form_cannot_dodge_the_client_limit() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    env.put_organization(&settings(&["shop.example.com"], Some(100_000)))
        .await;
    // The test is the trusted proxy; each client may send 3 events at once, then 1 a
    // second.
    let ingest = RunningIngest::start(
        &env,
        &["--trusted-proxies", "127.0.0.1", "--ip-rate", "1", "--ip-burst", "3"],
    )
    .await;
    let post_as = |forwarded: String, i: usize| {
        let public = ingest.public;
        async move {
            let body = order("c-xff", &format!("x{i}"), "https://shop.example.com/t").to_string();
            let answer = http(
                public,
                "POST",
                "/v1/events",
                &[("Content-Type", "application/json"), ("X-Forwarded-For", &forwarded)],
                body.as_bytes(),
            )
            .await
            .unwrap();
            assert!(matches!(answer.status, 202 | 429), "{} {}", answer.status, answer.body);
            answer.status == 202
        }
    };
    // Ten requests each, with a different forged entry left of what the proxy wrote.
    let burst = |written: &'static str, offset: usize| {
        let started = Instant::now();
        let post_as = &post_as;
        async move {
            let mut accepted = 0;
            for i in 0..10 {
                if post_as(format!("198.51.100.{i}, {written}"), offset + i).await {
                    accepted += 1;
                }
            }
            (accepted, started.elapsed())
        }
    };
    // Each form names one client, whatever is forged to its left: at most the burst and
    // what the rate added meanwhile is accepted.
    let allowed = |elapsed: Duration| 3 + elapsed.as_secs() as usize + 1;
    for (offset, written) in ["203.0.113.5:4711", "[2001:db8::7]:443", "2001:db8:1::9"]
        .into_iter()
        .enumerate()
    {
        let (accepted, elapsed) = burst(written, offset * 100).await;
        assert!(
            (3..=allowed(elapsed)).contains(&accepted),
            "{written}: {accepted} of 10 accepted"
        );
        if offset == 0 {
            // The same client without its port is the same client, its bucket still
            // empty; another client is not.
            assert!(!post_as("198.51.100.77, 203.0.113.5".into(), 900).await);
            assert!(post_as("198.51.100.77, 203.0.113.6".into(), 901).await);
        }
    }
    // Entries that are not addresses count as the proxy itself: one bucket for all of
    // them, never one per forged entry.
    let mut accepted = 0;
    let started = Instant::now();
    for (offset, written) in ["unknown", "_hidden", "garbage"].into_iter().enumerate() {
        accepted += burst(written, 1000 + offset * 100).await.0;
    }
    assert!(
        accepted <= allowed(started.elapsed()),
        "{accepted} of 30 accepted as the proxy"
    );
    ingest.stop().await;
}
