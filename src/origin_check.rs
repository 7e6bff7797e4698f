//! DNS-rebinding and cross-origin protection before authentication: [`OriginCheckLayer`],
//! [`OriginCheck`] and its [`ResponseFuture`] (shared with the other layers that decide
//! without waiting).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::headers::{Repeated, single};
use crate::refusal::{AuthBody, json_refusal};

pub use crate::refusal::ResponseFuture;

/// Layer that checks `Host` and `Origin` before anything else ([MCP transports, "Security
/// Warning"](https://modelcontextprotocol.io/specification/2025-11-25/basic/transports#security-warning):
/// servers must validate `Origin` against DNS rebinding).
///
/// Mount it **outside** [`BearerAuthLayer`](crate::BearerAuthLayer): a request from a
/// disallowed origin gets `403 Forbidden` whether or not it carries a token, and a request whose
/// `Host` is not this server's (DNS rebinding) gets 403 too. rmcp performs similar checks, but
/// only after authentication has run.
///
/// - `Host` (or, without it, the URI authority) must name an allowed host. An allowed host
///   without a port matches any port; with a port, only that port. Comparison ignores ASCII case.
///   A missing or malformed `Host` gets 400.
/// - A request without `Origin` (MCP hosts that are not browsers) passes. With `Origin`, it must
///   equal an allowed origin (`scheme://host[:port]`, ASCII case ignored). `Origin: null` and
///   repeated `Origin` headers are refused.
///
/// By default the loopback names are allowed hosts and no origin is allowed.
///
/// ```
/// use a3_mcp_auth::OriginCheckLayer;
/// use axum::{Router, body::Body, routing::post};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = Router::new()
///     .route("/mcp", post(|| async { "ok" }))
///     .layer(OriginCheckLayer::new().allow_origin("http://localhost:6274"));
///
/// let from = |host: &str, origin: &str| {
///     http::Request::post("/mcp").header("host", host).header("origin", origin).body(Body::empty()).unwrap()
/// };
/// assert_eq!(app.clone().oneshot(from("127.0.0.1:8000", "http://localhost:6274")).await.unwrap().status(), 200);
/// assert_eq!(app.clone().oneshot(from("127.0.0.1:8000", "https://evil.example")).await.unwrap().status(), 403);
/// assert_eq!(app.oneshot(from("evil.example", "http://localhost:6274")).await.unwrap().status(), 403);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct OriginCheckLayer {
    hosts: Arc<Vec<String>>,
    origins: Arc<Vec<String>>,
}

impl Default for OriginCheckLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginCheckLayer {
    /// Allows the hosts `localhost`, `127.0.0.1` and `[::1]` (any port) and no origin.
    pub fn new() -> Self {
        OriginCheckLayer {
            hosts: Arc::new(vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]),
            origins: Arc::new(Vec::new()),
        }
    }

    /// Replaces the allowed hosts (`name` or `name:port`; IPv6 in brackets).
    pub fn allow_hosts<I, T>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.hosts = Arc::new(hosts.into_iter().map(|h| h.into().to_ascii_lowercase()).collect());
        self
    }

    /// Also allows the host `host`.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.hosts).push(host.into().to_ascii_lowercase());
        self
    }

    /// Also allows the browser origin `origin` (`scheme://host[:port]`, no path).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into().trim_end_matches('/').to_ascii_lowercase();
        Arc::make_mut(&mut self.origins).push(origin);
        self
    }

    /// Whether the request headers (and URI authority) pass the checks; `Err` holds the status
    /// and reason to refuse with.
    ///
    /// ```
    /// use a3_mcp_auth::OriginCheckLayer;
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// let check = OriginCheckLayer::new().allow_hosts(["mcp.example.com"]);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("host", HeaderValue::from_static("MCP.example.com:443"));
    /// assert!(check.check(&headers, None).is_ok());
    /// headers.insert("host", HeaderValue::from_static("127.0.0.1"));
    /// assert_eq!(check.check(&headers, None).unwrap_err().0, 403);
    /// ```
    pub fn check(
        &self,
        headers: &HeaderMap,
        authority: Option<&str>,
    ) -> Result<(), (StatusCode, &'static str)> {
        let host = match single(headers, header::HOST) {
            Ok(Some(h)) => h
                .to_str()
                .map_err(|_| (StatusCode::BAD_REQUEST, "malformed Host header"))?,
            Ok(None) => authority.ok_or((StatusCode::BAD_REQUEST, "missing Host header"))?,
            Err(Repeated) => return Err((StatusCode::BAD_REQUEST, "more than one Host header")),
        };
        let host = host.to_ascii_lowercase();
        let name = host_name(&host).ok_or((StatusCode::BAD_REQUEST, "malformed Host header"))?;
        if !self
            .hosts
            .iter()
            .any(|allowed| *allowed == host || allowed == name)
        {
            return Err((StatusCode::FORBIDDEN, "Host not allowed"));
        }
        match single(headers, header::ORIGIN) {
            Ok(None) => Ok(()),
            Ok(Some(origin)) => {
                let origin = origin
                    .to_str()
                    .map_err(|_| (StatusCode::FORBIDDEN, "Origin not allowed"))?;
                let origin = origin.to_ascii_lowercase();
                if origin != "null" && self.origins.contains(&origin) {
                    Ok(())
                } else {
                    Err((StatusCode::FORBIDDEN, "Origin not allowed"))
                }
            }
            Err(Repeated) => Err((StatusCode::FORBIDDEN, "more than one Origin header")),
        }
    }
}

