//! End-to-end tests of the DCR bridge over loopback HTTP: an A3 stand-in upstream, our server
//! (bridge + rmcp service behind BearerAuthLayer), and the rmcp OAuth client as the MCP host.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
use a3_mcp_auth::dcr::store::{
    BoxFuture, Index, IndexEntry, MemoryStore, Namespace, RedbStore, Store, StoreError,
};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn quickstart_flow_with_rmcp_host_refresh_and_revoke() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;

    // johndoe holds operation=addition.
    let browser = browser();
    let manager = rmcp_host_login(&server, &browser, "johndoe@test.com").await;
    let token = manager.get_access_token().await.unwrap();
    assert!(
        token.starts_with("a3mcp_at_"),
        "the host gets our opaque token, not A3's"
    );
    let claims = server.bridge.token_verifier().verify(&token).await.unwrap();
    assert_eq!(claims.subject(), Some("johndoe@test.com"));
    assert_eq!(tool_names(&server, manager).await.unwrap(), ["add", "whoami"]);

    // janedoe holds both contexts (another browser: another A3 session).
    let manager = rmcp_host_login(&server, &support::browser(), "janedoe@test.com").await;
    let refreshed = manager.refresh_token().await.expect("refresh works");
    let new_token = manager.get_access_token().await.unwrap();
    assert_ne!(new_token, token);
    let _ = refreshed;
    assert_eq!(mcp_status(&server, &new_token).await, 200);
    assert_eq!(
        tool_names(&server, manager).await.unwrap(),
        ["add", "multiply", "whoami"]
    );

    // Revocation: the next MCP request is refused, and A3's refresh token is revoked too.
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", server.url))
        .form(&[("token", new_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mcp_status(&server, &new_token).await, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        upstream.state.revoked.lock().unwrap().len(),
        1,
        "A3's token was revoked"
    );
}

#[tokio::test]
async fn metadata_and_registration() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let http = reqwest::Client::new();
    let m: Value = http
        .get(format!("{}/.well-known/oauth-authorization-server", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prm: Value = http
        .get(format!("{}/.well-known/oauth-protected-resource/mcp", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["issuer"], prm["authorization_servers"][0],
        "RFC 8414 §3.3: byte-identical issuer"
    );
    assert_eq!(m["issuer"], server.url);
    assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        serde_json::json!(["none"])
    );
    for field in [
        "registration_endpoint",
        "revocation_endpoint",
        "token_endpoint",
        "authorization_endpoint",
    ] {
        assert!(m[field].as_str().unwrap().starts_with(&server.url), "{field}");
    }

    let client = register_vscode(&server.url).await;
    assert_eq!(client["redirect_uris"].as_array().unwrap().len(), 4);
    assert_eq!(client["token_endpoint_auth_method"], "none");
    assert!(client["client_id"].as_str().unwrap().len() >= 32);
    assert!(client.get("client_secret").is_none());

    for (body, error) in [
        (
            serde_json::json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": ["https://a.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            serde_json::json!({"redirect_uris": ["https://u:p@a.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (serde_json::json!({"client_name": "x"}), "invalid_redirect_uri"),
        (
            serde_json::json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            serde_json::json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
    ] {
        let r = http
            .post(format!("{}/register", server.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error, "{body}");
    }
    let r = http
        .post(format!("{}/register", server.url))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/register", server.url))
        .body(r#"{"redirect_uris": ["https://a.example/cb"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "RFC 7591 §3.1: the body is application/json");
}

#[tokio::test]
async fn registration_flood_is_limited() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| {
        b.registration_rate_limit(3, Duration::from_secs(3600))
    })
    .await;
    for _ in 0..3 {
        register_vscode(&server.url).await;
    }
    let r = reqwest::Client::new()
        .post(format!("{}/register", server.url))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1/"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let capped = start_server(&upstream, MemoryStore::new(), |b| b.max_clients(2)).await;
    register_vscode(&capped.url).await;
    register_vscode(&capped.url).await;
    let r = reqwest::Client::new()
        .post(format!("{}/register", capped.url))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1/"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "total cap");
}

#[tokio::test]
async fn consent_page_is_protected_and_stores_nothing_before_approval() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let client = register_vscode(&server.url).await;
    let id = client["client_id"].as_str().unwrap();
    let (url, _, _) = host_request(&server.url, id, "http://127.0.0.1:51234/", &[]);
    let r = browser().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "loopback redirect matches on any port");
    assert!(
        !r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("a3mcp_tx"))
    );
    let h = r.headers().clone();
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["cache-control"], "no-store");
    // Not no-referrer: under it browsers send `Origin: null` with the page's own POST, which the
    // decision refuses (found in headless Chromium by the interop suite: Approve answered 403).
    assert_eq!(h["referrer-policy"], "same-origin");
    // form-action covers where the decision redirects: A3 (Approve) and the host (Deny).
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!(
            "form-action 'self' {}",
            upstream.url().trim_end_matches('/')
        )) && csp.contains("http://127.0.0.1:51234;"),
        "{csp}"
    );
    let cookies: Vec<_> = h
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies.iter().all(|c| c.starts_with("a3mcp_csrf=")),
        "only the CSRF cookie before approval: {cookies:?}"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("Visual Studio Code") && html.contains("127.0.0.1") && html.contains("mcp:call"));
    assert!(html.contains("claims to be"), "the name is self-asserted");

    // Deny goes back to the host with access_denied and our iss.
    let b = browser();
    let fields = open_consent(&b, &url).await;
    let r = decide(&b, &server.url, &fields, "deny").await;
    let loc = location(&r);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(server.url.as_str()));

    // A hostile client name is shown as text.
    let hostile = register(
        &server.url,
        json!({"client_name": "<script>alert(1)</script>", "redirect_uris": ["http://127.0.0.1/"]}),
    )
    .await;
    let (url, _, _) = host_request(
        &server.url,
        hostile["client_id"].as_str().unwrap(),
        "http://127.0.0.1:5/",
        &[],
    );
    let html = browser().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
}

