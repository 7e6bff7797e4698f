//! The DCR bridge: an OAuth 2.1 authorization server towards MCP hosts (dynamic registration,
//! consent, codes, tokens) that is one predefined confidential client towards A3.
//!
//! A3 only knows predefined clients; MCP hosts such as VS Code identify themselves by the https
//! URL of a published metadata document ([Client ID Metadata
//! Documents](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#client-id-metadata-documents):
//! fetched by a hardened fetcher, checked, cached in the store, never registered) or register
//! themselves ([RFC 7591](https://www.rfc-editor.org/rfc/rfc7591), as the [MCP authorization
//! spec](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization) allows;
//! `DCR_ENABLED`). The bridge gives each registering host its own client id, shows a consent page naming that client,
//! sends the user to A3 with the one configured client (`CLIENT_ID`/`CLIENT_SECRET`,
//! `client_secret_post`, PKCE, callback `{public url}`[`CALLBACK_PATH`]), keeps A3's tokens
//! server-side (encrypted, bound to the host's grant) and gives the host opaque tokens of its own.
//! [`DcrBridge::token_verifier`] resolves those tokens back to the A3 access token's verified claims,
//! so [`BearerAuthLayer`](crate::BearerAuthLayer) and the scope and context layers work unchanged;
//! A3 JWTs presented directly (e.g. by machine-to-machine clients) keep working too.
//!
//! The consent page is asked on every authorization, before anything is stored or the browser is
//! sent to A3, and the callback only completes in the browser that consented: A3 may sign a user
//! in silently, so these are what stop a [confused
//! deputy](https://modelcontextprotocol.io/specification/2025-11-25/basic/security_best_practices#confused-deputy-problem).
//! On a plain-http public URL (`http://127.0.0.1:8000`) any local page can plant the cookie that
//! binds the callback to the consenting browser, so there the user also confirms, after signing
//! in, which account goes to which client before any code is issued.
//!
//! | route | module | what it does |
//! |---|---|---|
//! | `GET /.well-known/oauth-authorization-server` | `metadata` | [RFC 8414 §2](https://www.rfc-editor.org/rfc/rfc8414#section-2) metadata; `issuer` = the public URL; `client_id_metadata_document_supported` |
//! | `POST /register` | `register` | [RFC 7591 §3](https://www.rfc-editor.org/rfc/rfc7591#section-3) registration of public clients (JSON only; rate-limited per address and browser origin, capped; 404 while `DCR_ENABLED=false`) |
//! | `GET /authorize` | `authorize` | validates the request ([RFC 6749 §4.1.1](https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1), PKCE S256 required; a URL `client_id` resolved by `cimd`), shows the consent page |
//! | `POST /authorize` | `authorize` | the consent decision (CSRF-checked; approvals rate-limited per address and browser origin); on approval redirects to A3 |
//! | `GET /auth/callback` | `callback` | A3 returns here; exchanges A3's code and redirects to the host with ours ([RFC 9207](https://www.rfc-editor.org/rfc/rfc9207) `iss` both ways); on plain http, shows the confirmation naming the signed-in account instead |
//! | `POST /auth/confirm` | `confirm` | plain http only: the confirmation (same-origin post of the page's secret); Allow redirects to the host with our code, Deny revokes A3's tokens |
//! | `POST /token` | `token` | `authorization_code` ([RFC 7636 §4.6](https://www.rfc-editor.org/rfc/rfc7636#section-4.6)) and `refresh_token` grants, with rotation and reuse detection ([OAuth 2.1 §4.3.1](https://datatracker.ietf.org/doc/html/draft-ietf-oauth-v2-1#section-4.3.1)) |
//! | `POST /revoke` | `revoke` | [RFC 7009](https://www.rfc-editor.org/rfc/rfc7009) revocation of our tokens (and A3's) |
//!
//! On the admin listener, [`DcrBridge::admin_router`] serves the operator's view ([`admin`]):
//! registered clients and grants, revoking a grant, signing a user out everywhere, deleting a
//! client.
//!
//! Registered clients, grants, codes and token hashes live in a [`store::Store`]: an embedded
//! [`store::RedbStore`] by default, or a `store::RedisStore` (cargo feature `redis`) shared by
//! several replicas.
//!
//! ```no_run
//! use a3_mcp_auth::dcr::DcrBridge;
//! use a3_mcp_auth::{A3Config, BearerAuthLayer, RequireScopeLayer};
//! use axum::{Router, routing::post};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = A3Config::from_env()?; // ISSUER_PATH, CLIENT_ID, CLIENT_SECRET, PUBLIC_URL, STORE_PATH, ...
//! let bridge = DcrBridge::builder(&config).build().await?; // discovers A3, opens the store
//! let metadata = bridge.protected_resource_metadata();
//! let app = Router::new()
//!     .route("/mcp", post(|| async { "your MCP service here" }))
//!     .layer(BearerAuthLayer::new(bridge.token_verifier(), metadata.challenge()))
//!     .merge(metadata.router())
//!     .merge(bridge.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! // Connection bounds, and the peer address that /register's rate limit reads.
//! a3_mcp_auth::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod admin;
mod authorize;
mod builder;
mod callback;
mod cimd;
mod client;
mod client_lifetime;
mod confirm;
mod cookies;
mod crypto;
mod errors;
mod files;
mod grant;
mod metadata;
mod pages;
mod rate_limit;
mod register;
mod revoke;
pub mod store;
mod token;
mod upstream;
mod verifier;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use http::header;

