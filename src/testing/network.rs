//! [`TestNetwork`]: the network the DCR bridge fetches Client ID Metadata Documents on, in tests.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

use crate::dcr::cimd_fetcher::{Connect, Fetcher, Resolve};
use crate::dcr::store::BoxFuture;

/// A network for the bridge's metadata-document fetches in tests
/// ([`DcrBridgeBuilder::test_network`](crate::dcr::DcrBridgeBuilder::test_network)): names
/// resolve to the addresses you give (with their ports: `vscode.dev:443` can be a loopback
/// listener on a random port), certificates are also checked against the roots you add (a test
/// CA), and the connector records every address the fetcher connects to and really connects to
/// loopback only. So a test can map a name to 169.254.169.254 and check that nothing tried to
/// reach it; even if the guard had a bug, no packet would leave the machine. Unmapped names do not
/// resolve (no DNS query is sent).
///
/// A name given several answer lists gets them one per resolution, the last one repeating: a
/// name that resolves to a public address once and to an internal one afterwards (DNS rebinding).
///
/// ```
/// use a3_mcp_auth::testing::TestNetwork;
///
/// let net = TestNetwork::new()
///     .resolve("vscode.dev", 443, ["127.0.0.1:40443".parse().unwrap()])
///     .resolve("metadata.attacker.test", 443, ["169.254.169.254:80".parse().unwrap()]);
/// // Give it to DcrBridge::builder(&config).test_network(net.clone()), fetch, then check:
/// assert!(net.attempts().is_empty());
/// assert_eq!(net.resolutions("vscode.dev"), 0);
/// ```
#[derive(Clone, Default)]
pub struct TestNetwork {
    inner: Arc<Inner>,
}

/// The answers each `(host, port)` gives, one list per resolution.
type Answers = HashMap<(String, u16), Vec<Vec<SocketAddr>>>;

#[derive(Default)]
struct Inner {
    names: Mutex<Answers>,
    resolutions: Mutex<HashMap<String, u64>>,
    roots: Mutex<Vec<Vec<u8>>>,
    attempts: Mutex<Vec<SocketAddr>>,
}

impl std::fmt::Debug for TestNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNetwork")
            .field("attempts", &self.attempts())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestNetwork {
    /// An empty network: no name resolves.
    pub fn new() -> Self {
        Self::default()
    }

    /// `host` (for URLs on `port`) resolves to `addrs` (after any answers given before).
    pub fn resolve(self, host: &str, port: u16, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        lock(&self.inner.names)
            .entry((host.to_ascii_lowercase(), port))
            .or_default()
            .push(addrs.into_iter().collect());
        self
    }

    /// Also trust this root certificate (DER), e.g. a CA made for the test.
    pub fn trust_root(self, der: impl Into<Vec<u8>>) -> Self {
        lock(&self.inner.roots).push(der.into());
        self
    }

    /// Every address the fetcher connected to or tried to, in order.
    pub fn attempts(&self) -> Vec<SocketAddr> {
        lock(&self.inner.attempts).clone()
    }

    /// How many times `host` was resolved.
    pub fn resolutions(&self, host: &str) -> u64 {
        lock(&self.inner.resolutions)
            .get(&host.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn fetcher(&self, allow_loopback: bool) -> Fetcher {
        let roots = lock(&self.inner.roots).clone();
        Fetcher::with_network(
            Arc::new(self.clone()),
            Arc::new(self.clone()),
            roots,
            allow_loopback,
        )
    }
}

impl Resolve for TestNetwork {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        let host = host.to_ascii_lowercase();
        *lock(&self.inner.resolutions).entry(host.clone()).or_default() += 1;
        let mut names = lock(&self.inner.names);
        let answer = names.get_mut(&(host, port)).and_then(|answers| {
            if answers.len() > 1 {
                Some(answers.remove(0))
            } else {
                answers.first().cloned()
            }
        });
        Box::pin(async move { answer.ok_or_else(|| io::Error::other("not a name of the test network")) })
    }
}

impl Connect for TestNetwork {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<TcpStream>> {
        lock(&self.inner.attempts).push(addr);
        Box::pin(async move {
            if !addr.ip().to_canonical().is_loopback() {
                return Err(io::Error::other("the test network connects to loopback only"));
            }
            TcpStream::connect(addr).await
        })
    }
}