#[tokio::test]
async fn authorize_validation() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let client = register_vscode(&server.url).await;
    let id = client["client_id"].as_str().unwrap();
    let b = browser();

    // Unregistered redirect URI and unknown client: an HTML page, never a redirect.
    for url in [
        host_request(&server.url, id, "https://evil.example/cb", &[]).0,
        host_request(&server.url, id, "http://127.0.0.1:33418/other", &[]).0,
        host_request(&server.url, "no-such-client", "http://127.0.0.1:33418/", &[]).0,
    ] {
        let r = b.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{url}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    // Malformed requests get an HTML page too, never a bare 4xx/5xx body.
    for url in [
        format!("{}/authorize?client_id=a&client_id=b", server.url),
        format!("{}/auth/callback?state=a&state=b", server.url),
        format!("{}/auth/callback?code=x&state=unknown", server.url),
    ] {
        let r = b.get(&url).send().await.unwrap();
        assert!(r.status().is_client_error(), "{url}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{url}"
        );
    }
    // Resource of another server, bad scope, missing PKCE: an HTML page too, never a redirect
    // before consent (anyone may register a redirect URI: no open redirector).
    let evil: Value = reqwest::Client::new()
        .post(format!("{}/register", server.url))
        .json(&serde_json::json!({"redirect_uris": ["https://evil.example/x"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let evil_id = evil["client_id"].as_str().unwrap();
    for (client, redirect) in [
        (id, "http://127.0.0.1:33418/"),
        (evil_id, "https://evil.example/x"),
    ] {
        for (extra, error) in [
            (vec![("resource", "http://127.0.0.1:1/other")], "invalid_target"),
            (vec![("scope", "admin")], "invalid_scope"),
        ] {
            let (url, _, _) = host_request(&server.url, client, redirect, &extra);
            let r = b.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 400, "{url}");
            assert!(r.headers().get("location").is_none(), "{url}");
            assert!(r.text().await.unwrap().contains(error), "{url}");
        }
        let url = format!(
            "{}/authorize?response_type=code&client_id={client}&redirect_uri={}",
            server.url,
            url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        );
        let r = b.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "PKCE is required");
        assert!(r.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn token_endpoint_attacks() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let client = register_vscode(&server.url).await;
    let id = client["client_id"].as_str().unwrap();
    let other = register_vscode(&server.url).await;
    let other_id = other["client_id"].as_str().unwrap();
    let redirect = "http://127.0.0.1:33418/";
    let b = browser();

    // Wrong PKCE verifier.
    let (url, _verifier, _) = host_request(&server.url, id, redirect, &[]);
    let back = authorize(&b, &server.url, &url, "johndoe@test.com").await;
    let code = query_param(&back, "code").unwrap();
    let r = redeem(&server.url, id, &code, &"x".repeat(43), redirect).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // A malformed verifier (RFC 7636 §4.1) is refused before the code is looked at.
    let (url, verifier, _) = host_request(&server.url, id, redirect, &[]);
    let back = authorize(&b, &server.url, &url, "johndoe@test.com").await;
    let code = query_param(&back, "code").unwrap();
    for bad in [
        "short".to_owned(),
        "x".repeat(129),
        format!("{}+", &verifier[..42]),
    ] {
        let r = redeem(&server.url, id, &code, &bad, redirect).await;
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_request",
            "{bad}"
        );
    }
    assert_eq!(
        redeem(&server.url, id, &code, &verifier, redirect).await.status(),
        200
    );
    // An S256 challenge that is not 43 characters.
    let url = format!(
        "{}/authorize?response_type=code&client_id={id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A33418%2F&code_challenge_method=S256&code_challenge={}",
        server.url,
        "a".repeat(44)
    );
    assert_eq!(b.get(&url).send().await.unwrap().status(), 400);

    // A code presented by another client.
    let (url, verifier, _) = host_request(&server.url, id, redirect, &[]);
    let back = authorize(&b, &server.url, &url, "johndoe@test.com").await;
    let code = query_param(&back, "code").unwrap();
    let r = redeem(&server.url, other_id, &code, &verifier, redirect).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");

    // Code replay revokes what the first redemption issued.
    let (url, verifier, state) = host_request(&server.url, id, redirect, &[]);
    let back = authorize(&b, &server.url, &url, "johndoe@test.com").await;
    assert_eq!(query_param(&back, "state"), Some(state));
    let code = query_param(&back, "code").unwrap();
    let r = redeem(&server.url, id, &code, &verifier, redirect).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let tokens: Value = r.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(mcp_status(&server, &access).await, 200);
    // A refresh token is never a bearer token.
    assert_eq!(mcp_status(&server, &refresh).await, 401);
    let r = redeem(&server.url, id, &code, &verifier, redirect).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        mcp_status(&server, &access).await,
        401,
        "the replay revoked the grant"
    );

    // Refresh rotation with a grace period, and refresh bound to its client.
    let (url, verifier, _) = host_request(&server.url, id, redirect, &[]);
    let back = authorize(&b, &server.url, &url, "johndoe@test.com").await;
    let tokens: Value = redeem(
        &server.url,
        id,
        &query_param(&back, "code").unwrap(),
        &verifier,
        redirect,
    )
    .await
    .json()
    .await
    .unwrap();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let refresh_with = |client: String, token: String| {
        let url = format!("{}/token", server.url);
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", &client),
                    ("refresh_token", &token),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = refresh_with(other_id.to_owned(), rt.to_owned()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let first: Value = refresh_with(id.to_owned(), rt.to_owned())
        .await
        .json()
        .await
        .unwrap();
    let second: Value = refresh_with(id.to_owned(), rt.to_owned())
        .await
        .json()
        .await
        .unwrap();
    assert!(
        first["access_token"].is_string() && second["access_token"].is_string(),
        "grace period"
    );
    assert_ne!(first["refresh_token"], tokens["refresh_token"]);
    assert_eq!(
        first["refresh_token"], second["refresh_token"],
        "a retry within the grace period gets the same successor, not a new chain"
    );
    assert_eq!(
        mcp_status(&server, first["access_token"].as_str().unwrap()).await,
        200
    );
}

#[tokio::test]
async fn rotated_refresh_token_reuse_after_grace_revokes_the_grant() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| {
        b.refresh_grace(Duration::from_secs(1))
    })
    .await;
    let (id, tokens) = login_tokens(&server).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let r = refresh_at(&server.url, &id, rt).await;
    assert_eq!(r.status(), 200);
    let next: Value = r.json().await.unwrap();
    let next_access = next["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&server, next_access).await, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The stolen old token, used after the grace period: refused, and the grant is over.
    let r = refresh_at(&server.url, &id, rt).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        mcp_status(&server, next_access).await,
        401,
        "reuse revoked the grant"
    );
    let r = refresh_at(&server.url, &id, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "invalid_grant",
        "the legitimate chain ends too"
    );
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_mint_one_successor() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let (id, tokens) = login_tokens(&server).await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let responses = futures_util::future::join_all((0..6).map(|_| refresh_at(&server.url, &id, rt))).await;
    let mut successors = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        successors.push(v["refresh_token"].as_str().unwrap().to_owned());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "one chain only: {successors:?}");
    // Once the successor has been used, the old token is reuse even within the grace period.
    let r = refresh_at(&server.url, &id, &successors[0]).await;
    assert_eq!(r.status(), 200);
    let newest: Value = r.json().await.unwrap();
    // (An invalid scope parameter does not hide the reuse.)
    let r = reqwest::Client::new()
        .post(format!("{}/token", server.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", id.as_str()),
            ("refresh_token", rt),
            ("scope", "no-such-scope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        mcp_status(&server, newest["access_token"].as_str().unwrap()).await,
        401,
        "reuse revoked the grant"
    );
}

#[tokio::test]
async fn browser_binding_csrf_and_state_replay() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let redirect = "http://127.0.0.1:33418/";

    // The victim has an A3 session (from an earlier legitimate login through the bridge).
    let victim = browser();
    let victim_client = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, _, _) = host_request(&server.url, &victim_client, redirect, &[]);
    authorize(&victim, &server.url, &url, "johndoe@test.com").await;

    // The attacker registers, consents in their own browser, and sends A3's URL to the victim.
    let attacker = browser();
    let evil = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, _, _) = host_request(&server.url, &evil, redirect, &[]);
    let fields = open_consent(&attacker, &url).await;
    let upstream_url = location(&decide(&attacker, &server.url, &fields, "approve").await);
    // A3 silently re-authorizes the victim; our callback must refuse the victim's browser.
    let callback = sign_in_upstream(&victim, &upstream_url, "johndoe@test.com").await;
    let r = victim.get(&callback).send().await.unwrap();
    assert_eq!(
        r.status(),
        403,
        "callback without the consenting browser's cookie"
    );
    assert!(r.headers().get("location").is_none());

    // Consent CSRF: the attacker's form (with its valid token) posted from the victim's browser.
    let (url, _, _) = host_request(&server.url, &evil, redirect, &[]);
    let fields = open_consent(&attacker, &url).await;
    let r = decide(&victim, &server.url, &fields, "approve").await;
    assert_eq!(r.status(), 403, "CSRF token bound to another browser");
    let r = decide(&browser(), &server.url, &fields, "approve").await;
    assert_eq!(r.status(), 403, "no CSRF cookie at all");
    let mut form = fields.clone();
    form.push(("decision".into(), "approve".into()));
    let r = attacker
        .post(format!("{}/authorize", server.url))
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-origin post");
    let r = attacker
        .post(format!("{}/authorize", server.url))
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site post");
    // Tampering with a consented parameter invalidates the token.
    let mut tampered = fields.clone();
    for (k, v) in tampered.iter_mut() {
        if k == "redirect_uri" {
            *v = "https://vscode.dev/redirect".into();
        }
    }
    let r = decide(&attacker, &server.url, &tampered, "approve").await;
    assert_eq!(r.status(), 403);

    // State replay: the same callback, with the same binding cookie, works once only.
    let b = browser();
    let (url, _, _) = host_request(&server.url, &victim_client, redirect, &[]);
    let fields = open_consent(&b, &url).await;
    let r = decide(&b, &server.url, &fields, "approve").await;
    let binding = set_cookie(&r, "a3mcp_tx_");
    let callback = sign_in_upstream(&b, &location(&r), "johndoe@test.com").await;
    allow_at_callback(&b, &callback, "johndoe@test.com").await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&callback)
        .header("cookie", binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "state replay");
}