use crate::config::{A3Config, ClientRegistration, ConfigError};
use crate::health::Readiness;
use crate::jwks::JwksKeyStore;
use crate::metadata::ProtectedResourceMetadata;
use crate::verifier::{DynVerifier, Or, TokenVerifier};

pub use builder::DcrBridgeBuilder;
pub use crypto::{ACCESS_TOKEN_PREFIX, CODE_PREFIX, REFRESH_TOKEN_PREFIX};
pub use register::RegisteredClient;
pub use verifier::ProxyTokenVerifier;

#[cfg(feature = "testing")]
pub(crate) use cimd::fetcher as cimd_fetcher;
use cookies::Cookies;
use crypto::Keys;
use rate_limit::RateLimiter;
use store::{Store, StoreError};
use upstream::Upstream;

/// Where A3 sends the browser back, below the public URL: `{public URL}/auth/callback` must be
/// registered at A3 as the predefined client's redirect URI.
///
/// ```
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::CALLBACK_PATH;
///
/// let config = A3Config::builder()
///     .issuer_path("alias-0123456789abcdef0123456789abcdef")
///     .public_url("https://mcp.example.com")
///     .build()
///     .unwrap();
/// // What to enter as the redirect URI of the "MCP Host" client in the A3 console:
/// println!("redirect URI: {}{CALLBACK_PATH}", config.public_url());
/// ```
pub const CALLBACK_PATH: &str = "/auth/callback";

/// Where the persistent store lives unless `STORE_PATH` says otherwise; the generated encryption
/// key goes beside it (`.key` appended). Both must survive restarts and upgrades (a volume, in a
/// container), or hosts have to register and sign in again.
///
/// ```
/// use std::path::Path;
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::DEFAULT_STORE_PATH;
///
/// let config = A3Config::builder().issuer_path("env-1").build().unwrap();
/// // A deployment check: the directory the bridge writes to.
/// let store = config.store_path().unwrap_or(Path::new(DEFAULT_STORE_PATH));
/// println!("mount a volume at {}", store.parent().unwrap().display());
/// ```
pub const DEFAULT_STORE_PATH: &str = "./data/a3-mcp-auth.redb";

