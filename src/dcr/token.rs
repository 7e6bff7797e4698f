//! `POST /token`: the `authorization_code` grant (with PKCE) and the `refresh_token` grant (with
//! rotation and reuse detection), RFC 6749 §4.1.3 and §6, OAuth 2.1 §4.3.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::authorize::same_resource;
use super::cimd::Requester;
use super::client::{self, LookupError};
use super::errors::{parse_form, store_failure};
use super::grant::{
    FreshError, Grant, RefreshChain, RefreshUse, RotatedToken, fresh_upstream_locked, grant_named_by,
    lock_grant, put_grant_for, revoke_grant, revoke_grant_locked,
};
use super::store::Namespace;
use super::{Inner, RegisteredClient, crypto};
use crate::audit::{self, Revocation};
use crate::oauth::form::Params;
use crate::oauth::pkce;
use crate::oauth::response::{error_code, oauth_error};
use crate::oauth::unix_now;

/// What an authorization code's hash maps to (single use, short TTL).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct CodeEntry {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub scope: String,
}

/// How long a redeemed code is remembered, to revoke the grant when it is replayed.
const USED_CODE_TTL: Duration = Duration::from_secs(3600);

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

pub(crate) async fn token(
    State(inner): State<Arc<Inner>>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match parse_form(&headers, &body) {
        Ok(f) => f,
        Err(r) => {
            crate::metrics::token_request(None, error_code(&r));
            return *r;
        }
    };
    let requester = client::requester(&extensions, &headers);
    let response = grant(&inner, &form, &requester).await;
    crate::metrics::token_request(form.get("grant_type"), error_code(&response));
    response
}

/// The answer to a token request with the parameters `form`.
async fn grant(inner: &Inner, form: &Params, requester: &Requester) -> Response {
    let field = |name: &str| form.get(name);
    if field("client_secret").is_some() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "registered clients are public and have no secret",
        );
    }
    let Some(client_id) = field("client_id") else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id is required",
        );
    };
    let client = match client::lookup(inner, client_id, requester).await {
        Ok(c) => c.metadata,
        Err(LookupError::Unknown) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
        }
        Err(LookupError::Refused(why)) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &why);
        }
        Err(LookupError::Unreachable(_)) => {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the client's metadata document cannot be fetched right now",
            );
        }
        Err(LookupError::TooManyFetches) => {
            return oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "too many client metadata documents fetched, retry later",
            );
        }
        Err(LookupError::Store(e)) => return store_failure(e),
    };
    if let Some(resource) = field("resource")
        && !same_resource(resource, &inner.resource)
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "resource is not this server",
        );
    }
    match field("grant_type") {
        Some("authorization_code") => authorization_code(inner, &client, &field).await,
        Some("refresh_token") if client.grant_types.iter().any(|g| g == "refresh_token") => {
            refresh(inner, &client, &field).await
        }
        Some("refresh_token") => oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the client did not register refresh_token",
        ),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