#[tokio::test]
async fn a3_tokens_work_directly_and_upstream_refresh_is_transparent_and_coalesced() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;

    // A machine-to-machine client with an A3 token for this resource calls the MCP server directly.
    let m2m = upstream.issuer.token(&server.mcp_url()).subject("m2m").sign();
    assert_eq!(mcp_status(&server, &m2m).await, 200);
    let elsewhere = upstream.issuer.token("http://127.0.0.1:1/mcp").sign();
    assert_eq!(mcp_status(&server, &elsewhere).await, 401);

    // A3 access tokens that are due (here: expiring at once; still within the JWT leeway) are
    // refreshed behind the host's back.
    upstream.state.access_ttl.store(0, Ordering::SeqCst);
    let (_, tokens) = login_tokens(&server).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    upstream.state.access_ttl.store(3600, Ordering::SeqCst);
    let before = upstream.state.refreshes.load(Ordering::SeqCst);
    let verifier = server.bridge.token_verifier();
    let results = futures_util::future::join_all((0..8).map(|_| verifier.verify(&access))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        upstream.state.refreshes.load(Ordering::SeqCst) - before,
        1,
        "one refresh for concurrent requests"
    );
    assert_eq!(mcp_status(&server, &access).await, 200);
    assert_eq!(
        upstream.state.refreshes.load(Ordering::SeqCst) - before,
        1,
        "the refreshed token is reused"
    );
}

