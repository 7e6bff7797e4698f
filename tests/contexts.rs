//! End to end: the example server (every layer, real HTTP on 127.0.0.1:0) driven by the rmcp
//! client and by raw requests, with tokens from the crate's test issuer.

mod support;

use std::sync::Arc;

use a3_mcp_auth::context::policy::TemplateRule;
use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{ToolPolicy, ToolRule};
use reqwest::StatusCode;
use rmcp::model::{
    ArgumentInfo, CacheScope, CallToolRequestParams, ClientConfig, CompleteRequestParams,
    GetPromptRequestParams, ProtocolVersion, ReadResourceRequestParams, Reference, ResourceContents,
    ResourceUpdatedNotificationParam, ServerNotification, SubscriptionFilter,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, ServerHandler as _, ServiceExt};
use serde_json::{Value, json};
use support::server::{self, McpSettings, Mode, calculator_policy};

const ALLOWED_ORIGIN: &str = "http://localhost:6274";

struct Server {
    issuer: TestIssuer,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(mode: Mode) -> Server {
    start_with(mode, calculator_policy()).await
}

async fn start_with(mode: Mode, policy: ToolPolicy) -> Server {
    start_handler(mode, policy, server::Calculator::default).await
}

/// The example's composition around any rmcp handler (`handler` builds one per session or request).
async fn start_handler<H, F>(mode: Mode, policy: ToolPolicy, handler: F) -> Server
where
    H: rmcp::ServerHandler,
    F: Fn() -> H + Send + Sync + 'static,
{
    let issuer = TestIssuer::start().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let settings = McpSettings {
        resource_uri: url.clone(),
        issuer: issuer.url().to_owned(),
        context_claim: "contexts".into(),
        policy: Arc::new(policy),
        mode,
        extra_hosts: vec![],
        allowed_origins: vec![ALLOWED_ORIGIN.into()],
    };
    let app = server::mcp_app_with(issuer.verifier(&url).await, &settings, handler).unwrap();
    let task = tokio::spawn(async move {
        a3_mcp_auth::serve(listener, app).await.unwrap();
    });
    Server { issuer, url, task }
}

type Client = RunningService<RoleClient, ClientConfig>;

impl Server {
    fn token(&self, sub: &str, contexts: Value) -> String {
        self.issuer
            .token(&self.url)
            .subject(sub)
            .claim("contexts", contexts)
            .sign()
    }

    fn transport(&self, token: &str) -> StreamableHttpClientTransport<reqwest::Client> {
        StreamableHttpClientTransport::with_client(
            reqwest::Client::default(),
            StreamableHttpClientTransportConfig::with_uri(self.url.clone()).auth_header(token),
        )
    }

    async fn client(&self, token: &str) -> Client {
        ClientConfig::default()
            .serve(self.transport(token))
            .await
            .expect("client connects")
    }

    /// A client that uses the 2026-07-28 stateless lifecycle (`server/discover`, SEP-2243 headers).
    async fn client_2026(&self, token: &str) -> Client {
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        ClientConfig::default()
            .serve_with_lifecycle(self.transport(token), lifecycle)
            .await
            .expect("client connects")
    }

    /// A raw JSON-RPC POST; returns the status, headers and the JSON-RPC messages of the body.
    async fn post(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<Value>) {
        let (status, headers, text) = self.post_text(token, headers, body).await;
        (status, headers, messages(&text))
    }

    /// [`Server::post`] with the body as it came.
    async fn post_text(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = reqwest::Client::new()
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let response = req.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.text().await.unwrap())
    }

    /// Opens an MCP session with raw requests (`initialize`, `notifications/initialized`).
    async fn open_session(&self, token: &str) -> String {
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
        let (status, headers, _) = self.post(Some(token), &[], init).await;
        assert_eq!(status, 200);
        let id = headers["mcp-session-id"].to_str().unwrap().to_owned();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let sid = [("mcp-session-id", id.as_str())];
        assert_eq!(self.post(Some(token), &sid, initialized).await.0, 202);
        id
    }

    /// Raw requests as the holder of `token`: in a session of their own in stateful mode.
    async fn raw(&self, mode: Mode, token: &str) -> Raw<'_> {
        let session = match mode {
            Mode::Stateful => Some(self.open_session(token).await),
            Mode::Stateless => None,
        };
        Raw {
            server: self,
            token: token.to_owned(),
            session,
        }
    }
}

/// One caller's raw JSON-RPC requests (see [`Server::raw`]).
struct Raw<'a> {
    server: &'a Server,
    token: String,
    session: Option<String>,
}

impl Raw<'_> {
    /// The same session with another token (a refreshed token of the same principal).
    fn with_token(&self, token: &str) -> Self {
        Raw {
            server: self.server,
            token: token.to_owned(),
            session: self.session.clone(),
        }
    }

    /// `method` with `params` as request 1: the response message, exactly as it came.
    async fn send(&self, method: &str, params: Value) -> String {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send_body(&body.to_string()).await
    }

    /// A request body as written: the one response message, exactly as it came.
    async fn send_body(&self, body: &str) -> String {
        let session: Vec<(&str, &str)> = self
            .session
            .iter()
            .map(|id| ("mcp-session-id", id.as_str()))
            .collect();
        let (status, _, text) = self.server.post_text(Some(&self.token), &session, body).await;
        assert_eq!(status, 200, "{body}: {text}");
        let mut raw = raw_messages(&text);
        assert_eq!(raw.len(), 1, "{body}: {text}");
        raw.remove(0)
    }
}

/// The JSON-RPC messages in a JSON or SSE body, as their raw text.
fn raw_messages(text: &str) -> Vec<String> {
    if serde_json::from_str::<Value>(text).is_ok() {
        return vec![text.trim().to_owned()];
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| serde_json::from_str::<Value>(d).is_ok())
        .map(str::to_owned)
        .collect()
}

/// The JSON-RPC messages in a JSON or SSE body.
fn messages(text: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return match v {
            Value::Array(items) => items,
            v => vec![v],
        };
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .peer()
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

fn args(a: f64, b: f64) -> serde_json::Map<String, Value> {
    json!({"a": a, "b": b}).as_object().unwrap().clone()
}

async fn call(client: &Client, tool: &str) -> Result<String, ServiceError> {
    let result = client
        .peer()
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(6.0, 7.0)))
        .await?;
    Ok(result.content[0].as_text().unwrap().text.clone())
}

