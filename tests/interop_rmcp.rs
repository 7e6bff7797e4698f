//! Interop host: the rmcp OAuth client (discovery, dynamic registration, PKCE, code exchange,
//! refresh) against the example server pointed at oidc-provider standing in for A3.
//!
//! Run by `interop/run`, which starts both servers and sets `INTEROP_MCP_URL`, `INTEROP_SERVER`
//! and `INTEROP_AS`, and runs them with `--ignored`: a plain `cargo test` lists them as ignored
//! and stays self-contained; run without those servers, they fail rather than pass vacuously.

mod support;

use std::time::Duration;

use http::header;
use rmcp::transport::auth::{AuthorizationManager, AuthorizationRequest, OAuthState};
use serde_json::{Value, json};
use support::{mcp_status_at, use_tools_at};

const HOST_REDIRECT: &str = "http://127.0.0.1:9/rmcp-callback";

struct Env {
    mcp: String,
    server: String,
    upstream: String,
}

fn interop_env() -> Option<Env> {
    let mcp = std::env::var("INTEROP_MCP_URL").ok()?;
    let server = std::env::var("INTEROP_SERVER").expect("INTEROP_SERVER");
    let upstream = std::env::var("INTEROP_AS").expect("INTEROP_AS");
    Some(Env {
        mcp,
        server,
        upstream,
    })
}

macro_rules! interop_env_or_fail {
    () => {
        match interop_env() {
            Some(env) => env,
            None => panic!("INTEROP_MCP_URL is not set: run these through interop/run"),
        }
    };
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn location(r: &reqwest::Response, base: &url::Url) -> String {
    let l = r
        .headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {}", r.status()))
        .to_str()
        .unwrap();
    base.join(l).unwrap().to_string()
}

/// The user's part, headless: our consent page (Approve), oidc-provider's login and consent,
/// back through our callback and our confirmation of the account (Allow); returns the redirect
/// to the host.
async fn authorize(env: &Env, auth_url: &str, user: &str) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser.get(auth_url).send().await.unwrap();
    assert_eq!(r.status(), 200, "our consent page");
    let html = r.text().await.unwrap();
    let mut form: Vec<(String, String)> = html
        .split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once('"').unwrap();
            let value = rest.split_once("value=\"").unwrap().1.split_once('"').unwrap().0;
            (name.to_owned(), unescape(value))
        })
        .collect();
    form.push(("decision".into(), "approve".into()));
    let r = browser
        .post(format!("{}/authorize", env.server))
        .header(header::ORIGIN, &env.server)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "approval redirects to the upstream");
    let mut next = location(&r, &url::Url::parse(&env.server).unwrap());
    for _ in 0..20 {
        let url = url::Url::parse(&next).unwrap();
        let at_upstream = next.starts_with(&env.upstream);
        if !at_upstream && !next.starts_with(&format!("{}/auth/callback", env.server)) {
            return next;
        }
        let r = browser.get(&next).send().await.unwrap();
        if r.status().is_redirection() {
            next = location(&r, &url);
            continue;
        }
        assert_eq!(r.status(), 200, "{next}");
        let html = r.text().await.unwrap();
        let action = unescape(html.split("action=\"").nth(1).unwrap().split('"').next().unwrap());
        let confirmation;
        let fields: Vec<(&str, &str)> = if html.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", user), ("password", "any")]
        } else if let Some(rest) = html.split("name=\"confirmation\" value=\"").nth(1) {
            // Ours, after the upstream sign-in (plain http): confirm the account.
            assert!(html.contains(user), "the confirmation names {user}");
            confirmation = rest.split('"').next().unwrap().to_owned();
            vec![("confirmation", &confirmation), ("decision", "allow")]
        } else {
            vec![("prompt", "consent")]
        };
        let action = url.join(&action).unwrap();
        // The page's own form: a browser sends the page's origin.
        let r = browser
            .post(action.clone())
            .header(header::ORIGIN, url.origin().ascii_serialization())
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection(), "{action}: {}", r.status());
        next = location(&r, &action);
    }
    panic!("too many redirects");
}

/// rmcp does discovery, registration and PKCE; the headless user consents and signs in.
async fn login(env: &Env, user: &str, scopes: &[&str]) -> AuthorizationManager {
    login_as(env, user, scopes, None).await
}

/// [`login`], identifying by the Client ID Metadata Document at `document` if given.
async fn login_as(env: &Env, user: &str, scopes: &[&str], document: Option<&str>) -> AuthorizationManager {
    let mut state = OAuthState::new(env.mcp.as_str(), None).await.unwrap();
    let mut request = AuthorizationRequest::new(HOST_REDIRECT).with_client_name("interop: rmcp host");
    if let Some(url) = document {
        request = request.with_client_metadata_url(url);
    }
    if !scopes.is_empty() {
        request = request.with_scopes(scopes.iter().copied());
    }
    state.start_authorization(request).await.unwrap();
    let auth_url = state.get_authorization_url().await.unwrap();
    assert!(auth_url.starts_with(&env.server), "authorization at our server");
    if let Some(url) = document {
        let client_id = url::Url::parse(&auth_url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned());
        assert_eq!(client_id.as_deref(), Some(url), "rmcp identified by its document");
    }
    let back = authorize(env, &auth_url, user).await;
    assert!(back.starts_with(HOST_REDIRECT), "{back}");
    let iss = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "iss")
        .map(|(_, v)| v.into_owned());
    assert_eq!(iss.as_deref(), Some(env.server.as_str()), "RFC 9207 iss is ours");
    state.handle_callback_url(&back).await.unwrap();
    state.into_authorization_manager().unwrap()
}

