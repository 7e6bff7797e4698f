//! Our MCP server as `cargo run --example server` serves it (the example's own composition,
//! `examples/server/app.rs`) with the DCR bridge, on a real loopback listener; and the host-side
//! requests to it.

use std::net::SocketAddr;
use std::sync::Arc;

use a3_mcp_auth::A3Config;
use a3_mcp_auth::config::A3ConfigBuilder;
use a3_mcp_auth::dcr::store::Store;
use a3_mcp_auth::dcr::{DcrBridge, DcrBridgeBuilder};
use http::header;
use serde_json::{Value, json};

use super::browser::{authorize, browser};
use super::server::{self, McpSettings};
use super::stub_a3::{CLIENT_ID, CLIENT_SECRET, Upstream, random, s256};

// Our MCP server: the DCR bridge beside an rmcp service behind BearerAuthLayer.

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
    let configure = |c: A3ConfigBuilder| c.client(client_id, client_secret);
    serve_bridge_configured(listener, issuer_url, configure, store, policy, tweak).await
}

/// Our server bridging to `upstream` with configuration variables set by `configure` (the
/// `CIMD_*` and `DCR_*` ones, say) on top of the test client.
pub async fn start_configured_server(
    upstream: &Upstream,
    configure: impl FnOnce(A3ConfigBuilder) -> A3ConfigBuilder,
    store: impl Store,
    tweak: impl FnOnce(DcrBridgeBuilder) -> DcrBridgeBuilder,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let configure = |c: A3ConfigBuilder| configure(c.client(CLIENT_ID, CLIENT_SECRET));
    serve_bridge_configured(listener, upstream.url(), configure, store, None, tweak).await
}

