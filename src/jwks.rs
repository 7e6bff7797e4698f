//! The issuer's signing keys: fetched from its JWKS, refreshed on a schedule and on unknown
//! `kid`s, never taken from a token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use url::Url;

use crate::fetch::{self, FetchError};

/// How the key store fetches and refreshes.
///
/// ```
/// use a3_mcp_auth::jwks::JwksPolicy;
/// use std::time::Duration;
///
/// let policy = JwksPolicy::default().with_refetch_cooldown(Duration::from_secs(10));
/// assert_eq!(policy.refetch_cooldown, Duration::from_secs(10));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JwksPolicy {
    /// After a fetch, how long before an unknown `kid` may trigger another one.
    pub refetch_cooldown: Duration,
    /// Refresh interval when the JWKS response has no `Cache-Control: max-age`.
    pub default_refresh: Duration,
    /// Lower bound for a `max-age`-driven refresh interval.
    pub min_refresh: Duration,
    /// Upper bound for a `max-age`-driven refresh interval.
    pub max_refresh: Duration,
    /// Retry interval after a failed scheduled refresh.
    pub retry_after_failure: Duration,
    /// Keys beyond this count are ignored.
    pub max_keys: usize,
    /// Largest JWKS document accepted, in bytes.
    pub max_document_bytes: usize,
    /// Timeout of one fetch.
    pub timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        JwksPolicy {
            refetch_cooldown: Duration::from_secs(30),
            default_refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(24 * 3600),
            retry_after_failure: Duration::from_secs(30),
            max_keys: 64,
            max_document_bytes: 256 * 1024,
            timeout: Duration::from_secs(10),
        }
    }
}

impl JwksPolicy {
    /// Sets [`JwksPolicy::refetch_cooldown`].
    pub fn with_refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.refetch_cooldown = cooldown;
        self
    }

    /// Sets [`JwksPolicy::default_refresh`].
    pub fn with_default_refresh(mut self, every: Duration) -> Self {
        self.default_refresh = every;
        self
    }

    /// Sets [`JwksPolicy::retry_after_failure`].
    pub fn with_retry_after_failure(mut self, every: Duration) -> Self {
        self.retry_after_failure = every;
        self
    }

    /// Sets the bounds for `max-age`-driven refreshes.
    pub fn with_refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_refresh = min;
        self.max_refresh = max.max(min);
        self
    }
}

/// One usable verification key.
#[derive(Clone)]
pub struct VerificationKey {
    /// The key.
    pub key: DecodingKey,
    /// The one algorithm this key may verify (the JWK's `alg`, else RS256).
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookupError {
    /// The key set, freshly fetched, has no such key.
    UnknownKey,
    /// The issuer's keys could not be fetched; the token may be fine.
    Unavailable(Duration),
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<VerificationKey>>,
    /// The published JWKs, to notice a key replaced under the same `kid`.
    published: HashMap<String, Jwk>,
    /// Keys published without a `kid`; used only for tokens without one, and only if alone.
    anonymous: Vec<Arc<VerificationKey>>,
}

struct FetchState {
    /// When any fetch last started.
    last_fetch: Option<Instant>,
    /// When an unknown `kid` last caused a fetch: the cooldown counts from here, so a key
    /// rotated in just after a scheduled fetch is still picked up on its first use.
    last_refetch: Option<Instant>,
    last_ok: bool,
}

struct Inner {
    jwks_uri: Url,
    client: reqwest::Client,
    policy: JwksPolicy,
    keys: RwLock<Arc<KeySet>>,
    /// Single flight: one fetch at a time; waiters re-check before fetching again.
    fetch: tokio::sync::Mutex<FetchState>,
    /// Bumped whenever a key disappears, so caches of tokens verified with it drop them.
    generation: AtomicU64,
    fetches: AtomicU64,
    /// Since when every fetch has failed (`None` after a successful one). Kept apart from
    /// `fetch`, which a fetch holds for up to its timeout, so that readiness probes never wait.
    failing_since: std::sync::Mutex<Option<Instant>>,
    refresh_task: std::sync::OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The refresh task only holds a Weak, but would sleep on until its next turn.
        if let Some(task) = self.refresh_task.get() {
            task.abort();
        }
    }
}