fn mcp_error(e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

#[tokio::test]
async fn contexts_select_the_listed_tools_stateful() {
    let s = start(Mode::Stateful).await;
    let cases = [
        (json!(["operation=addition"]), vec!["add", "whoami"]),
        (
            json!({"operation": ["addition", "multiplication"]}),
            vec!["add", "multiply", "whoami"],
        ),
        (json!([]), vec!["whoami"]),
    ];
    for (contexts, want) in cases {
        let client = s.client(&s.token("alice", contexts.clone())).await;
        assert_eq!(tool_names(&client).await, want, "{contexts}");
        client.cancel().await.unwrap();
    }
    // No context claim at all: only the public tool.
    let client = s.client(&s.issuer.token(&s.url).sign()).await;
    assert_eq!(tool_names(&client).await, ["whoami"]);
}

#[tokio::test]
async fn contexts_select_the_listed_tools_stateless() {
    let s = start(Mode::Stateless).await;
    let client = s.client(&s.token("alice", json!("operation=addition"))).await;
    assert_eq!(tool_names(&client).await, ["add", "whoami"]);
    let client = s
        .client(&s.token("bob", json!([{"key": "operation", "value": "multiplication"}])))
        .await;
    assert_eq!(tool_names(&client).await, ["multiply", "whoami"]);
    assert_eq!(call(&client, "multiply").await.unwrap(), "42");
}

#[tokio::test]
async fn the_2026_07_28_client_sees_the_same_filtered_set() {
    let s = start(Mode::Stateful).await;
    let client = s
        .client_2026(&s.token("alice", json!(["operation=addition"])))
        .await;
    assert_eq!(tool_names(&client).await, ["add", "whoami"]);
    assert_eq!(call(&client, "add").await.unwrap(), "13");
    let e = mcp_error(call(&client, "multiply").await.unwrap_err());
    assert_eq!(e.message, "tool not found");
}

#[tokio::test]
async fn visible_tools_work_and_hidden_tools_look_unknown() {
    // `ghost` is public in the policy but not implemented: its error is the wrapped handler's
    // own unknown-tool error, which a hidden tool must reproduce exactly.
    let policy = calculator_policy().public_tool("ghost");
    let s = start_with(Mode::Stateful, policy).await;
    let client = s.client(&s.token("alice", json!(["operation=addition"]))).await;
    assert_eq!(call(&client, "add").await.unwrap(), "13");

    let unknown = mcp_error(call(&client, "ghost").await.unwrap_err());
    let hidden = mcp_error(call(&client, "multiply").await.unwrap_err());
    let unlisted = mcp_error(call(&client, "divide").await.unwrap_err());
    assert_eq!(unknown.message, "tool not found");
    assert_eq!(hidden, unknown);
    assert_eq!(unlisted, unknown);
}

#[tokio::test]
async fn whoami_reports_the_caller() {
    let s = start(Mode::Stateless).await;
    let token = s
        .issuer
        .token(&s.url)
        .subject("johndoe")
        .client_id("vscode")
        .claim("contexts", json!({"operation": "addition"}))
        .sign();
    let client = s.client(&token).await;
    let me: Value = serde_json::from_str(&call(&client, "whoami").await.unwrap()).unwrap();
    assert_eq!(
        me,
        json!({"subject": "johndoe", "client_id": "vscode", "contexts": ["operation=addition"]})
    );
}

#[tokio::test]
async fn a_token_without_mcp_call_gets_insufficient_scope() {
    let s = start(Mode::Stateful).await;
    let token = s
        .issuer
        .token(&s.url)
        .scope("openid")
        .claim("contexts", json!(["operation=addition"]))
        .sign();
    let err = ClientConfig::default()
        .serve(s.transport(&token))
        .await
        .unwrap_err();
    let challenge = err.auth_challenge().expect("a challenge").to_owned();
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"mcp:call\""), "{challenge}");

    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, headers, _) = s.post(Some(&token), &[], list).await;
    assert_eq!(status, 403);
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains("insufficient_scope")
            && www.contains("scope=\"mcp:call\"")
            && www.contains("resource_metadata=")
    );
}

#[tokio::test]
async fn per_tool_scopes_step_up() {
    let policy = calculator_policy().tool(
        "multiply",
        ToolRule::any_of([("operation", "multiplication")]).with_scopes(["calc:multiply"]),
    );
    let s = start_with(Mode::Stateless, policy).await;
    let both = json!(["operation=addition", "operation=multiplication"]);
    let token = s.token("alice", both.clone());
    let call_multiply = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"multiply","arguments":{"a":6,"b":7}}}"#;

    // SEP-2243 headers: an HTTP 403 step-up challenge listing every scope the call needs.
    let sep2243 = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "multiply"),
    ];
    let (status, headers, _) = s.post(Some(&token), &sep2243, call_multiply).await;
    assert_eq!(status, 403);
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"mcp:call calc:multiply\""),
        "{www}"
    );

    // Without the headers, the wrapper refuses with a JSON-RPC insufficient_scope error.
    let (status, _, msgs) = s.post(Some(&token), &[], call_multiply).await;
    assert_eq!(status, 200);
    assert_eq!(
        msgs[0]["error"]["data"],
        json!({"error": "insufficient_scope", "scope": "calc:multiply"})
    );

    // Headers that lie (claiming `add`) cannot get the call through.
    let lying = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "add"),
    ];
    let (status, _, msgs) = s.post(Some(&token), &lying, call_multiply).await;
    assert!(
        !status.is_server_error() && msgs.iter().all(|m| m.get("result").is_none()),
        "{status} {msgs:?}"
    );

    // The rmcp 2026-07-28 client sends those headers itself and surfaces the challenge.
    let client = s.client_2026(&token).await;
    let err = call(&client, "multiply").await.unwrap_err();
    let challenge = err.auth_challenge().expect("a step-up challenge").to_owned();
    assert!(
        challenge.contains("scope=\"mcp:call calc:multiply\""),
        "{challenge}"
    );
    assert_eq!(call(&client, "add").await.unwrap(), "13");

    // With the scope, it is callable; the tool is listed either way.
    let stepped = s
        .issuer
        .token(&s.url)
        .scope("mcp:call calc:multiply")
        .claim("contexts", both)
        .sign();
    let client = s.client(&stepped).await;
    assert_eq!(call(&client, "multiply").await.unwrap(), "42");
    assert_eq!(
        tool_names(&s.client(&token).await).await,
        ["add", "multiply", "whoami"]
    );
}

/// Raw requests that try to reach `multiply` with a token that only holds `operation=addition`.
#[tokio::test]
async fn bypass_attempts_reach_the_wrapper_and_fail() {
    for mode in [Mode::Stateless, Mode::Stateful] {
        let s = start(mode).await;
        let token = s.token("mallory", json!(["operation=addition"]));
        let session = s.raw(mode, &token).await.session;
        let headers: Vec<(&str, &str)> = session.iter().map(|id| ("mcp-session-id", id.as_str())).collect();
        let product = "1234000"; // 1234 × 1000: appears only if multiply ran
        let attempts = [
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}]"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"multiply","name":"add","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u006dultiply","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Multiply","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"multiply ","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"TOOLS/CALL","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["multiply"],"arguments":{"a":1234,"b":1000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}},"method":"tools/list"}"#,
        ];
        for body in attempts {
            let (status, _, msgs) = s.post(Some(&token), &headers, body).await;
            assert!(!status.is_server_error(), "{mode:?} {body}: {status}");
            // Refused at HTTP level (rmcp answers 415 to batches) or with a JSON-RPC error.
            assert!(
                status.is_client_error() || msgs.iter().any(|m| m.get("error").is_some()),
                "{body}"
            );
            let text = serde_json::to_string(&msgs).unwrap();
            assert!(!text.contains(product), "{mode:?} {body}: multiply ran: {text}");
            assert!(
                msgs.iter()
                    .all(|m| m.get("result").is_none_or(|r| r.get("content").is_none())),
                "{text}"
            );
        }

        // Escaped names are decoded by rmcp before the wrapper decides: `\u0061dd` is `add`.
        let escaped = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u0061dd","arguments":{"a":1234,"b":1000}}}"#;
        let (_, _, msgs) = s.post(Some(&token), &headers, escaped).await;
        assert_eq!(msgs[0]["result"]["content"][0]["text"], "2234", "{mode:?}");
        let none = s.token("nobody", json!([]));
        if mode == Mode::Stateless {
            let (_, _, msgs) = s.post(Some(&none), &[], escaped).await;
            assert_eq!(msgs[0]["error"]["message"], "tool not found");
        }
    }
}

