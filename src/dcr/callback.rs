//! `GET /auth/callback`: A3 sends the browser back here after the user signed in.
//!
//! The callback checks the browser binding and A3's answer, redeems A3's code and verifies the
//! access token. On an https public URL it then stores the grant and sends the host our code. On
//! plain http the binding cookie proves nothing (any page on any port of the host can set it), so
//! the user first confirms, on the page this response is, which account goes to which client
//! (see `confirm`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{Extensions, HeaderMap, StatusCode, header};
use serde::Deserialize;

use super::authorize::{HostRequest, Transaction, error_redirect};
use super::grant::{self, Grant};
use super::store::Namespace;
use super::token::CodeEntry;
use super::upstream::UpstreamError;
use super::{Inner, client, confirm, crypto};
use crate::oauth::html::error_page;
use crate::oauth::response::redirect_with;
use crate::verifier::TokenVerifier;

#[derive(Deserialize)]
pub(crate) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

pub(crate) async fn callback(
    State(inner): State<Arc<Inner>>,
    extensions: Extensions,
    headers: HeaderMap,
    query: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return error_page(StatusCode::BAD_REQUEST, "The sign-in response is malformed.");
    };
    let state = p.state.clone().filter(|s| s.len() <= 256);
    let mut response = handle(&inner, &extensions, &headers, p).await;
    // The binding cookie is single use, whatever happened.
    if let Some(state) = state {
        let expired = inner.cookies.unbind_transaction(&state);
        response.headers_mut().append(header::SET_COOKIE, expired);
    }
    response
}

async fn handle(inner: &Inner, extensions: &Extensions, headers: &HeaderMap, p: CallbackParams) -> Response {
    let Some(state) = p.state.as_deref().filter(|s| s.len() <= 256) else {
        return error_page(StatusCode::BAD_REQUEST, "The sign-in response has no state.");
    };
    // The browser that consented holds a cookie naming this transaction, signed by us.
    if !inner.cookies.is_bound(&inner.keys, headers, state) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This sign-in was not started from this browser (no matching consent). Start again from your application.",
        );
    }
    let tx: Transaction = match inner.store.take_json(Namespace::Transaction, state).await {
        Ok(Some(tx)) => tx,
        Ok(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in expired or was already completed. Start again.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "DCR store failure");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server's storage is unavailable. Try again later.",
            );
        }
    };
    let to_client = |error: &str, description: &str| to_host(inner, &tx.request, error, description);
    // RFC 9207: the response must come from A3, not from another server in a mix-up.
    let upstream = &inner.upstream.metadata;
    match p.iss.as_deref() {
        Some(iss) if iss != upstream.issuer => {
            return to_client("access_denied", "the response came from an unexpected issuer");
        }
        None if upstream.authorization_response_iss_parameter_supported => {
            return to_client("access_denied", "the authorization server's response lacks iss");
        }
        _ => {}
    }
    if let Some(error) = p.error.as_deref() {
        let error = match error {
            "access_denied" | "login_required" | "consent_required" | "interaction_required" => {
                "access_denied"
            }
            "temporarily_unavailable" => "temporarily_unavailable",
            _ => "server_error",
        };
        return to_client(error, "the authorization server did not authorize the request");
    }
    let Some(code) = p.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return to_client("server_error", "the authorization server returned no code");
    };
    let tokens = match inner
        .upstream
        .exchange_code(code, &tx.upstream_verifier, &tx.request.resource)
        .await
    {
        Ok(t) => t,
        Err(UpstreamError::Rejected(why)) => {
            tracing::warn!(%why, "A3 refused the authorization code");
            return to_client("access_denied", "the authorization server refused the code");
        }
        Err(e) => {
            tracing::warn!(error = %e, "A3 token request failed");
            return to_client(
                "temporarily_unavailable",
                "the authorization server is unavailable",
            );
        }
    };
    let claims = match inner.a3_verifier.verify(&tokens.access_token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "A3 returned an access token this resource does not accept");
            return to_client(
                "server_error",
                "the authorization server issued an unusable token",
            );
        }
    };
    let mut tokens = tokens;
    if let Some(exp) = claims.expires_at() {
        tokens.expires_at = tokens.expires_at.min(exp);
    }
    let mut grant = Grant {
        id: crate::oauth::random_token(),
        client_id: tx.request.client_id.clone(),
        subject: claims.subject().map(str::to_owned),
        scope: tx.request.scope.clone(),
        resource: tx.request.resource.clone(),
        upstream: Vec::new(),
        redirect_uri: Some(tx.request.redirect_uri.clone()),
    };
    grant.seal(&inner.keys, &tokens);
    if inner.cookies.can_be_planted() {
        // Any page on this host could have planted the binding cookie checked above: the user
        // confirms, on a page only her browser received, which account goes to which client.
        let requester = client::requester(extensions, headers);
        return confirm::ask(inner, tx.request, grant, &claims, &requester).await;
    }
    issue_code(inner, &tx.request, &grant).await
}

/// Stores `grant` and an authorization code for it, and sends the browser back to the host with
/// the code, its `state` and our `iss`: the end of an authorization the user approved.
pub(crate) async fn issue_code(inner: &Inner, request: &HostRequest, grant: &Grant) -> Response {
    let code = crypto::new_token(crypto::CODE_PREFIX);
    let entry = CodeEntry {
        grant_id: grant.id.clone(),
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        resource: request.resource.clone(),
        scope: request.scope.clone(),
    };
    // Until the code is redeemed the grant lives only slightly longer than the code.
    let pending = inner.limits.code_ttl + std::time::Duration::from_secs(60);
    let stored = async {
        grant::store_new_grant(inner, grant, pending).await?;
        inner
            .store
            .put_json(
                Namespace::Code,
                &crate::oauth::sha256_b64url(&code),
                &entry,
                Some(inner.limits.code_ttl),
            )
            .await
    };
    if let Err(e) = stored.await {
        tracing::error!(error = %e, "DCR store failure");
        return to_host(
            inner,
            request,
            "temporarily_unavailable",
            "storage is unavailable",
        );
    }
    tracing::info!(client_id = %request.client_id, "authorized a client");
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = request.state.as_deref() {
        params.push(("state", state));
    }
    params.push(("iss", inner.issuer.as_str()));
    redirect_with(&request.redirect_uri, &params)
}

/// An error response to the host's redirect URI, with its `state` and our `iss`.
pub(crate) fn to_host(inner: &Inner, request: &HostRequest, error: &str, description: &str) -> Response {
    error_redirect(
        &request.redirect_uri,
        request.state.as_deref(),
        error,
        description,
        &inner.issuer,
    )
}
