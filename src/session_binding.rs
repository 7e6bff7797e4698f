//! Binding MCP sessions to the principal that opened them: [`SessionBindingLayer`],
//! [`SessionBinding`], its [`ResponseFuture`] and [`ResponseBody`].
//!
//! rmcp's stateful Streamable HTTP sessions accept any valid token that presents a known
//! `Mcp-Session-Id`. This layer remembers who opened each session and refuses everybody else
//! ([MCP security best practices, "Session Hijacking"](https://modelcontextprotocol.io/specification/2025-11-25/basic/security_best_practices#session-hijacking)),
//! and bounds how many sessions one user, and everybody together, may hold.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::Either;
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
/// client) whose `initialize` created it, and bounds the sessions of each user.
///
/// It goes inside [`BearerAuthLayer`](crate::BearerAuthLayer), in front of a stateful rmcp
/// service. When a response carries a new `Mcp-Session-Id`, the layer records it with the
/// caller's principal. A later request (POST, GET or DELETE) that presents a session id is let
/// through only if that id was recorded for the same principal; otherwise it gets `404 Not
/// Found`, exactly what an unknown session gets, so a foreign session id is neither usable nor
/// confirmed to exist. Token refreshes keep working: the binding is to the principal, not to the
/// token.
///
/// **Bounds.** Each user (issuer and subject; a token without a subject counts as its client)
/// may hold [`with_max_sessions_per_user`](Self::with_max_sessions_per_user) sessions (default
/// 32), and all users together [`with_max_sessions`](Self::with_max_sessions) (default 10 000).
/// A request that could open one more (a POST without a session id) is refused *before* it
/// reaches rmcp, so rmcp never allocates the session: `429 Too Many Requests` when the user holds
/// their share, `503 Service Unavailable` with `Retry-After` when the server is full, each with a
/// JSON body `{"error": "too_many_sessions", "error_description": …}` that says which. A live
/// session is never forgotten to make room for another, so one user's flood cannot end another
/// user's session. Session-less POSTs in flight count against the share until answered (rmcp
/// serves 2026-07-28 requests without sessions), which bounds a user's concurrent session-less
/// requests by the same number.
///
/// **Lifetime, in step with rmcp.** A binding is forgotten when its session is deleted (a
/// successful DELETE), when rmcp answers 404 for it (rmcp dropped the session), and after
/// [`with_idle_timeout`](Self::with_idle_timeout) without a request in progress (default 300 s,
/// rmcp's `LocalSessionManager` keep-alive: set both from one value). A response in progress,
/// such as an open SSE stream, keeps its binding alive. A forgotten session is refused with 404,
/// and clients then open a new one as the MCP transport specifies.
///
/// In stateless mode no session ids exist and the layer only counts session-less requests in
/// flight.
///
/// ```
/// use a3_mcp_auth::SessionBindingLayer;
/// use axum::{Router, routing::post};
/// use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
/// use std::time::Duration;
///
/// let rmcp_sessions = LocalSessionManager::default();
/// let keep_alive = rmcp_sessions.session_config.keep_alive.unwrap_or(Duration::from_secs(300));
/// let sessions = SessionBindingLayer::new()
///     .with_max_sessions(10_000)
///     .with_max_sessions_per_user(8)
///     .with_idle_timeout(keep_alive);
/// let app: Router = Router::new()
///     .route("/mcp", post(|| async { "the rmcp service, with rmcp_sessions" }))
///     .layer(sessions.clone());
/// assert_eq!(sessions.len(), 0);
/// ```
#[derive(Clone)]
pub struct SessionBindingLayer {
    limits: Limits,
    table: Arc<Mutex<Table>>,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    max_sessions: usize,
    max_per_user: usize,
    idle: Duration,
}

impl std::fmt::Debug for SessionBindingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBindingLayer")
            .field("sessions", &self.lock().sessions.len())
            .field("max_sessions", &self.limits.max_sessions)
            .field("max_sessions_per_user", &self.limits.max_per_user)
            .field("idle", &self.limits.idle)
            .finish()
    }
}