#[tokio::test]
async fn session_hijack_is_refused_and_the_owner_keeps_working() {
    let s = start(Mode::Stateful).await;
    let alice = s.token("alice", json!(["operation=addition"]));
    let bob = s.token("bob", json!(["operation=addition", "operation=multiplication"]));
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let (status, headers, _) = s.post(Some(&alice), &[], init).await;
    assert_eq!(status, 200);
    let id = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let sid = [("mcp-session-id", id.as_str())];
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    assert_eq!(s.post(Some(&alice), &sid, initialized).await.0, 202);

    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, msgs) = s.post(Some(&bob), &sid, list).await;
    assert_eq!(status, 404);
    assert!(msgs.iter().all(|m| m.get("result").is_none()));
    // The same user through another client is another principal.
    let alice_elsewhere = s
        .issuer
        .token(&s.url)
        .subject("alice")
        .client_id("other-client")
        .sign();
    assert_eq!(s.post(Some(&alice_elsewhere), &sid, list).await.0, 404);

    let http = reqwest::Client::new();
    let get = http
        .get(&s.url)
        .bearer_auth(&bob)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &id);
    assert_eq!(get.send().await.unwrap().status(), 404);
    let delete = http
        .delete(&s.url)
        .bearer_auth(&bob)
        .header("mcp-session-id", &id);
    assert_eq!(delete.send().await.unwrap().status(), 404);

    let (status, _, msgs) = s.post(Some(&alice), &sid, list).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = msgs[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "whoami"]);

    // A new token for Alice (refresh) keeps the session; her DELETE ends it.
    let refreshed = s.token("alice", json!(["operation=addition"]));
    assert_eq!(s.post(Some(&refreshed), &sid, list).await.0, 200);
    let delete = http
        .delete(&s.url)
        .bearer_auth(&alice)
        .header("mcp-session-id", &id);
    assert!(delete.send().await.unwrap().status().is_success());
    assert_eq!(s.post(Some(&alice), &sid, list).await.0, 404);
}

/// The issue's attack: one signed-in user opens sessions in a loop (11 000 of them evicted another
/// user's live session from a shared 10 000-entry cache).
#[tokio::test]
async fn one_users_session_flood_is_refused_and_cannot_end_another_users_session() {
    let s = start(Mode::Stateful).await;
    let alice = s.token("alice", json!(["operation=addition"]));
    let bob = s.token("bob", json!(["operation=addition"]));
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let open = |token: String| {
        let s = &s;
        async move {
            let (status, headers, msgs) = s.post(Some(&token), &[], init).await;
            let id = headers
                .get("mcp-session-id")
                .map(|v| v.to_str().unwrap().to_owned());
            if let Some(id) = &id {
                assert_eq!(
                    s.post(Some(&token), &[("mcp-session-id", id)], initialized)
                        .await
                        .0,
                    202
                );
            }
            (status, id, msgs)
        }
    };
    let (_, bob_session, _) = open(bob.clone()).await;
    let bob_session = bob_session.expect("bob's session");

    let mut opened = Vec::new();
    let refusal = loop {
        let (status, id, msgs) = open(alice.clone()).await;
        match id {
            Some(id) if opened.len() < 1000 => opened.push(id),
            _ => break (status, msgs),
        }
    };
    assert!(
        (1..=100).contains(&opened.len()),
        "one user's sessions are bounded (opened {})",
        opened.len()
    );
    let (status, body) = refusal;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body[0]["error"], "too_many_sessions");
    let description = body[0]["error_description"].as_str().unwrap();
    assert!(description.contains(&opened.len().to_string()), "{description}");

    // Bob's live session still works, and he can open another.
    let (status, _, msgs) = s
        .post(Some(&bob), &[("mcp-session-id", &bob_session)], list)
        .await;
    assert_eq!(status, 200);
    assert!(msgs[0]["result"]["tools"].is_array());
    assert!(open(bob.clone()).await.1.is_some());
    // Alice's own sessions keep working; ending one makes room for one more.
    let sid = [("mcp-session-id", opened[0].as_str())];
    assert_eq!(s.post(Some(&alice), &sid, list).await.0, 200);
    let delete = reqwest::Client::new()
        .delete(&s.url)
        .bearer_auth(&alice)
        .header("mcp-session-id", &opened[0]);
    assert!(delete.send().await.unwrap().status().is_success());
    assert!(open(alice.clone()).await.1.is_some());
    assert_eq!(open(alice.clone()).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn stateless_mode_has_no_sessions() {
    let s = start(Mode::Stateless).await;
    let token = s.token("alice", json!(["operation=addition"]));
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, headers, msgs) = s.post(Some(&token), &[], list).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("mcp-session-id"));
    assert_eq!(msgs[0]["result"]["tools"].as_array().unwrap().len(), 2);
    // A made-up session id is refused rather than ignored.
    assert_eq!(
        s.post(Some(&token), &[("mcp-session-id", "forged")], list)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn origin_and_host_are_checked_before_authentication() {
    let s = start(Mode::Stateful).await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, headers, _) = s.post(None, &[("origin", "https://evil.example")], list).await;
    assert_eq!(status, 403);
    assert!(!headers.contains_key("www-authenticate"));
    let token = s.token("alice", json!(["operation=addition"]));
    assert_eq!(
        s.post(Some(&token), &[("origin", "https://evil.example")], list)
            .await
            .0,
        403
    );
    assert_eq!(s.post(None, &[("host", "evil.example")], list).await.0, 403);

    // An allowed origin reaches authentication, and CORS exposes the challenge and session id.
    let (status, headers, _) = s.post(None, &[("origin", ALLOWED_ORIGIN)], list).await;
    assert_eq!(status, 401);
    assert_eq!(headers["access-control-allow-origin"], ALLOWED_ORIGIN);
    let exposed = headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("www-authenticate") && exposed.contains("mcp-session-id"),
        "{exposed}"
    );
}

#[tokio::test]
async fn request_bodies_are_limited() {
    let s = start(Mode::Stateless).await;
    let token = s.token("alice", json!(["operation=addition"]));
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    assert_eq!(s.post(Some(&token), &[], &big).await.0, 413);
}

#[tokio::test]
async fn list_results_are_private_to_the_caller() {
    let s = start(Mode::Stateless).await;
    let token = s.token("alice", json!(["operation=addition"]));
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{}}}"#;
    let v2026 = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let (_, _, msgs) = s.post(Some(&token), &v2026, list).await;
    // Whatever rmcp requires of 2026-07-28 metadata, a result, if any, must be private.
    if let Some(result) = msgs[0].get("result") {
        assert_eq!(result["cacheScope"], "private", "{result}");
    }
    let client = s.client_2026(&token).await;
    let page = client.peer().list_tools(None).await.unwrap();
    assert_eq!(page.cache_scope, Some(rmcp::model::CacheScope::Private));
}

