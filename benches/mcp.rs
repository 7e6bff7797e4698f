//! A whole MCP request over HTTP: `tools/list` and `tools/call` against the same rmcp calculator,
//! with the auth layers added one step at a time:
//!
//! - `bare`: nothing in front of rmcp;
//! - `bearer`: `BearerAuth` (a cache hit) and `RequireScope`;
//! - `session`: and `SessionBinding`;
//! - `auth`: and `ToolContext`, the handler wrapped in `ContextFiltered`: the whole auth stack as the
//!   README's composition stacks it;
//! - `whole`: the example server's whole composition (`examples/server/app.rs` `mcp_app`: the auth
//!   stack plus trace, CORS, body limit, timeout, Origin check, sensitive headers).
//!
//! All are served by `a3_mcp_auth::serve` on loopback; one client (reqwest, one keep-alive
//! connection per variant) sends one request at a time in an open MCP session, with the example's
//! Prometheus recorder installed as `cargo run --example server` installs it (`-- --no-recorder`
//! leaves the metrics facade without a recorder).
//!
//! `cargo bench --bench mcp` runs criterion for each variant, then an interleaved pass (the
//! variants in turn, rotating which goes first, in one process, so the shared VM's speed swings
//! hit all alike) and prints the table the README quotes. `-- --interleaved-only` skips criterion.
//!
//! For finding where the time goes (README, Benchmarks): `-- --control` adds a second bare service
//! (an A/A column), `-- --probes` adds `wrap` (the body type changed, no work) and `trusting`
//! (`BearerAuth` and `RequireScope` with a verifier that accepts at once), `-- --current-thread`
//! runs client and servers on one thread, and `-- --only NAME [--requests N]` sends only that
//! variant's requests, for `perf record` / `perf stat`.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use a3_mcp_auth::testing::TestIssuer;
use a3_mcp_auth::{
    A3Config, BearerAuthLayer, ContextFiltered, ProtectedResourceMetadata, RequireScopeLayer,
    SessionBindingLayer, ToolContextLayer,
};
use app::{Calculator, McpSettings, calculator_policy, mcp_app};
use axum::Router;
use criterion::Criterion;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tower::ServiceBuilder;

/// One MCP endpoint with an open session.
struct Endpoint {
    url: String,
    session: String,
    token: String,
    client: reqwest::Client,
    ids: AtomicU64,
}

impl Endpoint {
    async fn post(&self, session: Option<&str>, body: Value) -> reqwest::Response {
        let mut request = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        request.send().await.unwrap()
    }

    /// Opens a session at `url` (initialize, initialized).
    async fn open(url: String, token: String) -> Endpoint {
        let mut endpoint = Endpoint {
            url,
            session: String::new(),
            token,
            client: reqwest::Client::new(),
            ids: AtomicU64::new(1),
        };
        let r = endpoint
            .post(
                None,
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "bench", "version": "1"}}}),
            )
            .await;
        assert_eq!(r.status(), 200);
        endpoint.session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        r.bytes().await.unwrap();
        let r = endpoint
            .post(
                Some(&endpoint.session),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(r.status(), 202);
        endpoint
    }

    /// One request in the session; returns the response body (an SSE event with the result).
    async fn call(&self, method: &str, params: Value) -> bytes::Bytes {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let r = self
            .post(
                Some(&self.session),
                json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        assert!(!body.windows(7).any(|w| w == b"\"error\""), "{body:?}");
        body
    }

    async fn tools_list(&self) {
        let body = self.call("tools/list", json!({})).await;
        assert!(body.windows(5).any(|w| w == b"\"add\""));
    }

    async fn tools_call(&self) {
        let body = self
            .call(
                "tools/call",
                json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
            )
            .await;
        assert!(body.windows(3).any(|w| w == b"\"3\""));
    }
}

/// Serves `app` on a loopback listener already bound.
fn serve(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move { a3_mcp_auth::serve(listener, app).await });
}

/// A loopback listener and the MCP URL on it.
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    (listener, url)
}

