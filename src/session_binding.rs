//! Binding MCP sessions to the principal that opened them: [`SessionBindingLayer`],
//! [`SessionBinding`] and its [`ResponseFuture`].
//!
//! rmcp's stateful Streamable HTTP sessions accept any valid token that presents a known
//! `Mcp-Session-Id`. This layer remembers who opened each session and refuses everybody else
//! ([MCP security best practices, "Session Hijacking"](https://modelcontextprotocol.io/specification/2025-11-25/basic/security_best_practices#session-hijacking)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;
use moka::sync::Cache;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::claims::{Claims, Principal};
use crate::refusal::{AuthBody, json_refusal};

/// The header that carries the MCP session id.
///
/// ```
/// let name = http::HeaderName::from_static(a3_mcp_auth::session_binding::MCP_SESSION_ID);
/// assert_eq!(name, "mcp-session-id");
/// ```
pub const MCP_SESSION_ID: &str = "mcp-session-id";

/// Layer that binds each MCP session to the principal ([`Claims::principal`]: issuer, subject,
/// client) whose `initialize` created it.
///
/// It goes inside [`BearerAuthLayer`](crate::BearerAuthLayer), in front of a stateful rmcp
/// service. When a response carries a new `Mcp-Session-Id`, the layer records it with the
/// caller's principal. A later request (POST, GET or DELETE) that presents a session id is let
/// through only if that id was recorded for the same principal; otherwise it gets `404 Not
/// Found`, exactly what an unknown session gets, so a foreign session id is neither usable nor
/// confirmed to exist. A successful DELETE forgets the session. The map is bounded
/// ([`SessionBindingLayer::with_max_sessions`]) and entries expire after an idle time
/// ([`SessionBindingLayer::with_idle_timeout`]); a forgotten session is refused with 404, and
/// clients then open a new one as the MCP transport specifies. Token refreshes keep working:
/// the binding is to the principal, not to the token.
///
/// In stateless mode no session ids exist and the layer passes every request through.
///
/// ```
/// use a3_mcp_auth::SessionBindingLayer;
/// use axum::{Router, routing::post};
/// use std::time::Duration;
///
/// let sessions = SessionBindingLayer::new()
///     .with_max_sessions(10_000)
///     .with_idle_timeout(Duration::from_secs(3600));
/// let app: Router = Router::new()
///     .route("/mcp", post(|| async { "the rmcp service" }))
///     .layer(sessions.clone());
/// assert_eq!(sessions.len(), 0);
/// ```
#[derive(Clone)]
pub struct SessionBindingLayer {
    sessions: Cache<Arc<str>, Arc<Principal>>,
    max_sessions: u64,
    idle: Duration,
}

impl std::fmt::Debug for SessionBindingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBindingLayer")
            .field("sessions", &self.sessions.entry_count())
            .field("max_sessions", &self.max_sessions)
            .field("idle", &self.idle)
            .finish()
    }
}

impl Default for SessionBindingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionBindingLayer {
    /// Up to 10 000 sessions, each forgotten after 24 hours without a request.
    pub fn new() -> Self {
        Self::build(10_000, Duration::from_secs(24 * 3600))
    }

    fn build(max_sessions: u64, idle: Duration) -> Self {
        let sessions = Cache::builder()
            .max_capacity(max_sessions)
            .time_to_idle(idle)
            .build();
        SessionBindingLayer {
            sessions,
            max_sessions,
            idle,
        }
    }

    /// Remembers at most `max` sessions (the least recently used are forgotten first).
    /// Starts from an empty map: call it before the layer is used.
    pub fn with_max_sessions(self, max: u64) -> Self {
        Self::build(max, self.idle)
    }

    /// Forgets a session after `idle` without requests. Keep it longer than rmcp's own session
    /// keep-alive. Starts from an empty map: call it before the layer is used.
    pub fn with_idle_timeout(self, idle: Duration) -> Self {
        Self::build(self.max_sessions, idle)
    }

    /// How many sessions are bound (approximate: expired entries may still be counted).
    pub fn len(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }

    /// Whether no session is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal a session is bound to.
    pub fn owner(&self, session_id: &str) -> Option<Principal> {
        self.sessions.get(session_id).map(|p| (*p).clone())
    }
}

impl<S> Layer<S> for SessionBindingLayer {
    type Service = SessionBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that binds sessions to principals. See [`SessionBindingLayer`].
///
/// ```
/// use a3_mcp_auth::SessionBindingLayer;
/// use a3_mcp_auth::session_binding::SessionBinding;
/// use tower::{Layer, service_fn};
///
/// let service: SessionBinding<_> = SessionBindingLayer::new().layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct SessionBinding<S> {
    inner: S,
    layer: SessionBindingLayer,
}

fn not_found<B>() -> Response<AuthBody<B>> {
    json_refusal(
        StatusCode::NOT_FOUND,
        "session_not_found",
        "no such session for this caller",
    )
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionBinding<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let principal = req.extensions().get::<Claims>().map(|c| Arc::new(c.principal()));
        let presented = match crate::headers::single(req.headers(), MCP_SESSION_ID) {
            Ok(None) => None,
            Ok(Some(id)) => match id.to_str() {
                Ok(id) => Some(id.to_owned()),
                Err(_) => return ResponseFuture::refused(),
            },
            Err(_) => return ResponseFuture::refused(),
        };
        let after = match presented {
            Some(id) => {
                let owner = self.layer.sessions.get(id.as_str());
                match (&owner, &principal) {
                    (Some(owner), Some(caller)) if owner == caller => {}
                    _ => {
                        tracing::debug!(
                            known = owner.is_some(),
                            "refused a session id not bound to the caller"
                        );
                        return ResponseFuture::refused();
                    }
                }
                if req.method() == Method::DELETE {
                    After::Forget(id.into())
                } else {
                    After::Nothing
                }
            }
            None => match principal {
                Some(p) => After::Record(p),
                None => After::Nothing,
            },
        };
        ResponseFuture {
            kind: Kind::Inner {
                fut: self.inner.call(req),
                after: Some(after),
                sessions: self.layer.sessions.clone(),
            },
        }
    }
}

