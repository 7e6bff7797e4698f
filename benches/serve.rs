//! What `a3_mcp_auth::serve` costs over `axum::serve`: a load generator in the same process
//! (16 concurrent clients on loopback against a trivial route), interleaved A B B A … in 1 s
//! slices so the shared VM's speed swings hit both alike. Two workloads: keep-alive connections
//! (the per-request cost: the in-progress bookkeeping, the body wrappers, `ConnectInfo`), and a
//! new connection per request (adds the admission to the connection table).
//!
//! `cargo bench --bench serve` prints requests per second per variant (medians) and the median
//! of the per-round ratios.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

const CLIENTS: usize = 16;
const SLICE: Duration = Duration::from_secs(1);
const ROUNDS: usize = 15;

fn app() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

async fn start_axum() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

async fn start_a3() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(a3_mcp_auth::serve(listener, app()).into_future());
    addr
}

/// Requests answered within one slice by `CLIENTS` concurrent clients.
async fn slice(addr: SocketAddr, keep_alive: bool) -> u64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(if keep_alive { CLIENTS } else { 0 })
        .build()
        .unwrap();
    let url = format!("http://{addr}/");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, done, stop) = (client.clone(), url.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.bytes().await.unwrap(), "ok");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(SLICE).await;
    let n = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (n as f64 / elapsed.as_secs_f64()) as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and only checks it runs.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        1
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let axum = start_axum().await;
        let a3 = start_a3().await;
        for keep_alive in [true, false] {
            let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            slice(axum, keep_alive).await; // warm-up
            slice(a3, keep_alive).await;
            for round in 0..rounds {
                // A B, then B A: neither variant always runs first.
                let (x, y) = if round % 2 == 0 {
                    let x = slice(axum, keep_alive).await;
                    (x, slice(a3, keep_alive).await)
                } else {
                    let y = slice(a3, keep_alive).await;
                    (slice(axum, keep_alive).await, y)
                };
                a.push(x as f64);
                b.push(y as f64);
                ratio.push(y as f64 / x as f64);
            }
            println!(
                "{:<32} axum::serve {:>8.0} req/s   a3_mcp_auth::serve {:>8.0} req/s   ratio (median of {rounds}) {:.3}",
                if keep_alive { "keep-alive connections" } else { "a new connection per request" },
                median(a),
                median(b),
                median(ratio),
            );
        }
    });
}
