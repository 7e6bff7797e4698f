//! Several replicas of the example server on one Redis, behind a round-robin load balancer.
//!
//! Each test starts its own `redis-server` (append-only file in a temporary directory, so a
//! restart keeps the data), the embedded development issuer as A3, three replicas in this process
//! (the example's composition, stateless MCP, `STORE_URL`-style configuration) and a small HTTP
//! load balancer that sends every request to the next replica and skips a replica that refuses
//! connections. One more test runs three processes of the compiled example server instead,
//! configured only by environment variables (`STORE_URL`, `STORE_PREFIX`, `TOKEN_ENCRYPTION_KEY`,
//! `PUBLIC_URL`, `BIND_ADDR`, `MCP_STATELESS`), and kills one with SIGKILL mid-flow; it uses the
//! binary `cargo test` builds (after changing the example, `cargo build --example server` before
//! `cargo test --test replicas`). Other tests run the replicas over `rediss://` (a CA, a server
//! and a client certificate made at test time with rcgen; Redis asks for the client's) and through
//! one Sentinel (`redis-server --sentinel`) watching a master and its replica, with a failover.
//! Every server a test starts is a child process, killed by its PID when the test ends.
//! Without `redis-server` (or the example binary) the tests are skipped with a message, except
//! under CI (`CI` set), where they fail.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
use a3_mcp_auth::dcr::store::RedisStore;
use a3_mcp_auth::dev_issuer::DevIssuer;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use support::*;

const SECRET: &str = "replica-proxy-secret";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const REDIRECT: &str = "http://127.0.0.1:33418/";

// ---------------------------------------------------------------------------------------------
// redis-server, restartable on its port with its data
// ---------------------------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` process (a Redis, or with `--sentinel` a Sentinel), stopped by its PID on
/// drop.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments besides port, bind and directory (TLS, replication, sentinel mode).
    args: Vec<String>,
    tls: bool,
    child: Option<std::process::Child>,
}

impl Redis {
    fn start() -> Option<Redis> {
        Self::start_with(Vec::new(), false)
    }

    /// A Redis that speaks only TLS, with a server certificate from `ca`, and asks every client
    /// for a certificate of that CA (`tls-auth-clients yes`).
    fn start_tls(ca: &TestCa) -> Option<Redis> {
        let args = [
            ("--tls-cert-file", "server.pem"),
            ("--tls-key-file", "server.key"),
            ("--tls-ca-cert-file", "ca.pem"),
        ]
        .iter()
        .flat_map(|(flag, file)| [flag.to_string(), ca.path(file)])
        .chain(["--tls-auth-clients".into(), "yes".into()])
        .collect();
        Self::start_with(args, true)
    }

    fn start_with(args: Vec<String>, tls: bool) -> Option<Redis> {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            args,
            tls,
            child: None,
        };
        match redis.spawn() {
            Ok(()) => Some(redis),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!(
                    "\n!!! SKIPPED: redis-server is not installed ({e}); `apt-get install redis-server` to run the replica tests\n"
                );
                None
            }
            Err(e) => panic!("redis-server is required in CI: {e}"),
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let ports = if self.tls {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--tls-port", "0"]
        };
        let child = std::process::Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        wait_for_port(self.port);
        Ok(())
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not start on {port}");
}

/// A test CA made at test time (rcgen on aws-lc-rs) and, signed by it, a server certificate for
/// 127.0.0.1 and a client certificate, as PEM files in a temporary directory.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            SanType,
        };
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: a leaf named like its issuer would look self-signed.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "a3-mcp-auth test CA");
        let ca_key = KeyPair::generate().unwrap();
        write("ca.pem", ca_params.self_signed(&ca_key).unwrap().pem());
        let ca = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str, purpose: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages.push(purpose);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            write(&format!("{name}.pem"), params.signed_by(&key, &ca).unwrap().pem());
            write(&format!("{name}.key"), key.serialize_pem());
        };
        leaf("server", ExtendedKeyUsagePurpose::ServerAuth);
        leaf("client", ExtendedKeyUsagePurpose::ClientAuth);
        TestCa { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_owned()
    }
}

/// One Sentinel (`redis-server --sentinel`, the same binary Debian's `redis-sentinel` runs)
/// watching the master at `master_port` as `mymaster`, quorum 1, failing over after 1 s.
fn start_sentinel(master_port: u16) -> Redis {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);
    Redis {
        port,
        dir,
        args: Vec::new(),
        tls: false,
        child: Some(child),
    }
}

