//! OpenID Connect discovery of the upstream issuer (A3).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::fetch::{self, FetchError};

/// Largest discovery document accepted.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// The parts of the issuer's OpenID Connect discovery document this crate uses.
///
/// Every endpoint comes from `{issuer}/.well-known/openid-configuration`, as A3's own reference
/// implementations do; none is hard-coded.
///
/// ```
/// use a3_mcp_auth::discovery::ProviderMetadata;
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let metadata = ProviderMetadata::discover(issuer.url()).await.unwrap();
/// assert_eq!(metadata.issuer, issuer.url());
/// assert!(metadata.jwks_uri.ends_with("/jwks"));
/// # }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_uri: String,
    /// The authorization endpoint (used by the DCR bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (used by the DCR bridge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// The RFC 7009 revocation endpoint, if the issuer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// PKCE methods the issuer supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether the issuer sends RFC 9207 `iss` in authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Discovery failed; the message says which URL and why.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer URL itself is unusable.
    #[error("issuer {0:?} is not a valid URL")]
    BadIssuer(String),
    /// The document could not be fetched or parsed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document names another issuer (RFC 8414 §3.3 / OIDC Discovery §4.3).
    #[error("the discovery document's issuer {found:?} differs from the configured issuer {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// An endpoint in the document is not https (or loopback http).
    #[error("the discovery document's {field} is unusable: {reason}")]
    BadEndpoint {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl ProviderMetadata {
    /// Fetches and checks `{issuer}/.well-known/openid-configuration` with a 10 s timeout.
    pub async fn discover(issuer: &str) -> Result<Self, DiscoveryError> {
        Self::discover_with(issuer, &fetch::http_client(Duration::from_secs(10))).await
    }

    pub(crate) async fn discover_with(
        issuer: &str,
        client: &reqwest::Client,
    ) -> Result<Self, DiscoveryError> {
        let url = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))
        .map_err(|_| DiscoveryError::BadIssuer(issuer.to_owned()))?;
        let started = std::time::Instant::now();
        let fetched = fetch::get_json(client, &url, MAX_DISCOVERY_BYTES).await;
        let outcome = if fetched.is_ok() { "ok" } else { "error" };
        crate::metrics::upstream("discovery", outcome, started);
        let (metadata, _): (ProviderMetadata, _) = fetched?;
        // Exact match, with one allowance: A3's own token validator strips a trailing '/' from
        // the discovered issuer, so a document that differs only by that slash is accepted.
        if metadata.issuer != issuer && metadata.issuer.strip_suffix('/') != Some(issuer) {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: metadata.issuer,
            });
        }
        let endpoints = [
            ("jwks_uri", Some(&metadata.jwks_uri)),
            ("authorization_endpoint", metadata.authorization_endpoint.as_ref()),
            ("token_endpoint", metadata.token_endpoint.as_ref()),
            ("revocation_endpoint", metadata.revocation_endpoint.as_ref()),
        ];
        for (field, value) in endpoints {
            if let Some(value) = value {
                let url = Url::parse(value).map_err(|e| DiscoveryError::BadEndpoint {
                    field,
                    reason: e.to_string(),
                })?;
                fetch::check_secure(&url).map_err(|e| DiscoveryError::BadEndpoint {
                    field,
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(metadata)
    }
}
