//! An embedded development issuer that stands in for Mekarge A3 in the authorization code flow.
//!
//! Enabled by the `dev-issuer` feature. It behaves like A3 (and like `oidc-provider`, which the
//! crate's research uses as A3's stand-in) for the flow the DCR bridge drives:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /.well-known/openid-configuration`, `GET /jwks` | discovery and keys, served by [`TestIssuer`] |
//! | `GET /authorize` | checks the request (client, exact redirect URI, PKCE S256, `resource`, `scope`), then shows a login form, or approves at once when the browser already has a session |
//! | `POST /login` | checks the e-mail and password, sets the session cookie, redirects with `code`, `state`, `iss` |
//! | `POST /token` | `authorization_code` and `refresh_token` grants, `client_secret_post` only; RS256 access tokens with `aud` = resource, `scope` and the context claim; refresh tokens rotate |
//! | `POST /revoke` | RFC 7009 revocation of refresh tokens |
//!
//! Users, clients, the resource and its scopes come from the [builder](DevIssuerBuilder); by
//! default they are the quickstart's: user `johndoe@test.com` / `secret` holding
//! `operation=addition`, one confidential client `dev-proxy-client` (random secret) redirecting
//! to `http://127.0.0.1:8000/auth/callback`, resource `http://127.0.0.1:8000/mcp`, scope
//! `mcp:call`. It only ever listens on a loopback address.
//!
//! It is a development tool: everything lives in memory and disappears with the [`DevIssuer`].
//!
//! ```
//! use a3_mcp_auth::TokenVerifier;
//! use a3_mcp_auth::dev_issuer::DevIssuer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dev = DevIssuer::builder()
//!     .user("janedoe@test.com", "secret", [("operation", "addition"), ("operation", "multiplication")])
//!     .start()
//!     .await
//!     .unwrap();
//!
//! // A browser (here: reqwest with a cookie jar) goes through the code flow.
//! let browser = reqwest::Client::builder()
//!     .cookie_store(true)
//!     .redirect(reqwest::redirect::Policy::none())
//!     .build()
//!     .unwrap();
//! let verifier = "a-code-verifier-of-at-least-43-characters-0123456789";
//! let page = browser
//!     .get(dev.authorization_url("xyz", &DevIssuer::pkce_challenge(verifier)))
//!     .send()
//!     .await
//!     .unwrap()
//!     .text()
//!     .await
//!     .unwrap();
//! let request_id = page.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap();
//! let redirect = browser
//!     .post(format!("{}/login", dev.url()))
//!     .form(&[("request", request_id), ("email", "janedoe@test.com"), ("password", "secret")])
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(redirect.status(), 303);
//! let location = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
//! let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
//!
//! // The server behind the redirect URI redeems the code with client_secret_post.
//! let tokens: serde_json::Value = browser
//!     .post(format!("{}/token", dev.url()))
//!     .form(&[
//!         ("grant_type", "authorization_code"),
//!         ("code", code.as_str()),
//!         ("redirect_uri", dev.redirect_uri()),
//!         ("code_verifier", verifier),
//!         ("client_id", dev.client_id()),
//!         ("client_secret", dev.client_secret()),
//!     ])
//!     .send()
//!     .await
//!     .unwrap()
//!     .json()
//!     .await
//!     .unwrap();
//!
//! let claims = dev.issuer().verifier(dev.resource()).await
//!     .verify(tokens["access_token"].as_str().unwrap())
//!     .await
//!     .unwrap();
//! assert!(claims.has_scope("mcp:call"));
//! assert_eq!(claims.get("contexts").unwrap()["operation"], serde_json::json!(["addition", "multiplication"]));
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use url::Url;

use crate::config::{DEFAULT_CONTEXT_CLAIM, DEFAULT_RESOURCE_URI};
use crate::testing::{IssuerHandle, TestIssuer};

/// The id of the client a default [`DevIssuer`] knows (its secret is random).
///
/// ```
/// assert_eq!(a3_mcp_auth::dev_issuer::DEFAULT_CLIENT_ID, "dev-proxy-client");
/// ```
pub const DEFAULT_CLIENT_ID: &str = "dev-proxy-client";

/// The redirect URI of the default client: the quickstart's loopback callback.
///
/// ```
/// assert_eq!(a3_mcp_auth::dev_issuer::DEFAULT_REDIRECT_URI, "http://127.0.0.1:8000/auth/callback");
/// ```
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:8000/auth/callback";

/// The quickstart's user, known to a default [`DevIssuer`] (with the context `operation=addition`).
///
/// ```
/// assert_eq!(a3_mcp_auth::dev_issuer::DEFAULT_USER_EMAIL, "johndoe@test.com");
/// ```
pub const DEFAULT_USER_EMAIL: &str = "johndoe@test.com";

/// The quickstart user's password.
///
/// ```
/// assert_eq!(a3_mcp_auth::dev_issuer::DEFAULT_USER_PASSWORD, "secret");
/// ```
pub const DEFAULT_USER_PASSWORD: &str = "secret";

/// The scope a default [`DevIssuer`] grants.
///
/// ```
/// assert_eq!(a3_mcp_auth::dev_issuer::DEFAULT_SCOPE, "mcp:call");
/// ```
pub const DEFAULT_SCOPE: &str = "mcp:call";

/// How long a login form stays usable.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// How long the browser session that skips the login form lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Wrong passwords allowed on one login form before it is withdrawn.
const MAX_LOGIN_FAILURES: u32 = 5;
/// Scopes that clients commonly send and that this issuer accepts and ignores.
const IGNORED_SCOPES: [&str; 2] = ["openid", "offline_access"];

/// The development issuer could not start.
///
/// ```
/// use a3_mcp_auth::dev_issuer::{DevIssuer, DevIssuerError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = DevIssuer::builder().bind(([0, 0, 0, 0], 0)).start().await.unwrap_err();
/// assert!(matches!(err, DevIssuerError::NotLoopback(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    /// The address is not a loopback address; the development issuer never listens elsewhere.
    #[error("the development issuer only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listener's address could not be read.
    #[error("cannot read the listener's address: {0}")]
    Listener(std::io::Error),
    /// A configured value is unusable.
    #[error("{what} is invalid: {reason}")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

