//! A3 Contexts deciding which MCP tools each user sees, on any rmcp handler.
//!
//! The handler below knows nothing about tokens: [`ToolContextLayer`] computes, per request, the
//! tools the caller's contexts unlock under a [`ToolPolicy`], and [`ContextFiltered`] enforces
//! that where rmcp dispatches (`tools/list` shows only those; calling another one fails exactly
//! as an unknown tool does).
//!
//! ```text
//! cargo run --example contexts
//! ```
//!
//! It starts the crate's loopback test issuer and prints two tokens: one holding
//! `region=eu`, one holding `region=eu` and `role=auditor`. Use them with any MCP client at
//! `http://127.0.0.1:8000/mcp` (e.g. MCP Inspector with an `Authorization` header).

use std::sync::Arc;

use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{
    BearerAuthLayer, Caller, ContextFiltered, ProtectedResourceMetadata, RequireScopeLayer, ToolContextLayer,
    ToolPolicy, ToolRule,
};
use axum::Router;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;
use tower::ServiceBuilder;

const RESOURCE: &str = "http://127.0.0.1:8000/mcp";

/// A reporting service: every tool is plain rmcp.
#[derive(Clone)]
struct Reports {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Reports {
    /// Sales in the EU.
    #[tool]
    async fn eu_sales(&self) -> String {
        "EU sales: 1 204 units".into()
    }

    /// The audit log: needs `region=eu` and `role=auditor`.
    #[tool]
    async fn audit_log(&self) -> String {
        "3 entries".into()
    }

    /// Who is calling, and with which contexts.
    #[tool]
    async fn whoami(&self, caller: Caller) -> String {
        let contexts: Vec<String> = caller.contexts.iter().map(ToString::to_string).collect();
        format!("{} {:?}", caller.claims.subject().unwrap_or("?"), contexts)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Reports {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Which contexts unlock which tool; anything unlisted is hidden. This could also be read from
    // a JSON file with `ToolPolicy::from_json_file`.
    let policy = ToolPolicy::new()
        .tool("eu_sales", ToolRule::any_of([("region", "eu")]))
        .tool(
            "audit_log",
            ToolRule::all_of([("region", "eu"), ("role", "auditor")]),
        )
        .public_tool("whoami");

    let issuer = TestIssuer::start().await;
    let token = |sub: &str, contexts: serde_json::Value| {
        issuer
            .token(RESOURCE)
            .subject(sub)
            .scope("mcp:call")
            .claim("contexts", contexts)
            .sign()
    };
    println!("alice (region=eu):\n  {}", token("alice", json!(["region=eu"])));
    println!(
        "bob (region=eu, role=auditor):\n  {}\n",
        token("bob", json!({"region": "eu", "role": "auditor"}))
    );

    let metadata = ProtectedResourceMetadata::new(RESOURCE)?
        .with_authorization_server(issuer.url())
        .with_scopes_supported(["mcp:call"]);
    let challenge = metadata.challenge();
    let mcp = StreamableHttpService::new(
        || {
            Ok(ContextFiltered::new(Reports {
                tool_router: Reports::tool_router(),
            }))
        },
        Arc::new(NeverSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true),
    );
    let auth = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(
            issuer.verifier(RESOURCE).await,
            challenge.clone(),
        ))
        .layer(RequireScopeLayer::new(["mcp:call"], challenge.clone()))
        .layer(ToolContextLayer::new(policy, challenge).with_base_scopes(["mcp:call"]));
    let app = Router::new()
        .route_service("/mcp", auth.service(mcp))
        .merge(metadata.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!("MCP server on {RESOURCE}");
    axum::serve(listener, app).await?;
    Ok(())
}
