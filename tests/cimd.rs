//! Client ID Metadata Documents end to end: hosts that identify by the URL of their document
//! (VS Code's, Claude Code's and Codex's documents served as published, the rmcp client's
//! `with_client_metadata_url`), every SSRF and hostile-document case refused with an error page
//! and no connection to the forbidden address, grants per (client, redirect, user), the admission
//! policy, and the document cache shared by replicas and bounded.
//!
//! Documents are served on loopback over TLS with certificates for the hosts' real names, from a
//! CA made for the run; the bridge's fetcher runs on a `TestNetwork`, whose names resolve to what
//! each test says and whose connector records every destination and connects to loopback only:
//! no test sends a packet off this machine, even if the guard had a bug.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use a3_mcp_auth::dcr::store::{MemoryStore, Namespace, Store};
use a3_mcp_auth::testing::TestNetwork;
use axum::Router;
use axum::routing::get;
use http::{StatusCode, header};
use serde_json::{Value, json};
use support::*;

/// The consent page, the confirmation page and the redirect back to the host, for `user`.
async fn pages_flow(
    browser: &reqwest::Client,
    server: &str,
    auth_url: &str,
    user: &str,
) -> (String, String, String) {
    let r = browser.get(auth_url).send().await.unwrap();
    assert_eq!(r.status(), 200, "consent page for {auth_url}");
    let consent = r.text().await.unwrap();
    let r = decide(browser, server, &consent_fields(&consent), "approve").await;
    assert_eq!(r.status(), 303, "approval redirects to A3");
    let callback = sign_in_upstream(browser, &location(&r), user).await;
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 200, "the confirmation");
    let confirmation = r.text().await.unwrap();
    let r = confirm(browser, &callback, &confirmation, "allow").await;
    assert_eq!(r.status(), 303);
    (consent, confirmation, location(&r))
}

/// A loopback port nothing else uses (and never VS Code's 33418): the host's redirect listener.
async fn host_listener() -> tokio::net::TcpListener {
    loop {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        if l.local_addr().unwrap().port() != 33418 {
            return l;
        }
    }
}