/// `host` without its port (`[::1]:80` → `[::1]`); `None` if it is not a plausible authority.
fn host_name(host: &str) -> Option<&str> {
    if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    let name = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        if !(rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        &host[..=end]
    } else {
        match host.split_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => name,
            Some(_) => return None,
            None => host,
        }
    };
    (!name.is_empty()).then_some(name)
}

impl<S> Layer<S> for OriginCheckLayer {
    type Service = OriginCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginCheck {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that checks `Host` and `Origin`. See [`OriginCheckLayer`].
///
/// ```
/// use a3_mcp_auth::OriginCheckLayer;
/// use a3_mcp_auth::origin_check::OriginCheck;
/// use tower::{Layer, service_fn};
///
/// let service: OriginCheck<_> = OriginCheckLayer::new().layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// # let _ = service;
/// ```
#[derive(Clone, Debug)]
pub struct OriginCheck<S> {
    inner: S,
    layer: OriginCheckLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OriginCheck<S>
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
        match self
            .layer
            .check(req.headers(), req.uri().authority().map(|a| a.as_str()))
        {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err((status, reason)) => {
                tracing::debug!(%status, reason, "refused a request before authentication");
                let which = if reason.contains("Origin") {
                    "origin"
                } else {
                    "host"
                };
                crate::metrics::refused("origin_check", which);
                ResponseFuture::refused(json_refusal(status, "forbidden", reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(layer: &OriginCheckLayer, host: Option<&str>, origins: &[&str]) -> Result<(), StatusCode> {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        for o in origins {
            h.append(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        layer.check(&h, None).map_err(|e| e.0)
    }

    #[test]
    fn hosts() {
        let l = OriginCheckLayer::new().allow_host("mcp.example.com:8443");
        assert_eq!(check(&l, Some("127.0.0.1:8000"), &[]), Ok(()));
        assert_eq!(check(&l, Some("LOCALHOST"), &[]), Ok(()));
        assert_eq!(check(&l, Some("[::1]:9"), &[]), Ok(()));
        assert_eq!(check(&l, Some("mcp.example.com:8443"), &[]), Ok(()));
        assert_eq!(
            check(&l, Some("mcp.example.com:443"), &[]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            check(&l, Some("127.0.0.1.evil.com"), &[]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            check(&l, Some("localhost:80:80"), &[]),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            check(&l, Some("user@localhost"), &[]),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(check(&l, Some("[::1]x"), &[]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check(&l, None, &[]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn origins() {
        let l = OriginCheckLayer::new().allow_origin("http://localhost:6274/");
        assert_eq!(check(&l, Some("localhost"), &["http://localhost:6274"]), Ok(()));
        assert_eq!(check(&l, Some("localhost"), &["HTTP://LOCALHOST:6274"]), Ok(()));
        assert_eq!(
            check(&l, Some("localhost"), &["http://localhost:6275"]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            check(&l, Some("localhost"), &["null"]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            check(
                &l,
                Some("localhost"),
                &["http://localhost:6274", "http://localhost:6274"]
            ),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            check(&OriginCheckLayer::new(), Some("localhost"), &["http://localhost"]),
            Err(StatusCode::FORBIDDEN)
        );
    }
}
