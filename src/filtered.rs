//! Enforcing [`VisibleTools`] where rmcp dispatches: the [`ContextFiltered`] handler wrapper, and
//! [`Caller`], a tool-function extractor for the verified claims and contexts.

#![allow(deprecated)] // `subscribe`/`unsubscribe` are deprecated in rmcp but must still be delegated.

use std::borrow::Cow;
use std::future::Future;

use rmcp::handler::server::common::{AsRequestContext, FromContextPart};
use rmcp::model::*;
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};

use crate::claims::Claims;
use crate::context::ContextSet;
use crate::context::policy::{ToolAccess, VisibleTools};

/// The error a call of a hidden tool gets: exactly what rmcp's `ToolRouter` answers for a tool
/// it does not know (`-32602`, "tool not found"), so hidden tools cannot be found by probing.
///
/// ```
/// let e = a3_mcp_auth::filtered::tool_not_found();
/// assert_eq!((e.code.0, e.message.as_ref()), (-32602, "tool not found"));
/// ```
pub fn tool_not_found() -> McpError {
    McpError::invalid_params("tool not found", None)
}

/// The [`VisibleTools`] of the request being handled, from the HTTP request parts rmcp puts in
/// the context; `None` outside an HTTP request that went through [`ToolContextLayer`](crate::ToolContextLayer).
///
/// ```
/// use a3_mcp_auth::filtered::visible_tools;
/// use rmcp::{ErrorData, RoleServer, model::*, service::RequestContext};
///
/// // In a hand-written ServerHandler method:
/// async fn list_tools(ctx: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
///     let names = visible_tools(&ctx).map(|v| v.names().count()).unwrap_or(0);
///     tracing::debug!(names, "listing tools");
///     Ok(ListToolsResult::default())
/// }
/// ```
pub fn visible_tools(context: &RequestContext<RoleServer>) -> Option<&VisibleTools> {
    http_extension(context)
}

/// An extension of the HTTP request that carried this MCP request (what the layers inserted).
fn http_extension<T: Send + Sync + 'static>(context: &RequestContext<RoleServer>) -> Option<&T> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<T>()
}

/// The verified [`Claims`] of the request being handled (see [`visible_tools`]).
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

/// Wraps any [`ServerHandler`] so that each request sees only its [`VisibleTools`].
///
/// - `tools/list` returns only the visible tools, marked `cacheScope: private` (the list depends
///   on who asks);
/// - `tools/call` of a hidden tool fails with [`tool_not_found`], the error an unknown tool gets;
///   a visible tool whose extra scopes the token lacks fails with an `insufficient_scope`
///   JSON-RPC error (`-32600`, the needed scopes in `data.scope`) — the HTTP 403 step-up
///   challenge for such calls comes from [`ToolContextLayer`](crate::ToolContextLayer) when the
///   request carries SEP-2243 headers;
/// - a request without [`VisibleTools`] (no layer, or another transport) sees no tool: fail closed;
/// - every other method is delegated unchanged. `get_tool` stays unfiltered: rmcp calls it
///   without a request, only to validate SEP-2243 `Mcp-Param-*` headers.
///
/// The decision uses the tool name rmcp itself parsed from the body, so no second JSON parser
/// can disagree with it. The wrapped handler needs no change.
///
/// ```
/// use a3_mcp_auth::ContextFiltered;
/// use rmcp::model::{ServerCapabilities, ServerConfig};
/// use rmcp::transport::streamable_http_server::{
///     StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
/// };
/// use std::sync::Arc;
///
/// #[derive(Clone)]
/// struct Calculator;
/// impl rmcp::ServerHandler for Calculator {
///     fn get_info(&self) -> ServerConfig {
///         ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
///     }
/// }
///
/// let service = StreamableHttpService::new(
///     || Ok(ContextFiltered::new(Calculator)),
///     Arc::new(NeverSessionManager::default()),
///     StreamableHttpServerConfig::default().with_legacy_session_mode(false),
/// );
/// # let _ = service;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ContextFiltered<H> {
    inner: H,
}

impl<H> ContextFiltered<H> {
    /// Wraps `inner`.
    pub fn new(inner: H) -> Self {
        ContextFiltered { inner }
    }

    /// The wrapped handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// Unwraps the handler.
    pub fn into_inner(self) -> H {
        self.inner
    }
}

fn insufficient_scope(required: &str) -> McpError {
    McpError::invalid_request(
        format!("insufficient_scope: the token lacks a scope this tool needs; required: {required}"),
        Some(serde_json::json!({"error": "insufficient_scope", "scope": required})),
    )
}

// Every `ServerHandler` method of rmcp 3.11 is implemented here. When rmcp adds one, add its
// delegation too: a method left out silently falls back to rmcp's default instead of the
// wrapped handler's.
impl<H: ServerHandler> ServerHandler for ContextFiltered<H> {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        match visible_tools(&context).and_then(|v| v.access(&request.name)) {
            None => {
                tracing::debug!("refused a call of a hidden or unknown tool");
                Err(tool_not_found())
            }
            Some(ToolAccess::NeedsScopes(required)) => Err(insufficient_scope(required)),
            Some(ToolAccess::Callable) => self.inner.call_tool(request, context).await,
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let visible = visible_tools(&context).cloned().unwrap_or_default();
        let mut result = self.inner.list_tools(request, context).await?;
        result.tools.retain(|tool| visible.is_visible(&tool.name));
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    fn ping(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.ping(context)
    }

    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.initialize(request, context)
    }

    fn negotiate_initialize(&self, request: &InitializeRequestParams) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.discover(context)
    }

    fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CompleteResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.complete(request, context)
    }

    fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.set_level(request, context)
    }

    fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, McpError>> + MaybeSendFuture + '_ {
        self.inner.get_prompt(request, context)
    }

    fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListPromptsResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.list_prompts(request, context)
    }

    fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourcesResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.list_resources(request, context)
    }

    fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListResourceTemplatesResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.list_resource_templates(request, context)
    }

    fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceResponse, McpError>> + MaybeSendFuture + '_ {
        self.inner.read_resource(request, context)
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.listen(context)
    }

    fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.subscribe(request, context)
    }

    fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.unsubscribe(request, context)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    /// Requests rmcp could not parse as a standard method arrive here: `Tools/Call`, or a
    /// `tools/call` whose params are malformed (duplicate `name` keys, a non-string name). A
    /// wrapped handler that served them would bypass the policy, so any custom method in the
    /// `tools/` namespace (after trimming, ignoring ASCII case) gets rmcp's own method-not-found
    /// error; the rest is delegated.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if request.method.trim().to_ascii_lowercase().starts_with("tools/") {
            tracing::debug!("refused a malformed or non-canonical tools request");
            return Err(McpError::new(ErrorCode::METHOD_NOT_FOUND, request.method, None));
        }
        self.inner.on_custom_request(request, context).await
    }

    fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_cancelled(notification, context)
    }

    fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_progress(notification, context)
    }

    fn on_initialized(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_initialized(context)
    }

    fn on_roots_list_changed(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_roots_list_changed(context)
    }

    fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_custom_notification(notification, context)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetTaskResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.get_task(request, context)
    }

    fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.update_task(request, context)
    }

    fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.cancel_task(request, context)
    }

    fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ListSkillsResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.list_skills(request, context)
    }

    fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetSkillResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.get_skill(request, context)
    }

    fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<ReadResourceDirectoryResult, McpError>> + MaybeSendFuture + '_ {
        self.inner.read_resource_directory(request, context)
    }
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
