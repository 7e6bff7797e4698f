//! `POST /token`: the `authorization_code` grant with PKCE and the `refresh_token` grant with
//! rotation ([RFC 6749 §4.1.3](https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3),
//! [§6](https://www.rfc-editor.org/rfc/rfc6749#section-6)), and the client authentication that
//! it and `POST /revoke` share (`client_secret_post` only, like A3's "MCP Host" client).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::authorize::IGNORED_SCOPES;
use super::builder::ClientConfig;
use super::state::{RefreshEntry, Shared};
use crate::oauth::form::Params;
use crate::oauth::response::{no_store, oauth_error};
use crate::oauth::{ct_eq, pkce, random_token, sha256_b64url};

impl Shared {
    /// Mints an access token and a refresh token for the grant; the token response.
    pub(super) fn issue_tokens(
        &self,
        client_id: &str,
        email: &str,
        scope: Vec<String>,
        resource: &str,
        grant: u64,
    ) -> Response {
        let Some(user) = self.user(email) else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the user no longer exists",
            );
        };
        let ttl = self.config.access_ttl.as_secs().max(1);
        let scope_string = scope.join(" ");
        let access_token = self
            .handle
            .token(resource)
            .subject(&user.email)
            .client_id(client_id)
            .scope(&scope_string)
            .claim(&self.config.context_claim, json!(user.contexts))
            .expires_in(ttl as i64)
            .sign();
        let refresh_token = random_token();
        let now = Instant::now();
        {
            let mut store = self.store();
            store.prune(now);
            let entry = RefreshEntry {
                client_id: client_id.to_owned(),
                email: user.email.clone(),
                scope,
                resource: resource.to_owned(),
                grant,
                expires: now + self.config.refresh_ttl,
            };
            store.refresh.insert(sha256_b64url(&refresh_token), entry);
        }
        no_store(
            axum::Json(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "refresh_token": refresh_token,
                "scope": scope_string,
            }))
            .into_response(),
        )
    }
}

/// `POST /token`.
pub(super) async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.counters.token.fetch_add(1, Ordering::SeqCst);
    let params = match form_body(&headers, &body) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    if params.get("grant_type") == Some("refresh_token") {
        s.counters.refresh.fetch_add(1, Ordering::SeqCst);
    }
    let client = match authenticate_client(&s, &headers, &params) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    match params.get("grant_type") {
        Some("authorization_code") => code_grant(&s, client, &params),
        Some("refresh_token") => refresh_grant(&s, client, &params),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
    }
}

pub(super) fn code_grant(s: &Shared, client: &ClientConfig, params: &Params) -> Response {
    let bad = |error, description| oauth_error(StatusCode::BAD_REQUEST, error, description);
    let Some(code) = params.get("code") else {
        return bad("invalid_request", "code is missing");
    };
    let Some(verifier) = params.get("code_verifier") else {
        return bad("invalid_request", "code_verifier is missing");
    };
    let (request, email, grant) = {
        let mut store = s.store();
        store.prune(Instant::now());
        let Some(entry) = store.codes.get_mut(&sha256_b64url(code)) else {
            return bad("invalid_grant", "the authorization code is invalid or expired");
        };
        if entry.request.client_id != client.id {
            return bad(
                "invalid_grant",
                "the authorization code was issued to another client",
            );
        }
        if entry.used {
            // A replayed code revokes what was issued from it (RFC 6749 §4.1.2).
            let grant = entry.grant;
            store.revoke_grant(grant);
            return bad("invalid_grant", "the authorization code was already used");
        }
        entry.used = true;
        (entry.request.clone(), entry.email.clone(), entry.grant)
    };
    match params.get("redirect_uri") {
        Some(uri) if uri == request.redirect_uri => {}
        Some(_) => {
            return bad(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            );
        }
        None if request.redirect_explicit => return bad("invalid_grant", "redirect_uri is missing"),
        None => {}
    }
    if !pkce::verify_s256(verifier, &request.code_challenge) {
        return bad("invalid_grant", "PKCE verification failed");
    }
    if let Some(resource) = params.get("resource")
        && resource != request.resource
    {
        return bad(
            "invalid_target",
            "resource does not match the authorization request",
        );
    }
    s.issue_tokens(&client.id, &email, request.scope, &request.resource, grant)
}

