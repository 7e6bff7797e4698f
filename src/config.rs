//! Configuration, read the way A3's reference servers read it: from the environment and `.env`.
//! This is the one place that reads them, for the layers and the DCR bridge alike.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use url::Url;

use crate::fetch::is_loopback_host;

/// Where A3 environments live; the issuer is `{A3_BASE}/{ISSUER_PATH}`.
pub const A3_BASE: &str = "https://a3.mekarge.com/auth";

/// The quickstart's MCP Server Resource URI.
pub const DEFAULT_RESOURCE_URI: &str = "http://127.0.0.1:8000/mcp";

/// The claim the context layer reads by default (see [`A3Config::context_claim`]).
pub const DEFAULT_CONTEXT_CLAIM: &str = "contexts";

/// Where the admin listener (the admin API, metrics) listens unless `ADMIN_ADDR` says otherwise:
/// loopback only.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9464";

/// The shortest `ADMIN_TOKEN` accepted: 32 characters (`openssl rand -base64 32` gives 44).
const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Settings shared by the resource-server layers and the DCR bridge.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `ISSUER_PATH` | the A3 environment's Issuer Path; issuer = `https://a3.mekarge.com/auth/{ISSUER_PATH}` | required unless `ISSUER_URL` |
/// | `ISSUER_URL` | any OIDC issuer URL; overrides `ISSUER_PATH` (tests, staging, other servers) | — |
/// | `RESOURCE_URI` | this MCP server's resource URI, the `aud` of its tokens | `http://127.0.0.1:8000/mcp` |
/// | `CLIENT_ID`, `CLIENT_SECRET` | the predefined A3 client the DCR bridge uses | — |
/// | `CONTEXT_CLAIM` | the access-token claim holding A3 Contexts | `contexts` |
/// | `PUBLIC_URL` | the DCR bridge's issuer, an origin; A3's client must allow `{PUBLIC_URL}/auth/callback` | origin of `RESOURCE_URI` |
/// | `STORE_PATH` | the bridge's embedded store (registered clients, grants) | `./data/a3-mcp-auth.redb` |
/// | `STORE_URL` | a store shared by several replicas (cargo feature `redis`): `redis://host:port/db`, `rediss://…` (TLS), `redis+sentinel://host:port[,host:port…]/master-name/db` | — |
/// | `STORE_PREFIX` | the prefix of every key in the shared store | `a3mcp:` |
/// | `STORE_TLS_CA_FILE` | PEM CA certificates the Redis server's certificate must chain to (`rediss://`) | the system's roots |
/// | `STORE_TLS_CERT_FILE`, `STORE_TLS_KEY_FILE` | a PEM client certificate chain and its key, for a Redis that asks for one | — |
/// | `TOKEN_ENCRYPTION_KEY` | base64 of 32 bytes: seals A3's tokens at rest, signs the bridge's cookies; required with `STORE_URL` | generated into `{STORE_PATH}.key` (mode 0600) |
/// | `ADMIN_ADDR` | the admin listener's address (IP and port): the admin API and metrics | `127.0.0.1:9464` |
/// | `ADMIN_TOKEN` | bearer token the admin listener requires (at least 32 characters); required when `ADMIN_ADDR` is not a loopback address | — (loopback callers only) |
/// | `CIMD_ENABLED` | hosts may identify by a Client ID Metadata Document URL (`true`/`false`) | `true` |
/// | `CIMD_ALLOWED_HOSTS` | space-separated host names whose metadata documents are accepted | any host |
/// | `CIMD_ALLOW_LOOPBACK` | development and tests only: also fetch documents from loopback addresses (`http://127.0.0.1:<port>/…` too) | `false` |
/// | `DCR_ENABLED` | hosts may register dynamically at `/register` (`true`/`false`) | `true` |
///
/// ```
/// use a3_mcp_auth::A3Config;
///
/// let config = A3Config::builder()
///     .issuer_path("alias-0123456789abcdef0123456789abcdef")
///     .build()
///     .unwrap();
/// assert_eq!(config.issuer(), "https://a3.mekarge.com/auth/alias-0123456789abcdef0123456789abcdef");
/// assert_eq!(config.resource_uri(), "http://127.0.0.1:8000/mcp");
///
/// // From the environment (and `.env`), as the quickstart's server does:
/// // let config = A3Config::from_env()?;
/// ```
#[derive(Clone)]
pub struct A3Config {
    issuer: String,
    resource_uri: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    context_claim: String,
    public_url: String,
    store_path: Option<PathBuf>,
    store_url: Option<String>,
    store_prefix: Option<String>,
    store_tls_ca_file: Option<PathBuf>,
    store_tls_cert_file: Option<PathBuf>,
    store_tls_key_file: Option<PathBuf>,
    token_encryption_key: Option<String>,
    admin_addr: SocketAddr,
    admin_token: Option<String>,
    client_registration: ClientRegistration,
}

/// How MCP hosts may identify themselves to the DCR bridge: the `CIMD_*` and `DCR_*` variables.
///
/// ```
/// use a3_mcp_auth::A3Config;
///
/// let config = A3Config::builder()
///     .issuer_path("env-1")
///     .cimd_allowed_hosts(["vscode.dev", "claude.ai"])
///     .dcr_enabled(false)
///     .build()
///     .unwrap();
/// let policy = config.client_registration();
/// assert!(policy.cimd_enabled() && !policy.dcr_enabled());
/// assert!(policy.cimd_host_allowed("vscode.dev"));
/// assert!(!policy.cimd_host_allowed("evil.example"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRegistration {
    cimd_enabled: bool,
    cimd_allowed_hosts: Option<Vec<String>>,
    cimd_allow_loopback: bool,
    dcr_enabled: bool,
}

