//! The public routes (`/v1/*`): `POST /v1/events`, its CORS preflight, the OpenAPI
//! document and the store's script (`GET /v1/widget.js`, in [`crate::widget`]). Every
//! answer but the script is JSON, errors included, with an `error_code` a store's
//! developer can act on; internals never leak into an answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::validation::quoted;
use schemas::values::Timestamp;
use serde_json::json;

use crate::forwarded::ClientAddress;
use crate::identity::{self, IdentityKeys, Refusal};
use crate::limits::{Rate, RateLimits, retry_after_seconds};
use crate::metrics::{IngestMetrics, OrganizationLabel, RequestLabels};
use crate::request::{ParsedEvent, Rejection, parse_event_with_host};
use accounts::settings::Organizations;

/// The OpenAPI 3 description of this API, served at `GET /v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Bounds of the public API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest accepted body, in bytes.
    pub body_limit: usize,
    /// How long the broker has to acknowledge an event before the answer is 503.
    pub ack_timeout: Duration,
    /// How long a client has to send its body. It does not bound the wait for the
    /// broker, which has `ack_timeout`: an event may be written by then, and 408 would
    /// read as "not received".
    pub request_timeout: Duration,
    /// Who the client behind a connection is.
    pub clients: ClientAddress,
}

/// Everything a request needs.
pub struct Ingest {
    pub producer: FutureProducer,
    pub topic: String,
    pub organizations: Organizations,
    /// The keys customer signatures are checked with.
    pub identity_keys: IdentityKeys,
    pub limits: RateLimits,
    pub metrics: IngestMetrics,
    pub settings: ApiSettings,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("topic", &self.topic)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The public router: `/v1/*` only; anything else is a JSON 404.
pub fn router(state: Arc<Ingest>) -> Router {
    Router::new()
        .route(
            "/v1/events",
            post(post_event).options(preflight).fallback(method_not_allowed),
        )
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/widget.js",
            get(crate::widget::script).fallback(crate::widget::method_not_allowed),
        )
        .fallback(not_found)
        .with_state(state)
}

/// An error answer: `{"error_code", "message", "field"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// The event's id, on a 503 once the body has been read: a client whose event got
    /// its id from the server retries with it, so the event is still counted once.
    pub event_id: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            event_id: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn event_id(mut self, event_id: &str) -> Self {
        self.event_id = Some(event_id.to_string());
        self
    }

    fn unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the event could not be stored in time; retry with the same event_id",
        )
        .retry_after(5)
    }

    /// Organization settings are still being read at start-up: whether the organization
    /// exists is not known yet, and a 422 would tell the client to give up on the event.
    fn settings_loading() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service is starting and cannot check organizations yet; retry with the same event_id",
        )
        .retry_after(2)
    }

    fn rate_limited(wait: Duration, whose: &str) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many events from this {whose}; retry later"),
        )
        .retry_after(retry_after_seconds(wait))
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: r.code.as_str(),
            message: r.message,
            field: r.field,
            retry_after: None,
            event_id: None,
        }
    }
}

