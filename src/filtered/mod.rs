//! Enforcing the caller's [`Visibility`] where rmcp dispatches: the [`ContextFiltered`] handler
//! wrapper, and [`Caller`], a tool-function extractor for the verified claims and contexts.

#![allow(deprecated)] // `subscribe`/`unsubscribe` are deprecated in rmcp but must still be delegated.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use rmcp::model::*;
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};

use crate::context::visibility::{Access, Visibility};

mod caller;

pub use caller::{Caller, request_claims, visibility, visible_tools};

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

/// The error a read of a hidden resource gets: the MCP "resource not found" error
/// ([MCP resources, "Error Handling"](https://modelcontextprotocol.io/specification/2025-11-25/server/resources#error-handling),
/// `-32002`) exactly as rmcp's own example servers answer an unknown URI. rmcp 3.11 has no
/// resource router, so the wrapped handler writes its own unknown-URI error: answer with this
/// one, and a hidden resource looks exactly like one that does not exist. (For 2026-07-28 peers
/// rmcp turns `-32002` into `-32602` on the way out, for both alike.)
///
/// ```
/// let e = a3_mcp_auth::filtered::resource_not_found("calc://nothing");
/// assert_eq!(e.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND);
/// assert_eq!(
///     serde_json::to_value(&e).unwrap(),
///     serde_json::json!({"code": -32002, "message": "resource_not_found", "data": {"uri": "calc://nothing"}})
/// );
/// ```
pub fn resource_not_found(uri: &str) -> McpError {
    McpError::resource_not_found("resource_not_found", Some(serde_json::json!({ "uri": uri })))
}

/// What rmcp's `PromptRouter` answers for a prompt it does not know, listing only `available`.
fn prompt_not_found(name: &str, mut available: Vec<String>) -> McpError {
    available.sort();
    McpError::invalid_params(
        format!("prompt '{name}' not found"),
        Some(serde_json::json!({ "available_prompts": available })),
    )
}

/// Wraps any [`ServerHandler`] so that each request sees only the tools, prompts and resources
/// its [`Visibility`] allows; hidden items look exactly like items that do not exist.
///
/// - `tools/list`, `prompts/list`, `resources/list`, `resources/templates/list` (and
///   `resources/directory/read`) return only what the caller may see, marked
///   `cacheScope: private` (the lists depend on who asks); so is every `resources/read` result.
/// - `tools/call` of a hidden tool fails with [`tool_not_found`], the error an unknown tool gets.
/// - `prompts/get` of a hidden prompt fails with what rmcp's `PromptRouter` answers for an
///   unknown prompt (`-32602 "prompt '<name>' not found"`), whose `available_prompts` lists only
///   the prompts the caller may see; the same list is trimmed when the wrapped handler itself
///   answers so.
/// - `resources/read` (and `resources/subscribe`, `resources/unsubscribe`) of a hidden resource
///   or template instance fails with [`resource_not_found`]; answer unknown URIs with it in the
///   wrapped handler too. URIs are decided byte for byte as rmcp parsed them (see
///   [`UriTemplate`](crate::context::uri_template::UriTemplate)); contents of a read result
///   whose URI the caller may not read (sub-resources) are dropped.
/// - `completion/complete` for a hidden prompt or template answers what an unknown one gets
///   from rmcp (an empty completion), and completions of a template variable keep only values
///   naming an instance the caller may read.
/// - Visible items whose extra scopes the token lacks fail with an `insufficient_scope`
///   JSON-RPC error (`-32600`, the needed scopes in `data.scope`) — the HTTP 403 step-up
///   challenge comes from [`ToolContextLayer`](crate::ToolContextLayer) when the request carries
///   SEP-2243 headers.
/// - Resource-updated notifications: a legacy `resources/subscribe` subscription is dropped
///   (the wrapped handler gets `unsubscribe`) at the first request of the session whose caller
///   can no longer read the resource. `subscriptions/listen` (2026-07-28) accepts no resource
///   subscriptions at all: rmcp 3.11 fixes the accepted filter in
///   `accepted_subscription_filter`, which sees no request and so no caller, and its
///   `SubscriptionSink` then delivers whatever was accepted. List-changed notifications pass.
/// - A request without [`Visibility`] (no layer, or another transport) sees nothing: fail closed.
/// - Requests rmcp could not parse as a standard method in these namespaces (`Tools/Call`,
///   duplicate `name` or `uri` keys) get method-not-found instead of reaching the handler.
/// - Every other method is delegated unchanged. `get_tool` stays unfiltered: rmcp calls it
///   without a request, only to validate SEP-2243 `Mcp-Param-*` headers.
///
/// The decisions use the names and URIs rmcp itself parsed from the body, so no second JSON
/// parser can disagree with them. The wrapped handler needs no change. A handler instance (one
/// per stateful session) tracks its session's subscriptions; clones start with none.
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
#[derive(Debug, Default)]
pub struct ContextFiltered<H> {
    inner: H,
    /// The URIs this session subscribed to through the wrapper (legacy `resources/subscribe`).
    subscriptions: Mutex<BTreeSet<String>>,
}

