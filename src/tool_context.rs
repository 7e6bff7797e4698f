//! Per-request visibility of tools, prompts and resources: [`ToolContextLayer`], [`ToolContext`]
//! and its [`ResponseFuture`] (shared with [`OriginCheck`](crate::origin_check::OriginCheck)).

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use crate::challenge::{AuthError, Challenge};
use crate::claims::Claims;
use crate::config::DEFAULT_CONTEXT_CLAIM;
use crate::context::ContextSet;
use crate::context::policy::ContextPolicy;
use crate::context::visibility::{Access, Visibility};
use crate::refusal::{AuthBody, error_response};

pub use crate::refusal::ResponseFuture;

/// Layer that puts each request's [`Visibility`] (the caller's contexts and scopes against a
/// [`ContextPolicy`]) and the caller's [`ContextSet`] in the request extensions.
///
/// It goes inside [`BearerAuthLayer`](crate::BearerAuthLayer) (it reads the claims) and in front
/// of an rmcp service whose handler is wrapped in [`ContextFiltered`](crate::ContextFiltered),
/// which asks the [`Visibility`] where rmcp dispatches. Nothing is decided up front: the
/// [`Visibility`] answers for the one tool, prompt or resource a request names.
///
/// The layer does not read the body: it refuses nothing on its own, except one case: a
/// 2026-07-28 request whose SEP-2243 headers (`Mcp-Method` `tools/call`, `prompts/get` or
/// `resources/read` and `Mcp-Name`, which rmcp checks against the body) name a visible item that
/// needs scopes the token lacks gets 403 `insufficient_scope` with every scope the request
/// needs, so the host can step up. Such headers can only make the layer refuse, never allow: the
/// wrapper enforces the scopes again for every request, whatever the headers said.
///
/// ```
/// use a3_mcp_auth::testing::TestIssuer;
/// use a3_mcp_auth::{BearerAuthLayer, ContextPolicy, ToolContextLayer, ToolRule};
/// use a3_mcp_auth::challenge::Challenge;
/// use a3_mcp_auth::context::visibility::Visibility;
/// use axum::{Extension, Router, routing::get};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let resource = "http://127.0.0.1:8000/mcp";
/// let challenge = Challenge::new("http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp");
/// let policy = ContextPolicy::new().tool("add", ToolRule::any_of([("operation", "addition")]));
///
/// let app = Router::new()
///     .route("/mcp", get(|Extension(v): Extension<Visibility>| async move {
///         v.tools().collect::<Vec<_>>().join(",")
///     }))
///     .layer(ToolContextLayer::new(policy, challenge.clone()).with_claim("contexts"))
///     .layer(BearerAuthLayer::new(issuer.verifier(resource).await, challenge));
///
/// let token = issuer.token(resource).claim("contexts", serde_json::json!(["operation=addition"])).sign();
/// let request = http::Request::get("/mcp")
///     .header("authorization", format!("Bearer {token}"))
///     .body(axum::body::Body::empty())
///     .unwrap();
/// let response = app.oneshot(request).await.unwrap();
/// let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
/// assert_eq!(body, "add");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ToolContextLayer {
    policy: Arc<ContextPolicy>,
    claim: Arc<str>,
    base_scopes: Arc<[String]>,
    challenge: Challenge,
}

impl ToolContextLayer {
    /// Applies `policy`, reading contexts from the claim `contexts` ([`DEFAULT_CONTEXT_CLAIM`]);
    /// step-up refusals carry `challenge`.
    pub fn new(policy: ContextPolicy, challenge: Challenge) -> Self {
        Self::from_arc(Arc::new(policy), challenge)
    }

    /// Like [`ToolContextLayer::new`], sharing a policy used elsewhere (e.g. in a start-up summary).
    pub fn from_arc(policy: Arc<ContextPolicy>, challenge: Challenge) -> Self {
        ToolContextLayer {
            policy,
            claim: DEFAULT_CONTEXT_CLAIM.into(),
            base_scopes: Arc::new([]),
            challenge,
        }
    }

    /// Reads contexts from the claim `claim` (use [`A3Config::context_claim`](crate::A3Config::context_claim)).
    pub fn with_claim(mut self, claim: impl Into<String>) -> Self {
        self.claim = claim.into().into();
        self
    }

    /// The scopes every request already needs (those of the [`RequireScopeLayer`](crate::RequireScopeLayer)),
    /// listed first in step-up challenges so that the host asks for everything at once
    /// ([MCP authorization, "Scope Challenge Handling"](https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization#scope-challenge-handling)).
    pub fn with_base_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.base_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The policy.
    pub fn policy(&self) -> &ContextPolicy {
        &self.policy
    }

    fn step_up(&self, headers: &HeaderMap, visible: &Visibility) -> Option<AuthError> {
        let decide: fn(&Visibility, &str) -> Option<Access> = match single_header(headers, "mcp-method")? {
            "tools/call" => Visibility::tool,
            "prompts/get" => Visibility::prompt,
            "resources/read" => Visibility::resource,
            _ => return None,
        };
        let name = decode_sep2243(single_header(headers, "mcp-name")?)?;
        match decide(visible, &name)? {
            Access::Allowed => None,
            Access::NeedsScopes(item_scopes) => {
                let mut all: Vec<&str> = self.base_scopes.iter().map(String::as_str).collect();
                for s in item_scopes.split(' ') {
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
                Some(AuthError::InsufficientScope {
                    required: all.join(" "),
                })
            }
        }
    }
}

/// The value of a header that must appear once; absent, repeated or non-visible-ASCII → `None`.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    crate::headers::single(headers, name).ok()??.to_str().ok()
}

/// SEP-2243 header values are bare, or `=?base64?<standard base64 of UTF-8>?=`.
fn decode_sep2243(value: &str) -> Option<String> {
    use base64::Engine;
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

impl<S> Layer<S> for ToolContextLayer {
    type Service = ToolContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ToolContext {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that puts the [`Visibility`] in the request. See [`ToolContextLayer`].
///
/// ```
/// use a3_mcp_auth::{ToolContextLayer, ToolPolicy};
/// use a3_mcp_auth::challenge::Challenge;
/// use a3_mcp_auth::tool_context::ToolContext;
/// use tower::{Layer, service_fn};
///
/// let layer = ToolContextLayer::new(ToolPolicy::new(), Challenge::new("http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"));
/// let service: ToolContext<_> = layer.layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct ToolContext<S> {
    inner: S,
    layer: ToolContextLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ToolContext<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (held, visible) = match req.extensions().get::<Claims>() {
            Some(claims) => {
                let held = ContextSet::from_claims(claims, &self.layer.claim);
                let visible = Visibility::new(self.layer.policy.clone(), held.clone(), claims);
                (held, visible)
            }
            None => (ContextSet::new(), Visibility::none()),
        };
        if let Some(e) = self.layer.step_up(req.headers(), &visible) {
            crate::metrics::refused("tool_context", "insufficient_scope");
            return ResponseFuture::refused(error_response(&self.layer.challenge, &e));
        }
        req.extensions_mut().insert(held);
        req.extensions_mut().insert(visible);
        ResponseFuture::inner(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sep2243_names_decode() {
        assert_eq!(decode_sep2243("add").as_deref(), Some("add"));
        assert_eq!(decode_sep2243("=?base64?YWRk?=").as_deref(), Some("add"));
        assert_eq!(decode_sep2243("=?base64?!!?="), None);
    }
}
