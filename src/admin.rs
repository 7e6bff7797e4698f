//! The admin listener: routes for the operator (the DCR bridge's admin API, metrics) on their
//! own address, `ADMIN_ADDR`, never on the public listener. [`serve`](serve()) binds it;
//! [`AdminAuthLayer`], [`AdminAuth`] and its [`ResponseFuture`] admit only the operator.
//!
//! | `ADMIN_TOKEN` | who is admitted |
//! |---|---|
//! | unset (then `ADMIN_ADDR` must be a loopback address) | requests from a loopback peer naming a loopback `Host` |
//! | set | requests with `Authorization: Bearer <ADMIN_TOKEN>`, from anywhere |
//!
//! Either way a request carrying `Origin` or `Sec-Fetch-Site` (which browsers add) is refused: no
//! web page, on any port of this machine or after a DNS rebinding, can drive the admin API
//! through the operator's browser. Use `curl` or a metrics scraper.
//!
//! ```no_run
//! use a3_mcp_auth::A3Config;
//! use a3_mcp_auth::dcr::DcrBridge;
//! use std::future::IntoFuture;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = A3Config::from_env()?; // ADMIN_ADDR (default 127.0.0.1:9464), ADMIN_TOKEN
//! let bridge = DcrBridge::builder(&config).build().await?;
//! let admin = a3_mcp_auth::admin::serve(&config, bridge.admin_router()).await?;
//! println!("admin API on http://{}", admin.local_addr()?);
//! tokio::spawn(admin.into_future());
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::bearer_auth::bearer_token;
use crate::config::A3Config;
use crate::origin_check::OriginCheckLayer;
use crate::refusal::{AuthBody, json_refusal};
use crate::serve::Serve;

pub use crate::refusal::ResponseFuture;

/// Connections the admin listener keeps open at once: an operator and a metrics scraper need few.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Binds the admin listener at `ADMIN_ADDR` ([`A3Config::admin_addr`]) and serves `routes`
/// there, every one of them behind [`AdminAuthLayer::from_config`], with the connection bounds
/// of [`crate::serve()`] (at most 64 connections). The configuration already refused a
/// non-loopback `ADMIN_ADDR` without `ADMIN_TOKEN`. Await the returned [`Serve`] (or spawn it);
/// [`Serve::local_addr`] tells the port when `ADMIN_ADDR` asked for port 0.
///
/// ```
/// use a3_mcp_auth::A3Config;
/// use axum::{Router, routing::get};
/// use std::future::IntoFuture;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let config = A3Config::builder().issuer_path("env-1").admin_addr("127.0.0.1:0").build().unwrap();
/// let routes = Router::new().route("/status", get(|| async { "ok" }));
/// let admin = a3_mcp_auth::admin::serve(&config, routes).await.unwrap();
/// let url = format!("http://{}/status", admin.local_addr().unwrap());
/// tokio::spawn(admin.into_future());
/// assert_eq!(reqwest::get(&url).await.unwrap().text().await.unwrap(), "ok");
/// # }
/// ```
pub async fn serve(config: &A3Config, routes: Router) -> io::Result<Serve> {
    let listener = tokio::net::TcpListener::bind(config.admin_addr()).await?;
    Ok(
        crate::serve(listener, routes.layer(AdminAuthLayer::from_config(config)))
            .max_connections(MAX_ADMIN_CONNECTIONS),
    )
}

/// Layer that admits only the operator to admin routes (see the [module docs](self)): with a
/// token, requests bearing it; without, loopback peers naming a loopback `Host`; never a request
/// from a browser. Refusals are JSON: 403 `forbidden`, or 401 `unauthorized` with
/// `WWW-Authenticate: Bearer realm="admin"` when the token is missing or wrong.
///
/// The peer address comes from the `ConnectInfo<SocketAddr>` that [`crate::serve()`] puts on
/// every request; a request without it is refused unless a token is configured.
///
/// ```
/// use a3_mcp_auth::admin::AdminAuthLayer;
/// use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
/// use std::net::SocketAddr;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = "0123456789abcdef0123456789abcdef";
/// let app = Router::new()
///     .route("/admin/status", get(|| async { "ok" }))
///     .layer(AdminAuthLayer::new().with_token(token));
/// let request = |bearer: &str| {
///     let mut r = http::Request::get("/admin/status")
///         .header("host", "admin.internal:9464")
///         .header("authorization", format!("Bearer {bearer}"))
///         .body(Body::empty())
///         .unwrap();
///     r.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 50000))));
///     r
/// };
/// assert_eq!(app.clone().oneshot(request(token)).await.unwrap().status(), 200);
/// assert_eq!(app.oneshot(request("guessed")).await.unwrap().status(), 401);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct AdminAuthLayer {
    token: Option<Arc<Token>>,
}

