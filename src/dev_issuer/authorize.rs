//! `GET /authorize`: the authorization request checked, then the sign-in form, or a code at once
//! when the browser already has a session.
//!
//! Until the client and the redirect URI are known good, an error is a page here; after that it
//! goes back to the client's redirect URI with `state` and `iss`
//! ([RFC 6749 §4.1.2.1](https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1),
//! [RFC 9207](https://www.rfc-editor.org/rfc/rfc9207#section-2)).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::login::{session_user, sign_in_form};
use super::pages::error_page;
use super::state::{AuthRequest, CodeEntry, Shared};
use crate::oauth::form::Params;
use crate::oauth::response::redirect_with;
use crate::oauth::{pkce, random_token, sha256_b64url};

/// Scopes that clients commonly send and that this issuer accepts and ignores.
pub(super) const IGNORED_SCOPES: [&str; 2] = ["openid", "offline_access"];

impl Shared {
    /// Issues a code for `request` and redirects the browser with it, `state` and `iss`.
    pub(super) fn approve(&self, request: AuthRequest, email: String) -> Response {
        let code = random_token();
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
            store.codes.insert(sha256_b64url(&code), entry);
        }
        self.counters.codes.fetch_add(1, Ordering::SeqCst);
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            params.push(("state", state));
        }
        params.push(("iss", self.handle.url()));
        redirect_with(&request.redirect_uri, &params)
    }
}

/// `GET /authorize`.
pub(super) async fn authorize(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    s.counters.authorize.fetch_add(1, Ordering::SeqCst);
    let params = match Params::parse(query.as_deref().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Until the client and redirect URI are known good, errors stay on this page.
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
        redirect_with(&redirect_uri, &p)
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
    if !pkce::is_s256_challenge(code_challenge) {
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
    sign_in_form(&s, request)
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
    use super::super::DevIssuer;
    use super::super::test_support::{get, send};
    use super::*;

    /// The issuer's own query parser dropped empty values before it looked for repeats, so
    /// `state=&state=x` was read as `state=x`; the shared one refuses a parameter sent twice
    /// ([RFC 6749 §3.1](https://www.rfc-editor.org/rfc/rfc6749#section-3.1)), and before the
    /// redirect URI is trusted that is an error page.
    #[tokio::test]
    async fn a_parameter_sent_twice_is_refused_even_when_one_value_is_empty() {
        let dev = DevIssuer::start().await.unwrap();
        let url = dev.authorization_url("st", &DevIssuer::pkce_challenge(&"v".repeat(43)));
        let path = url.strip_prefix(dev.url()).unwrap();
        assert_eq!(send(&dev, get(path)).await.status, 200);
        let reply = send(&dev, get(&format!("{path}&state="))).await;
        assert_eq!(reply.status, 400);
        assert!(!reply.headers.contains_key("location"));
        assert!(reply.body.contains("more than once"), "{}", reply.body);
    }

    /// The issuer's own redirects to the client (with a code, or with an error) set no
    /// referrer policy; the shared ones say `no-referrer`, like the bridge's, so that the URL of
    /// the page that redirects is not sent on.
    #[tokio::test]
    async fn redirects_to_the_client_send_no_referrer() {
        let dev = DevIssuer::start().await.unwrap();
        let url = dev.authorization_url("st", "not-a-challenge");
        let with_error = send(&dev, get(url.strip_prefix(dev.url()).unwrap())).await;
        assert_eq!(with_error.status, 303);
        assert_eq!(with_error.location_query()["error"], "invalid_request");
        assert_eq!(with_error.headers["referrer-policy"], "no-referrer");

        let request = AuthRequest {
            client_id: dev.client_id().to_owned(),
            redirect_uri: dev.redirect_uri().to_owned(),
            redirect_explicit: false,
            state: Some("st".into()),
            code_challenge: DevIssuer::pkce_challenge(&"v".repeat(43)),
            resource: dev.resource().to_owned(),
            scope: dev.scopes().to_vec(),
        };
        let with_code = dev.shared.approve(request, "johndoe@test.com".into());
        assert_eq!(with_code.status(), 303);
        assert_eq!(with_code.headers()["referrer-policy"], "no-referrer");
    }

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
