//! [`DcrBridgeBuilder`]: what the bridge needs besides [`A3Config`], and building it (discovering
//! A3, opening the store, loading the key).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::cimd::fetcher::Fetcher;
use super::cookies::Cookies;
use super::crypto::Keys;
use super::rate_limit::RateLimiter;
use super::store::{self, Metered, RedbStore, Store};
use super::upstream::Upstream;
use super::{CALLBACK_PATH, DEFAULT_STORE_PATH, DcrBridge, DcrError, Inner, Limits};
use crate::config::{A3Config, ConfigError};
use crate::discovery::ProviderMetadata;
use crate::jwks::JwksPolicy;
use crate::jwt::JwtVerifier;
use crate::verifier::{DynVerifier, TokenVerifier};

/// Builder for [`DcrBridge`]: what [`A3Config`] does not hold (scopes, lifetimes, limits, your
/// own store or verifier). Everything a deployment sets by variable (`PUBLIC_URL`, `STORE_*`,
/// `TOKEN_ENCRYPTION_KEY`) is set on the configuration instead.
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
/// let config = A3Config::builder()
///     .issuer_url(issuer.url())
///     .client("proxy", "secret")
///     .public_url("http://127.0.0.1:8000") // our issuer; also PUBLIC_URL
///     .build()
///     .unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let bridge = DcrBridge::builder(&config)
///     .store(RedbStore::open(dir.path().join("dcr.redb")).unwrap())
///     .key_file(dir.path().join("dcr.key"))
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
    store: Option<Arc<dyn Store>>,
    key_file: Option<PathBuf>,
    scopes: Vec<String>,
    limits: Limits,
    a3_verifier: Option<DynVerifier>,
    jwks_policy: JwksPolicy,
    #[cfg(feature = "testing")]
    test_network: Option<crate::testing::TestNetwork>,
}

