//! [`RedisStore`]: the store that several replicas of one MCP server share.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, RedisError, Script};

use super::{BoxFuture, Index, IndexEntry, Namespace, Store, StoreError, TokenBucket};

mod connection;

use connection::Connection;
pub use connection::RedisStoreBuilder;

/// Pause before the one retry of a command whose connection broke (Redis restarted).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Deletes a lock only if it still holds our token.
const UNLOCK: &str =
    r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

/// Adds or moves a member (`ARGV[1]` score = expiry, `ARGV[2]` member), drops expired members
/// (score ≤ `ARGV[3]`, now), and lets the whole set expire with its last member.
const INDEX_PUT: &str = r#"
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[3])
redis.call("ZADD", KEYS[1], ARGV[1], ARGV[2])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
redis.call("EXPIREAT", KEYS[1], last[2])
return 1
"#;

/// Removes a member (`ARGV[1]`) and expired ones (score ≤ `ARGV[2]`, now); the set then expires
/// with its last member (an empty set is gone).
const INDEX_REMOVE: &str = r#"
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[2])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
if last[2] then redis.call("EXPIREAT", KEYS[1], last[2]) end
return 1
"#;

/// Token buckets (`KEYS`, each a hash of `tokens` and `at` in ms), `ARGV[1]` = "1" to take,
/// then per bucket its burst and refill (ms). Redis's own clock, so replicas agree. Takes one
/// token from every bucket, or none when one is empty; an untouched bucket needs no write.
const TAKE_TOKENS: &str = r#"
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local levels = {}
for i, key in ipairs(KEYS) do
  local burst = tonumber(ARGV[2 * i])
  local refill = tonumber(ARGV[2 * i + 1])
  local state = redis.call("HMGET", key, "tokens", "at")
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  if refill > 0 then tokens = math.min(burst, tokens + math.max(0, now - at) / refill) else tokens = burst end
  if tokens < 1 then return 0 end
  levels[i] = tokens
end
if ARGV[1] == "1" then
  for i, key in ipairs(KEYS) do
    local burst = tonumber(ARGV[2 * i])
    local refill = tonumber(ARGV[2 * i + 1])
    redis.call("HSET", key, "tokens", tostring(levels[i] - 1), "at", tostring(now))
    redis.call("PEXPIRE", key, math.ceil(burst * refill) + 1000)
  end
end
return 1
"#;