#[derive(Clone)]
struct ClientConfig {
    id: String,
    secret: String,
    redirect_uris: Vec<String>,
}

type Contexts = BTreeMap<String, Vec<String>>;

#[derive(Clone)]
struct UserConfig {
    email: String,
    password: String,
    contexts: Contexts,
}

fn contexts_from<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Contexts {
    let mut contexts = Contexts::new();
    for (key, value) in pairs {
        let values = contexts.entry(key.into()).or_default();
        let value = value.into();
        if !values.contains(&value) {
            values.push(value);
        }
    }
    contexts
}

enum Bind {
    Addr(SocketAddr),
    Listener(tokio::net::TcpListener),
}

/// Configures and starts a [`DevIssuer`]. Every setting has the quickstart's default.
///
/// ```
/// use std::time::Duration;
/// use a3_mcp_auth::dev_issuer::DevIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dev = DevIssuer::builder()
///     .client("my-client", "my-secret", ["http://127.0.0.1:9000/callback"])
///     .resource("http://127.0.0.1:9000/mcp")
///     .scopes(["mcp:call", "mcp:admin"])
///     .user("janedoe@test.com", "pw", [("operation", "addition"), ("operation", "multiplication")])
///     .access_token_ttl(Duration::from_secs(5))
///     .start()
///     .await
///     .unwrap();
/// assert_eq!(dev.client_id(), "my-client");
/// assert_eq!(dev.scopes(), ["mcp:call", "mcp:admin"]);
/// # }
/// ```
pub struct DevIssuerBuilder {
    clients: Option<Vec<ClientConfig>>,
    resource: String,
    scopes: Vec<String>,
    users: Vec<UserConfig>,
    context_claim: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    code_ttl: Duration,
    bind: Bind,
}