impl std::fmt::Debug for DcrBridgeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcrBridgeBuilder")
            .field("config", &self.config)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl DcrBridgeBuilder {
    pub(super) fn new(config: &A3Config) -> Self {
        DcrBridgeBuilder {
            config: config.clone(),
            store: None,
            key_file: None,
            scopes: vec!["mcp:call".to_owned()],
            limits: Limits::default(),
            a3_verifier: None,
            jwks_policy: JwksPolicy::default(),
            #[cfg(feature = "testing")]
            test_network: None,
        }
    }
    /// The store (default: a [`RedbStore`] at the configuration's `STORE_PATH`, else
    /// [`DEFAULT_STORE_PATH`]).
    ///
    /// With a persistent store of your own, also give a key (`TOKEN_ENCRYPTION_KEY` in the
    /// configuration, or [`DcrBridgeBuilder::key_file`]): under the default per-process key, the
    /// A3 tokens sealed before a restart cannot be opened after it and those grants end.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
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

    /// Lifetime of an upstream transaction, of a consent page and of a sign-in waiting for the
    /// user's confirmation on a plain-http public URL (default 10 min).
    pub fn transaction_ttl(mut self, ttl: Duration) -> Self {
        self.limits.transaction_ttl = ttl;
        self.limits.consent_ttl = ttl;
        self
    }

    /// How long a registered client is kept before a user's sign-in completes for it (default:
    /// the consent page's lifetime plus the upstream transaction's, 20 min: the slowest first
    /// sign-in of a host that registered just before). Registering needs no sign-in, so
    /// registrations nobody completes a sign-in for can fill the
    /// [`max_clients`](Self::max_clients) cap for no longer than this.
    pub fn unused_client_ttl(mut self, ttl: Duration) -> Self {
        self.limits.unused_client_ttl = Some(ttl);
        self
    }

    /// How long a registered client is kept after its last grant ends (default 1 h). A grant
    /// keeps its client as long as the grant lives (see
    /// [`refresh_token_ttl`](Self::refresh_token_ttl)); when the last one expires or is revoked,
    /// the client goes after this grace, so hosts that register on every connection do not
    /// accumulate. The grace lets a host whose grant just ended sign in again with the client id
    /// it cached.
    pub fn client_grace(mut self, grace: Duration) -> Self {
        self.limits.client_grace = grace;
        self
    }

    /// Most grants one user holds at once (default 32; at least 1). A sign-in beyond it revokes
    /// the user's least recently used grant, so one user cannot grow the store without bound.
    pub fn max_grants_per_user(mut self, max: usize) -> Self {
        self.limits.max_grants_per_user = max.max(1);
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

    /// Consent approvals allowed per client address: a burst of `burst`, then one per `refill`
    /// (default 10, then one every 30 s). Approving needs no sign-in and stores an upstream
    /// transaction for [`transaction_ttl`](Self::transaction_ttl), so this bounds what one
    /// address can store that way (by default at most 30 transactions live at once). As for
    /// registrations, a browser's approvals draw from its origin's bucket, not from the one of
    /// the requests without `Origin`; beyond the limit the user sees a 429 page.
    ///
    /// ```
    /// use std::time::Duration;
    /// use a3_mcp_auth::A3Config;
    /// use a3_mcp_auth::dcr::DcrBridge;
    /// use a3_mcp_auth::dcr::store::MemoryStore;
    /// use a3_mcp_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
    /// // Many users behind one address (a company's NAT): a larger burst, a faster refill.
    /// let bridge = DcrBridge::builder(&config)
    ///     .store(MemoryStore::new())
    ///     .consent_rate_limit(50, Duration::from_secs(5))
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// # let _ = bridge;
    /// # }
    /// ```
    pub fn consent_rate_limit(mut self, burst: u32, refill: Duration) -> Self {
        self.limits.approve_burst = burst.max(1);
        self.limits.approve_refill = refill;
        self
    }

    /// Most Client ID Metadata Documents (and recent fetch failures) kept in the store at once
    /// (default 10 000). When the cache is full, a document not in it is fetched for each request
    /// that needs it (under the fetch rate limit) until entries expire.
    pub fn max_cached_documents(mut self, max: u64) -> Self {
        self.limits.max_cached_documents = max;
        self
    }

    /// Fetches of metadata documents not in the cache allowed per caller (address, and browser
    /// origin within it, as for registrations): a burst of `burst`, then one per `refill`
    /// (default 10, then one a minute). A document in the cache costs nothing.
    pub fn metadata_fetch_rate_limit(mut self, burst: u32, refill: Duration) -> Self {
        self.limits.metadata_fetch_burst = burst.max(1);
        self.limits.metadata_fetch_refill = refill;
        self
    }

    /// Tests only (feature `testing`): fetch metadata documents on `network` (its names, its
    /// trusted roots, its connector that records every destination and reaches loopback only)
    /// instead of the real one. See [`TestNetwork`](crate::testing::TestNetwork).
    #[cfg(feature = "testing")]
    pub fn test_network(mut self, network: crate::testing::TestNetwork) -> Self {
        self.test_network = Some(network);
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

    /// How the verifier the bridge builds for A3's tokens fetches and refreshes A3's JWKS
    /// (default [`JwksPolicy::default`]; not used with [`a3_verifier`](Self::a3_verifier)).
    pub fn jwks_policy(mut self, policy: JwksPolicy) -> Self {
        self.jwks_policy = policy;
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
            && let Some(url) = config.store_url()
        {
            if config.token_encryption_key().is_none() {
                return Err(ConfigError::Invalid {
                    name: "TOKEN_ENCRYPTION_KEY",
                    reason: "required with STORE_URL: every replica must seal and open A3 tokens with \
                             the same key (32 random bytes, base64)"
                        .into(),
                }
                .into());
            }
            self.store = Some(store::open_shared(config, url).await?);
        }
        let config = &self.config;
        let issuer = config.public_url().to_owned();
        let metadata = ProviderMetadata::discover(config.issuer()).await?;
        // The key store of the verifier built here is known; one given is the caller's to check.
        let (a3_verifier, a3_keys) = match self.a3_verifier {
            Some(verifier) => (verifier, None),
            None => {
                let jwt = JwtVerifier::builder(config.issuer(), config.resource_uri())
                    .jwks_policy(self.jwks_policy)
                    .jwks_uri(&metadata.jwks_uri)
                    .await?;
                let keys = jwt.keys().clone();
                (DynVerifier::new(jwt), Some(keys))
            }
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
                let path = config
                    .store_path()
                    .map_or_else(|| PathBuf::from(DEFAULT_STORE_PATH), Into::into);
                let store = RedbStore::open(&path)?;
                let mut key_path = path.into_os_string();
                key_path.push(".key");
                (Arc::new(store), Some(key_path.into()))
            }
        };
        let keys = match (config.token_encryption_key(), self.key_file.or(default_key_file)) {
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
        let client_registration = config.client_registration().clone();
        let allow_loopback = client_registration.cimd_allow_loopback();
        #[cfg(feature = "testing")]
        let fetcher = match self.test_network {
            Some(network) => network.fetcher(allow_loopback),
            None => Fetcher::new(allow_loopback),
        };
        #[cfg(not(feature = "testing"))]
        let fetcher = Fetcher::new(allow_loopback);
        if client_registration.cimd_enabled() {
            if allow_loopback {
                tracing::warn!(
                    "\n==============================================================================\n  \
                     CIMD_ALLOW_LOOPBACK is on: client metadata documents are also fetched from\n  \
                     LOOPBACK addresses (http://127.0.0.1:<port>/... included). For local\n  \
                     development and tests only: never in production.\n\
                     =============================================================================="
                );
            }
            if let Some(e) = fetcher.tls_error() {
                tracing::warn!(
                    error = e,
                    "no trusted CA certificates: URL client ids (CIMD) are not offered; hosts register instead"
                );
            }
        }
        // Every operation counted and timed, whichever store it is (the shared rate limits too).
        let store: Arc<dyn Store> = Arc::new(Metered(store));
        let inner = Arc::new(Inner {
            issuer,
            resource: config.resource_uri().to_owned(),
            scopes: self.scopes,
            store: store.clone(),
            keys,
            upstream,
            a3_verifier,
            a3_keys,
            register_limiter: RateLimiter::new(
                "register",
                store.clone(),
                limits.register_burst,
                limits.register_refill,
            ),
            approve_limiter: RateLimiter::new(
                "approve",
                store.clone(),
                limits.approve_burst,
                limits.approve_refill,
            ),
            metadata_fetch_limiter: RateLimiter::new(
                "metadata_fetch",
                store.clone(),
                limits.metadata_fetch_burst,
                limits.metadata_fetch_refill,
            ),
            client_registration,
            fetcher,
            cookies,
            used_consents: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(limits.consent_ttl.max(Duration::from_secs(1)))
                .build(),
            locks: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(60))
                .build(),
            limits,
        });
        store::spawn_purger(Arc::downgrade(&inner.store));
        Ok(DcrBridge { inner })
    }
}