#[tokio::test]
async fn registrations_and_grants_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let key_file = dir.path().join("store.key");
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, RedbStore::open(&path).unwrap(), |b| {
        b.key_file(&key_file)
    })
    .await;
    let addr = server.addr;
    let manager = rmcp_host_login(&server, &browser(), "johndoe@test.com").await;
    let token = manager.get_access_token().await.unwrap();
    assert_eq!(mcp_status(&server, &token).await, 200);
    server.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Same address, same store file, same key.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = serve_on(listener, &upstream, RedbStore::open(&path).unwrap(), |b| {
        b.key_file(&key_file)
    })
    .await;
    assert_eq!(mcp_status(&server, &token).await, 200, "tokens survive");
    manager.refresh_token().await.expect("refresh tokens survive");
    assert_eq!(tool_names(&server, manager).await.unwrap(), ["add", "whoami"]);
}

/// Tokens issued before grants held their own token hashes (an entry per token, stored by its
/// hash; no grant id in the token) keep working after an upgrade: the access token until it
/// expires, the refresh token until it is rotated into the grant's chain, with the retry within
/// the grace period and reuse detection as for any other.
#[tokio::test]
async fn tokens_issued_by_an_earlier_version_keep_working() {
    let upstream = Upstream::start().await;
    let store = std::sync::Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| b).await;
    let (id, tokens) = login_tokens(&server).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let grant_id = refresh
        .strip_prefix("a3mcp_rt_")
        .and_then(|t| t.split_once('.'))
        .map(|(g, _)| g.to_owned())
        .expect("our tokens name their grant");
    // The grant as an earlier version stored it, and one entry per token beside it.
    let later = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs() + 3600;
    let raw = store.get(Namespace::Grant, &grant_id).await.unwrap().unwrap();
    let mut grant: serde_json::Map<String, Value> = serde_json::from_slice(&raw).unwrap();
    grant.remove("access_tokens");
    grant.remove("refresh");
    let put = |ns, key: String, value: Value| {
        let store = store.clone();
        async move {
            store
                .put(ns, &key, value.to_string().into_bytes(), Some(later))
                .await
                .unwrap()
        }
    };
    put(Namespace::Grant, grant_id.clone(), Value::Object(grant)).await;
    let (old_access, old_refresh) = (format!("a3mcp_at_{}", random()), format!("a3mcp_rt_{}", random()));
    put(
        Namespace::AccessToken,
        s256(&old_access),
        json!({"grant_id": grant_id, "client_id": id}),
    )
    .await;
    put(
        Namespace::RefreshToken,
        s256(&old_refresh),
        json!({"grant_id": grant_id, "client_id": id, "expires_at": later}),
    )
    .await;
    assert_eq!(
        mcp_status(&server, tokens["access_token"].as_str().unwrap()).await,
        401,
        "the rewritten grant knows no token of this version"
    );
    assert_eq!(mcp_status(&server, &old_access).await, 200);

    let r = refresh_at(&server.url, &id, &old_refresh).await;
    assert_eq!(r.status(), 200);
    let next: Value = r.json().await.unwrap();
    let successor = next["refresh_token"].as_str().unwrap();
    assert!(successor.starts_with(&format!("a3mcp_rt_{grant_id}.")));
    assert_eq!(
        mcp_status(&server, next["access_token"].as_str().unwrap()).await,
        200
    );
    let retry: Value = refresh_at(&server.url, &id, &old_refresh)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        retry["refresh_token"], successor,
        "a retry within the grace period"
    );
    let newest: Value = refresh_at(&server.url, &id, successor)
        .await
        .json()
        .await
        .unwrap();
    let r = refresh_at(&server.url, &id, &old_refresh).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        mcp_status(&server, newest["access_token"].as_str().unwrap()).await,
        401,
        "the old token used again after its successor: reuse, the grant is revoked"
    );
}

