//! `POST /revoke`: revocation of refresh tokens
//! ([RFC 7009](https://www.rfc-editor.org/rfc/rfc7009#section-2)). Access tokens are
//! self-contained JWTs and cannot be revoked; like unknown tokens, they are answered with 200
//! ([RFC 7009 §2.2](https://www.rfc-editor.org/rfc/rfc7009#section-2.2)).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::Shared;
use super::token::{authenticate_client, form_body};
use crate::oauth::response::{no_store, oauth_error};
use crate::oauth::sha256_b64url;

/// `POST /revoke`.
pub(super) async fn revoke(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.counters.revoke.fetch_add(1, Ordering::SeqCst);
    let params = match form_body(&headers, &body) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let client = match authenticate_client(&s, &headers, &params) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let Some(token) = params.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is missing");
    };
    let key = sha256_b64url(token);
    let mut store = s.store();
    if store.refresh.get(&key).is_some_and(|r| r.client_id == client.id) {
        store.refresh.remove(&key);
    }
    // Unknown tokens (and access tokens, which are self-contained) are a success too.
    no_store(StatusCode::OK.into_response())
}
