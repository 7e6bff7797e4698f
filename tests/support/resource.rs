//! A protected axum route (bearer + scope layers only) on a real loopback listener, with tokens
//! from the crate's test issuer.

use std::net::SocketAddr;

use a3_mcp_auth::jwks::JwksPolicy;
use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{BearerAuthLayer, Claims, JwtVerifier, ProtectedResourceMetadata, RequireScopeLayer};
use axum::routing::get;
use axum::{Extension, Router};
use tower::ServiceBuilder;

pub const RESOURCE: &str = "http://127.0.0.1:8000/mcp";

pub struct App {
    pub issuer: TestIssuer,
    pub verifier: JwtVerifier,
    pub url: String,
    pub metadata_url: String,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts a test issuer and an app whose `/mcp` (GET and POST) requires a bearer token with
/// `mcp:call`, answering with the caller's subject.
pub async fn start(policy: JwksPolicy) -> App {
    let issuer = TestIssuer::start().await;
    let verifier = issuer.verifier_with(RESOURCE, policy).await;
    let metadata = ProtectedResourceMetadata::new(RESOURCE)
        .unwrap()
        .with_authorization_server(issuer.url())
        .with_scopes_supported(["mcp:call"]);
    let whoami = |Extension(c): Extension<Claims>| async move { c.subject().unwrap_or("?").to_owned() };
    let app = Router::new()
        .route("/mcp", get(whoami).post(whoami))
        .layer(
            ServiceBuilder::new()
                .layer(BearerAuthLayer::new(verifier.clone(), metadata.challenge()))
                .layer(RequireScopeLayer::new(["mcp:call"], metadata.challenge())),
        )
        .merge(metadata.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    App {
        issuer,
        verifier,
        url: format!("http://{addr}/mcp"),
        metadata_url: metadata.metadata_url().to_owned(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        server,
    }
}

impl App {
    pub fn token(&self) -> a3_mcp_auth::testing::TokenBuilder {
        self.issuer.token(RESOURCE)
    }

    pub async fn get_with(&self, authorization: &str) -> reqwest::Response {
        self.http
            .get(&self.url)
            .header("authorization", authorization)
            .send()
            .await
            .unwrap()
    }

    pub async fn bearer(&self, token: &str) -> reqwest::Response {
        self.get_with(&format!("Bearer {token}")).await
    }
}

/// The `WWW-Authenticate` header, or "" when absent.
pub fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
