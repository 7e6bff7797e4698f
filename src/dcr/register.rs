//! `POST /register`: RFC 7591 dynamic client registration of public clients.
//!
//! The body must be JSON (`Content-Type: application/json`, [RFC 7591
//! §3.1](https://www.rfc-editor.org/rfc/rfc7591#section-3.1)): a web page cannot send that
//! cross-site without a CORS preflight, so a form or `text/plain` post is refused with 415.
//! Only registrations that succeed are counted against the rate limit (see `rate_limit`); an
//! invalid body costs a parse and nothing else.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use url::{Host, Url};

use super::errors::store_failure;
use super::store::Namespace;
use super::{Inner, client_lifetime, rate_limit};
use crate::fetch::is_loopback_host;
use crate::oauth::html::visible_text;
use crate::oauth::response::{error_code, oauth_error};
use crate::oauth::unix_now;

/// Most redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI accepted.
const MAX_URI_LEN: usize = 2048;

/// A dynamically registered client, as stored and as echoed by `POST /register` (RFC 7591 §3.2.1).
///
/// ```
/// use a3_mcp_auth::dcr::RegisteredClient;
///
/// let client: RegisteredClient = serde_json::from_value(serde_json::json!({
///     "client_id": "c1", "client_id_issued_at": 0, "redirect_uris": ["http://127.0.0.1:33418/"],
///     "grant_types": ["authorization_code"], "response_types": ["code"],
///     "token_endpoint_auth_method": "none", "application_type": "native"
/// })).unwrap();
/// assert!(client.allows_redirect("http://127.0.0.1:50123/"), "loopback matches on any port");
/// assert!(!client.allows_redirect("http://127.0.0.1:33418/other"));
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisteredClient {
    /// Our client id.
    pub client_id: String,
    /// When it was issued (Unix seconds).
    pub client_id_issued_at: u64,
    /// The name shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's home page, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// The registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `authorization_code` and/or `refresh_token`.
    pub grant_types: Vec<String>,
    /// `code`.
    pub response_types: Vec<String>,
    /// Always `none`: registered clients are public.
    pub token_endpoint_auth_method: String,
    /// `native` or `web`.
    pub application_type: String,
    /// The scope the client registered for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl RegisteredClient {
    /// Whether `redirect_uri` is one of the registered URIs: exact match, or for an http
    /// loopback redirect the same URI (same host, path and query) on any port. That is what
    /// [RFC 8252 §7.3](https://www.rfc-editor.org/rfc/rfc8252#section-7.3) requires for the IP
    /// literals `127.0.0.1` and `[::1]`; `localhost` gets the same, although
    /// [§8.3](https://www.rfc-editor.org/rfc/rfc8252#section-8.3) discourages it, because
    /// Claude Code and Codex publish `http://localhost/callback` and use it on ephemeral ports,
    /// and current browsers resolve `localhost` to loopback themselves (its risks in §8.3 are
    /// the host's: a listener on another interface, a misconfigured resolver). The host never
    /// changes: `127.0.0.1` does not stand for `localhost` or the reverse.
    pub fn allows_redirect(&self, redirect_uri: &str) -> bool {
        if self.redirect_uris.iter().any(|r| r == redirect_uri) {
            return true;
        }
        let Some(wanted) = loopback_without_port(redirect_uri) else {
            return false;
        };
        self.redirect_uris
            .iter()
            .any(|r| loopback_without_port(r).as_ref() == Some(&wanted))
    }
}

/// `http://{loopback host}{path}?{query}` with the port dropped, or `None` if not http to a
/// loopback IP literal or `localhost`.
pub(crate) fn loopback_without_port(uri: &str) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    let loopback = url.host().is_some_and(|h| is_loopback_host(&h));
    if url.scheme() != "http" || !loopback || url.fragment().is_some() {
        return None;
    }
    url.set_port(None).ok()?;
    Some(url.to_string())
}

