//! Connecting [`RedisStore`]: one Redis endpoint (`redis://`, `rediss://` with a CA and a client
//! certificate) or the master that Sentinel names (`redis+sentinel://`), found again after a
//! failover.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ClientTlsConfig, ConnectionAddr, RedisError, TlsCertificates, TlsMode};

use super::{RedisStore, StoreError, err};

/// How long one Redis command may take before the request fails (and is answered with 503).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Sentinel's own port, when a `redis+sentinel://` address names none.
const SENTINEL_PORT: u16 = 26379;

/// Builder for a [`RedisStore`]: the URL, the key prefix and TLS material.
///
/// | URL | connects to |
/// |---|---|
/// | `redis://[user:password@]host:port/db` | one Redis |
/// | `rediss://…` | one Redis over TLS, verified against the system's roots or [`tls_ca_pem`](Self::tls_ca_pem) |
/// | `redis+sentinel://[user:password@]host[:port][,host[:port]…]/master-name[/db]` | the master that the Sentinels (default port 26379) name for `master-name`, asked again when the connection breaks or the server turns read-only (a failover) |
/// | `rediss+sentinel://…` | the same, over TLS to the Sentinels and to the master |
///
/// The user and password are the master's (the Sentinels are asked without). TLS is rustls with
/// the aws-lc-rs provider, the crate's one crypto library; it is installed as the process's
/// default rustls provider when none is installed yet.
///
/// ```no_run
/// use a3_mcp_auth::dcr::store::RedisStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A managed Redis that wants TLS with a client certificate, verified against its own CA.
/// let store = RedisStore::builder("rediss://redis.internal:6380/0")
///     .prefix("my-mcp-server:")
///     .tls_ca_pem(std::fs::read("/etc/mcp/redis-ca.pem")?)
///     .tls_client_cert_pem(std::fs::read("/etc/mcp/client.pem")?, std::fs::read("/etc/mcp/client.key")?)
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    ca_pem: Option<Vec<u8>>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password and the client key is a secret: neither is shown.
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    pub(super) fn new(url: &str) -> Self {
        RedisStoreBuilder {
            url: url.to_owned(),
            prefix: crate::dcr::store::DEFAULT_STORE_PREFIX.to_owned(),
            ca_pem: None,
            client_cert: None,
        }
    }

    /// The prefix of every key (default [`DEFAULT_STORE_PREFIX`](crate::dcr::store::DEFAULT_STORE_PREFIX)).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The CA certificates (PEM) that the server's certificate must chain to, instead of the
    /// system's roots (`rediss://` only).
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// A client certificate chain and its private key (PEM), for a server that asks for one
    /// (`tls-auth-clients yes`; `rediss://` only).
    pub fn tls_client_cert_pem(mut self, cert_chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some((cert_chain.into(), key.into()));
        self
    }

    /// Connects and checks the server answers.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let tls = self.tls_certificates();
        let (scheme, _) = self.url.split_once("://").unwrap_or_default();
        if tls.is_some() && !scheme.starts_with("rediss") {
            return Err(StoreError(
                "TLS certificates were given for a URL without TLS: use rediss:// (or rediss+sentinel://)"
                    .into(),
            ));
        }
        if scheme.starts_with("rediss") {
            // rustls picks the process's provider: make it aws-lc-rs unless one was chosen.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let connection = match scheme {
            "redis+sentinel" | "rediss+sentinel" => {
                let sentinel = sentinel_client(&self.url, scheme == "rediss+sentinel", tls)?;
                Connection::through_sentinel(sentinel).await
            }
            _ => {
                let client = match tls {
                    Some(certs) => redis::Client::build_with_tls(self.url.as_str(), certs),
                    None => redis::Client::open(self.url.as_str()),
                }
                .map_err(err)?;
                Connection::direct(client).await
            }
        }
        .map_err(err)?;
        Ok(RedisStore::new(connection, self.prefix))
    }

    fn tls_certificates(&self) -> Option<TlsCertificates> {
        if self.ca_pem.is_none() && self.client_cert.is_none() {
            return None;
        }
        Some(TlsCertificates {
            client_tls: self.client_cert.as_ref().map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: self.ca_pem.clone(),
        })
    }
}

