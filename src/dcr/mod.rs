//! The DCR bridge: an OAuth 2.1 authorization server towards MCP hosts (dynamic registration,
//! consent, codes, tokens) that is one predefined confidential client towards A3.
//!
//! A3 only knows predefined clients; MCP hosts such as VS Code register themselves
//! ([RFC 7591](https://www.rfc-editor.org/rfc/rfc7591), as the [MCP authorization
//! spec](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization) allows).
//! The bridge gives each host its own client id, shows a consent page naming that client,
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
//!
//! | route | module | what it does |
//! |---|---|---|
//! | `GET /.well-known/oauth-authorization-server` | `metadata` | [RFC 8414 §2](https://www.rfc-editor.org/rfc/rfc8414#section-2) metadata; `issuer` = the public URL |
//! | `POST /register` | `register` | [RFC 7591 §3](https://www.rfc-editor.org/rfc/rfc7591#section-3) registration of public clients (rate-limited per address, capped) |
//! | `GET /authorize` | `authorize` | validates the request ([RFC 6749 §4.1.1](https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1), PKCE S256 required), shows the consent page |
//! | `POST /authorize` | `authorize` | the consent decision (CSRF-checked); on approval redirects to A3 |
//! | `GET /auth/callback` | `callback` | A3 returns here; exchanges A3's code and redirects to the host with ours ([RFC 9207](https://www.rfc-editor.org/rfc/rfc9207) `iss` both ways) |
//! | `POST /token` | `token` | `authorization_code` ([RFC 7636 §4.6](https://www.rfc-editor.org/rfc/rfc7636#section-4.6)) and `refresh_token` grants, with rotation and reuse detection ([OAuth 2.1 §4.3.1](https://datatracker.ietf.org/doc/html/draft-ietf-oauth-v2-1#section-4.3.1)) |
//! | `POST /revoke` | `revoke` | [RFC 7009](https://www.rfc-editor.org/rfc/rfc7009) revocation of our tokens (and A3's) |
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
//! // `ConnectInfo` feeds the per-address rate limit of /register.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod authorize;
mod callback;
mod cookies;
mod crypto;
mod errors;
mod grant;
mod metadata;
mod rate_limit;
mod register;
mod revoke;
pub mod store;
mod token;
mod upstream;
mod verifier;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use http::header;

use crate::config::{A3Config, ConfigError, check_public_url};
use crate::discovery::ProviderMetadata;
use crate::jwt::JwtVerifier;
use crate::metadata::ProtectedResourceMetadata;
use crate::verifier::{DynVerifier, Or, TokenVerifier};

pub use crypto::{ACCESS_TOKEN_PREFIX, CODE_PREFIX, REFRESH_TOKEN_PREFIX};
pub use register::RegisteredClient;
pub use verifier::ProxyTokenVerifier;

use cookies::Cookies;
use crypto::Keys;
use rate_limit::RateLimiter;
use store::{RedbStore, Store, StoreError};
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
    pub client_ttl: Option<Duration>,
    pub unused_client_ttl: Duration,
    pub max_clients: u64,
    pub register_burst: u32,
    pub register_refill: Duration,
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
            client_ttl: Some(Duration::from_secs(180 * 24 * 3600)),
            unused_client_ttl: Duration::from_secs(24 * 3600),
            max_clients: 10_000,
            register_burst: 10,
            register_refill: Duration::from_secs(60),
        }
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
    pub limits: Limits,
    pub cookies: Cookies,
    pub register_limiter: RateLimiter,
    /// One mutex per grant, so concurrent requests refresh A3's tokens once (see
    /// [`grant::lock_grant`]).
    pub grant_locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
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
        DcrBridgeBuilder {
            config: config.clone(),
            public_url: config.public_url().to_owned(),
            store: None,
            store_path: config.store_path().map(Into::into),
            store_url: config.store_url().map(Into::into),
            store_prefix: config.store_prefix().map(Into::into),
            key: config.token_encryption_key().map(Into::into),
            key_file: None,
            scopes: vec!["mcp:call".to_owned()],
            limits: Limits::default(),
            a3_verifier: None,
        }
    }

    /// Our issuer identifier (the public URL), as our metadata, our `iss` parameter and the
    /// protected-resource metadata carry it.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The axum router with every bridge route. Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so /register can rate-limit per
    /// client address (without it, all callers share one bucket).
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
            .route(CALLBACK_PATH, get(callback::callback));
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

    /// The [RFC 8414 §2](https://www.rfc-editor.org/rfc/rfc8414#section-2) metadata document
    /// served at `/.well-known/oauth-authorization-server`.
    pub fn authorization_server_metadata(&self) -> serde_json::Value {
        metadata::document(&self.inner)
    }
}

