//! `GET /.well-known/oauth-authorization-server`: the bridge's authorization server metadata
//! ([RFC 8414 §2](https://www.rfc-editor.org/rfc/rfc8414#section-2)).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::Inner;

/// The metadata document; `issuer` is the public URL, as the protected-resource metadata names
/// it in `authorization_servers`. `client_id_metadata_document_supported` ([MCP authorization
/// 2025-11-25, "Client ID Metadata
/// Documents"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#client-id-metadata-documents))
/// and `registration_endpoint` say which ways of identifying a client are on; hosts that see the
/// first (with `none` among the authentication methods) use their URL and do not register.
pub(crate) fn document(inner: &Inner) -> serde_json::Value {
    let i = &inner.issuer;
    let policy = &inner.client_registration;
    let mut doc = serde_json::json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "revocation_endpoint": format!("{i}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": inner.scopes,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported":
            policy.cimd_enabled() && inner.fetcher.tls_error().is_none(),
    });
    if policy.dcr_enabled() {
        doc["registration_endpoint"] = format!("{i}/register").into();
    }
    doc
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
