//! Where the bridge keeps registered clients, grants, tokens, codes and transactions.
//!
//! The [`Store`] trait is a namespaced key-value store with per-entry expiry and an atomic
//! [`Store::take`] (get-and-delete), narrow enough for Redis (`SET … EXAT`, `GET`, `GETDEL`, `DEL`).
//! Values are opaque bytes (JSON written by the bridge; upstream tokens inside are already
//! encrypted); keys of tokens and codes are SHA-256 hashes, never the values themselves.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::oauth::unix_now;

use moka::sync::Cache;

/// A boxed future, as [`Store`] methods return (so that `Arc<dyn Store>` works).
///
/// ```
/// use a3_mcp_auth::dcr::BoxFuture;
/// let f: BoxFuture<'static, u8> = Box::pin(async { 1 });
/// # let _ = f;
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kinds of entries the bridge stores. Each is a separate keyspace.
///
/// ```
/// use a3_mcp_auth::dcr::Namespace;
/// assert_eq!(Namespace::Client.name(), "client");
/// assert_eq!(Namespace::ALL.len(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Namespace {
    /// Dynamically registered clients, by client id.
    Client,
    /// Grants (a user's authorization of a client, with the sealed A3 tokens), by grant id.
    Grant,
    /// Hashes of our access tokens → grant.
    AccessToken,
    /// Hashes of our refresh tokens → grant.
    RefreshToken,
    /// Hashes of our authorization codes → grant (single use).
    Code,
    /// Hashes of redeemed authorization codes, to detect replays.
    UsedCode,
    /// Upstream authorization transactions by A3 `state` (single use).
    Transaction,
}

impl Namespace {
    /// Every namespace.
    pub const ALL: [Namespace; 7] = [
        Namespace::Client,
        Namespace::Grant,
        Namespace::AccessToken,
        Namespace::RefreshToken,
        Namespace::Code,
        Namespace::UsedCode,
        Namespace::Transaction,
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
        }
    }
}

/// A storage failure. The message never contains stored values.
///
/// ```
/// let e = a3_mcp_auth::dcr::StoreError("disk full".into());
/// assert_eq!(e.to_string(), "store error: disk full");
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
/// ```
/// use a3_mcp_auth::dcr::{MemoryStore, Namespace, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryStore::new();
/// store.put(Namespace::Code, "k", b"v".to_vec(), None).await.unwrap();
/// assert_eq!(store.take(Namespace::Code, "k").await.unwrap(), Some(b"v".to_vec()));
/// assert_eq!(store.take(Namespace::Code, "k").await.unwrap(), None);
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
    /// Removes expired entries.
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>>;

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
    /// use a3_mcp_auth::dcr::{MemoryStore, Store};
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
    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        (**self).lock(name, ttl)
    }
    fn unlock<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).unlock(name, token)
    }
}

fn live(expires_at: Option<u64>) -> bool {
    expires_at.is_none_or(|t| t > unix_now())
}

#[derive(Clone)]
struct MemEntry {
    value: Arc<Vec<u8>>,
    expires_at: Option<u64>,
}

struct MemExpiry;

impl moka::Expiry<String, MemEntry> for MemExpiry {
    fn expire_after_create(&self, _k: &String, v: &MemEntry, _now: std::time::Instant) -> Option<Duration> {
        v.expires_at
            .map(|t| Duration::from_secs(t.saturating_sub(unix_now())))
    }
    fn expire_after_update(
        &self,
        k: &String,
        v: &MemEntry,
        now: std::time::Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, v, now)
    }
}

