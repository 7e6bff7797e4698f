//! The rmcp OAuth client as the MCP host: discovery, registration, PKCE, tools.

use rmcp::ServiceExt;
use rmcp::model::*;
use rmcp::transport::auth::{AuthClient, AuthorizationManager, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use serde_json::Value;

use super::bridge::Server;
use super::bridge::query_param;
use super::browser::authorize;

// The rmcp OAuth client as the MCP host.

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
    use_tools_at(&server.mcp_url(), manager, calls).await
}

/// [`use_tools`] against any MCP endpoint.
pub async fn use_tools_at(
    mcp_url: &str,
    manager: AuthorizationManager,
    calls: &[(&str, Value)],
) -> (Vec<String>, Vec<Result<String, String>>) {
    let transport = StreamableHttpClientTransport::with_client(
        AuthClient::new(reqwest::Client::default(), manager),
        StreamableHttpClientTransportConfig::with_uri(mcp_url.to_owned()),
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
    let results = call_each(client.peer(), calls).await;
    let _ = client.cancel().await;
    (names, results)
}

/// Opens an MCP session with the bearer `token` and calls each of `calls` (name, arguments):
/// per call, the text result or the JSON-RPC error message.
pub async fn call_tools(mcp_url: &str, token: &str, calls: &[(&str, Value)]) -> Vec<Result<String, String>> {
    let transport = StreamableHttpClientTransport::with_client(
        reqwest::Client::default(),
        StreamableHttpClientTransportConfig::with_uri(mcp_url.to_owned()).auth_header(token),
    );
    let client = ClientConfig::default()
        .serve(transport)
        .await
        .expect("MCP session");
    let results = call_each(client.peer(), calls).await;
    let _ = client.cancel().await;
    results
}

async fn call_each(
    peer: &rmcp::Peer<rmcp::RoleClient>,
    calls: &[(&str, Value)],
) -> Vec<Result<String, String>> {
    let mut results = Vec::new();
    for (name, args) in calls {
        let mut params = CallToolRequestParams::new(name.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map.clone());
        }
        results.push(match peer.call_tool(params).await {
            Ok(r) => Ok(r
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect::<Vec<_>>()
                .join("")),
            Err(e) => Err(e.to_string()),
        });
    }
    results
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