/// Why a redirect URI is refused.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_URI_LEN {
        return Err("redirect URI too long");
    }
    let url = Url::parse(uri).map_err(|_| "redirect URI is not an absolute URI")?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("redirect URI must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("redirect URI must not contain user info");
    }
    if uri.contains("/../") || uri.contains("/./") || uri.ends_with("/..") || uri.ends_with("/.") {
        return Err("redirect URI must not contain dot segments");
    }
    match url.scheme() {
        "https" => match url.host() {
            Some(_) => Ok(()),
            None => Err("https redirect URI needs a host"),
        },
        "http" => match url.host() {
            Some(h) if is_loopback_host(&h) => Ok(()),
            Some(Host::Domain(_)) | Some(_) => Err("http redirect URIs are allowed only for loopback hosts"),
            None => Err("redirect URI needs a host"),
        },
        // RFC 8252 §7.1: private-use schemes are reverse domain names, so they contain a dot.
        s if s.contains('.') => Ok(()),
        _ => Err(
            "redirect URI scheme not allowed (https, http on loopback, or a private-use scheme like com.example.app)",
        ),
    }
}

#[derive(Deserialize)]
struct RegistrationRequest {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    client_uri: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    application_type: Option<String>,
    scope: Option<String>,
}

fn invalid_metadata(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", description)
}

/// Which limit a `429` answer to a registration hit (in the response's extensions, for the
/// metrics).
#[derive(Clone, Copy, Debug)]
struct LimitHit(&'static str);

fn too_many_registrations(inner: &Inner) -> Response {
    let mut r = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "too many registrations, retry later",
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(inner.limits.register_refill.as_secs().max(1)),
    );
    r.extensions_mut().insert(LimitHit("rate_limited"));
    r
}

/// The registration outcome `response` stands for, as the metrics count it.
fn outcome(response: &Response) -> &'static str {
    match response.status() {
        StatusCode::CREATED => "registered",
        StatusCode::NOT_FOUND => "disabled",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::TOO_MANY_REQUESTS => response
            .extensions()
            .get::<LimitHit>()
            .map_or("rate_limited", |hit| hit.0),
        _ => error_code(response).unwrap_or("invalid_client_metadata"),
    }
}

pub(crate) async fn register(
    State(inner): State<Arc<Inner>>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = handle(&inner, &extensions, &headers, &body).await;
    crate::metrics::registration(outcome(&response));
    response
}

