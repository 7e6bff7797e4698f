//! RFC 9728 protected-resource metadata, and the router that serves it.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{HeaderValue, header};
use serde::Serialize;
use url::Url;

use crate::challenge::Challenge;
use crate::config::ConfigError;

/// The RFC 9728 document describing this MCP server as a protected resource.
///
/// `resource` is the resource URI byte for byte (clients compare it with the URL they were
/// given). The document is served at the path-suffixed well-known URL
/// (`/.well-known/oauth-protected-resource/mcp` for `…/mcp`, RFC 9728 §3.1) and at the root
/// well-known URL, which MCP clients try next ([MCP authorization, "Protected Resource Metadata
/// Discovery Requirements"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#protected-resource-metadata-discovery-requirements)).
///
/// ```
/// use a3_mcp_auth::ProtectedResourceMetadata;
///
/// let metadata = ProtectedResourceMetadata::new("http://127.0.0.1:8000/mcp")
///     .unwrap()
///     .with_authorization_server("http://127.0.0.1:8000")
///     .with_scopes_supported(["mcp:call"]);
/// assert_eq!(
///     metadata.metadata_url(),
///     "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
/// );
/// // Serve it beside the protected routes, outside the auth layers:
/// let app: axum::Router = metadata.router();
/// # let _ = app;
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct ProtectedResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    bearer_methods_supported: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip)]
    metadata_url: String,
    #[serde(skip)]
    well_known_path: String,
}

impl ProtectedResourceMetadata {
    /// Metadata for the resource at `resource_uri` (absolute `http(s)`, no fragment).
    pub fn new(resource_uri: impl Into<String>) -> Result<Self, ConfigError> {
        let resource = resource_uri.into();
        let invalid = |reason: &str| ConfigError::Invalid {
            name: "RESOURCE_URI",
            reason: reason.into(),
        };
        let url = Url::parse(&resource).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() || url.host().is_none() {
            return Err(invalid("must be an absolute http(s) URL without a fragment"));
        }
        // The path becomes a route: nothing axum would read as a parameter or wildcard.
        let routable = |seg: &str| !seg.starts_with([':', '*']) && !seg.contains(['{', '}']);
        if !url.path().split('/').all(routable) {
            return Err(invalid(
                "the path must not contain route syntax (':x', '*x', '{x}')",
            ));
        }
        // RFC 9728 §3.1: insert the well-known segment between the host and the path.
        let path = url.path().trim_end_matches('/');
        let well_known_path = format!("/.well-known/oauth-protected-resource{path}");
        let origin = url.origin().ascii_serialization();
        Ok(ProtectedResourceMetadata {
            metadata_url: format!("{origin}{well_known_path}"),
            well_known_path,
            resource,
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bearer_methods_supported: ["header"],
            resource_name: None,
        })
    }

    /// Adds an authorization server issuer (RFC 9728 §2; the MCP spec requires at least one).
    /// With the DCR bridge this is our own issuer.
    pub fn with_authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes clients may request. Leave `offline_access` out: it is the authorization
    /// server's business, and the 2026-07-28 MCP revision says resource servers should not list it.
    pub fn with_scopes_supported<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A human-readable name for the resource.
    pub fn with_resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// The resource URI.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The authorization servers.
    pub fn authorization_servers(&self) -> &[String] {
        &self.authorization_servers
    }

    /// The scopes supported.
    pub fn scopes_supported(&self) -> &[String] {
        &self.scopes_supported
    }

    /// Where this document is served: the URL that goes into `resource_metadata`.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The challenge the auth layers send, pointing at this document and asking for
    /// `scopes_supported`.
    pub fn challenge(&self) -> Challenge {
        Challenge::new(self.metadata_url.clone()).with_scope(self.scopes_supported.join(" "))
    }

    /// A router serving the document at the path-suffixed and the root well-known URLs,
    /// readable cross-origin (browser-based MCP clients fetch it).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let body = serde_json::to_string(self).expect("metadata serializes");
        let handler = move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=3600"),
                        ),
                    ],
                    body,
                )
                    .into_response()
            }
        };
        let mut router = Router::new().route(&self.well_known_path, get(handler.clone()));
        if self.well_known_path != "/.well-known/oauth-protected-resource" {
            router = router.route("/.well-known/oauth-protected-resource", get(handler));
        }
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_url_per_rfc9728() {
        let m = ProtectedResourceMetadata::new("https://h.example/tenant/mcp/").unwrap();
        assert_eq!(
            m.metadata_url(),
            "https://h.example/.well-known/oauth-protected-resource/tenant/mcp"
        );
        let m = ProtectedResourceMetadata::new("https://h.example").unwrap();
        assert_eq!(
            m.metadata_url(),
            "https://h.example/.well-known/oauth-protected-resource"
        );
        assert!(ProtectedResourceMetadata::new("urn:x").is_err());
        assert!(ProtectedResourceMetadata::new("https://h/mcp#x").is_err());
        assert!(ProtectedResourceMetadata::new("https://h/:mcp").is_err());
        assert!(ProtectedResourceMetadata::new("https://h/*mcp").is_err());
    }

    #[test]
    fn document_shape() {
        let m = ProtectedResourceMetadata::new("http://127.0.0.1:8000/mcp")
            .unwrap()
            .with_authorization_server("http://127.0.0.1:8000")
            .with_scopes_supported(["mcp:call"]);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({
                "resource": "http://127.0.0.1:8000/mcp",
                "authorization_servers": ["http://127.0.0.1:8000"],
                "scopes_supported": ["mcp:call"],
                "bearer_methods_supported": ["header"],
            })
        );
        let h = m
            .challenge()
            .header_value(&crate::challenge::AuthError::MissingToken)
            .unwrap();
        assert_eq!(
            h,
            "Bearer resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:call\""
        );
    }
}