async fn serve_bridge_configured(
    listener: tokio::net::TcpListener,
    issuer_url: &str,
    configure: impl FnOnce(A3ConfigBuilder) -> A3ConfigBuilder,
    store: impl Store,
    policy: Option<a3_mcp_auth::ToolPolicy>,
    tweak: impl FnOnce(DcrBridgeBuilder) -> DcrBridgeBuilder,
) -> Server {
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let config = configure(
        A3Config::builder()
            .issuer_url(issuer_url)
            .resource_uri(format!("{url}/mcp"))
            .public_url(&url),
    )
    .build()
    .unwrap();
    // The example server's own composition (every layer, the calculator behind
    // ContextFiltered), with the bridge's verifier, routes and health routes: what
    // `cargo run --example server` serves.
    let mut settings = McpSettings::new(&config);
    if let Some(policy) = policy {
        settings.policy = Arc::new(policy);
    }
    let bridge = tweak(
        DcrBridge::builder(&config)
            .store(store)
            .scopes(server::offered_scopes(&settings.policy)),
    )
    .build()
    .await
    .unwrap();
    settings.issuer = bridge.issuer().to_owned();
    let app = server::bridged_app(&bridge, &settings).unwrap();
    let task = tokio::spawn(async move {
        let _ = a3_mcp_auth::serve(listener, app).await;
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
    let mut settings = McpSettings::new(&config);
    settings.issuer = bridge.issuer().to_owned();
    settings.mode = server::Mode::Stateless;
    let app = server::bridged_app(&bridge, &settings).unwrap();
    let task = tokio::spawn(async move {
        let _ = a3_mcp_auth::serve(listener, app).await;
    });
    Server {
        url: public_url.to_owned(),
        addr,
        bridge,
        task,
    }
}

/// Registers a client with the metadata `body`; returns the registration response.
pub async fn register(server: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{server}/register"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
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
    mcp_status_at(&server.mcp_url(), token).await
}

/// [`mcp_status`] against any MCP endpoint.
pub async fn mcp_status_at(mcp_url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .post(mcp_url)
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

/// VS Code's desktop redirect URI, one of the four that [`register_vscode`] registers.
pub const VSCODE_REDIRECT: &str = "http://127.0.0.1:33418/";

/// Registers a VS Code client and runs johndoe through our consent page and the upstream login;
/// returns (client id, our code, its PKCE verifier) for [`VSCODE_REDIRECT`].
pub async fn johndoe_code(server: &Server) -> (String, String, String) {
    host_code(server, &browser(), "johndoe@test.com").await
}

/// Registers a VS Code client and runs `user` in `browser` through our consent page, the
/// upstream login and our confirmation; returns (client id, our code, its PKCE verifier) for
/// [`VSCODE_REDIRECT`].
pub async fn host_code(server: &Server, browser: &reqwest::Client, user: &str) -> (String, String, String) {
    let id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, verifier, _) = host_request(&server.url, &id, VSCODE_REDIRECT, &[]);
    let back = authorize(browser, &server.url, &url, user).await;
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

/// An MCP client session at `server` that sends `token` as its bearer token.
async fn session_with_token(
    server: &Server,
    token: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig> {
    use rmcp::ServiceExt;
    use rmcp::model::ClientConfig;
    use rmcp::transport::streamable_http_client::{
        StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
    };
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::default(),
        StreamableHttpClientTransportConfig::with_uri(server.mcp_url()).auth_header(token),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .expect("MCP session")
}

/// The `whoami` tool's answer for a bearer token, through a real MCP client session.
pub async fn whoami(server: &Server, token: &str) -> Value {
    let client = session_with_token(server, token).await;
    let result = client
        .peer()
        .call_tool(rmcp::model::CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let _ = client.cancel().await;
    let text = result.content[0].as_text().unwrap().text.clone();
    serde_json::from_str(&text).unwrap()
}

/// The tools an MCP session with bearer `token` lists, sorted.
pub async fn tool_list(server: &Server, token: &str) -> Vec<String> {
    let client = session_with_token(server, token).await;
    let mut names: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    let _ = client.cancel().await;
    names.sort();
    names
}

/// A raw JSON-RPC POST to /mcp with a bearer token and, optionally, an `Mcp-Session-Id`;
/// returns the status and the session id the response names.
pub async fn mcp_post(
    server: &Server,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(server.mcp_url())
        .bearer_auth(token)
        .header(header::ACCEPT, "application/json, text/event-stream")
        .json(&body);
    if let Some(id) = session {
        request = request
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-06-18");
    }
    let r = request.send().await.unwrap();
    let id = r
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    (status, id)
}

/// Opens an MCP session (initialize, then initialized) with a bearer token; returns its id.
pub async fn mcp_session(server: &Server, token: &str) -> String {
    let (status, id) = mcp_post(
        server,
        token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200);
    let id = id.expect("a stateful server names the session");
    let (status, _) = mcp_post(
        server,
        token,
        Some(&id),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    id
}

/// The status of `tools/list` in the MCP session `session` with a bearer token.
pub async fn mcp_list_status(server: &Server, token: &str, session: &str) -> u16 {
    mcp_post(
        server,
        token,
        Some(session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await
    .0
}

/// The admin listener of a bridge, as the example serves it (`a3_mcp_auth::admin::serve` on
/// loopback, port 0), stopped on drop.
pub struct AdminApi {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdminApi {
    /// Serves `bridge.admin_router()` with `ADMIN_TOKEN` = `token` (if any).
    pub async fn serve(bridge: &DcrBridge, token: Option<&str>) -> AdminApi {
        let mut config = A3Config::builder()
            .issuer_url("http://127.0.0.1:9")
            .admin_addr("127.0.0.1:0");
        if let Some(token) = token {
            config = config.admin_token(token);
        }
        let admin = a3_mcp_auth::admin::serve(&config.build().unwrap(), bridge.admin_router())
            .await
            .unwrap();
        let url = format!("http://{}", admin.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = admin.await;
        });
        AdminApi { url, task }
    }

    /// `GET {path}` as `curl` sends it; returns the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `DELETE {path}`; returns the status and the JSON body.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .delete(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /admin/sign-out` for `subject`; returns the status and the JSON body.
    pub async fn sign_out(&self, subject: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/admin/sign-out", self.url))
            .json(&json!({"subject": subject}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// A refresh-token grant at the bridge at `url` (its public URL): the host's `POST /token`.
pub async fn refresh_at(url: &str, client_id: &str, refresh_token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}
