//! Configuration, read the way A3's reference servers read it: from the environment and `.env`.

use std::fmt;

use url::Url;

use crate::fetch::is_loopback_host;

/// Where A3 environments live; the issuer is `{A3_BASE}/{ISSUER_PATH}`.
pub const A3_BASE: &str = "https://a3.mekarge.com/auth";

/// The quickstart's MCP Server Resource URI.
pub const DEFAULT_RESOURCE_URI: &str = "http://127.0.0.1:8000/mcp";

/// The claim the context layer reads by default (see [`A3Config::context_claim`]).
pub const DEFAULT_CONTEXT_CLAIM: &str = "contexts";

/// Settings shared by the resource-server layers and the DCR bridge.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `ISSUER_PATH` | the A3 environment's Issuer Path; issuer = `https://a3.mekarge.com/auth/{ISSUER_PATH}` | required unless `ISSUER_URL` |
/// | `ISSUER_URL` | any OIDC issuer URL; overrides `ISSUER_PATH` (tests, staging, other servers) | — |
/// | `RESOURCE_URI` | this MCP server's resource URI, the `aud` of its tokens | `http://127.0.0.1:8000/mcp` |
/// | `CLIENT_ID`, `CLIENT_SECRET` | the predefined A3 client the DCR bridge uses | — |
/// | `CONTEXT_CLAIM` | the access-token claim holding A3 Contexts | `contexts` |
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
}

impl fmt::Debug for A3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("A3Config")
            .field("issuer", &self.issuer)
            .field("resource_uri", &self.resource_uri)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("context_claim", &self.context_claim)
            .finish()
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
}

impl fmt::Debug for A3ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("A3ConfigBuilder")
            .field("issuer_path", &self.issuer_path)
            .field("issuer_url", &self.issuer_url)
            .field("resource_uri", &self.resource_uri)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("context_claim", &self.context_claim)
            .finish()
    }
}

impl A3ConfigBuilder {
    /// A builder filled from `.env` (if present) and the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => {
                return Err(ConfigError::Invalid {
                    name: ".env",
                    reason: e.to_string(),
                });
            }
        }
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// A builder filled from `vars` (a stand-in for the environment, e.g. in tests).
    pub fn from_vars(vars: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| vars(name).filter(|v| !v.trim().is_empty());
        Ok(A3ConfigBuilder {
            issuer_path: var("ISSUER_PATH"),
            issuer_url: var("ISSUER_URL"),
            resource_uri: var("RESOURCE_URI"),
            client_id: var("CLIENT_ID"),
            client_secret: var("CLIENT_SECRET"),
            context_claim: var("CONTEXT_CLAIM"),
        })
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
        Ok(A3Config {
            issuer,
            resource_uri,
            client_id: self.client_id,
            client_secret: self.client_secret,
            context_claim,
        })
    }
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
        A3ConfigBuilder::from_vars(|k| map.get(k).cloned())?.build()
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
    fn debug_redacts_the_secret() {
        let c = build(&[
            ("ISSUER_PATH", "x"),
            ("CLIENT_ID", "c"),
            ("CLIENT_SECRET", "hunter2"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
