//! The public listener's connections, each bounded in time, number and memory, since
//! anyone on the internet may open them.
//!
//! - [`admission`]: caps on open connections, in all and per client address; a
//!   connection over a cap is answered 503 at once and closed.
//! - [`idle`]: a connection that sends nothing for the idle timeout is closed.
//! - [`protocol_errors`]: requests hyper refuses before any handler runs still get JSON.
//!
//! Each connection speaks HTTP/1.1 (and 1.0) only, through hyper with a timer, so that
//! its header-read timeout holds: a request head must be complete within it, counted from
//! the moment the connection can take a request. The head is limited in size, which
//! bounds the memory a held connection costs. On shutdown no connection is accepted any
//! more, idle ones are closed, requests in flight are answered, and whatever is still
//! open after the drain timeout is closed: a request that was not answered 202 by then
//! was never promised to be stored, and every 202 was acknowledged by the broker before
//! it was sent.

pub mod admission;
pub mod idle;
pub mod protocol_errors;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use kafka_runtime::shutdown::Shutdown;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::forwarded::ClientAddress;
use crate::limits::client_key;
use admission::{Admission, Refusal};
use idle::Idle;
use protocol_errors::ProtocolErrors;

/// Bounds of every public connection.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Time a client has to send a whole request head, from when the connection can take
    /// a request (opened, or the previous answer sent).
    pub header_timeout: Duration,
    /// Time a connection may send nothing before it is closed; at most `header_timeout`.
    pub idle_timeout: Duration,
    /// Largest request head, in bytes (at least 8192); a larger one gets 431.
    pub head_limit: usize,
    /// Open connections at most, in all.
    pub max_connections: usize,
    /// Open connections at most from one client address (an IPv6 client is its /64);
    /// trusted proxies are bounded by `max_connections` only.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for requests in flight before closing what is left.
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Metrics of the public connections.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    open: Gauge,
    refused: Family<ReasonLabel, Counter>,
    closed: Family<ReasonLabel, Counter>,
}

impl ConnectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ConnectionMetrics {
            open: Gauge::default(),
            refused: Family::default(),
            closed: Family::default(),
        };
        registry.register(
            "ingest_connections_open",
            "Open connections of the public listener",
            metrics.open.clone(),
        );
        registry.register(
            "ingest_connections_refused",
            "Connections refused at once, by the cap they met (total, per_ip)",
            metrics.refused.clone(),
        );
        registry.register(
            "ingest_connections_closed",
            "Connections closed by this side before the client closed them, by reason (idle, header_timeout, protocol_error, drain_deadline)",
            metrics.closed.clone(),
        );
        metrics
    }

    fn closed(&self, reason: &'static str) -> Counter {
        self.closed.get_or_create(&ReasonLabel { reason }).clone()
    }
}

/// Serves `router` on `listener` until shutdown, then drains as described above.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ConnectionSettings,
    clients: ClientAddress,
    metrics: ConnectionMetrics,
    shutdown: Shutdown,
) {
    let admission = Admission::new(settings.max_connections, settings.max_connections_per_ip);
    let (drain, draining) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.requested() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait for connections to close
                // instead of spinning on the error.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        let ticket = match admission.admit(client_key(ip), !clients.is_trusted(ip)) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                refuse(&stream, refusal);
                metrics
                    .refused
                    .get_or_create(&ReasonLabel {
                        reason: refusal.as_str(),
                    })
                    .inc();
                continue;
            }
        };
        let (router, settings, metrics, mut draining) =
            (router.clone(), settings.clone(), metrics.clone(), draining.clone());
        connections.spawn(async move {
            metrics.open.inc();
            serve_connection(stream, peer, router, &settings, &metrics, &mut draining).await;
            metrics.open.dec();
            drop(ticket);
        });
    }
    drop(listener);
    let _ = drain.send(true);
    let open = connections.len();
    let drained = tokio::time::timeout(settings.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let left = connections.len();
        tracing::warn!(
            left,
            drain_timeout = ?settings.drain_timeout,
            "connections still open at the drain deadline are closed"
        );
        for _ in 0..left {
            metrics.closed("drain_deadline").inc();
        }
        connections.shutdown().await;
    } else if open > 0 {
        tracing::info!(connections = open, "every connection drained");
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    settings: &ConnectionSettings,
    metrics: &ConnectionMetrics,
    draining: &mut tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let stream = Idle::new(stream, settings.idle_timeout, metrics.closed("idle"));
    let io = TokioIo::new(ProtocolErrors::new(stream, settings.head_limit));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.head_limit)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let result = if *draining.borrow() {
        connection.as_mut().graceful_shutdown();
        connection.await
    } else {
        tokio::select! {
            result = connection.as_mut() => result,
            _ = draining.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    };
    if let Err(e) = result {
        let reason = if e.is_timeout() {
            "header_timeout"
        } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            "protocol_error"
        } else {
            // The client went away mid-request: nothing to count on this side.
            return;
        };
        metrics.closed(reason).inc();
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

/// Answers a connection over a cap without reading from it, and closes it. The answer
/// fits any fresh socket's send buffer, so a non-blocking write takes it whole; a client
/// that cannot even receive it gets a closed connection.
fn refuse(stream: &TcpStream, refusal: Refusal) {
    let whose = match refusal {
        Refusal::Total => "this service",
        Refusal::PerIp => "this client address",
    };
    let body = crate::api::error_body(
        "too_many_connections",
        &format!("too many open connections to {whose}; retry later"),
        None,
    )
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}
