//! The admin listener (`ADMIN_ADDR`): `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! `/healthz` answers as long as the process serves HTTP. `/readyz` is the conjunction
//! of named checks that the parts of a stage register and keep current (broker
//! reachable, state restored, settings loaded); it answers 503 with the failing checks
//! named, and under `reasons` what each failing check last said (say, the broker error
//! a worker is waiting out), so an operator sees why. `/metrics` is the Prometheus text
//! of the stage's registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::shutdown::Shutdown;

/// Named readiness checks; the stage is ready when every check passes.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, Check>>>,
}

/// A check's state: whether it passes, and why not when it said so.
#[derive(Debug, Clone, Default)]
struct Check {
    ok: bool,
    reason: Option<String>,
}

/// One readiness check, failing until it is set.
#[derive(Debug, Clone)]
pub struct ReadyCheck {
    name: &'static str,
    readiness: Readiness,
}

impl Readiness {
    /// Registers a check named `name`, failing until set.
    pub fn check(&self, name: &'static str) -> ReadyCheck {
        self.lock().insert(name, Check::default());
        ReadyCheck {
            name,
            readiness: self.clone(),
        }
    }

    /// Every check and whether it passes.
    pub fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        self.lock().iter().map(|(name, check)| (*name, check.ok)).collect()
    }

    /// Why each failing check that said so fails.
    pub fn reasons(&self) -> BTreeMap<&'static str, String> {
        self.lock()
            .iter()
            .filter(|(_, check)| !check.ok)
            .filter_map(|(name, check)| Some((*name, check.reason.clone()?)))
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|check| check.ok)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Check>> {
        // A panic elsewhere while holding the lock leaves a plain map behind; still usable.
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ReadyCheck {
    /// Passes or fails, without a reason.
    pub fn set(&self, ok: bool) {
        self.readiness.lock().insert(self.name, Check { ok, reason: None });
    }

    /// Fails, saying why (shown by `/readyz` until the check is set again).
    pub fn fail(&self, reason: impl Into<String>) {
        self.readiness.lock().insert(
            self.name,
            Check {
                ok: false,
                reason: Some(reason.into()),
            },
        );
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The admin routes, on their own so tests can drive them without a socket.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { registry, readiness })
}

/// A bound admin listener. Binding is separate from serving so that a taken port fails
/// the start-up with a clear error instead of a background task dying quietly.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(AdminServer { listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until shutdown is requested.
    pub async fn serve(self, registry: Arc<Registry>, readiness: Readiness, shutdown: Shutdown) -> std::io::Result<()> {
        axum::serve(self.listener, router(registry, readiness))
            .with_graceful_shutdown(async move { shutdown.requested().await })
            .await
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let checks = state.readiness.snapshot();
    let reasons = state.readiness.reasons();
    let ready = checks.values().all(|ok| *ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "ready": ready, "checks": checks, "reasons": reasons })),
    )
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt;

    async fn get_path(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_names_the_failing_check_until_it_passes() {
        let readiness = Readiness::default();
        let broker = readiness.check("broker");
        let app = router(Arc::new(Registry::default()), readiness.clone());

        let (status, body) = get_path(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""broker":false"#), "{body}");

        broker.set(true);
        let (status, body) = get_path(app, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(r#""ready":true"#), "{body}");
    }

    #[tokio::test]
    async fn readyz_says_why_a_check_fails_until_it_passes() {
        let readiness = Readiness::default();
        let state = readiness.check("state");
        let app = router(Arc::new(Registry::default()), readiness.clone());
        state.fail("waiting for the brokers: NOT_ENOUGH_REPLICAS");
        let (status, body) = get_path(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains(r#""reasons":{"state":"waiting for the brokers: NOT_ENOUGH_REPLICAS"}"#),
            "{body}"
        );
        state.set(true);
        let (status, body) = get_path(app, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(r#""reasons":{}"#), "{body}");
    }

    #[tokio::test]
    async fn healthz_answers_even_when_not_ready() {
        let readiness = Readiness::default();
        let _unset = readiness.check("state");
        let (status, _) = get_path(router(Arc::new(Registry::default()), readiness), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("things", "Things seen", counter.clone());
        counter.inc();
        let (status, body) = get_path(router(Arc::new(registry), Readiness::default()), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("things_total 1"), "{body}");
    }
}
