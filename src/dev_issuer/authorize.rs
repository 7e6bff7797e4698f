//! `GET /authorize`: the authorization request (RFC 6749 §4.1.1) checked, then the sign-in form,
//! or a code at once when the browser has a session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::helpers::{Params, hash, is_base64url, random_token, redirect_to};
use super::login::{PENDING_TTL, session_user};
use super::pages::{error_page, login_page};
use super::state::{AuthRequest, CodeEntry, Pending, Shared};

/// Scopes that clients commonly send and that this issuer accepts and ignores.
pub(super) const IGNORED_SCOPES: [&str; 2] = ["openid", "offline_access"];

impl Shared {
    /// Issues a code for `request` and redirects the browser with it.
    pub(super) fn approve(&self, request: AuthRequest, email: String) -> Response {
        let code = random_token(32);
        let now = Instant::now();
        {
            let mut store = self.store();
            store.prune(now);
            store.next_grant += 1;
            let grant = store.next_grant;
            let entry = CodeEntry {
                request: request.clone(),
                email,
                grant,
                expires: now + self.config.code_ttl,
                used: false,
            };
            store.codes.insert(hash(&code), entry);
        }
        self.counters.codes.fetch_add(1, Ordering::SeqCst);
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            params.push(("state", state));
        }
        params.push(("iss", self.handle.url()));
        redirect_to(&request.redirect_uri, &params)
    }
}

pub(super) async fn authorize(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    s.counters.authorize.fetch_add(1, Ordering::SeqCst);
    let params = match Params::parse(query.as_deref().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    // Until the client and redirect URI are known good, errors stay on this page (RFC 6749 §4.1.2.1).
    let Some(client_id) = params.get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "client_id is missing");
    };
    let Some(client) = s.client(client_id) else {
        return error_page(StatusCode::BAD_REQUEST, &format!("unknown client {client_id:?}"));
    };
    let (redirect_uri, redirect_explicit) = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
        Some(uri) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("redirect_uri {uri:?} is not registered for client {client_id:?}"),
            );
        }
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => return error_page(StatusCode::BAD_REQUEST, "redirect_uri is missing"),
    };
    let state = params.get("state").map(str::to_owned);
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if let Some(state) = &state {
            p.push(("state", state));
        }
        p.push(("iss", s.handle.url()));
        redirect_to(&redirect_uri, &p)
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        None => return fail("invalid_request", "response_type is missing"),
    }
    let Some(code_challenge) = params.get("code_challenge") else {
        return fail("invalid_request", "code_challenge is required (PKCE)");
    };
    if params.get("code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if code_challenge.len() != 43 || !code_challenge.bytes().all(is_base64url) {
        return fail(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 digest",
        );
    }
    match params.get("resource") {
        Some(r) if r == s.config.resource => {}
        Some(_) => return fail("invalid_target", "resource is not a resource of this issuer"),
        None => return fail("invalid_target", "resource is required for this client"),
    }
    let scope = match granted_scope(&s.config.scopes, params.get("scope")) {
        Ok(scope) => scope,
        Err(e) => return fail("invalid_scope", &e),
    };
    let prompts: Vec<&str> = params
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|p| !p.is_empty())
        .collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        );
    }
    let request = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        redirect_explicit,
        state: state.clone(),
        code_challenge: code_challenge.to_owned(),
        resource: s.config.resource.clone(),
        scope,
    };

    if !prompts.contains(&"login")
        && let Some(email) = session_user(&s, &headers)
    {
        return s.approve(request, email);
    }
    if prompts.contains(&"none") {
        return fail("login_required", "the user is not signed in");
    }
    let id = random_token(24);
    let now = Instant::now();
    {
        let mut store = s.store();
        store.prune(now);
        store.pending.insert(
            id.clone(),
            Pending {
                request: request.clone(),
                expires: now + PENDING_TTL,
                failures: 0,
            },
        );
    }
    login_page(StatusCode::OK, &id, &request, "", None)
}

/// The scopes granted for a requested `scope` parameter: a subset of `supported`, all of them
/// when none is requested; `openid` and `offline_access` are ignored.
pub(super) fn granted_scope(supported: &[String], requested: Option<&str>) -> Result<Vec<String>, String> {
    let mut granted = Vec::new();
    for scope in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if IGNORED_SCOPES.contains(&scope) {
            continue;
        }
        if !supported.iter().any(|s| s == scope) {
            return Err(format!("scope {scope:?} is not a scope of this resource"));
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    if granted.is_empty() {
        granted = supported.to_vec();
    }
    Ok(granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_a_subset_of_scopes_or_all() {
        let supported = vec!["mcp:call".to_owned(), "mcp:admin".to_owned()];
        assert_eq!(granted_scope(&supported, None).unwrap(), supported);
        assert_eq!(
            granted_scope(&supported, Some("openid offline_access")).unwrap(),
            supported
        );
        assert_eq!(
            granted_scope(&supported, Some("mcp:admin mcp:admin")).unwrap(),
            ["mcp:admin"]
        );
        assert!(granted_scope(&supported, Some("mcp:call other")).is_err());
    }
}
