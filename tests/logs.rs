//! What the example server writes to its log at its default level: an MCP session id is a
//! credential for its owner's session (with a token of the same principal, anyone who holds it
//! is in that session), so it must not appear there. rmcp logs every new session id at INFO.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use a3_mcp_auth::testing::TestIssuer;
use serde_json::json;
use support::{Process, example_server};

/// Runs the example server (no DCR bridge: A3 tokens from a test issuer) with `rust_log` as
/// `RUST_LOG` (`None`: its default filter), opens, uses and deletes one MCP session, and returns
/// the session id and everything the server wrote.
async fn session_and_log(binary: &std::path::Path, rust_log: Option<&str>) -> (String, String) {
    let issuer = TestIssuer::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary);
    command
        .env_clear()
        .current_dir(dir.path())
        .env("ISSUER_URL", issuer.url())
        .env("RESOURCE_URI", &resource)
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut process = Process(command.spawn().unwrap());
    let mut up = false;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the example server did not start");

    let token = issuer
        .token(&resource)
        .subject("alice")
        .claim("contexts", json!(["operation=addition"]))
        .sign();
    let http = reqwest::Client::new();
    let post = |session: Option<&str>, body: serde_json::Value| {
        let mut req = http
            .post(&resource)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(id) = session {
            req = req.header("mcp-session-id", id);
        }
        req.send()
    };
    let init = post(
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let id = init.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = init.text().await;
    let r = post(
        Some(&id),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let r = post(
        Some(&id),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("whoami"));
    let r = http
        .delete(&resource)
        .bearer_auth(&token)
        .header("mcp-session-id", &id)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let _ = process.0.kill();
    let _ = process.0.wait();
    let mut log = String::new();
    process.0.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    process.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    (id, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_stay_out_of_the_default_log() {
    let Some(binary) = example_server() else { return };
    let (id, log) = session_and_log(&binary, None).await;
    assert!(
        log.contains("MCP server listening"),
        "the log at its default level was captured:\n{log}"
    );
    assert!(!log.contains(&id), "the session id {id} is in the log:\n{log}");

    // What the default filter keeps out: rmcp writes the id at INFO.
    let (id, log) = session_and_log(&binary, Some("info")).await;
    assert!(
        log.contains(&id),
        "rmcp no longer logs session ids at INFO:\n{log}"
    );
}
