//! What a handler reads about the caller of the request it is handling: the [`Caller`]
//! extractor, [`request_claims`] and [`visibility`], all from the HTTP request parts rmcp puts in
//! the request context.

use rmcp::ErrorData as McpError;
use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use rmcp::service::{RequestContext, RoleServer};

use crate::claims::Claims;
use crate::context::ContextSet;
use crate::context::policy::VisibleTools;
use crate::context::visibility::Visibility;

/// The [`Visibility`] of the request being handled, from the HTTP request parts rmcp puts in
/// the context; `None` outside an HTTP request that went through [`ToolContextLayer`](crate::ToolContextLayer).
///
/// ```
/// use a3_mcp_auth::filtered::visibility;
/// use rmcp::{ErrorData, RoleServer, model::*, service::RequestContext};
///
/// // In a hand-written ServerHandler method:
/// async fn read_resource(request: ReadResourceRequestParams, ctx: RequestContext<RoleServer>)
///     -> Result<ReadResourceResponse, ErrorData> {
///     let readable = visibility(&ctx).is_some_and(|v| v.resource(&request.uri).is_some());
///     tracing::debug!(readable, "reading");
///     Ok(ReadResourceResult::new(vec![]).into())
/// }
/// ```
pub fn visibility(context: &RequestContext<RoleServer>) -> Option<&Visibility> {
    http_extension(context)
}

/// [`visibility`] under the name it had when it answered for tools only.
///
/// ```
/// use a3_mcp_auth::filtered::visible_tools;
/// use rmcp::{RoleServer, service::RequestContext};
///
/// fn tool_count(ctx: &RequestContext<RoleServer>) -> usize {
///     visible_tools(ctx).map_or(0, |v| v.tools().count())
/// }
/// ```
pub fn visible_tools(context: &RequestContext<RoleServer>) -> Option<&VisibleTools> {
    visibility(context)
}

/// An extension of the HTTP request that carried this MCP request (what the layers inserted).
fn http_extension<T: Send + Sync + 'static>(context: &RequestContext<RoleServer>) -> Option<&T> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<T>()
}

/// The verified [`Claims`] of the request being handled (see [`visibility`]).
///
/// ```
/// use a3_mcp_auth::filtered::request_claims;
/// use rmcp::{RoleServer, service::RequestContext};
///
/// fn subject(ctx: &RequestContext<RoleServer>) -> Option<&str> {
///     request_claims(ctx)?.subject()
/// }
/// ```
pub fn request_claims(context: &RequestContext<RoleServer>) -> Option<&Claims> {
    http_extension(context)
}

/// Tool-function extractor for the caller's verified [`Claims`] and [`ContextSet`], as the
/// bearer and context layers stored them in the HTTP request.
///
/// A request that did not come through those layers is refused (`-32600`), never served with
/// empty claims.
///
/// ```
/// use a3_mcp_auth::Caller;
/// use rmcp::{tool, tool_router, handler::server::router::tool::ToolRouter};
///
/// #[derive(Clone)]
/// struct Server { tool_router: ToolRouter<Self> }
///
/// #[tool_router]
/// impl Server {
///     /// Who is calling.
///     #[tool]
///     async fn whoami(&self, caller: Caller) -> String {
///         caller.claims.subject().unwrap_or("?").to_owned()
///     }
/// }
/// # let _ = Server { tool_router: Server::tool_router() };
/// ```
#[derive(Clone, Debug)]
pub struct Caller {
    /// The verified claims.
    pub claims: Claims,
    /// The contexts the token carries (empty without a [`ToolContextLayer`](crate::ToolContextLayer)).
    pub contexts: ContextSet,
}

impl<C: AsRequestContext> FromContextPart<C> for Caller {
    fn from_context_part(context: &mut C) -> Result<Self, McpError> {
        let context = context.as_request_context();
        let contexts = http_extension::<ContextSet>(context).cloned().unwrap_or_default();
        match http_extension::<Claims>(context).cloned() {
            Some(claims) => Ok(Caller { claims, contexts }),
            None => Err(McpError::invalid_request("unauthenticated request", None)),
        }
    }
}