impl fmt::Debug for DevIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients: Option<Vec<&str>> = self
            .clients
            .as_ref()
            .map(|c| c.iter().map(|c| c.id.as_str()).collect());
        let users: Vec<&str> = self.users.iter().map(|u| u.email.as_str()).collect();
        f.debug_struct("DevIssuerBuilder")
            .field("clients", &clients)
            .field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .field("users", &users)
            .field("context_claim", &self.context_claim)
            .field("access_token_ttl", &self.access_ttl)
            .field("refresh_token_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for DevIssuerBuilder {
    fn default() -> Self {
        DevIssuerBuilder {
            clients: None,
            resource: DEFAULT_RESOURCE_URI.to_owned(),
            scopes: vec![DEFAULT_SCOPE.to_owned()],
            users: vec![UserConfig {
                email: DEFAULT_USER_EMAIL.to_owned(),
                password: DEFAULT_USER_PASSWORD.to_owned(),
                contexts: contexts_from([("operation", "addition")]),
            }],
            context_claim: DEFAULT_CONTEXT_CLAIM.to_owned(),
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(86_400),
            code_ttl: Duration::from_secs(60),
            bind: Bind::Addr(SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }
}

impl DevIssuerBuilder {
    /// Adds a predefined confidential client (`client_secret_post`, like A3's "MCP Host" client)
    /// with its exactly-matched redirect URIs. The first call replaces the default client; the
    /// first client added is the one [`DevIssuer::client_id`] returns.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder()
    ///     .client("proxy", "s3cret", ["http://127.0.0.1:8000/auth/callback", "http://[::1]:8000/auth/callback"])
    ///     .client("other", "other-secret", ["http://127.0.0.1:3000/cb"])
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// assert_eq!((dev.client_id(), dev.client_secret()), ("proxy", "s3cret"));
    /// # }
    /// ```
    pub fn client(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uris: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let client = ClientConfig {
            id: client_id.into(),
            secret: client_secret.into(),
            redirect_uris: redirect_uris.into_iter().map(Into::into).collect(),
        };
        let clients = self.clients.get_or_insert_with(Vec::new);
        clients.retain(|c| c.id != client.id);
        clients.push(client);
        self
    }

    /// The resource URI: the only `resource` accepted, and the `aud` of every access token.
    /// Default `http://127.0.0.1:8000/mcp`.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().resource("http://127.0.0.1:9000/mcp").start().await.unwrap();
    /// assert_eq!(dev.resource(), "http://127.0.0.1:9000/mcp");
    /// # }
    /// ```
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resource = uri.into();
        self
    }

    /// The resource's scopes; requests may ask for any subset, and get all of them when they ask
    /// for none. Default `["mcp:call"]`. (`openid` and `offline_access` are accepted and ignored.)
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().scopes(["mcp:call", "mcp:admin"]).start().await.unwrap();
    /// assert_eq!(dev.scopes(), ["mcp:call", "mcp:admin"]);
    /// # }
    /// ```
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a user (or replaces the one with the same e-mail) holding `contexts`, key-value pairs
    /// such as `("operation", "addition")`. The quickstart's `johndoe@test.com` is there unless
    /// [`clear_users`](Self::clear_users) removes it.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder()
    ///     .user("janedoe@test.com", "secret", [("operation", "addition"), ("operation", "multiplication")])
    ///     .user("nobody@test.com", "secret", Vec::<(String, String)>::new())
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// assert!(dev.banner().contains("janedoe@test.com"));
    /// # }
    /// ```
    pub fn user<K: Into<String>, V: Into<String>>(
        mut self,
        email: impl Into<String>,
        password: impl Into<String>,
        contexts: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let user = UserConfig {
            email: email.into(),
            password: password.into(),
            contexts: contexts_from(contexts),
        };
        self.users.retain(|u| !u.email.eq_ignore_ascii_case(&user.email));
        self.users.push(user);
        self
    }

    /// Removes every user configured so far, the default one included.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().clear_users().user("a@test.com", "pw", [("k", "v")]).start().await.unwrap();
    /// assert!(!dev.banner().contains("johndoe@test.com"));
    /// # }
    /// ```
    pub fn clear_users(mut self) -> Self {
        self.users.clear();
        self
    }

    /// The access-token claim holding the user's contexts, as an object of key → list of values
    /// (`{"operation": ["addition"]}`). Default `contexts`
    /// ([`DEFAULT_CONTEXT_CLAIM`]).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().context_claim("a3_contexts").start().await.unwrap();
    /// assert_eq!(dev.context_claim(), "a3_contexts");
    /// # }
    /// ```
    pub fn context_claim(mut self, name: impl Into<String>) -> Self {
        self.context_claim = name.into();
        self
    }

    /// Access-token lifetime (whole seconds, at least one). Default 3600 s, like the quickstart.
    ///
    /// ```
    /// use std::time::Duration;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// let builder = DevIssuer::builder().access_token_ttl(Duration::from_secs(2));
    /// ```
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// Refresh-token lifetime. Default one day.
    ///
    /// ```
    /// use std::time::Duration;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// let builder = DevIssuer::builder().refresh_token_ttl(Duration::from_secs(10));
    /// ```
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }

    /// Authorization-code lifetime. Default 60 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// let builder = DevIssuer::builder().authorization_code_ttl(Duration::from_millis(500));
    /// ```
    pub fn authorization_code_ttl(mut self, ttl: Duration) -> Self {
        self.code_ttl = ttl;
        self
    }

    /// The address to listen on; it must be a loopback address. Default `127.0.0.1:0` (a free
    /// port).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().bind(([127, 0, 0, 1], 0)).start().await.unwrap();
    /// assert!(dev.url().starts_with("http://127.0.0.1:"));
    /// assert!(DevIssuer::builder().bind(([192, 0, 2, 1], 9000)).start().await.is_err());
    /// # }
    /// ```
    pub fn bind(mut self, addr: impl Into<SocketAddr>) -> Self {
        self.bind = Bind::Addr(addr.into());
        self
    }

    /// Serves on an already bound listener, which must be bound to a loopback address.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let dev = DevIssuer::builder().listener(listener).start().await.unwrap();
    /// assert_eq!(dev.url(), format!("http://{addr}"));
    /// # }
    /// ```
    pub fn listener(mut self, listener: tokio::net::TcpListener) -> Self {
        self.bind = Bind::Listener(listener);
        self
    }

    /// Checks the settings, binds, and starts serving. The server stops when the [`DevIssuer`]
    /// is dropped.
    ///
    /// # Errors
    /// [`DevIssuerError::NotLoopback`] for a non-loopback address, [`DevIssuerError::Bind`] when
    /// the address is taken, [`DevIssuerError::Invalid`] for an unusable setting (a redirect URI
    /// or resource that is not an absolute URI without fragment, an empty scope, a zero TTL...).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::{DevIssuer, DevIssuerError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().start().await.unwrap();
    /// let err = DevIssuer::builder().resource("not a uri").start().await.unwrap_err();
    /// assert!(matches!(err, DevIssuerError::Invalid { what: "resource", .. }));
    /// # }
    /// ```
    pub async fn start(self) -> Result<DevIssuer, DevIssuerError> {
        let clients = self.clients.clone().unwrap_or_else(|| {
            vec![ClientConfig {
                id: DEFAULT_CLIENT_ID.to_owned(),
                secret: random_token(24),
                redirect_uris: vec![DEFAULT_REDIRECT_URI.to_owned()],
            }]
        });
        self.validate(&clients)?;
        let listener = match self.bind {
            Bind::Addr(addr) => {
                if !addr.ip().is_loopback() {
                    return Err(DevIssuerError::NotLoopback(addr));
                }
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| DevIssuerError::Bind { addr, source })?
            }
            Bind::Listener(listener) => listener,
        };
        let addr = listener.local_addr().map_err(DevIssuerError::Listener)?;
        if !addr.ip().is_loopback() {
            return Err(DevIssuerError::NotLoopback(addr));
        }
        let config = Config {
            resource: self.resource,
            scopes: self.scopes,
            context_claim: self.context_claim,
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            code_ttl: self.code_ttl,
            clients,
        };
        let mut shared = None;
        let issuer = TestIssuer::serve_with(listener, addr, |handle| {
            let state = Arc::new(Shared {
                cookie_name: format!("a3_dev_issuer_session_{}", addr.port()),
                handle,
                config,
                users: Mutex::new(self.users),
                store: Mutex::new(Store::default()),
                counters: Counters::default(),
            });
            shared = Some(state.clone());
            routes(state)
        });
        let shared = shared.expect("serve_with builds the routes");
        Ok(DevIssuer { issuer, shared })
    }

    fn validate(&self, clients: &[ClientConfig]) -> Result<(), DevIssuerError> {
        let invalid = |what, reason: &str| {
            Err(DevIssuerError::Invalid {
                what,
                reason: reason.to_owned(),
            })
        };
        check_absolute_uri(&self.resource).map_err(|reason| DevIssuerError::Invalid {
            what: "resource",
            reason,
        })?;
        if self.scopes.is_empty() {
            return invalid("scopes", "at least one scope is needed");
        }
        if self.scopes.iter().any(|s| !is_scope_token(s)) {
            return invalid(
                "scopes",
                "a scope is empty or contains a space, quote or backslash",
            );
        }
        if self.context_claim.is_empty() {
            return invalid("context_claim", "empty");
        }
        for (what, ttl) in [
            ("access_token_ttl", self.access_ttl),
            ("refresh_token_ttl", self.refresh_ttl),
            ("authorization_code_ttl", self.code_ttl),
        ] {
            if ttl.is_zero() {
                return invalid(what, "zero");
            }
        }
        for client in clients {
            if client.id.is_empty() || client.secret.is_empty() {
                return invalid("client", "empty client id or secret");
            }
            if client.redirect_uris.is_empty() {
                return invalid("client", "a client needs at least one redirect URI");
            }
            for uri in &client.redirect_uris {
                check_absolute_uri(uri).map_err(|reason| DevIssuerError::Invalid {
                    what: "redirect_uri",
                    reason,
                })?;
            }
        }
        if self.users.iter().any(|u| u.email.is_empty()) {
            return invalid("user", "empty e-mail");
        }
        Ok(())
    }
}

