//! Every `/v1` request carries `Authorization: Bearer <JWT>` whose organization claim
//! must be the organization in the path (checked by [`accounts::tokens::Verifier`]);
//! a refusal is a JSON error, 401 or 403, counted by reason.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use crate::routes::{ApiError, AppState};

/// The organization `{org}` of the path, once the request's token allows it and it is
/// a well-formed id: what every `/v1` handler takes first.
#[derive(Debug, Clone)]
pub struct Org(pub String);

impl FromRequestParts<AppState> for Org {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let no_org = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no organization in the path");
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| no_org())?;
        let org = params
            .iter()
            .find(|(name, _)| *name == "org")
            .map(|(_, value)| value.to_string())
            .ok_or_else(no_org)?;
        authorize(state, &parts.headers, &org)?;
        schemas::validation::organization_id("org", &org).map_err(|e| ApiError::invalid("org", e.to_string()))?;
        Ok(Org(org))
    }
}

/// Checks that the request's token allows `organization`.
pub fn authorize(state: &AppState, headers: &HeaderMap, organization: &str) -> Result<(), ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok());
    state.verifier.allows(header, organization).map_err(|refusal| {
        state
            .metrics
            .auth_refusals
            .get_or_create(&crate::metrics::ReasonLabel { reason: refusal.code() })
            .inc();
        let status = axum::http::StatusCode::from_u16(refusal.status()).unwrap_or(axum::http::StatusCode::UNAUTHORIZED);
        ApiError::new(status, refusal.code(), refusal.to_string())
    })
}
