//! The routes: `/v1/orgs/{org}/…` (every one takes [`crate::auth::Org`]: token checked),
//! `/openapi.json`, the console at `/console/`. Errors are JSON:
//! `{"error_code", "message", "field"}`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use kafka_runtime::shutdown::Shutdown;
use serde_json::{Value, json};

use crate::auth::Org;
use crate::metrics::{ApiMetrics, RequestLabels, RouteLabel};
use crate::tables::notifications::Scope;
use crate::tables::{NotLoaded, Tables};

/// The OpenAPI 3 description of this API, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Longest report range, in days.
const MAX_REPORT_DAYS: i64 = 366;

/// What every handler reads. axum clones the state for every connection and several
/// times a request: everything in it is shared, not copied.
#[derive(Debug, Clone)]
pub struct AppState {
    pub tables: Tables,
    pub verifier: std::sync::Arc<accounts::tokens::Verifier>,
    pub metrics: ApiMetrics,
    pub keepalive: Duration,
    pub shutdown: Shutdown,
    /// Origins whose pages may call the API (CORS).
    pub cors_origins: std::sync::Arc<[String]>,
}

/// An answer that is an error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }
}

impl From<NotLoaded> for ApiError {
    fn from(NotLoaded(table): NotLoaded) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("the {table} table is still being restored; retry shortly"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.code, "message": self.message, "field": self.field });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

type Answer = Result<Response, ApiError>;

/// Every route, with the metrics and CORS layers.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/orgs/{org}/customers/{customer}/orders", get(customer_orders))
        .route("/v1/orgs/{org}/wins", get(wins))
        .route("/v1/orgs/{org}/wins/stream", get(wins_stream))
        .route("/v1/orgs/{org}/notifications", get(org_notifications))
        .route("/v1/orgs/{org}/notifications/stream", get(org_notifications_stream))
        .route("/v1/orgs/{org}/chats/{chat}/notifications", get(chat_notifications))
        .route(
            "/v1/orgs/{org}/chats/{chat}/notifications/stream",
            get(chat_notifications_stream),
        )
        .route("/v1/orgs/{org}/reports", get(reports))
        .route("/v1/orgs/{org}/reports/facets", get(facets));
    Router::new()
        .merge(v1)
        .route("/openapi.json", get(openapi))
        .route("/console", get(crate::console::redirect))
        .route("/console/", get(|| async { crate::console::file("") }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| async move { crate::console::file(&file) }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is served",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .with_state(state)
}

/// Counts every answer by route and status, and times it.
async fn measure(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_seconds
        .get_or_create(&RouteLabel { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// CORS for the configured origins only: their preflights are answered, their answers
/// carry `Access-Control-Allow-Origin`; any other origin gets no CORS headers (and a
/// 403 to a preflight), so a browser keeps its pages out.
async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| state.cors_origins.iter().any(|a| a == o));
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        if allowed {
            StatusCode::NO_CONTENT.into_response()
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this origin may not call the API",
            )
            .into_response()
        }
    } else {
        next.run(request).await
    };
    if let (true, Some(origin)) = (allowed, origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, last-event-id"),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
    response
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn check_id(field: &'static str, value: &str) -> Result<(), ApiError> {
    schemas::validation::customer_id(field, value).map_err(|e| ApiError::invalid(field, e.to_string()))
}

fn last_event_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

/// `GET /v1/orgs/{org}/customers/{customer}/orders`: the sidebar summary; a customer
/// without orders has counts of 0 and empty lists.
async fn customer_orders(
    State(state): State<AppState>,
    Org(org): Org,
    Path((_, customer)): Path<(String, String)>,
) -> Answer {
    check_id("customer", &customer)?;
    let summary = match state.tables.summary(&org, &customer)? {
        Some(bytes) => {
            let mut summary = schemas::codec::decode_json(&bytes)
                .map_err(|e| {
                    tracing::error!(error = %e, "a held summary does not decode");
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the summary cannot be read",
                    )
                })?
                .value;
            crate::money::trim_amounts(&mut summary);
            summary
        }
        None => json!({
            "organization_id": org,
            "customer_id": customer,
            "recent_orders": [],
            "order_count": 0,
            "spend": [],
            "orders_during_chat": 0,
            "orders_after_chat": 0,
            "updated_at": null,
        }),
    };
    Ok(Json(summary).into_response())
}

/// `GET /v1/orgs/{org}/wins`.
async fn wins(State(state): State<AppState>, Org(org): Org) -> Answer {
    Ok(Json(state.tables.wins(&org)?).into_response())
}

/// `GET /v1/orgs/{org}/wins/stream`.
async fn wins_stream(State(state): State<AppState>, Org(org): Org, headers: HeaderMap) -> Answer {
    state.tables.wins(&org)?;
    Ok(crate::streams::wins(&state, org, last_event_id(&headers)))
}

fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let mut limit = 100;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| ApiError::invalid("limit", "limit must be 1 to 1000"))?;
            }
            other => return Err(unknown_parameter(other)),
        }
    }
    Ok(limit)
}

fn unknown_parameter(name: &str) -> ApiError {
    ApiError {
        code: "unknown_parameter",
        ..ApiError::invalid("query", format!("unknown query parameter {name:?}"))
    }
}

