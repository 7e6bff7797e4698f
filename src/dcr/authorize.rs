//! `GET /authorize` (validation and the consent page) and `POST /authorize` (the decision).
//!
//! Nothing is stored before approval: the consent form carries the request parameters and an
//! HMAC over them, the expiry and a random value in a `SameSite=Lax` cookie (double submit), so a
//! form posted from another site, or replayed in another browser, is refused. Approval
//! re-validates everything, then creates the upstream transaction and binds it to this browser
//! with a signed cookie that `/auth/callback` checks.

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::Response;
use http::{Extensions, HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use url::Url;

use super::Inner;
use super::cimd::Requester;
use super::client::{self, Client, LookupError};
use super::cookies::CSRF_COOKIE;
use super::errors::store_failure_page;
use super::pages;
use super::rate_limit;
use super::store::Namespace;
use crate::audit;
use crate::oauth::html::{error_page, escape_html, same_origin_post};
use crate::oauth::pkce;
use crate::oauth::response::{redirect_with, see_other};
use crate::oauth::unix_now;

/// The parameters of an authorization request, as received (and echoed by the consent form).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    // Only in the consent form:
    csrf_token: Option<String>,
    decision: Option<String>,
}

/// A request that passed every check.
struct Validated {
    client: Client,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scope: String,
    resource: String,
}

impl Validated {
    /// A canonical digest of everything the user consents to.
    fn digest(&self) -> String {
        let canonical = serde_json::json!([
            self.client.metadata.client_id,
            self.redirect_uri,
            self.state,
            self.code_challenge,
            self.scope,
            self.resource
        ]);
        crate::oauth::sha256_b64url(&canonical.to_string())
    }

    fn page_request(&self) -> pages::Request<'_> {
        pages::Request {
            client: &self.client,
            redirect_uri: &self.redirect_uri,
            scope: &self.scope,
            resource: &self.resource,
        }
    }
}

/// The host's authorization request, as approved: what the code that ends it is bound to.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct HostRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
}

/// An upstream authorization transaction: created on approval, keyed by A3's `state`, single use.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Transaction {
    // Flattened: the stored layout is the same as before the host's request had its own type.
    #[serde(flatten)]
    pub request: HostRequest,
    /// Our PKCE verifier towards A3.
    pub upstream_verifier: String,
}

/// A request that failed validation. It is always answered with an HTML page, never with a
/// redirect: before the user has seen the consent page, redirecting errors to a URI that anyone
/// may register would make this server an open redirector (RFC 9700 §4.11.2). Errors go to the
/// client only after the user's decision (Deny, or A3's answer after approval).
enum Failure {
    /// Cannot be sent to the client.
    Page(StatusCode, &'static str),
    /// A client id that cannot be used, and why.
    Refused(StatusCode, String),
    /// A malformed request from a known client with a registered redirect URI.
    Invalid {
        error: &'static str,
        description: &'static str,
    },
}

impl Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Page(status, message) => error_page(status, message),
            Failure::Refused(status, message) => error_page(status, &message),
            Failure::Invalid { error, description } => error_page(
                StatusCode::BAD_REQUEST,
                &format!("The application sent an invalid request ({error}: {description})."),
            ),
        }
    }
}

pub(crate) fn error_redirect(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
    issuer: &str,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    redirect_with(redirect_uri, &params)
}

