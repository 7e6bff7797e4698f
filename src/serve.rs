//! Serving an axum [`Router`] so that slow or numerous connections cannot exhaust the server:
//! [`serve`] and [`Serve`].
//!
//! `axum::serve` runs hyper without a timer, so hyper's header-read timeout never fires: a client
//! that sends half a request header keeps its connection (and a file descriptor) forever, and
//! there is no cap on connections. [`serve`] is `axum::serve` (HTTP/1.1) with those bounds:
//!
//! - **Header read timeout** (default 10 s): a connection that has not sent a complete request
//!   header within it is closed. It also bounds how long an idle keep-alive connection is kept.
//! - **Request body timeout** (default 30 s): a body not received in full within it is answered
//!   `408 Request Timeout` and the connection closed, so a trickled upload cannot hold a request
//!   open either.
//! - **Connection cap** (default 1 024). At the cap a new connection does not wait behind the
//!   others: the connection that has been idle longest (one with no request in progress: a
//!   half-sent header, or a keep-alive connection between requests) is closed to make room. Such a
//!   connection loses nothing that a reconnect does not restore, while queueing behind slow
//!   connections would make everybody wait for their timeouts. Only when every connection has a
//!   request in progress is the new one closed at once.
//! - **Per-address share** (default 256) for peers that are not on loopback (an IPv4 address, or
//!   an IPv6 /64): one address that reaches its share makes room among its own idle connections
//!   only, so it cannot push out other clients. Loopback peers are exempt, since every local
//!   client (and a reverse proxy on the same machine) shares 127.0.0.1.
//!
//! Every request carries the peer's [`ConnectInfo<SocketAddr>`](ConnectInfo) (the DCR bridge's
//! registration limit reads it), so `into_make_service_with_connect_info` is not needed.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use std::time::Duration;
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! a3_mcp_auth::serve(listener, app)
//!     .max_connections(4096)
//!     .header_read_timeout(Duration::from_secs(5))
//!     .await
//! # }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

/// Serves `app` on `listener` with the bounds described in the [module docs](self); configure
/// them with the [`Serve`] builder methods, then `.await` it. It runs until it is dropped; then
/// it stops accepting, and each connection closes once its request in progress is answered.
///
/// ```
/// use axum::{Router, routing::get};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let server = a3_mcp_auth::serve(listener, app);
/// let url = format!("http://{}/", server.local_addr().unwrap());
/// tokio::spawn(server.into_future());
/// assert_eq!(reqwest::get(url).await.unwrap().text().await.unwrap(), "hello");
/// # }
/// # use std::future::IntoFuture;
/// ```
pub fn serve(listener: TcpListener, app: Router) -> Serve {
    Serve {
        listener,
        app,
        limits: Limits::default(),
    }
}

#[derive(Clone, Debug)]
struct Limits {
    max_connections: usize,
    per_address: usize,
    header_read_timeout: Duration,
    request_body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            per_address: 256,
            header_read_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
        }
    }
}

/// A server being configured: what [`serve`] returns. `.await` it to run it.
///
/// ```
/// use axum::Router;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// // A public deployment behind nothing: more connections, a smaller share per address.
/// let server = a3_mcp_auth::serve(listener, Router::new())
///     .max_connections(8192)
///     .max_connections_per_address(64)
///     .header_read_timeout(Duration::from_secs(5))
///     .request_body_timeout(Duration::from_secs(10));
/// # let _ = server;
/// # }
/// ```
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    app: Router,
    limits: Limits,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Most connections open at once (default 1 024; at least 1). Keep it below the process's
    /// file descriptor limit (`ulimit -n`), with room for the store and outgoing requests.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.max(1);
        self
    }

    /// Most connections one peer address (IPv4 address or IPv6 /64) that is not on loopback may
    /// hold (default 256; at least 1). Behind a reverse proxy on another machine every request
    /// comes from the proxy's address: raise it to [`max_connections`](Self::max_connections).
    pub fn max_connections_per_address(mut self, max: usize) -> Self {
        self.limits.per_address = max.max(1);
        self
    }

    /// How long a client may take to send a complete request header, and how long an idle
    /// keep-alive connection is kept (default 10 s).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// How long a client may take to send a request body once its header is complete (default
    /// 30 s); later, the request is answered `408 Request Timeout`.
    pub fn request_body_timeout(mut self, timeout: Duration) -> Self {
        self.limits.request_body_timeout = timeout;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let Serve {
                listener,
                app,
                limits,
            } = self;
            let registry = Arc::new(Registry::new(limits.clone()));
            // Dropped with this future: every connection then closes once its request is done.
            let (_running, stopped) = watch::channel(());
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&registry, &e).await;
                        continue;
                    }
                };
                // Refused: the stream is dropped, which closes it at once.
                if let Some(admission) = registry.admit(peer) {
                    let conn = connection(
                        stream,
                        peer,
                        admission,
                        app.clone(),
                        limits.clone(),
                        stopped.clone(),
                    );
                    tokio::spawn(conn);
                }
            }
        })
    }
}