impl Default for ClientRegistration {
    fn default() -> Self {
        ClientRegistration {
            cimd_enabled: true,
            cimd_allowed_hosts: None,
            cimd_allow_loopback: false,
            dcr_enabled: true,
        }
    }
}

impl ClientRegistration {
    /// Whether hosts may use a Client ID Metadata Document URL as their client id
    /// (`CIMD_ENABLED`, default `true`).
    pub fn cimd_enabled(&self) -> bool {
        self.cimd_enabled
    }

    /// The hosts whose metadata documents are accepted (`CIMD_ALLOWED_HOSTS`); `None`: any host.
    pub fn cimd_allowed_hosts(&self) -> Option<&[String]> {
        self.cimd_allowed_hosts.as_deref()
    }

    /// Whether the document of a client id on `host` (a host name as in the URL, lowercase
    /// ASCII) may be fetched under `CIMD_ALLOWED_HOSTS`.
    pub fn cimd_host_allowed(&self, host: &str) -> bool {
        self.cimd_allowed_hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
    }

    /// Whether documents may also be fetched from loopback addresses (`CIMD_ALLOW_LOOPBACK`,
    /// default `false`): for development and tests only.
    pub fn cimd_allow_loopback(&self) -> bool {
        self.cimd_allow_loopback
    }

    /// Whether hosts may register dynamically (`DCR_ENABLED`, default `true`).
    pub fn dcr_enabled(&self) -> bool {
        self.dcr_enabled
    }
}

impl fmt::Debug for A3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("A3Config")
            .field("issuer", &self.issuer)
            .field("resource_uri", &self.resource_uri)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("context_claim", &self.context_claim)
            .field("public_url", &self.public_url)
            .field("store_path", &self.store_path)
            .field("store_url", &self.store_url.as_deref().map(without_password))
            .field("store_prefix", &self.store_prefix)
            .field("store_tls_ca_file", &self.store_tls_ca_file)
            .field("store_tls_cert_file", &self.store_tls_cert_file)
            .field("store_tls_key_file", &self.store_tls_key_file)
            .field("token_encryption_key", &redacted(&self.token_encryption_key))
            .field("admin_addr", &self.admin_addr)
            .field("admin_token", &redacted(&self.admin_token))
            .field("client_registration", &self.client_registration)
            .finish()
    }
}

/// How `Debug` shows a secret: whether it is set, never its value.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

/// A URL as `Debug` shows it: a password in it (`redis://user:password@host`) is redacted.
fn without_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // A Sentinel URL's list of hosts: drop what precedes the last '@'.
        Err(_) => match (url.split_once("://"), url.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://<redacted>@{rest}"),
            (Some(_), None) => url.to_owned(),
            (None, _) => "<unparseable>".to_owned(),
        },
    }
}