#[tokio::test]
async fn two_authorizations_in_one_browser_do_not_clash() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = browser();
    let mut pending = Vec::new();
    for port in ["33418", "40001"] {
        let redirect = format!("http://127.0.0.1:{port}/");
        let (url, verifier, _) = host_request(&server.url, &id, &redirect, &[]);
        let fields = open_consent(&b, &url).await;
        let upstream_url = location(&decide(&b, &server.url, &fields, "approve").await);
        pending.push((redirect, verifier, upstream_url));
    }
    for (redirect, verifier, upstream_url) in pending {
        let callback = sign_in_upstream(&b, &upstream_url, "johndoe@test.com").await;
        let back = allow_at_callback(&b, &callback, "johndoe@test.com").await;
        assert!(back.starts_with(&redirect), "{back}");
        let r = redeem(
            &server.url,
            &id,
            &query_param(&back, "code").unwrap(),
            &verifier,
            &redirect,
        )
        .await;
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn upstream_errors_and_mix_ups_reach_the_host_and_codes_expire() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| {
        b.code_ttl(Duration::from_secs(1))
    })
    .await;
    let id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let redirect = "http://127.0.0.1:33418/";
    let b = browser();
    let approve = || async {
        let (url, _, state) = host_request(&server.url, &id, redirect, &[]);
        let fields = open_consent(&b, &url).await;
        let upstream_url = location(&decide(&b, &server.url, &fields, "approve").await);
        (query_param(&upstream_url, "state").unwrap(), state)
    };
    // A3 answers with an error: the host gets access_denied, its state and our iss.
    let (a3_state, host_state) = approve().await;
    let url = format!(
        "{}/auth/callback?error=access_denied&state={a3_state}&iss={}",
        server.url,
        upstream.url()
    );
    let back = location(&b.get(&url).send().await.unwrap());
    assert!(back.starts_with(redirect));
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&back, "state"), Some(host_state));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(server.url.as_str()));
    // A response claiming another issuer (mix-up) is refused.
    let (a3_state, _) = approve().await;
    let url = format!(
        "{}/auth/callback?code=x&state={a3_state}&iss=http://127.0.0.1:1",
        server.url
    );
    let back = location(&b.get(&url).send().await.unwrap());
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(
        upstream.state.code_exchanges.load(Ordering::SeqCst),
        0,
        "no code was redeemed"
    );

    // Our codes expire (1 s here).
    let (url, verifier, _) = host_request(&server.url, &id, redirect, &[]);
    let back = authorize(&b, &server.url, &url, "johndoe@test.com").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = redeem(
        &server.url,
        &id,
        &query_param(&back, "code").unwrap(),
        &verifier,
        redirect,
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_keeps_a3s_newest_refresh_token_and_revoked_grants_stay_revoked() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    // A3 access tokens that expire at once: every use refreshes A3's tokens, and A3 refuses a
    // refresh token used twice.
    upstream.state.access_ttl.store(0, Ordering::SeqCst);
    let (id, tokens) = login_tokens(&server).await;
    let verifier = server.bridge.token_verifier();
    let mut access = tokens["access_token"].as_str().unwrap().to_owned();
    let mut rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    for round in 0..5 {
        let (r, checks) = tokio::join!(
            refresh_at(&server.url, &id, &rt),
            futures_util::future::join_all((0..4).map(|_| verifier.verify(&access)))
        );
        assert_eq!(r.status(), 200, "round {round}");
        assert!(checks.iter().all(Result::is_ok), "round {round}: {checks:?}");
        let v: Value = r.json().await.unwrap();
        access = v["access_token"].as_str().unwrap().to_owned();
        rt = v["refresh_token"].as_str().unwrap().to_owned();
        // A3's refresh token stored in the grant is the newest one: it still refreshes.
        assert!(verifier.verify(&access).await.is_ok(), "round {round}");
    }
    // After revocation the refresh token cannot bring the grant back.
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", server.url))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = refresh_at(&server.url, &id, &rt).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(mcp_status(&server, &access).await, 401);
}