enum After {
    Nothing,
    Record(Arc<Principal>),
    Forget(Arc<str>),
}

pin_project! {
    /// Response future of [`SessionBinding`]: a 404 refusal, or the inner future followed by
    /// recording (or forgetting) the session.
    ///
    /// ```
    /// use a3_mcp_auth::session_binding::ResponseFuture;
    /// use std::convert::Infallible;
    /// use std::future::Ready;
    ///
    /// type Fut = ResponseFuture<Ready<Result<http::Response<()>, Infallible>>, ()>;
    /// # let _: Option<Fut> = None;
    /// ```
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B> {
        Refused { response: Option<Response<AuthBody<B>>> },
        Inner { #[pin] fut: F, after: Option<After>, sessions: Cache<Arc<str>, Arc<Principal>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn refused() -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(not_found()),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AuthBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Projection::Inner { fut, after, sessions } => {
                let response = match fut.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(r)) => r,
                };
                let ok = response.status().is_success();
                match after.take() {
                    Some(After::Record(principal)) if ok => {
                        let id = response
                            .headers()
                            .get(MCP_SESSION_ID)
                            .and_then(|v| v.to_str().ok());
                        if let Some(id) = id {
                            // A fresh id from rmcp; never overwrite an existing binding.
                            let _ = sessions.entry(Arc::from(id)).or_insert(principal);
                        }
                    }
                    Some(After::Forget(id)) if ok => sessions.invalidate(&id),
                    _ => {}
                }
                Poll::Ready(Ok(response.map(Either::Left)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn claims(sub: &str) -> Claims {
        Claims::from_value(json!({"iss": "i", "sub": sub, "client_id": "c"})).unwrap()
    }

    /// Stands in for rmcp: answers initialize (no session id) with a fresh id.
    async fn fake_rmcp(req: Request<()>) -> Result<Response<&'static str>, Infallible> {
        let mut r = Response::new("ok");
        if !req.headers().contains_key(MCP_SESSION_ID) && req.method() == Method::POST {
            r.headers_mut()
                .insert(MCP_SESSION_ID, HeaderValue::from_static("s-1"));
        }
        Ok(r)
    }

    fn request(method: Method, sub: Option<&str>, session: Option<&str>) -> Request<()> {
        let mut req = Request::builder().method(method).body(()).unwrap();
        if let Some(sub) = sub {
            req.extensions_mut().insert(claims(sub));
        }
        if let Some(id) = session {
            req.headers_mut()
                .insert(MCP_SESSION_ID, HeaderValue::from_str(id).unwrap());
        }
        req
    }

    #[tokio::test]
    async fn binds_refuses_and_forgets() {
        let layer = SessionBindingLayer::new();
        let svc = layer.layer(tower::service_fn(fake_rmcp));
        let status = |r: Response<AuthBody<&'static str>>| r.status();

        let r = svc
            .clone()
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        assert_eq!(r.headers()[MCP_SESSION_ID], "s-1");
        assert_eq!(layer.owner("s-1").unwrap().subject, "alice");

        let bob = svc
            .clone()
            .oneshot(request(Method::POST, Some("bob"), Some("s-1")))
            .await
            .unwrap();
        assert_eq!(status(bob), 404);
        let anon = svc
            .clone()
            .oneshot(request(Method::GET, None, Some("s-1")))
            .await
            .unwrap();
        assert_eq!(status(anon), 404);
        let unknown = svc
            .clone()
            .oneshot(request(Method::POST, Some("alice"), Some("s-2")))
            .await
            .unwrap();
        assert_eq!(status(unknown), 404);
        let alice = svc
            .clone()
            .oneshot(request(Method::GET, Some("alice"), Some("s-1")))
            .await
            .unwrap();
        assert_eq!(status(alice), 200);
        let bob_delete = svc
            .clone()
            .oneshot(request(Method::DELETE, Some("bob"), Some("s-1")))
            .await
            .unwrap();
        assert_eq!(status(bob_delete), 404);
        assert!(layer.owner("s-1").is_some());

        let delete = svc
            .clone()
            .oneshot(request(Method::DELETE, Some("alice"), Some("s-1")))
            .await
            .unwrap();
        assert_eq!(status(delete), 200);
        assert!(layer.owner("s-1").is_none());
    }

    #[tokio::test]
    async fn other_client_of_same_user_is_another_principal() {
        let layer = SessionBindingLayer::new();
        let svc = layer.layer(tower::service_fn(fake_rmcp));
        svc.clone()
            .oneshot(request(Method::POST, Some("alice"), None))
            .await
            .unwrap();
        let mut req = request(Method::POST, None, Some("s-1"));
        req.extensions_mut()
            .insert(Claims::from_value(json!({"iss": "i", "sub": "alice", "client_id": "other"})).unwrap());
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 404);
    }

    #[tokio::test]
    async fn duplicate_or_binary_session_headers_are_refused() {
        let layer = SessionBindingLayer::new();
        let svc = layer.layer(tower::service_fn(fake_rmcp));
        let mut req = request(Method::POST, Some("alice"), Some("a"));
        req.headers_mut()
            .append(MCP_SESSION_ID, HeaderValue::from_static("b"));
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 404);
        let mut req = request(Method::POST, Some("alice"), None);
        req.headers_mut()
            .insert(MCP_SESSION_ID, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 404);
    }
}