/// A configuration value is missing or malformed. The message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required value is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A value is present but unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl A3Config {
    /// A builder with every value unset.
    pub fn builder() -> A3ConfigBuilder {
        A3ConfigBuilder::default()
    }

    /// Reads `.env` (if present; variables already set win) and the environment, then builds.
    pub fn from_env() -> Result<Self, ConfigError> {
        A3ConfigBuilder::from_env()?.build()
    }

    /// The issuer URL, exactly as tokens carry it in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// This MCP server's resource URI: the `aud` its tokens must carry.
    pub fn resource_uri(&self) -> &str {
        &self.resource_uri
    }

    /// The predefined A3 client id, if configured.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The predefined A3 client's secret, if configured. Never logged.
    pub fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_deref()
    }

    /// The claim holding A3 Contexts.
    pub fn context_claim(&self) -> &str {
        &self.context_claim
    }

    /// The DCR bridge's public URL, which is its issuer: `PUBLIC_URL`, else the origin of the
    /// resource URI. An origin (`https://mcp.example.com`, `http://127.0.0.1:8000`), without a
    /// trailing slash.
    ///
    /// ```
    /// use a3_mcp_auth::A3Config;
    /// use a3_mcp_auth::dcr::CALLBACK_PATH;
    ///
    /// let config = A3Config::builder().issuer_path("env-1").build().unwrap();
    /// // The redirect URI to register for the predefined client at A3:
    /// let callback = format!("{}{CALLBACK_PATH}", config.public_url());
    /// assert_eq!(callback, "http://127.0.0.1:8000/auth/callback");
    /// ```
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Where the bridge's embedded store lives (`STORE_PATH`), if set.
    pub fn store_path(&self) -> Option<&Path> {
        self.store_path.as_deref()
    }

    /// The URL of a store shared by several replicas (`STORE_URL`), if set. It may hold a
    /// password.
    pub fn store_url(&self) -> Option<&str> {
        self.store_url.as_deref()
    }

    /// The prefix of every key in the shared store (`STORE_PREFIX`), if set.
    pub fn store_prefix(&self) -> Option<&str> {
        self.store_prefix.as_deref()
    }

    /// The PEM CA certificates the shared store's TLS certificate must chain to
    /// (`STORE_TLS_CA_FILE`), if set; without it, the system's roots.
    pub fn store_tls_ca_file(&self) -> Option<&Path> {
        self.store_tls_ca_file.as_deref()
    }

    /// The PEM client certificate chain and private key files for the shared store's TLS
    /// (`STORE_TLS_CERT_FILE`, `STORE_TLS_KEY_FILE`), if set.
    ///
    /// ```
    /// use a3_mcp_auth::config::A3ConfigBuilder;
    ///
    /// let vars = |name: &str| match name {
    ///     "ISSUER_PATH" => Some("env-1".to_owned()),
    ///     "STORE_URL" => Some("rediss://redis.internal:6380/0".to_owned()),
    ///     "STORE_TLS_CERT_FILE" => Some("/etc/mcp/client.pem".to_owned()),
    ///     "STORE_TLS_KEY_FILE" => Some("/etc/mcp/client.key".to_owned()),
    ///     _ => None,
    /// };
    /// let config = A3ConfigBuilder::from_vars(vars).build().unwrap();
    /// let (cert, key) = config.store_tls_client_cert_files().unwrap();
    /// assert_eq!(key, std::path::Path::new("/etc/mcp/client.key"));
    /// # let _ = cert;
    /// ```
    pub fn store_tls_client_cert_files(&self) -> Option<(&Path, &Path)> {
        Some((
            self.store_tls_cert_file.as_deref()?,
            self.store_tls_key_file.as_deref()?,
        ))
    }

    /// The key that seals A3's tokens at rest and signs the bridge's cookies
    /// (`TOKEN_ENCRYPTION_KEY`, base64 of 32 bytes), if set. Never logged.
    pub fn token_encryption_key(&self) -> Option<&str> {
        self.token_encryption_key.as_deref()
    }

    /// The admin listener's address (`ADMIN_ADDR`, default [`DEFAULT_ADMIN_ADDR`]): where
    /// [`admin::serve`](crate::admin::serve()) serves the admin API and metrics.
    ///
    /// ```
    /// use a3_mcp_auth::A3Config;
    ///
    /// let config = A3Config::builder().issuer_path("env-1").build().unwrap();
    /// assert!(config.admin_addr().ip().is_loopback());
    /// assert_eq!(config.admin_addr().port(), 9464);
    /// ```
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The bearer token the admin listener requires (`ADMIN_TOKEN`), if set. Without it, only
    /// loopback callers are admitted, and `ADMIN_ADDR` must be a loopback address. Never logged.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// How hosts may identify themselves to the DCR bridge (`CIMD_*`, `DCR_ENABLED`).
    pub fn client_registration(&self) -> &ClientRegistration {
        &self.client_registration
    }
}

/// Builder for [`A3Config`]; every value can be set from code.
#[derive(Clone, Default)]
pub struct A3ConfigBuilder {
    issuer_path: Option<String>,
    issuer_url: Option<String>,
    resource_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    context_claim: Option<String>,
    public_url: Option<String>,
    store_path: Option<PathBuf>,
    store_url: Option<String>,
    store_prefix: Option<String>,
    store_tls_ca_file: Option<PathBuf>,
    store_tls_cert_file: Option<PathBuf>,
    store_tls_key_file: Option<PathBuf>,
    token_encryption_key: Option<String>,
    admin_addr: Option<String>,
    admin_token: Option<String>,
    cimd_enabled: Option<String>,
    cimd_allowed_hosts: Option<String>,
    cimd_allow_loopback: Option<String>,
    dcr_enabled: Option<String>,
}

impl fmt::Debug for A3ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("A3ConfigBuilder")
            .field("issuer_path", &self.issuer_path)
            .field("issuer_url", &self.issuer_url)
            .field("resource_uri", &self.resource_uri)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("context_claim", &self.context_claim)
            .field("public_url", &self.public_url)
            .field("store_path", &self.store_path)
            .field("store_url", &self.store_url.as_deref().map(without_password))
            .field("store_prefix", &self.store_prefix)
            .field("store_tls_ca_file", &self.store_tls_ca_file)
            .field("store_tls_cert_file", &self.store_tls_cert_file)
            .field("store_tls_key_file", &self.store_tls_key_file)
            .field("token_encryption_key", &redacted(&self.token_encryption_key))
            .field("admin_addr", &self.admin_addr)
            .field("admin_token", &redacted(&self.admin_token))
            .field("cimd_enabled", &self.cimd_enabled)
            .field("cimd_allowed_hosts", &self.cimd_allowed_hosts)
            .field("cimd_allow_loopback", &self.cimd_allow_loopback)
            .field("dcr_enabled", &self.dcr_enabled)
            .finish()
    }
}

