//! Bearer-token validation and scope enforcement added to an existing axum router: the two
//! layers most servers start with, and the protected-resource metadata that tells MCP hosts where
//! to get a token.
//!
//! ```text
//! cargo run --example bearer_scope
//! ```
//!
//! With `ISSUER_PATH` (or `ISSUER_URL`) in the environment or `.env` it accepts that issuer's
//! tokens for `RESOURCE_URI`. Without, it starts the crate's loopback test issuer and prints a
//! token to try:
//!
//! ```text
//! curl -i http://127.0.0.1:8000/api/hello                               # 401 + challenge
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/hello
//! curl -i http://127.0.0.1:8000/.well-known/oauth-protected-resource/api   # RFC 9728
//! ```

use a3_mcp_auth::config::A3ConfigBuilder;
use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{
    A3Config, BearerAuthLayer, Claims, JwtVerifier, ProtectedResourceMetadata, RequireScopeLayer,
};
use axum::routing::get;
use axum::{Extension, Router};
use tower::ServiceBuilder;

/// The resource this example protects; tokens must carry it in `aud`.
const RESOURCE: &str = "http://127.0.0.1:8000/api";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The existing application: one public route, and routes that need a signed-in caller.
    let public = Router::new().route("/health", get(|| async { "ok" }));
    let api = Router::new().route(
        "/api/hello",
        get(|Extension(claims): Extension<Claims>| async move {
            format!("hello {}\n", claims.subject().unwrap_or("(no subject)"))
        }),
    );

    // Where tokens come from: A3 when configured, else a loopback test issuer.
    let builder = A3ConfigBuilder::from_env()?.resource_uri(RESOURCE);
    let (config, _test_issuer) = if builder.has_issuer() {
        (builder.build()?, None)
    } else {
        let issuer = TestIssuer::start().await;
        let token = issuer.token(RESOURCE).subject("johndoe").scope("mcp:call").sign();
        println!("test issuer at {}; try:\nTOKEN={token}\n", issuer.url());
        let config = A3Config::builder()
            .issuer_url(issuer.url())
            .resource_uri(RESOURCE)
            .build()?;
        (config, Some(issuer))
    };
    let verifier = JwtVerifier::from_config(&config).await?; // discovery + JWKS, fetched now
    let metadata = ProtectedResourceMetadata::new(config.resource_uri())?
        .with_authorization_server(config.issuer())
        .with_scopes_supported(["mcp:call"]);

    // The layers wrap only the protected routes; the metadata routes stay outside them, so a
    // host can read where to get a token before it has one.
    let app = public
        .merge(
            api.layer(
                ServiceBuilder::new()
                    .layer(BearerAuthLayer::new(verifier, metadata.challenge())) // 401 / 400 / 503
                    .layer(RequireScopeLayer::new(["mcp:call"], metadata.challenge())), // 403
            ),
        )
        .merge(metadata.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!("listening on http://127.0.0.1:8000 (GET /api/hello needs a token with mcp:call)");
    axum::serve(listener, app).await?;
    Ok(())
}