/// The body of every error answer, also of those written below the router (a refused
/// connection, a request hyper could not parse): `{"error_code", "message", "field"}`.
pub(crate) fn error_body(code: &str, message: &str, field: Option<&str>) -> serde_json::Value {
    json!({ "error_code": code, "message": message, "field": field })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = error_body(self.code, &self.message, self.field.as_deref());
        if let Some(event_id) = self.event_id {
            body["event_id"] = json!(event_id);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

async fn post_event(State(state): State<Arc<Ingest>>, request: Request) -> Response {
    let started = Instant::now();
    // A connected website of any organization may read the answer: a page that cannot
    // read a 4xx or 503 cannot tell what went wrong or when to retry. The organization's
    // own check comes later, in `accept`.
    let origin = request.headers().get(header::ORIGIN).cloned();
    let connected = origin
        .clone()
        .filter(|origin| origin_host(origin).is_some_and(|host| state.organizations.any_connected(&host)));
    let (status, code, mut response) = match accept(&state, request).await {
        Ok(event_id) => {
            let mut response = (StatusCode::ACCEPTED, axum::Json(json!({ "event_id": event_id }))).into_response();
            allow_origin(response.headers_mut(), connected);
            (StatusCode::ACCEPTED, "none", response)
        }
        Err(Refused { error, foreign_origin }) => {
            let (status, code) = (error.status, error.code);
            let mut response = error.into_response();
            if !foreign_origin {
                allow_origin(response.headers_mut(), connected);
            } else if code == "website_not_connected"
                && let Some(origin) = origin
            {
                // Any origin may read why it was refused, and only that: the store's
                // developer on a website never connected (or connected to another
                // organization) learns it from the console instead of a bare CORS
                // error. The body says no more than the request did (the organization it
                // named, the origin it came from); no header is exposed.
                response
                    .headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
            (status, code, response)
        }
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Origin"));
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            status: status.as_u16(),
            error_code: code,
        })
        .inc();
    state
        .metrics
        .acceptance_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Why a request was not accepted.
struct Refused {
    error: ApiError,
    /// The request's `Origin` is not a connected website of the organization it names.
    /// The answer then echoes that origin only on the `website_not_connected` refusal
    /// itself, without exposing any header: a page of another organization's website
    /// must not read another organization's answers, only why it was refused.
    foreign_origin: bool,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused {
            error,
            foreign_origin: false,
        }
    }
}

/// Validates, checks and publishes one event; the accepted event's id.
async fn accept(state: &Ingest, request: Request) -> Result<String, Refused> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |ConnectInfo(addr)| addr.ip());
    let ip = state.settings.clients.of(peer, request.headers());
    state
        .limits
        .check_ip(ip)
        .map_err(|wait| ApiError::rate_limited(wait, "client"))?;

    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let bytes = tokio::time::timeout(
        state.settings.request_timeout,
        read_body(body, &parts.headers, state.settings.body_limit),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body was not received in time; send it again",
        )
    })??;
    let ParsedEvent {
        mut event,
        page_host,
        customer_signature,
    } = parse_event_with_host(&bytes, Timestamp::from_datetime(chrono::Utc::now())).map_err(ApiError::from)?;

    if !state.organizations.is_loaded() {
        return Err(ApiError::settings_loading().event_id(&event.event_id).into());
    }
    let org = state.organizations.get(&event.organization_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_organization",
            format!("organization {:?} is not known here", event.organization_id),
        )
        .field("organization_id")
    })?;
    let origin = parts.headers.get(header::ORIGIN);
    let foreign_origin = origin.is_some_and(|origin| !origin_host(origin).is_some_and(|host| org.is_connected(&host)));
    let not_connected = |field: Option<&str>, what: String| {
        state
            .metrics
            .website_not_connected
            .get_or_create(&OrganizationLabel {
                organization: event.organization_id.clone(),
            })
            .inc();
        let error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "website_not_connected",
            format!(
                "{what} is not a connected website of organization {}; connect it in the organization's settings",
                event.organization_id
            ),
        );
        Refused {
            error: ApiError {
                field: field.map(str::to_string),
                ..error
            },
            foreign_origin,
        }
    };
    if !org.is_connected(&page_host) {
        return Err(not_connected(
            Some("page.url"),
            format!("the page host {}", quoted(&page_host)),
        ));
    }
    if let Some(origin) = origin
        && foreign_origin
    {
        return Err(not_connected(
            None,
            format!("the Origin {}", quoted(origin.to_str().unwrap_or("?"))),
        ));
    }

    // Before the organization's rate limit, so events refused here do not use it up.
    event.identity_verified = identity::check(
        &org.identity,
        &state.identity_keys,
        &event.organization_id,
        &event.customer_id,
        customer_signature.as_deref(),
    )
    .map_err(|refusal| identity_refused(state, &event.organization_id, &event.event_id, refusal))?;

    let own = org.rate_limit.map(|(per_second, burst)| Rate { per_second, burst });
    state
        .limits
        .check_org(&event.organization_id, own)
        .map_err(|wait| ApiError::rate_limited(wait, "organization"))?;

    let key = schemas::keys::org_customer(&event.organization_id, &event.customer_id);
    let value = schemas::encode(&event).map_err(|e| {
        // Validation guarantees an encodable event; if not, it is our defect, not the client's.
        tracing::error!(error = %e, "a validated event did not encode");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the event could not be stored because of a fault of this service; retry later with the same event_id",
        )
    })?;
    publish(state, &key, &value)
        .await
        .map_err(|e| e.event_id(&event.event_id))?;
    Ok(event.event_id)
}