impl Default for SessionBindingLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// Who a session counts against: the user (issuer and subject), or for tokens without a subject,
/// the client. One user's sessions through several clients share one quota, since anybody can
/// register another client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Holder {
    User { issuer: String, subject: String },
    Client { issuer: String, client_id: String },
}

impl Holder {
    fn of(p: &Principal) -> Self {
        if p.subject.is_empty() {
            Holder::Client {
                issuer: p.issuer.clone(),
                client_id: p.client_id.clone(),
            }
        } else {
            Holder::User {
                issuer: p.issuer.clone(),
                subject: p.subject.clone(),
            }
        }
    }
}

#[derive(Default)]
struct Table {
    sessions: HashMap<Arc<str>, Binding>,
    holders: HashMap<Arc<Holder>, Held>,
    /// Session-less requests in flight, over all holders.
    pending: usize,
}

struct Binding {
    principal: Arc<Principal>,
    holder: Arc<Holder>,
    last_used: Instant,
    in_flight: usize,
}

#[derive(Default)]
struct Held {
    sessions: Vec<Arc<str>>,
    pending: usize,
}

impl Binding {
    fn live(&self, now: Instant, idle: Duration) -> bool {
        self.in_flight > 0 || now.saturating_duration_since(self.last_used) < idle
    }
}

impl Table {
    fn forget(&mut self, id: &str) {
        let Some(binding) = self.sessions.remove(id) else {
            return;
        };
        if let Some(held) = self.holders.get_mut(&binding.holder) {
            held.sessions.retain(|s| &**s != id);
            if held.sessions.is_empty() && held.pending == 0 {
                self.holders.remove(&binding.holder);
            }
        }
    }

    fn forget_expired_of(&mut self, holder: &Holder, now: Instant, idle: Duration) {
        let expired: Vec<Arc<str>> = match self.holders.get(holder) {
            Some(held) => held
                .sessions
                .iter()
                .filter(|id| self.sessions.get(&***id).is_none_or(|b| !b.live(now, idle)))
                .cloned()
                .collect(),
            None => return,
        };
        for id in expired {
            self.forget(&id);
        }
    }

    fn forget_all_expired(&mut self, now: Instant, idle: Duration) {
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, b)| !b.live(now, idle))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.forget(&id);
        }
    }
}

impl SessionBindingLayer {
    /// Up to 10 000 sessions, 32 per user, each forgotten after 300 s without a request.
    pub fn new() -> Self {
        SessionBindingLayer {
            limits: Limits {
                max_sessions: 10_000,
                max_per_user: 32,
                idle: Duration::from_secs(300),
            },
            table: Arc::default(),
        }
    }

    /// Most sessions bound at once, over all users (at least 1). Configure before use: clones
    /// share the bindings but each keeps its own limits.
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.limits.max_sessions = max.max(1);
        self
    }

    /// Most sessions one user may hold (at least 1).
    pub fn with_max_sessions_per_user(mut self, max: usize) -> Self {
        self.limits.max_per_user = max.max(1);
        self
    }

    /// Forgets a session after `idle` without a request in progress. Give it the keep-alive of
    /// rmcp's session manager (`LocalSessionManager::session_config.keep_alive`, 300 s by
    /// default), so a binding lasts as long as its session.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.limits.idle = idle;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sessions are bound (expired bindings are forgotten first).
    pub fn len(&self) -> usize {
        let mut t = self.lock();
        t.forget_all_expired(Instant::now(), self.limits.idle);
        t.sessions.len()
    }

    /// Whether no session is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal a live session is bound to.
    pub fn owner(&self, session_id: &str) -> Option<Principal> {
        let t = self.lock();
        t.sessions
            .get(session_id)
            .filter(|b| b.live(Instant::now(), self.limits.idle))
            .map(|b| (*b.principal).clone())
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

/// Where the caller may not open another session.
enum NoRoom {
    Holder(usize),
    Server,
}

impl NoRoom {
    fn response<B>(&self, idle: Duration) -> Response<AuthBody<B>> {
        match self {
            NoRoom::Holder(max) => json_refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sessions",
                &format!(
                    "this user already holds {max} MCP sessions; end one (DELETE) or let one expire \
                     ({} s without requests)",
                    idle.as_secs()
                ),
            ),
            NoRoom::Server => {
                let mut r = json_refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_sessions",
                    "the server holds as many MCP sessions as it allows; retry later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                r
            }
        }
    }
}

