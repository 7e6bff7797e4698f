//! Where the bridge keeps registered clients, grants, tokens, codes and transactions.
//!
//! The [`Store`] trait is a namespaced key-value store with per-entry expiry and an atomic
//! [`Store::take`] (get-and-delete), narrow enough for Redis (`SET … EXAT`, `GET`, `GETDEL`, `DEL`),
//! plus [`Index`]es: sets of members with their own expiry (a Redis sorted set scored by expiry),
//! which say which grants a registered client or a user holds.
//! Values are opaque bytes (JSON written by the bridge; upstream tokens inside are already
//! encrypted); keys of codes are SHA-256 hashes, never the codes themselves, and a grant holds
//! only hashes of our tokens.
//!
//! | store | for | chosen by |
//! |---|---|---|
//! | [`RedbStore`] | one process (the default): one embedded file, survives restarts | `STORE_PATH` (default [`DEFAULT_STORE_PATH`](super::DEFAULT_STORE_PATH)) |
//! | `RedisStore` (cargo feature `redis`) | several replicas sharing one Redis | `STORE_URL`, `STORE_PREFIX` |
//! | [`MemoryStore`] | tests | [`DcrBridgeBuilder::store`](super::DcrBridgeBuilder::store) |
//! | your own [`Store`] | anything else | [`DcrBridgeBuilder::store`](super::DcrBridgeBuilder::store) |

mod memory;
mod metered;
mod redb;
#[cfg(feature = "redis")]
mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DcrError;
use crate::config::{A3Config, ConfigError};
use crate::oauth::unix_now;

pub use self::memory::MemoryStore;
pub(crate) use self::metered::Metered;
pub use self::redb::RedbStore;
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};

/// A boxed future, as [`Store`] methods return (so that `Arc<dyn Store>` works). An
/// implementation writes its method bodies as `Box::pin(async move { … })`; see [`Store`].
///
/// ```
/// use a3_mcp_auth::dcr::store::{BoxFuture, MemoryStore, Namespace, Store, StoreError};
///
/// /// Whether anything at all is registered, whatever the store.
/// fn has_clients(store: &dyn Store) -> BoxFuture<'_, Result<bool, StoreError>> {
///     Box::pin(async move { Ok(store.count(Namespace::Client).await? > 0) })
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert!(!has_clients(&MemoryStore::new()).await.unwrap());
/// # }
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kinds of entries the bridge stores. Each is a separate keyspace.
///
/// ```
/// use a3_mcp_auth::dcr::store::{MemoryStore, Namespace, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// // A status page: how many entries of each kind the bridge holds.
/// for ns in Namespace::ALL {
///     println!("{:>13}: {}", ns.name(), store.count(ns).await.unwrap());
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Namespace {
    /// Dynamically registered clients, by client id.
    Client,
    /// Grants (a user's authorization of a client, with the sealed A3 tokens), by grant id.
    Grant,
    /// Hashes of our access tokens → grant, as earlier versions stored them; read for the tokens
    /// they issued until those expire. (A grant now holds the hashes of its own tokens.)
    AccessToken,
    /// Hashes of our refresh tokens → grant, as earlier versions stored them; read for the tokens
    /// they issued until those are rotated or expire.
    RefreshToken,
    /// Hashes of our authorization codes → grant (single use).
    Code,
    /// Hashes of redeemed authorization codes, to detect replays.
    UsedCode,
    /// Upstream authorization transactions by A3 `state` (single use).
    Transaction,
    /// Client ID Metadata Documents fetched for URL client ids, validated, by the SHA-256 of
    /// the URL (and, briefly, why one could not be used).
    ClientMetadata,
}

impl Namespace {
    /// Every namespace.
    pub const ALL: [Namespace; 8] = [
        Namespace::Client,
        Namespace::Grant,
        Namespace::AccessToken,
        Namespace::RefreshToken,
        Namespace::Code,
        Namespace::UsedCode,
        Namespace::Transaction,
        Namespace::ClientMetadata,
    ];

