//! The verified claims of an access token, as the layers and MCP handlers see them.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};

/// The claims of a verified access token.
///
/// [`BearerAuth`](crate::bearer_auth::BearerAuth) inserts this into the request extensions once the token has
/// been verified; [`RequireScope`](crate::require_scope::RequireScope), the context layer and rmcp handlers read
/// it from there. It is cheap to clone (the raw claim map is shared).
///
/// ```
/// use a3_mcp_auth::Claims;
/// use serde_json::json;
///
/// let claims = Claims::from_value(json!({
///     "iss": "https://a3.mekarge.com/auth/env-1",
///     "sub": "johndoe",
///     "client_id": "proxy-client",
///     "scope": "mcp:call openid",
///     "exp": 4_000_000_000u64,
/// }))
/// .unwrap();
/// assert_eq!(claims.subject(), Some("johndoe"));
/// assert!(claims.has_scope("mcp:call"));
/// assert_eq!(claims.get("client_id").and_then(|v| v.as_str()), Some("proxy-client"));
/// ```
#[derive(Clone, Debug)]
pub struct Claims {
    // One allocation shared by every clone: the layers clone claims on each request.
    inner: Arc<Inner>,
    /// The client that presented the token, when it is not the one the claims name (see
    /// [`Claims::with_client_id`]).
    presenting_client: Option<Arc<str>>,
}

#[derive(Debug)]
struct Inner {
    issuer: Option<String>,
    subject: Option<String>,
    client_id: Option<String>,
    scopes: BTreeSet<String>,
    expires_at: Option<u64>,
    raw: Map<String, Value>,
}

/// The claim set of a token was not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("token claims are not a JSON object")]
pub struct NotAnObject;

impl Claims {
    /// Builds claims from a decoded claim object.
    ///
    /// Scopes come from A3's space-delimited `scope` string and, for other issuers, from an
    /// `scp` array (or string). Values of the wrong type are ignored rather than guessed at.
    pub fn from_map(raw: Map<String, Value>) -> Self {
        let str_claim = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_owned);
        let mut scopes = BTreeSet::new();
        for name in ["scope", "scp"] {
            match raw.get(name) {
                Some(Value::String(s)) => {
                    scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
                }
                Some(Value::Array(items)) => scopes.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| !s.is_empty() && !s.contains(' '))
                        .map(str::to_owned),
                ),
                _ => {}
            }
        }
        let inner = Inner {
            issuer: str_claim("iss"),
            subject: str_claim("sub"),
            // A3 and RFC 9068 use `client_id`; some issuers only set `azp`.
            client_id: str_claim("client_id").or_else(|| str_claim("azp")),
            scopes,
            expires_at: raw.get("exp").and_then(Value::as_u64),
            raw,
        };
        Claims {
            inner: Arc::new(inner),
            presenting_client: None,
        }
    }

    /// Builds claims from a JSON value, which must be an object.
    pub fn from_value(value: Value) -> Result<Self, NotAnObject> {
        match value {
            Value::Object(map) => Ok(Self::from_map(map)),
            _ => Err(NotAnObject),
        }
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// The `sub` claim: the end user (or, for client credentials, the client).
    pub fn subject(&self) -> Option<&str> {
        self.inner.subject.as_deref()
    }

    /// The OAuth client the token was issued to (`client_id`, else `azp`), or the one set by
    /// [`with_client_id`](Self::with_client_id).
    pub fn client_id(&self) -> Option<&str> {
        self.presenting_client
            .as_deref()
            .or(self.inner.client_id.as_deref())
    }

    /// These claims as the token of another client stands for them: an authorization server in
    /// front of their issuer gave its own token to its client `client_id`, and resolves it to
    /// them. The DCR bridge does this: every A3 token behind its tokens names the bridge's one
    /// A3 client, so without this all hosts of a user would be one principal. Afterwards
    /// [`client_id`](Self::client_id) and [`principal`](Self::principal) name `client_id`;
    /// [`get`](Self::get) and [`raw`](Self::raw) still give the claims as issued.
    ///
    /// ```
    /// use a3_mcp_auth::Claims;
    /// use serde_json::json;
    ///
    /// let a3 = Claims::from_value(json!({"iss": "https://a3.test", "sub": "jane", "client_id": "bridge"})).unwrap();
    /// let host_a = a3.clone().with_client_id("registered-host-a");
    /// let host_b = a3.clone().with_client_id("registered-host-b");
    /// assert_ne!(host_a.principal(), host_b.principal(), "an MCP session of one host is not the other's");
    /// assert_eq!(host_a.client_id(), Some("registered-host-a"));
    /// assert_eq!(host_a.get("client_id"), Some(&json!("bridge")));
    /// ```
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.presenting_client = Some(Arc::from(client_id.into()));
        self
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.inner.scopes
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.scopes.contains(scope)
    }

    /// The `exp` claim, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> Option<u64> {
        self.inner.expires_at
    }

    /// Any claim by name, as it appeared in the token.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.inner.raw.get(name)
    }

    /// The whole claim set, as it appeared in the token.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.inner.raw
    }

    /// The principal a session belongs to: issuer, subject and client
    /// ([`client_id`](Self::client_id)) together.
    ///
    /// Two tokens of the same user through different clients are different principals, so a
    /// session opened by one client cannot be taken over by another.
    pub fn principal(&self) -> Principal {
        Principal {
            issuer: self.inner.issuer.clone().unwrap_or_default(),
            subject: self.inner.subject.clone().unwrap_or_default(),
            client_id: self.client_id().unwrap_or_default().to_owned(),
        }
    }
}

/// Who a request acts for: `(iss, sub, client_id)`. See [`Claims::principal`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// The client.
    pub client_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scope_string_and_scp_array() {
        let c = Claims::from_value(json!({"scope": "a  b", "scp": ["c", 1, "d e", ""]})).unwrap();
        let got: Vec<_> = c.scopes().iter().map(String::as_str).collect();
        assert_eq!(got, ["a", "b", "c"]);
    }

    #[test]
    fn wrong_types_are_ignored() {
        let c = Claims::from_value(json!({"sub": 5, "scope": {"x": 1}, "exp": "soon"})).unwrap();
        assert_eq!(c.subject(), None);
        assert!(c.scopes().is_empty());
        assert_eq!(c.expires_at(), None);
        assert!(Claims::from_value(json!([1, 2])).is_err());
    }

    #[test]
    fn the_presenting_client_replaces_the_claimed_one_in_the_principal_only() {
        let a3 = Claims::from_value(json!({"iss": "i", "sub": "s", "client_id": "bridge"})).unwrap();
        let host = a3.clone().with_client_id("host");
        assert_eq!(host.principal().client_id, "host");
        assert_eq!(a3.principal().client_id, "bridge");
        assert_eq!((host.issuer(), host.subject()), (Some("i"), Some("s")));
        assert_eq!(host.raw(), a3.raw());
    }

    #[test]
    fn client_id_falls_back_to_azp() {
        let c = Claims::from_value(json!({"azp": "web"})).unwrap();
        assert_eq!(c.client_id(), Some("web"));
    }
}
