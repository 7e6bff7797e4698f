//! The connection bounds of `a3_mcp_auth::serve` against real sockets on loopback: slow-header
//! (slowloris) connections by the thousand, a trickled request body, and a long response that
//! must survive a flood.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many connections this test process may open: half of what its file descriptor limit
/// leaves after a margin, at most 3 000 (the server runs in this process too).
fn connection_budget() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    (soft.saturating_sub(400) / 2).clamp(200, 3000)
}

async fn start(server: a3_mcp_auth::serve::Serve) -> SocketAddr {
    let addr = server.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(server));
    addr
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/stream",
            get(|| async {
                // A response that takes a while: one chunk now, one after 2 s.
                let chunks = futures_util::stream::unfold(0, |i| async move {
                    if i == 1 {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    (i < 2).then(|| (Ok::<_, std::io::Error>(format!("chunk{i}\n")), i + 1))
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
}

/// Opens `n` connections that each send half a request header and then nothing.
async fn slow_headers(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut slow = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    slow
}

/// Waits until at least `at_least` of the connections have been closed by the server, or until
/// `within` has passed; returns how many were closed by then.
async fn closed(slow: Vec<TcpStream>, at_least: usize, within: Duration) -> usize {
    let mut reads = tokio::task::JoinSet::new();
    for mut s in slow {
        reads.spawn(async move {
            let mut buf = [0u8; 256];
            // EOF or a reset; bytes first (a 408, say) are read past.
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
    let mut closed = 0;
    let deadline = tokio::time::Instant::now() + within;
    while closed < at_least {
        match tokio::time::timeout_at(deadline, reads.join_next()).await {
            Ok(Some(_)) => closed += 1,
            Ok(None) | Err(_) => break,
        }
    }
    closed
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_slow_headers_cannot_crowd_out_a_normal_request() {
    let n = connection_budget();
    let max = n / 5;
    // A header timeout far longer than the test: only making room at the cap can let the normal
    // request in (a cap that stopped accepting would make it wait for the timeouts).
    let addr = start(
        a3_mcp_auth::serve(listener().await, app())
            .max_connections(max)
            .header_read_timeout(Duration::from_secs(600)),
    )
    .await;
    let slow = slow_headers(addr, n).await;
    let r = http().get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let cut = closed(slow, n - max, Duration::from_secs(20)).await;
    assert!(
        cut >= n - max,
        "the server holds at most {max} of the {n} slow connections; {cut} were closed"
    );
    // And it keeps serving.
    let r = http().get(format!("http://{addr}/peer")).send().await.unwrap();
    assert!(
        r.text().await.unwrap().starts_with("127.0.0.1:"),
        "ConnectInfo is set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_headers_are_cut_after_the_header_read_timeout() {
    let addr =
        start(a3_mcp_auth::serve(listener().await, app()).header_read_timeout(Duration::from_secs(2))).await;
    let n = connection_budget().min(500);
    let slow = slow_headers(addr, n).await;
    assert_eq!(closed(slow, n, Duration::from_secs(30)).await, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_and_closed() {
    let addr =
        start(a3_mcp_auth::serve(listener().await, app()).request_body_timeout(Duration::from_secs(2))).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nten bytes!")
        .await
        .unwrap();
    let mut response = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut response)).await;
    assert!(read.is_ok(), "the connection was closed");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    // A body sent in time is fine.
    let r = http()
        .post(format!("http://{addr}/echo"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_in_progress_survives_a_flood_at_the_cap() {
    let addr = start(
        a3_mcp_auth::serve(listener().await, app())
            .max_connections(50)
            .header_read_timeout(Duration::from_secs(600)),
    )
    .await;
    let mut stream = http().get(format!("http://{addr}/stream")).send().await.unwrap();
    assert_eq!(stream.chunk().await.unwrap().unwrap(), "chunk0\n");
    let slow = slow_headers(addr, 500).await;
    // The flood evicted idle connections only: the response in progress goes on.
    assert_eq!(stream.chunk().await.unwrap().unwrap(), "chunk1\n");
    assert_eq!(closed(slow, 450, Duration::from_secs(20)).await, 450);
}
