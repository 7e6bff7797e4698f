//! Audit events: one event per security decision under the target `a3_mcp_auth::audit`, with
//! who (subject, registered client) and what, through whole host flows against the example's
//! composition; and not one secret in any event the crate writes at any level (tokens, codes,
//! PKCE values, session ids, CSRF and confirmation values, A3's codes and tokens, the client
//! secret). The events are captured by a subscriber installed for this test binary alone (its
//! only test), as an application's subscriber would receive them.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use a3_mcp_auth::dcr::store::MemoryStore;
use serde_json::{Value, json};
use support::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

/// One captured event: its target, level and fields (the message under `message`).
#[derive(Clone, Debug)]
struct Captured {
    target: String,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

impl Capture {
    /// The audit events whose `event` field is `name`.
    fn audit(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                e.target == "a3_mcp_auth::audit" && e.fields.get("event").map(String::as_str) == Some(name)
            })
            .map(|e| e.fields.clone())
            .collect()
    }

    /// The one audit event `name` whose fields include all of `with`.
    fn one(&self, name: &str, with: &[(&str, &str)]) -> BTreeMap<String, String> {
        let matching: Vec<_> = self
            .audit(name)
            .into_iter()
            .filter(|f| {
                with.iter()
                    .all(|(k, v)| f.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one {name} event with {with:?}; all {name} events: {:#?}",
            self.audit(name)
        );
        matching.into_iter().next().unwrap()
    }
}

/// What a sign-in left in the test's hands, secrets included.
struct SignIn {
    client_id: String,
    verifier: String,
    /// Our code, when the user allowed.
    code: Option<String>,
    secrets: Vec<String>,
}

/// Registers a VS Code client and runs `user` through consent, A3's sign-in and the
/// confirmation, answering it with `decision`; collects every secret value seen on the way.
async fn sign_in(server: &Server, user: &str, decision: &str) -> SignIn {
    let client_id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (auth, verifier, state) = host_request(&server.url, &client_id, VSCODE_REDIRECT, &[]);
    let (b, jar) = browser_with_jar();
    let fields = open_consent(&b, &auth).await;
    let csrf = fields.iter().find(|(k, _)| k == "csrf_token").unwrap().1.clone();
    let r = decide(&b, &server.url, &fields, "approve").await;
    assert_eq!(r.status(), 303);
    let to_a3 = location(&r);
    let callback = sign_in_upstream(&b, &to_a3, user).await;
    let page = b.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let confirmation = confirmation_id(&html);
    let r = confirm(&b, &callback, &html, decision).await;
    assert_eq!(r.status(), 303);
    let back = location(&r);
    let code = query_param(&back, "code");
    let mut secrets = vec![
        verifier.clone(),
        s256(&verifier),
        csrf,
        confirmation,
        // A3's state (our transaction), our PKCE challenge to A3, A3's code.
        query_param(&to_a3, "state").unwrap(),
        query_param(&to_a3, "code_challenge").unwrap(),
        query_param(&callback, "code").unwrap(),
    ];
    // The host's own state is not ours to keep secret, but it must not be logged either.
    secrets.push(state);
    secrets.extend(code.clone());
    for cookie in cookies_for(&jar, &server.url) {
        secrets.push(cookie.split_once('=').unwrap().1.to_owned());
    }
    SignIn {
        client_id,
        verifier,
        code,
        secrets,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_audit_event_per_decision_and_no_secret_in_any_event() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new("a3_mcp_auth=trace"))
        .with(capture.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let upstream = Upstream::start().await;
    let server = start_server(&upstream, MemoryStore::new(), |b| b).await;
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_owned()];
    let john = "johndoe@test.com";

    // John signs in and confirms: registration, consent, confirmation, grant issued.
    let first = sign_in(&server, john, "allow").await;
    secrets.extend(first.secrets.clone());
    let r = redeem(
        &server.url,
        &first.client_id,
        first.code.as_deref().unwrap(),
        &first.verifier,
        VSCODE_REDIRECT,
    )
    .await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let (access, rt1) = (
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
    );
    secrets.extend([access.clone(), rt1.clone()]);
    let c1 = first.client_id.as_str();
    capture.one(
        "client_registered",
        &[("client_id", c1), ("client_name", "Visual Studio Code")],
    );
    capture.one(
        "consent",
        &[("client_id", c1), ("outcome", "approve"), ("scope", "mcp:call")],
    );
    capture.one(
        "confirmation",
        &[("client_id", c1), ("subject", john), ("outcome", "allow")],
    );
    let issued = capture.one("grant_issued", &[("client_id", c1), ("subject", john)]);
    let grant1 = issued["grant_id"].clone();

    // A hidden tool, called in an MCP session; then Jane tries John's session id.
    let calls = call_tools(
        &server.mcp_url(),
        &access,
        &[("multiply", json!({"a": 2, "b": 3}))],
    )
    .await;
    assert!(calls[0].is_err());
    capture.one(
        "call_refused",
        &[
            ("client_id", c1),
            ("subject", john),
            ("kind", "tool"),
            ("name", "multiply"),
            ("reason", "hidden"),
        ],
    );
    let session = mcp_session(&server, &access).await;
    secrets.push(session.clone());
    let jane = sign_in(&server, "janedoe@test.com", "allow").await;
    secrets.extend(jane.secrets.clone());
    let jane_tokens: Value = redeem(
        &server.url,
        &jane.client_id,
        jane.code.as_deref().unwrap(),
        &jane.verifier,
        VSCODE_REDIRECT,
    )
    .await
    .json()
    .await
    .unwrap();
    let jane_access = jane_tokens["access_token"].as_str().unwrap().to_owned();
    secrets.push(jane_access.clone());
    secrets.extend(jane_tokens["refresh_token"].as_str().map(str::to_owned));
    assert_eq!(mcp_list_status(&server, &jane_access, &session).await, 404);
    capture.one(
        "session_refused",
        &[
            ("reason", "not_owner"),
            ("subject", "janedoe@test.com"),
            ("client_id", &jane.client_id),
        ],
    );
    // Jane opens sessions up to her share (32), and one more.
    for _ in 0..32 {
        secrets.push(mcp_session(&server, &jane_access).await);
    }
    let (status, _) = mcp_post(
        &server,
        &jane_access,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 429);
    capture.one(
        "session_refused",
        &[("reason", "user_limit"), ("subject", "janedoe@test.com")],
    );

    // Refresh twice (rotation), then the first refresh token again: reuse ends the grant.
    let r = refresh_at(&server.url, c1, &rt1).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend([t2["access_token"].as_str().unwrap().to_owned(), rt2.clone()]);
    let r = refresh_at(&server.url, c1, &rt2).await;
    let t3: Value = r.json().await.unwrap();
    secrets.extend(["access_token", "refresh_token"].map(|k| t3[k].as_str().unwrap().to_owned()));
    assert_eq!(refresh_at(&server.url, c1, &rt1).await.status(), 400);
    let refreshed = capture.audit("grant_refreshed");
    assert_eq!(refreshed.len(), 2, "one event per rotation");
    for event in &refreshed {
        assert_eq!(
            [&event["client_id"], &event["subject"], &event["grant_id"]],
            [c1, john, grant1.as_str()]
        );
    }
    capture.one("refresh_token_reuse", &[("client_id", c1), ("grant_id", &grant1)]);
    capture.one(
        "grant_revoked",
        &[
            ("grant_id", &grant1),
            ("subject", john),
            ("reason", "refresh_reuse"),
        ],
    );

    // A code redeemed twice: the replay ends its grant.
    let second = sign_in(&server, john, "allow").await;
    secrets.extend(second.secrets.clone());
    let code = second.code.as_deref().unwrap();
    let r = redeem(
        &server.url,
        &second.client_id,
        code,
        &second.verifier,
        VSCODE_REDIRECT,
    )
    .await;
    let t: Value = r.json().await.unwrap();
    secrets.extend(["access_token", "refresh_token"].map(|k| t[k].as_str().unwrap().to_owned()));
    let r = redeem(
        &server.url,
        &second.client_id,
        code,
        &second.verifier,
        VSCODE_REDIRECT,
    )
    .await;
    assert_eq!(r.status(), 400);
    let c2 = second.client_id.as_str();
    let grant2 = capture.one("grant_issued", &[("client_id", c2)])["grant_id"].clone();
    capture.one("code_replay", &[("client_id", c2), ("grant_id", &grant2)]);
    capture.one(
        "grant_revoked",
        &[("grant_id", &grant2), ("reason", "code_replay")],
    );

    // The host revokes its token (RFC 7009).
    let r = reqwest::Client::new()
        .post(format!("{}/revoke", server.url))
        .form(&[("token", jane_access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    capture.one(
        "grant_revoked",
        &[
            ("client_id", &jane.client_id),
            ("subject", "janedoe@test.com"),
            ("reason", "client_revoked"),
        ],
    );

    // Deny at the confirmation, and at the consent page.
    let denied = sign_in(&server, john, "deny").await;
    secrets.extend(denied.secrets.clone());
    assert!(denied.code.is_none());
    capture.one(
        "confirmation",
        &[
            ("client_id", &denied.client_id),
            ("subject", john),
            ("outcome", "deny"),
        ],
    );
    let id = register_vscode(&server.url).await["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (auth, verifier, _) = host_request(&server.url, &id, VSCODE_REDIRECT, &[]);
    secrets.push(verifier);
    let b = browser();
    let fields = open_consent(&b, &auth).await;
    assert_eq!(decide(&b, &server.url, &fields, "deny").await.status(), 303);
    capture.one("consent", &[("client_id", &id), ("outcome", "deny")]);

    // A3's codes and tokens (all of them, as the stand-in issued them).
    secrets.extend(upstream.state.issued.lock().unwrap().iter().cloned());
    assert!(secrets.len() > 60, "the flows produced the secrets to look for");

    let events = capture.0.lock().unwrap().clone();
    let ours: Vec<_> = events
        .iter()
        .filter(|e| e.target.starts_with("a3_mcp_auth"))
        .collect();
    assert!(ours.len() > 30, "the crate's own log was captured too");
    for event in &ours {
        let text = format!("{:?}", event.fields);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is in a {} event of {}: {text}",
                event.level,
                event.target
            );
        }
    }
    // Audit events at INFO or above, so an INFO filter keeps them all.
    assert!(
        ours.iter()
            .filter(|e| e.target == "a3_mcp_auth::audit")
            .all(|e| e.level <= tracing::Level::INFO)
    );
}
