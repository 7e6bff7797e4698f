//! The DCR bridge in its smallest form: MCP hosts that register dynamically (RFC 7591), such as
//! VS Code, sign in through an authorization server that only knows one predefined client.
//!
//! ```text
//! cargo run --example bridge                   # with the embedded development issuer
//! ISSUER_PATH=… CLIENT_ID=… CLIENT_SECRET=… cargo run --example bridge    # with Mekarge A3
//! ```
//!
//! Then add `http://127.0.0.1:8000/mcp` to an MCP host. The route here is a plain handler that
//! echoes the caller; `cargo run --example server` is the full quickstart (rmcp, contexts,
//! sessions).

use std::net::SocketAddr;

use a3_mcp_auth::config::A3ConfigBuilder;
use a3_mcp_auth::dcr::DcrBridge;
use a3_mcp_auth::dev_issuer::{DEFAULT_CLIENT_ID, DevIssuer};
use a3_mcp_auth::{BearerAuthLayer, Claims, RequireScopeLayer};
use axum::routing::post;
use axum::{Extension, Router};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = A3ConfigBuilder::from_env()?;
    // Without A3, a development issuer stands in for it, knowing one client whose redirect URI
    // is the bridge's callback, as the quickstart's A3 client does.
    let _dev = if builder.has_issuer() {
        None
    } else {
        let public = builder
            .clone()
            .issuer_url("http://127.0.0.1")
            .build()?
            .public_url()
            .to_owned();
        let dev = DevIssuer::builder()
            .client(
                DEFAULT_CLIENT_ID,
                "dev-secret-for-this-example",
                [format!("{public}/auth/callback")],
            )
            .start()
            .await?;
        eprintln!("{}", dev.banner());
        builder = builder
            .issuer_url(dev.url())
            .client(dev.client_id(), dev.client_secret());
        Some(dev)
    };
    let config = builder.build()?;

    // Discovers the issuer and opens the store (./data/a3-mcp-auth.redb, or STORE_PATH).
    let bridge = DcrBridge::builder(&config).build().await?;
    // The protected-resource metadata names the bridge, not A3, as the authorization server.
    let metadata = bridge.protected_resource_metadata();
    let mcp = Router::new()
        .route(
            "/mcp",
            post(|Extension(claims): Extension<Claims>| async move {
                format!("signed in as {}\n", claims.subject().unwrap_or("?"))
            }),
        )
        .layer(
            ServiceBuilder::new()
                // Our own tokens (resolved to the A3 token behind them), or A3 tokens directly.
                .layer(BearerAuthLayer::new(
                    bridge.token_verifier(),
                    metadata.challenge(),
                ))
                .layer(RequireScopeLayer::new(["mcp:call"], metadata.challenge())),
        );
    let app = mcp.merge(metadata.router()).merge(bridge.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!(
        "authorization server {}; MCP endpoint {}",
        bridge.issuer(),
        config.resource_uri()
    );
    // The client address feeds /register's rate limit.
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