fn check_absolute_uri(uri: &str) -> Result<(), String> {
    let parsed = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if parsed.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    if parsed.cannot_be_a_base() && parsed.scheme() != "urn" {
        return Err(format!("{uri:?} is not a hierarchical URI"));
    }
    Ok(())
}

fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// A running development issuer. See the [module docs](self) for the routes and a full code flow.
///
/// ```
/// use a3_mcp_auth::dev_issuer::DevIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dev = DevIssuer::start().await.unwrap();
/// eprintln!("{}", dev.banner());
/// let discovery: serde_json::Value =
///     reqwest::get(format!("{}/.well-known/openid-configuration", dev.url())).await.unwrap().json().await.unwrap();
/// assert_eq!(discovery["token_endpoint"], format!("{}/token", dev.url()));
/// # }
/// ```
pub struct DevIssuer {
    issuer: TestIssuer,
    shared: Arc<Shared>,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("url", &self.url())
            .field("client_id", &self.client_id())
            .field("resource", &self.resource())
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// A builder with the quickstart's defaults.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().start().await.unwrap();
    /// assert_eq!(dev.client_id(), "dev-proxy-client");
    /// # }
    /// ```
    pub fn builder() -> DevIssuerBuilder {
        DevIssuerBuilder::default()
    }

    /// Starts an issuer with every default (`DevIssuer::builder().start()`).
    ///
    /// # Errors
    /// See [`DevIssuerBuilder::start`].
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.resource(), "http://127.0.0.1:8000/mcp");
    /// # }
    /// ```
    pub async fn start() -> Result<DevIssuer, DevIssuerError> {
        DevIssuerBuilder::default().start().await
    }

    /// The issuer URL, `http://127.0.0.1:{port}`: what `ISSUER_URL` would be set to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert!(dev.url().starts_with("http://127.0.0.1:"));
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        self.issuer.url()
    }

    /// The underlying [`TestIssuer`]: keys, rotation, a [`JwtVerifier`](crate::JwtVerifier) for
    /// its tokens, or hand-made tokens.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let token = dev.issuer().token(dev.resource()).subject("johndoe@test.com").sign();
    /// assert_eq!(token.split('.').count(), 3);
    /// # }
    /// ```
    pub fn issuer(&self) -> &TestIssuer {
        &self.issuer
    }

    /// The first configured client's id (`dev-proxy-client` by default): `CLIENT_ID`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.client_id(), a3_mcp_auth::dev_issuer::DEFAULT_CLIENT_ID);
    /// # }
    /// ```
    pub fn client_id(&self) -> &str {
        &self.shared.config.clients[0].id
    }

    /// The first configured client's secret (random by default): `CLIENT_SECRET`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert!(dev.client_secret().len() >= 32);
    /// # }
    /// ```
    pub fn client_secret(&self) -> &str {
        &self.shared.config.clients[0].secret
    }

    /// The first configured client's first redirect URI.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.redirect_uri(), "http://127.0.0.1:8000/auth/callback");
    /// # }
    /// ```
    pub fn redirect_uri(&self) -> &str {
        &self.shared.config.clients[0].redirect_uris[0]
    }

    /// The resource URI: the `aud` of the access tokens (`RESOURCE_URI`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.resource(), a3_mcp_auth::config::DEFAULT_RESOURCE_URI);
    /// # }
    /// ```
    pub fn resource(&self) -> &str {
        &self.shared.config.resource
    }

    /// The resource's scopes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.scopes(), ["mcp:call"]);
    /// # }
    /// ```
    pub fn scopes(&self) -> &[String] {
        &self.shared.config.scopes
    }

    /// The name of the access-token claim holding the contexts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.context_claim(), a3_mcp_auth::config::DEFAULT_CONTEXT_CLAIM);
    /// # }
    /// ```
    pub fn context_claim(&self) -> &str {
        &self.shared.config.context_claim
    }

    /// An authorization request URL for the first client, its first redirect URI, the resource
    /// and every scope, with `state` and an S256 `code_challenge` (see
    /// [`pkce_challenge`](Self::pkce_challenge)).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// let url = dev.authorization_url("xyz", &DevIssuer::pkce_challenge("v".repeat(43).as_str()));
    /// assert!(url.starts_with(&format!("{}/authorize?response_type=code&client_id=dev-proxy-client", dev.url())));
    /// # }
    /// ```
    pub fn authorization_url(&self, state: &str, code_challenge: &str) -> String {
        let mut url = Url::parse(&format!("{}/authorize", self.url())).expect("the issuer URL is a URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", self.client_id())
            .append_pair("redirect_uri", self.redirect_uri())
            .append_pair("scope", &self.scopes().join(" "))
            .append_pair("resource", self.resource())
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// The PKCE S256 challenge of `verifier`: `BASE64URL(SHA256(verifier))`.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// // RFC 7636, appendix B.
    /// assert_eq!(
    ///     DevIssuer::pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ///     "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    /// );
    /// ```
    pub fn pkce_challenge(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
    }

    /// `GET /authorize` requests received.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// reqwest::get(format!("{}/authorize", dev.url())).await.unwrap();
    /// assert_eq!(dev.authorize_requests(), 1);
    /// # }
    /// ```
    pub fn authorize_requests(&self) -> u64 {
        self.shared.counters.authorize.load(Ordering::SeqCst)
    }

    /// Successful password logins (an authorization approved through an existing session does
    /// not count).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.logins(), 0);
    /// # }
    /// ```
    pub fn logins(&self) -> u64 {
        self.shared.counters.logins.load(Ordering::SeqCst)
    }

    /// Authorization codes issued (after a login or through an existing session).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.codes_issued(), 0);
    /// # }
    /// ```
    pub fn codes_issued(&self) -> u64 {
        self.shared.counters.codes.load(Ordering::SeqCst)
    }

    /// `POST /token` requests received, whatever the grant and outcome.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// reqwest::Client::new().post(format!("{}/token", dev.url())).send().await.unwrap();
    /// assert_eq!(dev.token_requests(), 1);
    /// # }
    /// ```
    pub fn token_requests(&self) -> u64 {
        self.shared.counters.token.load(Ordering::SeqCst)
    }

    /// `POST /token` requests with `grant_type=refresh_token`, whatever the outcome.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let response = reqwest::Client::new()
    ///     .post(format!("{}/token", dev.url()))
    ///     .form(&[("grant_type", "refresh_token"), ("refresh_token", "nope")])
    ///     .send()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(response.status(), 401); // no client authentication
    /// assert_eq!(dev.refresh_requests(), 1);
    /// # }
    /// ```
    pub fn refresh_requests(&self) -> u64 {
        self.shared.counters.refresh.load(Ordering::SeqCst)
    }

    /// `POST /revoke` requests received.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.revocation_requests(), 0);
    /// # }
    /// ```
    pub fn revocation_requests(&self) -> u64 {
        self.shared.counters.revoke.load(Ordering::SeqCst)
    }

    /// Revokes every refresh token issued so far; returns how many were live.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.revoke_all_refresh_tokens(), 0);
    /// # }
    /// ```
    pub fn revoke_all_refresh_tokens(&self) -> usize {
        let mut store = self.shared.store();
        let live = store.refresh.len();
        store.refresh.clear();
        live
    }

    /// Ends every browser session, so that the next authorization shows the login form again
    /// (as does a request with `prompt=login`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// dev.end_all_sessions();
    /// # }
    /// ```
    pub fn end_all_sessions(&self) {
        self.shared.store().sessions.clear();
    }

    /// Replaces the contexts of the user `email`, as an A3 admin granting a new Context would;
    /// tokens issued from then on (refreshes included) carry them. Returns whether the user exists.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert!(dev.set_user_contexts("johndoe@test.com", [("operation", "addition"), ("operation", "multiplication")]));
    /// assert!(!dev.set_user_contexts("nobody@test.com", [("operation", "addition")]));
    /// # }
    /// ```
    pub fn set_user_contexts<K: Into<String>, V: Into<String>>(
        &self,
        email: &str,
        contexts: impl IntoIterator<Item = (K, V)>,
    ) -> bool {
        let mut users = self.shared.users.lock().unwrap_or_else(|e| e.into_inner());
        match users.iter_mut().find(|u| u.email.eq_ignore_ascii_case(email)) {
            Some(user) => {
                user.contexts = contexts_from(contexts);
                true
            }
            None => false,
        }
    }

    /// A loud multi-line notice saying that this is a development issuer and how to use it
    /// (issuer URL, client id, redirect URIs, resource, scopes, users and their contexts; never
    /// secrets or passwords other than the quickstart's well-known default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let banner = dev.banner();
    /// assert!(banner.contains("DEVELOPMENT ISSUER") && banner.contains(dev.url()));
    /// assert!(!banner.contains(dev.client_secret()));
    /// # }
    /// ```
    pub fn banner(&self) -> String {
        let config = &self.shared.config;
        let line = "=".repeat(78);
        let mut out = format!(
            "{line}\n  DEVELOPMENT ISSUER: NOT Mekarge A3. Tokens from it are for local development only.\n  \
             Set ISSUER_PATH (or ISSUER_URL) to use a real A3 environment.\n\n  issuer:   {}\n",
            self.url()
        );
        for client in &config.clients {
            out += &format!(
                "  client:   {} (client_secret_post), redirect {}\n",
                client.id,
                client.redirect_uris.join(" ")
            );
        }
        out += &format!(
            "  resource: {}  scopes: {}\n",
            config.resource,
            config.scopes.join(" ")
        );
        for user in self.shared.users.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let contexts: Vec<String> = user
                .contexts
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
                .collect();
            let password = if user.email == DEFAULT_USER_EMAIL && user.password == DEFAULT_USER_PASSWORD {
                format!(" / {DEFAULT_USER_PASSWORD}")
            } else {
                String::new()
            };
            out += &format!(
                "  user:     {}{password}  contexts: {}\n",
                user.email,
                contexts.join(", ")
            );
        }
        out += &line;
        out
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Config {
    resource: String,
    scopes: Vec<String>,
    context_claim: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    code_ttl: Duration,
    clients: Vec<ClientConfig>,
}

#[derive(Default)]
struct Counters {
    authorize: AtomicU64,
    logins: AtomicU64,
    codes: AtomicU64,
    token: AtomicU64,
    refresh: AtomicU64,
    revoke: AtomicU64,
}

struct Shared {
    handle: IssuerHandle,
    config: Config,
    users: Mutex<Vec<UserConfig>>,
    cookie_name: String,
    store: Mutex<Store>,
    counters: Counters,
}

type Digest = [u8; 32];

/// A validated authorization request.
#[derive(Clone)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    /// Whether `redirect_uri` was in the request (then the token request must repeat it).
    redirect_explicit: bool,
    state: Option<String>,
    code_challenge: String,
    resource: String,
    scope: Vec<String>,
}

