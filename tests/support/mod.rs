//! Shared fixtures of the DCR end-to-end tests: an A3 stand-in, our server, a headless browser.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

#[path = "../../examples/server.rs"]
#[allow(dead_code, clippy::all)]
mod server;

use a3_mcp_auth::A3Config;
use a3_mcp_auth::config::A3ConfigBuilder;
use a3_mcp_auth::dcr::store::Store;
use a3_mcp_auth::dcr::{DcrBridge, DcrBridgeBuilder};
use a3_mcp_auth::testing::TestIssuer;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use http::{HeaderMap, StatusCode, header};
use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::transport::auth::{AuthClient, AuthorizationManager, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use serde_json::{Value, json};
use server::{McpSettings, mcp_app};

pub const CLIENT_ID: &str = "proxy-client";
pub const CLIENT_SECRET: &str = "proxy-secret";

pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ))
}

fn random() -> String {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

// ---------------------------------------------------------------------------------------------
// A3 stand-in: login form with a cookie session (a second /authorize skips the login), token
// endpoint enforcing client_secret_post + PKCE + exact redirect + resource, refresh, revoke.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Our MCP server: the DCR bridge beside an rmcp service behind BearerAuthLayer.
// ---------------------------------------------------------------------------------------------

pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    pub bridge: DcrBridge,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.url)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_server(
    upstream: &Upstream,
    store: impl Store,
    tweak: impl FnOnce(DcrBridgeBuilder) -> DcrBridgeBuilder,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, upstream, store, tweak).await
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    upstream: &Upstream,
    store: impl Store,
    tweak: impl FnOnce(DcrBridgeBuilder) -> DcrBridgeBuilder,
) -> Server {
    serve_bridge(listener, upstream.url(), CLIENT_ID, CLIENT_SECRET, store, tweak).await
}

/// Our server on `listener`, bridging to the A3-like issuer at `issuer_url` with the given client.
pub async fn serve_bridge(
    listener: tokio::net::TcpListener,
    issuer_url: &str,
    client_id: &str,
    client_secret: &str,
    store: impl Store,
    tweak: impl FnOnce(DcrBridgeBuilder) -> DcrBridgeBuilder,
) -> Server {
    serve_bridge_with_policy(listener, issuer_url, client_id, client_secret, store, None, tweak).await
}

/// [`serve_bridge`] with a tool policy other than the calculator's (as `TOOL_POLICY` gives it).
pub async fn serve_bridge_with_policy(
    listener: tokio::net::TcpListener,
    issuer_url: &str,
    client_id: &str,
    client_secret: &str,
    store: impl Store,
    policy: Option<a3_mcp_auth::ToolPolicy>,
    tweak: impl FnOnce(DcrBridgeBuilder) -> DcrBridgeBuilder,
) -> Server {
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let config = A3Config::builder()
        .issuer_url(issuer_url)
        .resource_uri(format!("{url}/mcp"))
        .client(client_id, client_secret)
        .build()
        .unwrap();
    // The example server's own composition (every layer, the calculator behind
    // ContextFiltered), with the bridge's verifier and routes: what `cargo run --example server`
    // serves.
    let mut settings = McpSettings::from_config(&config).unwrap();
    if let Some(policy) = policy {
        settings.policy = Arc::new(policy);
    }
    let bridge = tweak(
        DcrBridge::builder(&config)
            .public_url(&url)
            .store(store)
            .scopes(server::offered_scopes(&settings.policy)),
    )
    .build()
    .await
    .unwrap();
    settings.issuer = bridge.issuer().to_owned();
    let app = mcp_app(bridge.token_verifier(), &settings)
        .unwrap()
        .merge(bridge.router());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Server {
        url,
        addr,
        bridge,
        task,
    }
}