/// Builder for [`DcrBridge`]: what [`A3Config`] does not hold (scopes, lifetimes, limits, your own
/// store or verifier), and code overrides of what it does.
///
/// ```
/// use std::time::Duration;
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::DcrBridge;
/// use a3_mcp_auth::dcr::store::RedbStore;
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let bridge = DcrBridge::builder(&config)
///     .public_url("http://127.0.0.1:8000")
///     .store(RedbStore::open(dir.path().join("dcr.redb")).unwrap())
///     .encryption_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
///     .scopes(["mcp:call"])
///     .access_token_ttl(Duration::from_secs(900))
///     .registration_rate_limit(5, Duration::from_secs(60))
///     .build()
///     .await
///     .unwrap();
/// assert_eq!(bridge.authorization_server_metadata()["issuer"], "http://127.0.0.1:8000");
/// # }
/// ```
pub struct DcrBridgeBuilder {
    config: A3Config,
    public_url: String,
    store: Option<Arc<dyn Store>>,
    store_path: Option<PathBuf>,
    store_url: Option<String>,
    store_prefix: Option<String>,
    key: Option<String>,
    key_file: Option<PathBuf>,
    scopes: Vec<String>,
    limits: Limits,
    a3_verifier: Option<DynVerifier>,
}

impl std::fmt::Debug for DcrBridgeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcrBridgeBuilder")
            .field("config", &self.config)
            .field("public_url", &self.public_url)
            .field("store_path", &self.store_path)
            .field("store_url", &self.store_url.as_ref().map(|_| "<redacted>"))
            .field("store_prefix", &self.store_prefix)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl DcrBridgeBuilder {
    /// A shared store for several replicas, instead of the configuration's `STORE_URL`:
    /// `redis://host:port/db` selects a `RedisStore` (feature `redis`)
    /// instead of the embedded redb file. The replicas must then share one
    /// [`encryption_key`](Self::encryption_key), which becomes required. An explicit
    /// [`store`](Self::store) wins over it.
    ///
    /// ```
    /// use a3_mcp_auth::A3Config;
    /// use a3_mcp_auth::dcr::DcrBridge;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = A3Config::builder().issuer_url("http://127.0.0.1:9").client("c", "s").build().unwrap();
    /// // Without a shared key the replicas could not open each other's grants.
    /// let err = DcrBridge::builder(&config).store_url("redis://127.0.0.1:6379/0").build().await.unwrap_err();
    /// assert!(err.to_string().contains("TOKEN_ENCRYPTION_KEY"), "{err}");
    /// # }
    /// ```
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// The prefix of every key in a shared store, instead of the configuration's `STORE_PREFIX`
    /// (default [`DEFAULT_STORE_PREFIX`](store::DEFAULT_STORE_PREFIX)), so several servers can
    /// share one Redis.
    pub fn store_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.store_prefix = Some(prefix.into());
        self
    }

    /// Our public base URL and issuer, e.g. `http://127.0.0.1:8000`, instead of the
    /// configuration's [`A3Config::public_url`]. Must be https, or http on loopback, without a
    /// path. A3's client must have `{public URL}/auth/callback` ([`CALLBACK_PATH`]) registered.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = url.into();
        self
    }

    /// The store (default: a [`RedbStore`] at the configuration's `STORE_PATH`, else
    /// [`DEFAULT_STORE_PATH`]).
    ///
    /// With a persistent store of your own, also give a key ([`DcrBridgeBuilder::encryption_key`]
    /// or [`DcrBridgeBuilder::key_file`]): under the default per-process key, the A3 tokens sealed
    /// before a restart cannot be opened after it and those grants end.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The path of the default [`RedbStore`], instead of the configuration's `STORE_PATH`; the
    /// generated key file goes beside it (`.key`).
    pub fn store_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.store_path = Some(path.into());
        self
    }

    /// The 32-byte key (base64) sealing A3 tokens at rest and signing cookies, instead of the
    /// configuration's `TOKEN_ENCRYPTION_KEY`. Default: the key file beside the redb store,
    /// generated on first start; with another store, a random key per process.
    pub fn encryption_key(mut self, base64_key: impl Into<String>) -> Self {
        self.key = Some(base64_key.into());
        self
    }

    /// A file holding the base64 key, created (mode 0600) with a random key if absent.
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// The scopes offered and requested by default (default `["mcp:call"]`).
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Lifetime of our access tokens (default 1 h).
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.limits.access_token_ttl = ttl;
        self
    }

    /// Lifetime of our refresh tokens and grants since last use (default 30 days).
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.limits.refresh_token_ttl = ttl;
        self
    }

    /// How long a rotated refresh token stays usable (default 60 s).
    pub fn refresh_grace(mut self, grace: Duration) -> Self {
        self.limits.refresh_grace = grace;
        self
    }

    /// Lifetime of our authorization codes (default 60 s).
    pub fn code_ttl(mut self, ttl: Duration) -> Self {
        self.limits.code_ttl = ttl;
        self
    }

    /// Lifetime of an upstream transaction and of a consent page (default 10 min).
    pub fn transaction_ttl(mut self, ttl: Duration) -> Self {
        self.limits.transaction_ttl = ttl;
        self.limits.consent_ttl = ttl;
        self
    }

    /// How long a registered client is kept since its last authorization (default 180 days;
    /// `None`: forever).
    pub fn client_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.limits.client_ttl = ttl;
        self
    }

    /// How long a registered client that no user has approved yet is kept (default 24 h). The
    /// first approval extends it to [`client_ttl`](Self::client_ttl), so registrations nobody
    /// uses cannot fill the [`max_clients`](Self::max_clients) cap for long.
    pub fn unused_client_ttl(mut self, ttl: Duration) -> Self {
        self.limits.unused_client_ttl = ttl;
        self
    }

    /// Most registered clients kept at once (default 10 000).
    pub fn max_clients(mut self, max: u64) -> Self {
        self.limits.max_clients = max;
        self
    }

    /// Registrations allowed per client address: a burst of `burst`, then one per `refill`
    /// (default 10, then one a minute).
    pub fn registration_rate_limit(mut self, burst: u32, refill: Duration) -> Self {
        self.limits.register_burst = burst.max(1);
        self.limits.register_refill = refill;
        self
    }

    /// The verifier of A3's access tokens (default: a [`JwtVerifier`] for the configured issuer
    /// and resource, with the keys A3's discovery names). It checks the tokens A3 issues at the
    /// callback and on refresh, the A3 token behind each of ours on every request, and A3 tokens
    /// presented directly to [`DcrBridge::token_verifier`]. Give one to share its key store and
    /// cache with other routes, or to use a verifier of your own.
    ///
    /// ```
    /// use a3_mcp_auth::{A3Config, JwtVerifier, TokenVerifier};
    /// use a3_mcp_auth::dcr::DcrBridge;
    /// use a3_mcp_auth::dcr::store::MemoryStore;
    /// use a3_mcp_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// // One JWKS key store and one cache of validated tokens, for the bridge and a route of its own.
    /// let jwt = JwtVerifier::from_config(&config).await.unwrap();
    /// let bridge = DcrBridge::builder(&config)
    ///     .store(MemoryStore::new())
    ///     .a3_verifier(jwt.clone())
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// let a3_token = issuer.token(config.resource_uri()).subject("m2m").sign();
    /// assert!(bridge.token_verifier().verify(&a3_token).await.is_ok());
    /// assert!(jwt.verify(&a3_token).await.is_ok());
    /// # }
    /// ```
    pub fn a3_verifier(mut self, verifier: impl TokenVerifier) -> Self {
        self.a3_verifier = Some(DynVerifier::new(verifier));
        self
    }

    /// Discovers A3, opens the store and builds the bridge.
    pub async fn build(mut self) -> Result<DcrBridge, DcrError> {
        let config = &self.config;
        let client_id = config.client_id().ok_or(ConfigError::Missing("CLIENT_ID"))?;
        let client_secret = config
            .client_secret()
            .ok_or(ConfigError::Missing("CLIENT_SECRET"))?;
        if self.store.is_none()
            && let Some(url) = &self.store_url
        {
            if self.key.is_none() {
                return Err(ConfigError::Invalid {
                    name: "TOKEN_ENCRYPTION_KEY",
                    reason: "required with STORE_URL: every replica must seal and open A3 tokens with \
                             the same key (32 random bytes, base64)"
                        .into(),
                }
                .into());
            }
            self.store = Some(store::open_url(url, self.store_prefix.as_deref()).await?);
        }
        let config = &self.config;
        let issuer = check_public_url(&self.public_url)?;
        let metadata = ProviderMetadata::discover(config.issuer()).await?;
        let a3_verifier = match self.a3_verifier {
            Some(verifier) => verifier,
            None => DynVerifier::new(
                JwtVerifier::builder(config.issuer(), config.resource_uri())
                    .jwks_uri(&metadata.jwks_uri)
                    .await?,
            ),
        };
        let upstream = Upstream::new(
            metadata,
            client_id,
            client_secret,
            &format!("{issuer}{CALLBACK_PATH}"),
        )
        .map_err(|reason| ConfigError::Invalid {
            name: "ISSUER_URL",
            reason,
        })?;
        let key_error = |reason: String| ConfigError::Invalid {
            name: "TOKEN_ENCRYPTION_KEY",
            reason,
        };
        let (store, default_key_file): (Arc<dyn Store>, Option<PathBuf>) = match self.store {
            Some(store) => (store, None),
            None => {
                let path = self.store_path.unwrap_or_else(|| DEFAULT_STORE_PATH.into());
                let store = RedbStore::open(&path)?;
                let mut key_path = path.into_os_string();
                key_path.push(".key");
                (Arc::new(store), Some(key_path.into()))
            }
        };
        let keys = match (&self.key, self.key_file.or(default_key_file)) {
            (Some(k), _) => Keys::from_base64(k).map_err(|e| key_error(e.to_string()))?,
            (None, Some(file)) => Keys::load_or_create_file(&file).map_err(|e| key_error(e.to_string()))?,
            (None, None) => Keys::ephemeral(),
        };
        if self.scopes.is_empty() {
            return Err(ConfigError::Invalid {
                name: "scopes",
                reason: "at least one scope is needed".into(),
            }
            .into());
        }
        let limits = self.limits;
        let cookies = Cookies::for_public_url(&issuer);
        let inner = Arc::new(Inner {
            issuer,
            resource: config.resource_uri().to_owned(),
            scopes: self.scopes,
            store,
            keys,
            upstream,
            a3_verifier,
            register_limiter: RateLimiter::new(limits.register_burst, limits.register_refill),
            cookies,
            used_consents: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(limits.consent_ttl.max(Duration::from_secs(1)))
                .build(),
            grant_locks: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(60))
                .build(),
            limits,
        });
        store::spawn_purger(Arc::downgrade(&inner.store));
        Ok(DcrBridge { inner })
    }
}