struct Pending {
    request: AuthRequest,
    expires: Instant,
    failures: u32,
}

struct Session {
    email: String,
    expires: Instant,
}

struct CodeEntry {
    request: AuthRequest,
    email: String,
    grant: u64,
    expires: Instant,
    used: bool,
}

struct RefreshEntry {
    client_id: String,
    email: String,
    scope: Vec<String>,
    resource: String,
    grant: u64,
    expires: Instant,
}

#[derive(Default)]
struct Store {
    pending: HashMap<String, Pending>,
    sessions: HashMap<Digest, Session>,
    codes: HashMap<Digest, CodeEntry>,
    refresh: HashMap<Digest, RefreshEntry>,
    /// Refresh tokens already rotated: presenting one again revokes its grant.
    spent_refresh: HashMap<Digest, (u64, Instant)>,
    next_grant: u64,
}

impl Store {
    fn prune(&mut self, now: Instant) {
        self.pending.retain(|_, p| p.expires > now);
        self.sessions.retain(|_, s| s.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.refresh.retain(|_, r| r.expires > now);
        self.spent_refresh.retain(|_, (_, expires)| *expires > now);
    }

    fn revoke_grant(&mut self, grant: u64) {
        self.refresh.retain(|_, r| r.grant != grant);
    }
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.config.clients.iter().find(|c| c.id == id)
    }

    fn user(&self, email: &str) -> Option<UserConfig> {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned()
    }