impl<H: Clone> Clone for ContextFiltered<H> {
    fn clone(&self) -> Self {
        ContextFiltered::new(self.inner.clone())
    }
}

impl<H> ContextFiltered<H> {
    /// Wraps `inner`.
    pub fn new(inner: H) -> Self {
        ContextFiltered {
            inner,
            subscriptions: Mutex::default(),
        }
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
        format!("insufficient_scope: the token lacks a scope this request needs; required: {required}"),
        Some(serde_json::json!({"error": "insufficient_scope", "scope": required})),
    )
}

/// The caller's visibility, or none: a request that did not pass the layer sees nothing.
fn visible(context: &RequestContext<RoleServer>) -> Visibility {
    visibility(context).cloned().unwrap_or_default()
}

/// Counts one tool call, prompt get or resource read (`kind`) with its decision, and audits it
/// when refused.
fn record(
    visible: &Visibility,
    context: &RequestContext<RoleServer>,
    kind: &'static str,
    name: &str,
    access: Option<&Access>,
) {
    let outcome = match access {
        Some(Access::Allowed) => "allowed",
        Some(Access::NeedsScopes(_)) => "insufficient_scope",
        None => "hidden",
    };
    crate::metrics::item(kind, visible.policy_name(kind, name), outcome);
    if outcome != "allowed" {
        crate::audit::call_refused(request_claims(context), kind, name, outcome);
    }
}

impl<H: ServerHandler> ContextFiltered<H> {
    /// rmcp's own answer when the handler does not serve `M` (its default method bodies).
    fn unserved<M: ConstString>() -> McpError {
        McpError::method_not_found::<M>()
    }

    fn resources_capability(&self) -> Option<ResourcesCapability> {
        self.inner.get_info().capabilities.resources
    }

    /// What `resources/read` of an unknown URI gets from this handler.
    fn hidden_resource(&self, uri: &str) -> McpError {
        match self.resources_capability() {
            Some(_) => resource_not_found(uri),
            None => Self::unserved::<ReadResourceRequestMethod>(),
        }
    }

    /// What `resources/(un)subscribe` of an unknown URI gets from this handler.
    fn hidden_subscription<M: ConstString>(&self, uri: &str) -> McpError {
        match self.resources_capability() {
            Some(ResourcesCapability {
                subscribe: Some(true),
                ..
            }) => resource_not_found(uri),
            _ => Self::unserved::<M>(),
        }
    }

    /// What `prompts/get` of an unknown prompt gets, with only the visible prompts listed.
    async fn hidden_prompt(
        &self,
        name: &str,
        visible: &Visibility,
        context: RequestContext<RoleServer>,
    ) -> McpError {
        if self.inner.get_info().capabilities.prompts.is_none() {
            return Self::unserved::<GetPromptRequestMethod>();
        }
        let listed = self.inner.list_prompts(None, context).await;
        let available = listed
            .map(|r| r.prompts.into_iter().map(|p| p.name).collect())
            .unwrap_or_else(|_| Vec::new());
        prompt_not_found(
            name,
            available
                .into_iter()
                .filter(|n| visible.prompt(n).is_some())
                .collect(),
        )
    }

