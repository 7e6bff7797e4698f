//! The development issuer over real HTTP: the code flow a DCR bridge drives, and each refusal.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
use a3_mcp_auth::dev_issuer::DevIssuer;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::{HostilePage, submit_form, submit_page_form};

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn new_verifier() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn request_id(html: &str) -> String {
    html.split("name=\"request\" value=\"")
        .nth(1)
        .expect("a login form")
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

fn query_of(response: &reqwest::Response) -> HashMap<String, String> {
    let location = response
        .headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap();
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn location_without_query(response: &reqwest::Response) -> String {
    let location = response
        .headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap();
    location.split('?').next().unwrap().to_owned()
}

/// `GET /authorize` with the default request, `overrides` replacing (or, with `None`, removing)
/// parameters.
async fn authorize(
    dev: &DevIssuer,
    browser: &reqwest::Client,
    verifier: &str,
    overrides: &[(&str, Option<&str>)],
) -> reqwest::Response {
    let mut url =
        url::Url::parse(&dev.authorization_url("st-1", &DevIssuer::pkce_challenge(verifier))).unwrap();
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (name, value) in overrides {
        pairs.retain(|(n, _)| n != name);
        if let Some(value) = value {
            pairs.push((name.to_string(), value.to_string()));
        }
    }
    url.query_pairs_mut().clear().extend_pairs(pairs);
    browser.get(url).send().await.unwrap()
}

async fn login(
    dev: &DevIssuer,
    browser: &reqwest::Client,
    id: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(format!("{}/login", dev.url()))
        .form(&[("request", id), ("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// Authorization through the login form; returns the code.
async fn code_for(
    dev: &DevIssuer,
    browser: &reqwest::Client,
    verifier: &str,
    email: &str,
    password: &str,
) -> String {
    let page = authorize(dev, browser, verifier, &[]).await;
    assert_eq!(page.status(), 200);
    let id = request_id(&page.text().await.unwrap());
    let redirect = login(dev, browser, &id, email, password).await;
    assert_eq!(redirect.status(), 303);
    query_of(&redirect)["code"].clone()
}

async fn post_form(dev: &DevIssuer, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", dev.url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The token request a correct client makes for `code`, with `overrides`.
async fn exchange(
    dev: &DevIssuer,
    code: &str,
    verifier: &str,
    overrides: &[(&str, Option<&str>)],
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", dev.redirect_uri()),
        ("code_verifier", verifier),
        ("client_id", dev.client_id()),
        ("client_secret", dev.client_secret()),
    ];
    for (name, value) in overrides {
        form.retain(|(n, _)| n != name);
        if let Some(value) = value {
            form.push((name, value));
        }
    }
    post_form(dev, "/token", &form).await
}

async fn refresh(dev: &DevIssuer, refresh_token: &str) -> reqwest::Response {
    post_form(
        dev,
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", dev.client_id()),
            ("client_secret", dev.client_secret()),
        ],
    )
    .await
}

/// `extra` plus the default client's `client_secret_post` credentials.
fn with_auth<'a>(dev: &'a DevIssuer, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = extra.to_vec();
    form.extend([
        ("client_id", dev.client_id()),
        ("client_secret", dev.client_secret()),
    ]);
    form
}

async fn oauth_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned())
}

async fn tokens_for(dev: &DevIssuer, email: &str, password: &str) -> Value {
    let verifier = new_verifier();
    let code = code_for(dev, &browser(), &verifier, email, password).await;
    let response = exchange(dev, &code, &verifier, &[]).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn code_flow_issues_verifiable_tokens_and_refresh_rotates() {
    let dev = DevIssuer::start().await.unwrap();
    let browser = browser();
    let verifier = new_verifier();

    let page = authorize(&dev, &browser, &verifier, &[]).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\" action=\"/login\">"));
    let redirect = login(&dev, &browser, &request_id(&html), "johndoe@test.com", "secret").await;
    assert_eq!(redirect.status(), 303);
    assert_eq!(
        location_without_query(&redirect),
        "http://127.0.0.1:8000/auth/callback"
    );
    let query = query_of(&redirect);
    assert_eq!(query["state"], "st-1");
    assert_eq!(query["iss"], dev.url());

    let response = exchange(&dev, &query["code"], &verifier, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert_eq!(tokens["scope"], "mcp:call");

    let access = tokens["access_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], dev.issuer().current_kid());
    let verifier_for_resource = dev.issuer().verifier(dev.resource()).await;
    let claims = verifier_for_resource.verify(access).await.unwrap();
    assert_eq!(claims.issuer(), Some(dev.url()));
    assert_eq!(claims.get("aud"), Some(&json!("http://127.0.0.1:8000/mcp")));
    assert_eq!(claims.subject(), Some("johndoe@test.com"));
    assert_eq!(claims.client_id(), Some("dev-proxy-client"));
    assert!(claims.has_scope("mcp:call"));
    assert_eq!(claims.get("contexts"), Some(&json!({"operation": ["addition"]})));
    assert!(claims.get("jti").is_some());
    let (iat, exp) = (
        claims.get("iat").unwrap().as_u64().unwrap(),
        claims.expires_at().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    // Not for another resource.
    assert!(
        dev.issuer()
            .verifier("http://127.0.0.1:9999/mcp")
            .await
            .verify(access)
            .await
            .is_err()
    );

    // Refresh rotates the refresh token and issues a new access token.
    let old_refresh = tokens["refresh_token"].as_str().unwrap();
    let response = refresh(&dev, old_refresh).await;
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    let new_refresh = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, old_refresh);
    assert_ne!(refreshed["access_token"], tokens["access_token"]);
    let claims = verifier_for_resource
        .verify(refreshed["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.get("contexts"), Some(&json!({"operation": ["addition"]})));

    // The old one is refused, and presenting it again revokes the whole grant.
    assert_eq!(
        oauth_error(refresh(&dev, old_refresh).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        oauth_error(refresh(&dev, new_refresh).await).await,
        (400, "invalid_grant".into())
    );

    assert_eq!((dev.logins(), dev.codes_issued()), (1, 1));
    assert_eq!((dev.token_requests(), dev.refresh_requests()), (4, 3));
}

#[tokio::test]
async fn contexts_come_from_the_configured_user() {
    let dev = DevIssuer::builder()
        .user(
            "janedoe@test.com",
            "jane-pw",
            [("operation", "addition"), ("operation", "multiplication")],
        )
        .context_claim("a3_contexts")
        .start()
        .await
        .unwrap();
    let tokens = tokens_for(&dev, "janedoe@test.com", "jane-pw").await;
    let claims = dev
        .issuer()
        .verifier(dev.resource())
        .await
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.subject(), Some("janedoe@test.com"));
    assert_eq!(
        claims.get("a3_contexts"),
        Some(&json!({"operation": ["addition", "multiplication"]}))
    );
    assert_eq!(claims.get("contexts"), None);

    // An admin grants a new context: the next token (a refresh here) carries it.
    assert!(dev.set_user_contexts("janedoe@test.com", [("operation", "division")]));
    let refreshed: Value = refresh(&dev, tokens["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let claims = dev
        .issuer()
        .verifier(dev.resource())
        .await
        .verify(refreshed["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        claims.get("a3_contexts"),
        Some(&json!({"operation": ["division"]}))
    );
    // The default user is still there.
    tokens_for(&dev, "johndoe@test.com", "secret").await;
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(&dev, &code, &verifier, &[("client_secret", Some("wrong"))]).await;
    assert_eq!(oauth_error(response).await, (401, "invalid_client".into()));
    let response = exchange(&dev, &code, &verifier, &[("client_secret", None)]).await;
    assert_eq!(oauth_error(response).await, (401, "invalid_client".into()));
    // Failed client authentication does not burn the code.
    assert_eq!(exchange(&dev, &code, &verifier, &[]).await.status(), 200);
}

#[tokio::test]
async fn basic_auth_only_is_invalid_client() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = reqwest::Client::new()
        .post(format!("{}/token", dev.url()))
        .basic_auth(dev.client_id(), Some(dev.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", dev.redirect_uri()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    assert_eq!(oauth_error(response).await, (401, "invalid_client".into()));

    // Both methods at once is a malformed request.
    let response = reqwest::Client::new()
        .post(format!("{}/token", dev.url()))
        .basic_auth(dev.client_id(), Some(dev.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", dev.client_id()),
            ("client_secret", dev.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(response).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn wrong_pkce_verifier_is_invalid_grant() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(
        &dev,
        &code,
        &verifier,
        &[("code_verifier", Some(&new_verifier()))],
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
    // One attempt per code.
    assert_eq!(
        oauth_error(exchange(&dev, &code, &verifier, &[]).await).await,
        (400, "invalid_grant".into())
    );

    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(&dev, &code, &verifier, &[("code_verifier", None)]).await;
    assert_eq!(oauth_error(response).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn code_replay_is_refused_and_revokes_the_grant() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let tokens: Value = exchange(&dev, &code, &verifier, &[]).await.json().await.unwrap();
    assert_eq!(
        oauth_error(exchange(&dev, &code, &verifier, &[]).await).await,
        (400, "invalid_grant".into())
    );
    let response = refresh(&dev, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let dev = DevIssuer::builder()
        .authorization_code_ttl(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let verifier = new_verifier();
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        oauth_error(exchange(&dev, &code, &verifier, &[]).await).await,
        (400, "invalid_grant".into())
    );
}

#[tokio::test]
async fn wrong_redirect_uri_is_refused() {
    let dev = DevIssuer::builder()
        .client(
            "proxy",
            "proxy-secret",
            [
                "http://127.0.0.1:8000/auth/callback",
                "http://[::1]:8000/auth/callback",
            ],
        )
        .start()
        .await
        .unwrap();
    let verifier = new_verifier();

    // At the token endpoint: a different (even registered) redirect URI, or none.
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(
        &dev,
        &code,
        &verifier,
        &[("redirect_uri", Some("http://[::1]:8000/auth/callback"))],
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(&dev, &code, &verifier, &[("redirect_uri", None)]).await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));

    // At the authorization endpoint: an error page, never a redirect. Loopback matches exactly.
    for uri in [
        "http://127.0.0.1:8001/auth/callback",
        "http://127.0.0.1:8000/auth/callback/",
        "https://evil.example/cb",
    ] {
        let response = authorize(&dev, &browser(), &verifier, &[("redirect_uri", Some(uri))]).await;
        assert_eq!(response.status(), 400, "{uri}");
        assert!(response.headers().get("location").is_none());
        assert!(response.text().await.unwrap().contains("not registered"));
    }
    // Two registered URIs: the request must name one.
    let response = authorize(&dev, &browser(), &verifier, &[("redirect_uri", None)]).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn unknown_client_is_refused() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    let response = authorize(
        &dev,
        &browser(),
        &verifier,
        &[("client_id", Some("<script>x</script>"))],
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;") && !html.contains("<script>"));

    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(&dev, &code, &verifier, &[("client_id", Some("someone-else"))]).await;
    assert_eq!(oauth_error(response).await, (401, "invalid_client".into()));
}

#[tokio::test]
async fn code_is_bound_to_its_client() {
    let dev = DevIssuer::builder()
        .client("a", "secret-a", ["http://127.0.0.1:8000/auth/callback"])
        .client("b", "secret-b", ["http://127.0.0.1:8000/auth/callback"])
        .start()
        .await
        .unwrap();
    let verifier = new_verifier();
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(
        &dev,
        &code,
        &verifier,
        &[("client_id", Some("b")), ("client_secret", Some("secret-b"))],
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn missing_or_wrong_resource_is_invalid_target() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    for resource in [None, Some("http://127.0.0.1:8000/other")] {
        let response = authorize(&dev, &browser(), &verifier, &[("resource", resource)]).await;
        assert_eq!(response.status(), 303);
        assert_eq!(location_without_query(&response), dev.redirect_uri());
        let query = query_of(&response);
        assert_eq!(query["error"], "invalid_target");
        assert_eq!(query["state"], "st-1");
        assert_eq!(query["iss"], dev.url());
        assert!(!query.contains_key("code"));
    }
    // At the token endpoint, a resource is optional but must match.
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(
        &dev,
        &code,
        &verifier,
        &[("resource", Some("http://127.0.0.1:8000/other"))],
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_target".into()));
    let code = code_for(&dev, &browser(), &verifier, "johndoe@test.com", "secret").await;
    let response = exchange(&dev, &code, &verifier, &[("resource", Some(dev.resource()))]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn pkce_s256_is_required() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = new_verifier();
    for overrides in [
        vec![("code_challenge", None)],
        vec![("code_challenge_method", None)],
        vec![("code_challenge_method", Some("plain"))],
        vec![("response_type", None)],
    ] {
        let response = authorize(&dev, &browser(), &verifier, &overrides).await;
        assert_eq!(response.status(), 303, "{overrides:?}");
        let query = query_of(&response);
        assert_eq!(query["error"], "invalid_request", "{overrides:?}");
        assert_eq!(query["state"], "st-1");
    }
    let response = authorize(&dev, &browser(), &verifier, &[("response_type", Some("token"))]).await;
    assert_eq!(query_of(&response)["error"], "unsupported_response_type");
}

#[tokio::test]
async fn unknown_scope_is_invalid_scope_and_a_subset_is_granted() {
    let dev = DevIssuer::builder()
        .scopes(["mcp:call", "mcp:admin"])
        .start()
        .await
        .unwrap();
    let verifier = new_verifier();
    let response = authorize(&dev, &browser(), &verifier, &[("scope", Some("mcp:call root"))]).await;
    assert_eq!(query_of(&response)["error"], "invalid_scope");

    let browser = browser();
    let page = authorize(&dev, &browser, &verifier, &[("scope", Some("openid mcp:call"))]).await;
    let id = request_id(&page.text().await.unwrap());
    let code = query_of(&login(&dev, &browser, &id, "johndoe@test.com", "secret").await)["code"].clone();
    let tokens: Value = exchange(&dev, &code, &verifier, &[]).await.json().await.unwrap();
    assert_eq!(tokens["scope"], "mcp:call");
}

#[tokio::test]
async fn bad_password_shows_the_form_again() {
    let dev = DevIssuer::start().await.unwrap();
    let browser = browser();
    let verifier = new_verifier();
    let id = request_id(
        &authorize(&dev, &browser, &verifier, &[])
            .await
            .text()
            .await
            .unwrap(),
    );

    let response = login(&dev, &browser, &id, "johndoe@test.com", "wrong").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("Wrong e-mail or password"));
    assert_eq!(request_id(&html), id);
    let response = login(&dev, &browser, &id, "nobody@test.com", "secret").await;
    assert_eq!(response.status(), 401);
    assert_eq!(dev.logins(), 0);

    // The same form then works, once.
    let response = login(&dev, &browser, &id, "johndoe@test.com", "secret").await;
    assert_eq!(response.status(), 303);
    let response = login(&dev, &browser, &id, "johndoe@test.com", "secret").await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn too_many_bad_passwords_withdraw_the_form() {
    let dev = DevIssuer::start().await.unwrap();
    let browser = browser();
    let id = request_id(
        &authorize(&dev, &browser, &new_verifier(), &[])
            .await
            .text()
            .await
            .unwrap(),
    );
    for _ in 0..5 {
        assert_eq!(
            login(&dev, &browser, &id, "johndoe@test.com", "wrong")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login(&dev, &browser, &id, "johndoe@test.com", "secret")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn second_authorize_in_the_same_session_skips_the_login() {
    let dev = DevIssuer::start().await.unwrap();
    let browser = browser();
    let verifier = new_verifier();
    code_for(&dev, &browser, &verifier, "johndoe@test.com", "secret").await;

    let second = new_verifier();
    let response = authorize(&dev, &browser, &second, &[("state", Some("st-2"))]).await;
    assert_eq!(response.status(), 303);
    let query = query_of(&response);
    assert_eq!(query["state"], "st-2");
    let tokens: Value = exchange(&dev, &query["code"], &second, &[])
        .await
        .json()
        .await
        .unwrap();
    let claims = dev
        .issuer()
        .verifier(dev.resource())
        .await
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims.subject(), Some("johndoe@test.com"));
    assert_eq!((dev.logins(), dev.codes_issued()), (1, 2));

    // prompt=login, another browser, or ended sessions: the form again.
    assert_eq!(
        authorize(&dev, &browser, &second, &[("prompt", Some("login"))])
            .await
            .status(),
        200
    );
    assert_eq!(
        authorize(&dev, &self::browser(), &second, &[]).await.status(),
        200
    );
    let response = authorize(&dev, &self::browser(), &second, &[("prompt", Some("none"))]).await;
    assert_eq!(query_of(&response)["error"], "login_required");
    dev.end_all_sessions();
    assert_eq!(authorize(&dev, &browser, &second, &[]).await.status(), 200);
}

#[tokio::test]
async fn revocation_and_refresh_refusals() {
    let dev = DevIssuer::start().await.unwrap();
    let tokens = tokens_for(&dev, "johndoe@test.com", "secret").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    // Unknown tokens, access tokens: 200. Client authentication still required.
    let response = post_form(&dev, "/revoke", &with_auth(&dev, &[("token", "unknown")])).await;
    assert_eq!(response.status(), 200);
    let response = post_form(
        &dev,
        "/revoke",
        &[
            ("token", refresh_token),
            ("client_id", dev.client_id()),
            ("client_secret", "x"),
        ],
    )
    .await;
    assert_eq!(oauth_error(response).await, (401, "invalid_client".into()));
    assert_eq!(refresh(&dev, refresh_token).await.status(), 200);

    let tokens = tokens_for(&dev, "johndoe@test.com", "secret").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let response = post_form(&dev, "/revoke", &with_auth(&dev, &[("token", refresh_token)])).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        oauth_error(refresh(&dev, refresh_token).await).await,
        (400, "invalid_grant".into())
    );

    let tokens = tokens_for(&dev, "johndoe@test.com", "secret").await;
    assert_eq!(dev.revoke_all_refresh_tokens(), 2); // this one and the rotated one of the first grant
    let response = refresh(&dev, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
    assert_eq!(dev.revocation_requests(), 3);
}

#[tokio::test]
async fn expired_refresh_token_is_invalid_grant() {
    let dev = DevIssuer::builder()
        .refresh_token_ttl(Duration::from_millis(200))
        .access_token_ttl(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let tokens = tokens_for(&dev, "johndoe@test.com", "secret").await;
    assert_eq!(tokens["expires_in"], 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = refresh(&dev, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn malformed_token_requests() {
    let dev = DevIssuer::start().await.unwrap();
    let auth = [
        ("client_id", dev.client_id()),
        ("client_secret", dev.client_secret()),
    ];
    let response = post_form(&dev, "/token", &with_auth(&dev, &[("grant_type", "password")])).await;
    assert_eq!(
        oauth_error(response).await,
        (400, "unsupported_grant_type".into())
    );
    let response = post_form(&dev, "/token", &auth).await;
    assert_eq!(oauth_error(response).await, (400, "invalid_request".into()));
    let response = post_form(
        &dev,
        "/token",
        &with_auth(&dev, &[("grant_type", "authorization_code"), ("code", "nope")]),
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_request".into())); // no code_verifier
    let verifier = new_verifier();
    let response = post_form(
        &dev,
        "/token",
        &with_auth(
            &dev,
            &[
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("code_verifier", &verifier),
            ],
        ),
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_grant".into()));
    let response = post_form(
        &dev,
        "/token",
        &with_auth(
            &dev,
            &[("grant_type", "refresh_token"), ("grant_type", "refresh_token")],
        ),
    )
    .await;
    assert_eq!(oauth_error(response).await, (400, "invalid_request".into()));
    let response = reqwest::Client::new()
        .post(format!("{}/token", dev.url()))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(response).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn discovery_names_the_endpoints() {
    let dev = DevIssuer::start().await.unwrap();
    let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", dev.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], dev.url());
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("revocation_endpoint", "/revoke"),
    ] {
        assert_eq!(discovery[field], format!("{}{path}", dev.url()));
    }
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!(["client_secret_post"])
    );
    assert_eq!(discovery["authorization_response_iss_parameter_supported"], true);
}

/// Login CSRF (issue 10 §4): a page on another loopback port posts, from the victim's browser,
/// the sign-in form of a request the attacker opened himself, with his own e-mail and password.
/// The issuer used to set its session in her browser, so her next authorization was silently his
/// account. Only a post from the issuer's own page signs in now.
#[tokio::test]
async fn a_sign_in_posted_by_a_page_on_another_loopback_port_is_refused() {
    let dev = DevIssuer::builder()
        .user(
            "mallory@test.com",
            "mallory-password",
            [("operation", "addition")],
        )
        .start()
        .await
        .unwrap();
    // The attacker opens a sign-in form of his own, and serves a page that submits it.
    let form_page = authorize(&dev, &browser(), &new_verifier(), &[]).await;
    let id = request_id(&form_page.text().await.unwrap());
    let hidden =
        |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{value}\">");
    let page = HostilePage::serving(format!(
        "<form method=\"post\" action=\"{}/login\">{}{}{}</form><script>document.forms[0].submit()</script>",
        dev.url(),
        hidden("request", &id),
        hidden("email", "mallory@test.com"),
        hidden("password", "mallory-password"),
    ))
    .await;

    let victim = browser();
    let html = victim.get(&page.url).send().await.unwrap().text().await.unwrap();
    let r = submit_page_form(&victim, &page.url, &html).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no session in her browser"
    );
    assert_eq!(dev.logins(), 0);
    assert_eq!(
        authorize(&dev, &victim, &new_verifier(), &[]).await.status(),
        200,
        "her next authorization asks her to sign in"
    );

    // The same form from the issuer's own page signs in: the origin was all that was refused.
    let own_page = format!("{}/authorize", dev.url());
    let fields: Vec<(String, String)> = [
        ("request", id.as_str()),
        ("email", "mallory@test.com"),
        ("password", "mallory-password"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = submit_form(&browser(), &own_page, &format!("{}/login", dev.url()), &fields).await;
    assert_eq!(r.status(), 303);
}

/// Password guessing (issue 10 §4): each sign-in form allows five wrong passwords, and a script
/// used to open form after form. Now an account takes ten wrong passwords in five minutes, over
/// every form; then it cannot sign in, even with the right password, until they age out, and other
/// accounts are unaffected.
#[tokio::test]
async fn password_guessing_is_bounded_per_account_over_every_form() {
    let dev = DevIssuer::builder()
        .user("janedoe@test.com", "secret", [("operation", "addition")])
        .start()
        .await
        .unwrap();
    let script = browser();
    let open_form = || {
        let script = script.clone();
        let dev = &dev;
        async move {
            let page = authorize(dev, &script, &new_verifier(), &[]).await;
            request_id(&page.text().await.unwrap())
        }
    };
    for form in 0..2 {
        let id = open_form().await;
        for guess in 0..5 {
            let r = login(
                &dev,
                &script,
                &id,
                "JohnDoe@test.com",
                &format!("guess-{form}-{guess}"),
            )
            .await;
            assert_eq!(r.status(), 401);
        }
    }
    let id = open_form().await;
    let r = login(&dev, &script, &id, "johndoe@test.com", "secret").await;
    assert_eq!(r.status(), 429, "the right password after ten wrong ones");
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(
        login(&dev, &script, &id, "johndoe@test.com", "guess-again")
            .await
            .status(),
        429
    );
    assert_eq!(dev.logins(), 0);
    let r = login(&dev, &script, &id, "janedoe@test.com", "secret").await;
    assert_eq!(r.status(), 303, "another account signs in");
}