/// A whole host flow for `client_id` and `redirect` as `user`; returns the token response.
async fn host_tokens(server: &Server, client_id: &str, redirect: &str, user: &str) -> Value {
    let (auth_url, verifier, _) = host_request(&server.url, client_id, redirect, &[]);
    let back = authorize(&browser(), &server.url, &auth_url, user).await;
    let code = query_param(&back, "code").expect("a code");
    let r = redeem(&server.url, client_id, &code, &verifier, redirect).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// GET /authorize for `client_id` from a plain client: (status, content type, Location, body).
async fn authorize_as(server: &str, client_id: &str) -> (u16, String, Option<String>, String) {
    // VS Code's desktop redirect has the path `/`; the others' `/callback`.
    let path = if client_id == VSCODE_URL { "/" } else { "/callback" };
    let redirect = format!("http://127.0.0.1:45678{path}");
    let (url, _, _) = host_request(server, client_id, &redirect, &[]);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    let location = r
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    (status, content_type, location, r.text().await.unwrap())
}

async fn metadata(server: &Server) -> Value {
    reqwest::get(format!("{}/.well-known/oauth-authorization-server", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn vscode_claude_code_and_codex_documents_complete_the_flow_as_published() {
    let upstream = Upstream::start().await;
    let (docs, net) = published_hosts().await;
    let store = MemoryStore::new();
    let server = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        store.clone(),
        |b| b.test_network(net.clone()),
    )
    .await;
    let m = metadata(&server).await;
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert_eq!(m["token_endpoint_auth_methods_supported"], json!(["none"]));

    for (client_id, redirect_path, host, name, loopback_only) in [
        (VSCODE_URL, "/", "localhost-free", "Visual Studio Code", false),
        (CLAUDE_CODE_URL, "/callback", "localhost", "Claude Code", true),
        (CODEX_URL, "/callback", "127.0.0.1", "Codex", true),
    ] {
        let publisher = url::Url::parse(client_id).unwrap().host_str().unwrap().to_owned();
        let listener = host_listener().await;
        let port = listener.local_addr().unwrap().port();
        // Claude Code sends localhost with an ephemeral port; VS Code and Codex 127.0.0.1.
        let redirect = match host {
            "localhost" => format!("http://localhost:{port}{redirect_path}"),
            _ => format!("http://127.0.0.1:{port}{redirect_path}"),
        };
        for (user, tools) in [
            ("johndoe@test.com", vec!["add", "whoami"]),
            ("janedoe@test.com", vec!["add", "multiply", "whoami"]),
        ] {
            let (auth_url, verifier, state) = host_request(&server.url, client_id, &redirect, &[]);
            let (consent, confirmation, back) = pages_flow(&browser(), &server.url, &auth_url, user).await;
            for page in [&consent, &confirmation] {
                assert!(
                    page.contains(&format!("Identity published by <strong>{publisher}</strong>")),
                    "{page}"
                );
                assert!(
                    page.contains(&format!("<bdi>{name}</bdi>")),
                    "the name as {publisher} claims it"
                );
                assert!(page.contains(&format!(
                    "at <strong>{}</strong>",
                    &redirect[7..].split('/').next().unwrap()
                )));
                assert!(
                    page.contains("<strong>Warning:</strong>"),
                    "loopback: any local program"
                );
                assert_eq!(
                    page.contains("Every address in"),
                    loopback_only,
                    "a document that names loopback only"
                );
            }
            assert!(back.starts_with(&redirect), "{back}");
            assert_eq!(query_param(&back, "state"), Some(state));
            assert_eq!(query_param(&back, "iss").as_deref(), Some(server.url.as_str()));
            let code = query_param(&back, "code").unwrap();
            let r = redeem(&server.url, client_id, &code, &verifier, &redirect).await;
            assert_eq!(r.status(), 200);
            let tokens: Value = r.json().await.unwrap();
            let access = tokens["access_token"].as_str().unwrap();
            assert_eq!(tool_list(&server, access).await, tools, "{user} via {name}");
            let who = whoami(&server, access).await;
            assert_eq!(
                (who["subject"].as_str(), who["client_id"].as_str()),
                (Some(user), Some(client_id))
            );
            // The documents list refresh_token: the host may refresh.
            let r = refresh_at(&server.url, client_id, tokens["refresh_token"].as_str().unwrap()).await;
            assert_eq!(r.status(), 200, "refresh");
        }
        drop(listener);
    }
    // VS Code's web redirect: the site, no warning.
    let (auth_url, _, _) = host_request(&server.url, VSCODE_URL, "https://vscode.dev/redirect", &[]);
    let consent = browser()
        .get(&auth_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(consent.contains("the web site <strong>vscode.dev</strong>"));
    assert!(!consent.contains("Warning:"));

    assert_eq!(
        store.count(Namespace::Client).await.unwrap(),
        0,
        "nothing registered"
    );
    assert_eq!(
        docs.connections(),
        3,
        "each document fetched once, then from the cache"
    );
    assert!(net.attempts().iter().all(|a| *a == docs.addr));
}

#[tokio::test]
async fn the_rmcp_client_identifies_by_its_metadata_url() {
    use rmcp::transport::auth::{AuthorizationRequest, OAuthState};
    const URL: &str = "https://rmcp-host.test/oauth/client.json";
    const DOC: &str = r#"{"client_id":"https://rmcp-host.test/oauth/client.json","client_name":"rmcp e2e host","redirect_uris":["http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","application_type":"native"}"#;
    let upstream = Upstream::start().await;
    let ca = TestCa::new();
    let docs = DocumentServer::tls(
        &ca,
        &["rmcp-host.test"],
        Router::new().route("/oauth/client.json", json_route(DOC)),
    )
    .await;
    let net = TestNetwork::new()
        .trust_root(ca.der.clone())
        .resolve("rmcp-host.test", 443, [docs.addr]);
    let store = MemoryStore::new();
    let server = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        store.clone(),
        |b| b.test_network(net.clone()),
    )
    .await;

    let mut state = OAuthState::new(server.mcp_url().as_str(), None).await.unwrap();
    state
        .start_authorization(AuthorizationRequest::new(HOST_REDIRECT).with_client_metadata_url(URL))
        .await
        .unwrap();
    let auth_url = state.get_authorization_url().await.unwrap();
    assert_eq!(
        query_param(&auth_url, "client_id").as_deref(),
        Some(URL),
        "rmcp used its URL"
    );
    let back = authorize(&browser(), &server.url, &auth_url, "johndoe@test.com").await;
    state.handle_callback_url(&back).await.unwrap();
    let manager = state.into_authorization_manager().unwrap();
    manager.refresh_token().await.expect("our refresh_token grant");
    assert_eq!(tool_names(&server, manager).await.unwrap(), ["add", "whoami"]);
    assert_eq!(
        store.count(Namespace::Client).await.unwrap(),
        0,
        "rmcp did not register"
    );
    assert_eq!(docs.connections(), 1);
}

/// The issue's SSRF cases: each refused with an HTML error page (never a redirect to the
/// unverified client's redirect URI), and no connection attempt to the forbidden address.
#[tokio::test]
async fn ssrf_targets_are_refused_with_a_page_and_never_connected_to() {
    let upstream = Upstream::start().await;
    let ca = TestCa::new();
    let names = ["loopback.attacker.test", "rebind.attacker.test"];
    let routes = Router::new()
        .route("/client.json", json_route(VSCODE_DOC))
        .route("/other.json", json_route(VSCODE_DOC));
    let docs = DocumentServer::tls(&ca, &names, routes).await;
    let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
    let net = TestNetwork::new()
        .trust_root(ca.der.clone())
        .resolve("metadata.attacker.test", 443, [addr("169.254.169.254:443")])
        .resolve("private.attacker.test", 443, [addr("10.0.0.5:443")])
        .resolve("home.attacker.test", 443, [addr("192.168.1.10:443")])
        .resolve("cgnat.attacker.test", 443, [addr("100.64.0.1:443")])
        .resolve(
            "mapped.attacker.test",
            443,
            [addr("[::ffff:169.254.169.254]:443")],
        )
        .resolve("unspecified.attacker.test", 443, [addr("0.0.0.0:443")])
        .resolve("ula.attacker.test", 443, [addr("[fd00::1]:443")])
        // A name for a real loopback listener serving a valid document.
        .resolve("loopback.attacker.test", 443, [docs.addr]);
    let server = start_configured_server(
        &upstream,
        |c| c,
        MemoryStore::new(),
        |b| {
            b.test_network(net.clone())
                .metadata_fetch_rate_limit(100, Duration::from_secs(3600))
        },
    )
    .await;
    let not_public = "is not a public internet address";
    let cases = [
        ("https://metadata.attacker.test/latest/meta-data", not_public),
        ("https://private.attacker.test/client.json", not_public),
        ("https://home.attacker.test/client.json", not_public),
        ("https://cgnat.attacker.test/client.json", not_public),
        ("https://mapped.attacker.test/client.json", not_public),
        ("https://unspecified.attacker.test/client.json", not_public),
        ("https://ula.attacker.test/client.json", not_public),
        ("https://loopback.attacker.test/client.json", not_public),
        ("https://169.254.169.254/latest/meta-data/iam", not_public),
        ("https://10.0.0.1/client.json", not_public),
        ("https://127.0.0.1/client.json", not_public),
        ("https://[::ffff:a9fe:a9fe]/client.json", not_public),
        ("https://[::]/client.json", not_public),
        ("https://0.0.0.0/client.json", not_public),
        (&format!("http://{}/client.json", docs.addr), "must use https"),
        ("http://vscode.dev/oauth/client-metadata.json", "must use https"),
        ("https://vscode.dev/oauth/client-metadata.json#x", "fragment"),
        (
            "https://attacker@vscode.dev/oauth/client-metadata.json",
            "user info",
        ),
        ("https://vscode.dev/oauth/../client-metadata.json", "dot segments"),
        ("https://vscode.dev", "must have a path"),
        ("https://vscode.dev/", "must have a path"),
    ];
    for (client_id, why) in cases {
        let (status, content_type, location, body) = authorize_as(&server.url, client_id).await;
        assert_eq!(status, 400, "{client_id}: {body}");
        assert!(
            content_type.starts_with("text/html"),
            "{client_id}: an error page"
        );
        assert_eq!(location, None, "{client_id}: no redirect");
        assert!(body.contains(why), "{client_id}: {body}");
    }
    assert_eq!(net.attempts(), [], "no connection attempt to any of them");
    assert_eq!(docs.connections(), 0, "the loopback listener was never contacted");

    // Control: under the development switch the loopback name is fetched, so a connection to
    // it would have been seen above.
    let open = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        MemoryStore::new(),
        |b| b.test_network(net.clone()),
    )
    .await;
    let (status, _, _, body) = authorize_as(&open.url, "https://loopback.attacker.test/client.json").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not the URL it was fetched from"),
        "fetched, then refused: {body}"
    );
    assert_eq!(docs.connections(), 1);
    // …and a name that rebinds after its check never reaches the internal address: one
    // resolution per fetch, and only the checked addresses are connected to.
    let rebinding = TestNetwork::new()
        .trust_root(ca.der.clone())
        .resolve("rebind.attacker.test", 443, [docs.addr])
        .resolve("rebind.attacker.test", 443, [addr("169.254.169.254:443")]);
    let server = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        MemoryStore::new(),
        |b| b.test_network(rebinding.clone()),
    )
    .await;
    let (_, _, _, first) = authorize_as(&server.url, "https://rebind.attacker.test/client.json").await;
    assert!(first.contains("not the URL it was fetched from"), "{first}");
    let (status, _, _, second) = authorize_as(&server.url, "https://rebind.attacker.test/other.json").await;
    assert_eq!(status, 400);
    assert!(second.contains(not_public), "{second}");
    assert_eq!(rebinding.resolutions("rebind.attacker.test"), 2);
    assert_eq!(rebinding.attempts(), [docs.addr]);
}

