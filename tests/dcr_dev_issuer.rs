//! The DCR bridge against the embedded development issuer (`dev-issuer`), the crate's A3
//! look-alike: the quickstart flow with the rmcp OAuth client as the MCP host, and the attacks
//! that depend on the upstream's behaviour (silent re-authorization, refresh-token revocation).

mod support;

use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
use a3_mcp_auth::dcr::store::MemoryStore;
use a3_mcp_auth::dev_issuer::DevIssuer;
use serde_json::Value;
use support::*;

const SECRET: &str = "dev-proxy-secret";

/// Binds our port first, so the dev issuer knows our callback and resource exactly.
async fn start(access_ttl: Duration) -> (DevIssuer, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dev = DevIssuer::builder()
        .client(
            "dev-proxy-client",
            SECRET,
            [format!("http://{addr}/auth/callback")],
        )
        .resource(format!("http://{addr}/mcp"))
        .user(
            "janedoe@test.com",
            "secret",
            [("operation", "addition"), ("operation", "multiplication")],
        )
        .access_token_ttl(access_ttl)
        .start()
        .await
        .unwrap();
    let server = serve_bridge(
        listener,
        dev.url(),
        "dev-proxy-client",
        SECRET,
        MemoryStore::new(),
        |b| b,
    )
    .await;
    (dev, server)
}

#[tokio::test]
async fn quickstart_flow_against_the_dev_issuer() {
    let (dev, server) = start(Duration::from_secs(3600)).await;

    let manager = rmcp_host_login(&server, &browser(), "johndoe@test.com").await;
    let (tools, results) = use_tools(
        &server,
        manager,
        &[
            ("add", serde_json::json!({"a": 2, "b": 3})),
            ("multiply", serde_json::json!({"a": 2, "b": 3})),
            ("whoami", serde_json::json!({})),
        ],
    )
    .await;
    assert_eq!(tools, ["add", "whoami"]);
    assert_eq!(results[0], Ok("5".to_owned()));
    let hidden = results[1].as_ref().unwrap_err();
    assert!(hidden.contains("tool not found"), "{hidden}");
    let me: Value = serde_json::from_str(results[2].as_ref().unwrap()).unwrap();
    assert_eq!(me["subject"], "johndoe@test.com");
    assert_eq!(me["contexts"], serde_json::json!(["operation=addition"]));

    let manager = rmcp_host_login(&server, &browser(), "janedoe@test.com").await;
    manager.refresh_token().await.expect("refresh works");
    let token = manager.get_access_token().await.unwrap();
    assert_eq!(
        tool_names(&server, manager).await.unwrap(),
        ["add", "multiply", "whoami"]
    );

    let r = reqwest::Client::new()
        .post(format!("{}/revoke", server.url))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mcp_status(&server, &token).await, 401, "revoked");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(dev.revocation_requests(), 1, "A3's refresh token was revoked too");
}

#[tokio::test]
async fn silent_upstream_reauthorization_needs_the_consenting_browser() {
    let (dev, server) = start(Duration::from_secs(3600)).await;
    let redirect = "http://127.0.0.1:33418/";
    let victim = browser();
    let own = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, _, _) = host_request(&server.url, &own, redirect, &[]);
    authorize(&victim, &server.url, &url, "johndoe@test.com").await;
    let logins = dev.logins();

    let attacker = browser();
    let evil = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, _, _) = host_request(&server.url, &evil, redirect, &[]);
    let fields = open_consent(&attacker, &url).await;
    let upstream_url = location(&decide(&attacker, &server.url, &fields, "approve").await);
    let callback = sign_in_upstream(&victim, &upstream_url, "johndoe@test.com").await;
    assert_eq!(dev.logins(), logins, "the upstream approved silently");
    let r = victim.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers().get("location").is_none(),
        "no code reaches the attacker's client"
    );
}

#[tokio::test]
async fn expired_a3_tokens_are_refreshed_once_and_a_dead_upstream_grant_ends_ours() {
    // A3 access tokens live 1 s: after a 1.1 s pause they are due for a refresh.
    let (dev, server) = start(Duration::from_secs(1)).await;
    let (id, tokens) = login_tokens(&server).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = dev.refresh_requests();
    let verifier = server.bridge.token_verifier();
    let results = futures_util::future::join_all((0..8).map(|_| verifier.verify(&access))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        dev.refresh_requests() - before,
        1,
        "concurrent requests share one refresh"
    );

    // A3 forgets every refresh token: the next refresh fails and our grant ends with it.
    dev.revoke_all_refresh_tokens();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(mcp_status(&server, &access).await, 401);
    let r = reqwest::Client::new()
        .post(format!("{}/token", server.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", id.as_str()),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}
