//! The dashboard: one self-contained HTML page (no CDN, works offline) served from the binary.

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("dashboard.html");

pub(crate) async fn page(headers: HeaderMap) -> Response {
    if let Some(denied) = super::access::locked(&headers, super::access::Challenge::Browser) {
        return denied;
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:"),
        ],
        PAGE,
    )
        .into_response()
}
