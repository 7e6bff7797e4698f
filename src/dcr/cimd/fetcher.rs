//! The hardened fetcher of Client ID Metadata Documents: the bridge's only outbound request whose
//! URL an unauthenticated caller chooses, so the one place Server-Side Request Forgery could
//! happen ([MCP Security Best Practices (2026-07-28), "SSRF Against Authorization
//! Servers"](https://modelcontextprotocol.io/docs/2026-07-28/tutorials/security/security_best_practices#ssrf-against-authorization-servers);
//! [draft-ietf-oauth-client-id-metadata-document-00 §6](https://www.ietf.org/archive/id/draft-ietf-oauth-client-id-metadata-document-00.html#section-6)).
//!
//! It resolves the host name itself, once, keeps only the addresses [`address::check`] passes,
//! and connects to one of exactly those: no second resolution happens between the check and the
//! connection, so DNS rebinding cannot slip an internal address in. An IP-literal host is checked
//! the same way (HTTP clients skip their resolver for literals). Then: https only (plain http only
//! to a loopback IP literal under the development switch), certificates verified against the
//! system's roots, HTTP/1.1, no redirects followed, no proxy, a body cap enforced while reading,
//! and short connect and total timeouts. The resolver and the connector are injectable, so tests
//! check the decision on names mapped to forbidden addresses with a connector that records every
//! destination and connects to loopback only.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Url};

use super::address;
use crate::dcr::store::BoxFuture;

/// The largest document read, in bytes (real documents are under 1 KiB).
pub(crate) const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// How long connecting to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole fetch may take: resolution, connection, TLS, request and body.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many resolved addresses are tried.
const MAX_ADDRESSES: usize = 4;

/// Name resolution: one call per fetch.
pub(crate) trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` for `port` (a test resolver may answer another port).
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
}

/// Opening a TCP connection to an address that passed the check.
pub(crate) trait Connect: Send + Sync + 'static {
    /// A connection to exactly `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<TcpStream>>;
}

/// The operating system's resolver (`getaddrinfo`).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Plain TCP.
struct SystemConnector;

impl Connect for SystemConnector {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<TcpStream>> {
        Box::pin(TcpStream::connect(addr))
    }
}

/// Why a document could not be fetched. The messages name the host at most, never a resolved
/// address (an attacker must not learn what internal names resolve to) and never a body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("its URL must use https")]
    Insecure,
    #[error("{0} does not resolve")]
    Resolve(String),
    #[error(
        "{0} is not a public internet address: this server does not fetch from private, loopback, link-local or other special addresses"
    )]
    NotPublic(String),
    #[error("{0} could not be reached")]
    Connect(String),
    #[error("{0} did not present a valid certificate")]
    Tls(String),
    #[error("{0} answered with a redirect, which this server does not follow")]
    Redirect(String),
    #[error("{0} answered HTTP {1}")]
    Status(String, u16),
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("{0} did not answer within {secs} seconds", secs = FETCH_TIMEOUT.as_secs())]
    Timeout(String),
    #[error("{0} answered with a malformed HTTP response")]
    Protocol(String),
    #[error("this server cannot verify https certificates: {0}")]
    NoTrust(String),
}

/// A fetched document: its bytes and its `Cache-Control` header.
pub(crate) struct Fetched {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

/// The hardened fetcher (see the module documentation).
pub(crate) struct Fetcher {
    resolver: Arc<dyn Resolve>,
    connector: Arc<dyn Connect>,
    tls: Result<tokio_rustls::TlsConnector, String>,
    allow_loopback: bool,
}

impl Fetcher {
    /// The production fetcher: the system's resolver, plain TCP, the system's trusted roots.
    pub(crate) fn new(allow_loopback: bool) -> Self {
        Self::with_network(
            Arc::new(SystemResolver),
            Arc::new(SystemConnector),
            Vec::new(),
            allow_loopback,
        )
    }

    /// A fetcher on another network: a resolver, a connector, and roots trusted besides the
    /// system's (tests: a test CA).
    pub(crate) fn with_network(
        resolver: Arc<dyn Resolve>,
        connector: Arc<dyn Connect>,
        extra_roots: Vec<Vec<u8>>,
        allow_loopback: bool,
    ) -> Self {
        Fetcher {
            resolver,
            connector,
            tls: tls_connector(extra_roots),
            allow_loopback,
        }
    }

    /// Whether https documents can be fetched at all (the system has trusted roots).
    pub(crate) fn tls_error(&self) -> Option<&str> {
        self.tls.as_ref().err().map(String::as_str)
    }