/// Hostile documents, each served by a host the bridge may fetch from: refused with a page.
#[tokio::test]
async fn hostile_documents_are_refused_with_a_page() {
    let upstream = Upstream::start().await;
    let ca = TestCa::new();
    let doc = |extra: Value| {
        let mut d = json!({"client_id": "https://hostile.test/PATH", "client_name": "Visual Studio Code",
                           "redirect_uris": ["http://127.0.0.1:45678/callback"]});
        for (k, v) in extra.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    let serve = |path: &'static str, extra: Value| {
        let body = doc(extra).to_string().replace("PATH", &path[1..]);
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        })
    };
    let routes = Router::new()
        .route(
            "/redirect",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://169.254.169.254/latest/meta-data")],
                )
            }),
        )
        .route("/big", serve("/big", json!({"padding": "x".repeat(6 * 1024)})))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(8)).await;
                "{}"
            }),
        )
        .route(
            "/html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body>Welcome</body></html>",
                )
            }),
        )
        .route("/mismatch", serve("/mismatch", json!({"client_id": VSCODE_URL})))
        .route("/secret", serve("/secret", json!({"client_secret": "hunter2"})))
        .route(
            "/jwk",
            serve(
                "/jwk",
                json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            ),
        )
        .route(
            "/confidential",
            serve(
                "/confidential",
                json!({"token_endpoint_auth_method": "client_secret_basic"}),
            ),
        )
        .route("/nameless", serve("/nameless", json!({"client_name": null})))
        .route("/ok", serve("/ok", json!({})));
    let docs = DocumentServer::tls(&ca, &["hostile.test"], routes).await;
    let net = TestNetwork::new()
        .trust_root(ca.der.clone())
        .resolve("hostile.test", 443, [docs.addr]);
    let server = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        MemoryStore::new(),
        |b| {
            b.test_network(net.clone())
                .metadata_fetch_rate_limit(100, Duration::from_secs(3600))
        },
    )
    .await;
    for (path, status, why) in [
        ("/redirect", 400, "answered with a redirect"),
        ("/big", 400, "larger than 5120 bytes"),
        ("/slow", 502, "did not answer within 5 seconds"),
        ("/html", 400, "not JSON"),
        ("/mismatch", 400, "not the URL it was fetched from"),
        ("/secret", 400, "client_secret"),
        ("/jwk", 400, "symmetric or private key"),
        ("/confidential", 400, "public clients (none) only"),
        ("/nameless", 400, "no client_name"),
    ] {
        let client_id = format!("https://hostile.test{path}");
        let (got, content_type, location, body) = authorize_as(&server.url, &client_id).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(content_type.starts_with("text/html"), "{path}");
        assert_eq!(location, None, "{path}: never a redirect to the client");
        assert!(body.contains(why), "{path}: {body}");
        assert!(!body.contains("hunter2"), "the document's secret is not echoed");
    }
    // Control: the same host's valid document is accepted.
    let (status, _, _, body) = authorize_as(&server.url, "https://hostile.test/ok").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        net.attempts().iter().all(|a| *a == docs.addr),
        "the redirect to 169.254.169.254 was not followed"
    );
}