impl SessionBindingLayer {
    /// Reserves room for one more session of `principal`'s holder, or says who is full.
    fn reserve(&self, principal: Arc<Principal>) -> Result<Reservation, NoRoom> {
        let holder = Arc::new(Holder::of(&principal));
        let now = Instant::now();
        let Limits {
            max_sessions,
            max_per_user,
            idle,
        } = self.limits;
        let mut t = self.lock();
        t.forget_expired_of(&holder, now, idle);
        let held = t.holders.get(&holder).map_or(0, |h| h.sessions.len() + h.pending);
        if held >= max_per_user {
            drop(t);
            crate::audit::session_refused(Some(&principal), "user_limit");
            return Err(NoRoom::Holder(max_per_user));
        }
        if t.sessions.len() + t.pending >= max_sessions {
            t.forget_all_expired(now, idle);
            if t.sessions.len() + t.pending >= max_sessions {
                drop(t);
                tracing::warn!(
                    max_sessions,
                    "refused an MCP session: the session limit is reached"
                );
                crate::audit::session_refused(Some(&principal), "server_full");
                return Err(NoRoom::Server);
            }
        }
        t.holders.entry(holder.clone()).or_default().pending += 1;
        t.pending += 1;
        Ok(Reservation {
            table: self.table.clone(),
            holder,
            principal,
            released: false,
        })
    }

    /// Marks a request in progress on a live session of `principal`; `None` if there is none.
    fn enter(&self, id: &str, principal: Option<&Arc<Principal>>) -> Option<InFlight> {
        let now = Instant::now();
        let mut t = self.lock();
        let known = t.sessions.contains_key(id);
        let mut live = known;
        if let Some((key, b)) = t.sessions.get_key_value(id)
            && !b.live(now, self.limits.idle)
        {
            let key = key.clone();
            t.forget(&key);
            live = false;
        } else if let Some((key, b)) = t.sessions.get_key_value(id)
            && principal.is_some_and(|p| *p == b.principal)
        {
            let key = key.clone();
            let b = t.sessions.get_mut(&key)?;
            b.in_flight += 1;
            b.last_used = now;
            return Some(InFlight {
                table: self.table.clone(),
                id: key,
            });
        }
        drop(t);
        tracing::debug!(known, "refused a session id not bound to the caller");
        if live {
            // A live session of someone else: its id was leaked or guessed.
            crate::audit::session_refused(principal.map(|p| &**p), "not_owner");
        } else {
            crate::metrics::refused("session_binding", "unknown_session");
        }
        None
    }
}

/// Room for one session being opened; released on drop unless the session was bound.
struct Reservation {
    table: Arc<Mutex<Table>>,
    holder: Arc<Holder>,
    principal: Arc<Principal>,
    released: bool,
}

impl Reservation {
    fn release(&mut self, t: &mut Table) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        t.pending -= 1;
        if let Some(held) = t.holders.get_mut(&self.holder) {
            held.pending -= 1;
            if held.sessions.is_empty() && held.pending == 0 {
                t.holders.remove(&self.holder);
            }
        }
    }

    /// The response opened session `id`: bind it (an existing binding is never replaced).
    fn bind(mut self, id: &str) {
        let table = self.table.clone();
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        self.release(&mut t);
        if t.sessions.contains_key(id) {
            return;
        }
        let id: Arc<str> = Arc::from(id);
        t.holders
            .entry(self.holder.clone())
            .or_default()
            .sessions
            .push(id.clone());
        t.sessions.insert(
            id,
            Binding {
                principal: self.principal.clone(),
                holder: self.holder.clone(),
                last_used: Instant::now(),
                in_flight: 0,
            },
        );
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.released {
            let table = self.table.clone();
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            self.release(&mut t);
        }
    }
}

