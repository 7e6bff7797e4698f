//! The composition of the quickstart's MCP server, apart from how it is started: the calculator
//! (which knows nothing about tokens: tools, drill prompts, constants and tables), its context
//! policy, [`mcp_app`], which puts the calculator behind every layer of the crate,
//! [`bridged_app`], which adds the DCR bridge and the health routes, and [`admin_app`], the admin
//! listener's routes. `main.rs` reads the environment and listens; the end-to-end tests include
//! this file to test exactly what `cargo run --example server` serves.

use std::sync::Arc;
use std::time::Duration;

use a3_mcp_auth::context::policy::{ContextRule, TemplateRule};
use a3_mcp_auth::dcr::DcrBridge;
use a3_mcp_auth::{
    A3Config, BearerAuthLayer, Caller, ContextFiltered, ContextPolicy, OriginCheckLayer,
    ProtectedResourceMetadata, RequireScopeLayer, SessionBindingLayer, TokenVerifier, ToolContextLayer,
};
use axum::Router;
use axum::routing::get;
use http::{HeaderName, HeaderValue, Method, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, PromptMessage, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, Resource, ResourceContents, ResourceTemplate, Role,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{
    ErrorData, RoleServer, ServerHandler, prompt, prompt_handler, prompt_router, tool, tool_handler,
    tool_router,
};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// The scope every MCP request needs (the quickstart's `mcp:call`).
pub const MCP_SCOPE: &str = "mcp:call";

/// Two operands.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Operands {
    /// The first operand.
    pub a: f64,
    /// The second operand.
    pub b: f64,
}

/// The arguments of a drill prompt.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Drill {
    /// `easy` (operands up to 10, the default) or `hard` (up to 100).
    pub level: Option<String>,
}

/// The public resource: mathematical constants.
pub const CONSTANTS: &str = "calc://constants";
/// The resource template: the table of one operation.
pub const TABLES: &str = "calc://tables/{operation}";
const OPERATIONS: [(&str, &str); 2] = [("addition", "+"), ("multiplication", "×")];
const LEVELS: [&str; 2] = ["easy", "hard"];

/// The quickstart's calculator. It knows nothing about tokens or contexts: the layers and
/// [`ContextFiltered`] decide who sees which tool, prompt and resource.
#[derive(Clone)]
pub struct Calculator {
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

impl Default for Calculator {
    fn default() -> Self {
        Calculator {
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }
}

#[tool_router]
impl Calculator {
    /// Adds two numbers.
    #[tool]
    async fn add(&self, Parameters(Operands { a, b }): Parameters<Operands>) -> String {
        (a + b).to_string()
    }

    /// Multiplies two numbers.
    #[tool]
    async fn multiply(&self, Parameters(Operands { a, b }): Parameters<Operands>) -> String {
        (a * b).to_string()
    }