/// The variants, served and each with an open session, from bare to the whole composition.
struct Variants {
    _issuer: TestIssuer,
    list: Vec<(&'static str, Endpoint)>,
}

/// An rmcp service with the calculator, `filtered` or not.
fn calculator(filtered: bool) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(["127.0.0.1"])
        .with_legacy_session_mode(true);
    let sessions = Arc::new(LocalSessionManager::default());
    if filtered {
        Router::new().route_service(
            "/mcp",
            StreamableHttpService::new(
                || Ok(ContextFiltered::new(Calculator::default())),
                sessions,
                config,
            ),
        )
    } else {
        Router::new().route_service(
            "/mcp",
            StreamableHttpService::new(|| Ok(Calculator::default()), sessions, config),
        )
    }
}

/// A verifier that accepts every token with fixed claims: the layer without the verification.
struct Trusting(a3_mcp_auth::Claims);

impl a3_mcp_auth::TokenVerifier for Trusting {
    async fn verify(&self, _: &str) -> Result<a3_mcp_auth::Claims, a3_mcp_auth::verifier::VerifyError> {
        Ok(self.0.clone())
    }
}

async fn variants(control: bool, probes: bool) -> Variants {
    let issuer = TestIssuer::start().await;
    // John's token: `operation=addition` shows `add`; verified once, then a cache hit. One
    // audience for all variants (the listeners differ only by port).
    let (full_listener, full_url) = bind().await;
    let token = issuer
        .token(&full_url)
        .subject("johndoe@test.com")
        .scope("mcp:call")
        .claim("contexts", json!(["operation=addition"]))
        .expires_in(24 * 3600)
        .sign();
    let config = A3Config::builder()
        .issuer_url(issuer.url())
        .resource_uri(&full_url)
        .build()
        .unwrap();
    let verifier = a3_mcp_auth::JwtVerifier::from_config(&config).await.unwrap();
    let challenge = ProtectedResourceMetadata::new(&full_url).unwrap().challenge();
    let bearer = || {
        ServiceBuilder::new()
            .layer(BearerAuthLayer::new(verifier.clone(), challenge.clone()))
            .layer(RequireScopeLayer::new(["mcp:call"], challenge.clone()))
    };
    let tool_context =
        || ToolContextLayer::new(calculator_policy(), challenge.clone()).with_base_scopes(["mcp:call"]);

    let apps = [
        ("bare", calculator(false)),
        ("bearer", calculator(false).layer(bearer())),
        (
            "session",
            calculator(false).layer(bearer().layer(SessionBindingLayer::new())),
        ),
        (
            "auth",
            calculator(true).layer(bearer().layer(SessionBindingLayer::new()).layer(tool_context())),
        ),
    ];
    let mut list = Vec::new();
    for (name, app) in apps {
        let (listener, url) = bind().await;
        serve(listener, app);
        list.push((name, Endpoint::open(url, token.clone()).await));
    }
    serve(
        full_listener,
        mcp_app(verifier, &McpSettings::new(&config)).unwrap(),
    );
    list.push(("whole", Endpoint::open(full_url, token.clone()).await));
    if probes {
        let wrap = ServiceBuilder::new().map_response(|r: http::Response<axum::body::Body>| {
            r.map(http_body_util::Either::<_, http_body_util::Full<bytes::Bytes>>::Left)
        });
        let (listener, url) = bind().await;
        serve(listener, calculator(false).layer(wrap));
        list.push(("wrap", Endpoint::open(url, token.clone()).await));
        let claims = a3_mcp_auth::Claims::from_value(json!({
            "sub": "johndoe@test.com", "scope": "mcp:call", "contexts": ["operation=addition"]}))
        .unwrap();
        let trusting = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(Trusting(claims), challenge.clone()))
            .layer(RequireScopeLayer::new(["mcp:call"], challenge.clone()));
        let (listener, url) = bind().await;
        serve(listener, calculator(false).layer(trusting));
        list.push(("trusting", Endpoint::open(url, token.clone()).await));
    }
    if control {
        let (listener, url) = bind().await;
        serve(listener, calculator(false));
        list.push(("bare again", Endpoint::open(url, token).await));
    }
    Variants {
        _issuer: issuer,
        list,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let interleaved_only = std::env::args().any(|a| a == "--interleaved-only");
    // `-- --current-thread`: client and servers on one thread, so a request's time is the CPU
    // work along its path and none of it is waiting for another worker thread to wake up.
    let rt = if std::env::args().any(|a| a == "--current-thread") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    // `-- --control`: a second bare variant, served last, as a column of its own: what the
    // table shows for two identical services (an A/A test of the bench itself).
    let control = std::env::args().any(|a| a == "--control");
    // `-- --probes`: two more columns that take the bearer variant apart: `wrap` only changes
    // the response body type as every layer of this crate does (no work), `trusting` is
    // `BearerAuth` with a verifier that accepts at once (no hashing, cache or metrics in it).
    let probes = std::env::args().any(|a| a == "--probes");
    // `-- --no-recorder`: the metrics facade without a recorder (every metric a no-op).
    let recorder = !std::env::args().any(|a| a == "--no-recorder");
    let variants = rt.block_on(async {
        if recorder {
            app::install_metrics().unwrap();
        }
        variants(control, probes).await
    });

    // `-- --only NAME [--requests N]`: only that variant's requests, `tools/list` then `tools/call`,
    // N of each (default 20 000), and nothing else: for a profiler (`perf record`, `perf stat`).
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
    if let Some(only) = arg("--only") {
        let n: u32 = arg("--requests").map_or(20_000, |n| n.parse().unwrap());
        let (_, endpoint) = variants
            .list
            .iter()
            .find(|(name, _)| *name == only)
            .expect("--only: bare, bearer, session, auth or whole");
        rt.block_on(async {
            for list in [true, false] {
                let mean = slice(n, endpoint, list).await;
                println!(
                    "{only}: {n} × {}: {mean:?} each",
                    if list { "tools/list" } else { "tools/call" }
                );
            }
        });
        return;
    }

    if !interleaved_only {
        let mut c = Criterion::default().configure_from_args().without_plots();
        let mut g = c.benchmark_group("mcp");
        for (name, endpoint) in &variants.list {
            g.bench_function(format!("tools_list_{name}"), |b| {
                b.to_async(&rt).iter(|| endpoint.tools_list())
            });
            g.bench_function(format!("tools_call_{name}"), |b| {
                b.to_async(&rt).iter(|| endpoint.tools_call())
            });
        }
        g.finish();
        c.final_summary();
    }

    // `cargo test --benches` (no --bench): one short round, to check that it runs.
    let (rounds, per_slice) = if bench { (30, 300) } else { (1, 5) };
    rt.block_on(interleaved(&variants.list, rounds, per_slice));
}

