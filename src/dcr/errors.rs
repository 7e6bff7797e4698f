//! What the bridge's JSON endpoints (`/register`, `/token`, `/revoke`) answer alike: a body that
//! is not a usable form, and a store that is unavailable (RFC 6749 §5.2 JSON errors); and what
//! its browser pages answer when the store is unavailable.

use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::store::StoreError;
use crate::oauth::form::Params;
use crate::oauth::html::error_page;
use crate::oauth::response::oauth_error;

/// The form of a token or revocation request, or the `invalid_request` answer.
pub(crate) fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Params, Box<Response>> {
    Params::from_request(headers, body).map_err(|e| {
        Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &e.to_string(),
        ))
    })
}

/// 503 `temporarily_unavailable`: the store failed (logged here; the answer names no detail).
pub(crate) fn store_failure(e: StoreError) -> Response {
    tracing::error!(error = %e, "DCR store failure");
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "storage is unavailable, retry later",
    )
}

/// The page a browser gets when the store failed (logged here; the page names no detail).
pub(crate) fn store_failure_page(e: StoreError) -> Response {
    tracing::error!(error = %e, "DCR store failure");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server's storage is unavailable. Try again later.",
    )
}
