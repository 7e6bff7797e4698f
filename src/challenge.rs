//! RFC 6750 §3 / RFC 9728 §5.1 challenges and the error responses that carry them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// What a protected resource says in its `WWW-Authenticate` challenges: where its
/// protected-resource metadata lives (RFC 9728 §5.1) and which scopes a client should request.
///
/// Build it from [`ProtectedResourceMetadata::challenge`](crate::ProtectedResourceMetadata::challenge)
/// so the URL always points at the document the server really serves.
///
/// ```
/// use a3_mcp_auth::challenge::{AuthError, Challenge};
///
/// let challenge = Challenge::new(
///     "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp",
/// )
/// .with_scope("mcp:call");
/// let response = challenge.response(&AuthError::MissingToken);
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     "Bearer resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:call\""
/// );
/// ```
#[derive(Clone, Debug)]
pub struct Challenge {
    resource_metadata: Arc<str>,
    scope: Option<Arc<str>>,
}

impl Challenge {
    /// A challenge pointing at the protected-resource metadata at `resource_metadata`.
    pub fn new(resource_metadata: impl Into<String>) -> Self {
        Challenge {
            resource_metadata: sanitize(&resource_metadata.into()).into(),
            scope: None,
        }
    }

    /// The scopes (space-separated) a client should request to use the resource; sent with
    /// the 401 challenges so that hosts ask for them on the first authorization (RFC 6750 §3;
    /// the MCP authorization spec recommends it).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        let scope: String = scope.into();
        let scope = sanitize(&scope);
        self.scope = (!scope.is_empty()).then(|| scope.into());
        self
    }

    /// The `resource_metadata` URL.
    pub fn resource_metadata(&self) -> &str {
        &self.resource_metadata
    }

    /// The `WWW-Authenticate` value for `error`, or `None` for errors that carry no challenge.
    pub fn header_value(&self, error: &AuthError) -> Option<HeaderValue> {
        let mut v = String::with_capacity(160);
        v.push_str("Bearer ");
        let mut param = |name: &str, value: &str| {
            if !v.ends_with(' ') {
                v.push_str(", ");
            }
            v.push_str(name);
            v.push_str("=\"");
            v.push_str(value);
            v.push('"');
        };
        if let Some(code) = error.code() {
            param("error", code);
            param("error_description", &sanitize(&error.description()));
        }
        param("resource_metadata", &self.resource_metadata);
        let scope = match error {
            AuthError::InsufficientScope { required } => Some(sanitize(required)),
            AuthError::Unavailable { .. } => return None,
            _ => self.scope.as_deref().map(Cow::Borrowed),
        };
        if let Some(scope) = scope {
            param("scope", &scope);
        }
        // Every part was reduced to visible ASCII above, so this cannot fail.
        HeaderValue::from_str(&v).ok()
    }

    /// The complete error response for `error`: status, challenge and a small JSON body
    /// (`{"error": …, "error_description": …}`).
    pub fn response(&self, error: &AuthError) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": error.code().unwrap_or("unauthorized"),
            "error_description": error.description(),
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = error.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self.header_value(error) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let AuthError::Unavailable { retry_after } = error {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        response
    }
}

/// Why a request was refused before it reached the MCP service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// No bearer credentials (401, challenge without an error code, RFC 6750 §3.1).
    MissingToken,
    /// Malformed `Authorization` header, or more than one credential (400 `invalid_request`).
    InvalidRequest(&'static str),
    /// The token is invalid, expired, or for another resource (401 `invalid_token`).
    InvalidToken(Cow<'static, str>),
    /// The token lacks scopes the request needs (403 `insufficient_scope`; [MCP authorization,
    /// "Scope Challenge Handling"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#scope-challenge-handling)).
    InsufficientScope {
        /// Every scope the operation needs, space-separated, so the host asks for all of them at
        /// once.
        required: String,
    },
    /// The token could not be checked now (503 with `Retry-After`).
    Unavailable {
        /// When to retry.
        retry_after: Duration,
    },
}

impl AuthError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 error code, if the challenge carries one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingToken | AuthError::Unavailable { .. } => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// A human-readable description; never contains the token.
    pub fn description(&self) -> Cow<'static, str> {
        match self {
            AuthError::MissingToken => "bearer token required".into(),
            AuthError::InvalidRequest(why) => Cow::Borrowed(why),
            AuthError::InvalidToken(why) => why.clone(),
            AuthError::InsufficientScope { required } => {
                format!("the token lacks a required scope; required: {required}").into()
            }
            AuthError::Unavailable { .. } => {
                "the authorization server's keys are unavailable; retry later".into()
            }
        }
    }
}

impl From<crate::verifier::VerifyError> for AuthError {
    fn from(e: crate::verifier::VerifyError) -> Self {
        match e {
            crate::verifier::VerifyError::Invalid(why) => AuthError::InvalidToken(why),
            crate::verifier::VerifyError::Unrecognized => {
                AuthError::InvalidToken("not a token this server issued or accepts".into())
            }
            crate::verifier::VerifyError::Unavailable { retry_after } => {
                AuthError::Unavailable { retry_after }
            }
        }
    }
}

/// Keeps only the characters RFC 6750 allows in a quoted auth-param
/// (`%x20-21 / %x23-5B / %x5D-7E`), so no value can break out of its quotes.
fn sanitize(s: &str) -> Cow<'_, str> {
    let ok = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    if s.chars().all(ok) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| ok(c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(c: &Challenge, e: &AuthError) -> String {
        c.header_value(e).unwrap().to_str().unwrap().to_owned()
    }

    #[test]
    fn formats_each_kind() {
        let c = Challenge::new("https://h/.well-known/oauth-protected-resource/mcp").with_scope("mcp:call");
        assert_eq!(
            header(&c, &AuthError::InvalidToken("expired".into())),
            "Bearer error=\"invalid_token\", error_description=\"expired\", \
             resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:call\""
        );
        assert_eq!(
            header(
                &c,
                &AuthError::InsufficientScope {
                    required: "mcp:call mcp:admin".into()
                }
            ),
            "Bearer error=\"insufficient_scope\", error_description=\"the token lacks a required scope; \
             required: mcp:call mcp:admin\", resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\", \
             scope=\"mcp:call mcp:admin\""
        );
        assert!(
            c.header_value(&AuthError::Unavailable {
                retry_after: Duration::from_secs(3)
            })
            .is_none()
        );
    }

    #[test]
    fn quotes_cannot_be_broken() {
        let c = Challenge::new("u\"x\\y");
        let h = header(&c, &AuthError::InvalidToken("a\"b\\c\nd".into()));
        assert!(h.contains("error_description=\"abcd\""), "{h}");
        assert!(h.contains("resource_metadata=\"uxy\""), "{h}");
    }

    #[test]
    fn unavailable_has_retry_after() {
        let c = Challenge::new("u");
        let r = c.response(&AuthError::Unavailable {
            retry_after: Duration::from_secs(7),
        });
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
    }
}