    /// Reports who is calling: subject, client and A3 contexts.
    #[tool]
    async fn whoami(&self, caller: Caller) -> String {
        serde_json::json!({
            "subject": caller.claims.subject(),
            "client_id": caller.claims.client_id(),
            "contexts": caller.contexts.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

#[prompt_router]
impl Calculator {
    /// Practice additions: the assistant asks, the user answers, `add` checks.
    #[prompt]
    async fn addition_drill(
        &self,
        Parameters(drill): Parameters<Drill>,
    ) -> Result<Vec<PromptMessage>, ErrorData> {
        drill_messages("addition", "add", drill)
    }

    /// Practice multiplications: the assistant asks, the user answers, `multiply` checks.
    #[prompt]
    async fn multiplication_drill(
        &self,
        Parameters(drill): Parameters<Drill>,
    ) -> Result<Vec<PromptMessage>, ErrorData> {
        drill_messages("multiplication", "multiply", drill)
    }
}

fn drill_messages(operation: &str, tool: &str, drill: Drill) -> Result<Vec<PromptMessage>, ErrorData> {
    let up_to = match drill.level.as_deref().unwrap_or("easy") {
        "easy" => 10,
        "hard" => 100,
        _ => return Err(ErrorData::invalid_params("level must be easy or hard", None)),
    };
    Ok(vec![PromptMessage::new_text(
        Role::User,
        format!(
            "Drill me on {operation}: ask me five questions with operands up to {up_to}, one at a time, \
             and check each of my answers with the `{tool}` tool."
        ),
    )])
}

/// The table of `operation` for operands 1 to 10, one `a op b = c` per line.
fn table(operation: &str) -> Option<String> {
    let (name, sign) = OPERATIONS.into_iter().find(|(name, _)| *name == operation)?;
    let mut out = String::new();
    for a in 1..=10u32 {
        for b in 1..=10u32 {
            let c = if name == "addition" { a + b } else { a * b };
            out.push_str(&format!("{a} {sign} {b} = {c}\n"));
        }
    }
    Some(out)
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for Calculator {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("a3-calculator", env!("CARGO_PKG_VERSION")))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let constants = Resource::new(CONSTANTS, "constants")
            .with_description("pi and e")
            .with_mime_type("text/plain");
        let tables = OPERATIONS.map(|(operation, _)| {
            Resource::new(format!("calc://tables/{operation}"), format!("{operation} table"))
                .with_mime_type("text/plain")
        });
        Ok(ListResourcesResult::with_all_items(
            [constants].into_iter().chain(tables).collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let tables = ResourceTemplate::new(TABLES, "tables")
            .with_description("the table of addition or multiplication for 1 to 10")
            .with_mime_type("text/plain");
        Ok(ListResourceTemplatesResult::with_all_items(vec![tables]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let text = match request.uri.as_str() {
            CONSTANTS => Some(format!(
                "pi = {}\ne = {}\n",
                std::f64::consts::PI,
                std::f64::consts::E
            )),
            uri => uri.strip_prefix("calc://tables/").and_then(table),
        };
        match text {
            Some(text) => Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri)]).into()),
            // rmcp's own convention for an unknown URI (its example servers answer the same).
            None => Err(ErrorData::resource_not_found(
                "resource_not_found",
                Some(serde_json::json!({ "uri": request.uri })),
            )),
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: Vec<&str> = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Resource(r), "operation") if r.uri == TABLES => {
                OPERATIONS.iter().map(|(name, _)| *name).collect()
            }
            (Reference::Prompt(p), "level") if self.prompt_router.has_route(&p.name) => LEVELS.to_vec(),
            _ => Vec::new(),
        };
        let values = candidates
            .into_iter()
            .filter(|v| v.starts_with(&request.argument.value))
            .map(str::to_owned)
            .collect();
        let completion = CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(completion))
    }
}

/// Which context unlocks which tool, prompt and resource (the quickstart's Contexts).
pub fn calculator_policy() -> ContextPolicy {
    let addition = || ContextRule::any_of([("operation", "addition")]);
    let multiplication = || ContextRule::any_of([("operation", "multiplication")]);
    ContextPolicy::new()
        .tool("add", addition())
        .tool("multiply", multiplication())
        .public_tool("whoami")
        .prompt("addition_drill", addition())
        .prompt("multiplication_drill", multiplication())
        .public_resource(CONSTANTS)
        .resource_template(TABLES, TemplateRule::binding("operation", "operation"))
}

/// Session handling of the MCP endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// rmcp sessions (`Mcp-Session-Id`, GET stream), each bound to the principal that opened it.
    Stateful,
    /// No sessions: every request stands alone (2026-07-28 clients are always served this way).
    Stateless,
}

/// Everything the protected MCP endpoint needs besides the token verifier.
#[derive(Clone, Debug)]
pub struct McpSettings {
    /// The resource URI (token audience); its path is where the endpoint is mounted.
    pub resource_uri: String,
    /// The issuer advertised in the protected-resource metadata.
    pub issuer: String,
    /// The claim that holds A3 Contexts.
    pub context_claim: String,
    /// Which contexts unlock which tools, prompts and resources.
    pub policy: Arc<ContextPolicy>,
    /// Stateful or stateless.
    pub mode: Mode,
    /// Allowed `Host` values besides the loopback names.
    pub extra_hosts: Vec<String>,
    /// Allowed browser origins (CORS and the Origin check).
    pub allowed_origins: Vec<String>,
}

impl McpSettings {
    /// The settings of `config` with the calculator policy, stateful, no browser origins.
    /// (`main.rs` applies the example's own variables on top: `TOOL_POLICY`, `MCP_STATELESS`,
    /// `ALLOWED_ORIGINS`.)
    pub fn new(config: &A3Config) -> Self {
        let host = url::Url::parse(config.resource_uri())
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        McpSettings {
            resource_uri: config.resource_uri().to_owned(),
            issuer: config.issuer().to_owned(),
            context_claim: config.context_claim().to_owned(),
            policy: Arc::new(calculator_policy()),
            mode: Mode::Stateful,
            extra_hosts: host.into_iter().collect(),
            allowed_origins: Vec::new(),
        }
    }
}

/// The MCP endpoint behind every layer, plus its protected-resource metadata, as one router.
/// The DCR bridge merges its own routes beside it (and passes a verifier that also accepts its
/// tokens).
pub fn mcp_app<V: TokenVerifier>(
    verifier: V,
    settings: &McpSettings,
) -> Result<Router, Box<dyn std::error::Error>> {
    mcp_app_with(verifier, settings, Calculator::default)
}

/// [`mcp_app`] for any rmcp handler: `handler` builds one per session (stateful) or per request.
pub fn mcp_app_with<V, H, F>(
    verifier: V,
    settings: &McpSettings,
    handler: F,
) -> Result<Router, Box<dyn std::error::Error>>
where
    V: TokenVerifier,
    H: ServerHandler,
    F: Fn() -> H + Send + Sync + 'static,
{
    let metadata = ProtectedResourceMetadata::new(&settings.resource_uri)?
        .with_authorization_server(&settings.issuer)
        .with_scopes_supported([MCP_SCOPE]);
    let challenge = metadata.challenge();
    let path = url::Url::parse(&settings.resource_uri)?.path().to_owned();

    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()];
    hosts.extend(settings.extra_hosts.iter().cloned());
    let mut origin_check = OriginCheckLayer::new().allow_hosts(hosts.clone());
    for origin in &settings.allowed_origins {
        origin_check = origin_check.allow_origin(origin);
    }
    // rmcp checks Host too (after authentication); give it the same list ("::1" unbracketed).
    let rmcp_hosts: Vec<String> = hosts
        .iter()
        .map(|h| h.trim_matches(['[', ']']).to_owned())
        .collect();
    let rmcp_config = StreamableHttpServerConfig::default().with_allowed_hosts(rmcp_hosts);