/// Every install of a host shares its client id: grants are per (client, redirect, user), and a
/// new sign-in for the same triple replaces the previous grant.
#[tokio::test]
async fn grants_of_a_published_client_are_per_client_redirect_and_user() {
    let upstream = Upstream::start().await;
    let (_docs, net) = published_hosts().await;
    let server = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        MemoryStore::new(),
        |b| b.test_network(net.clone()),
    )
    .await;
    let token = |t: &Value| t["access_token"].as_str().unwrap().to_owned();
    let john_a =
        token(&host_tokens(&server, VSCODE_URL, "http://127.0.0.1:40001/", "johndoe@test.com").await);
    assert_eq!(mcp_status(&server, &john_a).await, 200);
    // The same install moved to another port: it replaces the grant.
    let john_b =
        token(&host_tokens(&server, VSCODE_URL, "http://127.0.0.1:40002/", "johndoe@test.com").await);
    assert_eq!(mcp_status(&server, &john_a).await, 401, "replaced");
    assert_eq!(mcp_status(&server, &john_b).await, 200);
    // Another user of the same client and redirect, and another redirect of the same user:
    // their own grants, the others untouched.
    let jane = token(&host_tokens(&server, VSCODE_URL, "http://127.0.0.1:40002/", "janedoe@test.com").await);
    let john_web = token(
        &host_tokens(
            &server,
            VSCODE_URL,
            "https://vscode.dev/redirect",
            "johndoe@test.com",
        )
        .await,
    );
    for (t, who) in [(&john_b, "john b"), (&jane, "jane"), (&john_web, "john web")] {
        assert_eq!(mcp_status(&server, t).await, 200, "{who}");
    }
    assert_eq!(whoami(&server, &jane).await["subject"], "janedoe@test.com");
}