    /// GETs `url`: https (or, under the development switch, http to a loopback IP literal), from
    /// a public address, 200 only, at most [`MAX_DOCUMENT_BYTES`], within [`FETCH_TIMEOUT`].
    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let host = url.host().ok_or(FetchError::Insecure)?;
        let authority = authority(url);
        let https = match (url.scheme(), &host) {
            ("https", _) => true,
            ("http", Host::Ipv4(ip)) if self.allow_loopback && ip.is_loopback() => false,
            ("http", Host::Ipv6(ip)) if self.allow_loopback && ip.is_loopback() => false,
            _ => return Err(FetchError::Insecure),
        };
        let work = self.get_from(url, host.to_owned(), https);
        match tokio::time::timeout(FETCH_TIMEOUT, work).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(authority)),
        }
    }

    async fn get_from(&self, url: &Url, host: Host<String>, https: bool) -> Result<Fetched, FetchError> {
        let name = authority(url);
        let port = url.port_or_known_default().ok_or(FetchError::Insecure)?;
        // The one resolution; literals are not resolved.
        let candidates = match &host {
            Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
            Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
            Host::Domain(domain) => self
                .resolver
                .resolve(domain, port)
                .await
                .map_err(|_| FetchError::Resolve(name.clone()))?,
        };
        if candidates.is_empty() {
            return Err(FetchError::Resolve(name));
        }
        // The decision, on the addresses that will be connected to and nothing else.
        let mut allowed = Vec::new();
        for addr in candidates {
            match address::check(addr.ip(), self.allow_loopback) {
                Ok(()) => allowed.push(addr),
                Err(why) => {
                    tracing::info!(host = %name, why, "refusing to fetch a client metadata document from a non-public address")
                }
            }
        }
        if allowed.is_empty() {
            return Err(FetchError::NotPublic(name));
        }
        let mut stream = None;
        for addr in allowed.into_iter().take(MAX_ADDRESSES) {
            if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(addr)).await {
                stream = Some(s);
                break;
            }
        }
        let stream = stream.ok_or_else(|| FetchError::Connect(name.clone()))?;
        if !https {
            return request(stream, url, &name).await;
        }
        let tls = self.tls.as_ref().map_err(|e| FetchError::NoTrust(e.clone()))?;
        let server_name = match host {
            Host::Domain(d) => rustls::pki_types::ServerName::try_from(d),
            Host::Ipv4(ip) => Ok(rustls::pki_types::ServerName::IpAddress(IpAddr::V4(ip).into())),
            Host::Ipv6(ip) => Ok(rustls::pki_types::ServerName::IpAddress(IpAddr::V6(ip).into())),
        }
        .map_err(|_| FetchError::Tls(name.clone()))?;
        let stream = tls
            .connect(server_name, stream)
            .await
            .map_err(|_| FetchError::Tls(name.clone()))?;
        request(stream, url, &name).await
    }
}