/// A forgiving handler, as real ones often are, that the wrapper must keep away from anything the
/// caller may not see: it serves non-canonical and malformed requests (`Tools/Call`, duplicate
/// `name` or `uri` keys, an array where a string belongs) through its custom-request path;
/// reads a table from whatever URI looks like one (decoding, folding case and look-alikes,
/// dropping queries and fragments, resolving dot segments, taking the last of several values);
/// serves every table at once as sub-resources of `calc://tables`, lists them under the
/// directory `calc://tables/` (SEP-2640), calls all of it publicly cacheable, and always says
/// more completions may follow.
#[derive(Clone, Default)]
struct Lenient(server::Calculator);

type Ctx = rmcp::service::RequestContext<rmcp::RoleServer>;

/// The operation a forgiving reader sees in `uri`, if it looks like a table at all.
fn lenient_operation(uri: &str) -> Option<String> {
    let bytes = uri.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            uri.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let folded: String = decoded
        .split(['?', '#'])
        .next()?
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{200b}'..='\u{200d}' | '\u{feff}'))
        .map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap(),
            'а' => 'a',
            'е' => 'e',
            'і' => 'i',
            'о' => 'o',
            'р' => 'p',
            'с' => 'c',
            c => c,
        })
        .collect::<String>()
        .to_lowercase();
    let rest = folded.strip_prefix("calc://tables/")?;
    let segment = rest
        .split('/')
        .rfind(|s| !s.is_empty() && *s != "." && *s != "..")?;
    segment.rsplit([',', '&', ';', '=']).next().map(str::to_owned)
}

impl Lenient {
    async fn read(&self, uri: String, context: Ctx) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let uris = match lenient_operation(&uri) {
            _ if uri == "calc://tables" => vec![ADDITION_TABLE.to_owned(), MULTIPLICATION_TABLE.to_owned()],
            Some(operation) => vec![format!("calc://tables/{operation}")],
            None => vec![uri],
        };
        let mut contents = Vec::new();
        for uri in uris {
            let request = rmcp::model::ReadResourceRequestParams::new(uri);
            match self.0.read_resource(request, context.clone()).await? {
                rmcp::model::ReadResourceResponse::Complete(r) => contents.extend(r.contents),
                _ => return Err(ErrorData::internal_error("unexpected", None)),
            }
        }
        let result = rmcp::model::ReadResourceResult::new(contents).with_cache_scope(CacheScope::Public);
        Ok(result.into())
    }
}

impl rmcp::ServerHandler for Lenient {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        let capabilities = rmcp::model::ServerCapabilities::builder()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_skills_with_directory_read()
            .build();
        rmcp::model::ServerConfig::new(capabilities)
    }

    async fn list_prompts(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        context: Ctx,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Ok(self
            .0
            .list_prompts(request, context)
            .await?
            .with_cache_scope(CacheScope::Public))
    }

    async fn list_resources(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        context: Ctx,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        Ok(self
            .0
            .list_resources(request, context)
            .await?
            .with_cache_scope(CacheScope::Public))
    }

    async fn list_resource_templates(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        context: Ctx,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        let result = self.0.list_resource_templates(request, context).await?;
        Ok(result.with_cache_scope(CacheScope::Public))
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        context: Ctx,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        let mut result = self.0.complete(request, context).await?;
        result.completion.has_more = Some(true);
        Ok(result)
    }

    async fn read_resource_directory(
        &self,
        request: rmcp::model::ReadResourceDirectoryRequestParams,
        _context: Ctx,
    ) -> Result<rmcp::model::ReadResourceDirectoryResult, ErrorData> {
        if request.uri != "calc://tables/" {
            return Err(a3_mcp_auth::filtered::resource_not_found(&request.uri));
        }
        let tables =
            [ADDITION_TABLE, MULTIPLICATION_TABLE].map(|uri| rmcp::model::Resource::new(uri, "table"));
        Ok(rmcp::model::ListResourcesResult::with_all_items(tables.to_vec())
            .with_cache_scope(CacheScope::Public))
    }

    async fn list_tools(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        context: Ctx,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        self.0.list_tools(request, context).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: Ctx,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        self.0.call_tool(request, context).await
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: Ctx,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        self.read(request.uri, context).await
    }

    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        context: Ctx,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        let params = request.params.unwrap_or_default();
        // Takes a string, or the first string of an array.
        let text = |key: &str| {
            params[key]
                .as_str()
                .or_else(|| params[key][0].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let result = match request.method.trim().to_ascii_lowercase().as_str() {
            "tools/call" => {
                let arguments = params["arguments"].as_object().cloned().unwrap_or_default();
                let call = CallToolRequestParams::new(text("name")).with_arguments(arguments);
                match self.0.call_tool(call, context).await? {
                    rmcp::model::CallToolResponse::Complete(r) => serde_json::to_value(r),
                    _ => return Err(ErrorData::internal_error("unexpected", None)),
                }
            }
            "resources/read" => match self.read(text("uri"), context).await? {
                rmcp::model::ReadResourceResponse::Complete(r) => serde_json::to_value(r),
                _ => return Err(ErrorData::internal_error("unexpected", None)),
            },
            "completion/complete" => {
                let complete = serde_json::from_value(params.clone()).unwrap();
                serde_json::to_value(self.0.complete(complete, context).await?)
            }
            "prompts/get" => {
                let get = rmcp::model::GetPromptRequestParams::new(text("name"));
                match self.0.get_prompt(get, context).await? {
                    rmcp::model::GetPromptResponse::Complete(r) => serde_json::to_value(r),
                    _ => return Err(ErrorData::internal_error("unexpected", None)),
                }
            }
            _ => return Err(ErrorData::method_not_found::<rmcp::model::CallToolRequestMethod>()),
        };
        Ok(rmcp::model::CustomResult(result.unwrap()))
    }
}

#[tokio::test]
async fn non_canonical_requests_never_reach_the_wrapped_handler() {
    let s = start_handler(Mode::Stateless, calculator_policy(), Lenient::default).await;
    let token = s.token("mallory", json!(["operation=addition"]));
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":" tools/call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["multiply"],"arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"Resources/Read","params":{"uri":"calc://tables/multiplication"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"calc://tables/addition","uri":"calc://tables/multiplication"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":["calc://tables/multiplication"]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"Prompts/Get","params":{"name":"multiplication_drill"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"addition_drill","name":"multiplication_drill"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"COMPLETION/complete","params":{"ref":{"type":"ref/prompt","name":"multiplication_drill"},"argument":{"name":"level","value":""}}}"#,
    ] {
        let (status, _, msgs) = s.post(Some(&token), &[], body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(msgs[0]["error"]["code"], -32601, "{body}: {msgs:?}");
    }
    // The same requests in their canonical form reach the wrapper, which decides them.
    let raw = s.raw(Mode::Stateless, &token).await;
    let read = raw
        .send("resources/read", json!({"uri": "calc://tables/multiplication"}))
        .await;
    assert!(read.contains("-32002"), "{read}");
    let read = raw
        .send("resources/read", json!({"uri": "calc://tables/addition"}))
        .await;
    assert!(read.contains("2 + 3 = 5"), "{read}");
}