/// The bridge could not be built.
///
/// ```
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::store::MemoryStore;
/// use a3_mcp_auth::dcr::{DcrBridge, DcrError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Without CLIENT_ID/CLIENT_SECRET there is no client to bridge to.
/// let config = A3Config::builder().issuer_url("http://127.0.0.1:9").build().unwrap();
/// let err = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap_err();
/// assert!(matches!(err, DcrError::Config(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DcrError {
    /// A configuration value is missing or invalid (the message names it).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A3 could not be discovered.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// The verifier of A3's tokens could not be built.
    #[error(transparent)]
    Jwt(#[from] crate::jwt::JwtVerifierError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lifetimes and limits of the bridge; see the [`DcrBridgeBuilder`] methods.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_grace: Duration,
    pub code_ttl: Duration,
    pub transaction_ttl: Duration,
    pub consent_ttl: Duration,
    /// `None`: the consent page's lifetime plus the transaction's.
    pub unused_client_ttl: Option<Duration>,
    pub client_grace: Duration,
    pub max_clients: u64,
    pub max_grants_per_user: usize,
    pub register_burst: u32,
    pub register_refill: Duration,
    pub approve_burst: u32,
    pub approve_refill: Duration,
    pub max_cached_documents: u64,
    pub metadata_fetch_burst: u32,
    pub metadata_fetch_refill: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            refresh_grace: Duration::from_secs(60),
            code_ttl: Duration::from_secs(60),
            transaction_ttl: Duration::from_secs(600),
            consent_ttl: Duration::from_secs(600),
            unused_client_ttl: None,
            client_grace: Duration::from_secs(3600),
            max_clients: 10_000,
            max_grants_per_user: 32,
            register_burst: 10,
            register_refill: Duration::from_secs(60),
            approve_burst: 10,
            approve_refill: Duration::from_secs(30),
            max_cached_documents: 10_000,
            metadata_fetch_burst: 10,
            metadata_fetch_refill: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// How long a registration is kept before its first grant: by default long enough for the
    /// slowest legitimate first sign-in (the consent page, then the upstream transaction).
    pub fn unused_client_ttl(&self) -> Duration {
        self.unused_client_ttl
            .unwrap_or(self.consent_ttl + self.transaction_ttl)
    }
}

/// Shared state of all bridge handlers.
pub(crate) struct Inner {
    /// Our issuer: the public URL, no trailing slash.
    pub issuer: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub upstream: Upstream,
    /// Verifies A3's access tokens.
    pub a3_verifier: DynVerifier,
    /// The key store of `a3_verifier` when the bridge built it (for readiness).
    pub a3_keys: Option<JwksKeyStore>,
    pub limits: Limits,
    pub cookies: Cookies,
    pub register_limiter: RateLimiter,
    /// Approvals of the consent form (each writes an upstream transaction; no sign-in needed).
    pub approve_limiter: RateLimiter,
    /// Fetches of metadata documents not in the cache, per caller.
    pub metadata_fetch_limiter: RateLimiter,
    /// How hosts may identify themselves (CIMD, DCR) and the CIMD admission policy.
    pub client_registration: ClientRegistration,
    /// Fetches client metadata documents.
    pub fetcher: cimd::fetcher::Fetcher,
    /// One mutex per grant (so concurrent requests refresh A3's tokens once) and per client
    /// (its lifetime), by lock name (see [`grant::lock`]).
    pub locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Hashes of consent tokens already approved: each approval (which writes a transaction)
    /// is single use, within this process.
    pub used_consents: moka::sync::Cache<String, ()>,
}

/// The bridge. Build it with [`DcrBridge::builder`], serve [`DcrBridge::router`] beside the
/// protected MCP route, and protect that route with [`DcrBridge::token_verifier`].
///
/// ```
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::DcrBridge;
/// use a3_mcp_auth::dcr::store::MemoryStore;
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let config = A3Config::builder()
///     .issuer_url(issuer.url())
///     .resource_uri("http://127.0.0.1:8000/mcp")
///     .client("proxy-client", "proxy-secret")
///     .build()
///     .unwrap();
/// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
/// assert_eq!(bridge.issuer(), "http://127.0.0.1:8000");
/// assert_eq!(bridge.protected_resource_metadata().authorization_servers(), ["http://127.0.0.1:8000"]);
/// let app: axum::Router = bridge.router();
/// # let _ = app;
/// # }
/// ```
#[derive(Clone)]
pub struct DcrBridge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DcrBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcrBridge")
            .field("issuer", &self.inner.issuer)
            .field("resource", &self.inner.resource)
            .finish_non_exhaustive()
    }
}

