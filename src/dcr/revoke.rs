//! `POST /revoke`: token revocation ([RFC 7009](https://www.rfc-editor.org/rfc/rfc7009)).
//!
//! Revoking one of our access or refresh tokens ends the whole grant behind it (every token of
//! it stops working, RFC 7009 §2.1 allows this) and revokes A3's tokens too.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::errors::{parse_form, store_failure};
use super::grant::{Grant, grant_named_by, revoke_grant};
use super::store::Namespace;
use super::{Inner, crypto};
use crate::audit::Revocation;
use crate::oauth::response::oauth_error;

/// RFC 7009 §2.2: always 200 for well-formed requests, whether or not the token was known.
pub(crate) async fn revoke(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match parse_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    let kind = if token.starts_with(crypto::ACCESS_TOKEN_PREFIX) {
        Some((crypto::ACCESS_TOKEN_PREFIX, Namespace::AccessToken))
    } else if token.starts_with(crypto::REFRESH_TOKEN_PREFIX) {
        Some((crypto::REFRESH_TOKEN_PREFIX, Namespace::RefreshToken))
    } else {
        None
    };
    if let Some((prefix, legacy)) = kind {
        let named = match grant_named_by(&inner, token, prefix, legacy).await {
            Ok(n) => n,
            Err(e) => return store_failure(e),
        };
        if let Some(named) = named {
            match inner
                .store
                .get_json::<Grant>(Namespace::Grant, &named.grant_id)
                .await
            {
                // Only a token the grant honours ends it: naming the grant is not enough.
                Ok(Some(grant))
                    if form.get("client_id").is_none_or(|c| c == grant.client_id)
                        && (named.legacy.is_some()
                            || grant
                                .knows(&crate::oauth::sha256_b64url(token), crate::oauth::unix_now())) =>
                {
                    if named.legacy.is_some() {
                        let _ = inner
                            .store
                            .delete(legacy, &crate::oauth::sha256_b64url(token))
                            .await;
                    }
                    revoke_grant(&inner, &grant.id, Revocation::ClientRevoked).await;
                    tracing::info!(client_id = %grant.client_id, "revoked a grant");
                }
                Ok(_) => {}
                Err(e) => return store_failure(e),
            }
        }
    }
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        StatusCode::OK,
    )
        .into_response()
}