async fn validate(inner: &Inner, p: &AuthorizeParams, requester: &Requester) -> Result<Validated, Failure> {
    let Some(client_id) = p
        .client_id
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return Err(Failure::Page(
            StatusCode::BAD_REQUEST,
            "The request has no client_id.",
        ));
    };
    let client = match client::lookup(inner, client_id, requester).await {
        Ok(c) => c,
        Err(LookupError::Unknown) => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                "This application is not registered with this server (or its registration expired). \
                 Remove the server's dynamic authentication provider in your application and connect again.",
            ));
        }
        Err(LookupError::Refused(why)) => {
            return Err(Failure::Refused(
                StatusCode::BAD_REQUEST,
                format!("This application's client id cannot be used with this server: {why}."),
            ));
        }
        Err(LookupError::Unreachable(why)) => {
            return Err(Failure::Refused(
                StatusCode::BAD_GATEWAY,
                format!("This application's metadata document could not be fetched: {why}. Try again later."),
            ));
        }
        Err(LookupError::TooManyFetches) => {
            return Err(Failure::Page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many applications' metadata documents were fetched for you lately. Try again in a minute.",
            ));
        }
        Err(LookupError::Store(e)) => {
            tracing::error!(error = %e, "DCR store failure");
            return Err(Failure::Page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server's storage is unavailable. Try again later.",
            ));
        }
    };
    let redirect_uri = match p.redirect_uri.as_deref() {
        Some(r) if client.metadata.allows_redirect(r) => r.to_owned(),
        Some(_) => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                "The redirect URI is not registered for this application.",
            ));
        }
        None if client.metadata.redirect_uris.len() == 1 => client.metadata.redirect_uris[0].clone(),
        None => {
            return Err(Failure::Page(
                StatusCode::BAD_REQUEST,
                "The request has no redirect_uri.",
            ));
        }
    };
    let state = p.state.clone();
    let fail = |error, description| Failure::Invalid { error, description };
    if state.as_ref().is_some_and(|s| s.len() > 2048) {
        return Err(fail("invalid_request", "state is too long"));
    }
    if p.response_type.as_deref() != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let Some(challenge) = p.code_challenge.as_deref() else {
        return Err(fail(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    if p.code_challenge_method.as_deref() != Some("S256") {
        return Err(fail("invalid_request", "code_challenge_method must be S256"));
    }
    if !pkce::is_s256_challenge(challenge) {
        return Err(fail("invalid_request", "code_challenge is malformed"));
    }
    let resource = match p.resource.as_deref() {
        None | Some("") => inner.resource.clone(),
        Some(r) if same_resource(r, &inner.resource) => inner.resource.clone(),
        Some(_) => return Err(fail("invalid_target", "resource is not this server")),
    };
    let requested = p
        .scope
        .as_deref()
        .unwrap_or("")
        .split_ascii_whitespace()
        .collect::<Vec<_>>();
    let scope = if requested.is_empty() {
        client
            .metadata
            .scope
            .clone()
            .unwrap_or_else(|| inner.scopes.join(" "))
    } else if requested.iter().all(|s| inner.scopes.iter().any(|o| o == s)) {
        let mut unique: Vec<&str> = Vec::new();
        for s in requested {
            if !unique.contains(&s) {
                unique.push(s);
            }
        }
        unique.join(" ")
    } else {
        return Err(fail(
            "invalid_scope",
            "a requested scope is not offered by this server",
        ));
    };
    Ok(Validated {
        client,
        redirect_uri,
        state,
        code_challenge: challenge.to_owned(),
        scope,
        resource,
    })
}

/// Our resource URI, allowing only a trailing-slash difference.
pub(crate) fn same_resource(given: &str, ours: &str) -> bool {
    given == ours || given.trim_end_matches('/') == ours.trim_end_matches('/')
}

pub(crate) async fn show(
    State(inner): State<Arc<Inner>>,
    extensions: Extensions,
    headers: HeaderMap,
    query: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = query else {
        return error_page(StatusCode::BAD_REQUEST, "The authorization request is malformed.");
    };
    let v = match validate(&inner, &p, &client::requester(&extensions, &headers)).await {
        Ok(v) => v,
        Err(f) => return f.into_response(),
    };
    // Reuse this browser's CSRF value if it has a well-formed one, else set a new one.
    let (csrf, set_cookie) = match inner
        .cookies
        .read(&headers, CSRF_COOKIE)
        .filter(|c| c.len() == 43)
    {
        Some(c) => (c, None),
        None => {
            let c = crate::oauth::random_token();
            let cookie = inner.cookies.set(CSRF_COOKIE, &c, Duration::from_secs(24 * 3600));
            (c, Some(cookie))
        }
    };
    let exp = crate::oauth::expiry_after(inner.limits.consent_ttl);
    // A random part makes every consent page's token distinct (each approves once).
    let nonce = crate::oauth::random_token();
    let token = format!(
        "{exp}.{nonce}.{}",
        inner
            .keys
            .sign(&format!("consent|{csrf}|{exp}|{nonce}|{}", v.digest()))
    );
    let mut response = consent_page(&inner, &v, &p, &token);
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The consent page of `v`, with its form's hidden fields.
fn consent_page(inner: &Inner, v: &Validated, p: &AuthorizeParams, csrf_token: &str) -> Response {
    let hidden = |name: &str, value: Option<&str>| match value {
        Some(value) => format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape_html(value)
        ),
        None => String::new(),
    };
    let fields = [
        hidden("client_id", Some(&v.client.metadata.client_id)),
        hidden("redirect_uri", Some(&v.redirect_uri)),
        hidden("response_type", Some("code")),
        hidden("code_challenge", Some(&v.code_challenge)),
        hidden("code_challenge_method", Some("S256")),
        hidden("state", v.state.as_deref()),
        hidden("scope", Some(&v.scope)),
        hidden("resource", p.resource.as_deref().map(|_| v.resource.as_str())),
        hidden("csrf_token", Some(csrf_token)),
    ]
    .concat();
    let origin = |url: &str| Url::parse(url).ok().map(|u| u.origin().ascii_serialization());
    let metadata = &inner.upstream.metadata;
    pages::consent_page(
        &v.page_request(),
        &origin(&metadata.issuer).unwrap_or_default(),
        metadata.authorization_endpoint.as_deref().and_then(origin),
        &fields,
    )
}

pub(crate) async fn decide(
    State(inner): State<Arc<Inner>>,
    extensions: Extensions,
    headers: HeaderMap,
    form: Result<Form<AuthorizeParams>, FormRejection>,
) -> Response {
    let Ok(Form(p)) = form else {
        return error_page(StatusCode::BAD_REQUEST, "The consent form is malformed.");
    };
    if !same_origin_post(&headers, &inner.issuer) {
        audit::consent_refused();
        return error_page(
            StatusCode::FORBIDDEN,
            "This consent was not submitted from this server's page.",
        );
    }
    let Some(csrf) = inner.cookies.read(&headers, CSRF_COOKIE) else {
        audit::consent_refused();
        return error_page(
            StatusCode::FORBIDDEN,
            "The consent form expired or was submitted from another browser. Start again.",
        );
    };
    let v = match validate(&inner, &p, &client::requester(&extensions, &headers)).await {
        Ok(v) => v,
        Err(f) => return f.into_response(),
    };
    let valid_token = p
        .csrf_token
        .as_deref()
        .and_then(|t| t.split_once('.'))
        .and_then(|(exp, rest)| Some((exp, rest.split_once('.')?)))
        .is_some_and(|(exp, (nonce, sig))| {
            exp.parse::<u64>().is_ok_and(|e| e > unix_now())
                && inner
                    .keys
                    .verify(&format!("consent|{csrf}|{exp}|{nonce}|{}", v.digest()), sig)
        });
    if !valid_token {
        audit::consent_refused();
        return error_page(
            StatusCode::FORBIDDEN,
            "The consent form expired or was submitted from another browser. Start again.",
        );
    }
    match p.decision.as_deref() {
        Some("approve") => {}
        Some("deny") => {
            audit::consent(&v.client.metadata.client_id, &v.scope, false);
            return error_redirect(
                &v.redirect_uri,
                v.state.as_deref(),
                "access_denied",
                "the user denied access",
                &inner.issuer,
            );
        }
        _ => return error_page(StatusCode::BAD_REQUEST, "No decision was made."),
    }
    // Approving needs no sign-in and writes a transaction: bounded per address (and origin).
    let (ip, origin) = rate_limit::caller(&extensions, &headers);
    match inner.approve_limiter.take(ip, origin.as_deref()).await {
        Ok(true) => {}
        Ok(false) => {
            let mut page = error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins were started from your network. Wait a minute, then start again \
                 from your application.",
            );
            page.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from(inner.limits.approve_refill.as_secs().max(1)),
            );
            return page;
        }
        Err(e) => return store_failure_page(e),
    }
    // A consent form approves once: replaying the post cannot make us write transactions.
    let consent = crate::oauth::sha256_b64url(p.csrf_token.as_deref().unwrap_or_default());
    if !inner.used_consents.entry(consent).or_insert(()).is_fresh() {
        audit::consent_refused();
        return error_page(
            StatusCode::BAD_REQUEST,
            "This consent was already given. Start again from your application.",
        );
    }
    audit::consent(&v.client.metadata.client_id, &v.scope, true);
    // Approved: only now is anything stored.
    let tx_id = crate::oauth::random_token();
    let (upstream_url, verifier) = inner.upstream.authorize_url(&tx_id, &v.scope, &v.resource);
    let tx = Transaction {
        request: HostRequest {
            client_id: v.client.metadata.client_id.clone(),
            redirect_uri: v.redirect_uri.clone(),
            state: v.state.clone(),
            code_challenge: v.code_challenge.clone(),
            scope: v.scope.clone(),
            resource: v.resource.clone(),
        },
        upstream_verifier: verifier,
    };
    if let Err(e) = inner
        .store
        .put_json(
            Namespace::Transaction,
            &tx_id,
            &tx,
            Some(inner.limits.transaction_ttl),
        )
        .await
    {
        return store_failure_page(e);
    }
    let mut response = see_other(&upstream_url);
    if response.status() != StatusCode::SEE_OTHER {
        return response;
    }
    let binding = inner
        .cookies
        .bind_transaction(&inner.keys, &tx_id, inner.limits.transaction_ttl);
    response.headers_mut().append(header::SET_COOKIE, binding);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_comparison() {
        assert!(same_resource(
            "http://127.0.0.1:8000/mcp",
            "http://127.0.0.1:8000/mcp"
        ));
        assert!(same_resource(
            "http://127.0.0.1:8000/mcp/",
            "http://127.0.0.1:8000/mcp"
        ));
        assert!(!same_resource(
            "http://127.0.0.1:9000/mcp",
            "http://127.0.0.1:8000/mcp"
        ));
    }
}