#[tokio::test]
async fn hostile_context_claims_grant_nothing_end_to_end() {
    let s = start(Mode::Stateless).await;
    let hostile = [
        json!(null),
        json!(7),
        json!({"operation": {"addition": true}}),
        json!({"operation": [["addition"]]}),
        json!({"operation": "Addition"}),
        json!({"operation": "аddition"}), // Cyrillic а
        json!({"operation": "addition\u{200b}"}),
        json!({"operation": "ａｄｄｉｔｉｏｎ"}),
        json!({"operation": "addition "}),
        json!({"Operation": "addition"}),
        json!({"operation=": "addition"}),
        json!(["operation==addition"]),
        json!(["=operation=addition"]),
        json!(["operation"]),
        json!([{"key": "operation"}]),
        json!([{"key": "operation", "value": "addition", "admin": true}]),
        json!([{"key": ["operation"], "value": "addition"}]),
        json!("operation = addition"),
        json!("operation=addition\u{0}"),
        json!((0..600).map(|i| format!("k{i}=v")).collect::<Vec<_>>()), // more than the 256 read; under the token size limit
        json!((0..64).fold(json!("operation=addition"), |acc, _| json!([acc]))),
        json!({"operation": "x".repeat(4000)}),
    ];
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    for (i, contexts) in hostile.into_iter().enumerate() {
        let token = s.token("mallory", contexts);
        let (status, _, msgs) = s.post(Some(&token), &[], list).await;
        assert_eq!(status, 200, "hostile value #{i}");
        let tools = msgs[0]["result"]["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["whoami"], "hostile value #{i}");
    }
}

#[test]
fn the_start_up_summary_says_what_each_context_unlocks() {
    let settings = McpSettings {
        resource_uri: "http://127.0.0.1:8000/mcp".into(),
        issuer: "https://a3.mekarge.com/auth/env-1".into(),
        context_claim: "contexts".into(),
        policy: Arc::new(calculator_policy()),
        mode: Mode::Stateful,
        extra_hosts: vec![],
        allowed_origins: vec![],
    };
    let summary = server::summary(&settings);
    assert!(
        summary.contains("issuer:   https://a3.mekarge.com/auth/env-1"),
        "{summary}"
    );
    assert!(
        summary.contains("resource: http://127.0.0.1:8000/mcp"),
        "{summary}"
    );
    let line = |needle: &str| {
        summary
            .lines()
            .find(|l| l.contains(needle))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("operation=addition"),
        "operation=addition -> tools: add; prompts: addition_drill; resources: calc://tables/addition"
    );
    assert_eq!(
        line("operation=multiplication"),
        "operation=multiplication -> tools: multiply; prompts: multiplication_drill; resources: calc://tables/multiplication"
    );
    assert_eq!(
        line("(everyone)"),
        "(everyone) -> tools: whoami; resources: calc://constants"
    );
}

// Prompts, resources and resource templates.

const ADDITION_TABLE: &str = "calc://tables/addition";
const MULTIPLICATION_TABLE: &str = "calc://tables/multiplication";

async fn prompt_names(client: &Client) -> Vec<String> {
    let prompts = client.peer().list_all_prompts().await.unwrap();
    let mut names: Vec<String> = prompts.into_iter().map(|p| p.name).collect();
    names.sort();
    names
}

async fn resource_uris(client: &Client) -> Vec<String> {
    let resources = client.peer().list_all_resources().await.unwrap();
    let mut uris: Vec<String> = resources.into_iter().map(|r| r.uri).collect();
    uris.sort();
    uris
}

async fn template_uris(client: &Client) -> Vec<String> {
    let templates = client.peer().list_all_resource_templates().await.unwrap();
    templates.into_iter().map(|t| t.uri_template).collect()
}

async fn read(client: &Client, uri: &str) -> Result<String, ServiceError> {
    let result = client
        .peer()
        .read_resource(ReadResourceRequestParams::new(uri))
        .await?;
    match &result.contents[..] {
        [ResourceContents::TextResourceContents { text, .. }] => Ok(text.clone()),
        other => panic!("one text content expected: {other:?}"),
    }
}

async fn drill(client: &Client, name: &str) -> Result<String, ServiceError> {
    let result = client
        .peer()
        .get_prompt(GetPromptRequestParams::new(name))
        .await?;
    Ok(serde_json::to_string(&result.messages).unwrap())
}

async fn completions(client: &Client, reference: Reference, argument: &str, value: &str) -> Vec<String> {
    let request = CompleteRequestParams::new(reference, ArgumentInfo::new(argument, value));
    client.peer().complete(request).await.unwrap().completion.values
}

/// The JSON-RPC error MCP defines for an unknown resource, as rmcp's examples write it.
fn resource_not_found(uri: &str) -> Value {
    json!({"code": -32002, "message": "resource_not_found", "data": {"uri": uri}})
}

fn error_of(raw: &str) -> Value {
    let message: Value = serde_json::from_str(raw).unwrap();
    assert!(message.get("result").is_none(), "{raw}");
    message["error"].clone()
}

#[tokio::test]
async fn contexts_select_the_listed_prompts_resources_and_templates() {
    for mode in [Mode::Stateful, Mode::Stateless] {
        let s = start(mode).await;
        // (contexts, prompts, templates, readable, hidden)
        let cases = [
            (
                json!(["operation=addition"]),
                vec!["addition_drill"],
                vec![server::TABLES],
                vec![server::CONSTANTS, ADDITION_TABLE],
                vec![MULTIPLICATION_TABLE],
            ),
            (
                json!({"operation": ["addition", "multiplication"]}),
                vec!["addition_drill", "multiplication_drill"],
                vec![server::TABLES],
                vec![server::CONSTANTS, ADDITION_TABLE, MULTIPLICATION_TABLE],
                vec![],
            ),
            (
                json!([]),
                vec![],
                vec![],
                vec![server::CONSTANTS],
                vec![ADDITION_TABLE, MULTIPLICATION_TABLE],
            ),
        ];
        for (contexts, prompts, templates, readable, hidden) in cases {
            let client = s.client(&s.token("alice", contexts.clone())).await;
            let case = format!("{mode:?} {contexts}");
            assert_eq!(prompt_names(&client).await, prompts, "{case}");
            let mut resources = readable.clone();
            resources.sort();
            assert_eq!(resource_uris(&client).await, resources, "{case}");
            assert_eq!(template_uris(&client).await, templates, "{case}");
            for uri in readable {
                let text = read(&client, uri).await.unwrap();
                let expected = match uri {
                    server::CONSTANTS => "pi = 3.141592653589793",
                    ADDITION_TABLE => "2 + 3 = 5",
                    _ => "6 × 7 = 42",
                };
                assert!(text.contains(expected), "{case} {uri}: {text}");
            }
            for uri in hidden {
                let e = mcp_error(read(&client, uri).await.unwrap_err());
                assert_eq!(
                    serde_json::to_value(&e).unwrap(),
                    resource_not_found(uri),
                    "{case}"
                );
            }
            for name in ["addition_drill", "multiplication_drill"] {
                match drill(&client, name).await {
                    Ok(messages) => {
                        assert!(prompts.contains(&name), "{case}: {name} served");
                        let tool = if name == "addition_drill" {
                            "`add`"
                        } else {
                            "`multiply`"
                        };
                        assert!(messages.contains(tool), "{messages}");
                    }
                    Err(e) => {
                        assert!(!prompts.contains(&name), "{case}: {name} refused");
                        let e = serde_json::to_value(mcp_error(e)).unwrap();
                        let expected = json!({
                            "code": -32602,
                            "message": format!("prompt '{name}' not found"),
                            "data": {"available_prompts": prompts},
                        });
                        assert_eq!(e, expected, "{case}");
                    }
                }
            }
            client.cancel().await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_2026_07_28_client_sees_the_same_prompts_and_resources_privately() {
    // A handler that calls its lists and reads publicly cacheable: per-user answers must not be.
    let s = start_handler(Mode::Stateful, calculator_policy(), Lenient::default).await;
    let client = s
        .client_2026(&s.token("alice", json!(["operation=addition"])))
        .await;
    assert_eq!(prompt_names(&client).await, ["addition_drill"]);
    assert_eq!(template_uris(&client).await, [server::TABLES]);
    assert!(read(&client, ADDITION_TABLE).await.unwrap().contains("2 + 3 = 5"));
    // 2026-07-28 peers get -32602 for an unknown resource (rmcp maps -32002); hidden alike.
    let hidden = mcp_error(read(&client, MULTIPLICATION_TABLE).await.unwrap_err());
    assert_eq!(hidden.code.0, -32602);
    assert_eq!(hidden.data, Some(json!({"uri": MULTIPLICATION_TABLE})));
    let peer = client.peer();
    let private = Some(CacheScope::Private);
    assert_eq!(peer.list_prompts(None).await.unwrap().cache_scope, private);
    assert_eq!(peer.list_resources(None).await.unwrap().cache_scope, private);
    assert_eq!(
        peer.list_resource_templates(None).await.unwrap().cache_scope,
        private
    );
    let result = peer
        .read_resource(ReadResourceRequestParams::new(server::CONSTANTS))
        .await
        .unwrap();
    assert_eq!(result.cache_scope, private);
}

/// `division_drill` and `calc://tables/division` are in the policy (for `operation=division`)
/// but not in the calculator: for a caller who may see them, the wrapped handler answers as for
/// anything unknown. A caller who may not must get the very same bytes.
#[tokio::test]
async fn hidden_prompts_and_resources_answer_exactly_what_unknown_ones_do() {
    let policy = calculator_policy().prompt("division_drill", ToolRule::any_of([("operation", "division")]));
    for mode in [Mode::Stateful, Mode::Stateless] {
        let s = start_with(mode, policy.clone()).await;
        let john = s.raw(mode, &s.token("john", json!(["operation=addition"]))).await;
        let divider = s.token("dora", json!(["operation=addition", "operation=division"]));
        let divider = s.raw(mode, &divider).await;

        let get = |name: &str| json!({"name": name});
        let hidden = john.send("prompts/get", get("division_drill")).await;
        let unknown = divider.send("prompts/get", get("division_drill")).await;
        assert_eq!(hidden, unknown, "{mode:?}");
        assert_eq!(
            error_of(&unknown),
            json!({
                "code": -32602,
                "message": "prompt 'division_drill' not found",
                "data": {"available_prompts": ["addition_drill"]},
            })
        );
        // A hidden prompt that exists answers like one that does not (but for its name).
        let existing = john.send("prompts/get", get("multiplication_drill")).await;
        assert_eq!(existing.replace("multiplication_drill", "division_drill"), hidden);

        let uri = |uri: &str| json!({"uri": uri});
        let hidden = john.send("resources/read", uri("calc://tables/division")).await;
        let unknown = divider
            .send("resources/read", uri("calc://tables/division"))
            .await;
        assert_eq!(hidden, unknown, "{mode:?}");
        assert_eq!(error_of(&unknown), resource_not_found("calc://tables/division"));
        let existing = john.send("resources/read", uri(MULTIPLICATION_TABLE)).await;
        assert_eq!(existing.replace("multiplication", "division"), hidden);
        let unmentioned = john.send("resources/read", uri("calc://nothing")).await;
        assert_eq!(error_of(&unmentioned), resource_not_found("calc://nothing"));
    }
}

/// URIs that try to reach `calc://tables/multiplication` (or read around the policy) with a
/// token that holds `operation=addition` only, against a handler that would serve most of them
/// the multiplication table. Each gets exactly the hidden-resource error for the URI rmcp parsed.
#[tokio::test]
async fn template_instances_are_decided_on_the_exact_uri() {
    let hostile = [
        "calc://tables/%6Dultiplication",
        "calc://tables/multiplication%2F",
        "calc://tables/addition%2F..%2Fmultiplication",
        "calc://tables/addition/../multiplication",
        "calc://tables/../tables/multiplication",
        "calc://tables/./multiplication",
        "calc://tables//multiplication",
        "calc://tables/Multiplication",
        "CALC://TABLES/MULTIPLICATION",
        "calc://tables/multiplication/",
        "calc://tables/addition/",
        "calc://tables/multiplicatіon",               // Cyrillic і
        "calc://tables/ｍｕｌｔｉｐｌｉｃａｔｉｏｎ", // full-width
        "calc://tables/multi\u{200b}plication",
        "calc://tables/multiplication%00",
        "calc://tables/addition,multiplication",
        "calc://tables/addition&operation=multiplication",
        "calc://tables/addition;operation=multiplication",
        "calc://tables/addition?operation=multiplication",
        "calc://tables/multiplication?operation=addition",
        "calc://tables/multiplication#addition",
        "calc://tables/",
        "calc://tables",
    ];
    for mode in [Mode::Stateful, Mode::Stateless] {
        let s = start_handler(mode, calculator_policy(), Lenient::default).await;
        let john = s.raw(mode, &s.token("john", json!(["operation=addition"]))).await;
        for uri in hostile {
            let answer = john.send("resources/read", json!({"uri": uri})).await;
            assert_eq!(error_of(&answer), resource_not_found(uri), "{mode:?} {uri}");
        }
        // JSON escapes are decoded by rmcp before the wrapper decides: this is the plain URI.
        let escaped = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"calc://tables/\u006dultiplication"}}"#;
        let answer = john.send_body(escaped).await;
        assert_eq!(error_of(&answer), resource_not_found(MULTIPLICATION_TABLE));
        // A second value as a second key never reaches the handler.
        let twice = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"calc://tables/addition","uri":"calc://tables/multiplication"}}"#;
        assert_eq!(error_of(&john.send_body(twice).await)["code"], -32601);
        // The exact instance is read.
        let own = john.send("resources/read", json!({"uri": ADDITION_TABLE})).await;
        assert!(own.contains("2 + 3 = 5"), "{own}");
    }

    // The handler is as forgiving as claimed: where a policy lets such URIs through, it serves
    // them the multiplication table.
    let open = calculator_policy().resource_template(server::TABLES, ToolRule::public());
    let s = start_handler(Mode::Stateless, open, Lenient::default).await;
    let john = s
        .raw(Mode::Stateless, &s.token("john", json!(["operation=addition"])))
        .await;
    for uri in [
        "calc://tables/%6Dultiplication",
        "calc://tables/Multiplication",
        "calc://tables/addition,multiplication",
    ] {
        let answer = john.send("resources/read", json!({"uri": uri})).await;
        assert!(answer.contains("6 × 7 = 42"), "{uri}: {answer}");
    }
}

