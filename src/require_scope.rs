//! Scope enforcement: [`RequireScopeLayer`], [`RequireScope`] and its [`ResponseFuture`] (the
//! refusal-or-inner future shared with [`OriginCheck`](crate::origin_check::OriginCheck)).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::challenge::{AuthError, Challenge};
use crate::claims::Claims;
use crate::refusal::{AuthBody, error_response};

pub use crate::refusal::ResponseFuture;

/// Layer that requires every listed scope on the verified token (all-of).
///
/// It reads the [`Claims`] that [`BearerAuthLayer`](crate::BearerAuthLayer) inserted, so it
/// goes inside that layer. A token without one of the scopes gets 403 with
/// `error="insufficient_scope"` and **all** the scopes the operation needs in `scope`, which
/// hosts use to step up ([MCP authorization, "Scope Challenge Handling"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#scope-challenge-handling)). A request with no claims at all (the layer was mounted
/// without the bearer layer) is refused with 401, never let through.
///
/// ```
/// use a3_mcp_auth::RequireScopeLayer;
/// use a3_mcp_auth::challenge::Challenge;
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
    /// Requires all of `scopes` (an item may hold several, space-separated). With no scopes,
    /// any authenticated request passes.
    pub fn new<I, T>(scopes: I, challenge: Challenge) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        // "a b" means both a and b, as in a `scope` parameter.
        let required: Arc<[String]> = scopes
            .into_iter()
            .flat_map(|s| s.into().split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect();
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
        match refusal {
            Some(e) => {
                let reason = match e {
                    AuthError::MissingToken => "unauthenticated",
                    _ => "insufficient_scope",
                };
                crate::metrics::refused("require_scope", reason);
                ResponseFuture::refused(error_response(&self.layer.challenge, &e))
            }
            None => ResponseFuture::inner(self.inner.call(req)),
        }
    }
}