/// `host[:port]` as the URL names it (the port only when not the scheme's default).
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// One HTTP/1.1 GET over `stream`.
async fn request<S>(stream: S, url: &Url, name: &str) -> Result<Fetched, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = || FetchError::Protocol(name.to_owned());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| protocol())?;
    // Driven beside the request; aborted when this fetch ends (or times out).
    let driver = tokio::spawn(connection);
    let _abort = AbortOnDrop(driver);
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let request = http::Request::get(path)
        .header(header::HOST, authority(url))
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("a3-mcp-auth/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|_| protocol())?;
    let response = sender.send_request(request).await.map_err(|_| protocol())?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect(name.to_owned()));
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status(name.to_owned(), status.as_u16()));
    }
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err(FetchError::TooLarge);
    }
    let cache_control = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| protocol())?;
        if let Ok(chunk) = frame.into_data() {
            if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok(Fetched {
        body: bytes,
        cache_control,
    })
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS with the system's roots (and `extra_roots`, DER), aws-lc-rs, HTTP/1.1 by ALPN.
fn tls_connector(extra_roots: Vec<Vec<u8>>) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = extra_roots
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from);
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
        .map_err(|e| e.to_string())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous() // the platform verifier: full WebPKI verification, not a bypass
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Names → addresses; connects to loopback only, recording every destination.
    #[derive(Default)]
    struct Recorded {
        names: HashMap<String, Vec<SocketAddr>>,
        resolutions: Mutex<u32>,
        attempts: Mutex<Vec<SocketAddr>>,
    }

    impl Resolve for Recorded {
        fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
            *self.resolutions.lock().unwrap() += 1;
            let found = self.names.get(host).cloned();
            Box::pin(async move { found.ok_or_else(|| io::Error::other("unknown test name")) })
        }
    }

    impl Connect for Recorded {
        fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<TcpStream>> {
            self.attempts.lock().unwrap().push(addr);
            Box::pin(async move {
                if !addr.ip().to_canonical().is_loopback() {
                    return Err(io::Error::other("the test network connects to loopback only"));
                }
                TcpStream::connect(addr).await
            })
        }
    }

    fn fetcher(net: Arc<Recorded>, allow_loopback: bool) -> Fetcher {
        Fetcher::with_network(net.clone(), net, Vec::new(), allow_loopback)
    }

    /// A plain-http listener answering every connection with `response`.
    async fn serve(response: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(response).await;
                    // Kept open: a short body is then a slow one, not a closed one.
                    tokio::time::sleep(Duration::from_secs(10)).await;
                });
            }
        });
        addr
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn names_resolving_to_forbidden_addresses_are_never_connected_to() {
        let mut net = Recorded::default();
        for (name, ip) in [
            ("metadata.test", "169.254.169.254"),
            ("private.test", "10.0.0.7"),
            ("loopback.test", "127.0.0.1"),
            ("mapped.test", "::ffff:169.254.169.254"),
            ("unspecified.test", "0.0.0.0"),
            ("ula.test", "fd00::1"),
        ] {
            net.names
                .insert(name.into(), vec![SocketAddr::new(ip.parse().unwrap(), 443)]);
        }
        let net = Arc::new(net);
        let f = fetcher(net.clone(), false);
        for name in [
            "metadata.test",
            "private.test",
            "loopback.test",
            "mapped.test",
            "unspecified.test",
            "ula.test",
        ] {
            let e = f.get(&url(&format!("https://{name}/doc.json"))).await.err();
            assert_eq!(e, Some(FetchError::NotPublic(name.into())));
        }
        for literal in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:a9fe:a9fe]/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
        ] {
            assert!(
                matches!(f.get(&url(literal)).await, Err(FetchError::NotPublic(_))),
                "{literal}"
            );
        }
        assert!(net.attempts.lock().unwrap().is_empty(), "no connection attempt");
    }

    #[tokio::test]
    async fn only_the_checked_addresses_are_connected_to_and_names_resolve_once() {
        // A name with one public and one internal answer: only the public one is tried (the
        // test network refuses to really connect to it).
        let mut net = Recorded::default();
        net.names.insert(
            "mixed.test".into(),
            vec![
                "169.254.169.254:443".parse().unwrap(),
                "1.1.1.1:443".parse().unwrap(),
            ],
        );
        let net = Arc::new(net);
        let e = fetcher(net.clone(), false)
            .get(&url("https://mixed.test/doc.json"))
            .await
            .err();
        assert_eq!(e, Some(FetchError::Connect("mixed.test".into())));
        assert_eq!(*net.attempts.lock().unwrap(), ["1.1.1.1:443".parse().unwrap()]);
        assert_eq!(*net.resolutions.lock().unwrap(), 1, "one resolution per fetch");
    }

    #[tokio::test]
    async fn plain_http_only_to_loopback_literals_under_the_switch() {
        let addr =
            serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: max-age=60\r\n\r\n{}").await;
        let net = Arc::new(Recorded::default());
        let doc = url(&format!("http://{addr}/doc.json"));
        assert_eq!(
            fetcher(net.clone(), false).get(&doc).await.err(),
            Some(FetchError::Insecure)
        );
        let fetched = fetcher(net.clone(), true).get(&doc).await.unwrap();
        assert_eq!(fetched.body, b"{}");
        assert_eq!(fetched.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(*net.attempts.lock().unwrap(), [addr]);
        for insecure in ["http://example.com/doc.json", "ftp://127.0.0.1/doc.json"] {
            assert_eq!(
                fetcher(net.clone(), true).get(&url(insecure)).await.err(),
                Some(FetchError::Insecure),
                "{insecure}"
            );
        }
    }

    #[tokio::test]
    async fn redirects_statuses_oversized_and_slow_answers_are_refused() {
        let net = Arc::new(Recorded::default());
        let f = fetcher(net, true);
        let redirect =
            serve(b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n")
                .await;
        assert_eq!(
            f.get(&url(&format!("http://{redirect}/d"))).await.err(),
            Some(FetchError::Redirect(redirect.to_string()))
        );
        let missing = serve(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(
            f.get(&url(&format!("http://{missing}/d"))).await.err(),
            Some(FetchError::Status(missing.to_string(), 404))
        );
        let declared = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 999999\r\n\r\n{").await;
        assert_eq!(
            f.get(&url(&format!("http://{declared}/d"))).await.err(),
            Some(FetchError::TooLarge)
        );
        // Chunked, no length: the cap holds while reading.
        static CHUNKED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let body = CHUNKED.get_or_init(|| {
            let chunk = vec![b' '; 4096];
            let mut r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..3 {
                r.extend_from_slice(b"1000\r\n");
                r.extend_from_slice(&chunk);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        });
        let chunked = serve(body).await;
        assert_eq!(
            f.get(&url(&format!("http://{chunked}/d"))).await.err(),
            Some(FetchError::TooLarge)
        );
        let slow = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{").await;
        let started = std::time::Instant::now();
        assert_eq!(
            f.get(&url(&format!("http://{slow}/d"))).await.err(),
            Some(FetchError::Timeout(slow.to_string()))
        );
        assert!(started.elapsed() < FETCH_TIMEOUT + Duration::from_secs(2));
    }
}