/// The issuer's JWKS, kept current.
///
/// - fetched once when created (creation fails if that fetch fails);
/// - refreshed in the background on the document's `Cache-Control: max-age` (bounded), or every
///   [`JwksPolicy::default_refresh`];
/// - an unknown `kid` triggers one immediate refetch, then a cooldown: a burst of tokens with
///   unknown `kid`s costs at most one fetch per cooldown (single flight);
/// - a failed fetch keeps the last good keys;
/// - key count and document size are capped; keys never come from token headers
///   (`jku`, `x5u`, `jwk` are ignored).
///
/// ```
/// use a3_mcp_auth::jwks::{JwksKeyStore, JwksPolicy};
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let keys = JwksKeyStore::fetch(&issuer.jwks_uri(), JwksPolicy::default()).await.unwrap();
/// assert_eq!(keys.key_ids(), vec![issuer.current_kid()]);
/// # }
/// ```
#[derive(Clone)]
pub struct JwksKeyStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKeyStore")
            .field("jwks_uri", &self.inner.jwks_uri.as_str())
            .finish_non_exhaustive()
    }
}

impl JwksKeyStore {
    /// Fetches the key set at `jwks_uri` and starts its background refresh (which ends when the
    /// last clone of the store is dropped). Must be called inside a Tokio runtime.
    pub async fn fetch(jwks_uri: &str, policy: JwksPolicy) -> Result<Self, FetchError> {
        let url = Url::parse(jwks_uri).map_err(|e| FetchError::Invalid {
            url: jwks_uri.to_owned(),
            reason: e.to_string(),
        })?;
        fetch::check_secure(&url)?;
        let inner = Arc::new(Inner {
            client: fetch::http_client(policy.timeout),
            jwks_uri: url,
            policy,
            keys: RwLock::new(Arc::default()),
            fetch: tokio::sync::Mutex::new(FetchState {
                last_fetch: None,
                last_refetch: None,
                last_ok: false,
            }),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            failing_since: std::sync::Mutex::new(None),
            refresh_task: std::sync::OnceLock::new(),
        });
        let next = {
            let mut state = inner.fetch.lock().await;
            inner.fetch_now(&mut state, "startup").await?
        };
        let task = tokio::spawn(refresh_loop(Arc::downgrade(&inner), next));
        let _ = inner.refresh_task.set(task.abort_handle());
        Ok(JwksKeyStore { inner })
    }

    /// The key for a token's `kid`, refetching once if the `kid` is unknown.
    pub async fn key(&self, kid: Option<&str>) -> Result<Arc<VerificationKey>, KeyLookupError> {
        if let Some(key) = self.inner.lookup(kid) {
            return Ok(key);
        }
        let Some(kid) = kid else {
            // No kid to look for: a refetch cannot help.
            return Err(KeyLookupError::UnknownKey);
        };
        let cooldown = self.inner.policy.refetch_cooldown;
        // Detached, so that a request dropped mid-fetch (client gone, outer timeout) cannot cancel
        // the fetch and leave the cooldown armed over stale keys.
        let inner = self.inner.clone();
        let kid = kid.to_owned();
        tokio::spawn(async move { inner.refetch_for(&kid).await })
            .await
            .unwrap_or(Err(KeyLookupError::Unavailable(cooldown)))
    }

    /// How this store fetches and refreshes.
    pub fn policy(&self) -> &JwksPolicy {
        &self.inner.policy
    }