#[tokio::test]
async fn completions_offer_only_what_the_caller_may_read() {
    for mode in [Mode::Stateful, Mode::Stateless] {
        let s = start_handler(mode, calculator_policy(), Lenient::default).await;
        let john = s.client(&s.token("john", json!(["operation=addition"]))).await;
        let jane = s
            .client(&s.token("jane", json!(["operation=addition", "operation=multiplication"])))
            .await;
        let tables = || Reference::for_resource(server::TABLES);
        assert_eq!(completions(&john, tables(), "operation", "").await, ["addition"]);
        assert_eq!(
            completions(&jane, tables(), "operation", "").await,
            ["addition", "multiplication"]
        );
        assert_eq!(
            completions(&jane, tables(), "operation", "m").await,
            ["multiplication"]
        );
        assert!(completions(&john, tables(), "operation", "m").await.is_empty());
        let drill = |name: &str| Reference::for_prompt(name);
        assert_eq!(
            completions(&john, drill("addition_drill"), "level", "").await,
            ["easy", "hard"]
        );
        assert!(
            completions(&john, drill("multiplication_drill"), "level", "")
                .await
                .is_empty()
        );

        // Hidden prompts and templates complete exactly as unknown ones do.
        let raw = s.raw(mode, &s.token("john", json!(["operation=addition"]))).await;
        let complete =
            |reference: Value| json!({"ref": reference, "argument": {"name": "level", "value": ""}});
        let hidden = raw
            .send(
                "completion/complete",
                complete(json!({"type": "ref/prompt", "name": "multiplication_drill"})),
            )
            .await;
        let unknown = raw
            .send(
                "completion/complete",
                complete(json!({"type": "ref/prompt", "name": "no_such_drill"})),
            )
            .await;
        assert_eq!(hidden, unknown, "{mode:?}");
        let nobody = s.raw(mode, &s.token("nobody", json!([]))).await;
        let complete = |uri: &str| json!({"ref": {"type": "ref/resource", "uri": uri}, "argument": {"name": "operation", "value": ""}});
        let hidden = nobody.send("completion/complete", complete(server::TABLES)).await;
        let unknown = nobody
            .send("completion/complete", complete("calc://nothing/{operation}"))
            .await;
        assert_eq!(hidden, unknown, "{mode:?}");
        // rmcp's own answer for a prompt or template it does not know: an empty completion.
        let result: Value = serde_json::from_str(&hidden).unwrap();
        assert_eq!(result["result"]["completion"], json!({"values": []}));
    }
}