#[tokio::test]
async fn the_allow_list_and_the_switches_decide_what_hosts_see() {
    let upstream = Upstream::start().await;
    let (_docs, net) = published_hosts().await;
    // vscode.dev only, and no dynamic registration.
    let server = start_configured_server(
        &upstream,
        |c| {
            c.cimd_allow_loopback(true)
                .cimd_allowed_hosts(["vscode.dev"])
                .dcr_enabled(false)
        },
        MemoryStore::new(),
        |b| b.test_network(net.clone()),
    )
    .await;
    let m = metadata(&server).await;
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert!(m.get("registration_endpoint").is_none(), "{m}");
    let r = reqwest::Client::new()
        .post(format!("{}/register", server.url))
        .json(&json!({"redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("disabled"));
    let (status, _, location, body) = authorize_as(&server.url, CLAUDE_CODE_URL).await;
    assert_eq!((status, location), (400, None));
    assert!(
        body.contains("does not accept applications published by claude.ai"),
        "{body}"
    );
    assert_eq!(net.resolutions("claude.ai"), 0, "not even resolved");
    let (status, _, _, body) = authorize_as(&server.url, VSCODE_URL).await;
    assert_eq!(status, 200, "{body}");

    // CIMD off: hosts register.
    let server = start_configured_server(
        &upstream,
        |c| c.cimd_enabled(false),
        MemoryStore::new(),
        |b| b.test_network(net.clone()),
    )
    .await;
    let m = metadata(&server).await;
    assert_eq!(m["client_id_metadata_document_supported"], false);
    assert!(m["registration_endpoint"].is_string());
    let (status, _, _, body) = authorize_as(&server.url, VSCODE_URL).await;
    assert_eq!(status, 400);
    assert!(body.contains("does not accept URL client ids"), "{body}");
}

/// The cache lives in the store: replicas share one fetch, failures are remembered briefly, the
/// number of documents is bounded, and fetches of uncached documents are rate-limited per caller
/// without hurting other callers or cached documents.
#[tokio::test]
async fn the_document_cache_is_shared_bounded_and_fetches_are_limited_per_caller() {
    let upstream = Upstream::start().await;
    let (docs, net) = published_hosts().await;
    let net = net.resolve(
        "metadata.attacker.test",
        443,
        ["169.254.169.254:443".parse().unwrap()],
    );
    let store = MemoryStore::new();
    let replica = |store: MemoryStore| {
        let net = net.clone();
        let upstream = &upstream;
        async move {
            start_configured_server(
                upstream,
                |c| c.cimd_allow_loopback(true),
                store,
                move |b| {
                    b.test_network(net)
                        .metadata_fetch_rate_limit(3, Duration::from_secs(3600))
                },
            )
            .await
        }
    };
    let (a, b) = (replica(store.clone()).await, replica(store.clone()).await);
    assert_eq!(authorize_as(&a.url, VSCODE_URL).await.0, 200);
    assert_eq!(authorize_as(&b.url, VSCODE_URL).await.0, 200);
    assert_eq!(docs.connections(), 1, "the second replica used the shared cache");
    assert_eq!(store.count(Namespace::ClientMetadata).await.unwrap(), 1);
    // A failure is remembered: the second request does not resolve again.
    for server in [&a, &b] {
        assert_eq!(
            authorize_as(&server.url, "https://metadata.attacker.test/x")
                .await
                .0,
            400
        );
    }
    assert_eq!(net.resolutions("metadata.attacker.test"), 1);

    // Replica a's limit: 3 fetches (VS Code's and the attacker's were 2). A third uncached
    // document passes, a fourth is refused…
    assert_eq!(authorize_as(&a.url, CLAUDE_CODE_URL).await.0, 200);
    let (status, _, location, body) = authorize_as(&a.url, CODEX_URL).await;
    assert_eq!((status, location), (429, None), "{body}");
    // …but cached documents cost nothing, and another caller has its own share.
    assert_eq!(authorize_as(&a.url, VSCODE_URL).await.0, 200);
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let (url, _, _) = host_request(&a.url, CODEX_URL, "http://127.0.0.1:45678/callback", &[]);
    assert_eq!(
        other.get(url).send().await.unwrap().status(),
        200,
        "another address"
    );

    // A bounded cache: beyond it, documents are fetched per request and not kept.
    let small = MemoryStore::new();
    let c = start_configured_server(
        &upstream,
        |c| c.cimd_allow_loopback(true),
        small.clone(),
        |b| b.test_network(net.clone()).max_cached_documents(1),
    )
    .await;
    assert_eq!(authorize_as(&c.url, VSCODE_URL).await.0, 200);
    assert_eq!(authorize_as(&c.url, CLAUDE_CODE_URL).await.0, 200);
    assert_eq!(small.count(Namespace::ClientMetadata).await.unwrap(), 1);
}
