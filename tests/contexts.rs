//! End to end: the example server (every layer, real HTTP on 127.0.0.1:0) driven by the rmcp
//! client and by raw requests, with tokens from the crate's test issuer.

#[path = "../examples/server.rs"]
#[allow(dead_code)]
mod server;

use std::sync::Arc;

use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{ToolPolicy, ToolRule};
use reqwest::StatusCode;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, ServiceExt};
use serde_json::{Value, json};
use server::{McpSettings, Mode, calculator_policy, mcp_app};

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
    let app = mcp_app(issuer.verifier(&url).await, &settings).unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
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
        let text = response.text().await.unwrap();
        (status, headers, messages(&text))
    }
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
        let mut session = vec![];
        if mode == Mode::Stateful {
            let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
            let (status, headers, _) = s.post(Some(&token), &[], init).await;
            assert_eq!(status, 200);
            let id = headers["mcp-session-id"].to_str().unwrap().to_owned();
            session.push(("mcp-session-id", id));
            let headers: Vec<(&str, &str)> = session.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
            assert_eq!(s.post(Some(&token), &headers, initialized).await.0, 202);
        }
        let headers: Vec<(&str, &str)> = session.iter().map(|(k, v)| (*k, v.as_str())).collect();
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

/// A handler with a lenient custom-request path (it serves `Tools/Call` and malformed
/// `tools/call` itself): the wrapper must keep such requests away from it.
#[derive(Clone, Default)]
struct Lenient(server::Calculator);

impl rmcp::ServerHandler for Lenient {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        self.0.get_info()
    }

    async fn list_tools(
        &self,
        request: Option<rmcp::model::PaginatedRequestParams>,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        self.0.list_tools(request, context).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        self.0.call_tool(request, context).await
    }

    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        if !request.method.eq_ignore_ascii_case("tools/call") {
            return Err(ErrorData::method_not_found::<rmcp::model::CallToolRequestMethod>());
        }
        let params = request.params.unwrap_or_default();
        let name = params["name"]
            .as_str()
            .or_else(|| params["name"][0].as_str())
            .unwrap_or_default()
            .to_owned();
        let arguments = params["arguments"].as_object().cloned().unwrap_or_default();
        let call = CallToolRequestParams::new(name).with_arguments(arguments);
        match self.0.call_tool(call, context).await? {
            rmcp::model::CallToolResponse::Complete(r) => {
                Ok(rmcp::model::CustomResult(serde_json::to_value(r).unwrap()))
            }
            _ => Err(ErrorData::internal_error("unexpected", None)),
        }
    }
}

#[tokio::test]
async fn non_canonical_tool_requests_never_reach_the_wrapped_handler() {
    let issuer = TestIssuer::start().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let settings = McpSettings {
        resource_uri: url.clone(),
        issuer: issuer.url().to_owned(),
        context_claim: "contexts".into(),
        policy: Arc::new(calculator_policy()),
        mode: Mode::Stateless,
        extra_hosts: vec![],
        allowed_origins: vec![],
    };
    let app = server::mcp_app_with(issuer.verifier(&url).await, &settings, Lenient::default).unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = Server { issuer, url, task };
    let token = s.token("mallory", json!(["operation=addition"]));
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":" tools/call","params":{"name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"multiply","arguments":{"a":1234,"b":1000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["multiply"],"arguments":{"a":1234,"b":1000}}}"#,
    ] {
        let (status, _, msgs) = s.post(Some(&token), &[], body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(msgs[0]["error"]["code"], -32601, "{body}: {msgs:?}");
    }
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