/// A MemoryStore whose grant reads return 300 ms late while `slow` is set, and whose writes of
/// redeemed-code records happen 300 ms late while `slow_used_codes` is set: widens race windows.
#[derive(Clone)]
struct SlowGrantReads {
    inner: MemoryStore,
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    slow_used_codes: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Store for SlowGrantReads {
    fn put<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
        value: Vec<u8>,
        expires_at: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let slow = ns == Namespace::UsedCode && self.slow_used_codes.load(Ordering::SeqCst);
        Box::pin(async move {
            if slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            self.inner.put(ns, key, value, expires_at).await
        })
    }
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let slow = ns == Namespace::Grant && self.slow.load(Ordering::SeqCst);
        Box::pin(async move {
            let value = self.inner.get(ns, key).await;
            if slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            value
        })
    }
    fn take<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.inner.take(ns, key)
    }
    fn delete<'a>(&'a self, ns: Namespace, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.delete(ns, key)
    }
    fn count(&self, ns: Namespace) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.count(ns)
    }
    fn purge_expired(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.purge_expired()
    }
    fn index_put<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.index_put(index, key, member, expires_at)
    }
    fn index_remove<'a>(
        &'a self,
        index: Index,
        key: &'a str,
        member: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.index_remove(index, key, member)
    }
    fn index_members<'a>(
        &'a self,
        index: Index,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<IndexEntry>, StoreError>> {
        self.inner.index_members(index, key)
    }
}

#[tokio::test]
async fn a_grant_revoked_during_code_redemption_stays_revoked() {
    let upstream = Upstream::start().await;
    let store = SlowGrantReads {
        inner: MemoryStore::new(),
        slow: Default::default(),
        slow_used_codes: Default::default(),
    };
    let slow = store.slow.clone();
    let server = start_server(&upstream, store, |b| b).await;
    let (id, code, verifier) = johndoe_code(&server).await;
    let redirect = VSCODE_REDIRECT;
    slow.store(true, Ordering::SeqCst);
    // The redemption reads the grant slowly; meanwhile a replay of the code revokes the grant.
    let (first, second) = tokio::join!(redeem(&server.url, &id, &code, &verifier, redirect), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        redeem(&server.url, &id, &code, &verifier, redirect).await
    });
    slow.store(false, Ordering::SeqCst);
    assert_eq!(second.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let first: Value = first.json().await.unwrap();
    if let Some(access) = first["access_token"].as_str() {
        assert_eq!(
            mcp_status(&server, access).await,
            401,
            "the revoked grant was not written back"
        );
    }
}

#[tokio::test]
async fn a_consent_form_approves_once() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = browser();
    let (url, _, _) = host_request(&server.url, &id, "http://127.0.0.1:33418/", &[]);
    let fields = open_consent(&b, &url).await;
    assert_eq!(decide(&b, &server.url, &fields, "approve").await.status(), 303);
    for _ in 0..3 {
        let r = decide(&b, &server.url, &fields, "approve").await;
        assert_eq!(r.status(), 400, "replayed approval");
        assert!(r.headers().get("location").is_none());
    }
    // A new consent page gives a new form.
    let fields = open_consent(&b, &url).await;
    assert_eq!(decide(&b, &server.url, &fields, "approve").await.status(), 303);
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_revoke_the_grant() {
    let upstream = Upstream::start().await;
    let store = SlowGrantReads {
        inner: MemoryStore::new(),
        slow: Default::default(),
        slow_used_codes: Default::default(),
    };
    let slow = store.slow_used_codes.clone();
    let server = start_server(&upstream, store, |b| b).await;
    let (id, code, verifier) = johndoe_code(&server).await;
    let redirect = VSCODE_REDIRECT;
    // The redeemed-code record is written late; a replay arrives in between.
    slow.store(true, Ordering::SeqCst);
    let (first, second) = tokio::join!(redeem(&server.url, &id, &code, &verifier, redirect), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        redeem(&server.url, &id, &code, &verifier, redirect).await
    });
    slow.store(false, Ordering::SeqCst);
    let mut refused = 0;
    for r in [first, second] {
        let v: Value = r.json().await.unwrap();
        match v["access_token"].as_str() {
            Some(access) => assert_eq!(
                mcp_status(&server, access).await,
                401,
                "a replayed code revokes what it issued"
            ),
            None => refused += 1,
        }
    }
    assert!(refused >= 1);
}

#[tokio::test]
async fn refresh_refuses_a_scope_it_cannot_enforce() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| {
        b.scopes(["mcp:call", "mcp:admin"])
    })
    .await;
    let r: Value = reqwest::Client::new()
        .post(format!("{}/register", server.url))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1/"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["client_id"].as_str().unwrap();
    let redirect = "http://127.0.0.1:33418/";
    let (url, verifier, _) = host_request(&server.url, id, redirect, &[("scope", "mcp:call mcp:admin")]);
    let back = authorize(&browser(), &server.url, &url, "johndoe@test.com").await;
    let tokens: Value = redeem(
        &server.url,
        id,
        &query_param(&back, "code").unwrap(),
        &verifier,
        redirect,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tokens["scope"], "mcp:call mcp:admin");
    let refresh = |rt: String, scope: &'static str| {
        let url = format!("{}/token", server.url);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", id),
                    ("refresh_token", rt.as_str()),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (status, v) = refresh(rt.clone(), "mcp:call").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "narrowing"
    );
    let (status, v) = refresh(rt, "mcp:admin mcp:call").await;
    assert_eq!(status, 200, "the grant's scope, in any order");
    assert_eq!(v["scope"], "mcp:call mcp:admin");
}