fn notification_list(state: &AppState, scope: &Scope, query: Option<&str>) -> Answer {
    let notes = state.tables.recent_notifications(scope, limit(query)?)?;
    // The notes are JSON already: joined, not parsed and printed again.
    let body = format!(
        "{{\"notifications\":[{}]}}",
        notes.iter().map(|n| n.json.as_str()).collect::<Vec<_>>().join(",")
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /v1/orgs/{org}/notifications?limit=`: the organization's recent ones.
async fn org_notifications(State(state): State<AppState>, Org(org): Org, RawQuery(query): RawQuery) -> Answer {
    notification_list(&state, &Scope::Organization(org), query.as_deref())
}

/// `GET /v1/orgs/{org}/chats/{chat}/notifications?limit=`.
async fn chat_notifications(
    State(state): State<AppState>,
    Org(org): Org,
    Path((_, chat)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Answer {
    check_id("chat", &chat)?;
    notification_list(&state, &Scope::Chat(org, chat), query.as_deref())
}

fn notification_stream(state: &AppState, scope: Scope, headers: &HeaderMap) -> Answer {
    let start = state
        .tables
        .start_notifications(&scope, last_event_id(headers).as_deref())?;
    Ok(crate::streams::notifications(state, scope, start))
}

/// `GET /v1/orgs/{org}/notifications/stream`: every chat of the organization.
async fn org_notifications_stream(State(state): State<AppState>, Org(org): Org, headers: HeaderMap) -> Answer {
    notification_stream(&state, Scope::Organization(org), &headers)
}

/// `GET /v1/orgs/{org}/chats/{chat}/notifications/stream`.
async fn chat_notifications_stream(
    State(state): State<AppState>,
    Org(org): Org,
    Path((_, chat)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    check_id("chat", &chat)?;
    notification_stream(&state, Scope::Chat(org, chat), &headers)
}

/// The days of a report request.
fn date(field: &'static str, value: Option<&str>) -> Result<chrono::NaiveDate, ApiError> {
    let value = value.ok_or_else(|| ApiError::invalid(field, format!("{field} (YYYY-MM-DD) is required")))?;
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("{field} {value:?} is not a date (YYYY-MM-DD)")))
}

fn flag(field: &'static str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid(field, format!("{field} must be true or false"))),
    }
}

/// The report query of a request: `from`, `to` (required, at most 366 days),
/// `currency`, `timing`, `team` (repeatable), `ai`, `by_day`.
fn report_query(org: &str, query: Option<&str>) -> Result<(rules::query::Query, bool), ApiError> {
    let (mut from, mut to, mut by_day) = (None, None, true);
    let mut q = rules::query::Query {
        organization_id: org.to_string(),
        ..Default::default()
    };
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*name {
            "from" => from = Some(value.into_owned()),
            "to" => to = Some(value.into_owned()),
            "currency" if value.is_empty() => {}
            "currency" => {
                rules::query::check_currency(&value).map_err(|e| ApiError::invalid("currency", e))?;
                q.currency = Some(value.into_owned());
            }
            "timing" if value.is_empty() => {}
            "timing" => {
                q.timing = Some(rules::query::parse_timing(&value).map_err(|e| ApiError::invalid("timing", e))?)
            }
            "team" => {
                check_id("team", &value)?;
                q.teams.push(rules::query::TeamFilter::parse(&value));
            }
            "ai" => q.ai = flag("ai", &value)?,
            "by_day" => by_day = flag("by_day", &value)?,
            other => return Err(unknown_parameter(other)),
        }
    }
    let (from, to) = (date("from", from.as_deref())?, date("to", to.as_deref())?);
    if from > to {
        return Err(ApiError::invalid("to", format!("to {to} is before from {from}")));
    }
    if (to - from).num_days() >= MAX_REPORT_DAYS {
        return Err(ApiError::invalid(
            "to",
            format!("a report covers at most {MAX_REPORT_DAYS} days"),
        ));
    }
    q.teams.sort();
    q.teams.dedup();
    (q.from, q.to) = (from.to_string(), to.to_string());
    Ok((q, by_day))
}

/// `GET /v1/orgs/{org}/reports?from&to&currency&timing&team&ai&by_day`: the answer
/// `salesctl report --format json` prints for the same filters.
async fn reports(State(state): State<AppState>, Org(org): Org, RawQuery(query): RawQuery) -> Answer {
    let (query, by_day) = report_query(&org, query.as_deref())?;
    let days = state.tables.reports(&org, &query.from, &query.to)?;
    let rates = match query.currency {
        Some(_) => state.tables.rates()?,
        None => Default::default(),
    };
    let mut answer = rules::query::answer(&query, &days, &rates);
    if !by_day {
        answer.days.clear();
    }
    Ok(Json(answer).into_response())
}

/// `GET /v1/orgs/{org}/reports/facets?from&to`: the teams and currencies of those days,
/// for a filter's choices.
async fn facets(State(state): State<AppState>, Org(org): Org, RawQuery(query): RawQuery) -> Answer {
    let (mut from, mut to) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        match &*name {
            "from" => from = Some(value.into_owned()),
            "to" => to = Some(value.into_owned()),
            other => return Err(unknown_parameter(other)),
        }
    }
    let (from, to) = (date("from", from.as_deref())?, date("to", to.as_deref())?);
    let days = state.tables.reports(&org, &from.to_string(), &to.to_string())?;
    let mut teams = std::collections::BTreeSet::new();
    let mut currencies = std::collections::BTreeSet::new();
    for cell in days.iter().flat_map(|d| &d.cells) {
        if let Some(team) = &cell.team_id {
            teams.insert(team.clone());
        }
        currencies.insert(cell.currency.clone());
    }
    let body: Value = json!({ "teams": teams, "currencies": currencies });
    Ok(Json(body).into_response())
}
