//! A whole MCP request over HTTP: `tools/list` and `tools/call` in three variants of the same
//! rmcp service with the same calculator:
//!
//! - `bare`: nothing in front of rmcp;
//! - `auth`: the auth layers only, as the README's composition stacks them: `BearerAuth` (cache
//!   hit), `RequireScope`, `SessionBinding`, `ToolContext`, and the handler wrapped in
//!   `ContextFiltered`;
//! - `full`: the example server's whole composition (`examples/server/app.rs` `mcp_app`: the
//!   auth layers plus trace, CORS, body limit, timeout, Origin check, sensitive headers).
//!
//! All are served by `a3_mcp_auth::serve` on loopback; one client (reqwest, one keep-alive
//! connection each) sends one request at a time in an open MCP session, with the example's
//! Prometheus recorder installed, as `cargo run --example server` runs.
//!
//! `cargo bench --bench mcp` runs criterion for each variant, then an interleaved pass (the
//! variants in turn, rotating which goes first, in one process, so the shared VM's speed swings
//! hit all alike) and prints the table the README quotes. `-- --interleaved-only` skips criterion.

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

/// The variants, served and each with an open session.
struct Endpoints {
    _issuer: TestIssuer,
    bare: Endpoint,
    auth: Endpoint,
    full: Endpoint,
}

async fn endpoints() -> Endpoints {
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
    let rmcp_config = || {
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(["127.0.0.1"])
            .with_legacy_session_mode(true)
    };

    let verifier = a3_mcp_auth::JwtVerifier::from_config(&config).await.unwrap();
    serve(
        full_listener,
        mcp_app(verifier.clone(), &McpSettings::new(&config)).unwrap(),
    );
    let full = Endpoint::open(full_url.clone(), token.clone()).await;

    let (listener, url) = bind().await;
    let challenge = ProtectedResourceMetadata::new(&full_url).unwrap().challenge();
    let auth = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(verifier, challenge.clone()))
        .layer(RequireScopeLayer::new(["mcp:call"], challenge.clone()))
        .layer(SessionBindingLayer::new())
        .layer(ToolContextLayer::new(calculator_policy(), challenge).with_base_scopes(["mcp:call"]))
        .service(StreamableHttpService::new(
            || Ok(ContextFiltered::new(Calculator::default())),
            Arc::new(LocalSessionManager::default()),
            rmcp_config(),
        ));
    serve(listener, Router::new().route_service("/mcp", auth));
    let auth = Endpoint::open(url, token.clone()).await;

    let (listener, url) = bind().await;
    let bare = StreamableHttpService::new(
        || Ok(Calculator::default()),
        Arc::new(LocalSessionManager::default()),
        rmcp_config(),
    );
    serve(listener, Router::new().route_service("/mcp", bare));
    let bare = Endpoint::open(url, token).await;
    Endpoints {
        _issuer: issuer,
        bare,
        auth,
        full,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let interleaved_only = std::env::args().any(|a| a == "--interleaved-only");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoints = rt.block_on(async {
        let _metrics = app::install_metrics().unwrap();
        endpoints().await
    });
    let variants = [
        ("bare", &endpoints.bare),
        ("auth", &endpoints.auth),
        ("full", &endpoints.full),
    ];

    if !interleaved_only {
        let mut c = Criterion::default().configure_from_args().without_plots();
        let mut g = c.benchmark_group("mcp");
        for (name, endpoint) in variants {
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
    rt.block_on(interleaved(&variants, rounds, per_slice));
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

async fn interleaved(variants: &[(&str, &Endpoint); 3], rounds: usize, n: u32) {
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\ninterleaved, {rounds} rounds of {n} requests per variant, one keep-alive client each:");
    println!(
        "| request | bare rmcp (µs) | auth layers (µs) | whole example composition (µs) | auth / bare | whole / bare |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for list in [true, false] {
        for (_, endpoint) in variants {
            slice(n, endpoint, list).await; // warm-up
        }
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut ratios: [Vec<f64>; 2] = Default::default();
        for round in 0..rounds {
            // Each variant goes first, second and third in turn.
            let mut this = [0.0; 3];
            for k in 0..3 {
                let i = (round + k) % 3;
                this[i] = slice(n, variants[i].1, list).await.as_secs_f64() * 1e6;
            }
            for i in 0..3 {
                times[i].push(this[i]);
            }
            ratios[0].push(this[1] / this[0]);
            ratios[1].push(this[2] / this[0]);
        }
        println!(
            "| `{}` | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} |",
            if list { "tools/list" } else { "tools/call add" },
            median(&mut times[0]),
            median(&mut times[1]),
            median(&mut times[2]),
            median(&mut ratios[0]),
            median(&mut ratios[1]),
        );
    }
    println!("(medians over the rounds; the ratios are medians of the per-round ratios)");
}