/// Out of file descriptors (EMFILE, ENFILE): make room by closing the longest idle connection,
/// and give its task a moment to release the descriptor. Other accept errors concern one
/// connection attempt only.
async fn accept_failed(registry: &Registry, e: &io::Error) {
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        let evicted = registry.evict_oldest(None);
        tracing::warn!(evicted, "out of file descriptors accepting a connection");
        let pause = if evicted { 5 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    } else {
        tracing::debug!(error = %e, "accepting a connection failed");
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    app: Router,
    limits: Limits,
    mut stopped: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let Admission {
        registry,
        id,
        evicted,
    } = admission;
    let closed = Closed {
        registry: registry.clone(),
        id,
    };
    let service = {
        let registry = registry.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            handle(
                req,
                peer,
                app.clone(),
                registry.clone(),
                id,
                limits.request_body_timeout,
            )
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        Ok(()) = evicted => {
            // Evicted while idle: close now. A request that started in the meantime finishes first.
            if registry.is_active(id) {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(closed);
}

async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    app: Router,
    registry: Arc<Registry>,
    id: u64,
    body_timeout: Duration,
) -> Result<Response<Body>, Infallible> {
    let in_progress = registry.request_started(id);
    req.extensions_mut().insert(ConnectInfo(peer));
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(BodyDeadline {
            inner: body,
            deadline: tokio::time::sleep(body_timeout),
            timed_out: timed_out.clone(),
        })
    });
    let Ok(response) = app.oneshot(req).await;
    let response = if timed_out.load(Ordering::Relaxed) {
        // Whatever the handler made of the truncated body, the truth is a timeout.
        let mut r = Response::new(Body::from("the request body was not received in time"));
        *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    } else {
        response
    };
    Ok(response.map(|body| {
        Body::new(InProgressBody {
            inner: body,
            _in_progress: in_progress,
        })
    }))
}

#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body was not received in time")
    }
}

impl std::error::Error for BodyTimedOut {}

pin_project! {
    /// A request body that fails once its deadline has passed.
    struct BodyDeadline {
        #[pin]
        inner: Incoming,
        #[pin]
        deadline: tokio::time::Sleep,
        timed_out: Arc<AtomicBool>,
    }
}