/// A `redis+sentinel://` URL's parts: the Sentinels, the master's name, its database and
/// credentials. Parsed by hand: a list of hosts is not a URL `url` accepts.
fn sentinel_client(
    url: &str,
    tls: bool,
    certs: Option<TlsCertificates>,
) -> Result<SentinelClient, StoreError> {
    let bad = |why: &str| {
        StoreError(format!(
            "{why}; expected redis+sentinel://[user:password@]host[:port][,host[:port]…]/master-name[/db]"
        ))
    };
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
    let mut path = path.split('/');
    let master = path
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("no master name"))?;
    let db = match path.next().filter(|d| !d.is_empty()) {
        Some(db) => Some(
            db.parse::<i64>()
                .map_err(|_| bad("the database is not a number"))?,
        ),
        None => None,
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        let (host, port) = match host.strip_prefix('[') {
            // An IPv6 literal: [::1] or [::1]:26379.
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("an IPv6 Sentinel address lacks ']'"))?;
                match after.strip_prefix(':') {
                    Some(p) => (
                        h,
                        p.parse::<u16>()
                            .map_err(|_| bad("a Sentinel port is not a number"))?,
                    ),
                    None if after.is_empty() => (h, SENTINEL_PORT),
                    None => return Err(bad("junk after an IPv6 Sentinel address")),
                }
            }
            None => match host.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>()
                        .map_err(|_| bad("a Sentinel port is not a number"))?,
                ),
                None => (host, SENTINEL_PORT),
            },
        };
        if host.is_empty() {
            return Err(bad("a Sentinel host is empty"));
        }
        sentinels.push(if tls {
            ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.to_owned(), port)
        });
    }
    let mut builder =
        SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master).map_err(err)?;
    if let Some(userinfo) = userinfo {
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| bad("the user or password is not percent-encoded UTF-8"))
        };
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if !user.is_empty() {
            builder = builder.set_client_to_redis_username(decode(user)?);
        }
        if !password.is_empty() {
            builder = builder.set_client_to_redis_password(decode(password)?);
        }
    }
    if let Some(db) = db {
        builder = builder.set_client_to_redis_db(db);
    }
    if tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(certs) = certs {
            builder = builder
                .set_client_to_redis_certificates(certs.clone())
                .set_client_to_sentinel_certificates(certs);
        }
    }
    builder.build().map_err(err)
}

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// The connection of a [`RedisStore`]: a [`ConnectionManager`] (which reconnects by itself to
/// its address), and with Sentinel the means to find the master again after a failover.
#[derive(Clone)]
pub(super) struct Connection {
    /// The manager and the address it connects to.
    current: Arc<RwLock<(ConnectionManager, String)>>,
    sentinel: Option<Arc<tokio::sync::Mutex<SentinelClient>>>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_millis(500))
}

async fn manage(client: redis::Client) -> Result<(ConnectionManager, String), RedisError> {
    let address = client.get_connection_info().addr().to_string();
    let manager = ConnectionManager::new_with_config(client, manager_config()).await?;
    Ok((manager, address))
}

impl Connection {
    async fn direct(client: redis::Client) -> Result<Self, RedisError> {
        Ok(Connection {
            current: Arc::new(RwLock::new(manage(client).await?)),
            sentinel: None,
        })
    }

    async fn through_sentinel(mut sentinel: SentinelClient) -> Result<Self, RedisError> {
        let master = sentinel.async_get_client().await?;
        Ok(Connection {
            current: Arc::new(RwLock::new(manage(master).await?)),
            sentinel: Some(Arc::new(tokio::sync::Mutex::new(sentinel))),
        })
    }

    /// The manager to send a command on (a cheap clone).
    pub(super) fn get(&self) -> ConnectionManager {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// After a command failed: with Sentinel, asks where the master is now and, if it moved,
    /// connects there. Without Sentinel there is nothing to ask: the manager reconnects itself.
    pub(super) async fn rediscover(&self) {
        let Some(sentinel) = &self.sentinel else { return };
        // One lookup at a time; those who waited find the new master already in place.
        let mut sentinel = sentinel.lock().await;
        let master = match sentinel.async_get_client().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "no Sentinel names a master");
                return;
            }
        };
        let address = master.get_connection_info().addr().to_string();
        if self.current.read().unwrap_or_else(|e| e.into_inner()).1 == address {
            return;
        }
        match manage(master).await {
            Ok(next) => {
                tracing::warn!(master = %address, "Sentinel names a new Redis master; connected to it");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
            }
            Err(e) => tracing::warn!(error = %e, master = %address, "the new Redis master does not answer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let ok = |url: &str| sentinel_client(url, false, None).is_ok();
        assert!(ok("redis+sentinel://127.0.0.1:26379/mymaster"));
        assert!(ok(
            "redis+sentinel://:p%40ss@h1,h2:26380,[::1]:26381,[::2]/mymaster/2"
        ));
        let why = |url: &str| sentinel_client(url, false, None).err().unwrap().0;
        assert!(why("redis+sentinel://h1:26379").contains("no master name"));
        assert!(why("redis+sentinel://h1:x/m").contains("port"));
        assert!(why("redis+sentinel://h1/m/x").contains("database"));
        assert!(!why("redis+sentinel://user:hunter2@h1/m/x").contains("hunter2"));
        assert_eq!(percent_decode("p%40ss+word").as_deref(), Some("p@ss+word"));
    }
}
