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
//! `cargo test --test replicas`). Without `redis-server` (or the example binary) the tests are
//! skipped with a message, except under CI (`CI` set), where they fail.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
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

struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
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
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
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
            let url = redis.url();
            // Configured by `STORE_URL`, `STORE_PREFIX` and `TOKEN_ENCRYPTION_KEY`.
            let server = serve_replica(
                listener,
                &public,
                dev.url(),
                "replica-proxy-client",
                SECRET,
                |name| match name {
                    "STORE_URL" => Some(url.clone()),
                    "STORE_PREFIX" => Some("replicas-test:".into()),
                    "TOKEN_ENCRYPTION_KEY" => Some(KEY.into()),
                    _ => None,
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
        Some(Deployment {
            redis,
            dev,
            lb,
            replicas: servers,
            public,
            _lb_task: lb_task,
        })
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

    let manager = rmcp_host_login(d.front(), &browser(), "janedoe@test.com").await;
    manager.refresh_token().await.expect("refresh works");
    let token = manager.get_access_token().await.unwrap();
    assert_eq!(
        tool_names(d.front(), manager).await.unwrap(),
        ["add", "multiply", "whoami"]
    );
    for i in 0..3 {
        assert_eq!(status_at(d.replica(i).addr, &token).await, 200);
    }
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", d.public))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked_at = d.lb.last("POST", "/revoke");
    // Every replica refuses it at once (the bound is 0: our tokens resolve through Redis on
    // every request; no replica caches them).
    for i in 0..3 {
        assert_eq!(
            status_at(d.replica(i).addr, &token).await,
            401,
            "replica {i} (revoked at {revoked_at})"
        );
    }
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