#[tokio::test]
async fn per_item_scopes_step_up_for_prompts_and_resources() {
    let policy = calculator_policy()
        .prompt(
            "addition_drill",
            ToolRule::any_of([("operation", "addition")]).with_scopes(["calc:drill"]),
        )
        .resource_template(
            server::TABLES,
            TemplateRule::binding("operation", "operation").with_scopes(["calc:tables"]),
        );
    let s = start_with(Mode::Stateless, policy).await;
    let token = s.token("john", json!(["operation=addition"]));
    let get_body = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"addition_drill"}}"#;
    let read_body =
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"calc://tables/addition"}}"#;
    for (body, method, name, scope) in [
        (get_body, "prompts/get", "addition_drill", "calc:drill"),
        (read_body, "resources/read", ADDITION_TABLE, "calc:tables"),
    ] {
        let sep2243 = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
            ("mcp-name", name),
        ];
        let (status, headers, _) = s.post(Some(&token), &sep2243, body).await;
        assert_eq!(status, 403, "{method}");
        let www = headers["www-authenticate"].to_str().unwrap();
        assert!(www.contains(&format!("scope=\"mcp:call {scope}\"")), "{www}");
        let (status, _, msgs) = s.post(Some(&token), &[], body).await;
        assert_eq!(status, 200);
        assert_eq!(
            msgs[0]["error"]["data"],
            json!({"error": "insufficient_scope", "scope": scope}),
            "{method}"
        );
    }
    // Listed all the same, and usable with the scopes.
    let client = s.client(&token).await;
    assert_eq!(prompt_names(&client).await, ["addition_drill"]);
    assert_eq!(template_uris(&client).await, [server::TABLES]);
    let stepped = s
        .issuer
        .token(&s.url)
        .scope("mcp:call calc:drill calc:tables")
        .claim("contexts", json!(["operation=addition"]))
        .sign();
    let client = s.client(&stepped).await;
    assert!(drill(&client, "addition_drill").await.unwrap().contains("`add`"));
    assert!(read(&client, ADDITION_TABLE).await.unwrap().contains("2 + 3 = 5"));
}

/// The calculator with resource subscriptions: legacy `resources/subscribe` (updates sent
/// through the session's peer when the public `touch` tool names a URI) and 2026-07-28
/// `subscriptions/listen` (it accepts whatever is asked and sends an update for each requested
/// URI, then a list-changed notification).
#[derive(Clone, Default)]
struct Watched {
    calculator: server::Calculator,
    subscribers: Subscribers,
}

/// The session's peer for each subscribed URI.
type Subscribers = Arc<std::sync::Mutex<Vec<(rmcp::Peer<rmcp::RoleServer>, String)>>>;

const KNOWN: [&str; 3] = [server::CONSTANTS, ADDITION_TABLE, MULTIPLICATION_TABLE];

impl rmcp::ServerHandler for Watched {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        let mut info = self.calculator.get_info();
        let resources = info.capabilities.resources.get_or_insert_with(Default::default);
        resources.subscribe = Some(true);
        resources.list_changed = Some(true);
        info
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: Ctx,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        if request.name != "touch" {
            return self.calculator.call_tool(request, context).await;
        }
        let arguments = request.arguments.unwrap_or_default();
        let uri = arguments["uri"].as_str().unwrap_or_default();
        let peers: Vec<_> = self
            .subscribers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, u)| u == uri)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in peers {
            peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .unwrap();
        }
        Ok(rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text("touched")]).into())
    }

    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: Ctx,
    ) -> Result<(), ErrorData> {
        if !KNOWN.contains(&request.uri.as_str()) {
            return Err(a3_mcp_auth::filtered::resource_not_found(&request.uri));
        }
        self.subscribers.lock().unwrap().push((context.peer, request.uri));
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: Ctx,
    ) -> Result<(), ErrorData> {
        self.subscribers
            .lock()
            .unwrap()
            .retain(|(_, uri)| *uri != request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        let requested = context
            .requested()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        for uri in requested {
            // The sink refuses what the accepted filter does not hold.
            let _ = context.sink().notify_resource_updated(uri).await;
        }
        let _ = context.sink().notify_resource_list_changed().await;
        context.cancelled().await;
        Ok(())
    }
}

/// The server-to-client messages of a session's GET stream.
struct Events(reqwest::Response, String);