/// Mean time of one request over `n` in a row.
async fn slice(n: u32, endpoint: &Endpoint, list: bool) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        if list {
            endpoint.tools_list().await;
        } else {
            endpoint.tools_call().await;
        }
    }
    start.elapsed() / n
}

async fn interleaved(variants: &[(&str, Endpoint)], rounds: usize, n: u32) {
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let count = variants.len();
    println!("\ninterleaved, {rounds} rounds of {n} requests per variant, one keep-alive client each:");
    let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
    println!(
        "| request | {} (µs) | {} (÷ bare) |",
        names.join(" (µs) | "),
        names[1..].join(" (÷ bare) | ")
    );
    println!("|---|{}", "---:|".repeat(2 * count - 1));
    for list in [true, false] {
        for (_, endpoint) in variants {
            slice(n, endpoint, list).await; // warm-up
        }
        let mut times = vec![Vec::new(); count];
        let mut ratios = vec![Vec::new(); count];
        for round in 0..rounds {
            // Each variant goes first in turn.
            let mut this = vec![0.0; count];
            for k in 0..count {
                let i = (round + k) % count;
                this[i] = slice(n, &variants[i].1, list).await.as_secs_f64() * 1e6;
            }
            for i in 0..count {
                times[i].push(this[i]);
                ratios[i].push(this[i] / this[0]);
            }
        }
        let times: Vec<String> = times.iter_mut().map(|t| format!("{:.1}", median(t))).collect();
        let ratios: Vec<String> = ratios[1..]
            .iter_mut()
            .map(|r| format!("{:.3}", median(r)))
            .collect();
        println!(
            "| `{}` | {} | {} |",
            if list { "tools/list" } else { "tools/call add" },
            times.join(" | "),
            ratios.join(" | ")
        );
    }
    println!("(medians over the rounds; the ratios are medians of the per-round ratios)");
}
