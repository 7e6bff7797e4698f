//! `GET /.well-known/oauth-authorization-server`: the bridge's authorization server metadata
//! ([RFC 8414 §2](https://www.rfc-editor.org/rfc/rfc8414#section-2)).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::Inner;

/// The metadata document; `issuer` is the public URL, as the protected-resource metadata names
/// it in `authorization_servers`.
pub(crate) fn document(inner: &Inner) -> serde_json::Value {
    let i = &inner.issuer;
    serde_json::json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "registration_endpoint": format!("{i}/register"),
        "revocation_endpoint": format!("{i}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": inner.scopes,
        "authorization_response_iss_parameter_supported": true,
    })
}

pub(crate) async fn handler(State(inner): State<Arc<Inner>>) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        )],
        axum::Json(document(&inner)),
    )
        .into_response()
}