/// An in-memory [`Store`] (moka caches with per-entry expiry). Everything is lost on restart:
/// hosts must register again, so prefer [`RedbStore`] outside tests.
///
/// ```
/// let store = a3_mcp_auth::dcr::MemoryStore::new();
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    caches: Arc<[Cache<String, MemEntry>; 7]>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store holding at most 1 000 000 entries per namespace.
    pub fn new() -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(1_000_000)
                .expire_after(MemExpiry)
                .build()
        };
        MemoryStore {
            caches: Arc::new([cache(), cache(), cache(), cache(), cache(), cache(), cache()]),
        }
    }

    fn cache(&self, ns: Namespace) -> &Cache<String, MemEntry> {
        let i = Namespace::ALL
            .iter()
            .position(|n| *n == ns)
            .expect("every namespace is listed");
        &self.caches[i]
    }
}

impl Store for MemoryStore {
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if live(expires_at) {
            self.cache(ns).insert(
                key.to_owned(),
                MemEntry {
                    value: Arc::new(value),
                    expires_at,
                },
            );
        } else {
            self.cache(ns).invalidate(key);
        }
        Box::pin(async { Ok(()) })
    }
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let v = self
            .cache(ns)
            .get(key)
            .filter(|e| live(e.expires_at))
            .map(|e| e.value.to_vec());
        Box::pin(async { Ok(v) })
    }
    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        // moka's remove is atomic: one caller gets the entry.
        let v = self
            .cache(ns)
            .remove(key)
            .filter(|e| live(e.expires_at))
            .map(|e| e.value.to_vec());
        Box::pin(async { Ok(v) })
    }
    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.cache(ns).invalidate(key);
        Box::pin(async { Ok(()) })
    }
    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
        let cache = self.cache(ns);
        cache.run_pending_tasks();
        let n = cache.entry_count();
        Box::pin(async move { Ok(n) })
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        for c in self.caches.iter() {
            c.run_pending_tasks();
        }
        Box::pin(async { Ok(()) })
    }
}

type Table = redb::TableDefinition<'static, &'static str, &'static [u8]>;

const TABLES: [Table; 7] = [
    redb::TableDefinition::new("client"),
    redb::TableDefinition::new("grant"),
    redb::TableDefinition::new("access_token"),
    redb::TableDefinition::new("refresh_token"),
    redb::TableDefinition::new("code"),
    redb::TableDefinition::new("used_code"),
    redb::TableDefinition::new("transaction"),
];

fn table(ns: Namespace) -> Table {
    TABLES[Namespace::ALL
        .iter()
        .position(|n| *n == ns)
        .expect("every namespace is listed")]
}

/// Entry layout on disk: 8 bytes big-endian expiry (0 = none), then the value.
fn encode(value: &[u8], expires_at: Option<u64>) -> Vec<u8> {
    let mut out = expires_at.unwrap_or(0).to_be_bytes().to_vec();
    out.extend_from_slice(value);
    out
}

fn decode(raw: &[u8]) -> Option<(Option<u64>, &[u8])> {
    let (head, value) = raw.split_at_checked(8)?;
    let t = u64::from_be_bytes(head.try_into().ok()?);
    Some(((t != 0).then_some(t), value))
}

