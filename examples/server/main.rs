//! The quickstart's protected MCP server: calculator tools unlocked by A3 Contexts.
//! This file reads the environment and listens; `app.rs` is the composition.
//!
//! ```text
//! # .env (the same file as A3's quickstart)
//! ISSUER_PATH=...        # or ISSUER_URL=https://... for any OIDC issuer
//! CLIENT_ID=...          # the predefined A3 client the DCR bridge uses
//! CLIENT_SECRET=...
//! # optional: RESOURCE_URI (default http://127.0.0.1:8000/mcp), CONTEXT_CLAIM (default contexts),
//! #           TOOL_POLICY=path/to/policy.json, MCP_STATELESS=1, ALLOWED_ORIGINS="http://localhost:6274 ..."
//! # several replicas (README "Running several replicas"): STORE_URL=redis://127.0.0.1:6379/0,
//! #           STORE_PREFIX, TOKEN_ENCRYPTION_KEY (required then), PUBLIC_URL, MCP_STATELESS=1,
//! #           BIND_ADDR=127.0.0.1:8001 (default: host and port of RESOURCE_URI)
//! # operations (README "Operating it"): the admin listener, ADMIN_ADDR (default 127.0.0.1:9464),
//! #           with /metrics and the admin API, ADMIN_TOKEN (required off loopback); /healthz
//! #           and /readyz are on the main listener
//! # how hosts identify themselves (README "Client ID Metadata Documents"): CIMD_ENABLED,
//! #           CIMD_ALLOWED_HOSTS="vscode.dev claude.ai", DCR_ENABLED=false,
//! #           CIMD_ALLOW_LOOPBACK=1 (development and tests only)
//!
//!
//! cargo run --example server
//! ```
//!
//! Tools: `add` (context `operation=addition`), `multiply` (`operation=multiplication`) and the
//! public `whoami`. Prompts: `addition_drill` (`operation=addition`), `multiplication_drill`
//! (`operation=multiplication`). Resources: the public `calc://constants`, and the template
//! `calc://tables/{operation}` whose instance `calc://tables/<op>` needs `operation=<op>`.
//! Every request needs a token with scope `mcp:call`: one the DCR bridge issued (when
//! `CLIENT_ID`/`CLIENT_SECRET` are set, or with the development issuer), or an A3 access token
//! for the resource.

mod app;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use a3_mcp_auth::config::A3ConfigBuilder;
use a3_mcp_auth::dcr::DcrBridge;
use a3_mcp_auth::dev_issuer::{self, DevIssuer};
use a3_mcp_auth::health::Readiness;
use a3_mcp_auth::{A3Config, ContextPolicy, JwtVerifier};
use app::{McpSettings, Mode, admin_app, bridged_app, install_metrics, mcp_app, offered_scopes, summary};

/// The example's own settings on top of [`McpSettings::new`]: `TOOL_POLICY` (a JSON context
/// policy file: tools, prompts, resources), `MCP_STATELESS=1`, `ALLOWED_ORIGINS` (space-separated browser origins).
fn settings_from_env(config: &A3Config) -> Result<McpSettings, Box<dyn std::error::Error>> {
    let mut settings = McpSettings::new(config);
    if let Ok(path) = std::env::var("TOOL_POLICY") {
        settings.policy = Arc::new(ContextPolicy::from_json_file(path)?);
    }
    if let Ok("1" | "true") = std::env::var("MCP_STATELESS").as_deref() {
        settings.mode = Mode::Stateless;
    }
    let origins = std::env::var("ALLOWED_ORIGINS").unwrap_or_default();
    settings.allowed_origins = origins.split_whitespace().map(str::to_owned).collect();
    Ok(settings)
}

/// The log filter unless `RUST_LOG` is set. rmcp logs every new MCP session id at INFO (and
/// names it in its session span); a session id is a credential for its owner's session, so that
/// module logs only warnings and errors.
const DEFAULT_LOG_FILTER: &str =
    "info,a3_mcp_auth=debug,tower_http=info,rmcp::transport::streamable_http_server::session=warn";