impl A3ConfigBuilder {
    /// A builder filled from `.env` (if present) and the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            // dotenvy's parse error quotes the whole line, which may hold CLIENT_SECRET.
            Err(dotenvy::Error::LineParse(_, at)) => {
                return Err(ConfigError::Invalid {
                    name: ".env",
                    reason: format!(
                        "a line cannot be parsed (error at character {at}; the line is not shown)"
                    ),
                });
            }
            Err(e) => {
                return Err(ConfigError::Invalid {
                    name: ".env",
                    reason: e.to_string(),
                });
            }
        }
        Ok(Self::from_vars(|name| std::env::var(name).ok()))
    }

    /// A builder filled from `vars` (a stand-in for the environment, e.g. in tests). Empty
    /// values count as unset.
    ///
    /// ```
    /// use a3_mcp_auth::config::A3ConfigBuilder;
    ///
    /// let vars = |name: &str| match name {
    ///     "ISSUER_PATH" => Some("env-1".to_owned()),
    ///     "PUBLIC_URL" => Some("https://mcp.example.com/".to_owned()),
    ///     _ => None,
    /// };
    /// let config = A3ConfigBuilder::from_vars(vars).build().unwrap();
    /// assert_eq!(config.public_url(), "https://mcp.example.com");
    /// ```
    pub fn from_vars(vars: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &'static str| vars(name).filter(|v| !v.trim().is_empty());
        A3ConfigBuilder {
            issuer_path: var("ISSUER_PATH"),
            issuer_url: var("ISSUER_URL"),
            resource_uri: var("RESOURCE_URI"),
            client_id: var("CLIENT_ID"),
            client_secret: var("CLIENT_SECRET"),
            context_claim: var("CONTEXT_CLAIM"),
            public_url: var("PUBLIC_URL"),
            store_path: var("STORE_PATH").map(PathBuf::from),
            store_url: var("STORE_URL"),
            store_prefix: var("STORE_PREFIX"),
            store_tls_ca_file: var("STORE_TLS_CA_FILE").map(PathBuf::from),
            store_tls_cert_file: var("STORE_TLS_CERT_FILE").map(PathBuf::from),
            store_tls_key_file: var("STORE_TLS_KEY_FILE").map(PathBuf::from),
            token_encryption_key: var("TOKEN_ENCRYPTION_KEY"),
            admin_addr: var("ADMIN_ADDR"),
            admin_token: var("ADMIN_TOKEN"),
            cimd_enabled: var("CIMD_ENABLED"),
            cimd_allowed_hosts: var("CIMD_ALLOWED_HOSTS"),
            cimd_allow_loopback: var("CIMD_ALLOW_LOOPBACK"),
            dcr_enabled: var("DCR_ENABLED"),
        }
    }

    /// Whether an issuer (`ISSUER_PATH` or `ISSUER_URL`) has been given.
    pub fn has_issuer(&self) -> bool {
        self.issuer_path.is_some() || self.issuer_url.is_some()
    }

    /// The A3 environment's Issuer Path (`ISSUER_PATH`).
    pub fn issuer_path(mut self, path: impl Into<String>) -> Self {
        self.issuer_path = Some(path.into());
        self
    }

    /// Any OIDC issuer URL (`ISSUER_URL`); wins over the issuer path.
    pub fn issuer_url(mut self, url: impl Into<String>) -> Self {
        self.issuer_url = Some(url.into());
        self
    }

    /// This server's resource URI (`RESOURCE_URI`).
    pub fn resource_uri(mut self, uri: impl Into<String>) -> Self {
        self.resource_uri = Some(uri.into());
        self
    }

    /// The predefined A3 client (`CLIENT_ID`, `CLIENT_SECRET`).
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self.client_secret = Some(secret.into());
        self
    }

    /// The claim holding A3 Contexts (`CONTEXT_CLAIM`).
    pub fn context_claim(mut self, claim: impl Into<String>) -> Self {
        self.context_claim = Some(claim.into());
        self
    }

    /// The DCR bridge's public URL and issuer (`PUBLIC_URL`): https, or http on loopback,
    /// without a path.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// The path of the bridge's embedded store (`STORE_PATH`).
    pub fn store_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.store_path = Some(path.into());
        self
    }

    /// A store shared by several replicas (`STORE_URL`), e.g. `redis://127.0.0.1:6379/0`.
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// The prefix of every key in the shared store (`STORE_PREFIX`).
    pub fn store_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.store_prefix = Some(prefix.into());
        self
    }

    /// The CA certificates (a PEM file) that the shared store's server certificate must chain to
    /// (`STORE_TLS_CA_FILE`; `rediss://` only).
    pub fn store_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.store_tls_ca_file = Some(path.into());
        self
    }

    /// A client certificate chain and its key (PEM files) for the shared store's TLS
    /// (`STORE_TLS_CERT_FILE`, `STORE_TLS_KEY_FILE`; `rediss://` only).
    pub fn store_tls_client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.store_tls_cert_file = Some(cert_file.into());
        self.store_tls_key_file = Some(key_file.into());
        self
    }

    /// The bridge's key, base64 of 32 bytes (`TOKEN_ENCRYPTION_KEY`).
    pub fn token_encryption_key(mut self, base64_key: impl Into<String>) -> Self {
        self.token_encryption_key = Some(base64_key.into());
        self
    }

    /// The admin listener's address (`ADMIN_ADDR`), an IP address and port such as
    /// `127.0.0.1:9464`.
    pub fn admin_addr(mut self, addr: impl Into<String>) -> Self {
        self.admin_addr = Some(addr.into());
        self
    }

    /// The bearer token the admin listener requires (`ADMIN_TOKEN`).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Whether hosts may identify by a Client ID Metadata Document URL (`CIMD_ENABLED`).
    pub fn cimd_enabled(mut self, enabled: bool) -> Self {
        self.cimd_enabled = Some(enabled.to_string());
        self
    }

    /// Accept metadata documents from these hosts only (`CIMD_ALLOWED_HOSTS`, e.g.
    /// `vscode.dev claude.ai`).
    pub fn cimd_allowed_hosts<I: IntoIterator<Item = T>, T: Into<String>>(mut self, hosts: I) -> Self {
        let hosts: Vec<String> = hosts.into_iter().map(Into::into).collect();
        self.cimd_allowed_hosts = Some(hosts.join(" "));
        self
    }

    /// Development and tests only: also fetch metadata documents from loopback addresses,
    /// `http://127.0.0.1:<port>/…` and `http://[::1]:<port>/…` included (`CIMD_ALLOW_LOOPBACK`).
    pub fn cimd_allow_loopback(mut self, allow: bool) -> Self {
        self.cimd_allow_loopback = Some(allow.to_string());
        self
    }

    /// Whether hosts may register dynamically at `/register` (`DCR_ENABLED`).
    pub fn dcr_enabled(mut self, enabled: bool) -> Self {
        self.dcr_enabled = Some(enabled.to_string());
        self
    }

    /// Validates every value; the error names the first bad variable.
    pub fn build(self) -> Result<A3Config, ConfigError> {
        let issuer = match (self.issuer_url, self.issuer_path) {
            (Some(url), _) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                check_url("ISSUER_URL", &url, false)?;
                url
            }
            (None, Some(path)) => {
                let path = path.trim().trim_end_matches('/');
                let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
                if path.is_empty() || !path.chars().all(unreserved) {
                    return Err(ConfigError::Invalid {
                        name: "ISSUER_PATH",
                        reason: "expected the Issuer Path from the A3 console, e.g. alias-0123456789abcdef0123456789abcdef".into(),
                    });
                }
                format!("{A3_BASE}/{path}")
            }
            (None, None) => return Err(ConfigError::Missing("ISSUER_PATH")),
        };
        let resource_uri = self
            .resource_uri
            .unwrap_or_else(|| DEFAULT_RESOURCE_URI.to_owned());
        check_url("RESOURCE_URI", &resource_uri, true)?;
        if self.client_secret.is_some() && self.client_id.is_none() {
            return Err(ConfigError::Missing("CLIENT_ID"));
        }
        if self.client_id.is_some() && self.client_secret.is_none() {
            return Err(ConfigError::Missing("CLIENT_SECRET"));
        }
        let context_claim = self
            .context_claim
            .unwrap_or_else(|| DEFAULT_CONTEXT_CLAIM.to_owned());
        if context_claim.trim().is_empty() {
            return Err(ConfigError::Invalid {
                name: "CONTEXT_CLAIM",
                reason: "empty".into(),
            });
        }
        let public_url = match self.public_url {
            Some(url) => check_public_url(&url)?,
            None => Url::parse(&resource_uri)
                .expect("RESOURCE_URI was checked")
                .origin()
                .ascii_serialization(),
        };
        if let Some(url) = &self.store_url {
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
            // A Sentinel URL lists several hosts, which `url` does not parse; the store checks it.
            if !scheme.ends_with("+sentinel") {
                // The message of url's error names no part of the value, which may hold a password.
                Url::parse(url).map_err(|e| ConfigError::Invalid {
                    name: "STORE_URL",
                    reason: format!("not an absolute URL ({e}); expected redis://host:port/db"),
                })?;
            }
            let tls = scheme.starts_with("rediss");
            let tls_files = [
                ("STORE_TLS_CA_FILE", &self.store_tls_ca_file),
                ("STORE_TLS_CERT_FILE", &self.store_tls_cert_file),
                ("STORE_TLS_KEY_FILE", &self.store_tls_key_file),
            ];
            if let Some((name, _)) = tls_files.iter().find(|(_, f)| f.is_some() && !tls) {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "TLS files need a STORE_URL with TLS (rediss:// or rediss+sentinel://)".into(),
                });
            }
        }
        match (&self.store_tls_cert_file, &self.store_tls_key_file) {
            (Some(_), None) => return Err(ConfigError::Missing("STORE_TLS_KEY_FILE")),
            (None, Some(_)) => return Err(ConfigError::Missing("STORE_TLS_CERT_FILE")),
            _ => {}
        }
        if let Some(key) = &self.token_encryption_key
            && decode_encryption_key(key).is_none()
        {
            return Err(ConfigError::Invalid {
                name: "TOKEN_ENCRYPTION_KEY",
                reason: "must be base64 of exactly 32 bytes".into(),
            });
        }
        let admin_addr: SocketAddr = self
            .admin_addr
            .as_deref()
            .unwrap_or(DEFAULT_ADMIN_ADDR)
            .trim()
            .parse()
            .map_err(|_| ConfigError::Invalid {
                name: "ADMIN_ADDR",
                reason: "expected an IP address and port, e.g. 127.0.0.1:9464".into(),
            })?;
        match &self.admin_token {
            // The message never quotes the token.
            Some(token) if token.trim().chars().count() < MIN_ADMIN_TOKEN_LEN => {
                return Err(ConfigError::Invalid {
                    name: "ADMIN_TOKEN",
                    reason: format!(
                        "must be at least {MIN_ADMIN_TOKEN_LEN} characters, e.g. from `openssl rand -base64 32`"
                    ),
                });
            }
            // As a bearer token (RFC 6750 §2.1 b64token), or no request could present it.
            Some(token)
                if !token
                    .trim()
                    .trim_end_matches('=')
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)) =>
            {
                return Err(ConfigError::Invalid {
                    name: "ADMIN_TOKEN",
                    reason: "may contain letters, digits and - . _ ~ + / (then = padding) only".into(),
                });
            }
            Some(_) => {}
            None if !admin_addr.ip().is_loopback() => {
                return Err(ConfigError::Invalid {
                    name: "ADMIN_TOKEN",
                    reason: format!(
                        "required: ADMIN_ADDR ({admin_addr}) is not a loopback address, and the admin API \
                         revokes grants and deletes clients"
                    ),
                });
            }
            None => {}
        }
        let client_registration = ClientRegistration {
            cimd_enabled: flag("CIMD_ENABLED", self.cimd_enabled.as_deref(), true)?,
            cimd_allowed_hosts: self
                .cimd_allowed_hosts
                .as_deref()
                .map(allowed_hosts)
                .transpose()?,
            cimd_allow_loopback: flag("CIMD_ALLOW_LOOPBACK", self.cimd_allow_loopback.as_deref(), false)?,
            dcr_enabled: flag("DCR_ENABLED", self.dcr_enabled.as_deref(), true)?,
        };
        if !client_registration.cimd_enabled && !client_registration.dcr_enabled {
            return Err(ConfigError::Invalid {
                name: "DCR_ENABLED",
                reason: "with CIMD_ENABLED=false too, MCP hosts would have no way to identify themselves"
                    .into(),
            });
        }
        Ok(A3Config {
            client_registration,
            issuer,
            resource_uri,
            client_id: self.client_id,
            client_secret: self.client_secret,
            context_claim,
            public_url,
            store_path: self.store_path,
            store_url: self.store_url,
            store_prefix: self.store_prefix,
            store_tls_ca_file: self.store_tls_ca_file,
            store_tls_cert_file: self.store_tls_cert_file,
            store_tls_key_file: self.store_tls_key_file,
            token_encryption_key: self.token_encryption_key,
            admin_addr,
            admin_token: self.admin_token.map(|t| t.trim().to_owned()),
        })
    }
}