async fn authorization_code<'a>(
    inner: &Inner,
    client: &RegisteredClient,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Response {
    let (Some(code), Some(verifier)) = (field("code"), field("code_verifier")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code and code_verifier are required",
        );
    };
    if !pkce::is_verifier(verifier) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code_verifier must be 43 to 128 unreserved characters",
        );
    }
    let key = crate::oauth::sha256_b64url(code);
    let entry: CodeEntry = match inner.store.get_json(Namespace::Code, &key).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            // A replayed code: the first redemption's tokens may be in the wrong hands.
            if let Ok(Some(grant_id)) = inner.store.get_json::<String>(Namespace::UsedCode, &key).await {
                audit::code_replay(&client.client_id, &grant_id);
                revoke_grant(inner, &grant_id, Revocation::CodeReplay).await;
            }
            return invalid_grant("the code is invalid, expired or already used");
        }
        Err(e) => return store_failure(e),
    };
    // Remembered as redeemed before it is consumed, so that a concurrent replay that finds the
    // code gone also finds this record.
    if let Err(e) = inner
        .store
        .put_json(Namespace::UsedCode, &key, &entry.grant_id, Some(USED_CODE_TTL))
        .await
    {
        return store_failure(e);
    }
    match inner.store.take_json::<CodeEntry>(Namespace::Code, &key).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            // Another redemption consumed it between our read and our take.
            audit::code_replay(&client.client_id, &entry.grant_id);
            revoke_grant(inner, &entry.grant_id, Revocation::CodeReplay).await;
            return invalid_grant("the code is invalid, expired or already used");
        }
        Err(e) => return store_failure(e),
    }
    if entry.client_id != client.client_id {
        tracing::warn!(client_id = %client.client_id, "authorization code presented by another client; revoking its grant");
        revoke_grant(inner, &entry.grant_id, Revocation::CodeWrongClient).await;
        return invalid_grant("the code was issued to another client");
    }
    match field("redirect_uri") {
        Some(r) if r == entry.redirect_uri => {}
        None if client.redirect_uris.len() == 1 => {}
        _ => return invalid_grant("redirect_uri does not match the authorization request"),
    }
    if !pkce::verify_s256(verifier, &entry.code_challenge) {
        return invalid_grant("the code_verifier does not match the code_challenge");
    }
    // Serialised with A3 refreshes and revocation of this grant (at any replica); `issue`
    // re-reads it.
    let _guard = match lock_grant(inner, &entry.grant_id).await {
        Ok(g) => g,
        Err(e) => return store_failure(e),
    };
    let refresh = if client.grant_types.iter().any(|g| g == "refresh_token") {
        RefreshPlan::Start
    } else {
        RefreshPlan::None
    };
    match issue(inner, &entry.grant_id, &entry.scope, refresh).await {
        Ok(r) | Err(r) => r,
    }
}

async fn refresh<'a>(
    inner: &Inner,
    client: &RegisteredClient,
    field: &impl Fn(&str) -> Option<&'a str>,
) -> Response {
    let Some(refresh_token) = field("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    let unknown = || invalid_grant("the refresh token is invalid, expired or revoked");
    let named = match grant_named_by(
        inner,
        refresh_token,
        crypto::REFRESH_TOKEN_PREFIX,
        Namespace::RefreshToken,
    )
    .await
    {
        Ok(Some(n)) => n,
        Ok(None) => return unknown(),
        Err(e) => return store_failure(e),
    };
    // One refresh of a grant at a time: rotation, reuse detection, A3's refresh and revocation
    // see each other's writes, and two concurrent uses of one token cannot both mint.
    let _guard = match lock_grant(inner, &named.grant_id).await {
        Ok(g) => g,
        Err(e) => return store_failure(e),
    };
    let grant: Grant = match inner.store.get_json(Namespace::Grant, &named.grant_id).await {
        Ok(Some(g)) => g,
        Ok(None) => return unknown(),
        Err(e) => return store_failure(e),
    };
    if grant.client_id != client.client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    let presented = crate::oauth::sha256_b64url(refresh_token);
    let now = unix_now();
    // Reuse detection comes first: no other error may hide a reuse.
    let plan = match grant.refresh_use(
        &inner.keys,
        &presented,
        named.legacy == Some(true),
        now,
        inner.limits.refresh_grace,
    ) {
        RefreshUse::Current => RefreshPlan::Rotate { presented },
        // A client that lost the response: the same successor, with a new access token.
        RefreshUse::Retry(successor) => RefreshPlan::Resend(successor),
        // A well-formed token we never issued names a grant but proves nothing: whoever learned
        // the grant's id must not be able to end it.
        RefreshUse::Reuse
            if named.legacy.is_none()
                && !inner
                    .keys
                    .issued_grant_token(refresh_token, crypto::REFRESH_TOKEN_PREFIX) =>
        {
            return unknown();
        }
        RefreshUse::Reuse => {
            audit::refresh_reuse(&client.client_id, &grant.id);
            revoke_grant_locked(inner, &grant.id, Revocation::RefreshReuse).await;
            return unknown();
        }
    };
    // Our tokens carry the grant's scope (A3's token behind them decides what is allowed), so a
    // narrower scope could not be enforced: only the grant's own scope may be requested.
    let scope = grant.scope.clone();
    if let Some(s) = field("scope") {
        let requested: std::collections::BTreeSet<&str> = s.split_ascii_whitespace().collect();
        let granted: std::collections::BTreeSet<&str> = scope.split_ascii_whitespace().collect();
        if requested != granted {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the scope must be the grant's scope (narrowing is not supported)",
            );
        }
    }
    if let RefreshPlan::Rotate { .. } = plan {
        // A3's tokens must still be usable (refreshed once if they expired), else the grant is
        // over.
        match fresh_upstream_locked(inner, &grant.id, None).await {
            Ok(_) => {}
            Err(FreshError::Gone) => return invalid_grant("the authorization expired; sign in again"),
            Err(FreshError::Unavailable) => {
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the authorization server is unavailable",
                );
            }
        }
    }
    match issue(inner, &grant.id, &scope, plan).await {
        Ok(r) | Err(r) => r,
    }
}