    /// A short stable name (table name, key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Client => "client",
            Namespace::Grant => "grant",
            Namespace::AccessToken => "access_token",
            Namespace::RefreshToken => "refresh_token",
            Namespace::Code => "code",
            Namespace::UsedCode => "used_code",
            Namespace::Transaction => "transaction",
            Namespace::ClientMetadata => "client_metadata",
        }
    }
}

/// A secondary index: under each key, a set of members (grant ids), each with its own expiry.
/// The bridge keeps one member per grant under its client and under its user, updated with the
/// grant under the grant's lock, so that it can tell when a client's last grant is gone and bound
/// the grants of one user.
///
/// ```
/// use a3_mcp_auth::dcr::store::{Index, MemoryStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs();
/// let soon = now + 60;
/// store.index_put(Index::GrantsByClient, "client-1", "grant-a", soon).await.unwrap();
/// // An operator's question: which grants does client-1 hold, and until when?
/// for entry in store.index_members(Index::GrantsByClient, "client-1").await.unwrap() {
///     println!("{} until {}", entry.member, entry.expires_at);
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Index {
    /// The grants of a registered client, by client id.
    GrantsByClient,
    /// The grants of a user, by [`subject_key`] of the token's subject (a hash, so that user
    /// ids such as e-mail addresses do not appear in key names).
    GrantsBySubject,
}

impl Index {
    /// Every index.
    pub const ALL: [Index; 2] = [Index::GrantsByClient, Index::GrantsBySubject];

    /// A short stable name (key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Index::GrantsByClient => "grants_by_client",
            Index::GrantsBySubject => "grants_by_subject",
        }
    }
}

/// The key of a user in [`Index::GrantsBySubject`]: the base64url SHA-256 of the subject.
///
/// ```
/// use a3_mcp_auth::dcr::store::subject_key;
///
/// let key = subject_key("janedoe@test.com");
/// assert_eq!(key.len(), 43);
/// assert!(!key.contains('@'));
/// ```
pub fn subject_key(subject: &str) -> String {
    crate::oauth::sha256_b64url(subject)
}

/// A member of an [`Index`] and when it expires (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexEntry {
    /// The member (a grant id).
    pub member: String,
    /// When it expires.
    pub expires_at: u64,
}

impl IndexEntry {
    /// An entry.
    pub fn new(member: impl Into<String>, expires_at: u64) -> Self {
        IndexEntry {
            member: member.into(),
            expires_at,
        }
    }
}

/// A token bucket of a rate limit, as [`Store::take_tokens`] keeps it: `burst` tokens when full,
/// one more every `refill`.
///
/// ```
/// use std::time::Duration;
/// use a3_mcp_auth::dcr::store::{MemoryStore, Store, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bucket = TokenBucket::new("register:addr:192.0.2.7", 10, Duration::from_secs(60));
/// // A store that only this process uses keeps no buckets: the bridge keeps them in memory.
/// assert_eq!(MemoryStore::new().take_tokens(&[bucket], true).await.unwrap(), None);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenBucket {
    /// What the bucket counts (the limit, the kind of caller, the caller's address).
    pub key: String,
    /// Tokens when full.
    pub burst: u32,
    /// Time to earn one token back.
    pub refill: Duration,
}

impl TokenBucket {
    /// A bucket.
    pub fn new(key: impl Into<String>, burst: u32, refill: Duration) -> Self {
        TokenBucket {
            key: key.into(),
            burst,
            refill,
        }
    }
}