/// The second quickstart user of the development issuer: holds both contexts, so `multiply`
/// appears for them (the quickstart's "Next Explorations").
const SECOND_USER: &str = "janedoe@test.com";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .init();
    let metrics = install_metrics()?;
    let mut builder = match A3ConfigBuilder::from_env() {
        Ok(builder) => builder,
        Err(e) => fail(&e),
    };
    // Without an A3 environment, an embedded development issuer stands in for A3 (loopback only).
    let _dev_issuer = if builder.has_issuer() {
        None
    } else {
        let probe = builder
            .clone()
            .issuer_url("http://127.0.0.1")
            .build()
            .unwrap_or_else(|e| fail(&e));
        let public = probe.public_url();
        let dev = DevIssuer::builder()
            .client(
                dev_issuer::DEFAULT_CLIENT_ID,
                random_secret(),
                [format!("{public}/auth/callback")],
            )
            .resource(probe.resource_uri())
            .context_claim(probe.context_claim())
            .user(
                SECOND_USER,
                dev_issuer::DEFAULT_USER_PASSWORD,
                [("operation", "addition"), ("operation", "multiplication")],
            )
            .start()
            .await?;
        eprintln!("{}", dev.banner());
        builder = builder
            .issuer_url(dev.url())
            .client(dev.client_id(), dev.client_secret());
        Some(dev)
    };
    let config = builder.build().unwrap_or_else(|e| fail(&e));
    let mut settings = settings_from_env(&config)?;

    // The operator's routes (metrics, and the admin API with the bridge), served on their own
    // listener.
    let mut admin_routes = admin_app(metrics);
    // With the predefined A3 client configured, hosts register with us (DCR) and get our tokens;
    // A3 access tokens for this resource are still accepted directly.
    let app = if config.client_id().is_some() {
        let bridge = DcrBridge::builder(&config)
            .scopes(offered_scopes(&settings.policy))
            .build()
            .await?;
        settings.issuer = bridge.issuer().to_owned();
        tracing::info!(
            "DCR bridge: authorization server {} for hosts, A3 client {} upstream",
            bridge.issuer(),
            config.client_id().unwrap_or_default()
        );
        admin_routes = admin_routes.merge(bridge.admin_router());
        bridged_app(&bridge, &settings)?
    } else {
        tracing::warn!("CLIENT_ID/CLIENT_SECRET unset: no DCR bridge; only A3 access tokens are accepted");
        let verifier = JwtVerifier::from_config(&config).await?;
        let readiness = Readiness::new().with_key_store(verifier.keys());
        mcp_app(verifier, &settings)?.merge(readiness.router())
    };
    // On ADMIN_ADDR (loopback by default), never on the public listener; admin::serve admits
    // only the operator (ADMIN_TOKEN, else loopback callers) to every route there.
    let admin = a3_mcp_auth::admin::serve(&config, admin_routes).await?;
    tracing::info!(
        "admin listener on http://{} (/metrics, /admin/...)",
        admin.local_addr()?
    );
    tokio::spawn(admin.into_future());

    let resource = url::Url::parse(&settings.resource_uri)?;
    let port = resource.port_or_known_default().unwrap_or(8000);
    let addr: SocketAddr = match resource.host_str() {
        Some("localhost") | None => ([127, 0, 0, 1], port).into(),
        Some(host) => format!("{}:{port}", host.trim_matches(['[', ']']))
            .parse()
            .unwrap_or(([127, 0, 0, 1], port).into()),
    };
    // Replicas behind a load balancer share the public URL but each listen on their own address.
    let addr = match std::env::var("BIND_ADDR") {
        Ok(bind) => bind
            .parse()
            .unwrap_or_else(|e| fail(&format!("BIND_ADDR is invalid: {e}"))),
        Err(_) => addr,
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        "MCP server listening on http://{addr}{}\n{}",
        resource.path(),
        summary(&settings)
    );
    // Cuts incomplete headers and caps connections; ConnectInfo lets /register limit per address.
    a3_mcp_auth::serve(listener, app).await?;
    Ok(())
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!(
        "error: {e}\n\nSet ISSUER_PATH (your A3 environment's Issuer Path), CLIENT_ID and CLIENT_SECRET in .env \
         or the environment, as in A3's quickstart; leave ISSUER_PATH and ISSUER_URL unset to use the \
         embedded development issuer."
    );
    std::process::exit(2);
}

/// A fresh secret for the development issuer's client, per run.
fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