impl Events {
    async fn open(s: &Server, token: &str, session: &str) -> Events {
        let response = reqwest::Client::new()
            .get(&s.url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Events(response, String::new())
    }

    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.1.find("\n\n") {
                let event: String = self.1.drain(..end + 2).collect();
                let data = event.lines().filter_map(|l| l.strip_prefix("data:")).next();
                if let Some(message) = data.and_then(|d| serde_json::from_str(d.trim()).ok()) {
                    return message;
                }
                continue;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), self.0.chunk())
                .await
                .expect("a message within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.1.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn a_subscription_ends_when_its_resource_is_no_longer_visible() {
    let policy = calculator_policy().public_tool("touch");
    let s = start_handler(Mode::Stateful, policy.clone(), Watched::default).await;
    let both = s.token("jane", json!(["operation=addition", "operation=multiplication"]));
    let jane = s.raw(Mode::Stateful, &both).await;
    let session = jane.session.clone().unwrap();
    let mut events = Events::open(&s, &both, &session).await;
    for uri in [ADDITION_TABLE, MULTIPLICATION_TABLE] {
        let answer = jane.send("resources/subscribe", json!({"uri": uri})).await;
        assert!(answer.contains("\"result\""), "{answer}");
    }
    let touch = |uri: &str| json!({"name": "touch", "arguments": {"uri": uri}});
    jane.send("tools/call", touch(MULTIPLICATION_TABLE)).await;
    let update = events.next().await;
    assert_eq!(update["method"], "notifications/resources/updated");
    assert_eq!(update["params"]["uri"], MULTIPLICATION_TABLE);

    // Jane's next token no longer carries operation=multiplication (same principal, same session).
    let jane = jane.with_token(&s.token("jane", json!(["operation=addition"])));
    jane.send("tools/call", touch(MULTIPLICATION_TABLE)).await;
    jane.send("tools/call", touch(ADDITION_TABLE)).await;
    let update = events.next().await;
    assert_eq!(update["params"]["uri"], ADDITION_TABLE, "{update}");
    let again = jane
        .send("resources/subscribe", json!({"uri": MULTIPLICATION_TABLE}))
        .await;
    assert_eq!(error_of(&again), resource_not_found(MULTIPLICATION_TABLE));

    // A hidden resource is refused exactly as one the handler does not know.
    let john = s
        .raw(Mode::Stateful, &s.token("john", json!(["operation=addition"])))
        .await;
    let divider = s.token("dora", json!(["operation=addition", "operation=division"]));
    let divider = s.raw(Mode::Stateful, &divider).await;
    let division = json!({"uri": "calc://tables/division"});
    let hidden = john.send("resources/subscribe", division.clone()).await;
    assert_eq!(hidden, divider.send("resources/subscribe", division).await);
    assert_eq!(error_of(&hidden), resource_not_found("calc://tables/division"));

    // The calculator does not offer subscriptions: hidden and visible URIs get rmcp's same answer.
    let s = start(Mode::Stateful).await;
    let john = s
        .raw(Mode::Stateful, &s.token("john", json!(["operation=addition"])))
        .await;
    let hidden = john
        .send("resources/subscribe", json!({"uri": MULTIPLICATION_TABLE}))
        .await;
    let visible = john
        .send("resources/subscribe", json!({"uri": ADDITION_TABLE}))
        .await;
    assert_eq!(hidden, visible);
    assert_eq!(error_of(&hidden)["code"], -32601);
}

#[tokio::test]
async fn subscriptions_listen_accepts_no_resource_subscriptions() {
    let s = start_handler(Mode::Stateful, calculator_policy(), Watched::default).await;
    let client = s
        .client_2026(&s.token("john", json!(["operation=addition"])))
        .await;
    let filter = SubscriptionFilter::builder()
        .resources_list_changed()
        .resource_subscriptions([ADDITION_TABLE.to_owned(), MULTIPLICATION_TABLE.to_owned()])
        .build();
    let mut subscription = client.peer().listen(filter).await.unwrap();
    let accepted = subscription.acknowledged();
    assert_eq!(accepted.resource_subscriptions, None);
    assert_eq!(accepted.resources_list_changed, Some(true));
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), subscription.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, ServerNotification::ResourceListChangedNotification(_)),
        "{first:?}"
    );
}

#[tokio::test]
async fn reads_and_directory_reads_keep_only_what_the_caller_may_read() {
    let policy = calculator_policy().public_resource("calc://tables").resource(
        "calc://tables/",
        ToolRule::any_of([("operation", "multiplication")]),
    );
    for mode in [Mode::Stateful, Mode::Stateless] {
        let s = start_handler(mode, policy.clone(), Lenient::default).await;
        let john = s.raw(mode, &s.token("john", json!(["operation=addition"]))).await;
        let mary = s
            .raw(mode, &s.token("mary", json!(["operation=multiplication"])))
            .await;
        let all = john.send("resources/read", json!({"uri": "calc://tables"})).await;
        let all: Value = serde_json::from_str(&all).unwrap();
        let uris: Vec<&str> = all["result"]["contents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["uri"].as_str().unwrap())
            .collect();
        assert_eq!(uris, [ADDITION_TABLE], "{mode:?}");

        let directory = json!({"uri": "calc://tables/"});
        let children = mary.send("resources/directory/read", directory.clone()).await;
        let children: Value = serde_json::from_str(&children).unwrap();
        assert_eq!(
            children["result"]["resources"][0]["uri"], MULTIPLICATION_TABLE,
            "{mode:?}"
        );
        assert_eq!(children["result"]["resources"].as_array().unwrap().len(), 1);
        let hidden = john.send("resources/directory/read", directory).await;
        assert_eq!(error_of(&hidden), resource_not_found("calc://tables/"));
    }
}

/// A handler that serves tools only: for it, rmcp itself answers every prompt, resource and
/// completion request with method-not-found, and hidden items must get that same answer.
#[derive(Clone, Default)]
struct ToolsOnly;

impl rmcp::ServerHandler for ToolsOnly {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(rmcp::model::ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::test]
async fn hidden_items_of_a_handler_without_prompts_or_resources_get_rmcp_answers() {
    for mode in [Mode::Stateful, Mode::Stateless] {
        let s = start_handler(mode, calculator_policy(), ToolsOnly::default).await;
        let john = s.raw(mode, &s.token("john", json!(["operation=addition"]))).await;
        let pairs = [
            (
                "prompts/get",
                json!({"name": "multiplication_drill"}),
                json!({"name": "addition_drill"}),
            ),
            (
                "resources/read",
                json!({"uri": MULTIPLICATION_TABLE}),
                json!({"uri": ADDITION_TABLE}),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "multiplication_drill"}, "argument": {"name": "level", "value": ""}}),
                json!({"ref": {"type": "ref/prompt", "name": "addition_drill"}, "argument": {"name": "level", "value": ""}}),
            ),
        ];
        for (method, hidden, visible) in pairs {
            let hidden = john.send(method, hidden).await;
            assert_eq!(hidden, john.send(method, visible).await, "{mode:?} {method}");
            assert_eq!(error_of(&hidden)["code"], -32601, "{method}");
        }
    }
}

#[test]
fn the_readme_shows_the_example_policy() {
    let readme = include_str!("../README.md");
    let after = readme
        .split_once("The example server's policy:\n\n```json\n")
        .expect("the README shows the example's policy")
        .1;
    let json = after.split_once("```").unwrap().0;
    assert_eq!(ToolPolicy::from_json_str(json).unwrap(), calculator_policy());
}
