//! [`RedbStore`]: the default, persistent store in one embedded redb file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BoxFuture, Index, IndexEntry, Namespace, Store, StoreError, live};
use crate::dcr::files;
use crate::oauth::unix_now;

type Table = redb::TableDefinition<'static, &'static str, &'static [u8]>;

const TABLES: [Table; 8] = [
    redb::TableDefinition::new("client"),
    redb::TableDefinition::new("grant"),
    redb::TableDefinition::new("access_token"),
    redb::TableDefinition::new("refresh_token"),
    redb::TableDefinition::new("code"),
    redb::TableDefinition::new("used_code"),
    redb::TableDefinition::new("transaction"),
    redb::TableDefinition::new("client_metadata"),
];

/// Every index in one table: (`{index}:{key}`, member) → expiry (Unix seconds). The tuple key
/// keeps each key's members together, so one range scan lists them.
const INDEX: redb::TableDefinition<'static, (&'static str, &'static str), u64> =
    redb::TableDefinition::new("index");

fn index_key(index: Index, key: &str) -> String {
    format!("{}:{key}", index.name())
}

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
/// use a3_mcp_auth::dcr::store::{Namespace, RedbStore, Store};
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
    /// Opens (or creates, with its parent directory) the database at `path`. What it creates
    /// is private to the server's user: the file mode 0600, directories 0700. An existing file
    /// keeps its mode; one open to other users is reported with a warning.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_private_dir_all(dir).map_err(err)?;
        }
        match files::private_file().write(true).create_new(true).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => files::warn_if_shared(path),
            Err(e) => return Err(err(e)),
        }
        let db = redb::Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        for t in TABLES {
            tx.open_table(t).map_err(err)?;
        }
        tx.open_table(INDEX).map_err(err)?;
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
        // Live entries only, so that the registration cap frees up as soon as clients expire,
        // not at the next purge. A scan of one table: it serves only the (rate-limited) cap.
        self.blocking(move |db| {
            use redb::{ReadableDatabase, ReadableTable};
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(table(ns)).map_err(err)?;
            let mut n = 0;
            for row in t.iter().map_err(err)? {
                let (_, raw) = row.map_err(err)?;
                n += matches!(decode(raw.value()), Some((exp, _)) if live(exp)) as u64;
            }
            Ok(n)
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
            tx.open_table(INDEX)
                .map_err(err)?
                .retain(|_, exp| exp > now)
                .map_err(err)?;
            tx.commit().map_err(err)
        })
    }
    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (key, member) = (index_key(index, key), member.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            tx.open_table(INDEX)
                .map_err(err)?
                .insert((key.as_str(), member.as_str()), expires_at)
                .map_err(err)?;
            tx.commit().map_err(err)
        })
    }
    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (key, member) = (index_key(index, key), member.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(err)?;
            let removed = tx
                .open_table(INDEX)
                .map_err(err)?
                .remove((key.as_str(), member.as_str()))
                .map_err(err)?
                .is_some();
            // A miss costs no durable commit.
            if removed {
                tx.commit().map_err(err)
            } else {
                tx.abort().map_err(err)
            }
        })
    }
    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
        let key = index_key(index, key);
        self.blocking(move |db| {
            use redb::ReadableDatabase;
            let tx = db.begin_read().map_err(err)?;
            let t = tx.open_table(INDEX).map_err(err)?;
            let now = unix_now();
            let mut entries = Vec::new();
            for row in t.range((key.as_str(), "")..).map_err(err)? {
                let (k, exp) = row.map_err(err)?;
                let (k, member) = k.value();
                if k != key {
                    break;
                }
                let exp = exp.value();
                if exp > now {
                    entries.push(IndexEntry::new(member, exp));
                }
            }
            entries.sort_by(|a, b| (a.expires_at, &a.member).cmp(&(b.expires_at, &b.member)));
            Ok(entries)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::store::tests::exercise;

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

    #[cfg(unix)]
    #[test]
    fn what_open_creates_is_private_and_an_existing_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/a3/store.redb");
        drop(RedbStore::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("data/a3")), 0o700);
        assert_eq!(mode(&dir.path().join("data")), 0o700);

        let shared = dir.path().join("shared.redb");
        drop(RedbStore::open(&shared).unwrap());
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(RedbStore::open(&shared).unwrap());
        assert_eq!(
            mode(&shared),
            0o644,
            "an existing file is left as it is (and warned about)"
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
}
