//! End to end: what one caller can consume at the DCR bridge. Registrations cannot be kept
//! alive without a sign-in, registered clients go when their grants go, one web page cannot use
//! up the registrations of the other applications on its machine. Real listeners on loopback;
//! junk comes from several loopback addresses (127.0.0.x) as it would from several machines.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use a3_mcp_auth::dcr::store::{MemoryStore, Namespace, RedbStore, Store};
use serde_json::{Value, json};
use support::*;

/// A page served by an attacker on another loopback port, as the browser labels its requests.
const HOSTILE_ORIGIN: &str = "http://127.0.0.1:45678";

fn body() -> Value {
    json!({"client_name": "junk", "redirect_uris": ["http://127.0.0.1/cb"]})
}

/// POST /register from `local` (a loopback address), with `origin` and `content_type`.
async fn register_from(
    server: &str,
    local: Option<IpAddr>,
    origin: Option<&str>,
    content_type: &str,
    body: &str,
) -> reqwest::Response {
    let http = reqwest::Client::builder().local_address(local).build().unwrap();
    let mut req = http
        .post(format!("{server}/register"))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(origin) = origin {
        // What a browser adds to a page's fetch to another port of 127.0.0.1.
        req = req
            .header("origin", origin)
            .header("sec-fetch-site", "same-site")
            .header("sec-fetch-mode", "cors");
    }
    req.send().await.unwrap()
}

async fn register_json(server: &str, local: Option<IpAddr>, origin: Option<&str>) -> reqwest::Response {
    register_from(server, local, origin, "application/json", &body().to_string()).await
}

/// Waits (up to `within`) until the store holds `n` registered clients; the count it saw last.
async fn clients_become(store: &dyn Store, n: u64, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let count = store.count(Namespace::Client).await.unwrap();
        if count == n || tokio::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A headless browser whose connections come from `local`.
fn browser_at(local: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local)
        .build()
        .unwrap()
}