async fn handle(inner: &Inner, extensions: &Extensions, headers: &HeaderMap, body: &[u8]) -> Response {
    if !inner.client_registration.dcr_enabled() {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "dynamic client registration is disabled on this server: identify the client by the https URL of its Client ID Metadata Document instead",
        );
    }
    if !crate::oauth::content_type_is(headers, "application/json") {
        return oauth_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_client_metadata",
            "the body must be JSON client metadata sent as Content-Type: application/json",
        );
    }
    // Browsers always send Origin with a cross-origin (CORS) request; other hosts send none.
    let (ip, origin) = rate_limit::caller(extensions, headers);
    let origin = origin.as_deref();
    match inner.register_limiter.allows(ip, origin).await {
        Ok(true) => {}
        Ok(false) => return too_many_registrations(inner),
        Err(e) => return store_failure(e),
    }
    let request: RegistrationRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return invalid_metadata("the body must be a JSON object of client metadata"),
    };
    let Some(redirect_uris) = request.redirect_uris.filter(|r| !r.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "redirect_uris is required",
        );
    };
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "too many redirect_uris",
        );
    }
    for uri in &redirect_uris {
        if let Err(why) = check_redirect_uri(uri) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_redirect_uri", why);
        }
    }
    let auth_method = request
        .token_endpoint_auth_method
        .unwrap_or_else(|| "none".into());
    if auth_method != "none" {
        return invalid_metadata(
            "only public clients are registered: token_endpoint_auth_method must be none",
        );
    }
    let grant_types = request
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if grant_types.is_empty()
        || grant_types
            .iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return invalid_metadata("grant_types may contain authorization_code and refresh_token only");
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return invalid_metadata("grant_types must include authorization_code");
    }
    let response_types = request.response_types.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return invalid_metadata("response_types may contain code only");
    }
    let application_type = request.application_type.unwrap_or_else(|| "native".into());
    if application_type != "native" && application_type != "web" {
        return invalid_metadata("application_type must be native or web");
    }
    let client_name = match request.client_name {
        Some(n) if n.chars().count() > 200 => return invalid_metadata("client_name is too long"),
        // Stored as it will be shown: invisible and reordering characters gone.
        Some(n) => Some(visible_text(&n)).filter(|n| !n.is_empty()),
        None => None,
    };
    let client_uri = match request.client_uri {
        Some(u) if u.len() > MAX_URI_LEN || !Url::parse(&u).is_ok_and(|u| u.scheme() == "https") => {
            return invalid_metadata("client_uri must be an https URL");
        }
        other => other,
    };
    if let Some(scope) = &request.scope
        && (scope.len() > 1024
            || scope
                .split_ascii_whitespace()
                .any(|s| !inner.scopes.iter().any(|o| o == s)))
    {
        return invalid_metadata("scope contains a scope this server does not offer");
    }
    match inner.store.count(Namespace::Client).await {
        Ok(n) if n >= inner.limits.max_clients => {
            tracing::warn!(
                max = inner.limits.max_clients,
                "refusing registration: client cap reached"
            );
            let mut r = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "registration capacity reached, retry later",
            );
            r.extensions_mut().insert(LimitHit("capacity"));
            return r;
        }
        Ok(_) => {}
        Err(e) => return store_failure(e),
    }
    // Counted only now that the registration is valid and fits.
    match inner.register_limiter.take(ip, origin).await {
        Ok(true) => {}
        Ok(false) => return too_many_registrations(inner),
        Err(e) => return store_failure(e),
    }
    let client = RegisteredClient {
        client_id: crate::oauth::random_token(),
        client_id_issued_at: unix_now(),
        client_name,
        client_uri,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: auth_method,
        application_type,
        scope: request.scope,
    };
    // Until a sign-in completes for it: only a grant extends a client's life.
    if let Err(e) = client_lifetime::store_new(inner, &client.client_id, &client).await {
        return store_failure(e);
    }
    crate::audit::client_registered(&client.client_id, client.client_name.as_deref());
    (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(&client),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://vscode.dev/redirect",
            "https://insiders.vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/",
            "http://localhost:1234/cb",
            "http://[::1]:8/cb",
            "com.example.app:/oauth",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "https://vscode.dev/redirect#frag",
            "https://user:pw@vscode.dev/redirect",
            "https://vscode.dev/a/../redirect",
            "myapp:/cb",
            "not a uri",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_port_variance_only() {
        let c = RegisteredClient {
            client_id: "c".into(),
            client_id_issued_at: 0,
            client_name: None,
            client_uri: None,
            redirect_uris: vec!["http://127.0.0.1/".into(), "https://vscode.dev/redirect".into()],
            grant_types: vec![],
            response_types: vec![],
            token_endpoint_auth_method: "none".into(),
            application_type: "native".into(),
            scope: None,
        };
        assert!(c.allows_redirect("http://127.0.0.1:40000/"));
        assert!(c.allows_redirect("https://vscode.dev/redirect"));
        assert!(!c.allows_redirect("https://vscode.dev:444/redirect"));
        assert!(!c.allows_redirect("http://127.0.0.1:40000/x"));
        assert!(
            !c.allows_redirect("http://localhost:40000/"),
            "host must match too"
        );
        let named = RegisteredClient {
            redirect_uris: vec!["http://localhost/cb".into(), "http://[::1]/cb".into()],
            ..c
        };
        assert!(named.allows_redirect("http://localhost/cb"), "exact match");
        assert!(
            named.allows_redirect("http://localhost:40000/cb"),
            "localhost on any port, as Claude Code and Codex use it"
        );
        assert!(!named.allows_redirect("http://localhost:40000/other"));
        assert!(!named.allows_redirect("http://localhost.example:40000/cb"));
        assert!(!named.allows_redirect("https://localhost:40000/cb"));
        assert!(
            !named.allows_redirect("http://127.0.0.1:40000/cb"),
            "localhost does not stand for 127.0.0.1"
        );
        assert!(named.allows_redirect("http://[::1]:40000/cb"));
    }
}