    /// What `completion/complete` for an unknown prompt or template gets from rmcp by default.
    fn hidden_completion(&self) -> Result<CompleteResult, McpError> {
        match self.inner.get_info().capabilities.completions {
            Some(_) => Ok(CompleteResult::default()),
            None => Err(Self::unserved::<CompleteRequestMethod>()),
        }
    }

    /// Unsubscribes the wrapped handler from each resource this session subscribed to that the
    /// caller of the current request can no longer read: the handler delivers updates through
    /// the peer on its own, so dropping the subscription is the one way to stop them.
    async fn drop_lost_subscriptions(&self, context: &RequestContext<RoleServer>) {
        let lost: Vec<String> = {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(PoisonError::into_inner);
            if subscriptions.is_empty() {
                return;
            }
            let visible = visible(context);
            let lost: Vec<String> = subscriptions
                .iter()
                .filter(|uri| visible.resource(uri).is_none())
                .cloned()
                .collect();
            for uri in &lost {
                subscriptions.remove(uri);
            }
            lost
        };
        for uri in lost {
            tracing::debug!("dropped a subscription to a resource the caller can no longer read");
            let _ = self
                .inner
                .unsubscribe(UnsubscribeRequestParams::new(uri), context.clone())
                .await;
        }
    }
}

/// Keeps only the visible prompt names in an rmcp unknown-prompt error.
fn trim_available_prompts(error: &mut McpError, visible: &Visibility) {
    if let Some(serde_json::Value::Array(names)) =
        error.data.as_mut().and_then(|d| d.get_mut("available_prompts"))
    {
        names.retain(|n| n.as_str().is_some_and(|n| visible.prompt(n).is_some()));
    }
}

/// A request method in a namespace the wrapper decides (after trimming, ignoring ASCII case).
fn filtered_namespace(method: &str) -> bool {
    let method = method.trim().to_ascii_lowercase();
    ["tools/", "prompts/", "resources/", "completion/"]
        .iter()
        .any(|ns| method.starts_with(ns))
}