async fn revoke(server: &Server, token: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", server.url))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The issue's attack: junk registrations from many addresses, each with its consent form
/// posted (no sign-in needed), kept the registration cap full for 180 days.
#[tokio::test]
async fn junk_registrations_cannot_keep_the_cap_full_beyond_the_unused_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path().join("store.redb")).unwrap());
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, store.clone(), |b| {
        b.max_clients(12).unused_client_ttl(Duration::from_secs(3))
    })
    .await;
    let mut junk = Vec::new();
    for i in 0..3u8 {
        for _ in 0..4 {
            let r = register_json(&server.url, Some(IpAddr::from([127, 0, 0, 10 + i])), None).await;
            assert_eq!(r.status(), 201);
            junk.push(
                r.json::<Value>().await.unwrap()["client_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    // Approving each junk client's consent page needs no sign-in: it must not extend anything.
    // From the address that registered it (approvals are rate-limited per address too).
    let browsers: Vec<_> = (0..3u8)
        .map(|i| browser_at(IpAddr::from([127, 0, 0, 10 + i])))
        .collect();
    for (n, id) in junk.iter().enumerate() {
        let b = &browsers[n / 4];
        let (url, _, _) = host_request(&server.url, id, "http://127.0.0.1:5/cb", &[]);
        let fields = open_consent(b, &url).await;
        assert_eq!(decide(b, &server.url, &fields, "approve").await.status(), 303);
    }
    let r = register_json(&server.url, Some(IpAddr::from([127, 0, 0, 20])), None).await;
    assert_eq!(r.status(), 429, "the cap is full");
    assert!(r.text().await.unwrap().contains("capacity"));

    assert_eq!(clients_become(&*store, 0, Duration::from_secs(20)).await, 0);
    // A legitimate host registers and signs in.
    let (_, tokens) = login_tokens(&server).await;
    assert_eq!(
        mcp_status(&server, tokens["access_token"].as_str().unwrap()).await,
        200
    );
}

/// Hosts that register on every connection: once their grants end, their clients go.
#[tokio::test]
async fn a_host_that_registers_on_every_connection_leaves_no_clients_behind() {
    let upstream = Upstream::start().await;

    // Revoking its tokens at the end of each connection: each client goes after the grace.
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| {
        b.client_grace(Duration::from_secs(1))
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (id, tokens) = login_tokens(&server).await;
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(mcp_status(&server, access).await, 200);
        revoke(&server, tokens["refresh_token"].as_str().unwrap()).await;
        ids.push(id);
    }
    // Within the grace the host may still sign in again with the client id it cached.
    let (url, _, _) = host_request(&server.url, &ids[2], VSCODE_REDIRECT, &[]);
    open_consent(&browser(), &url).await;
    assert_eq!(clients_become(&*store, 0, Duration::from_secs(15)).await, 0);
    let r = browser().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not registered"));

    // Never revoking: each client goes when its grant expires (here after 2 s unused).
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| {
        b.client_grace(Duration::from_secs(1))
            .refresh_token_ttl(Duration::from_secs(2))
    })
    .await;
    for _ in 0..3 {
        let (_, tokens) = login_tokens(&server).await;
        assert_eq!(
            mcp_status(&server, tokens["access_token"].as_str().unwrap()).await,
            200
        );
    }
    assert_eq!(store.count(Namespace::Client).await.unwrap(), 3);
    assert_eq!(clients_become(&*store, 0, Duration::from_secs(20)).await, 0);
}

/// One user's grants are bounded: a host signing in on every connection without ever revoking
/// keeps at most `max_grants_per_user` grants, and so clients, alive; the one used longest ago
/// goes first. (Expiries are in whole seconds, hence the pauses.)
#[tokio::test]
async fn one_users_grants_and_their_clients_are_bounded() {
    let upstream = Upstream::start().await;
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| {
        b.max_grants_per_user(2).client_grace(Duration::from_secs(1))
    })
    .await;
    let pause = || tokio::time::sleep(Duration::from_millis(1100));
    let (a_id, a) = login_tokens(&server).await;
    pause().await;
    let (_, b) = login_tokens(&server).await;
    pause().await;
    // A is used again (a refresh): B is now the least recently used.
    let r = refresh_at(&server.url, a_id.as_str(), a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let a: Value = r.json().await.unwrap();
    pause().await;
    let (_, c) = login_tokens(&server).await;
    let access = |t: &Value| t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(mcp_status(&server, &access(&b)).await, 401, "B was revoked");
    assert_eq!(mcp_status(&server, &access(&a)).await, 200);
    assert_eq!(mcp_status(&server, &access(&c)).await, 200);
    assert_eq!(clients_become(&*store, 2, Duration::from_secs(15)).await, 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        store.count(Namespace::Client).await.unwrap(),
        2,
        "live grants keep theirs"
    );
}

/// The issue's attack: a cross-site `text/plain` POST registered a client (201, readable thanks
/// to `Access-Control-Allow-Origin: *`), and ten invalid bodies locked registration for the
/// whole address, i.e. for every application on the machine.
#[tokio::test]
async fn one_page_cannot_use_up_registration_for_the_other_applications() {
    let upstream = Upstream::start().await;
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| b).await;

    // A simple (no preflight) cross-site request: refused before anything is stored.
    for content_type in ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded"] {
        let r = register_from(
            &server.url,
            None,
            Some(HOSTILE_ORIGIN),
            content_type,
            &body().to_string(),
        )
        .await;
        assert_eq!(r.status(), 415, "{content_type}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_client_metadata"
        );
    }
    assert_eq!(store.count(Namespace::Client).await.unwrap(), 0);

    // Invalid bodies are not counted, from a page or not.
    for origin in [Some(HOSTILE_ORIGIN), None] {
        for _ in 0..25 {
            let r = register_from(
                &server.url,
                None,
                origin,
                "application/json",
                r#"{"redirect_uris": ["http://evil.example/"]}"#,
            )
            .await;
            assert_eq!(r.status(), 400);
        }
    }

    // A page that registers (after a CORS preflight) burns its own origin's bucket only.
    let mut created = 0;
    let refused = loop {
        let r = register_json(&server.url, None, Some(HOSTILE_ORIGIN)).await;
        if r.status() != 201 || created == 100 {
            break r;
        }
        created += 1;
    };
    assert!((1..100).contains(&created), "the page is limited ({created})");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another page (MCP Inspector's origin) and the applications that send no Origin (VS Code)
    // on the same address still register.
    assert_eq!(
        register_json(&server.url, None, Some("http://localhost:6274"))
            .await
            .status(),
        201
    );
    for _ in 0..created {
        assert_eq!(register_json(&server.url, None, None).await.status(), 201);
    }

    // A page with many origins (iframes of many subdomains) uses up at most the share of the
    // browsers on this address; the non-browser hosts keep theirs.
    let mut browser_total = 0;
    for i in 0..200 {
        let origin = format!("https://s{i}.attacker.example");
        while register_json(&server.url, Some(IpAddr::from([127, 0, 0, 30])), Some(&origin))
            .await
            .status()
            == 201
        {
            browser_total += 1;
        }
        if browser_total > 1000 {
            break;
        }
    }
    assert!(
        (1..=1000).contains(&browser_total),
        "the browsers of one address are bounded together ({browser_total})"
    );
    assert_eq!(
        register_json(&server.url, Some(IpAddr::from([127, 0, 0, 30])), None)
            .await
            .status(),
        201
    );
}

/// Approving a consent form needs no sign-in and stores an upstream transaction (10 min): a
/// script that loops "open the consent page, approve" from one address filled the store without
/// bound. Now its address gets a 429 page after a few, and a user on another address still signs in.
#[tokio::test]
async fn approving_consent_forms_in_a_loop_is_bounded_per_address() {
    let upstream = Upstream::start().await;
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| {
        b.consent_rate_limit(3, Duration::from_secs(3600))
    })
    .await;
    let client_id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The attacker's script, from 127.0.0.40: a browser-like cookie jar (for the CSRF cookie).
    let attacker = browser_at(IpAddr::from([127, 0, 0, 40]));
    let mut approved = 0;
    let refused = loop {
        let (url, _, _) = host_request(&server.url, &client_id, VSCODE_REDIRECT, &[]);
        let fields = open_consent(&attacker, &url).await;
        let r = decide(&attacker, &server.url, &fields, "approve").await;
        if r.status() != 303 || approved == 50 {
            break r;
        }
        approved += 1;
    };
    assert_eq!(approved, 3, "the address's burst, then refused");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.text().await.unwrap().contains("Too many sign-ins"));
    assert_eq!(store.count(Namespace::Transaction).await.unwrap(), 3);

    // A user on another address signs in as usual.
    let (url, _, _) = host_request(&server.url, &client_id, VSCODE_REDIRECT, &[]);
    let back = authorize(&browser(), &server.url, &url, "johndoe@test.com").await;
    assert!(query_param(&back, "code").is_some());
}