/// A [`Store`] on a Redis server (6.2 or later), shared by every replica of the server.
///
/// Keys are `{prefix}{namespace}:{key}` (keys of tokens and codes are already SHA-256 hashes);
/// values are the bridge's JSON, with A3's tokens sealed by the shared `TOKEN_ENCRYPTION_KEY`.
/// An [`Index`] key is a sorted set `{prefix}index:{index}:{key}` scored by each member's expiry,
/// written by small scripts that also drop expired members and let the set expire with its last.
/// Expiry is Redis's own (`SET … PXAT`), so [`Store::purge_expired`] has nothing to do;
/// [`Store::take`] is `GETDEL`, atomic across replicas; [`Store::lock`] is `SET … NX PX` with a
/// random token, released by a compare-and-delete script. [`Store::take_tokens`] keeps rate-limit
/// buckets in hashes `{prefix}rate:{bucket}`, updated by a script on Redis's clock, so every
/// replica draws from the same buckets. [`Store::count`] scans the namespace's
/// keys: it only serves the registration cap of the (rate-limited) `/register`.
///
/// The connection is a [`ConnectionManager`]: after Redis restarts it reconnects by itself.
/// [`RedisStore::builder`] adds TLS (`rediss://`, a CA, a client certificate) and Sentinel
/// (`redis+sentinel://`), where a broken connection or a read-only answer (the old master after
/// a failover) makes the store ask the Sentinels for the master again.
/// A command that fails because the connection broke, or that a read-only replica refused, is
/// sent once more after a short pause (except `GETDEL` after an ambiguous failure: a code is
/// never redeemed twice); every other failure is a [`StoreError`], which the bridge answers
/// with `503 Service Unavailable`.
///
/// ```no_run
/// use a3_mcp_auth::dcr::store::{Namespace, RedisStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/0", "my-mcp-server:").await?;
/// store.put(Namespace::Code, "k", b"v".to_vec(), Some(u64::MAX / 2)).await?;
/// assert_eq!(store.take(Namespace::Code, "k").await?, Some(b"v".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    prefix: String,
    unlock: Script,
    index_put: Script,
    index_remove: Script,
    take_tokens: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn err(e: RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

/// `s` matched literally by `SCAN … MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A broken or refused connection: worth one more try once the manager has reconnected.
fn retryable(e: &RedisError) -> bool {
    e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error()
}

/// A write refused by a replica: the master moved (a Sentinel failover); nothing was done.
fn read_only(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port/db`, or any URL of
    /// [`RedisStoreBuilder`]) and checks the server answers. Every key starts with `prefix`, so
    /// several servers can share one Redis.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).prefix(prefix).connect().await
    }

    /// A builder for a store at `url`, with TLS material or a Sentinel URL; see
    /// [`RedisStoreBuilder`].
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder::new(url)
    }

    fn new(conn: Connection, prefix: String) -> Self {
        RedisStore {
            conn,
            prefix,
            unlock: Script::new(UNLOCK),
            index_put: Script::new(INDEX_PUT),
            index_remove: Script::new(INDEX_REMOVE),
            take_tokens: Script::new(TAKE_TOKENS),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, ns: Namespace, key: &str) -> String {
        format!("{}{}:{key}", self.prefix, ns.name())
    }

    fn index_key(&self, index: Index, key: &str) -> String {
        format!("{}index:{}:{key}", self.prefix, index.name())
    }

    /// Runs `script` on `key` with `args` (each idempotent: retried when the connection broke).
    async fn script(&self, script: &Script, key: &str, args: &[&str]) -> Result<(), StoreError> {
        self.run(retryable, |mut c| {
            let mut invocation = script.key(key);
            for arg in args {
                invocation.arg(*arg);
            }
            async move { invocation.invoke_async::<i64>(&mut c).await.map(|_| ()) }
        })
        .await
    }

    /// Runs `op`, and once more after a pause when the connection broke and `retry_if` agrees.
    async fn run<T, F, Fut>(&self, retry_if: fn(&RedisError) -> bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match op(self.conn.get()).await {
            Ok(v) => Ok(v),
            Err(e) if retry_if(&e) || read_only(&e) => {
                tracing::warn!(error = %e, "redis connection broke or the server is read-only; retrying once");
                tokio::time::sleep(RETRY_PAUSE).await;
                self.conn.rediscover().await;
                op(self.conn.get()).await.map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }
}

impl Store for RedisStore {
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = self.key(ns, key);
        Box::pin(async move {
            self.run(retryable, |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let mut cmd = redis::cmd("SET");
                    cmd.arg(&key).arg(value);
                    if let Some(t) = expires_at {
                        // Already expired: an immediate expiry deletes it.
                        cmd.arg("EXAT").arg(t.max(1));
                    }
                    cmd.query_async::<()>(&mut c).await
                }
            })
            .await
        })
    }

    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let key = self.key(ns, key);
        Box::pin(async move {
            self.run(retryable, |mut c| {
                let key = key.clone();
                async move { c.get::<_, Option<Vec<u8>>>(&key).await }
            })
            .await
        })
    }

    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let key = self.key(ns, key);
        Box::pin(async move {
            // Retried only when the command surely never reached Redis: a GETDEL whose reply was
            // lost may have deleted the entry, and the retry would then hand it out again after a
            // restart from an older append-only file.
            self.run(RedisError::is_connection_refusal, |mut c| {
                let key = key.clone();
                async move { c.get_del::<_, Option<Vec<u8>>>(&key).await }
            })
            .await
        })
    }

    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = self.key(ns, key);
        Box::pin(async move {
            self.run(retryable, |mut c| {
                let key = key.clone();
                async move { c.del::<_, ()>(&key).await }
            })
            .await
        })
    }

    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
        let pattern = format!("{}{}:*", glob_escape(&self.prefix), ns.name());
        Box::pin(async move {
            self.run(retryable, |mut c| {
                let pattern = pattern.clone();
                async move {
                    let mut cursor = 0u64;
                    let mut n = 0u64;
                    loop {
                        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut c)
                            .await?;
                        n += keys.len() as u64;
                        if next == 0 {
                            return Ok(n);
                        }
                        cursor = next;
                    }
                }
            })
            .await
        })
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Redis expires entries itself; index writes drop their expired members.
        Box::pin(async { Ok(()) })
    }

    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = self.index_key(index, key);
        let now = crate::oauth::unix_now().to_string();
        Box::pin(async move {
            self.script(&self.index_put, &key, &[&expires_at.to_string(), member, &now])
                .await
        })
    }

    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = self.index_key(index, key);
        let now = crate::oauth::unix_now().to_string();
        Box::pin(async move { self.script(&self.index_remove, &key, &[member, &now]).await })
    }

    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
        let key = self.index_key(index, key);
        Box::pin(async move {
            let members: Vec<(String, f64)> = self
                .run(retryable, |mut c| {
                    let key = key.clone();
                    async move {
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(&key)
                            .arg(format!("({}", crate::oauth::unix_now()))
                            .arg("+inf")
                            .arg("WITHSCORES")
                            .query_async(&mut c)
                            .await
                    }
                })
                .await?;
            Ok(members
                .into_iter()
                .map(|(member, score)| IndexEntry::new(member, score as u64))
                .collect())
        })
    }

    fn lock<'a>(&'a self, name: &'a str, ttl: Duration) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let key = format!("{}lock:{name}", self.prefix);
        let token = crate::oauth::random_token();
        Box::pin(async move {
            let ttl_ms = ttl.as_millis().max(1) as u64;
            let taken: Option<String> = self
                .run(retryable, |mut c| {
                    let (key, token) = (key.clone(), token.clone());
                    async move {
                        // Re-sending after a lost reply may find our own token: that is ours too.
                        let set: Option<String> = redis::cmd("SET")
                            .arg(&key)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async(&mut c)
                            .await?;
                        if set.is_some() {
                            return Ok(Some(token));
                        }
                        let holder: Option<String> = c.get(&key).await?;
                        Ok((holder.as_deref() == Some(token.as_str())).then_some(token))
                    }
                })
                .await?;
            Ok(taken)
        })
    }

    fn unlock<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = format!("{}lock:{name}", self.prefix);
        Box::pin(async move { self.script(&self.unlock, &key, &[token]).await })
    }

    fn take_tokens<'a>(
        &'a self,
        buckets: &'a [TokenBucket],
        take: bool,
    ) -> BoxFuture<'a, Result<Option<bool>, StoreError>> {
        Box::pin(async move {
            // Retried only when surely never sent: after a lost reply a retry could take twice.
            let allowed: i64 = self
                .run(RedisError::is_connection_refusal, |mut c| {
                    let mut invocation = self.take_tokens.prepare_invoke();
                    for b in buckets {
                        invocation.key(format!("{}rate:{}", self.prefix, b.key));
                    }
                    invocation.arg(if take { "1" } else { "0" });
                    for b in buckets {
                        invocation.arg(b.burst.max(1)).arg(b.refill.as_millis() as u64);
                    }
                    async move { invocation.invoke_async(&mut c).await }
                })
                .await?;
            Ok(Some(allowed == 1))
        })
    }
}

/// Tests against a real `redis-server` (started here on a free port); skipped with a message
/// when it is not installed, except under CI (`CI` set), where its absence fails.
#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dcr::store::tests::exercise;

    /// A throwaway `redis-server` on a free loopback port, killed on drop.
    pub(crate) struct TestRedis {
        child: std::process::Child,
        pub url: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub(crate) fn start_redis() -> Option<TestRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!(
                    "\n!!! SKIPPED: redis-server is not installed ({e}); `apt-get install redis-server`\n"
                );
                return None;
            }
            Err(e) => panic!("redis-server is required in CI: {e}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(TestRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
            _dir: dir,
        })
    }

    #[tokio::test]
    async fn redis_store_contract_locks_and_prefixes() {
        let Some(redis) = start_redis() else { return };
        let store = RedisStore::connect(&redis.url, "t1:").await.unwrap();
        exercise(&store).await;

        // Another prefix is another keyspace.
        let other = RedisStore::connect(&redis.url, "t*:").await.unwrap();
        store
            .put(Namespace::Client, "c", b"1".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(other.get(Namespace::Client, "c").await.unwrap(), None);
        assert_eq!(store.count(Namespace::Client).await.unwrap(), 1);
        assert_eq!(other.count(Namespace::Client).await.unwrap(), 0);

        // Expiry is Redis's own.
        let soon = crate::oauth::unix_now() + 1;
        store
            .put(Namespace::Transaction, "t", b"x".to_vec(), Some(soon))
            .await
            .unwrap();
        assert!(store.get(Namespace::Transaction, "t").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(store.get(Namespace::Transaction, "t").await.unwrap(), None);

        // A lock has one holder at a time; only its token releases it; it expires.
        let ttl = Duration::from_millis(500);
        let t1 = store.lock("g", ttl).await.unwrap().expect("free");
        assert_eq!(store.lock("g", ttl).await.unwrap(), None, "held");
        store.unlock("g", "not-the-token").await.unwrap();
        assert_eq!(store.lock("g", ttl).await.unwrap(), None, "still held");
        store.unlock("g", &t1).await.unwrap();
        let t2 = store.lock("g", ttl).await.unwrap().expect("released");
        assert_ne!(t1, t2);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(store.lock("g", ttl).await.unwrap().is_some(), "expired");

        // An index set holds no expired members and expires with its last member.
        let now = crate::oauth::unix_now();
        let set = store.index_key(Index::GrantsByClient, "c9");
        let mut c = store.conn.get();
        store
            .index_put(Index::GrantsByClient, "c9", "expired", now - 5)
            .await
            .unwrap();
        store
            .index_put(Index::GrantsByClient, "c9", "g", now + 100)
            .await
            .unwrap();
        assert_eq!(c.zcard::<_, u64>(&set).await.unwrap(), 1);
        let ttl: i64 = c.ttl(&set).await.unwrap();
        assert!((90..=100).contains(&ttl), "{ttl}");
        store
            .index_remove(Index::GrantsByClient, "c9", "g")
            .await
            .unwrap();
        assert!(!c.exists::<_, bool>(&set).await.unwrap(), "an empty set is gone");
    }

    #[tokio::test]
    async fn token_buckets_are_shared_by_every_connection() {
        let Some(redis) = start_redis() else { return };
        let a = RedisStore::connect(&redis.url, "rl:").await.unwrap();
        let b = RedisStore::connect(&redis.url, "rl:").await.unwrap();
        let hour = Duration::from_secs(3600);
        let x = [TokenBucket::new("x", 2, hour)];
        let xy = [TokenBucket::new("x", 2, hour), TokenBucket::new("y", 5, hour)];
        assert_eq!(
            a.take_tokens(&x, false).await.unwrap(),
            Some(true),
            "looking takes nothing"
        );
        assert_eq!(a.take_tokens(&x, true).await.unwrap(), Some(true));
        assert_eq!(
            b.take_tokens(&x, true).await.unwrap(),
            Some(true),
            "one bucket for both"
        );
        assert_eq!(a.take_tokens(&x, true).await.unwrap(), Some(false));
        assert_eq!(b.take_tokens(&xy, true).await.unwrap(), Some(false));
        let y_only = [TokenBucket::new("y", 5, hour)];
        for _ in 0..5 {
            assert_eq!(
                b.take_tokens(&y_only, true).await.unwrap(),
                Some(true),
                "all or none"
            );
        }
        // Refill on Redis's clock; the bucket expires once full again.
        let fast = [TokenBucket::new("z", 1, Duration::from_millis(300))];
        assert_eq!(a.take_tokens(&fast, true).await.unwrap(), Some(true));
        assert_eq!(b.take_tokens(&fast, true).await.unwrap(), Some(false));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(b.take_tokens(&fast, true).await.unwrap(), Some(true));
        let ttl: i64 = a.conn.get().pttl("rl:rate:z").await.unwrap();
        assert!((0..=1300).contains(&ttl), "{ttl}");
    }

    #[test]
    fn scan_patterns_match_the_prefix_literally() {
        assert_eq!(glob_escape("a3mcp:"), "a3mcp:");
        assert_eq!(glob_escape("x*[y]?\\"), "x\\*\\[y\\]\\?\\\\");
    }

    #[tokio::test]
    async fn concurrent_takes_on_separate_connections_yield_one_winner() {
        let Some(redis) = start_redis() else { return };
        let mut stores = Vec::new();
        for _ in 0..4 {
            stores.push(Arc::new(RedisStore::connect(&redis.url, "p:").await.unwrap()));
        }
        for round in 0..20 {
            let key = format!("code{round}");
            stores[0]
                .put(Namespace::Code, &key, b"x".to_vec(), None)
                .await
                .unwrap();
            let tasks: Vec<_> = stores
                .iter()
                .map(|s| {
                    let (s, key) = (s.clone(), key.clone());
                    tokio::spawn(async move { s.take(Namespace::Code, &key).await.unwrap().is_some() })
                })
                .collect();
            let mut winners = 0;
            for t in tasks {
                winners += t.await.unwrap() as u32;
            }
            assert_eq!(winners, 1);
        }
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_store_error() {
        let Some(redis) = start_redis() else { return };
        let store = RedisStore::connect(&redis.url, "x:").await.unwrap();
        drop(redis);
        let started = std::time::Instant::now();
        assert!(store.get(Namespace::Client, "c").await.is_err());
        assert!(store.take(Namespace::Code, "c").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(15), "fails fast");
        assert!(RedisStore::connect("redis://127.0.0.1:1/0", "x:").await.is_err());
    }
}