/// The answer to an event whose customer signature does not let it in: 422 for the
/// client's fault; 503 when a key the organization's settings name is not in the keys
/// file, a fault of the deployment, logged and counted, which the client may retry.
fn identity_refused(state: &Ingest, organization_id: &str, event_id: &str, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Invalid(message) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field("customer_signature")
        }
        Refusal::KeyUnavailable { key_id } => {
            tracing::error!(
                organization = organization_id,
                key_id = key_id.as_deref().unwrap_or("(none named)"),
                "a customer signature cannot be checked: the organization's settings name a key the identity keys file (INGEST_IDENTITY_KEYS_FILE) does not hold"
            );
            state
                .metrics
                .identity_key_missing
                .get_or_create(&OrganizationLabel {
                    organization: organization_id.to_string(),
                })
                .inc();
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the customer's signature cannot be checked at the moment; retry later with the same event_id",
            )
            .retry_after(30)
            .event_id(event_id)
        }
    }
}

/// Hands the event to the producer and waits for the broker's acknowledgement (acks=all);
/// only then may the answer be 202.
async fn publish(state: &Ingest, key: &str, value: &[u8]) -> Result<(), ApiError> {
    let record = FutureRecord::to(&state.topic).key(key).payload(value);
    let delivery = state.producer.send_result(record).map_err(|(e, _)| {
        tracing::warn!(error = %e, "producer refused an event");
        ApiError::unavailable()
    })?;
    // The producer's own message timeout equals ack_timeout; the extra second only
    // guards against a delivery report that never comes.
    match tokio::time::timeout(state.settings.ack_timeout + Duration::from_secs(1), delivery).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err((e, _)))) => {
            tracing::warn!(error = %e, "broker did not acknowledge an event");
            Err(ApiError::unavailable())
        }
        Ok(Err(_)) | Err(_) => Err(ApiError::unavailable()),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("application/json") => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type must be application/json, got {}",
                other.map_or("none".to_string(), quoted)
            ),
        )),
    }
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "malformed_json",
                "the body could not be read",
            )
        }
    })
}

fn origin_host(origin: &HeaderValue) -> Option<String> {
    let url = url::Url::parse(origin.to_str().ok()?).ok()?;
    url.host_str().map(str::to_ascii_lowercase)
}

/// Lets the page at `origin` read the answer, `Retry-After` included (a script sees only
/// CORS-safelisted headers unless told otherwise, and it needs this one to back off).
fn allow_origin(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
}