/// One replica of our server on `listener`, serving the shared `public_url` (a load balancer in
/// front): the example's composition in stateless mode (no per-replica MCP sessions). The store
/// comes from the variables `vars` (e.g. `STORE_URL`), as `A3Config::from_env` reads them.
/// `Server::url` is the public URL, `Server::addr` the replica's own address.
pub async fn serve_replica(
    listener: tokio::net::TcpListener,
    public_url: &str,
    issuer_url: &str,
    client_id: &str,
    client_secret: &str,
    vars: impl Fn(&str) -> Option<String>,
) -> Server {
    let addr = listener.local_addr().unwrap();
    let config = A3ConfigBuilder::from_vars(vars)
        .issuer_url(issuer_url)
        .resource_uri(format!("{public_url}/mcp"))
        .public_url(public_url)
        .client(client_id, client_secret)
        .build()
        .unwrap();
    let bridge = DcrBridge::builder(&config).build().await.unwrap();
    let mut settings = McpSettings::from_config(&config).unwrap();
    settings.issuer = bridge.issuer().to_owned();
    settings.mode = server::Mode::Stateless;
    let app = mcp_app(bridge.token_verifier(), &settings)
        .unwrap()
        .merge(bridge.router());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Server {
        url: public_url.to_owned(),
        addr,
        bridge,
        task,
    }
}

// ---------------------------------------------------------------------------------------------
// A headless browser: cookies kept, redirects not followed.
// ---------------------------------------------------------------------------------------------

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of our consent form.
pub fn consent_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once('"').unwrap();
            let value = rest.split_once("value=\"").unwrap().1.split_once('"').unwrap().0;
            (name.to_owned(), unescape(value))
        })
        .collect()
}

/// GET our /authorize, check the consent page, return its form fields.
pub async fn open_consent(browser: &reqwest::Client, auth_url: &str) -> Vec<(String, String)> {
    let r = browser.get(auth_url).send().await.unwrap();
    assert_eq!(r.status(), 200, "consent page expected");
    let html = r.text().await.unwrap();
    consent_fields(&html)
}