/// A boolean variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, `default` when unset.
fn flag(name: &'static str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(ConfigError::Invalid {
            name,
            reason: "expected true or false".into(),
        }),
    }
}

/// `CIMD_ALLOWED_HOSTS`: host names (no scheme, port or path), lowercase.
fn allowed_hosts(value: &str) -> Result<Vec<String>, ConfigError> {
    let hosts: Vec<String> = value
        .split_whitespace()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    for host in &hosts {
        let parsed = url::Host::parse(host).ok();
        if parsed.is_none_or(|p| p.to_string() != *host) {
            return Err(ConfigError::Invalid {
                name: "CIMD_ALLOWED_HOSTS",
                reason: format!("{host:?} is not a host name (write vscode.dev, not https://vscode.dev/)"),
            });
        }
    }
    if hosts.is_empty() {
        return Err(ConfigError::Invalid {
            name: "CIMD_ALLOWED_HOSTS",
            reason: "empty; leave it unset to accept any host, or set CIMD_ENABLED=false".into(),
        });
    }
    Ok(hosts)
}

/// `PUBLIC_URL` as an origin: https, or http on loopback, without path, query or user info.
fn check_public_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim().trim_end_matches('/');
    check_url("PUBLIC_URL", trimmed, false)?;
    let parsed = Url::parse(trimmed).expect("checked");
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(ConfigError::Invalid {
            name: "PUBLIC_URL",
            reason: "must be an origin such as http://127.0.0.1:8000, without path".into(),
        });
    }
    Ok(parsed.origin().ascii_serialization())
}

