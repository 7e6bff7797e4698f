//! A3 stand-in: a login form with a cookie session (a second /authorize skips the login, as a
//! real identity provider's session does), a token endpoint enforcing `client_secret_post`,
//! PKCE, the exact redirect URI and `resource`, refresh, revocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use a3_mcp_auth::testing::TestIssuer;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "proxy-client";
pub const CLIENT_SECRET: &str = "proxy-secret";

pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

pub fn random() -> String {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

// A3 stand-in: login form with a cookie session (a second /authorize skips the login), token
// endpoint enforcing client_secret_post + PKCE + exact redirect + resource, refresh, revoke.

struct Pending {
    user: String,
    redirect_uri: String,
    challenge: String,
    resource: String,
    scope: String,
}

#[derive(Default)]
pub struct StubState {
    issuer: OnceLock<Weak<TestIssuer>>,
    codes: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, String>>,
    refresh: Mutex<HashMap<String, (String, String, String)>>,
    pub revoked: Mutex<Vec<String>>,
    pub access_ttl: AtomicI64,
    pub refreshes: AtomicU64,
    pub code_exchanges: AtomicU64,
    /// When set, refreshed access tokens are issued for this subject instead.
    pub refresh_subject: Mutex<Option<String>>,
    /// Every code, access token and refresh token issued, for tests that check none leaks.
    pub issued: Mutex<Vec<String>>,
}

pub struct Upstream {
    pub issuer: Arc<TestIssuer>,
    pub state: Arc<StubState>,
}

impl Upstream {
    pub async fn start() -> Self {
        let state = Arc::new(StubState {
            access_ttl: AtomicI64::new(300),
            ..Default::default()
        });
        let routes = Router::new()
            .route("/authorize", get(up_authorize))
            .route("/login", post(up_login))
            .route("/token", post(up_token))
            .route("/revoke", post(up_revoke))
            .with_state(state.clone());
        let issuer = Arc::new(TestIssuer::start_with(routes).await);
        let _ = state.issuer.set(Arc::downgrade(&issuer));
        Upstream { issuer, state }
    }

    pub fn url(&self) -> &str {
        self.issuer.url()
    }
}

fn contexts(user: &str) -> Value {
    match user {
        "janedoe@test.com" => json!({"operation": ["addition", "multiplication"]}),
        _ => json!({"operation": ["addition"]}),
    }
}

fn issue_code(state: &StubState, user: &str, q: &HashMap<String, String>) -> Response {
    let code = random();
    state.issued.lock().unwrap().push(code.clone());
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    state.codes.lock().unwrap().insert(
        code.clone(),
        Pending {
            user: user.to_owned(),
            redirect_uri: redirect_uri.clone(),
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            resource: q.get("resource").cloned().unwrap_or_default(),
            scope: q.get("scope").cloned().unwrap_or_default(),
        },
    );
    let iss = state
        .issuer
        .get()
        .and_then(Weak::upgrade)
        .map(|i| i.url().to_owned())
        .unwrap_or_default();
    let mut url = url::Url::parse(&redirect_uri).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map(String::as_str).unwrap_or(""))
        .append_pair("iss", &iss);
    Redirect::to(url.as_str()).into_response()
}

fn session_user(state: &StubState, headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let sid = cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix("a3sid="))
        .next()?;
    state.sessions.lock().unwrap().get(sid).cloned()
}

async fn up_authorize(
    State(state): State<Arc<StubState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    uri: http::Uri,
) -> Response {
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || !q
            .get("redirect_uri")
            .is_some_and(|r| r.ends_with("/auth/callback"))
        || !q.contains_key("resource")
        || !q.contains_key("state")
    {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    if let Some(user) = session_user(&state, &headers) {
        return issue_code(&state, &user, &q); // silent re-authorization, like a real IdP session
    }
    let query = uri.query().unwrap_or_default().replace('&', "&amp;");
    Html(format!(
        "<form method=\"post\" action=\"/login?{query}\"><input name=\"email\"><input name=\"password\" type=\"password\"></form>"
    ))
    .into_response()
}

async fn up_login(
    State(state): State<Arc<StubState>>,
    Query(q): Query<HashMap<String, String>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let user = f.get("email").cloned().unwrap_or_default();
    if f.get("password").map(String::as_str) != Some("secret") {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let sid = random();
    state.sessions.lock().unwrap().insert(sid.clone(), user.clone());
    let mut r = issue_code(&state, &user, &q);
    r.headers_mut().insert(
        header::SET_COOKIE,
        format!("a3sid={sid}; Path=/; HttpOnly").parse().unwrap(),
    );
    r
}

fn token_error(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

fn mint(state: &StubState, user: &str, resource: &str, scope: &str) -> Response {
    let issuer = state.issuer.get().and_then(Weak::upgrade).unwrap();
    let ttl = state.access_ttl.load(Ordering::SeqCst);
    let at = issuer
        .token(resource)
        .subject(user)
        .client_id(CLIENT_ID)
        .scope(scope)
        .claim("contexts", contexts(user))
        .expires_in(ttl)
        .sign();
    let rt = random();
    state.issued.lock().unwrap().extend([at.clone(), rt.clone()]);
    state.refresh.lock().unwrap().insert(
        rt.clone(),
        (user.to_owned(), resource.to_owned(), scope.to_owned()),
    );
    axum::Json(json!({"access_token": at, "token_type": "Bearer", "expires_in": ttl, "refresh_token": rt, "scope": scope}))
        .into_response()
}

async fn up_token(State(state): State<Arc<StubState>>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            state.code_exchanges.fetch_add(1, Ordering::SeqCst);
            let Some(p) = state
                .codes
                .lock()
                .unwrap()
                .remove(f.get("code").map(String::as_str).unwrap_or(""))
            else {
                return token_error("invalid_grant");
            };
            if f.get("redirect_uri") != Some(&p.redirect_uri)
                || f.get("code_verifier").map(|v| s256(v)) != Some(p.challenge.clone())
                || f.get("resource") != Some(&p.resource)
            {
                return token_error("invalid_grant");
            }
            mint(&state, &p.user, &p.resource, &p.scope)
        }
        Some("refresh_token") => {
            state.refreshes.fetch_add(1, Ordering::SeqCst);
            let Some((user, resource, scope)) = state
                .refresh
                .lock()
                .unwrap()
                .remove(f.get("refresh_token").map(String::as_str).unwrap_or(""))
            else {
                return token_error("invalid_grant");
            };
            let user = state.refresh_subject.lock().unwrap().clone().unwrap_or(user);
            mint(&state, &user, &resource, &scope)
        }
        _ => token_error("unsupported_grant_type"),
    }
}

async fn up_revoke(
    State(state): State<Arc<StubState>>,
    Form(f): Form<HashMap<String, String>>,
) -> StatusCode {
    if let Some(t) = f.get("token") {
        state.refresh.lock().unwrap().remove(t);
        state.revoked.lock().unwrap().push(t.clone());
    }
    StatusCode::OK
}