    // rmcp drops a session after `keep_alive` without messages; its binding goes with it.
    let sessions = LocalSessionManager::default();
    let keep_alive = sessions.session_config.keep_alive.unwrap_or(Duration::MAX);
    let auth = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(verifier, challenge.clone()))
        .layer(RequireScopeLayer::new([MCP_SCOPE], challenge.clone()))
        .layer(SessionBindingLayer::new().with_idle_timeout(keep_alive))
        .layer(
            ToolContextLayer::from_arc(settings.policy.clone(), challenge)
                .with_claim(settings.context_claim.clone())
                .with_base_scopes([MCP_SCOPE]),
        );
    let factory = move || Ok(ContextFiltered::new(handler()));
    let mcp = match settings.mode {
        Mode::Stateful => Router::new().route_service(
            &path,
            auth.service(StreamableHttpService::new(
                factory,
                Arc::new(sessions),
                rmcp_config.with_legacy_session_mode(true),
            )),
        ),
        Mode::Stateless => Router::new().route_service(
            &path,
            auth.service(StreamableHttpService::new(
                factory,
                Arc::new(NeverSessionManager::default()),
                rmcp_config
                    .with_legacy_session_mode(false)
                    .with_json_response(true),
            )),
        ),
    };

    let mcp_session_id = HeaderName::from_static("mcp-session-id");
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            settings.allowed_origins.iter().filter_map(|o| o.parse().ok()),
        ))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            mcp_session_id.clone(),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE, mcp_session_id]);

    Ok(mcp.layer(origin_check).merge(metadata.router()).layer(
        ServiceBuilder::new()
            // Redact the token in every trace and log below this point.
            .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
            .layer(TraceLayer::new_for_http())
            .layer(cors)
            .layer(RequestBodyLimitLayer::new(1024 * 1024))
            // Time to response headers only: SSE streams that follow are not cut.
            .layer(TimeoutLayer::with_status_code(
                http::StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(60),
            )),
    ))
}

/// The example server with the DCR bridge: [`mcp_app`] with the bridge's verifier (our tokens and
/// A3's), the bridge's routes, and `/healthz` and `/readyz` (the bridge's store and A3's keys),
/// all on the main listener; the health routes and the bridge's are outside the auth layers.
pub fn bridged_app(bridge: &DcrBridge, settings: &McpSettings) -> Result<Router, Box<dyn std::error::Error>> {
    Ok(mcp_app(bridge.token_verifier(), settings)?
        .merge(bridge.router())
        .merge(bridge.readiness().router()))
}

/// Histogram buckets of the crate's `_seconds` metrics (store operations: sub-millisecond;
/// requests to A3: up to its 15 s timeout).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
];

/// Installs the Prometheus recorder for this process (the `metrics` facade's global recorder,
/// which the crate emits into) and gives it the crate's metric descriptions. Call once.
pub fn install_metrics() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    a3_mcp_auth::metrics::describe();
    // Histograms are drained on upkeep; scrapes alone would let them grow.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The admin listener's routes: `GET /metrics` in the Prometheus text format.
pub fn admin_app(metrics: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// The scopes the DCR bridge offers to hosts: `mcp:call` and every extra scope the tool policy
/// requires, so a host answered `insufficient_scope` can step up to it.
pub fn offered_scopes(policy: &ContextPolicy) -> Vec<String> {
    let mut scopes = vec![MCP_SCOPE.to_owned()];
    for scope in policy.scopes() {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// The start-up summary: where tokens come from, and which tools, prompts and resources each
/// context unlocks.
pub fn summary(settings: &McpSettings) -> String {
    let mut s = format!(
        "issuer:   {}\nresource: {}\nmode:     {:?}\ncontexts (claim \"{}\"):\n",
        settings.issuer, settings.resource_uri, settings.mode, settings.context_claim
    );
    for (context, unlocked) in settings.policy.unlocks() {
        let who = context.map_or_else(|| "(everyone)".to_owned(), |c| c.to_string());
        let kinds = [
            ("tools", &unlocked.tools),
            ("prompts", &unlocked.prompts),
            ("resources", &unlocked.resources),
        ];
        let what: Vec<String> = kinds
            .into_iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(kind, items)| format!("{kind}: {}", items.join(", ")))
            .collect();
        s.push_str(&format!("  {who:<28} -> {}\n", what.join("; ")));
    }
    s
}