// ---------------------------------------------------------------------------------------------
// The load balancer: every request to the next replica
// ---------------------------------------------------------------------------------------------

struct Lb {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    /// (replica index, method, path) of every forwarded request.
    log: Mutex<Vec<(usize, String, String)>>,
    client: reqwest::Client,
}

impl Lb {
    fn served(&self, path: &str) -> Vec<usize> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, p)| p == path)
            .map(|(i, _, _)| *i)
            .collect()
    }

    fn last(&self, method: &str, path: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(_, m, p)| m == method && p == path)
            .map(|(i, _, _)| *i)
            .unwrap()
    }
}

async fn forward(State(lb): State<Arc<Lb>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 2 << 20).await.unwrap();
    let path_q = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let n = lb.backends.len();
    let start = lb.next.fetch_add(1, Ordering::SeqCst);
    for attempt in 0..n {
        let i = (start + attempt) % n;
        let mut out = lb
            .client
            .request(parts.method.clone(), format!("http://{}{path_q}", lb.backends[i]))
            .body(body.clone());
        for (k, v) in &parts.headers {
            if k != http::header::CONTENT_LENGTH {
                out = out.header(k, v);
            }
        }
        match out.send().await {
            Ok(r) => {
                lb.log
                    .lock()
                    .unwrap()
                    .push((i, parts.method.to_string(), parts.uri.path().to_owned()));
                let mut resp = Response::builder().status(r.status());
                for (k, v) in r.headers() {
                    if k != http::header::TRANSFER_ENCODING && k != http::header::CONNECTION {
                        resp = resp.header(k, v);
                    }
                }
                let bytes = r.bytes().await.unwrap_or_default();
                return resp.body(Body::from(bytes)).unwrap();
            }
            // Not connected: the request never reached the replica; the next one takes it.
            Err(e) if e.is_connect() => continue,
            Err(e) => return (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
    (http::StatusCode::BAD_GATEWAY, "no replica answers").into_response()
}

// ---------------------------------------------------------------------------------------------
// The deployment: Redis, A3 (the development issuer), replicas, load balancer
// ---------------------------------------------------------------------------------------------

struct Deployment {
    redis: Redis,
    /// Other servers of the store (a Sentinel, a Redis replica), the TLS files: kept alive.
    _store: Vec<Box<dyn std::any::Any + Send + Sync>>,
    dev: DevIssuer,
    lb: Arc<Lb>,
    /// `url` is the public URL (the load balancer), `addr` the replica's own address.
    replicas: Vec<Option<Server>>,
    public: String,
    _lb_task: tokio::task::JoinHandle<()>,
}

impl Deployment {
    async fn start(replicas: usize, a3_access_ttl: Duration) -> Option<Deployment> {
        let redis = Redis::start()?;
        let vars = vec![("STORE_URL", redis.url())];
        Some(Self::start_on(redis, vars, Vec::new(), replicas, a3_access_ttl).await)
    }

    /// Replicas on `redis`, configured with the store variables `store_vars`.
    async fn start_on(
        redis: Redis,
        store_vars: Vec<(&'static str, String)>,
        keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
        replicas: usize,
        a3_access_ttl: Duration,
    ) -> Deployment {
        let lb_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = format!("http://{}", lb_listener.local_addr().unwrap());
        let dev = DevIssuer::builder()
            .client(
                "replica-proxy-client",
                SECRET,
                [format!("{public}/auth/callback")],
            )
            .resource(format!("{public}/mcp"))
            .user(
                "janedoe@test.com",
                "secret",
                [("operation", "addition"), ("operation", "multiplication")],
            )
            .access_token_ttl(a3_access_ttl)
            .start()
            .await
            .unwrap();
        let mut servers = Vec::new();
        for _ in 0..replicas {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            // Configured by `STORE_URL` (and the `STORE_TLS_*` files), `STORE_PREFIX` and
            // `TOKEN_ENCRYPTION_KEY`.
            let server = serve_replica(
                listener,
                &public,
                dev.url(),
                "replica-proxy-client",
                SECRET,
                |name| match name {
                    "STORE_PREFIX" => Some("replicas-test:".into()),
                    "TOKEN_ENCRYPTION_KEY" => Some(KEY.into()),
                    _ => store_vars
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.clone()),
                },
            )
            .await;
            servers.push(Some(server));
        }
        let lb = Arc::new(Lb {
            backends: servers.iter().map(|s| s.as_ref().unwrap().addr).collect(),
            next: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            // A new connection per request, so a stopped replica is noticed at once.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        });
        let app = axum::Router::new().fallback(forward).with_state(lb.clone());
        let lb_task = tokio::spawn(async move {
            let _ = axum::serve(lb_listener, app).await;
        });
        Deployment {
            redis,
            _store: keep,
            dev,
            lb,
            replicas: servers,
            public,
            _lb_task: lb_task,
        }
    }

    /// Any live replica: its `url` is the public one, so the host helpers go through the LB.
    fn front(&self) -> &Server {
        self.replicas.iter().flatten().next().unwrap()
    }

    fn replica(&self, i: usize) -> &Server {
        self.replicas[i].as_ref().unwrap()
    }

    fn kill(&mut self, i: usize) {
        self.replicas[i].take().unwrap().stop();
    }

    /// Registration, consent, A3 login and callback through the LB; returns (client id, code, verifier).
    async fn code(&self, user: &str) -> (String, String, String) {
        let id = register_vscode(&self.public).await["client_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (url, verifier, _) = host_request(&self.public, &id, REDIRECT, &[]);
        let back = authorize(&browser(), &self.public, &url, user).await;
        (id, query_param(&back, "code").unwrap(), verifier)
    }

    /// janedoe through an rmcp host: sign-in, a refresh, her tools; her token works at every
    /// replica, and once revoked (at whichever replica the balancer picks) fails at every one.
    async fn refresh_and_revoke_everywhere(&self) {
        let manager = rmcp_host_login(self.front(), &browser(), "janedoe@test.com").await;
        manager.refresh_token().await.expect("refresh works");
        let token = manager.get_access_token().await.unwrap();
        assert_eq!(
            tool_names(self.front(), manager).await.unwrap(),
            ["add", "multiply", "whoami"]
        );
        for i in 0..self.replicas.len() {
            assert_eq!(status_at(self.replica(i).addr, &token).await, 200);
        }
        let r = reqwest::Client::new()
            .post(format!("{}/revoke", self.public))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let revoked_at = self.lb.last("POST", "/revoke");
        // Every replica refuses it at once (the bound is 0: our tokens resolve through Redis on
        // every request; no replica caches them).
        for i in 0..self.replicas.len() {
            assert_eq!(
                status_at(self.replica(i).addr, &token).await,
                401,
                "replica {i} (revoked at {revoked_at})"
            );
        }
    }

    /// The whole flow up to tokens; returns (client id, token response).
    async fn tokens(&self, user: &str) -> (String, Value) {
        let (id, code, verifier) = self.code(user).await;
        let r = redeem(&self.public, &id, &code, &verifier, REDIRECT).await;
        assert_eq!(r.status(), 200);
        (id, r.json().await.unwrap())
    }
}

async fn status_at(addr: SocketAddr, token: &str) -> u16 {
    status_url(&format!("http://{addr}"), token).await
}

async fn status_url(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_flow_with_every_hop_on_another_replica() {
    let Some(d) = Deployment::start(3, Duration::from_secs(3600)).await else {
        return;
    };
    let manager = rmcp_host_login(d.front(), &browser(), "johndoe@test.com").await;
    // Registration, consent page, consent decision, callback, confirmation and token each
    // landed on the replica after the previous one's.
    let hops: Vec<usize> = [
        "/register",
        "/authorize",
        "/auth/callback",
        "/auth/confirm",
        "/token",
    ]
    .iter()
    .flat_map(|p| d.lb.served(p))
    .collect();
    let mut distinct = hops.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, [0, 1, 2], "the DCR hops were spread: {hops:?}");

    let (tools, results) = use_tools(
        d.front(),
        manager,
        &[
            ("add", serde_json::json!({"a": 2, "b": 3})),
            ("whoami", serde_json::json!({})),
        ],
    )
    .await;
    assert_eq!(tools, ["add", "whoami"]);
    assert_eq!(results[0], Ok("5".to_owned()));
    assert!(
        d.lb.served("/mcp").len() >= 3,
        "MCP calls went round the replicas"
    );

    d.refresh_and_revoke_everywhere().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_from_two_replicas_makes_one_upstream_refresh() {
    // A3 access tokens live 1 s: after a 1.1 s pause each round, they are due for a refresh.
    let Some(d) = Deployment::start(3, Duration::from_secs(1)).await else {
        return;
    };
    let (_, tokens) = d.tokens("johndoe@test.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let before = d.dev.refresh_requests();
        let (v0, v1) = (
            d.replica(0).bridge.token_verifier(),
            d.replica(1).bridge.token_verifier(),
        );
        let (a, b) = tokio::join!(
            tokio::spawn({
                let t = access.clone();
                async move { v0.verify(&t).await }
            }),
            tokio::spawn({
                let t = access.clone();
                async move { v1.verify(&t).await }
            }),
        );
        assert!(a.unwrap().is_ok() && b.unwrap().is_ok(), "round {round}");
        assert_eq!(
            d.dev.refresh_requests() - before,
            1,
            "round {round}: one upstream refresh for both replicas"
        );
    }
    assert_eq!(status_at(d.replica(2).addr, &access).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_redeemed_at_one_replica_cannot_be_redeemed_at_another() {
    let Some(d) = Deployment::start(3, Duration::from_secs(3600)).await else {
        return;
    };
    let (id, code, verifier) = d.code("johndoe@test.com").await;
    let at = |i: usize| format!("http://{}", d.replica(i).addr);
    let (url0, url1) = (at(0), at(1));
    let (r0, r1) = tokio::join!(
        redeem(&url0, &id, &code, &verifier, REDIRECT),
        redeem(&url1, &id, &code, &verifier, REDIRECT),
    );
    // At most one redemption succeeds. The other is a replay (RFC 6749 §4.1.2), which revokes the
    // grant: depending on the interleaving, before the first one's tokens are issued (both get
    // 400) or after (the winner's tokens stop working below).
    let mut statuses = [r0.status().as_u16(), r1.status().as_u16()];
    statuses.sort();
    assert!(
        statuses == [200, 400] || statuses == [400, 400],
        "at most one redemption: {statuses:?}"
    );
    let mut access = None;
    for r in [r0, r1] {
        let ok = r.status() == 200;
        let body: Value = r.json().await.unwrap();
        if ok {
            access = Some(body["access_token"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(body["error"], "invalid_grant");
        }
    }

    // A third try, at the third replica: refused, and the grant is gone everywhere.
    let r = redeem(&at(2), &id, &code, &verifier, REDIRECT).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    if let Some(access) = access {
        for i in 0..3 {
            assert_eq!(status_at(d.replica(i).addr, &access).await, 401);
        }
    }
}

/// The admin API of one replica signs a user out everywhere: the user's hosts' tokens fail at the
/// next request on every replica, their refresh tokens too, A3's refresh tokens are revoked at
/// A3, and another replica's admin API sees the same grants (the index is in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sign_out_ends_a_user_everywhere_on_every_replica() {
    let Some(d) = Deployment::start(3, Duration::from_secs(3600)).await else {
        return;
    };
    let (jane_1, tokens_1) = d.tokens("janedoe@test.com").await;
    let (jane_2, tokens_2) = d.tokens("janedoe@test.com").await;
    let (_, johns) = d.tokens("johndoe@test.com").await;
    let token = |t: &Value, name: &str| t[name].as_str().unwrap().to_owned();
    let janes = [(jane_1, &tokens_1), (jane_2, &tokens_2)];
    for (_, t) in &janes {
        for i in 0..3 {
            assert_eq!(status_at(d.replica(i).addr, &token(t, "access_token")).await, 200);
        }
    }
    let admin_0 = AdminApi::serve(&d.replica(0).bridge, None).await;
    let admin_2 = AdminApi::serve(&d.replica(2).bridge, None).await;
    let (status, listed) = admin_2.get("/admin/grants?subject=janedoe@test.com").await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    let (_, clients) = admin_2.get("/admin/clients").await;
    assert_eq!(clients["items"].as_array().unwrap().len(), 3, "{clients}");

    let revocations = d.dev.revocation_requests();
    let (status, body) = admin_0.sign_out("janedoe@test.com").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"grants_revoked": 2, "a3_tokens_revoked": 2})
    );
    assert_eq!(
        d.dev.revocation_requests() - revocations,
        2,
        "both A3 refresh tokens revoked at A3"
    );
    for (client_id, t) in &janes {
        for i in 0..3 {
            let replica = d.replica(i);
            assert_eq!(
                status_at(replica.addr, &token(t, "access_token")).await,
                401,
                "replica {i}"
            );
            let r = refresh_at(
                &format!("http://{}", replica.addr),
                client_id,
                &token(t, "refresh_token"),
            )
            .await;
            assert_eq!(
                r.json::<Value>().await.unwrap()["error"],
                "invalid_grant",
                "replica {i}"
            );
        }
    }
    let (_, listed) = admin_2.get("/admin/grants?subject=janedoe@test.com").await;
    assert_eq!(listed["items"], serde_json::json!([]));
    for i in 0..3 {
        assert_eq!(
            status_at(d.replica(i).addr, &token(&johns, "access_token")).await,
            200,
            "another user stays signed in"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_mid_flow_loses_nothing() {
    let Some(mut d) = Deployment::start(3, Duration::from_secs(3600)).await else {
        return;
    };
    let public = d.public.clone();
    let id = register_vscode(&public).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The replica that registered the client dies.
    d.kill(d.lb.last("POST", "/register"));
    let (url, verifier, _) = host_request(&public, &id, REDIRECT, &[]);
    let b = browser();
    let fields = open_consent(&b, &url).await;
    let r = decide(&b, &public, &fields, "approve").await;
    assert_eq!(r.status(), 303);
    let callback = sign_in_upstream(&b, &location(&r), "johndoe@test.com").await;
    let back = allow_at_callback(&b, &callback, "johndoe@test.com").await;
    let code = query_param(&back, "code").expect("the transaction survived");
    let r = redeem(&public, &id, &code, &verifier, REDIRECT).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    // The replica that issued the tokens dies too; the host notices nothing.
    d.kill(d.lb.last("POST", "/token"));
    let access = tokens["access_token"].as_str().unwrap();
    let front = d.front();
    for _ in 0..3 {
        assert_eq!(mcp_status(front, access).await, 200);
    }
    let r = refresh_at(&public, &id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_flow_and_503_while_it_is_down() {
    let Some(mut d) = Deployment::start(2, Duration::from_secs(3600)).await else {
        return;
    };
    let (id, tokens) = d.tokens("johndoe@test.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(mcp_status(d.front(), &access).await, 200);

    // Redis down: a clear 503 (never 500) from the MCP endpoint and the token endpoint.
    d.redis.stop();
    assert_eq!(mcp_status(d.front(), &access).await, 503);
    let r = refresh_at(&d.public, &id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/register", d.public))
        .json(&serde_json::json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    // Redis back (same data): every replica reconnects, the host's tokens keep working.
    d.redis.restart();
    let mut ok = 0;
    for _ in 0..40 {
        if mcp_status(d.front(), &access).await == 200 {
            ok += 1;
            if ok == 2 {
                break; // both replicas
            }
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_eq!(ok, 2, "the replicas reconnected");
    let r = refresh_at(&d.public, &id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "the flow resumes");
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(
        mcp_status(d.front(), fresh["access_token"].as_str().unwrap()).await,
        200
    );
    // And a new host can go through the whole flow.
    let (_, more) = d.tokens("janedoe@test.com").await;
    assert!(more["access_token"].is_string());
}

/// `rediss://` with a CA made at test time and a client certificate (the server asks for one):
/// the whole host flow, a refresh and a revocation across three replicas. Connecting without the
/// CA, without the client certificate or without TLS fails, so the replicas really speak TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_over_tls_with_a_client_certificate() {
    let ca = TestCa::new();
    let Some(redis) = Redis::start_tls(&ca) else {
        return;
    };
    let read = |file: &str| std::fs::read(ca.path(file)).unwrap();
    let refused = |builder: a3_mcp_auth::dcr::store::RedisStoreBuilder| async move {
        builder
            .prefix("x:")
            .connect()
            .await
            .expect_err("refused")
            .to_string()
    };
    let e = refused(RedisStore::builder(&redis.url())).await;
    assert!(
        e.contains("certificate"),
        "the system's roots do not know the test CA: {e}"
    );
    let e = refused(RedisStore::builder(&redis.url()).tls_ca_pem(read("ca.pem"))).await;
    assert!(!e.is_empty(), "Redis wants a client certificate");
    refused(RedisStore::builder(&format!(
        "redis://127.0.0.1:{}/0",
        redis.port
    )))
    .await;

    let vars = vec![
        ("STORE_URL", redis.url()),
        ("STORE_TLS_CA_FILE", ca.path("ca.pem")),
        ("STORE_TLS_CERT_FILE", ca.path("client.pem")),
        ("STORE_TLS_KEY_FILE", ca.path("client.key")),
    ];
    let d = Deployment::start_on(redis, vars, vec![Box::new(ca)], 3, Duration::from_secs(3600)).await;
    d.refresh_and_revoke_everywhere().await;
}

/// Waits (up to 15 s) until the Redis at `port` reports `field` in `INFO replication`.
async fn wait_for_replication(port: u16, field: &str) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
    for _ in 0..60 {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if info.contains(field) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("Redis on {port} never reported {field}");
}

/// `redis+sentinel://` through one Sentinel, with a Redis replica beside the master: the host
/// flow across two replicas of our server; then the master dies, the Sentinel promotes the
/// replica, and every replica of our server finds the new master by itself: the host's tokens
/// keep working, a refresh and a new sign-in write to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_through_sentinel_follow_a_failover() {
    let Some(master) = Redis::start() else { return };
    let standby = Redis::start_with(
        vec!["--replicaof".into(), "127.0.0.1".into(), master.port.to_string()],
        false,
    )
    .unwrap();
    wait_for_replication(standby.port, "master_link_status:up").await;
    let sentinel = start_sentinel(master.port);
    let url = format!("redis+sentinel://127.0.0.1:{}/mymaster/0", sentinel.port);
    let standby_port = standby.port;
    let mut d = Deployment::start_on(
        master,
        vec![("STORE_URL", url)],
        vec![Box::new(standby), Box::new(sentinel)],
        2,
        Duration::from_secs(3600),
    )
    .await;
    let (id, tokens) = d.tokens("johndoe@test.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    for i in 0..2 {
        assert_eq!(status_at(d.replica(i).addr, &access).await, 200);
    }
    // Let the grant reach the standby before the master dies (replication is asynchronous).
    tokio::time::sleep(Duration::from_millis(500)).await;

    d.redis.stop();
    wait_for_replication(standby_port, "role:master").await;
    let mut moved = [false, false];
    for _ in 0..80 {
        for (i, done) in moved.iter_mut().enumerate() {
            *done = *done || status_at(d.replica(i).addr, &access).await == 200;
        }
        if moved == [true, true] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(moved, [true, true], "every replica follows the failover");
    let r = refresh_at(&d.public, &id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "writes go to the new master");
    let (_, more) = d.tokens("janedoe@test.com").await;
    assert!(more["access_token"].is_string());
}

/// POST /register from `local` to `base` (no `Origin`: a host like VS Code).
async fn register_at(base: &str, local: std::net::IpAddr) -> u16 {
    reqwest::Client::builder()
        .local_address(local)
        .build()
        .unwrap()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The registration rate limit is one limit for all replicas: it lives in Redis. Before, each
/// replica kept its own buckets, so behind a round-robin balancer one address registered
/// replicas × the burst. Another address still registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_limit_holds_across_replicas() {
    let Some(d) = Deployment::start(3, Duration::from_secs(3600)).await else {
        return;
    };
    let here = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut created = 0;
    let refused = loop {
        let status = register_at(&d.public, here).await;
        if status != 201 || created == 40 {
            break status;
        }
        created += 1;
    };
    assert_eq!(created, 10, "the default burst, across three replicas");
    assert_eq!(refused, 429);
    let mut spread = d.lb.served("/register");
    spread.sort();
    spread.dedup();
    assert_eq!(spread, [0, 1, 2], "every replica answered some");
    for i in 0..3 {
        let at = format!("http://{}", d.replica(i).addr);
        assert_eq!(register_at(&at, here).await, 429, "replica {i}");
        assert_eq!(
            register_at(&at, std::net::IpAddr::from([127, 0, 0, 2 + i as u8])).await,
            201,
            "another address, replica {i}"
        );
    }
}

#[tokio::test]
async fn store_url_needs_the_shared_key() {
    let config = a3_mcp_auth::config::A3ConfigBuilder::from_vars(|name| {
        (name == "STORE_URL").then(|| "redis://127.0.0.1:9/0".to_owned())
    })
    .issuer_url("http://127.0.0.1:9")
    .client("c", "s")
    .build()
    .unwrap();
    let err = a3_mcp_auth::dcr::DcrBridge::builder(&config)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TOKEN_ENCRYPTION_KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_server_processes_configured_by_environment() {
    let Some(mut redis) = Redis::start() else { return };
    let Some(binary) = example_server() else { return };
    let lb_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", lb_listener.local_addr().unwrap());
    let dev = DevIssuer::builder()
        .client(
            "replica-proxy-client",
            SECRET,
            [format!("{public}/auth/callback")],
        )
        .resource(format!("{public}/mcp"))
        .start()
        .await
        .unwrap();
    let mut backends = Vec::new();
    let mut processes = Vec::new();
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = std::process::Command::new(&binary)
            .env_remove("ISSUER_PATH")
            .env("ISSUER_URL", dev.url())
            .env("CLIENT_ID", "replica-proxy-client")
            .env("CLIENT_SECRET", SECRET)
            .env("RESOURCE_URI", format!("{public}/mcp"))
            .env("PUBLIC_URL", &public)
            .env("BIND_ADDR", addr.to_string())
            .env("ADMIN_ADDR", "127.0.0.1:0")
            .env("MCP_STATELESS", "1")
            .env("STORE_URL", redis.url())
            .env("STORE_PREFIX", "processes:")
            .env("TOKEN_ENCRYPTION_KEY", KEY)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        processes.push(Some(Process(child)));
        backends.push(addr);
    }
    for addr in &backends {
        let mut up = false;
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "replica {addr} did not start");
    }
    let lb = Arc::new(Lb {
        backends: backends.clone(),
        next: AtomicUsize::new(0),
        log: Mutex::new(Vec::new()),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    });
    let app = axum::Router::new().fallback(forward).with_state(lb.clone());
    let _lb_task = tokio::spawn(async move {
        let _ = axum::serve(lb_listener, app).await;
    });

    // Registration, consent, callback: spread over the three processes.
    let id = register_vscode(&public).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, verifier, _) = host_request(&public, &id, REDIRECT, &[]);
    let b = browser();
    let fields = open_consent(&b, &url).await;
    let r = decide(&b, &public, &fields, "approve").await;
    assert_eq!(r.status(), 303);
    // The process that holds the consent's transaction dies (SIGKILL) before A3 sends the
    // browser back.
    processes[lb.last("POST", "/authorize")] = None;
    let callback = sign_in_upstream(&b, &location(&r), "johndoe@test.com").await;
    let back = allow_at_callback(&b, &callback, "johndoe@test.com").await;
    let code = query_param(&back, "code").unwrap();
    let r = redeem(&public, &id, &code, &verifier, REDIRECT).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(status_url(&public, access).await, 200);
    }
    // Redis restarts (with its data): the processes reconnect.
    redis.restart();
    let mut ok = false;
    for _ in 0..40 {
        if status_url(&public, access).await == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "the processes reconnected to Redis");
    let r = refresh_at(&public, &id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let fresh: Value = r.json().await.unwrap();
    let access = fresh["access_token"].as_str().unwrap();
    assert_eq!(status_url(&public, access).await, 200);
    let r = reqwest::Client::new()
        .post(format!("{public}/revoke"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (i, addr) in backends.iter().enumerate() {
        if processes[i].is_some() {
            assert_eq!(status_at(*addr, access).await, 401, "process {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_the_store_while_redis_is_down() {
    let Some(mut d) = Deployment::start(1, Duration::from_secs(3600)).await else {
        return;
    };
    let readyz = format!("http://{}/readyz", d.replica(0).addr);
    let status = |body: &Value| body["checks"]["store"].as_str().unwrap_or_default().to_owned();
    let probe = || async {
        let r = reqwest::get(&readyz).await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (code, body) = probe().await;
    assert_eq!((code, status(&body)), (200, "ok".to_owned()), "{body}");

    // Redis stops: within the ping's timeout and cache, not ready, naming the store only.
    d.redis.stop();
    let mut seen = None;
    for _ in 0..60 {
        let (code, body) = probe().await;
        if code == 503 {
            seen = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = seen.expect("readyz answered 503 while Redis was down");
    assert_eq!(body["status"], "not_ready");
    assert_ne!(status(&body), "ok");
    assert_eq!(body["checks"]["jwks"], "ok");
    let text = body.to_string();
    assert!(
        !text.contains(&d.redis.port.to_string()),
        "no internal address in an unauthenticated answer: {text}"
    );

    // Back: ready again.
    d.redis.restart();
    let mut ready = false;
    for _ in 0..80 {
        if probe().await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readyz answered 200 again once Redis was back");
}