/// POST the consent decision; returns the response (303 to A3 on approval).
pub async fn decide(
    browser: &reqwest::Client,
    server: &str,
    fields: &[(String, String)],
    decision: &str,
) -> reqwest::Response {
    let mut form = fields.to_vec();
    form.push(("decision".into(), decision.into()));
    browser
        .post(format!("{server}/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// At A3: log in if asked (or be silently re-authorized); returns our callback URL.
pub async fn sign_in_upstream(browser: &reqwest::Client, upstream_authorize: &str, user: &str) -> String {
    let r = browser.get(upstream_authorize).send().await.unwrap();
    if r.status().is_redirection() {
        return location(&r);
    }
    let html = r.text().await.unwrap();
    let base = url::Url::parse(upstream_authorize).unwrap();
    if let Some(rest) = html.split("name=\"request\" value=\"").nth(1) {
        // The embedded development issuer's login form.
        let request = unescape(rest.split('"').next().unwrap());
        let r = browser
            .post(base.join("/login").unwrap())
            .form(&[
                ("request", request.as_str()),
                ("email", user),
                ("password", "secret"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "login redirects back");
        return location(&r);
    }
    let action = unescape(html.split("action=\"").nth(1).unwrap().split('"').next().unwrap());
    let r = browser
        .post(base.join(&action).unwrap())
        .form(&[("email", user), ("password", "secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login redirects back");
    location(&r)
}

/// The whole browser part: consent → A3 login → our callback. Returns the redirect to the host.
pub async fn authorize(browser: &reqwest::Client, server: &str, auth_url: &str, user: &str) -> String {
    let fields = open_consent(browser, auth_url).await;
    let r = decide(browser, server, &fields, "approve").await;
    assert_eq!(r.status(), 303, "approval redirects to A3");
    let callback = sign_in_upstream(browser, &location(&r), user).await;
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 303, "the callback redirects to the host");
    location(&r)
}

/// Registers a client like VS Code does.
pub async fn register_vscode(server: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{server}/register"))
        .json(&json!({
            "client_name": "Visual Studio Code",
            "client_uri": "https://code.visualstudio.com",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": ["https://insiders.vscode.dev/redirect", "https://vscode.dev/redirect", "http://127.0.0.1/", "http://127.0.0.1:33418/"],
            "scope": "mcp:call",
            "token_endpoint_auth_method": "none",
            "application_type": "native"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// A host-side authorization request; returns (authorize URL, code_verifier, state).
pub fn host_request(
    server: &str,
    client_id: &str,
    redirect_uri: &str,
    extra: &[(&str, &str)],
) -> (String, String, String) {
    let verifier = random() + &random();
    let state = random();
    let mut url = url::Url::parse(&format!("{server}/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &s256(&verifier))
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    (url.to_string(), verifier, state)
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn redeem(
    server: &str,
    client_id: &str,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{server}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect_uri),
        ])
        .send()
        .await
        .unwrap()
}

/// A JSON-RPC tools/list POST to /mcp with a bearer token: the HTTP status tells whether it passed auth.
pub async fn mcp_status(server: &Server, token: &str) -> u16 {
    reqwest::Client::new()
        .post(server.mcp_url())
        .bearer_auth(token)
        .header(header::ACCEPT, "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ---------------------------------------------------------------------------------------------
// The rmcp OAuth client as the MCP host.
// ---------------------------------------------------------------------------------------------

pub const HOST_REDIRECT: &str = "http://127.0.0.1:9/callback";

/// The rmcp OAuth client performs discovery, DCR and PKCE; the headless browser consents and
/// logs in. Returns the authorized manager.
pub async fn rmcp_host_login(server: &Server, browser: &reqwest::Client, user: &str) -> AuthorizationManager {
    let mut state = OAuthState::new(server.mcp_url().as_str(), None).await.unwrap();
    state
        .start_authorization(AuthorizationRequest::new(HOST_REDIRECT).with_client_name("e2e host"))
        .await
        .unwrap();
    let auth_url = state.get_authorization_url().await.unwrap();
    let back = authorize(browser, &server.url, &auth_url, user).await;
    assert!(back.starts_with(HOST_REDIRECT));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(server.url.as_str()),
        "RFC 9207 iss is ours"
    );
    state.handle_callback_url(&back).await.unwrap();
    state.into_authorization_manager().unwrap()
}

/// Lists the tools, then calls each of `calls` (name, arguments): the tool names and, per call,
/// the text result or the JSON-RPC error message.
pub async fn use_tools(
    server: &Server,
    manager: AuthorizationManager,
    calls: &[(&str, Value)],
) -> (Vec<String>, Vec<Result<String, String>>) {
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::default(), manager),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url()),
    );
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .expect("MCP session");
    let mut names: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    let mut results = Vec::new();
    for (name, args) in calls {
        let mut params = CallToolRequestParams::new(name.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map.clone());
        }
        results.push(match client.peer().call_tool(params).await {
            Ok(r) => Ok(r
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect::<Vec<_>>()
                .join("")),
            Err(e) => Err(e.to_string()),
        });
    }
    let _ = client.cancel().await;
    (names, results)
}

pub async fn tool_names(server: &Server, manager: AuthorizationManager) -> Result<Vec<String>, String> {
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::default(), manager),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url()),
    );
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())?;
    let tools = client.peer().list_all_tools().await.map_err(|e| e.to_string());
    let _ = client.cancel().await;
    let mut names: Vec<String> = tools?.into_iter().map(|t| t.name.to_string()).collect();
    names.sort();
    Ok(names)
}

/// VS Code's desktop redirect URI, one of the four that [`register_vscode`] registers.
pub const VSCODE_REDIRECT: &str = "http://127.0.0.1:33418/";

/// Registers a VS Code client and runs johndoe through our consent page and the upstream login;
/// returns (client id, our code, its PKCE verifier) for [`VSCODE_REDIRECT`].
pub async fn johndoe_code(server: &Server) -> (String, String, String) {
    let id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, verifier, _) = host_request(&server.url, &id, VSCODE_REDIRECT, &[]);
    let back = authorize(&browser(), &server.url, &url, "johndoe@test.com").await;
    (id, query_param(&back, "code").unwrap(), verifier)
}

/// Logs johndoe in through a freshly registered client; returns (client id, token response).
pub async fn login_tokens(server: &Server) -> (String, Value) {
    let (id, code, verifier) = johndoe_code(server).await;
    let tokens = redeem(&server.url, &id, &code, &verifier, VSCODE_REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    (id, tokens)
}
