//! Scope enforcement: [`RequireScopeLayer`], [`RequireScope`] and its [`ResponseFuture`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::bearer::{AuthBody, error_response};
use crate::{AuthError, Challenge, Claims};

/// Layer that requires every listed scope on the verified token (all-of).
///
/// It reads the [`Claims`] that [`BearerAuthLayer`](crate::BearerAuthLayer) inserted, so it
/// goes inside that layer. A token without one of the scopes gets 403 with
/// `error="insufficient_scope"` and **all** the scopes the operation needs in `scope` (MCP R10,
/// R11), which hosts use to step up. A request with no claims at all (the layer was mounted
/// without the bearer layer) is refused with 401, never let through.
///
/// ```
/// use a3_mcp_auth::{Challenge, RequireScopeLayer};
/// use axum::{Router, routing::post};
///
/// let challenge = Challenge::new("http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp");
/// let app: Router = Router::new()
///     .route("/mcp", post(|| async { "called" }))
///     .layer(RequireScopeLayer::new(["mcp:call"], challenge));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct RequireScopeLayer {
    required: Arc<[String]>,
    joined: Arc<str>,
    challenge: Challenge,
}

impl RequireScopeLayer {
    /// Requires all of `scopes`.
    pub fn new<I, T>(scopes: I, challenge: Challenge) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let required: Arc<[String]> = scopes.into_iter().map(Into::into).collect();
        let joined = required.join(" ").into();
        RequireScopeLayer {
            required,
            joined,
            challenge,
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that enforces required scopes. See [`RequireScopeLayer`].
#[derive(Clone, Debug)]
pub struct RequireScope<S> {
    inner: S,
    layer: RequireScopeLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
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
        let refusal = match req.extensions().get::<Claims>() {
            None => Some(AuthError::MissingToken),
            Some(claims) if !self.layer.required.iter().all(|s| claims.has_scope(s)) => {
                Some(AuthError::InsufficientScope {
                    required: self.layer.joined.to_string(),
                })
            }
            Some(_) => None,
        };
        let kind = match refusal {
            Some(e) => Kind::Refused {
                response: Some(error_response(&self.layer.challenge, &e)),
            },
            None => Kind::Inner {
                fut: self.inner.call(req),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// Response future of [`RequireScope`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = Projection]
    enum Kind<F, B> {
        Refused { response: Option<Response<AuthBody<B>>> },
        Inner { #[pin] fut: F },
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
            Projection::Inner { fut } => fut.poll(cx).map_ok(|r| r.map(Either::Left)),
        }
    }
}