async fn upstream_refreshes(env: &Env) -> u64 {
    let stats: Value = reqwest::get(format!("{}/__interop/stats", env.upstream))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["grants"]["refresh_token"].as_u64().unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs the servers interop/run starts (oidc-provider and the example server)"]
async fn john_sees_and_gets_add_only() {
    let env = interop_env_or_fail!();
    let manager = login(&env, "johndoe@test.com", &[]).await;
    let token = manager.get_access_token().await.unwrap();
    assert!(token.starts_with("a3mcp_at_"), "our opaque token, not A3's JWT");
    let (names, results) = use_tools_at(
        &env.mcp,
        manager,
        &[
            ("add", json!({"a": 2, "b": 3})),
            ("multiply", json!({"a": 2, "b": 3})),
            ("whoami", json!({})),
        ],
    )
    .await;
    assert_eq!(names, ["add", "whoami"]);
    assert_eq!(results[0].as_deref(), Ok("5"));
    assert!(
        results[1].as_ref().unwrap_err().contains("tool not found"),
        "{:?}",
        results[1]
    );
    let who: Value = serde_json::from_str(results[2].as_ref().unwrap()).unwrap();
    assert_eq!(who["subject"], "johndoe@test.com");
    assert_eq!(who["contexts"], json!(["operation=addition"]));
}

#[tokio::test]
#[ignore = "needs the servers interop/run starts (oidc-provider and the example server)"]
async fn jane_sees_multiply_and_steps_up_for_it() {
    let env = interop_env_or_fail!();
    let manager = login(&env, "janedoe@test.com", &[]).await;
    let (names, results) = use_tools_at(&env.mcp, manager, &[("multiply", json!({"a": 6, "b": 7}))]).await;
    assert_eq!(names, ["add", "multiply", "whoami"]);
    let err = results[0].as_ref().unwrap_err();
    assert!(err.contains("insufficient_scope"), "{err}");
    // Step up: authorize again with the extra scope.
    let manager = login(&env, "janedoe@test.com", &["mcp:call", "mcp:admin"]).await;
    let (_, results) = use_tools_at(&env.mcp, manager, &[("multiply", json!({"a": 6, "b": 7}))]).await;
    assert_eq!(results[0].as_deref(), Ok("42"));
}

#[tokio::test]
#[ignore = "needs the servers interop/run starts (oidc-provider and the example server)"]
async fn refresh_upstream_after_expiry_and_ours_then_revoke() {
    let env = interop_env_or_fail!();
    let manager = login(&env, "shortlived@test.com", &[]).await;
    let first = manager.get_access_token().await.unwrap();
    let before = upstream_refreshes(&env).await;
    tokio::time::sleep(Duration::from_millis(6500)).await; // the upstream token lived 5 s
    assert_eq!(
        mcp_status_at(&env.mcp, &first).await,
        200,
        "our token still works"
    );
    assert!(
        upstream_refreshes(&env).await > before,
        "the bridge refreshed at oidc-provider"
    );
    manager.refresh_token().await.expect("our refresh_token grant");
    let second = manager.get_access_token().await.unwrap();
    assert_ne!(second, first);
    let (names, results) = use_tools_at(&env.mcp, manager, &[("add", json!({"a": 1, "b": 2}))]).await;
    assert_eq!(names, ["add", "multiply", "whoami"]);
    assert_eq!(results[0].as_deref(), Ok("3"));

    let r = reqwest::Client::new()
        .post(format!("{}/revoke", env.server))
        .form(&[("token", second.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mcp_status_at(&env.mcp, &second).await, 401, "revoked");
}

#[tokio::test]
#[ignore = "needs the servers interop/run starts (oidc-provider, the example server, the documents)"]
async fn rmcp_identifies_by_its_client_metadata_document() {
    let env = interop_env_or_fail!();
    let base = std::env::var("INTEROP_CIMD_BASE").expect("INTEROP_CIMD_BASE");
    let document = format!("{base}/rmcp/client.json");
    let manager = login_as(&env, "janedoe@test.com", &[], Some(&document)).await;
    manager.refresh_token().await.expect("our refresh_token grant");
    let (names, results) = use_tools_at(&env.mcp, manager, &[("whoami", json!({}))]).await;
    assert_eq!(names, ["add", "multiply", "whoami"]);
    let who: Value = serde_json::from_str(results[0].as_ref().unwrap()).unwrap();
    assert_eq!(who["client_id"], document.as_str());
}
