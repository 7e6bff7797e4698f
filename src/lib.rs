//! OAuth 2.1 authorization for [rmcp] MCP servers, against the Mekarge A3 authorization server.
//!
//! Composable Tower layers protect an rmcp Streamable HTTP service (or any axum route):
//!
//! - [`BearerAuthLayer`] verifies `Authorization: Bearer` tokens with a [`TokenVerifier`] —
//!   [`JwtVerifier`] checks A3's RS256 JWTs against the issuer's JWKS ([`JwksKeyStore`]) — and puts
//!   the verified [`Claims`] into the request extensions;
//! - [`RequireScopeLayer`] requires scopes such as `mcp:call`;
//! - [`ProtectedResourceMetadata`] serves the RFC 9728 document that the challenges point at.
//!
//! Configuration comes from the environment like A3's reference servers ([`A3Config`]).
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
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! [rmcp]: https://docs.rs/rmcp

#![warn(missing_docs)]

mod bearer;
mod challenge;
mod claims;
mod config;
mod discovery;
mod fetch;
mod jwks;
mod jwt;
mod metadata;
mod scope;
mod verifier;

#[cfg(feature = "testing")]
pub mod testing;

// dcr (issue 4)
pub mod dcr;

// dev issuer (issue 4)
#[cfg(feature = "dev-issuer")]
pub mod dev_issuer;

// contexts (issue 3)
mod context;
mod session;
mod tools;
mod transport;
pub use context::{
    Context, ContextSet, InvalidContext, MAX_CONTEXT_LEN, MAX_CONTEXTS, PolicyError, ToolAccess, ToolContext,
    ToolContextLayer, ToolPolicy, ToolRule, VisibleTools,
};
pub use session::{MCP_SESSION_ID, SessionBinding, SessionBindingLayer};
pub use tools::{Caller, ContextFiltered, request_claims, tool_not_found, visible_tools};
pub use transport::{OriginCheck, OriginCheckLayer};

/// [`ToolContext`]'s response future (the same type as [`OriginCheck`]'s).
pub mod tool_context {
    pub use crate::transport::ResponseFuture;
}

/// [`SessionBinding`]'s response future.
pub mod session_binding {
    pub use crate::session::ResponseFuture;
}

/// [`OriginCheck`]'s response future.
pub mod origin_check {
    pub use crate::transport::ResponseFuture;
}
// end contexts (issue 3)

pub use bearer::{AuthBody, BearerAuth, BearerAuthLayer, MAX_TOKEN_LEN, ResponseFuture, bearer_token};
pub use challenge::{AuthError, Challenge};
pub use claims::{Claims, NotAnObject, Principal};
pub use config::{
    A3_BASE, A3Config, A3ConfigBuilder, ConfigError, DEFAULT_CONTEXT_CLAIM, DEFAULT_RESOURCE_URI,
};
pub use discovery::{DiscoveryError, ProviderMetadata};
pub use fetch::{FetchError, is_loopback_host};
pub use jwks::{JwksKeyStore, JwksPolicy, KeyLookupError, VerificationKey};
pub use jwt::{JwtVerifier, JwtVerifierBuilder, JwtVerifierError};
pub use metadata::ProtectedResourceMetadata;
pub use scope::{RequireScope, RequireScopeLayer};
pub use verifier::{Either, TokenVerifier, VerifyError};

/// [`RequireScope`]'s response future (the same type as [`OriginCheck`]'s).
pub mod require_scope {
    pub use crate::transport::ResponseFuture;
}

/// Installs jsonwebtoken's aws-lc-rs provider for this process.
///
/// jsonwebtoken panics on first use when no provider (or both) is selected; installing ours
/// explicitly turns a wrong feature set into a compile error instead (`crypto::aws_lc` only
/// exists with the `aws_lc_rs` feature). Calling it again is harmless.
///
/// Returns `false` when another provider was installed first (by another crate in the process);
/// verifiers refuse to build then, rather than panic or run on another backend later.
pub fn install_crypto_provider() -> bool {
    use jsonwebtoken::crypto::{CryptoProvider, aws_lc::DEFAULT_PROVIDER};
    match CryptoProvider::install_default(&DEFAULT_PROVIDER) {
        Ok(()) => true,
        Err(installed) => std::ptr::eq(installed, &DEFAULT_PROVIDER),
    }
}

/// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