impl http_body::Body for BodyDeadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.poll(cx) {
                Poll::Ready(()) => {
                    this.timed_out.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// A response body that keeps its connection's request "in progress" (not evictable) until
    /// it has been sent or dropped.
    struct InProgressBody {
        #[pin]
        inner: Body,
        _in_progress: InProgress,
    }
}

impl http_body::Body for InProgressBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The unit that shares a per-address quota: an IPv4 address, or an IPv6 /64 (one host or
/// network usually holds a whole /64, so single IPv6 addresses would be free to vary). IPv4
/// addresses mapped into IPv6 count as IPv4.
pub(crate) fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// The open connections: who may be evicted, and in which order.
struct Registry {
    limits: Limits,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    /// Connections without a request in progress, longest idle first.
    idle: BTreeSet<(Instant, u64)>,
    /// Open connections per non-loopback network.
    per_network: HashMap<IpAddr, usize>,
    /// Open connections not yet told to close.
    open: usize,
    last_warning: Option<Instant>,
}

struct Conn {
    /// `None` for loopback peers, which share no per-address quota.
    network: Option<IpAddr>,
    idle_since: Option<Instant>,
    in_progress: usize,
    /// Taken when the connection is evicted.
    evict: Option<oneshot::Sender<()>>,
}

/// A connection let in: its id, and the signal that it is evicted.
struct Admission {
    registry: Arc<Registry>,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

/// Removes its connection from the registry when the connection task ends.
struct Closed {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Closed {
    fn drop(&mut self) {
        self.registry.closed(self.id);
    }
}

/// One request in progress on a connection; dropped when its response has been sent.
struct InProgress {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.registry.request_finished(self.id);
    }
}

impl Registry {
    fn new(limits: Limits) -> Self {
        Registry {
            limits,
            table: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets a new connection from `peer` in, making room first if needed; `None`: refused.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admission> {
        let ip = peer.ip().to_canonical();
        let network = (!ip.is_loopback()).then(|| network(ip));
        let mut t = self.lock();
        if let Some(net) = network
            && t.per_network.get(&net).copied().unwrap_or(0) >= self.limits.per_address
            && !Self::evict_in(&mut t, Some(net))
        {
            tracing::debug!("refused a connection: its address holds its share, none idle");
            return None;
        }
        if t.open >= self.limits.max_connections {
            let evicted = Self::evict_in(&mut t, None);
            let now = Instant::now();
            if t.last_warning
                .is_none_or(|w| now.duration_since(w) > Duration::from_secs(60))
            {
                t.last_warning = Some(now);
                tracing::warn!(
                    max = self.limits.max_connections,
                    "connection limit reached: closing the longest idle connections to make room"
                );
            }
            if !evicted {
                return None;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        let now = Instant::now();
        t.conns.insert(
            id,
            Conn {
                network,
                idle_since: Some(now),
                in_progress: 0,
                evict: Some(evict),
            },
        );
        t.idle.insert((now, id));
        t.open += 1;
        if let Some(net) = network {
            *t.per_network.entry(net).or_default() += 1;
        }
        Some(Admission {
            registry: self.clone(),
            id,
            evicted,
        })
    }

    /// Evicts the longest idle connection (of `network`, if given). Whether one was found.
    fn evict_oldest(&self, network: Option<IpAddr>) -> bool {
        Self::evict_in(&mut self.lock(), network)
    }

    fn evict_in(t: &mut Table, network: Option<IpAddr>) -> bool {
        let found = t
            .idle
            .iter()
            .find(|(_, id)| network.is_none() || t.conns.get(id).and_then(|c| c.network) == network)
            .copied();
        let Some(key @ (_, id)) = found else {
            return false;
        };
        t.idle.remove(&key);
        let Some(conn) = t.conns.get_mut(&id) else {
            return false;
        };
        conn.idle_since = None;
        let net = conn.network;
        if let Some(evict) = conn.evict.take() {
            let _ = evict.send(());
        }
        Self::release(t, net);
        true
    }

    /// Counts a connection as gone from the open ones.
    fn release(t: &mut Table, network: Option<IpAddr>) {
        t.open -= 1;
        if let Some(net) = network
            && let Some(n) = t.per_network.get_mut(&net)
        {
            *n -= 1;
            if *n == 0 {
                t.per_network.remove(&net);
            }
        }
    }

    fn closed(&self, id: u64) {
        let mut t = self.lock();
        let Some(conn) = t.conns.remove(&id) else {
            return;
        };
        if let Some(since) = conn.idle_since {
            t.idle.remove(&(since, id));
        }
        if conn.evict.is_some() {
            Self::release(&mut t, conn.network);
        }
    }

    fn request_started(self: &Arc<Self>, id: u64) -> InProgress {
        let mut t = self.lock();
        if let Some(conn) = t.conns.get_mut(&id) {
            conn.in_progress += 1;
            if let Some(since) = conn.idle_since.take() {
                t.idle.remove(&(since, id));
            }
        }
        InProgress {
            registry: self.clone(),
            id,
        }
    }

    fn request_finished(&self, id: u64) {
        let mut t = self.lock();
        let Some(conn) = t.conns.get_mut(&id) else {
            return;
        };
        conn.in_progress = conn.in_progress.saturating_sub(1);
        // An evicted connection never becomes evictable again.
        if conn.in_progress == 0 && conn.evict.is_some() {
            let now = Instant::now();
            conn.idle_since = Some(now);
            t.idle.insert((now, id));
        }
    }

    fn is_active(&self, id: u64) -> bool {
        self.lock().conns.get(&id).is_some_and(|c| c.in_progress > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize, per_address: usize) -> Arc<Registry> {
        Arc::new(Registry::new(Limits {
            max_connections: max,
            per_address,
            ..Limits::default()
        }))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let r = registry(3, 3);
        let mut a = r.admit(addr("127.0.0.1:1")).unwrap();
        let mut b = r.admit(addr("127.0.0.1:2")).unwrap();
        let c = r.admit(addr("127.0.0.1:3")).unwrap();
        // b and c have requests in progress; a is idle (a half-sent header, say).
        let _b_req = r.request_started(b.id);
        let c_req = r.request_started(c.id);
        let mut d = r.admit(addr("127.0.0.1:4")).expect("a makes room");
        assert!(a.evicted.try_recv().is_ok(), "a is told to close");
        assert!(b.evicted.try_recv().is_err());
        // Now b, c busy and d idle: the next evicts d, then nothing is left to evict.
        let e = r.admit(addr("127.0.0.1:5")).expect("d makes room");
        assert!(d.evicted.try_recv().is_ok());
        let _e_req = r.request_started(e.id);
        assert!(r.admit(addr("127.0.0.1:6")).is_none(), "every connection is busy");
        // c's response is sent: c is idle again and may make room.
        drop(c_req);
        assert!(r.admit(addr("127.0.0.1:7")).is_some());
        assert_eq!(r.lock().open, 3);
    }

    #[test]
    fn closing_frees_the_slot_once() {
        let r = registry(2, 2);
        let a = r.admit(addr("127.0.0.1:1")).unwrap();
        let _b = r.admit(addr("127.0.0.1:2")).unwrap();
        let _c = r.admit(addr("127.0.0.1:3")).unwrap(); // evicts a
        r.closed(a.id); // a's task ends after its eviction
        assert_eq!(r.lock().open, 2, "an evicted connection is not released twice");
        assert_eq!(r.lock().conns.len(), 2);
    }

    #[test]
    fn an_address_that_holds_its_share_only_makes_room_among_its_own() {
        let r = registry(10, 2);
        let mut other = r.admit(addr("192.0.2.7:1")).unwrap();
        let mut first = r.admit(addr("198.51.100.1:1")).unwrap();
        let second = r.admit(addr("198.51.100.1:2")).unwrap();
        let _third = r
            .admit(addr("198.51.100.1:3"))
            .expect("its own oldest makes room");
        assert!(first.evicted.try_recv().is_ok());
        assert!(other.evicted.try_recv().is_err(), "another address is untouched");
        let _busy = r.request_started(second.id);
        let _busy3 = r.request_started(_third.id);
        assert!(r.admit(addr("198.51.100.1:4")).is_none(), "its share is busy");
        // IPv6: one /64 is one address.
        let _v6 = r.admit(addr("[2001:db8:1:2::1]:1")).unwrap();
        let _v6b = r.admit(addr("[2001:db8:1:2::ffff]:1")).unwrap();
        assert_eq!(
            r.lock().per_network[&network("2001:db8:1:2::".parse().unwrap())],
            2
        );
    }

    #[test]
    fn loopback_peers_share_no_quota() {
        let r = registry(100, 1);
        for port in 1..=50 {
            assert!(r.admit(SocketAddr::from(([127, 0, 0, 1], port))).is_some());
        }
        for port in 1..=10 {
            assert!(r.admit(addr(&format!("[::ffff:127.0.0.1]:{port}"))).is_some());
            assert!(r.admit(addr(&format!("[::1]:{port}"))).is_some());
        }
        assert_eq!(r.lock().open, 70);
        assert!(r.lock().per_network.is_empty());
    }

    #[test]
    fn networks() {
        assert_eq!(
            network("2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("::ffff:10.0.0.1".parse().unwrap()),
            IpAddr::from([10, 0, 0, 1])
        );
        assert_eq!(network(IpAddr::from([10, 0, 0, 1])), IpAddr::from([10, 0, 0, 1]));
    }
}