// Every `ServerHandler` method of rmcp 3.11 is implemented here. When rmcp adds one, add its
// delegation too: a method left out silently falls back to rmcp's default instead of the
// wrapped handler's. Request methods first drop the subscriptions the caller lost.
impl<H: ServerHandler> ServerHandler for ContextFiltered<H> {
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let access = visible.tool(&request.name);
        record(&visible, &context, "tool", &request.name, access.as_ref());
        match access {
            None => {
                tracing::debug!("refused a call of a hidden or unknown tool");
                Err(tool_not_found())
            }
            Some(Access::NeedsScopes(required)) => Err(insufficient_scope(&required)),
            Some(Access::Allowed) => self.inner.call_tool(request, context).await,
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let mut result = self.inner.list_tools(request, context).await?;
        result.tools.retain(|tool| visible.tool(&tool.name).is_some());
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let access = visible.prompt(&request.name);
        record(&visible, &context, "prompt", &request.name, access.as_ref());
        match access {
            None => {
                tracing::debug!("refused a hidden or unknown prompt");
                Err(self.hidden_prompt(&request.name, &visible, context).await)
            }
            Some(Access::NeedsScopes(required)) => Err(insufficient_scope(&required)),
            Some(Access::Allowed) => self.inner.get_prompt(request, context).await.map_err(|mut e| {
                trim_available_prompts(&mut e, &visible);
                e
            }),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let mut result = self.inner.list_prompts(request, context).await?;
        result
            .prompts
            .retain(|prompt| visible.prompt(&prompt.name).is_some());
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let mut result = self.inner.list_resources(request, context).await?;
        result.resources.retain(|r| visible.resource(&r.uri).is_some());
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let mut result = self.inner.list_resource_templates(request, context).await?;
        result
            .resource_templates
            .retain(|t| visible.resource_template(&t.uri_template));
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let access = visible.resource(&request.uri);
        record(&visible, &context, "resource", &request.uri, access.as_ref());
        match access {
            None => {
                tracing::debug!("refused a read of a hidden or unknown resource");
                Err(self.hidden_resource(&request.uri))
            }
            Some(Access::NeedsScopes(required)) => Err(insufficient_scope(&required)),
            Some(Access::Allowed) => {
                let uri = request.uri.clone();
                let mut response = self.inner.read_resource(request, context).await?;
                if let ReadResourceResponse::Complete(result) = &mut response {
                    result.contents.retain(|c| match c {
                        ResourceContents::TextResourceContents { uri: part, .. }
                        | ResourceContents::BlobResourceContents { uri: part, .. } => {
                            *part == uri || visible.resource(part).is_some()
                        }
                        _ => false,
                    });
                    result.cache_scope = Some(CacheScope::Private);
                }
                Ok(response)
            }
        }
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        if visible.resource(&request.uri).is_none() {
            return Err(resource_not_found(&request.uri));
        }
        let mut result = self.inner.read_resource_directory(request, context).await?;
        result.resources.retain(|r| visible.resource(&r.uri).is_some());
        result.cache_scope = Some(CacheScope::Private);
        Ok(result)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.drop_lost_subscriptions(&context).await;
        match visible(&context).resource(&request.uri) {
            None => Err(self.hidden_subscription::<SubscribeRequestMethod>(&request.uri)),
            Some(Access::NeedsScopes(required)) => Err(insufficient_scope(&required)),
            Some(Access::Allowed) => {
                let uri = request.uri.clone();
                self.inner.subscribe(request, context).await?;
                self.subscriptions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(uri);
                Ok(())
            }
        }
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.drop_lost_subscriptions(&context).await;
        if visible(&context).resource(&request.uri).is_none() {
            return Err(self.hidden_subscription::<UnsubscribeRequestMethod>(&request.uri));
        }
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request.uri);
        self.inner.unsubscribe(request, context).await
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        // No request, so no caller, reaches this method: accept no resource subscriptions.
        self.inner
            .accepted_subscription_filter(requested)
            .map(|mut accepted| {
                accepted.resource_subscriptions = None;
                accepted
            })
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        self.inner.listen(context)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        let visible = visible(&context);
        let template = match &request.r#ref {
            Reference::Prompt(prompt) if visible.prompt(&prompt.name).is_some() => None,
            Reference::Resource(r) if visible.resource_template(&r.uri) => Some(r.uri.clone()),
            _ => {
                tracing::debug!("refused a completion for a hidden or unknown prompt or template");
                return self.hidden_completion();
            }
        };
        let variable = request.argument.name.clone();
        let mut result = self.inner.complete(request, context).await?;
        if let Some(template) = template {
            let completion = &mut result.completion;
            let before = completion.values.len();
            completion
                .values
                .retain(|value| visible.template_value(&template, &variable, value));
            if completion.values.len() != before {
                // A total counted with the hidden values would give them away.
                completion.total = None;
            }
        }
        Ok(result)
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.ping(context).await
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

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.set_level(request, context).await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    /// Requests rmcp could not parse as a standard method arrive here: `Tools/Call`, or a
    /// `resources/read` whose params are malformed (duplicate `uri` keys, a non-string uri). A
    /// wrapped handler that served them would bypass the policy, so any custom method in the
    /// `tools/`, `prompts/`, `resources/` or `completion/` namespace (after trimming, ignoring
    /// ASCII case) gets rmcp's own method-not-found error; the rest is delegated.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        if filtered_namespace(&request.method) {
            tracing::debug!("refused a malformed or non-canonical request in a filtered namespace");
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

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.get_task(request, context).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.update_task(request, context).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.cancel_task(request, context).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.list_skills(request, context).await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        self.drop_lost_subscriptions(&context).await;
        self.inner.get_skill(request, context).await
    }
}
