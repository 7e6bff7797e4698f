//! Health endpoints for probes and load balancers, served beside the MCP route and outside the
//! auth layers: `GET /healthz` (the process answers) and `GET /readyz` (what the server needs
//! works: the issuer's keys, the store).
//!
//! Both are cheap enough for a probe every second: `/readyz` reads the state the JWKS key store
//! already keeps (no request to the issuer) and pings the store at most once a second (1 s
//! timeout), whatever the number of probes. Their answers name no secret and no internal
//! address, since anyone who reaches the listener may ask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use crate::dcr::store::{Namespace, Store};
use crate::jwks::JwksKeyStore;

/// Where [`Readiness::router`] serves liveness: 200 while the process answers.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Where [`Readiness::router`] serves readiness: 200, or 503 naming the failing parts.
pub const READYZ_PATH: &str = "/readyz";

/// How long one store ping may take before the store counts as unavailable.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a store ping's result is reused: probes never load the store more than this allows.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The key the ping reads; it never exists.
const PROBE_KEY: &str = "readyz-probe";

/// What `GET /readyz` checks: the issuer's JWKS key store and the DCR bridge's store, as far as
/// they are given.
///
/// - `jwks`: the key store's fetches have not been failing for two of its retry intervals
///   ([`JwksPolicy::retry_after_failure`](crate::jwks::JwksPolicy::retry_after_failure), 30 s:
///   so 60 s by default), i.e. a failed fetch and its retry. Failing fetches keep the last good
///   keys, so one failure does not take every replica out of the load balancer at once; a
///   replica that cannot reach the issuer for longer can no longer follow a key rotation.
/// - `store`: a read answers within 1 s (checked at most once a second; concurrent probes share
///   the answer).
///
/// Upstream discovery needs no check of its own: a [`JwtVerifier`](crate::JwtVerifier) and a
/// [`DcrBridge`](crate::dcr::DcrBridge) are only built once the issuer's discovery document (and
/// its JWKS) have been fetched, so a server that serves these routes has done it.
///
/// Mount it in one line, beside the MCP route and outside the auth layers:
/// [`DcrBridge::readiness`](crate::dcr::DcrBridge::readiness) has the bridge's store and key
/// store; for a [`JwtVerifier`](crate::JwtVerifier) alone, give its key store.
///
/// ```
/// use a3_mcp_auth::health::Readiness;
/// use a3_mcp_auth::testing::TestIssuer;
/// use axum::{Router, body::Body, routing::post};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let verifier = issuer.verifier("http://127.0.0.1:8000/mcp").await;
/// let app: Router = Router::new()
///     .route("/mcp", post(|| async { "the MCP service, behind the auth layers" }))
///     .merge(Readiness::new().with_key_store(verifier.keys()).router());
///
/// let probe = |path| http::Request::get(path).body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(probe("/healthz")).await.unwrap().status(), 200);
/// let ready = app.oneshot(probe("/readyz")).await.unwrap();
/// assert_eq!(ready.status(), 200);
/// let body = axum::body::to_bytes(ready.into_body(), 1024).await.unwrap();
/// assert_eq!(&body[..], br#"{"checks":{"jwks":"ok"},"status":"ready"}"#);
/// # }
/// ```
#[derive(Clone)]
pub struct Readiness {
    keys: Option<JwksKeyStore>,
    store: Option<Arc<dyn Store>>,
    /// The last store ping. Behind an async mutex held during a ping, so that concurrent probes
    /// wait for one ping instead of sending their own.
    store_checked: Arc<tokio::sync::Mutex<Option<StorePing>>>,
}