/// A storage failure. The message never contains stored values or keys (keys of tokens are
/// hashes, but client ids and grant ids are not). The bridge answers it with
/// `503 temporarily_unavailable`.
///
/// ```
/// use a3_mcp_auth::dcr::store::StoreError;
///
/// /// How a store of your own reports its backend's failures: what failed, not what was stored.
/// fn backend_error(e: std::io::Error) -> StoreError {
///     StoreError(format!("state file: {}", e.kind()))
/// }
/// let e = backend_error(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
/// assert_eq!(e.to_string(), "store error: state file: permission denied");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("store error: {0}")]
pub struct StoreError(pub String);

/// Storage behind the DCR bridge.
///
/// `expires_at` is a Unix time in seconds (`None`: no expiry); an expired entry must read as absent
/// even before it is purged. [`Store::take`] must be atomic: of two concurrent takes of one key, at
/// most one gets the value (single-use codes and transactions rely on it).
///
/// A store of your own, here one that counts the bridge's writes and keeps the entries in a
/// [`MemoryStore`]:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use a3_mcp_auth::dcr::store::{BoxFuture, Index, IndexEntry, MemoryStore, Namespace, Store, StoreError};
///
/// #[derive(Default)]
/// struct Counted {
///     inner: MemoryStore,
///     writes: AtomicU64,
/// }
///
/// impl Store for Counted {
///     fn put<'a>(&'a self, ns: Namespace, key: &'a str, value: Vec<u8>, expires_at: Option<u64>)
///         -> BoxFuture<'a, Result<(), StoreError>> {
///         self.writes.fetch_add(1, Ordering::Relaxed);
///         self.inner.put(ns, key, value, expires_at)
///     }
///     fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
///         self.inner.get(ns, key)
///     }
///     fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
///         self.inner.take(ns, key)
///     }
///     fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
///         self.inner.delete(ns, key)
///     }
///     fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
///         self.inner.count(ns)
///     }
///     fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
///         self.inner.purge_expired()
///     }
///     fn index_put<'a>(&'a self, index: Index, key: &'a str, member: &'a str, expires_at: u64)
///         -> BoxFuture<'a, Result<(), StoreError>> {
///         self.writes.fetch_add(1, Ordering::Relaxed);
///         self.inner.index_put(index, key, member, expires_at)
///     }
///     fn index_remove<'a>(&'a self, index: Index, key: &'a str, member: &'a str)
///         -> BoxFuture<'a, Result<(), StoreError>> {
///         self.inner.index_remove(index, key, member)
///     }
///     fn index_members<'a>(&'a self, index: Index, key: &'a str)
///         -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
///         self.inner.index_members(index, key)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Counted::default();
/// store.put(Namespace::Code, "k", b"v".to_vec(), None).await.unwrap();
/// assert_eq!(store.take(Namespace::Code, "k").await.unwrap(), Some(b"v".to_vec()));
/// assert_eq!(store.take(Namespace::Code, "k").await.unwrap(), None, "take is single use");
/// assert_eq!(store.writes.load(Ordering::Relaxed), 1);
/// // DcrBridge::builder(&config).store(store) puts the bridge on it.
/// # }
/// ```
pub trait Store: Send + Sync + 'static {
    /// Inserts or replaces an entry.
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Reads an entry that has not expired.
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// Atomically reads and deletes an entry that has not expired.
    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
    /// Deletes an entry (absent is fine).
    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// How many entries a namespace holds (expired ones not yet purged may be counted).
    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Removes expired entries and expired index members.
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Adds `member` under `key` of `index` with the given expiry (Unix seconds), or moves the
    /// expiry of a member already there. An expired member must read as absent.
    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes `member` from under `key` (absent is fine).
    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The members under `key` that have not expired, soonest expiry first.
    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>>;

    /// The keys of live entries of `ns` that sort after `after` (byte order), the first `limit`
    /// of them in order: one page of a listing. The bridge lists only [`Namespace::Client`] with
    /// it (the admin API's list of registered clients, which `max_clients` bounds). The default
    /// answers that the store cannot list; a store of your own overrides it to support that
    /// listing.
    ///
    /// ```
    /// use a3_mcp_auth::dcr::store::{MemoryStore, Namespace, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = MemoryStore::new();
    /// for id in ["c", "a", "b"] {
    ///     store.put(Namespace::Client, id, b"{}".to_vec(), None).await.unwrap();
    /// }
    /// assert_eq!(store.keys(Namespace::Client, None, 2).await.unwrap(), ["a", "b"]);
    /// assert_eq!(store.keys(Namespace::Client, Some("b"), 2).await.unwrap(), ["c"]);
    /// # }
    /// ```
    fn keys<'a>(
        &'a self,
        ns: Namespace,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let _ = (ns, after, limit);
        Box::pin(async { Err(StoreError("this store cannot list its entries".into())) })
    }

    /// Tries to take the lock `name` for at most `ttl`, for every process sharing this store.
    ///
    /// `Ok(Some(token))`: taken; give `token` back to [`Store::unlock`]. `Ok(None)`: another
    /// holder has it; try again later. The bridge takes it (inside its own per-process mutex)
    /// around refreshing or revoking one grant's A3 tokens, so that a refresh happens once across
    /// replicas. The default suits stores that only one process uses: every call succeeds, as the
    /// per-process mutex already serialises the callers. A shared store (such as Redis)
    /// overrides it and [`Store::unlock`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use a3_mcp_auth::dcr::store::{MemoryStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = MemoryStore::new();
    /// let token = store.lock("grant:g1", Duration::from_secs(30)).await.unwrap().unwrap();
    /// store.unlock("grant:g1", &token).await.unwrap();
    /// # }
    /// ```
    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let _ = (name, ttl);
        Box::pin(async { Ok(Some(String::new())) })
    }

    /// Releases the lock `name` if `token` (from [`Store::lock`]) still holds it.
    fn unlock<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (name, token);
        Box::pin(async { Ok(()) })
    }

    /// Rate limits shared by every process using this store: whether every bucket of `buckets`
    /// holds a token and, if so and `take` is set, takes one from each (all or none, atomically).
    ///
    /// `Ok(None)` (the default): this store does not keep rate limits, and the bridge keeps them
    /// in its own memory, per process. A shared store (such as Redis) overrides it, so that
    /// replicas enforce one limit together.
    fn take_tokens<'a>(
        &'a self,
        buckets: &'a [TokenBucket],
        take: bool,
    ) -> BoxFuture<'a, Result<Option<bool>, StoreError>> {
        let _ = (buckets, take);
        Box::pin(async { Ok(None) })
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).put(ns, key, value, expires_at)
    }
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        (**self).get(ns, key)
    }
    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        (**self).take(ns, key)
    }
    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).delete(ns, key)
    }
    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
        (**self).count(ns)
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).purge_expired()
    }
    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).index_put(index, key, member, expires_at)
    }
    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).index_remove(index, key, member)
    }
    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
        (**self).index_members(index, key)
    }
    fn keys<'a>(
        &'a self,
        ns: Namespace,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        (**self).keys(ns, after, limit)
    }
    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        (**self).lock(name, ttl)
    }
    fn unlock<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).unlock(name, token)
    }
    fn take_tokens<'a>(
        &'a self,
        buckets: &'a [TokenBucket],
        take: bool,
    ) -> BoxFuture<'a, Result<Option<bool>, StoreError>> {
        (**self).take_tokens(buckets, take)
    }
}