#[tokio::test]
async fn an_upstream_refresh_for_another_user_ends_the_grant() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    upstream.state.access_ttl.store(0, Ordering::SeqCst); // every use refreshes A3's tokens
    let (id, tokens) = login_tokens(&server).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(server.bridge.token_verifier().verify(access).await.is_ok());
    *upstream.state.refresh_subject.lock().unwrap() = Some("mallory@test.com".into());
    assert!(
        server.bridge.token_verifier().verify(access).await.is_err(),
        "a refreshed token for another subject is not used"
    );
    *upstream.state.refresh_subject.lock().unwrap() = None;
    assert_eq!(mcp_status(&server, access).await, 401, "the grant is gone");
    let r = refresh_at(&server.url, &id, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

/// A tool policy with an extra scope (`TOOL_POLICY`): the bridge must offer that scope, or the
/// `insufficient_scope` challenge names a scope no host can obtain and step-up is impossible.
/// Found by the interop suite (interop/hosts/ts-sdk.mjs): the example offered only `mcp:call`.
#[tokio::test]
async fn the_policy_s_extra_scopes_can_be_obtained_by_step_up() {
    let upstream = Upstream::start().await;
    let policy = a3_mcp_auth::ToolPolicy::from_json_str(
        r#"{"tools": {"add": {"any_of": ["operation=addition"]},
                      "multiply": {"any_of": ["operation=multiplication"], "scopes": ["mcp:admin"]},
                      "whoami": {"public": true}}}"#,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve_bridge_with_policy(
        listener,
        upstream.url(),
        CLIENT_ID,
        CLIENT_SECRET,
        MemoryStore::new(),
        Some(policy),
        |b| b,
    )
    .await;

    let metadata: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["scopes_supported"],
        serde_json::json!(["mcp:call", "mcp:admin"])
    );

    let client = register_vscode(&server.url).await;
    let client_id = client["client_id"].as_str().unwrap();
    let redirect = "http://127.0.0.1:45678/";
    let (auth_url, verifier, _) = host_request(
        &server.url,
        client_id,
        redirect,
        &[("scope", "mcp:call mcp:admin")],
    );
    let back = authorize(&browser(), &server.url, &auth_url, "janedoe@test.com").await;
    let code = query_param(&back, "code").expect("a code, not invalid_scope");
    let r = redeem(&server.url, client_id, &code, &verifier, redirect).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(tokens["scope"], "mcp:call mcp:admin");
    let claims = server
        .bridge
        .token_verifier()
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        claims.scopes().contains("mcp:admin"),
        "A3 granted the extra scope"
    );
}

/// Short-lived A3 tokens (20 s) are refreshed near their end, not on every request (found by the
/// interop suite: with a fixed 30 s margin every MCP request refreshed at A3).
#[tokio::test]
async fn short_lived_a3_tokens_are_not_refreshed_on_every_request() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    upstream.state.access_ttl.store(20, Ordering::SeqCst);
    let (_, tokens) = login_tokens(&server).await;
    let access = tokens["access_token"].as_str().unwrap();
    let before = upstream.state.refreshes.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_ne!(mcp_status(&server, access).await, 401);
    }
    assert_eq!(upstream.state.refreshes.load(Ordering::SeqCst), before);
}

/// Issue 10 §3: every A3 token behind the bridge's tokens names the bridge's one A3 client, so
/// the principal of a bridge token must name the host's registered client, or host B of a user
/// could use host A's MCP session.
#[tokio::test]
async fn two_hosts_of_one_user_cannot_use_each_other_s_mcp_sessions() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let (host_a, tokens) = login_tokens(&server).await;
    let a = tokens["access_token"].as_str().unwrap().to_owned();
    let (host_b, tokens) = login_tokens(&server).await;
    let b = tokens["access_token"].as_str().unwrap().to_owned();

    let session = mcp_session(&server, &a).await;
    assert_eq!(
        mcp_list_status(&server, &b, &session).await,
        404,
        "host B presents host A's session"
    );
    assert_eq!(
        mcp_list_status(&server, &a, &session).await,
        200,
        "host A keeps it"
    );
    let own = mcp_session(&server, &b).await;
    assert_eq!(mcp_list_status(&server, &b, &own).await, 200);
    assert_eq!(mcp_list_status(&server, &a, &own).await, 404);
    // Each is the same user through its own client.
    for (token, host) in [(&a, &host_a), (&b, &host_b)] {
        let me = whoami(&server, token).await;
        assert_eq!(
            (&me["subject"], &me["client_id"]),
            (&json!("johndoe@test.com"), &json!(host))
        );
    }
}

