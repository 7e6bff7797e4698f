//! [`MemoryStore`]: everything in process memory, for tests and throwaway servers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use moka::sync::Cache;

use super::{BoxFuture, Index, IndexEntry, Namespace, Store, StoreError, live};
use crate::oauth::unix_now;

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
/// hosts must register again, so prefer [`RedbStore`](super::RedbStore) outside tests.
///
/// ```
/// use a3_mcp_auth::A3Config;
/// use a3_mcp_auth::dcr::DcrBridge;
/// use a3_mcp_auth::dcr::store::MemoryStore;
/// use a3_mcp_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let config = A3Config::builder().issuer_url(issuer.url()).client("proxy", "secret").build().unwrap();
/// // A bridge for a test: nothing written to disk, nothing left behind.
/// let bridge = DcrBridge::builder(&config).store(MemoryStore::new()).build().await.unwrap();
/// # let _ = bridge;
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    caches: Arc<[Cache<String, MemEntry>; 8]>,
    /// (index, key) → member → expiry.
    indexes: Arc<Mutex<IndexMap>>,
}

type IndexMap = HashMap<(Index, String), HashMap<String, u64>>;

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
            caches: Arc::new(std::array::from_fn(|_| cache())),
            indexes: Arc::default(),
        }
    }

    fn indexes(&self) -> MutexGuard<'_, IndexMap> {
        self.indexes.lock().unwrap_or_else(|e| e.into_inner())
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
        self.indexes().retain(|_, members| {
            members.retain(|_, exp| live(Some(*exp)));
            !members.is_empty()
        });
        Box::pin(async { Ok(()) })
    }
    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut indexes = self.indexes();
        let members = indexes.entry((index, key.to_owned())).or_default();
        members.retain(|_, exp| live(Some(*exp)));
        members.insert(member.to_owned(), expires_at);
        Box::pin(async { Ok(()) })
    }
    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut indexes = self.indexes();
        let k = (index, key.to_owned());
        if let Some(members) = indexes.get_mut(&k) {
            members.remove(member);
            if members.is_empty() {
                indexes.remove(&k);
            }
        }
        Box::pin(async { Ok(()) })
    }
    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
        let mut entries: Vec<IndexEntry> = self
            .indexes()
            .get(&(index, key.to_owned()))
            .map(|members| {
                members
                    .iter()
                    .filter(|(_, exp)| live(Some(**exp)))
                    .map(|(m, exp)| IndexEntry::new(m.clone(), *exp))
                    .collect()
            })
            .unwrap_or_default();
        entries.sort_by(|a, b| (a.expires_at, &a.member).cmp(&(b.expires_at, &b.member)));
        Box::pin(async { Ok(entries) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::store::tests::exercise;

    #[tokio::test]
    async fn memory_store_contract() {
        exercise(&MemoryStore::new()).await;
    }
}