/// The page [`Store::keys`] answers, from every live key in any order.
fn page_of(mut keys: Vec<String>, after: Option<&str>, limit: usize) -> Vec<String> {
    keys.retain(|k| after.is_none_or(|a| k.as_str() > a));
    keys.sort_unstable();
    keys.truncate(limit);
    keys
}

/// Whether an entry expiring at `expires_at` may still be read.
fn live(expires_at: Option<u64>) -> bool {
    expires_at.is_none_or(|t| t > unix_now())
}

/// The prefix of every key in a shared store unless `STORE_PREFIX` says otherwise. Servers that
/// share one Redis need one prefix each.
///
/// ```
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::store::{DEFAULT_STORE_PREFIX, Namespace};
///
/// let config = A3Config::builder().issuer_path("env-1").build().unwrap();
/// let prefix = config.store_prefix().unwrap_or(DEFAULT_STORE_PREFIX);
/// // For an operator: list the registered clients of this server.
/// println!("redis-cli --scan --pattern '{prefix}{}:*'", Namespace::Client.name());
/// ```
pub const DEFAULT_STORE_PREFIX: &str = "a3mcp:";

/// The bridge's entries are JSON; these read and write them typed, over any store.
impl dyn Store {
    /// Reads an entry; one that no longer parses reads as absent.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        ns: Namespace,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .get(ns, key)
            .await?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// [`Store::take`]s an entry; one that no longer parses reads as absent.
    pub(crate) async fn take_json<T: DeserializeOwned>(
        &self,
        ns: Namespace,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self
            .take(ns, key)
            .await?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Writes an entry that expires `ttl` from now (`None`: never).
    pub(crate) async fn put_json<T: Serialize>(
        &self,
        ns: Namespace,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError(e.to_string()))?;
        self.put(ns, key, bytes, ttl.map(crate::oauth::expiry_after))
            .await
    }
}

