//! Operating the server: `/healthz` and `/readyz` on the main listener (outside the auth layers)
//! as the example composes them, and the metrics the example server exposes on its admin
//! listener (`ADMIN_ADDR`), scraped before and after a whole host flow against the compiled
//! example binary. (`/readyz` and Redis: `tests/replicas.rs`; audit events: `tests/audit.rs`.)

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use a3_mcp_auth::dcr::store::MemoryStore;
use a3_mcp_auth::jwks::JwksPolicy;
use serde_json::{Value, json};
use support::*;

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["cache-control"], "no-store");
    (status, r.json().await.unwrap())
}

/// Polls `url` until it answers `status` (at most 15 s); returns the last body.
async fn until_status(url: &str, status: u16) -> Value {
    for _ in 0..150 {
        let (got, body) = get(url).await;
        if got == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_issuers_keys_and_healthz_stays_up() {
    let upstream = Upstream::start().await;
    // A3's JWKS refreshed every second, retried a second after a failure: the key store notices
    // within seconds what it would notice within minutes by default.
    let fast = JwksPolicy::default()
        .with_default_refresh(Duration::from_secs(1))
        .with_refresh_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .with_retry_after_failure(Duration::from_secs(1));
    let server = start_server(&upstream, MemoryStore::new(), |b| b.jwks_policy(fast)).await;
    let (healthz, readyz) = (
        format!("{}/healthz", server.url),
        format!("{}/readyz", server.url),
    );

    assert_eq!(get(&healthz).await, (200, json!({"status": "up"})));
    assert_eq!(
        get(&readyz).await,
        (
            200,
            json!({"status": "ready", "checks": {"jwks": "ok", "store": "ok"}})
        )
    );
    // No token needed, and none looked at: the probes are outside the auth layers.
    let r = reqwest::Client::new()
        .get(&readyz)
        .bearer_auth("a3mcp_at_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A3's JWKS goes away: once a fetch and its retry failed, not ready, naming the part.
    upstream.issuer.set_failing(true);
    let body = until_status(&readyz, 503).await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["store"], "ok");
    let jwks = body["checks"]["jwks"].as_str().unwrap();
    assert!(
        jwks.starts_with("the issuer's keys could not be fetched for"),
        "{jwks}"
    );
    assert_eq!(get(&healthz).await.0, 200, "the process is still up");

    // Back: ready again at the next successful fetch.
    upstream.issuer.set_failing(false);
    let body = until_status(&readyz, 200).await;
    assert_eq!(body["checks"], json!({"jwks": "ok", "store": "ok"}));
}

#[tokio::test]
async fn a_flood_of_probes_sends_nothing_upstream() {
    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let fetches = upstream.issuer.jwks_fetch_count();
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let r = client.get(format!("{}/readyz", server.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        upstream.issuer.jwks_fetch_count(),
        fetches,
        "no JWKS fetch per probe"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics through the example binary
// ---------------------------------------------------------------------------------------------

/// One scrape: every sample by its series (`name{label="value",…}` as the text has it).
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn of(admin: &str) -> Scrape {
        let r = reqwest::get(format!("{admin}/metrics")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let text = r.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (series.to_owned(), value.parse().unwrap())
            })
            .collect();
        Scrape(samples)
    }

    /// The sum of the samples of `name` whose labels include every one of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name
                    && labels.iter().all(|(k, v)| {
                        rest.split(',')
                            .any(|l| l.trim_end_matches('}') == format!("{k}=\"{v}\""))
                    })
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// Starts the example server binary bridging to `upstream`; returns it, its URL and its admin
/// listener's URL.
async fn example_process(
    binary: &std::path::Path,
    upstream: &Upstream,
    dir: &std::path::Path,
) -> (Process, String, String) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, admin_port) = (free(), free());
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(binary)
        .env_clear()
        .current_dir(dir)
        .env("ISSUER_URL", upstream.url())
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env("RESOURCE_URI", format!("{url}/mcp"))
        .env("ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = Process(child);
    for _ in 0..300 {
        let up = |p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
        if up(port) && up(admin_port) {
            return (process, url, format!("http://127.0.0.1:{admin_port}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the example server did not start");
}

/// Registers a VS Code client at `url` and runs `user` through consent, A3 and the
/// confirmation; returns (client id, code, verifier).
async fn code_at(url: &str, user: &str) -> (String, String, String) {
    let id = register_vscode(url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (auth, verifier, _) = host_request(url, &id, VSCODE_REDIRECT, &[]);
    let back = authorize(&browser(), url, &auth, user).await;
    (id, query_param(&back, "code").unwrap(), verifier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_through_a_whole_host_flow() {
    let Some(binary) = example_server() else { return };
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_process, url, admin) = example_process(&binary, &upstream, dir.path()).await;
    let before = Scrape::of(&admin).await;
    assert_eq!(
        before.value(
            "a3mcp_jwks_fetches_total",
            &[("trigger", "startup"), ("outcome", "ok")]
        ),
        1.0,
        "the bridge fetched A3's keys once at start"
    );
    assert_eq!(
        before.value(
            "a3mcp_upstream_requests_total",
            &[("endpoint", "discovery"), ("outcome", "ok")]
        ),
        1.0
    );
    // The health routes are on the main listener, the metrics only on the admin one.
    assert_eq!(get(&format!("{url}/readyz")).await.0, 200);
    assert_eq!(
        reqwest::get(format!("{url}/metrics")).await.unwrap().status(),
        404
    );

    // A host's first request, without a token: 401 and the challenge.
    let r = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Sign-in; the tools: one allowed, one hidden, one the policy does not name.
    let (id, code, verifier) = code_at(&url, "johndoe@test.com").await;
    let r = redeem(&url, &id, &code, &verifier, VSCODE_REDIRECT).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let calls = call_tools(
        &format!("{url}/mcp"),
        tokens["access_token"].as_str().unwrap(),
        &[
            ("add", json!({"a": 1, "b": 2})),
            ("multiply", json!({"a": 2, "b": 3})),
            ("no_such_tool", json!({})),
        ],
    )
    .await;
    assert_eq!(calls[0], Ok("3".to_owned()));
    assert!(calls[1].is_err() && calls[2].is_err());

    // Two rotations, then the first refresh token again: reuse, the grant ends.
    let rt1 = tokens["refresh_token"].as_str().unwrap();
    let r = refresh_at(&url, &id, rt1).await;
    assert_eq!(r.status(), 200);
    let rt2: Value = r.json().await.unwrap();
    let r = refresh_at(&url, &id, rt2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(refresh_at(&url, &id, rt1).await.status(), 400);

    // Another sign-in whose code is replayed: the grant ends.
    let (id2, code2, verifier2) = code_at(&url, "johndoe@test.com").await;
    assert_eq!(
        redeem(&url, &id2, &code2, &verifier2, VSCODE_REDIRECT)
            .await
            .status(),
        200
    );
    assert_eq!(
        redeem(&url, &id2, &code2, &verifier2, VSCODE_REDIRECT)
            .await
            .status(),
        400
    );

    // A third, revoked by its host (RFC 7009).
    let (id3, code3, verifier3) = code_at(&url, "janedoe@test.com").await;
    let t3: Value = redeem(&url, &id3, &code3, &verifier3, VSCODE_REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{url}/revoke"))
        .form(&[
            ("token", t3["access_token"].as_str().unwrap()),
            ("client_id", &id3),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A denied consent, and a consent post without the page's cookie.
    let id4 = register_vscode(&url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (auth4, _, _) = host_request(&url, &id4, VSCODE_REDIRECT, &[]);
    let b = browser();
    let fields = open_consent(&b, &auth4).await;
    assert_eq!(decide(&b, &url, &fields, "deny").await.status(), 303);
    assert_eq!(decide(&browser(), &url, &fields, "approve").await.status(), 403);

    let after = Scrape::of(&admin).await;
    let moved = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);
    let expect = [
        (
            "a3mcp_bearer_requests_total",
            vec![("outcome", "missing_token")],
            1.0,
        ),
        ("a3mcp_registrations_total", vec![("outcome", "registered")], 4.0),
        ("a3mcp_consents_total", vec![("decision", "approve")], 3.0),
        ("a3mcp_consents_total", vec![("decision", "deny")], 1.0),
        ("a3mcp_consents_total", vec![("decision", "refused")], 1.0),
        ("a3mcp_confirmations_total", vec![("decision", "allow")], 3.0),
        (
            "a3mcp_token_requests_total",
            vec![("grant_type", "authorization_code"), ("result", "ok")],
            3.0,
        ),
        (
            "a3mcp_token_requests_total",
            vec![("grant_type", "authorization_code"), ("result", "invalid_grant")],
            1.0,
        ),
        (
            "a3mcp_token_requests_total",
            vec![("grant_type", "refresh_token"), ("result", "ok")],
            2.0,
        ),
        (
            "a3mcp_token_requests_total",
            vec![("grant_type", "refresh_token"), ("result", "invalid_grant")],
            1.0,
        ),
        (
            "a3mcp_replays_total",
            vec![("credential", "authorization_code")],
            1.0,
        ),
        ("a3mcp_replays_total", vec![("credential", "refresh_token")], 1.0),
        ("a3mcp_grants_revoked_total", vec![("reason", "code_replay")], 1.0),
        (
            "a3mcp_grants_revoked_total",
            vec![("reason", "refresh_reuse")],
            1.0,
        ),
        (
            "a3mcp_grants_revoked_total",
            vec![("reason", "client_revoked")],
            1.0,
        ),
        (
            "a3mcp_item_requests_total",
            vec![("kind", "tool"), ("name", "add"), ("outcome", "allowed")],
            1.0,
        ),
        (
            "a3mcp_item_requests_total",
            vec![("kind", "tool"), ("name", "multiply"), ("outcome", "hidden")],
            1.0,
        ),
        (
            "a3mcp_item_requests_total",
            vec![("kind", "tool"), ("name", "(unlisted)"), ("outcome", "hidden")],
            1.0,
        ),
        (
            "a3mcp_upstream_requests_total",
            vec![("endpoint", "token_code"), ("outcome", "ok")],
            3.0,
        ),
    ];
    for (name, labels, delta) in &expect {
        assert_eq!(moved(name, labels), *delta, "{name} {labels:?}");
    }
    // Counted without an exact figure: every MCP request with our token passed the bearer layer
    // (a store read and a cache hit for the A3 token behind it), and the revoked grants' A3
    // tokens were revoked upstream (in the background).
    assert!(moved("a3mcp_bearer_requests_total", &[("outcome", "accepted")]) >= 4.0);
    assert!(moved("a3mcp_jwt_cache_total", &[("result", "hit")]) >= 4.0);
    assert!(
        moved(
            "a3mcp_store_operations_total",
            &[("operation", "get"), ("outcome", "ok")]
        ) >= 10.0
    );
    assert_eq!(
        moved("a3mcp_store_operations_total", &[("outcome", "error")]),
        0.0
    );
    assert!(
        after.value(
            "a3mcp_store_operation_duration_seconds_count",
            &[("operation", "get")]
        ) >= 10.0
    );
    assert!(
        after.value(
            "a3mcp_upstream_request_duration_seconds_count",
            &[("endpoint", "token_code")]
        ) >= 3.0
    );
    // No label value the callers chose: no client id, subject or token anywhere in the scrape.
    let text: String = after.0.keys().cloned().collect();
    for secret in [id.as_str(), &id2, &id3, &id4, "johndoe", "no_such_tool", rt1] {
        assert!(!text.contains(secret), "{secret} is in the metrics");
    }
}