pub(super) fn refresh_grant(s: &Shared, client: &ClientConfig, params: &Params) -> Response {
    let bad = |error, description| oauth_error(StatusCode::BAD_REQUEST, error, description);
    let Some(token) = params.get("refresh_token") else {
        return bad("invalid_request", "refresh_token is missing");
    };
    let key = sha256_b64url(token);
    let entry = {
        let mut store = s.store();
        let now = Instant::now();
        store.prune(now);
        if let Some(&(grant, _)) = store.spent_refresh.get(&key) {
            // A rotated token came back: someone holds a copy. Revoke the whole grant.
            store.revoke_grant(grant);
            return bad("invalid_grant", "the refresh token was already used");
        }
        match store.refresh.get(&key) {
            None => {
                return bad(
                    "invalid_grant",
                    "the refresh token is invalid, expired or revoked",
                );
            }
            Some(entry) if entry.client_id != client.id => {
                return bad("invalid_grant", "the refresh token was issued to another client");
            }
            Some(_) => {}
        }
        let entry = store.refresh.remove(&key).expect("just found");
        store.spent_refresh.insert(key, (entry.grant, entry.expires));
        entry
    };
    let scope = match params.get("scope") {
        None => entry.scope.clone(),
        Some(requested) => {
            let mut narrowed = Vec::new();
            for scope in requested
                .split(' ')
                .filter(|s| !s.is_empty() && !IGNORED_SCOPES.contains(s))
            {
                if !entry.scope.iter().any(|g| g == scope) {
                    return bad("invalid_scope", "scope exceeds the original grant");
                }
                narrowed.push(scope.to_owned());
            }
            if narrowed.is_empty() {
                entry.scope.clone()
            } else {
                narrowed
            }
        }
    };
    if let Some(resource) = params.get("resource")
        && resource != entry.resource
    {
        return bad("invalid_target", "resource does not match the grant");
    }
    s.issue_tokens(&client.id, &entry.email, scope, &entry.resource, entry.grant)
}

/// The form of a token or revocation request, or the `invalid_request` answer.
pub(super) fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Params, Box<Response>> {
    Params::from_request(headers, body).map_err(|e| {
        Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &e.to_string(),
        ))
    })
}

/// `client_secret_post` only: `client_id` and `client_secret` in the body.
pub(super) fn authenticate_client<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'a ClientConfig, Box<Response>> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "));
    let secret = params.get("client_secret");
    if basic && secret.is_some() {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client authentication must use exactly one method",
        )));
    }
    if basic {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this client authenticates with client_secret_post (client_id and client_secret in the body)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dev-issuer\""),
        );
        return Err(Box::new(response));
    }
    let failed = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    };
    let (Some(client_id), Some(secret)) = (params.get("client_id"), secret) else {
        return Err(Box::new(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required (client_secret_post)",
        )));
    };
    let client = s.client(client_id).ok_or_else(|| Box::new(failed()))?;
    if !ct_eq(&client.secret, secret) {
        return Err(Box::new(failed()));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::super::DevIssuer;
    use super::super::test_support::{VERIFIER, code, encode, post, send};

    const FORM: &str = "application/x-www-form-urlencoded";

    /// The issuer's own form parser dropped empty values before it looked for repeats, so
    /// `code=&code=…` redeemed the code. The shared one refuses a parameter sent twice whatever
    /// its values ([RFC 6749 §3.2](https://www.rfc-editor.org/rfc/rfc6749#section-3.2)).
    #[tokio::test]
    async fn a_parameter_sent_twice_is_refused_even_when_one_value_is_empty() {
        let dev = DevIssuer::start().await.unwrap();
        let code = code(&dev);
        let request = |codes: &str| {
            let rest = encode(&[
                ("grant_type", "authorization_code"),
                ("code_verifier", VERIFIER),
                ("redirect_uri", dev.redirect_uri()),
                ("client_id", dev.client_id()),
                ("client_secret", dev.client_secret()),
            ]);
            post("/token", FORM, format!("{codes}&{rest}"))
        };
        let reply = send(&dev, request(&format!("code=&code={code}"))).await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["error"], "invalid_request");
        // The refused request did not spend the code.
        let reply = send(&dev, request(&format!("code={code}"))).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}
