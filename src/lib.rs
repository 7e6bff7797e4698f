//! OAuth 2.1 authorization for [rmcp] MCP servers, against the Mekarge A3 authorization server.
//!
//! Composable Tower layers protect an rmcp Streamable HTTP service (or any axum route), and the
//! [`dcr`] bridge lets MCP hosts that register dynamically (RFC 7591) sign in through A3, which
//! only knows predefined clients.
//!
//! ```no_run
//! use a3_mcp_auth::{A3Config, BearerAuthLayer, JwtVerifier, ProtectedResourceMetadata, RequireScopeLayer};
//! use axum::{Router, routing::post};
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = A3Config::from_env()?; // ISSUER_PATH, RESOURCE_URI, ...
//! let verifier = JwtVerifier::from_config(&config).await?;
//! let metadata = ProtectedResourceMetadata::new(config.resource_uri())?
//!     .with_authorization_server(config.issuer())
//!     .with_scopes_supported(["mcp:call"]);
//!
//! let app = Router::new()
//!     .route("/mcp", post(|| async { "your MCP service here" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(BearerAuthLayer::new(verifier, metadata.challenge()))
//!             .layer(RequireScopeLayer::new(["mcp:call"], metadata.challenge())),
//!     )
//!     .merge(metadata.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! a3_mcp_auth::serve(listener, app).await?; // axum::serve with connection bounds
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! The layers, in the order a request meets them (each module holds `FooLayer`, `Foo<S>` and its
//! response future, as in tower-http):
//!
//! | module | what it is |
//! |---|---|
//! | [`origin_check`] | `Host`/`Origin` validation, 403 before authentication (DNS rebinding) |
//! | [`bearer_auth`] | `Authorization: Bearer` → verified [`Claims`] in the request extensions; RFC 6750 challenges |
//! | [`require_scope`] | 403 `insufficient_scope` unless the token has every required scope |
//! | [`session_binding`] | each `Mcp-Session-Id` bound to the principal that opened it |
//! | [`tool_context`] | the caller's contexts and what they may see, from the claims and the policy |
//! | [`filtered`] | [`ContextFiltered`]: enforces it for tools, prompts and resources where rmcp dispatches; [`Caller`] |
//!
//! What the layers are built from:
//!
//! | module | what it is |
//! |---|---|
//! | [`config`] | [`A3Config`]: every setting, read from the environment and `.env` in one place |
//! | [`verifier`] | [`TokenVerifier`], the seam between the bearer layer and whatever checks tokens |
//! | [`jwt`] | [`JwtVerifier`]: A3's RS256 access tokens, with a cache of validated tokens |
//! | [`jwks`] | the issuer's key store: refresh, single-flight refetch, cooldown |
//! | [`discovery`] | OpenID Connect discovery of the issuer |
//! | [`fetch`] | bounded HTTPS fetches of issuer documents |
//! | [`claims`] | [`Claims`] of a verified token |
//! | [`challenge`] | `WWW-Authenticate` challenges and the errors they answer |
//! | [`metadata`] | [`ProtectedResourceMetadata`] (RFC 9728) and its routes |
//! | [`context`] | A3 Contexts in a token; [`context::policy`]: [`ContextPolicy`] (alias [`ToolPolicy`]) and [`ToolRule`] |
//!
//! Serving them: [`serve`](mod@serve), `axum::serve` with a header-read timeout and a connection
//! cap; [`admin`], the admin listener (`ADMIN_ADDR`) and the layer that admits only the operator.
//!
//! Operating them: [`health`] (`/healthz` and `/readyz` for probes and load balancers),
//! [`metrics`] (counters and histograms through the `metrics` facade; no exporter forced) and
//! [`audit`] (one `tracing` event per security decision, under its own target).
//!
//! Above them: [`dcr`], the DCR bridge (an OAuth authorization server towards MCP hosts, one
//! confidential client towards A3); `dev_issuer`, a development stand-in for A3; `testing`, a
//! loopback issuer for tests.
//!
//! # Cargo features
//!
//! | feature | what it adds |
//! |---|---|
//! | `testing` | `testing::TestIssuer`: a loopback issuer that serves discovery and a JWKS and mints tokens, for your tests |
//! | `dev-issuer` | `dev_issuer::DevIssuer`: the embedded development issuer of the example server (implies `testing`) |
//! | `redis` | `dcr::store::RedisStore`, the shared store for several replicas (`STORE_URL=redis://…`) |
//!
//! [rmcp]: https://docs.rs/rmcp

#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod bearer_auth;
pub mod challenge;
pub mod claims;
pub mod config;
pub mod context;
pub mod dcr;
pub mod discovery;
pub mod fetch;
pub mod filtered;
pub mod health;
pub mod jwks;
pub mod jwt;
pub mod metadata;
pub mod metrics;
pub mod origin_check;
pub mod require_scope;
pub mod serve;
pub mod session_binding;
pub mod tool_context;
pub mod verifier;

#[cfg(feature = "dev-issuer")]
pub mod dev_issuer;
#[cfg(feature = "testing")]
pub mod testing;

mod headers;
mod oauth;
mod refusal;

pub use bearer_auth::BearerAuthLayer;
pub use claims::Claims;
pub use config::A3Config;
pub use context::policy::{ContextPolicy, ToolPolicy, ToolRule};
pub use filtered::{Caller, ContextFiltered};
pub use jwt::JwtVerifier;
pub use metadata::ProtectedResourceMetadata;
pub use origin_check::OriginCheckLayer;
pub use refusal::AuthBody;
pub use require_scope::RequireScopeLayer;
pub use serve::serve;
pub use session_binding::SessionBindingLayer;
pub use tool_context::ToolContextLayer;
pub use verifier::TokenVerifier;

/// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
