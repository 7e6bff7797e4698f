//! A whole MCP request over HTTP: `tools/list` and `tools/call` through the example server's
//! composition (`examples/server/app.rs` `mcp_app`: trace, CORS, body limit, timeout, Origin
//! check, `BearerAuth` (cache hit), `RequireScope`, `SessionBinding`, `ToolContext`, rmcp with
//! `ContextFiltered<Calculator>`), against the same rmcp service with the same calculator and
//! nothing in front of it. Both are served by `a3_mcp_auth::serve` on loopback; one client
//! (reqwest, one keep-alive connection) sends one request at a time in an open MCP session, with
//! the example's Prometheus recorder installed, as `cargo run --example server` runs.
//!
//! `cargo bench --bench mcp` runs criterion for each variant, then an interleaved pass (bare and
//! full in turn, alternating which goes first, in one process, so the shared VM's speed swings hit
//! both alike) and prints the table the README quotes. `-- --interleaved-only` skips criterion.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use a3_mcp_auth::A3Config;
use a3_mcp_auth::testing::TestIssuer;
use app::{Calculator, McpSettings, mcp_app};
use axum::Router;
use criterion::Criterion;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

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
            .call("tools/call", json!({"name": "add", "arguments": {"a": 1, "b": 2}}))
            .await;
        assert!(body.windows(3).any(|w| w == b"\"3\""));
    }
}

/// Serves `app` on a loopback listener already bound.
fn serve(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move { a3_mcp_auth::serve(listener, app).await });
}

/// The issuer, then (bare, full): the same calculator with nothing in front, and behind the
/// example's whole composition.
async fn endpoints() -> (TestIssuer, Endpoint, Endpoint) {
    let issuer = TestIssuer::start().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let config = A3Config::builder()
        .issuer_url(issuer.url())
        .resource_uri(&url)
        .build()
        .unwrap();
    let verifier = a3_mcp_auth::JwtVerifier::from_config(&config).await.unwrap();
    serve(listener, mcp_app(verifier, &McpSettings::new(&config)).unwrap());
    // John's token: `operation=addition` shows `add`; verified once, then a cache hit.
    let token = issuer
        .token(&url)
        .subject("johndoe@test.com")
        .scope("mcp:call")
        .claim("contexts", json!(["operation=addition"]))
        .expires_in(24 * 3600)
        .sign();
    let full = Endpoint::open(url, token.clone()).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let bare = StreamableHttpService::new(
        || Ok(Calculator::default()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(["127.0.0.1"])
            .with_legacy_session_mode(true),
    );
    serve(listener, Router::new().route_service("/mcp", bare));
    let bare = Endpoint::open(url, token).await;
    (issuer, bare, full)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let interleaved_only = std::env::args().any(|a| a == "--interleaved-only");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_issuer, bare, full) = rt.block_on(async {
        let _metrics = app::install_metrics().unwrap();
        endpoints().await
    });

    if !interleaved_only {
        let mut c = Criterion::default().configure_from_args().without_plots();
        let mut g = c.benchmark_group("mcp");
        g.bench_function("tools_list_bare", |b| b.to_async(&rt).iter(|| bare.tools_list()));
        g.bench_function("tools_list_full_stack", |b| {
            b.to_async(&rt).iter(|| full.tools_list())
        });
        g.bench_function("tools_call_bare", |b| b.to_async(&rt).iter(|| bare.tools_call()));
        g.bench_function("tools_call_full_stack", |b| {
            b.to_async(&rt).iter(|| full.tools_call())
        });
        g.finish();
        c.final_summary();
    }

    // `cargo test --benches` (no --bench): one short round, to check that it runs.
    let (rounds, per_slice) = if bench { (31, 300) } else { (1, 5) };
    rt.block_on(interleaved(&bare, &full, rounds, per_slice));
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

async fn interleaved(bare: &Endpoint, full: &Endpoint, rounds: usize, n: u32) {
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\ninterleaved, {rounds} rounds of {n} requests per variant, one keep-alive client:");
    println!("| request | bare rmcp (µs, median) | full stack (µs, median) | full / bare (median of per-round ratios) | added (µs, median of per-round differences) |");
    println!("|---|---:|---:|---:|---:|");
    for list in [true, false] {
        slice(n, bare, list).await; // warm-up
        slice(n, full, list).await;
        let (mut b, mut f, mut ratio, mut added) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Bare first in even rounds, full first in odd ones.
            let (x, y) = if round % 2 == 0 {
                let x = slice(n, bare, list).await;
                (x, slice(n, full, list).await)
            } else {
                let y = slice(n, full, list).await;
                (slice(n, bare, list).await, y)
            };
            let (x, y) = (x.as_secs_f64() * 1e6, y.as_secs_f64() * 1e6);
            b.push(x);
            f.push(y);
            ratio.push(y / x);
            added.push(y - x);
        }
        println!(
            "| `{}` | {:.1} | {:.1} | {:.3} | {:.1} |",
            if list { "tools/list" } else { "tools/call add" },
            median(&mut b),
            median(&mut f),
            median(&mut ratio),
            median(&mut added),
        );
    }
}
