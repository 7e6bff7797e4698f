//! Bearer-token authentication: [`BearerAuthLayer`], [`BearerAuth`] and its [`ResponseFuture`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response, header};
use http_body_util::Either;
use tower::{Layer, Service};

use crate::challenge::{AuthError, Challenge};
use crate::refusal::{AuthBody, error_response};
use crate::verifier::TokenVerifier;

/// Longest token accepted for verification. A3 tokens are a few KiB at most; anything larger is
/// refused before any parsing or crypto is spent on it.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Layer that authenticates every request with an `Authorization: Bearer` token.
///
/// The token is checked by a [`TokenVerifier`] (usually a [`JwtVerifier`](crate::JwtVerifier));
/// on success the verified [`Claims`](crate::Claims) are inserted into the request extensions
/// and the request goes on. Otherwise the inner service is never called and the client gets the
/// RFC 6750 answer: 401 with a challenge (no `error` when no credentials were sent,
/// `invalid_token` when they were bad), 400 `invalid_request` for a malformed header, 503 with
/// `Retry-After` when keys cannot be fetched. Tokens in the query string or body are ignored.
///
/// ```
/// use a3_mcp_auth::testing::TestIssuer;
/// use a3_mcp_auth::{BearerAuthLayer, Claims, ProtectedResourceMetadata};
/// use axum::{Extension, Router, routing::get};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let resource = "http://127.0.0.1:8000/mcp";
/// let verifier = issuer.verifier(resource).await;
/// let metadata = ProtectedResourceMetadata::new(resource)
///     .unwrap()
///     .with_authorization_server(issuer.url());
///
/// let app: Router = Router::new()
///     .route("/mcp", get(|Extension(claims): Extension<Claims>| async move {
///         format!("hello {}", claims.subject().unwrap_or("?"))
///     }))
///     .layer(BearerAuthLayer::new(verifier, metadata.challenge()));
/// # let _ = app;
/// # }
/// ```
#[derive(Debug)]
pub struct BearerAuthLayer<V> {
    shared: Arc<Shared<V>>,
}

/// What every clone of the layer and its services shares: one reference count per request.
#[derive(Debug)]
struct Shared<V> {
    verifier: Arc<V>,
    challenge: Challenge,
}