/// What [`issue`] does about the refresh token.
enum RefreshPlan {
    /// Issues none (the client did not register the `refresh_token` grant).
    None,
    /// Starts the grant's chain with a new refresh token.
    Start,
    /// Replaces the current refresh token (whose hash is `presented`) by a new one, keeping the
    /// replaced one as the previous (for a retry within the grace period).
    Rotate { presented: String },
    /// Answers a retry with the current refresh token again; the chain is unchanged.
    Resend(String),
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
}

/// Mints an access token for the grant and answers with it and the refresh token `refresh`
/// says. `Err` is a failure response, nothing usable having been issued.
///
/// The caller holds the grant's lock. The grant is re-read here and written back with the new
/// token hashes and a later expiry: never a copy read earlier (A3's tokens in it may have been
/// refreshed since), and never a grant that was revoked meanwhile. The grant keeps at most
/// [`MAX_ACCESS_TOKENS`](super::grant::MAX_ACCESS_TOKENS) access tokens and two refresh tokens,
/// however often it is refreshed.
async fn issue(
    inner: &Inner,
    grant_id: &str,
    scope: &str,
    refresh: RefreshPlan,
) -> Result<Response, Response> {
    let limits = &inner.limits;
    let mut grant: Grant = match inner.store.get_json(Namespace::Grant, grant_id).await {
        Ok(Some(g)) => g,
        Ok(None) => return Err(invalid_grant("the authorization was revoked")),
        Err(e) => return Err(store_failure(e)),
    };
    let now = unix_now();
    // Without an A3 refresh token our access token cannot outlive A3's.
    let mut access_ttl = limits.access_token_ttl;
    if let Some(upstream) = grant.open(&inner.keys)
        && upstream.refresh_token.is_none()
    {
        let left = upstream.expires_at.saturating_sub(now).max(1);
        access_ttl = access_ttl.min(Duration::from_secs(left));
    }
    let access_token = inner.keys.grant_token(crypto::ACCESS_TOKEN_PREFIX, &grant.id);
    grant.add_access_token(
        crate::oauth::sha256_b64url(&access_token),
        now.saturating_add(access_ttl.as_secs()),
        now,
    );
    let refreshed = matches!(refresh, RefreshPlan::Rotate { .. } | RefreshPlan::Resend(_));
    let refresh_token = match refresh {
        RefreshPlan::None => None,
        RefreshPlan::Resend(current) => Some(current),
        RefreshPlan::Start => {
            let token = inner.keys.grant_token(crypto::REFRESH_TOKEN_PREFIX, &grant.id);
            grant.refresh = Some(RefreshChain {
                current: crate::oauth::sha256_b64url(&token),
                previous: None,
            });
            Some(token)
        }
        RefreshPlan::Rotate { presented } => {
            let successor = inner.keys.grant_token(crypto::REFRESH_TOKEN_PREFIX, &grant.id);
            grant.refresh = Some(RefreshChain {
                current: crate::oauth::sha256_b64url(&successor),
                previous: Some(RotatedToken {
                    successor: inner.keys.seal(presented.as_bytes(), successor.as_bytes()),
                    hash: presented,
                    rotated_at: now,
                }),
            });
            Some(successor)
        }
    };
    // The grant lives as long as its newest refresh token (and keeps its client as long).
    if let Err(e) = put_grant_for(inner, &grant, limits.refresh_token_ttl).await {
        return Err(store_failure(e));
    }
    if refreshed {
        audit::grant_refreshed(grant.audited());
    } else {
        audit::grant_issued(grant.audited(), scope);
    }
    let body = TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: access_ttl.as_secs(),
        refresh_token,
        scope: scope.to_owned(),
    };
    Ok((
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(body),
    )
        .into_response())
}