/// CORS preflight. It carries no body, so no organization: any origin may send the POST,
/// which then decides what the page may read (a connected website: every answer; any
/// other origin: only a `website_not_connected` refusal, so a page on a website never
/// connected learns why instead of meeting a bare CORS error).
async fn preflight(headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = headers.get(header::ORIGIN) {
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response_headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        response_headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type"),
        );
        response_headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn method_not_allowed() -> Response {
    method_not_allowed_for("/v1/events", "POST", "POST, OPTIONS")
}

/// `405 method_not_allowed` for `path`, whose methods are `allow` (`use_method` is the
/// one the message names).
pub(crate) fn method_not_allowed_for(path: &str, use_method: &str, allow: &'static str) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {use_method} for {path}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

#[cfg(test)]
mod tests {
    //! The HTTP answers that do not need the broker. Accepted events (202) and the
    //! broker's failures are tested against a real broker in `tests/tests/it/ingest.rs`.

    use axum::http::Request as HttpRequest;
    use rdkafka::ClientConfig;
    use schemas::records::OrganizationSettings;
    use schemas::samples::Sample;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use accounts::settings::OrgSettings;

    fn state(ip_rate: Rate) -> Arc<Ingest> {
        let organizations = Organizations::default();
        organizations.insert("org_8d2f", OrgSettings::from_record(&OrganizationSettings::sample()));
        organizations.mark_loaded();
        let producer = ClientConfig::new()
            // Nothing listens here: these tests never reach the broker.
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.timeout.ms", "100")
            .create()
            .unwrap();
        Arc::new(Ingest {
            producer,
            topic: "sales.events.raw".into(),
            organizations,
            identity_keys: IdentityKeys::default(),
            limits: RateLimits::new(
                ip_rate,
                Rate {
                    per_second: 100,
                    burst: 200,
                },
            ),
            metrics: IngestMetrics::register(&mut prometheus_client::registry::Registry::default()),
            settings: ApiSettings {
                body_limit: 1024,
                ack_timeout: Duration::from_millis(100),
                request_timeout: Duration::from_secs(5),
                clients: ClientAddress::new(&[], crate::forwarded::ForwardedHeader::XForwardedFor),
            },
        })
    }

    /// `state` with another bound on reading the body.
    fn with_request_timeout(state: Arc<Ingest>, request_timeout: Duration) -> Arc<Ingest> {
        let mut ingest = Arc::into_inner(state).unwrap();
        ingest.settings.request_timeout = request_timeout;
        Arc::new(ingest)
    }

    fn generous() -> Rate {
        Rate {
            per_second: 1000,
            burst: 1000,
        }
    }

    fn event() -> Value {
        json!({
            "organization_id": "org_8d2f",
            "customer_id": "c-5e1b2a",
            "page": { "url": "https://shop.example.com/p/crew" },
            "name": "store_product_added_to_cart",
            "data": { "cart_lines": [ { "total_price": 149.99, "currency": "USD", "quantity": 1,
                "product": { "id": "123456789", "title": "Merino Wool Crew Neck" } } ] }
        })
    }

    fn post(body: &Value) -> HttpRequest<Body> {
        HttpRequest::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    async fn answer(app: Router, request: HttpRequest<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = app.oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_by_content_type_is_415() {
        let request = HttpRequest::post("/v1/events")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        let (status, _, body) = answer(router(state(generous())), request).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"))
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_whether_or_not_it_declares_its_length() {
        let big = json!({ "pad": "x".repeat(2000) });
        let (status, _, body) = answer(router(state(generous())), post(&big)).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
        );
        let streamed = HttpRequest::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(futures_stream(big.to_string())))
            .unwrap();
        let (status, _, _) = answer(router(state(generous())), streamed).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// A body sent in chunks without a Content-Length, as a client streaming it would.
    fn futures_stream(text: String) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            text.into_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
        futures::stream::iter(chunks)
    }

    #[tokio::test]
    async fn a_payload_problem_is_422_with_code_message_and_field() {
        let mut body = event();
        body["data"]["cart_lines"][0]["quantity"] = json!(0);
        let (status, _, answer) = answer(router(state(generous())), post(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer["error_code"], "invalid_field");
        assert_eq!(answer["field"], "data.cart_lines[0].quantity");
        assert!(answer["message"].as_str().unwrap().contains("at least 1"));
    }

    #[tokio::test]
    async fn an_unknown_organization_is_422() {
        let mut body = event();
        body["organization_id"] = json!("org_nobody");
        let (status, _, answer) = answer(router(state(generous())), post(&body)).await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_organization"))
        );
        assert_eq!(answer["field"], "organization_id");
    }

    #[tokio::test]
    async fn while_settings_load_an_unknown_organization_is_503_not_422() {
        let state = state(generous());
        let loading = Organizations::default();
        let state = Arc::new(Ingest {
            organizations: loading.clone(),
            ..Arc::into_inner(state).unwrap()
        });
        let mut body = event();
        body["organization_id"] = json!("org_nobody");
        let (status, headers, reply) = answer(router(Arc::clone(&state)), post(&body)).await;
        assert_eq!(
            (status, reply["error_code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
        );
        assert!(headers.contains_key(header::RETRY_AFTER));
        // A payload problem is still a payload problem: it does not depend on settings.
        body["data"]["cart_lines"][0]["quantity"] = json!(0);
        let (status, _, _) = answer(router(Arc::clone(&state)), post(&body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        loading.mark_loaded();
        body["data"]["cart_lines"][0]["quantity"] = json!(1);
        let (status, _, reply) = answer(router(state), post(&body)).await;
        assert_eq!(
            (status, reply["error_code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_organization"))
        );
    }

    #[tokio::test]
    async fn a_page_on_another_website_is_loudly_refused_and_counted() {
        let state = state(generous());
        let mut body = event();
        body["page"]["url"] = json!("https://badexample.com/p/crew");
        let (status, _, answer) = answer(router(Arc::clone(&state)), post(&body)).await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("website_not_connected"))
        );
        assert_eq!(answer["field"], "page.url");
        let counted = state
            .metrics
            .website_not_connected
            .get_or_create(&OrganizationLabel {
                organization: "org_8d2f".into(),
            })
            .get();
        assert_eq!(counted, 1);
    }

    #[tokio::test]
    async fn a_foreign_browser_origin_is_refused_even_with_a_connected_page() {
        let mut request = post(&event());
        request
            .headers_mut()
            .insert(header::ORIGIN, HeaderValue::from_static("https://evil.example.org"));
        let (status, headers, answer) = answer(router(state(generous())), request).await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("website_not_connected"))
        );
        // The page may read its refusal (it once could not, and its developer saw only
        // a CORS error), but no header beyond the body.
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://evil.example.org");
        assert!(headers.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
    }

    #[tokio::test]
    async fn a_connected_origin_is_echoed_even_on_a_broker_failure() {
        let mut request = post(&event());
        request
            .headers_mut()
            .insert(header::ORIGIN, HeaderValue::from_static("https://shop.example.com"));
        let (status, headers, answer) = answer(router(state(generous())), request).await;
        // No broker listens: the event cannot be acknowledged in time.
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
        );
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example.com");
        assert_eq!(headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "Retry-After");
    }

    #[tokio::test]
    async fn a_body_that_arrives_too_slowly_is_408() {
        use futures::StreamExt;

        let state = with_request_timeout(state(generous()), Duration::from_millis(100));
        let text = event().to_string();
        let (head, tail) = text.split_at(10);
        let chunks = vec![(0, head.to_string()), (500, tail.to_string())];
        let slow = futures::stream::iter(chunks).then(|(delay, chunk)| async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok::<_, std::io::Error>(chunk)
        });
        let request = HttpRequest::post("/v1/events")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(slow))
            .unwrap();
        let (status, _, body) = answer(router(state), request).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (StatusCode::REQUEST_TIMEOUT, Some("request_timeout"))
        );
    }

    #[tokio::test]
    async fn the_wait_for_the_broker_is_not_cut_short_by_the_request_timeout() {
        // The body arrives at once; the broker (unreachable here) takes longer than the
        // request timeout to fail. The answer is the broker's 503, never a 408 that
        // would read as "not received" for an event that may have been written.
        let state = with_request_timeout(state(generous()), Duration::from_millis(10));
        let mut body = event();
        body["event_id"] = json!("0B7E4C1E-1F39-4C9A-9D0E-3F0C2B7A9E11");
        let (status, _, reply) = answer(router(Arc::clone(&state)), post(&body)).await;
        assert_eq!(
            (status, reply["error_code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
        );
        assert_eq!(reply["event_id"], "0b7e4c1e-1f39-4c9a-9d0e-3f0c2b7a9e11");

        // Without an event_id of its own, the client learns the one to retry with.
        let (_, _, reply) = answer(router(state), post(&event())).await;
        assert!(
            uuid::Uuid::parse_str(reply["event_id"].as_str().unwrap()).is_ok(),
            "{reply}"
        );
    }

    fn with_origin(mut request: HttpRequest<Body>, origin: &'static str) -> HttpRequest<Body> {
        request
            .headers_mut()
            .insert(header::ORIGIN, HeaderValue::from_static(origin));
        request
    }

    #[tokio::test]
    async fn a_connected_origin_can_read_answers_given_before_the_organization_is_known() {
        let state = state(Rate {
            per_second: 1,
            burst: 3,
        });
        let origin = "https://shop.example.com";
        let mut invalid = event();
        invalid["data"]["cart_lines"][0]["quantity"] = json!(0);
        let mut unknown = event();
        unknown["organization_id"] = json!("org_nobody");
        let text = HttpRequest::post("/v1/events")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        for (request, status) in [
            (text, StatusCode::UNSUPPORTED_MEDIA_TYPE),
            (post(&invalid), StatusCode::UNPROCESSABLE_ENTITY),
            (post(&unknown), StatusCode::UNPROCESSABLE_ENTITY),
            (post(&unknown), StatusCode::TOO_MANY_REQUESTS),
        ] {
            let (got, headers, body) = answer(router(Arc::clone(&state)), with_origin(request, origin)).await;
            assert_eq!(got, status, "{body}");
            assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin, "{body}");
            assert_eq!(headers[header::ACCESS_CONTROL_EXPOSE_HEADERS], "Retry-After");
            assert_eq!(headers[header::VARY], "Origin");
        }
    }

    #[tokio::test]
    async fn another_organizations_website_reads_only_the_refusal_of_its_origin() {
        let state = state(generous());
        state.organizations.insert(
            "org_other",
            OrgSettings {
                websites: vec!["other-shop.example.net".into()],
                rate_limit: None,
                timezone: "UTC".into(),
                identity: Default::default(),
            },
        );
        let request = with_origin(post(&event()), "https://other-shop.example.net");
        let (status, headers, body) = answer(router(Arc::clone(&state)), request).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("website_not_connected"))
        );
        // It once could not read even this; the refusal tells it nothing it did not send
        // (the organization it named, its own origin), so it may read the body, and no
        // header beyond it.
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://other-shop.example.net"
        );
        assert!(headers.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());
        assert_eq!(headers[header::VARY], "Origin");

        // Any other answer to another organization's origin stays unreadable to it.
        let mut invalid = event();
        invalid["data"]["cart_lines"][0]["quantity"] = json!(0);
        let request = with_origin(post(&invalid), "https://www.other-shop.example.net");
        let (status, headers, _) = answer(router(Arc::clone(&state)), request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://www.other-shop.example.net",
            "a connected website of some organization reads payload problems, as before"
        );

        // The organization's own website may read why its page URL was refused.
        let mut elsewhere = event();
        elsewhere["page"]["url"] = json!("https://other-shop.example.net/p/crew");
        let request = with_origin(post(&elsewhere), "https://shop.example.com");
        let (status, headers, body) = answer(router(state), request).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("page.url"))
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example.com");
    }

    #[tokio::test]
    async fn a_client_over_its_rate_gets_429_with_retry_after() {
        let state = state(Rate {
            per_second: 1,
            burst: 2,
        });
        let mut body = event();
        body["organization_id"] = json!("org_nobody");
        for _ in 0..2 {
            let (status, _, _) = answer(router(Arc::clone(&state)), post(&body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        }
        let (status, headers, answer) = answer(router(state), post(&body)).await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
        );
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn an_origin_connected_nowhere_reads_its_website_refusal_and_nothing_else() {
        let state = state(generous());
        let origin = "https://never-connected.example";
        let mut on_that_site = event();
        on_that_site["page"]["url"] = json!("https://never-connected.example/thanks");
        let (status, headers, body) =
            answer(router(Arc::clone(&state)), with_origin(post(&on_that_site), origin)).await;
        assert_eq!(
            (status, body["error_code"].as_str(), body["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("website_not_connected"),
                Some("page.url")
            )
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert!(headers.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none());

        let mut invalid = on_that_site.clone();
        invalid["data"]["cart_lines"][0]["quantity"] = json!(0);
        let mut unknown = on_that_site.clone();
        unknown["organization_id"] = json!("org_nobody");
        let text = HttpRequest::post("/v1/events")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .unwrap();
        for (request, expected) in [
            (post(&invalid), StatusCode::UNPROCESSABLE_ENTITY),
            (post(&unknown), StatusCode::UNPROCESSABLE_ENTITY),
            (text, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ] {
            let (status, headers, body) = answer(router(Arc::clone(&state)), with_origin(request, origin)).await;
            assert_eq!(status, expected, "{body}");
            assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{body}");
            assert!(headers.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).is_none(), "{body}");
            assert_eq!(headers[header::VARY], "Origin");
        }
    }

    #[tokio::test]
    async fn preflight_allows_any_origin_to_post_json() {
        let preflight = |origin: &'static str| {
            HttpRequest::options("/v1/events")
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .unwrap()
        };
        let (status, headers, _) = answer(router(state(generous())), preflight("https://www.shop.example.com")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://www.shop.example.com"
        );
        assert!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("Content-Type")
        );
        // An origin connected nowhere may send the POST too (it once could not): the
        // POST answers it only with its `website_not_connected` refusal, which its page
        // can then read instead of a bare CORS error.
        let (status, headers, _) = answer(router(state(generous())), preflight("https://evil.example.org")).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://evil.example.org");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "POST, OPTIONS");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_HEADERS], "Content-Type");
        assert_eq!(headers[header::VARY], "Origin");
        // Without an Origin it is no CORS request: nothing to allow.
        let bare = HttpRequest::options("/v1/events").body(Body::empty()).unwrap();
        let (status, headers, _) = answer(router(state(generous())), bare).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[tokio::test]
    async fn other_methods_and_paths_get_json_errors() {
        let (status, headers, body) = answer(
            router(state(generous())),
            HttpRequest::get("/v1/events").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
        );
        assert_eq!(headers[header::ALLOW], "POST, OPTIONS");
        let (status, _, body) = answer(
            router(state(generous())),
            HttpRequest::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
    }

    #[tokio::test]
    async fn the_openapi_document_is_served_and_lists_every_error_code() {
        let (status, _, body) = answer(
            router(state(generous())),
            HttpRequest::get("/v1/openapi.json").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["openapi"].as_str().unwrap().starts_with("3."));
        let codes = body["components"]["schemas"]["Error"]["properties"]["error_code"]["enum"].to_string();
        for code in [
            "malformed_json",
            "missing_field",
            "invalid_field",
            "unknown_event",
            "unknown_organization",
            "website_not_connected",
            "payload_too_large",
            "unsupported_media_type",
            "rate_limited",
            "unavailable",
            "not_found",
            "method_not_allowed",
            "request_timeout",
            "internal_error",
            "too_many_connections",
            "bad_request",
            "headers_too_large",
            "uri_too_long",
        ] {
            assert!(codes.contains(code), "{code} missing from {codes}");
        }
    }
}