    /// Checks an e-mail and password, in time independent of which one is wrong.
    fn check_password(&self, email: &str, password: &str) -> Option<UserConfig> {
        let user = self.user(email);
        let expected = user.as_ref().map_or("\u{0}no such user", |u| u.password.as_str());
        let ok = secrets_equal(expected, password);
        user.filter(|_| ok)
    }

    /// Issues a code for `request` and redirects the browser with it.
    fn approve(&self, request: AuthRequest, email: String) -> Response {
        let code = random_token(32);
        let now = Instant::now();
        {
            let mut store = self.store();
            store.prune(now);
            store.next_grant += 1;
            let grant = store.next_grant;
            let entry = CodeEntry {
                request: request.clone(),
                email,
                grant,
                expires: now + self.config.code_ttl,
                used: false,
            };
            store.codes.insert(hash(&code), entry);
        }
        self.counters.codes.fetch_add(1, Ordering::SeqCst);
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            params.push(("state", state));
        }
        params.push(("iss", self.handle.url()));
        redirect_to(&request.redirect_uri, &params)
    }

    /// Mints an access token and a refresh token for the grant; the token response.
    fn issue_tokens(
        &self,
        client_id: &str,
        email: &str,
        scope: Vec<String>,
        resource: &str,
        grant: u64,
    ) -> Response {
        let Some(user) = self.user(email) else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "the user no longer exists",
            );
        };
        let ttl = self.config.access_ttl.as_secs().max(1);
        let scope_string = scope.join(" ");
        let access_token = self
            .handle
            .token(resource)
            .subject(&user.email)
            .client_id(client_id)
            .scope(&scope_string)
            .claim(&self.config.context_claim, json!(user.contexts))
            .expires_in(ttl as i64)
            .sign();
        let refresh_token = random_token(32);
        let now = Instant::now();
        {
            let mut store = self.store();
            store.prune(now);
            let entry = RefreshEntry {
                client_id: client_id.to_owned(),
                email: user.email.clone(),
                scope,
                resource: resource.to_owned(),
                grant,
                expires: now + self.config.refresh_ttl,
            };
            store.refresh.insert(hash(&refresh_token), entry);
        }
        no_store(
            axum::Json(json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ttl,
                "refresh_token": refresh_token,
                "scope": scope_string,
            }))
            .into_response(),
        )
    }
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/authorize", get(authorize))
        .route("/login", post(login))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------------
// GET /authorize and POST /login

async fn authorize(State(s): State<Arc<Shared>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    s.counters.authorize.fetch_add(1, Ordering::SeqCst);
    let params = match Params::parse(query.as_deref().unwrap_or("").as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    // Until the client and redirect URI are known good, errors stay on this page (RFC 6749 §4.1.2.1).
    let Some(client_id) = params.get("client_id") else {
        return error_page(StatusCode::BAD_REQUEST, "client_id is missing");
    };
    let Some(client) = s.client(client_id) else {
        return error_page(StatusCode::BAD_REQUEST, &format!("unknown client {client_id:?}"));
    };
    let (redirect_uri, redirect_explicit) = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
        Some(uri) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("redirect_uri {uri:?} is not registered for client {client_id:?}"),
            );
        }
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => return error_page(StatusCode::BAD_REQUEST, "redirect_uri is missing"),
    };
    let state = params.get("state").map(str::to_owned);
    let fail = |error: &str, description: &str| {
        let mut p = vec![("error", error), ("error_description", description)];
        if let Some(state) = &state {
            p.push(("state", state));
        }
        p.push(("iss", s.handle.url()));
        redirect_to(&redirect_uri, &p)
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        None => return fail("invalid_request", "response_type is missing"),
    }
    let Some(code_challenge) = params.get("code_challenge") else {
        return fail("invalid_request", "code_challenge is required (PKCE)");
    };
    if params.get("code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if code_challenge.len() != 43 || !code_challenge.bytes().all(is_base64url) {
        return fail(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 digest",
        );
    }
    match params.get("resource") {
        Some(r) if r == s.config.resource => {}
        Some(_) => return fail("invalid_target", "resource is not a resource of this issuer"),
        None => return fail("invalid_target", "resource is required for this client"),
    }
    let scope = match granted_scope(&s.config.scopes, params.get("scope")) {
        Ok(scope) => scope,
        Err(e) => return fail("invalid_scope", &e),
    };
    let prompts: Vec<&str> = params
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|p| !p.is_empty())
        .collect();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        );
    }
    let request = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        redirect_explicit,
        state: state.clone(),
        code_challenge: code_challenge.to_owned(),
        resource: s.config.resource.clone(),
        scope,
    };

    if !prompts.contains(&"login")
        && let Some(email) = session_user(&s, &headers)
    {
        return s.approve(request, email);
    }
    if prompts.contains(&"none") {
        return fail("login_required", "the user is not signed in");
    }
    let id = random_token(24);
    let now = Instant::now();
    {
        let mut store = s.store();
        store.prune(now);
        store.pending.insert(
            id.clone(),
            Pending {
                request: request.clone(),
                expires: now + PENDING_TTL,
                failures: 0,
            },
        );
    }
    login_page(StatusCode::OK, &id, &request, "", None)
}

async fn login(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let id = params.get("request").unwrap_or("");
    let email = params.get("email").unwrap_or("");
    let password = params.get("password").unwrap_or("");
    let request = {
        let mut store = s.store();
        store.prune(Instant::now());
        match store.pending.get(id) {
            Some(p) => p.request.clone(),
            None => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "this sign-in request is unknown, used or expired; start again from the application",
                );
            }
        }
    };
    let Some(user) = s.check_password(email, password) else {
        let mut store = s.store();
        let withdrawn = match store.pending.get_mut(id) {
            Some(p) => {
                p.failures += 1;
                p.failures >= MAX_LOGIN_FAILURES
            }
            None => true,
        };
        if withdrawn {
            store.pending.remove(id);
            return error_page(
                StatusCode::UNAUTHORIZED,
                "too many failed sign-in attempts; start again",
            );
        }
        return login_page(
            StatusCode::UNAUTHORIZED,
            id,
            &request,
            email,
            Some("Wrong e-mail or password."),
        );
    };
    // Single use: whoever removes it first proceeds.
    if s.store().pending.remove(id).is_none() {
        return error_page(StatusCode::BAD_REQUEST, "this sign-in request was already used");
    }
    s.counters.logins.fetch_add(1, Ordering::SeqCst);
    let session = random_token(32);
    let now = Instant::now();
    s.store().sessions.insert(
        hash(&session),
        Session {
            email: user.email.clone(),
            expires: now + SESSION_TTL,
        },
    );
    let mut response = s.approve(request, user.email);
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        s.cookie_name,
        SESSION_TTL.as_secs()
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ascii cookie"),
    );
    response
}