/// Opens the shared store that `STORE_URL` names, with `STORE_PREFIX` and the `STORE_TLS_*`
/// files of `config`.
pub(crate) async fn open_shared(config: &A3Config, url: &str) -> Result<Arc<dyn Store>, DcrError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    match scheme {
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis+unix" | "unix" | "redis+sentinel" | "rediss+sentinel" => {
            let read = |name: &'static str, path: &std::path::Path| {
                std::fs::read(path).map_err(|e| ConfigError::Invalid {
                    name,
                    reason: format!("cannot read {}: {}", path.display(), e.kind()),
                })
            };
            let mut builder =
                RedisStore::builder(url).prefix(config.store_prefix().unwrap_or(DEFAULT_STORE_PREFIX));
            if let Some(ca) = config.store_tls_ca_file() {
                builder = builder.tls_ca_pem(read("STORE_TLS_CA_FILE", ca)?);
            }
            if let Some((cert, key)) = config.store_tls_client_cert_files() {
                builder = builder.tls_client_cert_pem(
                    read("STORE_TLS_CERT_FILE", cert)?,
                    read("STORE_TLS_KEY_FILE", key)?,
                );
            }
            Ok(Arc::new(builder.connect().await?))
        }
        _ => {
            let _ = config;
            let reason = if cfg!(feature = "redis") {
                "expected redis://host:port/db, rediss://host:port/db or redis+sentinel://host:port/master-name/db"
            } else {
                "this build has no shared store: enable the cargo feature `redis`"
            };
            Err(ConfigError::Invalid {
                name: "STORE_URL",
                reason: reason.into(),
            }
            .into())
        }
    }
}