/// The admin token; `Debug` never shows it.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl AdminAuthLayer {
    /// Admits loopback callers only (no token).
    pub fn new() -> Self {
        AdminAuthLayer::default()
    }

    /// With `ADMIN_TOKEN` from `config` when it is set, else loopback callers only.
    pub fn from_config(config: &A3Config) -> Self {
        match config.admin_token() {
            Some(token) => Self::new().with_token(token),
            None => Self::new(),
        }
    }

    /// Requires `Authorization: Bearer <token>` (compared in constant time) and admits it from
    /// any address.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::new(Token(token.into())));
        self
    }

    /// Why a request with `headers`, from `peer`, is refused, if it is.
    fn refusal<B>(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Option<Response<AuthBody<B>>> {
        if headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site") {
            return Some(json_refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the admin API does not answer browsers",
            ));
        }
        match &self.token {
            Some(token) => {
                if bearer_token(headers).is_ok_and(|presented| crate::oauth::ct_eq(presented, &token.0)) {
                    return None;
                }
                let mut refusal = json_refusal(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the admin API needs Authorization: Bearer <ADMIN_TOKEN>",
                );
                refusal.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"admin\""),
                );
                Some(refusal)
            }
            None => {
                if !peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
                    return Some(json_refusal(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "without ADMIN_TOKEN the admin API answers loopback callers only",
                    ));
                }
                // A loopback peer naming another host is a browser after a DNS rebinding.
                OriginCheckLayer::new()
                    .check(headers, None)
                    .err()
                    .map(|(status, reason)| json_refusal(status, "forbidden", reason))
            }
        }
    }
}

impl<S> Layer<S> for AdminAuthLayer {
    type Service = AdminAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that admits only the operator. See [`AdminAuthLayer`].
///
/// ```
/// use a3_mcp_auth::admin::{AdminAuth, AdminAuthLayer};
/// use tower::{Layer, service_fn};
///
/// let service: AdminAuth<_> = AdminAuthLayer::new().layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct AdminAuth<S> {
    inner: S,
    layer: AdminAuthLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AdminAuth<S>
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
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        match self.layer.refusal(req.headers(), peer) {
            None => ResponseFuture::inner(self.inner.call(req)),
            Some(refusal) => {
                tracing::warn!(status = %refusal.status(), peer = ?peer, "refused an admin request");
                ResponseFuture::refused(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn status(layer: &AdminAuthLayer, headers: &[(&str, &str)], peer: Option<[u8; 4]>) -> u16 {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let peer = peer.map(|ip| SocketAddr::from((ip, 40000)));
        layer.refusal::<()>(&h, peer).map_or(200, |r| r.status().as_u16())
    }

    #[test]
    fn without_a_token_loopback_callers_only() {
        let l = AdminAuthLayer::new();
        let lo = Some([127, 0, 0, 1]);
        assert_eq!(status(&l, &[("host", "127.0.0.1:9464")], lo), 200);
        assert_eq!(status(&l, &[("host", "localhost:9464")], lo), 200);
        assert_eq!(
            status(&l, &[("host", "127.0.0.1:9464")], Some([10, 0, 0, 7])),
            403,
            "a remote peer naming loopback"
        );
        assert_eq!(
            status(&l, &[("host", "127.0.0.1:9464")], None),
            403,
            "no peer: refused"
        );
        assert_eq!(
            status(&l, &[("host", "rebound.example:9464")], lo),
            403,
            "DNS rebinding"
        );
        assert_eq!(
            status(
                &l,
                &[("host", "127.0.0.1:9464"), ("origin", "http://127.0.0.1:8000")],
                lo
            ),
            403,
            "a page on another loopback port"
        );
        assert_eq!(
            status(&l, &[("host", "127.0.0.1:9464"), ("sec-fetch-site", "none")], lo),
            403,
            "a browser navigation"
        );
    }

    #[test]
    fn with_a_token_the_token_from_anywhere() {
        let l = AdminAuthLayer::new().with_token(TOKEN);
        let remote = Some([10, 0, 0, 7]);
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            status(
                &l,
                &[("host", "admin.internal"), ("authorization", &bearer)],
                remote
            ),
            200
        );
        assert_eq!(status(&l, &[("host", "admin.internal")], remote), 401);
        assert_eq!(
            status(
                &l,
                &[("host", "127.0.0.1"), ("authorization", "Bearer nope")],
                Some([127, 0, 0, 1])
            ),
            401,
            "loopback needs the token too once one is set"
        );
        assert_eq!(
            status(&l, &[("authorization", &format!("Basic {TOKEN}"))], remote),
            401
        );
        assert_eq!(
            status(
                &l,
                &[("authorization", &bearer), ("authorization", &bearer)],
                remote
            ),
            401,
            "two Authorization headers"
        );
        assert_eq!(
            status(
                &l,
                &[("authorization", &bearer), ("origin", "https://evil.example")],
                remote
            ),
            403
        );
        assert!(!format!("{l:?}").contains(TOKEN));
    }
}