    /// The `kid`s currently held, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.snapshot().by_kid.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// How many times the JWKS has been fetched (for operators and tests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// How long every fetch of the JWKS has been failing, or `None` when the last one succeeded.
    /// The store keeps verifying with the last good keys meanwhile; what it cannot do is pick up
    /// a key the issuer rotated in. [`Readiness`](crate::health::Readiness) reads it (no fetch).
    ///
    /// ```
    /// use a3_mcp_auth::jwks::{JwksKeyStore, JwksPolicy};
    /// use a3_mcp_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let keys = JwksKeyStore::fetch(&issuer.jwks_uri(), JwksPolicy::default()).await.unwrap();
    /// assert_eq!(keys.failing_for(), None);
    /// # }
    /// ```
    pub fn failing_for(&self) -> Option<Duration> {
        let since = *self.inner.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|at| at.elapsed())
    }

    /// Changes whenever a key is removed from the set or replaced under its `kid`.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.inner.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Inner {
    fn lookup(&self, kid: Option<&str>) -> Option<Arc<VerificationKey>> {
        let set = self.keys.read().unwrap_or_else(|e| e.into_inner());
        match kid {
            Some(kid) => set.by_kid.get(kid).cloned(),
            // A3's reference servers take the only key when a token has no kid; with several
            // keys there is no safe choice.
            None => match (set.anonymous.as_slice(), set.by_kid.len()) {
                ([only], 0) => Some(only.clone()),
                ([], 1) => set.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }

    async fn refetch_for(&self, kid: &str) -> Result<Arc<VerificationKey>, KeyLookupError> {
        let mut state = self.fetch.lock().await;
        // Whoever held the lock before may have fetched the key already.
        if let Some(key) = self.lookup(Some(kid)) {
            return Ok(key);
        }
        let cooldown = self.policy.refetch_cooldown;
        if let Some(at) = state.last_refetch.filter(|at| at.elapsed() < cooldown) {
            crate::metrics::jwks_refetch_throttled();
            return Err(if state.last_ok {
                KeyLookupError::UnknownKey
            } else {
                KeyLookupError::Unavailable(cooldown.saturating_sub(at.elapsed()))
            });
        }
        state.last_refetch = Some(Instant::now());
        match self.fetch_now(&mut state, "unknown_kid").await {
            Ok(_) => self.lookup(Some(kid)).ok_or(KeyLookupError::UnknownKey),
            Err(_) => Err(KeyLookupError::Unavailable(cooldown)),
        }
    }

    /// Fetches and installs the key set (`trigger`: `startup`, `scheduled` or `unknown_kid`, for
    /// the metrics); returns when the next scheduled refresh is due.
    async fn fetch_now(&self, state: &mut FetchState, trigger: &'static str) -> Result<Duration, FetchError> {
        let started = Instant::now();
        let result = self.fetch_keys(state).await;
        crate::metrics::jwks_fetch(trigger, result.is_ok(), started);
        let mut failing_since = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => *failing_since = None,
            Err(_) => *failing_since = failing_since.or(Some(started)),
        }
        result
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<Duration, FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result =
            fetch::get_json::<JwkSet>(&self.client, &self.jwks_uri, self.policy.max_document_bytes).await;
        state.last_fetch = Some(Instant::now());
        let (set, headers) = match result {
            Ok(ok) => ok,
            Err(e) => {
                state.last_ok = false;
                tracing::warn!(error = %e, "JWKS fetch failed; keeping the last good keys");
                return Err(e);
            }
        };
        let parsed = self.parse(set);
        if parsed.by_kid.is_empty() && parsed.anonymous.is_empty() {
            state.last_ok = false;
            let e = FetchError::Invalid {
                url: self.jwks_uri.to_string(),
                reason: "no usable signing key".into(),
            };
            tracing::warn!(error = %e, "JWKS has no usable key; keeping the last good keys");
            return Err(e);
        }
        state.last_ok = true;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        // A key that disappeared or changed under its kid: tokens verified with it must be
        // verified again.
        let changed = keys
            .published
            .iter()
            .any(|(kid, jwk)| parsed.published.get(kid) != Some(jwk));
        if changed || !keys.anonymous.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        tracing::debug!(
            keys = parsed.by_kid.len() + parsed.anonymous.len(),
            "JWKS installed"
        );
        *keys = Arc::new(parsed);
        Ok(max_age(&headers)
            .map(|age| age.clamp(self.policy.min_refresh, self.policy.max_refresh))
            .unwrap_or(self.policy.default_refresh))
    }

    fn parse(&self, set: JwkSet) -> KeySet {
        let mut out = KeySet::default();
        for jwk in set.keys.iter() {
            if out.by_kid.len() + out.anonymous.len() >= self.policy.max_keys {
                tracing::warn!(
                    max = self.policy.max_keys,
                    "JWKS has more keys than allowed; ignoring the rest"
                );
                break;
            }
            if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            // RSA only: A3 signs access tokens with RS256.
            if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
                continue;
            }
            let algorithm = match jwk.common.key_algorithm {
                None => Algorithm::RS256,
                Some(alg) => match rsa_algorithm(alg) {
                    Some(a) => a,
                    None => continue,
                },
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let entry = Arc::new(VerificationKey { key, algorithm });
            match &jwk.common.key_id {
                Some(kid) => {
                    if !out.by_kid.contains_key(kid) {
                        out.by_kid.insert(kid.clone(), entry);
                        out.published.insert(kid.clone(), jwk.clone());
                    }
                }
                None => out.anonymous.push(entry),
            }
        }
        out
    }
}

fn rsa_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    match alg {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        _ => None,
    }
}

/// `Cache-Control: max-age=N` (ignoring everything else in the header).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// No schedule, however configured, fetches more often than this.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

async fn refresh_loop(inner: Weak<Inner>, mut next: Duration) {
    loop {
        tokio::time::sleep(next.max(MIN_INTERVAL)).await;
        let Some(inner) = inner.upgrade() else { return };
        let mut state = inner.fetch.lock().await;
        // An unknown-kid refetch may have just happened; don't repeat it.
        if state.last_ok
            && state
                .last_fetch
                .is_some_and(|at| at.elapsed() < inner.policy.min_refresh)
        {
            next = inner.policy.min_refresh.max(MIN_INTERVAL);
            continue;
        }
        next = match inner.fetch_now(&mut state, "scheduled").await {
            Ok(next) => next,
            Err(_) => inner.policy.retry_after_failure,
        }
        .max(MIN_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn reads_max_age() {
        let mut h = HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, must-revalidate"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=abc"),
        );
        assert_eq!(max_age(&h), None);
    }
}