/// A 32-byte key given as base64 (standard, or URL-safe without padding), as
/// `TOKEN_ENCRYPTION_KEY` and the bridge's key file hold it.
pub(crate) fn decode_encryption_key(value: &str) -> Option<[u8; 32]> {
    let value = value.trim();
    let bytes = STANDARD
        .decode(value)
        .or_else(|_| URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')))
        .ok()?;
    bytes.try_into().ok()
}

/// An absolute `https` URL, or `http` on loopback; no fragment, no userinfo.
fn check_url(name: &'static str, value: &str, keep_exact: bool) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: reason.to_owned(),
    };
    let url = Url::parse(value).map_err(|e| invalid(&format!("not an absolute URL ({e})")))?;
    let secure = match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(host)) => is_loopback_host(&host),
        _ => false,
    };
    if !secure {
        return Err(invalid("must be https (http only on a loopback address)"));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain a fragment or user info"));
    }
    if keep_exact && value != value.trim() {
        return Err(invalid("must not have surrounding whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn build(vars: &[(&str, &str)]) -> Result<A3Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        A3ConfigBuilder::from_vars(|k| map.get(k).cloned()).build()
    }

    #[test]
    fn issuer_path_makes_a3_issuer() {
        let c = build(&[("ISSUER_PATH", "alias-00000000000000000000000000000000/")]).unwrap();
        assert_eq!(
            c.issuer(),
            "https://a3.mekarge.com/auth/alias-00000000000000000000000000000000"
        );
        assert_eq!(c.resource_uri(), DEFAULT_RESOURCE_URI);
        assert_eq!(c.context_claim(), DEFAULT_CONTEXT_CLAIM);
    }

    #[test]
    fn issuer_url_wins() {
        let c = build(&[("ISSUER_PATH", "x"), ("ISSUER_URL", "http://127.0.0.1:9000/")]).unwrap();
        assert_eq!(c.issuer(), "http://127.0.0.1:9000");
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(build(&[]).unwrap_err(), ConfigError::Missing("ISSUER_PATH"));
        let name = |r: Result<A3Config, ConfigError>| match r.unwrap_err() {
            ConfigError::Invalid { name, .. } => name,
            ConfigError::Missing(name) => name,
        };
        assert_eq!(name(build(&[("ISSUER_PATH", "a/b")])), "ISSUER_PATH");
        assert_eq!(
            name(build(&[("ISSUER_URL", "http://evil.example")])),
            "ISSUER_URL"
        );
        assert_eq!(name(build(&[("ISSUER_URL", "not a url")])), "ISSUER_URL");
        assert_eq!(
            name(build(&[
                ("ISSUER_PATH", "x"),
                ("RESOURCE_URI", "http://h.example/mcp")
            ])),
            "RESOURCE_URI"
        );
        assert_eq!(
            name(build(&[
                ("ISSUER_PATH", "x"),
                ("RESOURCE_URI", "https://h/mcp#f")
            ])),
            "RESOURCE_URI"
        );
        assert_eq!(
            name(build(&[("ISSUER_PATH", "x"), ("CLIENT_ID", "c")])),
            "CLIENT_SECRET"
        );
        assert_eq!(
            name(build(&[("ISSUER_PATH", "x"), ("CLIENT_SECRET", "s")])),
            "CLIENT_ID"
        );
    }

    #[test]
    fn the_bridge_variables() {
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("RESOURCE_URI", "https://mcp.example.com:8443/mcp"),
        ])
        .unwrap();
        assert_eq!(
            c.public_url(),
            "https://mcp.example.com:8443",
            "the resource's origin"
        );
        assert_eq!(
            (c.store_path(), c.store_url(), c.store_prefix()),
            (None, None, None)
        );
        assert_eq!(c.token_encryption_key(), None);
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("PUBLIC_URL", "http://127.0.0.1:8000/"),
            ("STORE_PATH", "/var/lib/mcp/store.redb"),
            ("STORE_URL", "redis://127.0.0.1:6379/0"),
            ("STORE_PREFIX", "mcp1:"),
            ("TOKEN_ENCRYPTION_KEY", key),
        ])
        .unwrap();
        assert_eq!(c.public_url(), "http://127.0.0.1:8000");
        assert_eq!(c.store_path(), Some(Path::new("/var/lib/mcp/store.redb")));
        assert_eq!(c.store_url(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(c.store_prefix(), Some("mcp1:"));
        assert_eq!(c.token_encryption_key(), Some(key));
    }

    #[test]
    fn bridge_errors_name_the_variable() {
        let name = |vars: &[(&str, &str)]| {
            let mut all = vec![("ISSUER_PATH", "x")];
            all.extend_from_slice(vars);
            match build(&all).unwrap_err() {
                ConfigError::Invalid { name, .. } | ConfigError::Missing(name) => name,
            }
        };
        assert_eq!(name(&[("PUBLIC_URL", "http://mcp.example.com")]), "PUBLIC_URL");
        assert_eq!(name(&[("STORE_URL", "127.0.0.1:6379")]), "STORE_URL");
        assert_eq!(
            name(&[("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=")]),
            "TOKEN_ENCRYPTION_KEY"
        );
        assert_eq!(name(&[("ADMIN_ADDR", "localhost:9464")]), "ADMIN_ADDR");
        assert_eq!(
            name(&[("ADMIN_ADDR", "0.0.0.0:9464")]),
            "ADMIN_TOKEN",
            "off loopback, the admin listener needs a token"
        );
        let ok = build(&[("ISSUER_PATH", "x"), ("ADMIN_ADDR", "[::1]:0")]).unwrap();
        assert_eq!(ok.admin_addr().to_string(), "[::1]:0");
        let tls_file = ("STORE_TLS_CA_FILE", "/etc/ca.pem");
        assert_eq!(
            name(&[("STORE_URL", "redis://h:6379/0"), tls_file]),
            "STORE_TLS_CA_FILE",
            "TLS files without TLS"
        );
        assert_eq!(
            name(&[("STORE_URL", "rediss://h/0"), ("STORE_TLS_CERT_FILE", "/c.pem")]),
            "STORE_TLS_KEY_FILE"
        );
        let ok = |vars: &[(&str, &str)]| build(&[&[("ISSUER_PATH", "x")], vars].concat()).is_ok();
        assert!(ok(&[("STORE_URL", "rediss://h/0"), tls_file]));
        assert!(ok(&[
            ("STORE_URL", "rediss+sentinel://:pw@s1,s2:26380/mymaster/0"),
            tls_file
        ]));
        let err = build(&[("ISSUER_PATH", "x"), ("TOKEN_ENCRYPTION_KEY", "not-the-key-!")]).unwrap_err();
        assert!(!err.to_string().contains("not-the-key"), "{err}");
    }

    #[test]
    fn client_registration_variables() {
        let c = build(&[("ISSUER_PATH", "x")]).unwrap();
        assert_eq!(c.client_registration(), &ClientRegistration::default());
        assert!(c.client_registration().cimd_enabled() && c.client_registration().dcr_enabled());
        assert!(!c.client_registration().cimd_allow_loopback());
        assert!(c.client_registration().cimd_host_allowed("anything.example"));
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("CIMD_ALLOWED_HOSTS", "vscode.dev  Claude.AI"),
            ("CIMD_ALLOW_LOOPBACK", "1"),
            ("DCR_ENABLED", "off"),
        ])
        .unwrap();
        let r = c.client_registration();
        assert_eq!(r.cimd_allowed_hosts().unwrap(), ["vscode.dev", "claude.ai"]);
        assert!(r.cimd_host_allowed("claude.ai") && !r.cimd_host_allowed("insiders.vscode.dev"));
        assert!(r.cimd_allow_loopback() && !r.dcr_enabled());
        let name = |vars: &[(&str, &str)]| {
            let mut all = vec![("ISSUER_PATH", "x")];
            all.extend_from_slice(vars);
            match build(&all).unwrap_err() {
                ConfigError::Invalid { name, .. } | ConfigError::Missing(name) => name,
            }
        };
        assert_eq!(name(&[("CIMD_ENABLED", "maybe")]), "CIMD_ENABLED");
        assert_eq!(name(&[("CIMD_ALLOW_LOOPBACK", "2")]), "CIMD_ALLOW_LOOPBACK");
        assert_eq!(
            name(&[("CIMD_ALLOWED_HOSTS", "https://vscode.dev/")]),
            "CIMD_ALLOWED_HOSTS"
        );
        assert_eq!(
            name(&[("CIMD_ALLOWED_HOSTS", "vscode.dev:443")]),
            "CIMD_ALLOWED_HOSTS"
        );
        assert_eq!(
            name(&[("CIMD_ENABLED", "false"), ("DCR_ENABLED", "false")]),
            "DCR_ENABLED"
        );
    }

    #[test]
    fn public_url_must_be_an_origin() {
        assert_eq!(
            check_public_url("http://127.0.0.1:8000/").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            check_public_url("https://mcp.example.com").unwrap(),
            "https://mcp.example.com"
        );
        assert!(check_public_url("http://mcp.example.com").is_err());
        assert!(check_public_url("https://mcp.example.com/base").is_err());
        assert!(check_public_url("https://mcp.example.com/?q").is_err());
        assert!(check_public_url("https://user@mcp.example.com").is_err());
        // The bridge's own check let a password without a user name through (and dropped it);
        // the configuration's URL check refuses any user info.
        assert!(check_public_url("https://:pw@mcp.example.com").is_err());
    }

    #[test]
    fn encryption_keys_are_32_bytes_of_base64_either_alphabet() {
        let standard = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let url_safe = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        assert_eq!(decode_encryption_key(standard), decode_encryption_key(url_safe));
        assert_eq!(decode_encryption_key(standard).unwrap()[31], 31);
        assert!(decode_encryption_key("c2hvcnQ=").is_none());
        assert!(decode_encryption_key("").is_none());
    }

    #[test]
    fn the_admin_listener_needs_a_token_off_loopback() {
        let token = "0123456789abcdef0123456789abcdef";
        let c = build(&[("ISSUER_PATH", "x")]).unwrap();
        assert_eq!(c.admin_addr(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(c.admin_token(), None);
        let c = build(&[("ISSUER_PATH", "x"), ("ADMIN_ADDR", "[::1]:9000")]).unwrap();
        assert_eq!(c.admin_addr(), "[::1]:9000".parse().unwrap());
        for addr in ["0.0.0.0:9464", "10.0.0.5:9464", "[::]:9464"] {
            let err = build(&[("ISSUER_PATH", "x"), ("ADMIN_ADDR", addr)]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "ADMIN_TOKEN",
                        ..
                    }
                ),
                "{addr}: {err}"
            );
            let c = build(&[("ISSUER_PATH", "x"), ("ADMIN_ADDR", addr), ("ADMIN_TOKEN", token)]).unwrap();
            assert_eq!(c.admin_token(), Some(token));
        }
        let spaced = "0123456789abcdef 0123456789abcdef";
        let err = build(&[("ISSUER_PATH", "x"), ("ADMIN_TOKEN", spaced)]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "ADMIN_TOKEN",
                ..
            }
        ));
        let base64 = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
        assert!(build(&[("ISSUER_PATH", "x"), ("ADMIN_TOKEN", base64)]).is_ok());
        let err = build(&[("ISSUER_PATH", "x"), ("ADMIN_TOKEN", "short-secret")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "ADMIN_TOKEN",
                ..
            }
        ));
        assert!(!err.to_string().contains("short-secret"), "{err}");
        for bad in ["localhost:9464", "127.0.0.1", "9464"] {
            let err = build(&[("ISSUER_PATH", "x"), ("ADMIN_ADDR", bad)]).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "ADMIN_ADDR",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("CLIENT_ID", "c"),
            ("CLIENT_SECRET", "hunter2"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("STORE_URL", "redis://mcp:hunter3@127.0.0.1:6379/0"),
            (
                "TOKEN_ENCRYPTION_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter3") && !debug.contains("AAECAwQF"),
            "{debug}"
        );
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("ADMIN_TOKEN", "hunter5-hunter5-hunter5-hunter5-"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter5"));
        assert!(debug.contains("127.0.0.1:6379"), "{debug}");
        let builder = A3ConfigBuilder::from_vars(|name| {
            (name == "STORE_URL").then(|| "redis://u:hunter4@h/0".to_owned())
        });
        assert!(!format!("{builder:?}").contains("hunter4"));
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("STORE_URL", "redis+sentinel://:hunter5@s1:26379,s2/mymaster"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter5") && debug.contains("s1:26379,s2/mymaster"),
            "{debug}"
        );
    }
}
