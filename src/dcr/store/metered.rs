//! [`Metered`]: any [`Store`], with each operation counted and timed (see
//! [`metrics`](crate::metrics)). The bridge wraps whatever store it is given in it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BoxFuture, Index, IndexEntry, Namespace, Store, StoreError, TokenBucket};

/// A store whose operations are counted by outcome and timed. Every [`Store`] method is
/// forwarded, the provided ones (`lock`, `unlock`) included: a method added to the trait must be
/// forwarded here too, or the wrapped store's own implementation would be bypassed.
pub(crate) struct Metered(pub Arc<dyn Store>);

/// Runs `op`, then records it as `operation`.
fn timed<'a, T: 'a>(
    operation: &'static str,
    op: impl Future<Output = Result<T, StoreError>> + Send + 'a,
) -> BoxFuture<'a, Result<T, StoreError>> {
    Box::pin(async move {
        let started = Instant::now();
        let result = op.await;
        crate::metrics::store(operation, result.is_ok(), started.elapsed());
        result
    })
}

impl Store for Metered {
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        timed("put", self.0.put(ns, key, value, expires_at))
    }
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        timed("get", self.0.get(ns, key))
    }
    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        timed("take", self.0.take(ns, key))
    }
    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        timed("delete", self.0.delete(ns, key))
    }
    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
        timed("count", self.0.count(ns))
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        timed("purge_expired", self.0.purge_expired())
    }
    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        timed("index_put", self.0.index_put(index, key, member, expires_at))
    }
    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        timed("index_remove", self.0.index_remove(index, key, member))
    }
    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
        timed("index_members", self.0.index_members(index, key))
    }
    fn keys<'a>(
        &'a self,
        ns: Namespace,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        timed("keys", self.0.keys(ns, after, limit))
    }
    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        timed("lock", self.0.lock(name, ttl))
    }
    fn unlock<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        timed("unlock", self.0.unlock(name, token))
    }
    fn take_tokens<'a>(
        &'a self,
        buckets: &'a [TokenBucket],
        take: bool,
    ) -> BoxFuture<'a, Result<Option<bool>, StoreError>> {
        timed("take_tokens", self.0.take_tokens(buckets, take))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::store::MemoryStore;

    #[tokio::test]
    async fn forwards_every_operation() {
        let metered = Metered(Arc::new(MemoryStore::new()));
        crate::dcr::store::tests::exercise(&metered).await;
        let token = metered.lock("grant:g", Duration::from_secs(1)).await.unwrap();
        metered.unlock("grant:g", &token.unwrap()).await.unwrap();
    }
}
