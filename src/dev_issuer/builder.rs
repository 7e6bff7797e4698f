//! [`DevIssuerBuilder`]: the clients, users, resource, scopes and lifetimes of a development
//! issuer, their validation, and starting it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use super::counters::Counters;
use super::state::{Config, Shared, Store};
use super::{
    DEFAULT_CLIENT_ID, DEFAULT_REDIRECT_URI, DEFAULT_SCOPE, DEFAULT_USER_EMAIL, DEFAULT_USER_PASSWORD,
    DevIssuer, DevIssuerError,
};
use crate::config::{DEFAULT_CONTEXT_CLAIM, DEFAULT_RESOURCE_URI};
use crate::oauth::random_token;
use crate::testing::TestIssuer;

#[derive(Clone)]
pub(super) struct ClientConfig {
    pub(super) id: String,
    pub(super) secret: String,
    pub(super) redirect_uris: Vec<String>,
}

pub(super) type Contexts = BTreeMap<String, Vec<String>>;

#[derive(Clone)]
pub(super) struct UserConfig {
    pub(super) email: String,
    pub(super) password: String,
    pub(super) contexts: Contexts,
}

pub(super) fn contexts_from<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Contexts {
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

pub(super) enum Bind {
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
                secret: random_token(),
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
            super::routes(state)
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

pub(super) fn check_absolute_uri(uri: &str) -> Result<(), String> {
    let parsed = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if parsed.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    if parsed.cannot_be_a_base() && parsed.scheme() != "urn" {
        return Err(format!("{uri:?} is not a hierarchical URI"));
    }
    Ok(())
}

pub(super) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    /// The issuer's own `random_token` took a length, and the default client's secret had 192
    /// bits; it now has the shared 256.
    #[tokio::test]
    async fn the_default_client_secret_has_256_bits() {
        let dev = DevIssuer::start().await.unwrap();
        assert_eq!(dev.client_secret().len(), 43);
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