/// Entries of every namespace of `store`, live or not yet purged.
async fn entries(store: &dyn Store) -> Vec<(&'static str, u64)> {
    let mut all = Vec::new();
    for ns in Namespace::ALL {
        all.push((ns.name(), store.count(ns).await.unwrap()));
    }
    all
}

/// A signed-in host refreshing in a loop (issue 10 left it open): each refresh stored an
/// access-token entry (1 h) and kept the rotated refresh token for its 30 days, so the loop grew
/// the store without bound. Now a grant holds the hashes of its four newest access tokens and
/// of its current and previous refresh tokens: the loop stores nothing more, while rotation,
/// the retry within the grace period and reuse detection (of a token however old) still hold.
#[tokio::test]
async fn a_refresh_loop_stores_a_bounded_number_of_entries() {
    let upstream = Upstream::start().await;
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| b).await;
    let (id, first) = login_tokens(&server).await;
    let baseline = entries(&*store).await;

    let refresh = |token: String| {
        let (url, id) = (server.url.clone(), id.clone());
        async move {
            let r = refresh_at(&url, &id, &token).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let mut current = first["refresh_token"].as_str().unwrap().to_owned();
    let mut access = vec![first["access_token"].as_str().unwrap().to_owned()];
    for round in 0..60 {
        let next = refresh(current.clone()).await;
        access.push(next["access_token"].as_str().unwrap().to_owned());
        if round % 10 == 0 {
            // A client that lost the response retries: the same successor, one more access token.
            let again = refresh(current.clone()).await;
            assert_eq!(again["refresh_token"], next["refresh_token"]);
            access.push(again["access_token"].as_str().unwrap().to_owned());
        }
        current = next["refresh_token"].as_str().unwrap().to_owned();
    }
    assert_eq!(
        entries(&*store).await,
        baseline,
        "66 token responses later, the store holds what it held after the sign-in"
    );
    let (older, newest) = access.split_at(access.len() - 4);
    for token in newest.iter().chain(older.last()).rev() {
        let expected = if newest.contains(token) { 200 } else { 401 };
        assert_eq!(
            mcp_status(&server, token).await,
            expected,
            "the four newest access tokens work, the fifth newest no longer does"
        );
    }
    // The very first refresh token, 60 rotations ago, is still recognised as reuse: the grant ends.
    let r = refresh_at(&server.url, id.as_str(), first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(mcp_status(&server, access.last().unwrap()).await, 401);
    let r = refresh_at(&server.url, id.as_str(), current.as_str()).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "invalid_grant",
        "the current chain ended with the grant"
    );
}

/// Refresh tokens name their grant, so that an old one is recognised as reuse and ends the grant.
/// Whoever learns a grant's id (the admin API lists them; an operator may log them) and its
/// client id must not be able to end it with a token of their own making: only a token the
/// bridge issued counts as reuse; a made-up one is just invalid.
#[tokio::test]
async fn a_made_up_refresh_token_naming_a_grant_cannot_end_it() {
    let upstream = Upstream::start().await;
    let store = Arc::new(MemoryStore::new());
    let server = start_server(&upstream, store.clone(), |b| b).await;
    let (id, tokens) = login_tokens(&server).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let access_token = tokens["access_token"].as_str().unwrap();
    // `a3mcp_rt_{grant id}.{secret}`: keep the grant id, make up the secret.
    let (named, _) = refresh_token.rsplit_once('.').unwrap();
    let forged = format!("{named}.{}", "A".repeat(43));
    let r = refresh_at(&server.url, &id, &forged).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(mcp_status(&server, access_token).await, 200, "the grant lives on");
    let r = refresh_at(&server.url, &id, refresh_token).await;
    assert_eq!(r.status(), 200, "and its refresh token still works");
}