impl DcrBridge {
    /// A builder for the bridge of `config`: A3's issuer, the resource URI, the predefined client,
    /// the public URL and the store settings. The builder's setters override the latter from code.
    pub fn builder(config: &A3Config) -> DcrBridgeBuilder {
        DcrBridgeBuilder::new(config)
    }

    /// Our issuer identifier (the public URL), as our metadata, our `iss` parameter and the
    /// protected-resource metadata carry it.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The axum router with every bridge route. Serve it with [`crate::serve()`] (or with
    /// `into_make_service_with_connect_info::<SocketAddr>()`), so /register can rate-limit per
    /// client address: without the peer's `ConnectInfo`, all callers share one bucket.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        use tower_http::cors::{Any, CorsLayer};
        let cors = CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([http::Method::GET, http::Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]);
        let api = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata::handler))
            .route("/register", post(register::register))
            .route("/token", post(token::token))
            .route("/revoke", post(revoke::revoke))
            .layer(cors);
        let browser = Router::new()
            .route("/authorize", get(authorize::show).post(authorize::decide))
            .route(CALLBACK_PATH, get(callback::callback))
            .route(pages::CONFIRM_PATH, post(confirm::decide));
        api.merge(browser)
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(self.inner.clone())
    }

    /// The verifier for [`BearerAuthLayer`](crate::BearerAuthLayer): our access tokens first
    /// ([`ProxyTokenVerifier`]), then A3's JWTs issued for this resource.
    pub fn token_verifier(&self) -> Or<ProxyTokenVerifier, DynVerifier> {
        self.proxy_verifier().or(self.inner.a3_verifier.clone())
    }

    /// The verifier of our own access tokens only.
    pub fn proxy_verifier(&self) -> ProxyTokenVerifier {
        ProxyTokenVerifier {
            inner: self.inner.clone(),
        }
    }

    /// Protected-resource metadata naming this bridge as the authorization server.
    pub fn protected_resource_metadata(&self) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata::new(self.inner.resource.clone())
            .expect("the resource URI was validated by A3Config")
            .with_authorization_server(self.inner.issuer.clone())
            .with_scopes_supported(self.inner.scopes.clone())
    }

    /// What `GET /readyz` checks for this bridge: its store, and the key store of the verifier
    /// of A3's tokens when the bridge built it. With a verifier of your own
    /// ([`DcrBridgeBuilder::a3_verifier`]), add its key store with
    /// [`Readiness::with_key_store`]. Serve [`Readiness::router`] beside the MCP route, outside
    /// the auth layers.
    ///
    /// ```
    /// use a3_mcp_auth::A3Config;
    /// use a3_mcp_auth::dcr::DcrBridge;
    /// use a3_mcp_auth::dcr::store::MemoryStore;
    /// use a3_mcp_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
    /// let app: axum::Router = bridge.router().merge(bridge.readiness().router());
    /// let report = bridge.readiness().check().await;
    /// assert!(report.is_ready());
    /// # let _ = app;
    /// # }
    /// ```
    pub fn readiness(&self) -> Readiness {
        let readiness = Readiness::new().with_store(self.inner.store.clone());
        match &self.inner.a3_keys {
            Some(keys) => readiness.with_key_store(keys),
            None => readiness,
        }
    }

    /// The [RFC 8414 §2](https://www.rfc-editor.org/rfc/rfc8414#section-2) metadata document
    /// served at `/.well-known/oauth-authorization-server`.
    pub fn authorization_server_metadata(&self) -> serde_json::Value {
        metadata::document(&self.inner)
    }
}