/// The e-mail of the browser's live session, if any (and if the user still exists).
fn session_user(s: &Shared, headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == s.cookie_name)
        .map(|(_, value)| value.to_owned())?;
    let email = {
        let store = s.store();
        let session = store.sessions.get(&hash(&value))?;
        if session.expires <= Instant::now() {
            return None;
        }
        session.email.clone()
    };
    s.user(&email).map(|u| u.email)
}

/// The scopes granted for a requested `scope` parameter: a subset of `supported`, all of them
/// when none is requested; `openid` and `offline_access` are ignored.
fn granted_scope(supported: &[String], requested: Option<&str>) -> Result<Vec<String>, String> {
    let mut granted = Vec::new();
    for scope in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if IGNORED_SCOPES.contains(&scope) {
            continue;
        }
        if !supported.iter().any(|s| s == scope) {
            return Err(format!("scope {scope:?} is not a scope of this resource"));
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    if granted.is_empty() {
        granted = supported.to_vec();
    }
    Ok(granted)
}

// ---------------------------------------------------------------------------------------------
// POST /token and POST /revoke

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.counters.token.fetch_add(1, Ordering::SeqCst);
    let params = match form_body(&headers, &body) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    if params.get("grant_type") == Some("refresh_token") {
        s.counters.refresh.fetch_add(1, Ordering::SeqCst);
    }
    let client = match authenticate_client(&s, &headers, &params) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    match params.get("grant_type") {
        Some("authorization_code") => code_grant(&s, client, &params),
        Some("refresh_token") => refresh_grant(&s, client, &params),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
    }
}

fn code_grant(s: &Shared, client: &ClientConfig, params: &Params) -> Response {
    let bad = |error, description| oauth_error(StatusCode::BAD_REQUEST, error, description);
    let Some(code) = params.get("code") else {
        return bad("invalid_request", "code is missing");
    };
    let Some(verifier) = params.get("code_verifier") else {
        return bad("invalid_request", "code_verifier is missing");
    };
    let (request, email, grant) = {
        let mut store = s.store();
        store.prune(Instant::now());
        let Some(entry) = store.codes.get_mut(&hash(code)) else {
            return bad("invalid_grant", "the authorization code is invalid or expired");
        };
        if entry.request.client_id != client.id {
            return bad(
                "invalid_grant",
                "the authorization code was issued to another client",
            );
        }
        if entry.used {
            // RFC 6749 §4.1.2: a replayed code revokes what was issued from it.
            let grant = entry.grant;
            store.revoke_grant(grant);
            return bad("invalid_grant", "the authorization code was already used");
        }
        entry.used = true;
        (entry.request.clone(), entry.email.clone(), entry.grant)
    };
    match params.get("redirect_uri") {
        Some(uri) if uri == request.redirect_uri => {}
        Some(_) => {
            return bad(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            );
        }
        None if request.redirect_explicit => return bad("invalid_grant", "redirect_uri is missing"),
        None => {}
    }
    if !is_code_verifier(verifier)
        || !secrets_equal(&DevIssuer::pkce_challenge(verifier), &request.code_challenge)
    {
        return bad("invalid_grant", "PKCE verification failed");
    }
    if let Some(resource) = params.get("resource")
        && resource != request.resource
    {
        return bad(
            "invalid_target",
            "resource does not match the authorization request",
        );
    }
    s.issue_tokens(&client.id, &email, request.scope, &request.resource, grant)
}

fn refresh_grant(s: &Shared, client: &ClientConfig, params: &Params) -> Response {
    let bad = |error, description| oauth_error(StatusCode::BAD_REQUEST, error, description);
    let Some(token) = params.get("refresh_token") else {
        return bad("invalid_request", "refresh_token is missing");
    };
    let key = hash(token);
    let entry = {
        let mut store = s.store();
        let now = Instant::now();
        store.prune(now);
        if let Some(&(grant, _)) = store.spent_refresh.get(&key) {
            // A rotated token came back: someone holds a copy. Revoke the whole grant.
            store.revoke_grant(grant);
            return bad("invalid_grant", "the refresh token was already used");
        }
        match store.refresh.get(&key) {
            None => {
                return bad(
                    "invalid_grant",
                    "the refresh token is invalid, expired or revoked",
                );
            }
            Some(entry) if entry.client_id != client.id => {
                return bad("invalid_grant", "the refresh token was issued to another client");
            }
            Some(_) => {}
        }
        let entry = store.refresh.remove(&key).expect("just found");
        store.spent_refresh.insert(key, (entry.grant, entry.expires));
        entry
    };
    let scope = match params.get("scope") {
        None => entry.scope.clone(),
        Some(requested) => {
            let mut narrowed = Vec::new();
            for scope in requested
                .split(' ')
                .filter(|s| !s.is_empty() && !IGNORED_SCOPES.contains(s))
            {
                if !entry.scope.iter().any(|g| g == scope) {
                    return bad("invalid_scope", "scope exceeds the original grant");
                }
                narrowed.push(scope.to_owned());
            }
            if narrowed.is_empty() {
                entry.scope.clone()
            } else {
                narrowed
            }
        }
    };
    if let Some(resource) = params.get("resource")
        && resource != entry.resource
    {
        return bad("invalid_target", "resource does not match the grant");
    }
    s.issue_tokens(&client.id, &entry.email, scope, &entry.resource, entry.grant)
}