/// Issue 10 §3: a client's name is its own claim, and a hostile one must not hide or reorder
/// text on the pages that show it; a private-use redirect URI names an app scheme, never the
/// "host" that follows `scheme://`.
#[tokio::test]
async fn hostile_client_names_and_app_redirects_render_safely() {
    let upstream = Upstream::start().await;
    let store = MemoryStore::new();
    let server = start_server(&upstream, store.clone(), |b| b).await;
    let app_redirect = "com.example.app://evil.example/cb";
    let registered = register(
        &server.url,
        json!({
            // A right-to-left override, isolates, zero-width and tag characters, a BOM.
            "client_name": "Visual Studio\u{200b} Code\u{202e}\u{2066}moc.elpmaxe\u{2069}\u{feff}\u{e0041}",
            "redirect_uris": [app_redirect],
        }),
    )
    .await;
    assert_eq!(
        registered["client_name"], "Visual Studio Codemoc.elpmaxe",
        "stored as it will be shown, no longer reversed"
    );
    let id = registered["client_id"].as_str().unwrap();
    let invisible = |c: char| matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}');
    let shown_safely = |html: &str| {
        assert!(!html.chars().any(invisible), "{html}");
        assert!(
            html.contains("<bdi>Visual Studio Codemoc.elpmaxe</bdi>"),
            "{html}"
        );
        assert!(
            html.contains("the app that handles <strong>com.example.app:</strong> links"),
            "{html}"
        );
        assert!(!html.contains("<strong>evil.example"), "{html}");
    };

    let b = browser();
    let (url, _, _) = host_request(&server.url, id, app_redirect, &[]);
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    shown_safely(&html);
    let fields = consent_fields(&html);
    let r = decide(&b, &server.url, &fields, "approve").await;
    let callback = sign_in_upstream(&b, &location(&r), "johndoe@test.com").await;
    let r = b.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    shown_safely(&html);
    assert!(html.contains("<bdi>johndoe@test.com</bdi>"));

    // A client stored by an earlier version, its name unfiltered, is shown as safely.
    let earlier = json!({
        "client_id": "registered-earlier", "client_id_issued_at": 0,
        "client_name": "Visual Studio\u{200b} Code\u{202e}\u{2066}moc.elpmaxe\u{2069}\u{feff}\u{e0041}",
        "redirect_uris": [app_redirect], "grant_types": ["authorization_code"], "response_types": ["code"],
        "token_endpoint_auth_method": "none", "application_type": "native",
    });
    store
        .put(
            Namespace::Client,
            "registered-earlier",
            serde_json::to_vec(&earlier).unwrap(),
            None,
        )
        .await
        .unwrap();
    let (url, _, _) = host_request(&server.url, "registered-earlier", app_redirect, &[]);
    shown_safely(&b.get(&url).send().await.unwrap().text().await.unwrap());

    // A name of nothing but invisible characters is no name.
    let blank = register(
        &server.url,
        json!({"client_name": "\u{200b}\u{2066} \u{feff}", "redirect_uris": ["http://127.0.0.1/"]}),
    )
    .await;
    assert!(blank.get("client_name").is_none(), "{blank}");
    let (url, _, _) = host_request(
        &server.url,
        blank["client_id"].as_str().unwrap(),
        "http://127.0.0.1:4711/",
        &[],
    );
    let html = b.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("<bdi>An unnamed application</bdi>"));
    assert!(html.contains("an application on this computer, at <strong>127.0.0.1:4711</strong>"));
}

/// On an https public URL the bridge's cookies are `__Host-` and `Secure`: no page of another
/// origin can set them, so the binding proves the browser and the callback sends the host its
/// code at once, without the confirmation that plain http needs. (The listener is plain http on
/// loopback; the cookies a browser would keep for the https origin are carried by hand.)
#[tokio::test]
async fn https_public_urls_keep_the_direct_redirect() {
    let upstream = Upstream::start().await;
    let public = "https://mcp.example.test";
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb").display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve_replica(
        listener,
        public,
        upstream.url(),
        CLIENT_ID,
        CLIENT_SECRET,
        |name| (name == "STORE_PATH").then(|| store.clone()),
    )
    .await;
    // Where the https origin's requests arrive (a TLS proxy in front, in a deployment).
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = register_vscode(&base).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (url, verifier, _) = host_request(&base, &id, VSCODE_REDIRECT, &[]);
    let page = http.get(&url).send().await.unwrap();
    let csrf = set_cookie(&page, "__Host-a3mcp_csrf=");
    let mut form = consent_fields(&page.text().await.unwrap());
    form.push(("decision".into(), "approve".into()));
    let r = http
        .post(format!("{base}/authorize"))
        .header("cookie", &csrf)
        .header("origin", public)
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let binding = set_cookie(&r, "__Host-a3mcp_tx_");
    let callback = sign_in_upstream(&browser(), &location(&r), "johndoe@test.com").await;
    let callback = callback.replace(public, &base);
    let r = http
        .get(&callback)
        .header("cookie", binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "straight back to the host");
    let back = location(&r);
    assert!(back.starts_with(VSCODE_REDIRECT), "{back}");
    assert_eq!(query_param(&back, "iss").as_deref(), Some(public));
    let code = query_param(&back, "code").unwrap();
    assert_eq!(
        redeem(&base, &id, &code, &verifier, VSCODE_REDIRECT)
            .await
            .status(),
        200
    );
}