/// Purges expired entries every five minutes while the store is in use.
pub(crate) fn spawn_purger(store: Weak<dyn Store>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else { return };
            if let Err(e) = store.purge_expired().await {
                tracing::warn!(error = %e, "purging expired DCR entries failed");
            }
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract every store meets (run by each backend's tests).
    pub(crate) async fn exercise(store: &dyn Store) {
        let now = unix_now();
        store
            .put(Namespace::Code, "a", b"1".to_vec(), Some(now + 60))
            .await
            .unwrap();
        store
            .put(Namespace::Code, "old", b"2".to_vec(), Some(now - 1))
            .await
            .unwrap();
        store
            .put(Namespace::Client, "a", b"3".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(
            store.get(Namespace::Code, "a").await.unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            store.get(Namespace::Code, "old").await.unwrap(),
            None,
            "expired reads as absent"
        );
        assert_eq!(
            store.get(Namespace::Client, "a").await.unwrap(),
            Some(b"3".to_vec()),
            "namespaces are separate"
        );
        assert_eq!(
            store.take(Namespace::Code, "a").await.unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(
            store.take(Namespace::Code, "a").await.unwrap(),
            None,
            "take is single use"
        );
        store
            .put(Namespace::Client, "c", b"4".to_vec(), Some(now + 60))
            .await
            .unwrap();
        store
            .put(Namespace::Client, "b", b"5".to_vec(), Some(now - 1))
            .await
            .unwrap();
        assert_eq!(
            store.keys(Namespace::Client, None, 10).await.unwrap(),
            ["a", "c"],
            "live keys, in order"
        );
        assert_eq!(store.keys(Namespace::Client, None, 1).await.unwrap(), ["a"]);
        assert_eq!(store.keys(Namespace::Client, Some("a"), 10).await.unwrap(), ["c"]);
        assert!(
            store
                .keys(Namespace::Client, Some("c"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        store.delete(Namespace::Client, "c").await.unwrap();
        store.delete(Namespace::Client, "a").await.unwrap();
        assert_eq!(store.get(Namespace::Client, "a").await.unwrap(), None);
        store.purge_expired().await.unwrap();
        assert_eq!(store.count(Namespace::Code).await.unwrap(), 0);

        // Indexes: members with their own expiry, soonest first; expired ones read as absent.
        let by_client = Index::GrantsByClient;
        store.index_put(by_client, "c1", "g2", now + 120).await.unwrap();
        store.index_put(by_client, "c1", "g1", now + 60).await.unwrap();
        store.index_put(by_client, "c1", "old", now - 1).await.unwrap();
        store.index_put(by_client, "c2", "g3", now + 60).await.unwrap();
        store
            .index_put(Index::GrantsBySubject, "c1", "g9", now + 60)
            .await
            .unwrap();
        assert_eq!(
            store.index_members(by_client, "c1").await.unwrap(),
            [IndexEntry::new("g1", now + 60), IndexEntry::new("g2", now + 120)]
        );
        // Moving a member's expiry.
        store.index_put(by_client, "c1", "g1", now + 180).await.unwrap();
        assert_eq!(
            store.index_members(by_client, "c1").await.unwrap(),
            [IndexEntry::new("g2", now + 120), IndexEntry::new("g1", now + 180)]
        );
        store.index_remove(by_client, "c1", "g2").await.unwrap();
        store.index_remove(by_client, "c1", "absent").await.unwrap();
        assert_eq!(
            store.index_members(by_client, "c1").await.unwrap(),
            [IndexEntry::new("g1", now + 180)]
        );
        assert_eq!(
            store.index_members(Index::GrantsBySubject, "c1").await.unwrap(),
            [IndexEntry::new("g9", now + 60)],
            "indexes are separate"
        );
        store.index_remove(by_client, "c2", "g3").await.unwrap();
        assert_eq!(store.index_members(by_client, "c2").await.unwrap(), []);
        store.purge_expired().await.unwrap();
        assert_eq!(store.index_members(by_client, "nobody").await.unwrap(), []);
    }

    #[tokio::test]
    async fn concurrent_takes_yield_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let stores: Vec<Arc<dyn Store>> = vec![
            Arc::new(MemoryStore::new()),
            Arc::new(RedbStore::open(dir.path().join("t.redb")).unwrap()),
        ];
        for store in stores {
            store
                .put(Namespace::Code, "c", b"x".to_vec(), None)
                .await
                .unwrap();
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let s = store.clone();
                    tokio::spawn(async move { s.take(Namespace::Code, "c").await.unwrap().is_some() })
                })
                .collect();
            let mut winners = 0;
            for t in tasks {
                winners += t.await.unwrap() as u32;
            }
            assert_eq!(winners, 1);
        }
    }
}