/// A request in progress on a bound session; its binding does not expire until it is dropped
/// (with the response body).
struct InFlight {
    table: Arc<Mutex<Table>>,
    id: Arc<str>,
}

impl InFlight {
    fn forget(&self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(&self.id);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = t.sessions.get_mut(&self.id) {
            b.in_flight = b.in_flight.saturating_sub(1);
            b.last_used = Instant::now();
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionBinding<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<AuthBody<ResponseBody<ResBody>>>;
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
                Err(_) => return ResponseFuture::refused(not_found()),
            },
            Err(_) => return ResponseFuture::refused(not_found()),
        };
        let after = match (presented, principal) {
            (Some(id), principal) => match self.layer.enter(&id, principal.as_ref()) {
                Some(in_flight) => After::Use {
                    in_flight,
                    delete: req.method() == Method::DELETE,
                },
                None => return ResponseFuture::refused(not_found()),
            },
            // A POST without a session may open one (an `initialize`): room is reserved first.
            (None, Some(principal)) if req.method() == Method::POST => match self.layer.reserve(principal) {
                Ok(reservation) => After::Bind(reservation),
                Err(full) => return ResponseFuture::refused(full.response(self.layer.limits.idle)),
            },
            (None, _) => After::Nothing,
        };
        ResponseFuture {
            kind: Kind::Inner {
                fut: self.inner.call(req),
                after: Some(after),
            },
        }
    }
}

enum After {
    Nothing,
    Bind(Reservation),
    Use { in_flight: InFlight, delete: bool },
}

pin_project! {
    /// Response future of [`SessionBinding`]: a refusal, or the inner future followed by binding
    /// (or forgetting) the session.
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
        Refused { response: Option<Response<AuthBody<ResponseBody<B>>>> },
        Inner { #[pin] fut: F, after: Option<After> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn refused(response: Response<AuthBody<ResponseBody<B>>>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AuthBody<ResponseBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projection::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            Projection::Inner { fut, after } => {
                let response = match fut.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(r)) => r,
                };
                let status = response.status();
                let mut in_flight = None;
                match after.take() {
                    Some(After::Bind(reservation)) if status.is_success() => {
                        let id = response
                            .headers()
                            .get(MCP_SESSION_ID)
                            .and_then(|v| v.to_str().ok());
                        // Without an id no session was opened: the reservation is released.
                        if let Some(id) = id {
                            reservation.bind(id);
                        }
                    }
                    Some(After::Use { in_flight: f, delete }) => {
                        // rmcp no longer knows the session, or it was just deleted.
                        if status == StatusCode::NOT_FOUND || (delete && status.is_success()) {
                            f.forget();
                        }
                        in_flight = Some(f);
                    }
                    _ => {}
                }
                Poll::Ready(Ok(
                    response.map(|inner| Either::Left(ResponseBody { inner, in_flight }))
                ))
            }
        }
    }
}

