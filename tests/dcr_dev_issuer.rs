//! The DCR bridge against the embedded development issuer (`dev-issuer`), the crate's A3
//! look-alike, as `cargo run --example server` composes them: the quickstart flow with the rmcp
//! OAuth client as the MCP host, and the attacks that depend on the upstream's behaviour (silent
//! re-authorization, refresh-token revocation), played from pages on other loopback ports.

mod support;

use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
use a3_mcp_auth::dcr::store::MemoryStore;
use a3_mcp_auth::dev_issuer::DevIssuer;
use serde_json::{Value, json};
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
        .user("mallory@test.com", "secret", [("operation", "addition")])
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

/// Waits up to 2 s for the development issuer to have received `n` revocation requests.
async fn revocations_reach(dev: &DevIssuer, n: u64) -> bool {
    for _ in 0..40 {
        if dev.revocation_requests() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Account takeover by cookie tossing (issue 10 §1), played against the example's composition:
/// browsers share cookies across the ports of a host, so a page on another loopback port can
/// plant the attacker's browser binding in the victim's browser and send her to the issuer,
/// which signs her in silently. The callback cannot tell her browser from his; before the
/// confirmation it sent our code to the attacker's client. Now she gets a page that names her
/// account and the attacker's site, which only a post from our own page can answer.
#[tokio::test]
async fn cookie_tossing_from_another_port_cannot_take_over_an_account() {
    let (dev, server) = start(Duration::from_secs(3600)).await;
    // The victim connected her own host once: the issuer keeps her signed in.
    let victim = browser();
    host_code(&server, &victim, "janedoe@test.com").await;

    // The attacker registers a client that redirects to his site, approves his own consent
    // page in his own browser, and keeps the issuer URL and his binding cookie.
    let evil_redirect = "https://attacker.example/cb";
    let evil = register(
        &server.url,
        json!({"client_name": "Visual Studio Code", "redirect_uris": [evil_redirect]}),
    )
    .await;
    let evil = evil["client_id"].as_str().unwrap();
    let attacker = browser();
    let (url, verifier, _) = host_request(&server.url, evil, evil_redirect, &[]);
    let fields = open_consent(&attacker, &url).await;
    let approved = decide(&attacker, &server.url, &fields, "approve").await;
    assert_eq!(approved.status(), 303);
    let binding = set_cookie(&approved, "a3mcp_tx_");
    let issuer_url = location(&approved);

    // His page on another loopback port plants the binding in her browser and sends her on.
    let page = HostilePage::planting(vec![binding], issuer_url).await;
    let logins = dev.logins();
    let r = victim.get(&page.url).send().await.unwrap();
    let r = victim.get(location(&r)).send().await.unwrap();
    assert_eq!(dev.logins(), logins, "the issuer signed her in silently");
    let callback = location(&r);
    let r = victim.get(&callback).send().await.unwrap();
    if let Some(code) = r
        .headers()
        .get("location")
        .and_then(|l| query_param(l.to_str().unwrap(), "code"))
    {
        let tokens: Value = redeem(&server.url, evil, &code, &verifier, evil_redirect)
            .await
            .json()
            .await
            .unwrap();
        let who = whoami(&server, tokens["access_token"].as_str().unwrap()).await;
        panic!("account takeover: the attacker's client got a code, and whoami answers {who}");
    }
    assert_eq!(r.status(), 200, "the callback asks her to confirm");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("You are signed in as <strong><bdi>janedoe@test.com</bdi></strong>"),
        "the page names her account: {html}"
    );
    assert!(
        html.contains("the web site <strong>attacker.example</strong>"),
        "and where the access would go: {html}"
    );

    // The attacker's page cannot answer for her: a post from its origin is refused, even with
    // the page's secret (which it cannot read: ports are separate origins), and uses nothing up.
    let action = format!("{}/auth/confirm", server.url);
    let id = confirmation_id(&html);
    for form in [
        vec![("confirmation", id.as_str()), ("decision", "allow")],
        vec![("decision", "allow")],
    ] {
        let form: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r = submit_form(&victim, &page.url, &action, &form).await;
        assert_eq!(r.status(), 403, "a post from the attacker's page");
        assert!(r.headers().get("location").is_none());
    }

    // She sees her account going to attacker.example and denies: his client gets
    // access_denied and no code, and the issuer's tokens of this sign-in are revoked.
    let revoked = dev.revocation_requests();
    let r = confirm(&victim, &callback, &html, "deny").await;
    let back = location(&r);
    assert!(back.starts_with(evil_redirect), "{back}");
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&back, "code"), None);
    assert!(revocations_reach(&dev, revoked + 1).await, "A3's tokens revoked");
    let r = confirm(&victim, &callback, &html, "allow").await;
    assert_eq!(r.status(), 400, "a confirmation is answered once");
    assert!(r.headers().get("location").is_none());
}

/// The development issuer's own session cookie can be planted too (issue 10 §4: login CSRF by
/// cookie tossing, past any CSRF check of its form): the victim's next connection then signs in
/// as the attacker without a password. It is no longer silent: the confirmation names the
/// attacker's account, and she denies.
#[tokio::test]
async fn an_issuer_session_planted_from_another_port_is_named_before_anything_is_bound() {
    let (dev, server) = start(Duration::from_secs(3600)).await;
    // The attacker signs in at the issuer through a host of his own, and copies the session.
    let (attacker, jar) = browser_with_jar();
    host_code(&server, &attacker, "mallory@test.com").await;
    let session: Vec<String> = cookies_for(&jar, dev.url())
        .into_iter()
        .filter(|c| c.starts_with("a3_dev_issuer_session"))
        .collect();
    assert_eq!(session.len(), 1, "{session:?}");

    // His page plants it in the victim's browser; later she connects her own host.
    let page = HostilePage::planting(session, "https://attacker.example/".into()).await;
    let victim = browser();
    victim.get(&page.url).send().await.unwrap();
    let own = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, _, _) = host_request(&server.url, &own, VSCODE_REDIRECT, &[]);
    let fields = open_consent(&victim, &url).await;
    let r = decide(&victim, &server.url, &fields, "approve").await;
    let logins = dev.logins();
    let callback = sign_in_upstream(&victim, &location(&r), "janedoe@test.com").await;
    assert_eq!(
        dev.logins(),
        logins,
        "signed in silently, as the planted session's user"
    );
    let r = victim.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 200, "the callback asks her to confirm");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("You are signed in as <strong><bdi>mallory@test.com</bdi></strong>"),
        "{html}"
    );
    assert!(!html.contains("janedoe"));
    let back = location(&confirm(&victim, &callback, &html, "deny").await);
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&back, "code"), None);
}
