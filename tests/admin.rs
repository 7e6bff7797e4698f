//! End to end: the admin API on its own loopback listener (`a3_mcp_auth::admin::serve`, as the
//! example serves it), in front of our server with the DCR bridge and the A3 stand-in, which
//! records the revocations it receives. Every operation is played as an operator would with
//! `curl`; the hosts' tokens are checked at the MCP endpoint. The replicas variant ("sign out
//! everywhere" at every replica) is in `tests/replicas.rs`.

mod support;

use std::sync::Arc;

use a3_mcp_auth::dcr::store::MemoryStore;
use serde_json::{Value, json};
use support::*;

const ADMIN_TOKEN: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

/// A host signed in as `user` through a freshly registered client.
struct Host {
    client_id: String,
    access: String,
    refresh: String,
}

async fn sign_in(server: &Server, user: &str) -> Host {
    let (client_id, code, verifier) = host_code(server, &browser(), user).await;
    let tokens: Value = redeem(&server.url, &client_id, &code, &verifier, VSCODE_REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let host = Host {
        client_id,
        access: tokens["access_token"].as_str().unwrap().to_owned(),
        refresh: tokens["refresh_token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(mcp_status(server, &host.access).await, 200);
    host
}

async fn refresh_error(server: &Server, host: &Host) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/token", server.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", host.client_id.as_str()),
            ("refresh_token", host.refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["error"].clone()
}

fn revoked_at_a3(upstream: &Upstream) -> usize {
    upstream.state.revoked.lock().unwrap().len()
}

/// What no admin answer may contain: our tokens, A3's, sealed blobs.
fn assert_no_secret(body: &Value, hosts: &[&Host]) {
    let text = body.to_string();
    for host in hosts {
        assert!(
            !text.contains(&host.access) && !text.contains(&host.refresh),
            "{text}"
        );
    }
    for marker in [
        "a3mcp_at_",
        "a3mcp_rt_",
        "a3mcp_code_",
        "upstream",
        "access_tokens",
        "refresh\"",
    ] {
        assert!(!text.contains(marker), "{marker} in {text}");
    }
}

#[tokio::test]
async fn every_admin_operation_end_to_end() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, Arc::new(MemoryStore::new()), |b| b).await;
    let admin = AdminApi::serve(&server.bridge, None).await;
    let john_1 = sign_in(&server, "johndoe@test.com").await;
    let john_2 = sign_in(&server, "johndoe@test.com").await;
    let jane = sign_in(&server, "janedoe@test.com").await;
    let hosts = [&john_1, &john_2, &jane];

    // List the registered clients, two per page.
    let (status, page1) = admin.get("/admin/clients?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let after = page1["next"].as_str().unwrap();
    let (_, page2) = admin.get(&format!("/admin/clients?limit=2&after={after}")).await;
    assert_eq!(page2["next"], Value::Null);
    let listed: Vec<&str> = [&page1, &page2]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = hosts.iter().map(|h| h.client_id.as_str()).collect();
    expected.sort();
    assert_eq!(listed, expected, "in client-id order, each once");
    let first = &page1["items"][0];
    assert_eq!(first["client_name"], "Visual Studio Code");
    assert_eq!(first["active_grants"], 1);
    assert_no_secret(&page1, &hosts);

    // John's grants (by subject), Jane's (by client).
    let (status, johns) = admin.get("/admin/grants?subject=johndoe@test.com").await;
    assert_eq!(status, 200);
    let johns = johns["items"].as_array().unwrap().clone();
    assert_eq!(johns.len(), 2);
    for g in &johns {
        assert_eq!(g["subject"], "johndoe@test.com");
        assert_eq!(g["scope"], "mcp:call");
        assert!(g["expires_at"].as_u64().unwrap() > g["created_at"].as_u64().unwrap());
    }
    let (_, janes) = admin
        .get(&format!("/admin/grants?client_id={}", jane.client_id))
        .await;
    assert_eq!(janes["items"][0]["subject"], "janedoe@test.com");
    assert_no_secret(&json!([johns, janes]), &hosts);

    // Revoke one grant: that host's tokens fail at the next request; A3's refresh token revoked.
    let grant_1 = johns
        .iter()
        .find(|g| g["client_id"] == john_1.client_id.as_str())
        .unwrap()["grant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = admin.delete(&format!("/admin/grants/{grant_1}")).await;
    assert_eq!(
        (status, body),
        (200, json!({"grants_revoked": 1, "a3_tokens_revoked": 1}))
    );
    assert_eq!(revoked_at_a3(&upstream), 1);
    assert_eq!(mcp_status(&server, &john_1.access).await, 401);
    assert_eq!(refresh_error(&server, &john_1).await, "invalid_grant");
    assert_eq!(
        mcp_status(&server, &john_2.access).await,
        200,
        "his other host keeps its grant"
    );
    assert_eq!(admin.delete(&format!("/admin/grants/{grant_1}")).await.0, 404);

    // Sign John out everywhere.
    let (status, body) = admin.sign_out("johndoe@test.com").await;
    assert_eq!(
        (status, body),
        (200, json!({"grants_revoked": 1, "a3_tokens_revoked": 1}))
    );
    assert_eq!(revoked_at_a3(&upstream), 2);
    assert_eq!(mcp_status(&server, &john_2.access).await, 401);
    assert_eq!(refresh_error(&server, &john_2).await, "invalid_grant");
    assert_eq!(
        admin.get("/admin/grants?subject=johndoe@test.com").await.1["items"],
        json!([])
    );
    assert_eq!(
        mcp_status(&server, &jane.access).await,
        200,
        "Jane is not signed out"
    );
    assert_eq!(
        admin.sign_out("johndoe@test.com").await,
        (200, json!({"grants_revoked": 0, "a3_tokens_revoked": 0}))
    );

    // Delete Jane's client: it and its grant go; the host must register again.
    let (status, body) = admin.delete(&format!("/admin/clients/{}", jane.client_id)).await;
    assert_eq!(
        (status, body),
        (200, json!({"grants_revoked": 1, "a3_tokens_revoked": 1}))
    );
    assert_eq!(revoked_at_a3(&upstream), 3);
    assert_eq!(mcp_status(&server, &jane.access).await, 401);
    assert_eq!(refresh_error(&server, &jane).await, "invalid_client");
    assert_eq!(
        admin.get(&format!("/admin/clients/{}", jane.client_id)).await.0,
        404
    );
    assert_eq!(
        admin
            .delete(&format!("/admin/clients/{}", jane.client_id))
            .await
            .0,
        404
    );
    let (url, _, _) = host_request(&server.url, &jane.client_id, VSCODE_REDIRECT, &[]);
    assert_eq!(
        browser().get(&url).send().await.unwrap().status(),
        400,
        "unregistered"
    );
    // John's clients stay registered (for their grace), without grants.
    let (_, client) = admin.get(&format!("/admin/clients/{}", john_2.client_id)).await;
    assert_eq!(client["active_grants"], 0);

    // The same operations from Rust.
    let john_3 = sign_in(&server, "johndoe@test.com").await;
    let page = server
        .bridge
        .grants_of_subject("johndoe@test.com", None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].client_id, john_3.client_id);
    let ended = server.bridge.sign_out("johndoe@test.com").await.unwrap();
    assert_eq!((ended.grants_revoked, ended.a3_tokens_revoked), (1, 1));
    assert_eq!(mcp_status(&server, &john_3.access).await, 401);

    // Requests the API does not understand.
    assert_eq!(
        admin.get("/admin/grants").await.0,
        400,
        "neither subject nor client_id"
    );
    assert_eq!(
        admin.get("/admin/grants?subject=a&client_id=b").await.0,
        400,
        "both"
    );
    assert_eq!(admin.get("/admin/clients?limit=x").await.0, 400);
    let r = reqwest::Client::new()
        .post(format!("{}/admin/sign-out", admin.url))
        .header("content-type", "text/plain")
        .body(r#"{"subject": "janedoe@test.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = reqwest::Client::new()
        .post(format!("{}/admin/sign-out", admin.url))
        .json(&json!({"user": "janedoe@test.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Pages are bounded: a client with more grants than a page lists them page by page.
#[tokio::test]
async fn listings_come_in_bounded_pages() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let admin = AdminApi::serve(&server.bridge, None).await;
    for _ in 0..3 {
        sign_in(&server, "janedoe@test.com").await;
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = admin
            .get(&format!(
                "/admin/grants?subject=janedoe@test.com&limit=1&after={after}"
            ))
            .await;
        assert_eq!(status, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1);
        seen.extend(items.iter().map(|g| g["grant_id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "grant-id order, no repeats");
    // A limit above the maximum is the maximum; zero is one.
    let (_, page) = admin.get("/admin/clients?limit=100000").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let (_, page) = admin.get("/admin/clients?limit=0").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

/// The attacks on the admin listener: a web page (on another loopback port of the operator's
/// machine, or a DNS-rebound name) sending requests through the operator's browser, and a
/// caller without the token when one is required.
#[tokio::test]
async fn the_admin_listener_admits_only_the_operator() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let jane = sign_in(&server, "janedoe@test.com").await;
    let hostile = HostilePage::serving("<p>nothing to see</p>".into()).await;
    let origin = hostile.url.trim_end_matches('/').to_owned();

    // Loopback without a token.
    let admin = AdminApi::serve(&server.bridge, None).await;
    let http = reqwest::Client::new();
    let sign_out = |extra: &[(&str, String)]| {
        let mut r = http
            .post(format!("{}/admin/sign-out", admin.url))
            .json(&json!({"subject": "janedoe@test.com"}));
        for (k, v) in extra {
            r = r.header(*k, v);
        }
        r.send()
    };
    // The page's fetch (or form post) to the admin port: the browser adds Origin and
    // Sec-Fetch-Site.
    let r = sign_out(&[
        ("origin", origin.clone()),
        ("sec-fetch-site", sec_fetch_site(&hostile.url, &admin.url).into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    // A page that rebinds its own name to 127.0.0.1 makes same-origin GETs (no Origin).
    let r = http
        .get(format!("{}/admin/grants?subject=janedoe@test.com", admin.url))
        .header("host", "rebound.attacker.example:9464")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        mcp_status(&server, &jane.access).await,
        200,
        "nothing was revoked"
    );
    assert_eq!(revoked_at_a3(&upstream), 0);

    // With ADMIN_TOKEN: nothing without it, or with another.
    let admin = AdminApi::serve(&server.bridge, Some(ADMIN_TOKEN)).await;
    let url = format!("{}/admin/clients", admin.url);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"admin\"");
    let body = r.text().await.unwrap();
    assert!(!body.contains(ADMIN_TOKEN));
    assert_eq!(
        http.get(&url)
            .bearer_auth("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJB=")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = http
        .post(format!("{}/admin/sign-out", admin.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("origin", origin)
        .json(&json!({"subject": "janedoe@test.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a browser is refused even with the token");
    assert_eq!(mcp_status(&server, &jane.access).await, 200);
    let r = http.get(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/admin/sign-out", admin.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"subject": "janedoe@test.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["grants_revoked"], 1);
    assert_eq!(mcp_status(&server, &jane.access).await, 401);
}

/// The example server does not start with its admin listener on a non-loopback address and no
/// `ADMIN_TOKEN`: it exits naming the variable, before listening anywhere.
#[tokio::test]
async fn the_example_refuses_to_start_off_loopback_without_a_token() {
    let Some(binary) = example_server() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(binary)
        .env_clear()
        .current_dir(dir.path())
        .env("RESOURCE_URI", format!("http://127.0.0.1:{port}/mcp"))
        .env("ADMIN_ADDR", "0.0.0.0:0")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), output)
        .await
        .expect("it exits at once")
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ADMIN_TOKEN"), "{stderr}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the MCP server never listened"
    );
}