pin_project! {
    /// The inner service's response body, keeping its session's binding alive (not expiring)
    /// until the body has been sent or dropped: an SSE stream in progress is activity.
    ///
    /// ```
    /// use a3_mcp_auth::AuthBody;
    /// use a3_mcp_auth::session_binding::ResponseBody;
    ///
    /// // What a SessionBinding in front of an axum service answers with.
    /// type Body = AuthBody<ResponseBody<axum::body::Body>>;
    /// # let _: Option<Body> = None;
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tower::ServiceExt;

    fn claims(sub: &str) -> Claims {
        Claims::from_value(json!({"iss": "i", "sub": sub, "client_id": "c"})).unwrap()
    }

    /// Stands in for rmcp: answers a POST without a session (initialize) with a fresh id, a
    /// request for a session it "dropped" (`gone`) with 404, and everything else with 200.
    #[derive(Clone, Default)]
    struct FakeRmcp {
        next: Arc<AtomicU64>,
        gone: Arc<Mutex<Vec<String>>>,
    }

    impl Service<Request<()>> for FakeRmcp {
        type Response = Response<&'static str>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<()>) -> Self::Future {
            let mut r = Response::new("ok");
            match req.headers().get(MCP_SESSION_ID) {
                None if req.method() == Method::POST => {
                    let id = format!("s-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
                    r.headers_mut()
                        .insert(MCP_SESSION_ID, HeaderValue::from_str(&id).unwrap());
                }
                Some(id) if self.gone.lock().unwrap().iter().any(|g| g == id) => {
                    *r.status_mut() = StatusCode::NOT_FOUND;
                }
                _ => {}
            }
            std::future::ready(Ok(r))
        }
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

    async fn status(svc: &SessionBinding<FakeRmcp>, req: Request<()>) -> StatusCode {
        svc.clone().oneshot(req).await.unwrap().status()
    }

    async fn open(svc: &SessionBinding<FakeRmcp>, sub: &str) -> Result<String, StatusCode> {
        let r = svc
            .clone()
            .oneshot(request(Method::POST, Some(sub), None))
            .await
            .unwrap();
        match r.headers().get(MCP_SESSION_ID) {
            Some(id) => Ok(id.to_str().unwrap().to_owned()),
            None => Err(r.status()),
        }
    }

    #[tokio::test]
    async fn binds_refuses_and_forgets() {
        let layer = SessionBindingLayer::new();
        let svc = layer.layer(FakeRmcp::default());
        let id = open(&svc, "alice").await.unwrap();
        assert_eq!(layer.owner(&id).unwrap().subject, "alice");

        assert_eq!(
            status(&svc, request(Method::POST, Some("bob"), Some(&id))).await,
            404
        );
        assert_eq!(status(&svc, request(Method::GET, None, Some(&id))).await, 404);
        assert_eq!(
            status(&svc, request(Method::POST, Some("alice"), Some("s-9"))).await,
            404
        );
        assert_eq!(
            status(&svc, request(Method::GET, Some("alice"), Some(&id))).await,
            200
        );
        assert_eq!(
            status(&svc, request(Method::DELETE, Some("bob"), Some(&id))).await,
            404
        );
        assert!(layer.owner(&id).is_some());

        assert_eq!(
            status(&svc, request(Method::DELETE, Some("alice"), Some(&id))).await,
            200
        );
        assert!(layer.owner(&id).is_none());
        assert!(layer.is_empty());
    }

    #[tokio::test]
    async fn other_client_of_same_user_is_another_principal() {
        let layer = SessionBindingLayer::new();
        let svc = layer.layer(FakeRmcp::default());
        let id = open(&svc, "alice").await.unwrap();
        let mut req = request(Method::POST, None, Some(&id));
        req.extensions_mut()
            .insert(Claims::from_value(json!({"iss": "i", "sub": "alice", "client_id": "other"})).unwrap());
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 404);
    }

    #[tokio::test]
    async fn duplicate_or_binary_session_headers_are_refused() {
        let layer = SessionBindingLayer::new();
        let svc = layer.layer(FakeRmcp::default());
        let mut req = request(Method::POST, Some("alice"), Some("a"));
        req.headers_mut()
            .append(MCP_SESSION_ID, HeaderValue::from_static("b"));
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 404);
        let mut req = request(Method::POST, Some("alice"), None);
        req.headers_mut()
            .insert(MCP_SESSION_ID, HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 404);
    }

    #[tokio::test]
    async fn a_user_at_their_share_is_refused_and_nobody_else_is_evicted() {
        let layer = SessionBindingLayer::new()
            .with_max_sessions(5)
            .with_max_sessions_per_user(3);
        let svc = layer.layer(FakeRmcp::default());
        let bob = open(&svc, "bob").await.unwrap();
        let mut alice = Vec::new();
        for _ in 0..3 {
            alice.push(open(&svc, "alice").await.unwrap());
        }
        assert_eq!(open(&svc, "alice").await, Err(StatusCode::TOO_MANY_REQUESTS));
        // The same user through another client shares the quota.
        let mut req = request(Method::POST, None, None);
        req.extensions_mut()
            .insert(Claims::from_value(json!({"iss": "i", "sub": "alice", "client_id": "other"})).unwrap());
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 429);
        assert_eq!(
            status(&svc, request(Method::GET, Some("bob"), Some(&bob))).await,
            200
        );
        // The server is full (bob 1 + alice 3 + carol 1): the next is 503, and nothing is evicted.
        open(&svc, "carol").await.unwrap();
        let r = svc
            .clone()
            .oneshot(request(Method::POST, Some("dave"), None))
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "60");
        assert_eq!(layer.len(), 5);
        // Alice ends one session: she may open another.
        let gone = alice.pop().unwrap();
        assert_eq!(
            status(&svc, request(Method::DELETE, Some("alice"), Some(&gone))).await,
            200
        );
        open(&svc, "alice").await.unwrap();
    }

    #[tokio::test]
    async fn a_session_rmcp_dropped_is_forgotten_and_frees_room() {
        let layer = SessionBindingLayer::new().with_max_sessions_per_user(1);
        let rmcp = FakeRmcp::default();
        let svc = layer.layer(rmcp.clone());
        let id = open(&svc, "alice").await.unwrap();
        assert_eq!(open(&svc, "alice").await, Err(StatusCode::TOO_MANY_REQUESTS));
        rmcp.gone.lock().unwrap().push(id.clone());
        assert_eq!(
            status(&svc, request(Method::POST, Some("alice"), Some(&id))).await,
            404
        );
        assert!(layer.owner(&id).is_none());
        open(&svc, "alice").await.unwrap();
    }

    #[tokio::test]
    async fn idle_bindings_expire_but_not_while_a_response_is_in_progress() {
        let idle = Duration::from_millis(100);
        let layer = SessionBindingLayer::new()
            .with_max_sessions_per_user(2)
            .with_idle_timeout(idle);
        let svc = layer.layer(FakeRmcp::default());
        let streaming = open(&svc, "alice").await.unwrap();
        let quiet = open(&svc, "alice").await.unwrap();
        // An open GET stream on one session: its response body is held.
        let stream = svc
            .clone()
            .oneshot(request(Method::GET, Some("alice"), Some(&streaming)))
            .await
            .unwrap();
        tokio::time::sleep(idle * 2).await;
        assert_eq!(
            status(&svc, request(Method::GET, Some("alice"), Some(&quiet))).await,
            404,
            "idle past the timeout: forgotten"
        );
        assert_eq!(
            status(&svc, request(Method::POST, Some("alice"), Some(&streaming))).await,
            200,
            "a response in progress keeps its session"
        );
        drop(stream);
        tokio::time::sleep(idle * 2).await;
        assert_eq!(
            status(&svc, request(Method::GET, Some("alice"), Some(&streaming))).await,
            404
        );
        // Both slots are free again.
        open(&svc, "alice").await.unwrap();
        open(&svc, "alice").await.unwrap();
    }

    #[tokio::test]
    async fn a_cancelled_open_releases_its_reservation() {
        let layer = SessionBindingLayer::new().with_max_sessions_per_user(1);
        /// rmcp that never answers.
        #[derive(Clone)]
        struct Hang;
        impl Service<Request<()>> for Hang {
            type Response = Response<&'static str>;
            type Error = Infallible;
            type Future = std::future::Pending<Result<Self::Response, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                std::future::pending()
            }
        }
        let hang = layer.clone().layer(Hang);
        let pending = hang.clone().oneshot(request(Method::POST, Some("alice"), None));
        let r = tokio::time::timeout(Duration::from_millis(20), pending).await;
        assert!(r.is_err(), "still in flight, then dropped");
        let svc = layer.layer(FakeRmcp::default());
        open(&svc, "alice").await.unwrap();
        assert_eq!(open(&svc, "alice").await, Err(StatusCode::TOO_MANY_REQUESTS));
    }
}