/// When the store was last pinged, and its problem if any.
type StorePing = (Instant, Option<&'static str>);

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("keys", &self.keys)
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Checks nothing yet: add the parts with the `with_` methods.
    pub fn new() -> Self {
        Readiness {
            keys: None,
            store: None,
            store_checked: Arc::default(),
        }
    }

    /// Checks the issuer's key store (the part named `jwks`).
    pub fn with_key_store(mut self, keys: &JwksKeyStore) -> Self {
        self.keys = Some(keys.clone());
        self
    }

    /// Checks a store (the part named `store`).
    pub fn with_store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        // A cache of its own: clones made before keep theirs.
        self.store_checked = Arc::default();
        self
    }

    /// Checks every part now (the store at most once a second).
    ///
    /// ```
    /// use a3_mcp_auth::health::Readiness;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let report = Readiness::new().check().await;
    /// assert!(report.is_ready(), "nothing to check");
    /// # }
    /// ```
    pub async fn check(&self) -> ReadinessReport {
        let mut parts = Vec::new();
        if let Some(keys) = &self.keys {
            let tolerance = keys.policy().retry_after_failure.saturating_mul(2);
            let problem = match keys.failing_for() {
                Some(failing) if failing >= tolerance => Some(format!(
                    "the issuer's keys could not be fetched for {} s",
                    failing.as_secs()
                )),
                _ => None,
            };
            parts.push(("jwks", problem));
        }
        if let Some(store) = &self.store {
            parts.push(("store", self.store_problem(store).await.map(str::to_owned)));
        }
        ReadinessReport { parts }
    }

    async fn store_problem(&self, store: &Arc<dyn Store>) -> Option<&'static str> {
        let mut checked = self.store_checked.lock().await;
        if let Some((at, problem)) = *checked
            && at.elapsed() < STORE_CHECK_EVERY
        {
            return problem;
        }
        let problem = match tokio::time::timeout(STORE_TIMEOUT, store.get(Namespace::Client, PROBE_KEY)).await
        {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "readiness: the store failed");
                Some("unavailable")
            }
            Err(_) => Some("no answer within 1 s"),
        };
        *checked = Some((Instant::now(), problem));
        problem
    }

    /// `GET /healthz` and `GET /readyz`, for any router state.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let readiness = self.clone();
        Router::new()
            .route(
                HEALTHZ_PATH,
                get(|| async { json(StatusCode::OK, r#"{"status":"up"}"#.to_owned()) }),
            )
            .route(
                READYZ_PATH,
                get(move || {
                    let readiness = readiness.clone();
                    async move { readiness.check().await.into_response() }
                }),
            )
    }
}

/// The result of [`Readiness::check`]: each part checked and its problem, if any.
///
/// As a response: 200 when ready, else 503, with a JSON body naming each part,
/// `{"checks":{"jwks":"ok","store":"unavailable"},"status":"not_ready"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessReport {
    parts: Vec<(&'static str, Option<String>)>,
}

impl ReadinessReport {
    /// Whether every part works.
    pub fn is_ready(&self) -> bool {
        self.parts.iter().all(|(_, problem)| problem.is_none())
    }

    /// The parts that do not work, with what is wrong.
    pub fn failing(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.parts
            .iter()
            .filter_map(|(part, problem)| Some((*part, problem.as_deref()?)))
    }
}

impl IntoResponse for ReadinessReport {
    fn into_response(self) -> Response {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .parts
            .iter()
            .map(|(part, problem)| ((*part).to_owned(), problem.as_deref().unwrap_or("ok").into()))
            .collect();
        let (status, word) = if self.is_ready() {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
        };
        let body = serde_json::json!({"status": word, "checks": checks});
        json(status, body.to_string())
    }
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::store::{BoxFuture, Index, IndexEntry, MemoryStore, StoreError};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// A memory store that can be made to fail, counting the reads.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryStore,
        down: AtomicBool,
        reads: AtomicU32,
    }

    impl Store for Flaky {
        fn put<'a>(
            &'a self,
            ns: Namespace,
            key: &'a str,
            value: Vec<u8>,
            expires_at: Option<u64>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.put(ns, key, value, expires_at)
        }
        fn get<'a>(
            &'a self,
            ns: Namespace,
            key: &'a str,
        ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(async { Err(StoreError("down".into())) });
            }
            self.inner.get(ns, key)
        }
        fn take<'a>(
            &'a self,
            ns: Namespace,
            key: &'a str,
        ) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
            self.inner.take(ns, key)
        }
        fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.delete(ns, key)
        }
        fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
            self.inner.count(ns)
        }
        fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            self.inner.purge_expired()
        }
        fn index_put<'a>(
            &'a self,
            index: Index,
            key: &'a str,
            member: &'a str,
            expires_at: u64,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.index_put(index, key, member, expires_at)
        }
        fn index_remove<'a>(
            &'a self,
            index: Index,
            key: &'a str,
            member: &'a str,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.index_remove(index, key, member)
        }
        fn index_members<'a>(
            &'a self,
            index: Index,
            key: &'a str,
        ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
            self.inner.index_members(index, key)
        }
    }

    #[tokio::test]
    async fn a_flood_of_probes_pings_the_store_once_a_second() {
        let store = Arc::new(Flaky::default());
        let readiness = Readiness::new().with_store(store.clone());
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let r = readiness.clone();
                tokio::spawn(async move { r.check().await })
            })
            .collect();
        for p in probes {
            assert!(p.await.unwrap().is_ready());
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1, "one ping for 50 probes");

        store.down.store(true, Ordering::SeqCst);
        assert!(
            readiness.check().await.is_ready(),
            "the answer of the last second"
        );
        tokio::time::sleep(STORE_CHECK_EVERY).await;
        let report = readiness.check().await;
        assert_eq!(report.failing().collect::<Vec<_>>(), [("store", "unavailable")]);
        assert_eq!(report.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }
}