async fn revoke(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.counters.revoke.fetch_add(1, Ordering::SeqCst);
    let params = match form_body(&headers, &body) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let client = match authenticate_client(&s, &headers, &params) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let Some(token) = params.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is missing");
    };
    let key = hash(token);
    let mut store = s.store();
    if store.refresh.get(&key).is_some_and(|r| r.client_id == client.id) {
        store.refresh.remove(&key);
    }
    // RFC 7009 §2.2: unknown tokens (and access tokens, which are self-contained) are a success too.
    no_store(StatusCode::OK.into_response())
}

/// The form parameters of a token or revocation request.
fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Params, Box<Response>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form && !body.is_empty() {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        )));
    }
    Params::parse(body).map_err(|e| Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e)))
}

/// `client_secret_post` only: `client_id` and `client_secret` in the body.
fn authenticate_client<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'a ClientConfig, Box<Response>> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "));
    let secret = params.get("client_secret");
    if basic && secret.is_some() {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client authentication must use exactly one method",
        )));
    }
    if basic {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "this client authenticates with client_secret_post (client_id and client_secret in the body)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dev-issuer\""),
        );
        return Err(Box::new(response));
    }
    let failed = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    };
    let (Some(client_id), Some(secret)) = (params.get("client_id"), secret) else {
        return Err(Box::new(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required (client_secret_post)",
        )));
    };
    let client = s.client(client_id).ok_or_else(|| Box::new(failed()))?;
    if !secrets_equal(&client.secret, secret) {
        return Err(Box::new(failed()));
    }
    Ok(client)
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Request parameters; repeated parameters are refused and empty ones count as absent
/// (RFC 6749 §3.1).
struct Params(HashMap<String, String>);

impl Params {
    fn parse(input: &[u8]) -> Result<Params, String> {
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if map
                .insert(name.clone().into_owned(), value.into_owned())
                .is_some()
            {
                return Err(format!("parameter {name:?} is repeated"));
            }
        }
        Ok(Params(map))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn hash(value: &str) -> Digest {
    digest(&SHA256, value.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Compares two secrets in constant time (over their SHA-256 digests, so lengths do not leak).
fn secrets_equal(a: &str, b: &str) -> bool {
    verify_slices_are_equal(&hash(a), &hash(b)).is_ok()
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("system randomness");
    URL_SAFE_NO_PAD.encode(buffer)
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn is_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

/// A 303 to `uri` with `params` added to its query.
fn redirect_to(uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(uri) else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "the redirect URI is not a URL");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the redirect URI is not a valid header",
        );
    };
    no_store((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response())
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}\
    .dev{background:#fde68a;border:1px solid #b45309;padding:.5rem;border-radius:.25rem}\
    .error{color:#b91c1c}label{display:block;margin:.75rem 0}input{display:block;width:100%;padding:.4rem}\
    button{margin-top:1rem;padding:.5rem 1.5rem}";

fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <p class=\"dev\">Development issuer: <strong>not Mekarge A3</strong>. For local development only.</p>\
         {body}</main></body></html>\n",
        title = escape_html(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    no_store(response)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html_page(
        status,
        "Authorization error",
        &format!(
            "<h1>Authorization error</h1><p class=\"error\">{}</p>",
            escape_html(message)
        ),
    )
}

fn login_page(
    status: StatusCode,
    id: &str,
    request: &AuthRequest,
    email: &str,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1><p><strong>{client}</strong> asks for <strong>{scope}</strong> on \
         <strong>{resource}</strong>.</p>{error}\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"request\" value=\"{id}\">\
         <label>E-mail <input name=\"email\" type=\"email\" autocomplete=\"username\" value=\"{email}\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape_html(&request.client_id),
        scope = escape_html(&request.scope.join(" ")),
        resource = escape_html(&request.resource),
        id = escape_html(id),
        email = escape_html(email),
    );
    html_page(status, "Sign in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn parses_params_refusing_repeats_and_dropping_empty_values() {
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(
            (p.get("a"), p.get("b"), p.get("c")),
            (Some("1"), None, Some("x y"))
        );
        assert!(Params::parse(b"a=1&a=2").is_err());
    }

    #[test]
    fn grants_a_subset_of_scopes_or_all() {
        let supported = vec!["mcp:call".to_owned(), "mcp:admin".to_owned()];
        assert_eq!(granted_scope(&supported, None).unwrap(), supported);
        assert_eq!(
            granted_scope(&supported, Some("openid offline_access")).unwrap(),
            supported
        );
        assert_eq!(
            granted_scope(&supported, Some("mcp:admin mcp:admin")).unwrap(),
            ["mcp:admin"]
        );
        assert!(granted_scope(&supported, Some("mcp:call other")).is_err());
    }

    #[test]
    fn checks_code_verifier_syntax() {
        assert!(is_code_verifier(&"a".repeat(43)));
        assert!(is_code_verifier(&format!("{}-._~", "Z9".repeat(30))));
        assert!(!is_code_verifier(&"a".repeat(42)));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn compares_secrets() {
        assert!(secrets_equal("secret", "secret"));
        assert!(!secrets_equal("secret", "secreT"));
        assert!(!secrets_equal("secret", "secret "));
    }

    #[test]
    fn groups_contexts_by_key_without_duplicates() {
        let contexts = contexts_from([
            ("operation", "addition"),
            ("operation", "multiplication"),
            ("operation", "addition"),
        ]);
        assert_eq!(
            json!(contexts),
            json!({"operation": ["addition", "multiplication"]})
        );
    }

    #[test]
    fn validates_uris() {
        assert!(check_absolute_uri("http://127.0.0.1:8000/mcp").is_ok());
        assert!(check_absolute_uri("urn:resource1").is_ok());
        assert!(check_absolute_uri("/mcp").is_err());
        assert!(check_absolute_uri("http://127.0.0.1/cb#frag").is_err());
    }

    #[tokio::test]
    async fn refuses_non_loopback_listeners() {
        let err = DevIssuer::builder()
            .bind(([0, 0, 0, 0], 0))
            .start()
            .await
            .unwrap_err();
        assert!(matches!(err, DevIssuerError::NotLoopback(_)));
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let err = DevIssuer::builder().listener(listener).start().await.unwrap_err();
        assert!(matches!(err, DevIssuerError::NotLoopback(_)));
    }
}