impl<V> Clone for BearerAuthLayer<V> {
    fn clone(&self) -> Self {
        BearerAuthLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<V: TokenVerifier> BearerAuthLayer<V> {
    /// Authenticates with `verifier`; failures are answered with `challenge`.
    pub fn new(verifier: V, challenge: Challenge) -> Self {
        Self::from_arc(Arc::new(verifier), challenge)
    }

    /// Like [`BearerAuthLayer::new`], sharing a verifier that is also used elsewhere.
    pub fn from_arc(verifier: Arc<V>, challenge: Challenge) -> Self {
        BearerAuthLayer {
            shared: Arc::new(Shared { verifier, challenge }),
        }
    }
}

impl<S, V> Layer<S> for BearerAuthLayer<V> {
    type Service = BearerAuth<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Middleware that authenticates bearer tokens. See [`BearerAuthLayer`].
#[derive(Debug)]
pub struct BearerAuth<S, V> {
    inner: S,
    shared: Arc<Shared<V>>,
}

impl<S: Clone, V> Clone for BearerAuth<S, V> {
    fn clone(&self) -> Self {
        BearerAuth {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    V: TokenVerifier,
    ReqBody: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if let Err(e) = credentials(req.headers()) {
            crate::metrics::bearer(Err(&e));
            return ResponseFuture::refused(&self.shared.challenge, &e);
        }
        // The service that was polled ready goes into the future; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::pending(async move {
            let verified = match credentials(req.headers()) {
                // The token is verified before its syntax is checked: a cache hit can only be a
                // token that verified before, so the common case skips a scan of the token, and
                // the syntax check only decides 400 or 401 for tokens that fail.
                Ok(token) => shared
                    .verifier
                    .verify(token)
                    .await
                    .map_err(|e| match b64token(token) {
                        Ok(()) => AuthError::from(e),
                        Err(malformed) => malformed,
                    }),
                Err(e) => Err(e),
            };
            crate::metrics::bearer(verified.as_ref().map(|_| ()));
            match verified {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    Ok(inner.call(req).await?.map(Either::Left))
                }
                Err(e) => Ok(error_response(&shared.challenge, &e)),
            }
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Response future of [`BearerAuth`]: ready at once for refused requests, otherwise verifying
/// the token and then running the inner service.
pub struct ResponseFuture<B, E> {
    kind: Kind<B, E>,
}

enum Kind<B, E> {
    Refused(Option<Response<AuthBody<B>>>),
    Pending(BoxFuture<Result<Response<AuthBody<B>>, E>>),
}

impl<B, E> ResponseFuture<B, E> {
    fn refused(challenge: &Challenge, error: &AuthError) -> Self {
        ResponseFuture {
            kind: Kind::Refused(Some(error_response(challenge, error))),
        }
    }

    fn pending(fut: impl Future<Output = Result<Response<AuthBody<B>>, E>> + Send + 'static) -> Self {
        ResponseFuture {
            kind: Kind::Pending(Box::pin(fut)),
        }
    }
}

// Nothing in the future is structurally pinned: the pending state is already boxed and the
// refused response is moved out, never pinned.
impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<AuthBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Refused(response) => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Pending(fut) => Poll::Ready(ready!(fut.as_mut().poll(cx))),
        }
    }
}

/// Extracts the bearer token from the `Authorization` header (RFC 6750 §2.1).
///
/// The scheme is matched case-insensitively (RFC 9110 §11.1). More than one `Authorization`
/// header, an empty token or characters outside the `b64token` syntax are malformed requests;
/// another scheme (e.g. `Basic`) counts as no bearer credentials at all.
///
/// ```
/// use a3_mcp_auth::bearer_auth::bearer_token;
/// use a3_mcp_auth::challenge::AuthError;
/// use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer eyJhbGciOi.e30.c2ln"));
/// assert_eq!(bearer_token(&headers), Ok("eyJhbGciOi.e30.c2ln"));
/// headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
/// assert_eq!(bearer_token(&headers), Err(AuthError::MissingToken));
/// ```
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let token = credentials(headers)?;
    b64token(token)?;
    Ok(token)
}

/// Everything [`bearer_token`] checks except the token's character set.
fn credentials(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = crate::headers::single(headers, header::AUTHORIZATION)
        .map_err(|_| AuthError::InvalidRequest("more than one Authorization header"))?
        .ok_or(AuthError::MissingToken)?;
    // Valid UTF-8 is enough here; anything outside visible ASCII fails `b64token` later.
    let value = std::str::from_utf8(value.as_bytes())
        .map_err(|_| AuthError::InvalidRequest("the Authorization header is not visible ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest("the bearer token is empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::InvalidToken("the token is too large".into()));
    }
    Ok(token)
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn b64token(token: &str) -> Result<(), AuthError> {
    let body = token.trim_end_matches('=');
    let allowed = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    if body.is_empty() || !body.bytes().all(allowed) {
        return Err(AuthError::InvalidRequest(
            "the bearer token is malformed (one token, b64token syntax)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(values: &[&str]) -> Result<String, AuthError> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        bearer_token(&h).map(str::to_owned)
    }

    #[test]
    fn accepts_any_scheme_case() {
        assert_eq!(parse(&["Bearer a.b.c"]).unwrap(), "a.b.c");
        assert_eq!(parse(&["bEaReR a.b.c"]).unwrap(), "a.b.c");
        assert_eq!(parse(&["Bearer abc=="]).unwrap(), "abc==");
    }

    #[test]
    fn classifies_bad_headers() {
        assert_eq!(parse(&[]), Err(AuthError::MissingToken));
        assert_eq!(parse(&["Basic dXNlcjpwYXNz"]), Err(AuthError::MissingToken));
        assert!(matches!(parse(&["Bearer"]), Err(AuthError::InvalidRequest(_))));
        assert!(matches!(parse(&["Bearer "]), Err(AuthError::InvalidRequest(_))));
        assert!(matches!(
            parse(&["Bearer a b"]),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse(&["Bearer a,b"]),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse(&["Bearer ==="]),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse(&["Bearer a", "Bearer b"]),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            parse(&[&format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1))]),
            Err(AuthError::InvalidToken(_))
        ));
    }
}