/// The persistent [`Store`]: one embedded [redb](https://docs.rs/redb) file. Registered clients
/// and grants survive restarts, so VS Code keeps its client id and its tokens.
///
/// redb transactions block (a commit syncs the file), so every call runs on tokio's blocking pool.
///
/// ```
/// use a3_mcp_auth::dcr::{Namespace, RedbStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let store = RedbStore::open(dir.path().join("a3-mcp-auth.redb")).unwrap();
/// store.put(Namespace::Client, "c1", b"{}".to_vec(), None).await.unwrap();
/// assert_eq!(store.count(Namespace::Client).await.unwrap(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<redb::Database>,
    /// Committed write transactions of `take`/`delete` (observed by tests).
    writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedbStore {
    /// Opens (or creates, with its parent directory) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = redb::Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        for t in TABLES {
            tx.open_table(t).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(RedbStore {
            db: Arc::new(db),
            writes: Arc::default(),
        })
    }

    fn blocking<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&redb::Database) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'a, Result<T, StoreError>> {
        let db = self.db.clone();
        Box::pin(async move { tokio::task::spawn_blocking(move || f(&db)).await.map_err(err)? })
    }

    fn take_or_get(
        &self,
        ns: Namespace,
        key: &str,
        remove: bool,
    ) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let key = key.to_owned();
        let writes = self.writes.clone();
        self.blocking(move |db| {
            use redb::ReadableDatabase;
            let read = || -> Result<Option<Vec<u8>>, StoreError> {
                let tx = db.begin_read().map_err(err)?;
                let t = tx.open_table(table(ns)).map_err(err)?;
                Ok(t.get(key.as_str()).map_err(err)?.map(|v| v.value().to_vec()))
            };
            let raw = if remove {
                // A miss costs no write transaction (a durable commit): unauthenticated requests
                // with unknown codes, states or tokens must stay cheap.
                if read()?.is_none() {
                    return Ok(None);
                }
                let tx = db.begin_write().map_err(err)?;
                let raw = {
                    let mut t = tx.open_table(table(ns)).map_err(err)?;
                    t.remove(key.as_str()).map_err(err)?.map(|v| v.value().to_vec())
                };
                if raw.is_some() {
                    tx.commit().map_err(err)?;
                    writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    tx.abort().map_err(err)?;
                }
                raw
            } else {
                read()?
            };
            Ok(raw.and_then(|raw| match decode(&raw) {
                Some((exp, value)) if live(exp) => Some(value.to_vec()),
                _ => None,
            }))
        })
    }
}

impl Store for RedbStore {
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            {
                let mut t = tx.open_table(table(ns)).map_err(err)?;
                t.insert(key.as_str(), encode(&value, expires_at).as_slice())
                    .map_err(err)?;
            }
            tx.commit().map_err(err)
        })
    }
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.take_or_get(ns, key, false)
    }
    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        // One write transaction: redb serialises writers, so only one taker sees the entry.
        self.take_or_get(ns, key, true)
    }
    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let fut = self.take_or_get(ns, key, true);
        Box::pin(async move { fut.await.map(|_| ()) })
    }
    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.blocking(move |db| {
            use redb::{ReadableDatabase, ReadableTableMetadata};
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(table(ns)).map_err(err)?;
            t.len().map_err(err)
        })
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.blocking(move |db| {
            let now = unix_now();
            let tx = db.begin_write().map_err(err)?;
            for def in TABLES {
                let mut t = tx.open_table(def).map_err(err)?;
                t.retain(|_, raw| matches!(decode(raw), Some((exp, _)) if exp.is_none_or(|e| e > now)))
                    .map_err(err)?;
            }
            tx.commit().map_err(err)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract every store meets (also run against Redis in `redis_store`).
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
        store.delete(Namespace::Client, "a").await.unwrap();
        assert_eq!(store.get(Namespace::Client, "a").await.unwrap(), None);
        store.purge_expired().await.unwrap();
        assert_eq!(store.count(Namespace::Code).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn memory_store_contract() {
        exercise(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn redb_store_contract_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            exercise(&store).await;
            store
                .put(Namespace::Grant, "g", b"kept".to_vec(), None)
                .await
                .unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(
            store.get(Namespace::Grant, "g").await.unwrap(),
            Some(b"kept".to_vec())
        );
    }

    #[tokio::test]
    async fn redb_take_and_delete_of_a_missing_key_do_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("w.redb")).unwrap();
        for _ in 0..5 {
            assert_eq!(store.take(Namespace::Code, "missing").await.unwrap(), None);
            store.delete(Namespace::RefreshToken, "missing").await.unwrap();
        }
        assert_eq!(
            store.writes.load(Ordering::Relaxed),
            0,
            "no write transaction committed"
        );
        store
            .put(Namespace::Code, "k", b"v".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(
            store.take(Namespace::Code, "k").await.unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(store.writes.load(Ordering::Relaxed), 1);
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
