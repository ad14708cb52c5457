//! `GET /v1/widget.js`: the script a store embeds to call
//! `LiveChatWidget.call('track_sales_event', …)` (`widget/sales-widget.js`), compiled
//! into the binary, so the script a store loads is always the one this ingest was built
//! with, and its `ETag` is a hash computed once.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The script, as written in `widget/sales-widget.js`.
pub const SCRIPT: &str = include_str!("../../widget/sales-widget.js");

/// Browsers and CDNs may keep the script 5 minutes without asking again. Its URL carries
/// no version (stores paste it once), so a longer lifetime would hold a fixed script back
/// from every store's pages for that long; after 5 minutes a revalidation costs a `304`
/// without a body, thanks to the `ETag`.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// A strong entity tag: the first 128 bits of the script's SHA-256, in hexadecimal.
pub static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    let digest = Sha256::digest(SCRIPT.as_bytes());
    HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16]))).expect("hex is a valid header value")
});

/// The script, or `304 Not Modified` when `If-None-Match` names its `ETag` (or `*`).
pub async fn script(request_headers: HeaderMap) -> Response {
    let fresh = request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .any(|value| value.to_str().is_ok_and(matches_etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            )],
            SCRIPT,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, ETAG.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    // Pages of any site load it; a site isolated with Cross-Origin-Embedder-Policy
    // needs this to load it at all.
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    // A public file without credentials: a store may load it with `crossorigin` (for
    // Subresource Integrity, or to see its errors in its own error reporting).
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Whether an `If-None-Match` value (a list of entity tags, or `*`) names the script's
/// `ETag`. The comparison is weak, as RFC 9110 asks for this header: `W/"..."` matches
/// too (a CDN that compresses the script may weaken the tag).
fn matches_etag(value: &str) -> bool {
    let ours = ETAG.to_str().expect("the ETag is ASCII");
    value.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == ours
    })
}

/// Any method but `GET` (and `HEAD`, which axum answers from `GET`).
pub async fn method_not_allowed() -> Response {
    crate::api::method_not_allowed_for("/v1/widget.js", "GET", "GET, HEAD")
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new().route("/v1/widget.js", get(script).fallback(method_not_allowed))
    }

    async fn fetch(request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = app().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, body.to_vec())
    }

    fn get_script(if_none_match: Option<&str>) -> Request<Body> {
        let mut request = Request::get("/v1/widget.js");
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn the_script_is_served_as_javascript_cacheable_by_anyone() {
        let (status, headers, body) = fetch(get_script(None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, SCRIPT.as_bytes());
        assert!(SCRIPT.contains("track_sales_event"));
        assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(headers["cross-origin-resource-policy"], "cross-origin");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = headers[header::ETAG].to_str().unwrap();
        // A quoted hash of the content: 32 hex digits.
        assert_eq!(etag.len(), 34, "{etag}");
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert!(etag[1..33].bytes().all(|b| b.is_ascii_hexdigit()), "{etag}");
    }

    #[tokio::test]
    async fn the_etag_is_the_hash_of_the_content_and_stays_the_same() {
        let (_, first, _) = fetch(get_script(None)).await;
        let (_, second, _) = fetch(get_script(None)).await;
        assert_eq!(first[header::ETAG], second[header::ETAG]);
        let digest = Sha256::digest(SCRIPT.as_bytes());
        assert_eq!(
            first[header::ETAG].to_str().unwrap(),
            format!("\"{}\"", hex::encode(&digest[..16]))
        );
    }

    #[tokio::test]
    async fn a_matching_if_none_match_is_304_without_a_body() {
        let etag = ETAG.to_str().unwrap().to_string();
        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"0000\", {etag}"),
            "*".to_string(),
        ] {
            let (status, headers, body) = fetch(get_script(Some(&tag))).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{tag}");
            assert!(body.is_empty(), "{tag}");
            assert_eq!(headers[header::ETAG], etag.as_str());
            assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
        }
    }

    #[tokio::test]
    async fn a_stale_if_none_match_gets_the_script() {
        for tag in ["\"0123456789abcdef0123456789abcdef\"", "W/\"x\"", "garbage"] {
            let (status, _, body) = fetch(get_script(Some(tag))).await;
            assert_eq!(status, StatusCode::OK, "{tag}");
            assert_eq!(body, SCRIPT.as_bytes());
        }
    }

    #[tokio::test]
    async fn head_has_the_headers_and_other_methods_are_405() {
        let head = Request::head("/v1/widget.js").body(Body::empty()).unwrap();
        let (status, headers, body) = fetch(head).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_empty());
        assert_eq!(headers[header::ETAG], *ETAG);

        let post = Request::post("/v1/widget.js").body(Body::empty()).unwrap();
        let (status, headers, body) = fetch(post).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error_code"], "method_not_allowed");
    }
}
