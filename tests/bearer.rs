//! BearerAuthLayer + RequireScopeLayer around an axum route on a real loopback listener,
//! against the test issuer: the happy path, hostile inputs, key rotation, refetch storms and
//! JWKS outages.

mod support;

use std::time::Duration;

use a3_mcp_auth::TokenVerifier;
use a3_mcp_auth::jwks::JwksPolicy;
use a3_mcp_auth::testing::{SigningKey, TestIssuer, b64_json};
use a3_mcp_auth::verifier::VerifyError;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::resource::{RESOURCE, challenge, start};

#[tokio::test]
async fn happy_path_get_and_post() {
    let app = start(JwksPolicy::default()).await;
    let token = app.token().subject("johndoe").sign();

    let r = app.bearer(&token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "johndoe");

    let r = app
        .http
        .post(&app.url)
        .header("authorization", format!("bearer {token}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "johndoe");
}

#[tokio::test]
async fn metadata_is_served_where_the_challenge_points() {
    let app = start(JwksPolicy::default()).await;
    let r = app.http.get(&app.url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let expected = format!(
        "Bearer resource_metadata=\"{}\", scope=\"mcp:call\"",
        "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(challenge(&r), expected);
    // The app is not on port 8000 in tests; fetch the document from the same paths on it.
    let base = app.url.trim_end_matches("/mcp");
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let doc: Value = app
            .http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], RESOURCE, "{path}");
        assert_eq!(doc["authorization_servers"], json!([app.issuer.url()]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:call"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }
}

/// What a hostile request must get.
#[derive(Debug)]
enum Expect {
    /// 401, challenge without an error code.
    NoCredentials,
    /// 400 invalid_request.
    Malformed,
    /// 401 invalid_token.
    Invalid,
    /// 403 insufficient_scope.
    Scope,
}

struct Case {
    name: &'static str,
    headers: Vec<String>,
    expect: Expect,
}

fn case(name: &'static str, authorization: impl Into<String>, expect: Expect) -> Case {
    Case {
        name,
        headers: vec![authorization.into()],
        expect,
    }
}

fn hmac_token(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[tokio::test]
async fn hostile_inputs_are_refused_with_the_right_answer() {
    let app = start(JwksPolicy::default()).await;
    let attacker = TestIssuer::start().await;
    let good = app.token();
    let claims = good.claims();
    let header = good.header_value();
    let real_key = app.issuer.current_key();
    let jwk = real_key.public_jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let rogue = SigningKey::generate(app.issuer.current_kid());
    let spki = {
        // The public key as an attacker would find it: SubjectPublicKeyInfo DER.
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        pair.public_key().as_der().unwrap().as_ref().to_vec()
    };
    let valid = good.sign();
    let mut parts = valid.split('.');
    let (h, p, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let tampered_payload = {
        let mut c = claims.clone();
        c["sub"] = json!("admin");
        format!("{h}.{}.{s}", b64_json(&c))
    };

    let cases = vec![
        Case {
            name: "no Authorization header",
            headers: vec![],
            expect: Expect::NoCredentials,
        },
        case("Basic scheme", "Basic dXNlcjpwYXNz", Expect::NoCredentials),
        case("Digest scheme", "Digest username=\"x\"", Expect::NoCredentials),
        case("empty bearer", "Bearer", Expect::Malformed),
        case("bearer with only spaces", "Bearer    ", Expect::Malformed),
        case(
            "two tokens in one header",
            format!("Bearer {valid} {valid}"),
            Expect::Malformed,
        ),
        case(
            "comma-separated tokens",
            format!("Bearer {valid},{valid}"),
            Expect::Malformed,
        ),
        Case {
            name: "two Authorization headers",
            headers: vec![format!("Bearer {valid}"), format!("Bearer {valid}")],
            expect: Expect::Malformed,
        },
        case("non-base64 characters", "Bearer ab!c.d$f.g*h", Expect::Malformed),
        case("only padding", "Bearer ====", Expect::Malformed),
        case(
            "alg none",
            format!(
                "Bearer {}.{}.",
                b64_json(&json!({"alg":"none","typ":"JWT"})),
                b64_json(&claims)
            ),
            Expect::Invalid,
        ),
        case(
            "alg none with kid",
            format!(
                "Bearer {}.{}.",
                b64_json(&json!({"alg":"none","kid":header["kid"]})),
                b64_json(&claims)
            ),
            Expect::Invalid,
        ),
        case(
            "HS256 keyed with the modulus",
            format!(
                "Bearer {}",
                hmac_token(&n, &json!({"alg":"HS256","kid":header["kid"]}), &claims)
            ),
            Expect::Invalid,
        ),
        case(
            "HS256 keyed with a public key DER",
            format!(
                "Bearer {}",
                hmac_token(&spki, &json!({"alg":"HS256","kid":header["kid"]}), &claims)
            ),
            Expect::Invalid,
        ),
        case(
            "HS256 keyed with the JWK text",
            format!(
                "Bearer {}",
                hmac_token(jwk.to_string().as_bytes(), &json!({"alg":"HS256"}), &claims)
            ),
            Expect::Invalid,
        ),
        case(
            "wrong iss",
            format!(
                "Bearer {}",
                app.token().claim("iss", json!("https://evil.example")).sign()
            ),
            Expect::Invalid,
        ),
        case(
            "iss with a trailing slash",
            format!(
                "Bearer {}",
                app.token()
                    .claim("iss", json!(format!("{}/", app.issuer.url())))
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "no sub",
            format!("Bearer {}", app.token().without("sub").sign()),
            Expect::Invalid,
        ),
        case(
            "sender-constrained (cnf)",
            format!(
                "Bearer {}",
                app.token().claim("cnf", json!({"jkt": "abc"})).sign()
            ),
            Expect::Invalid,
        ),
        case(
            "no iss",
            format!("Bearer {}", app.token().without("iss").sign()),
            Expect::Invalid,
        ),
        case(
            "token for another resource (token passthrough)",
            format!("Bearer {}", app.issuer.token("http://127.0.0.1:9000/mcp").sign()),
            Expect::Invalid,
        ),
        case(
            "resource with a trailing slash",
            format!("Bearer {}", app.issuer.token("http://127.0.0.1:8000/mcp/").sign()),
            Expect::Invalid,
        ),
        case(
            "aud array without us",
            format!("Bearer {}", app.token().claim("aud", json!(["a", "b"])).sign()),
            Expect::Invalid,
        ),
        case(
            "no aud",
            format!("Bearer {}", app.token().without("aud").sign()),
            Expect::Invalid,
        ),
        case(
            "aud is a number",
            format!("Bearer {}", app.token().claim("aud", json!(42)).sign()),
            Expect::Invalid,
        ),
        case(
            "expired",
            format!("Bearer {}", app.token().expires_in(-120).sign()),
            Expect::Invalid,
        ),
        case(
            "no exp",
            format!("Bearer {}", app.token().without("exp").sign()),
            Expect::Invalid,
        ),
        case(
            "exp is a string",
            format!("Bearer {}", app.token().claim("exp", json!("tomorrow")).sign()),
            Expect::Invalid,
        ),
        case(
            "nbf in the future",
            format!(
                "Bearer {}",
                app.token()
                    .claim("nbf", json!(a3_mcp_auth::testing::unix_now() + 600))
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "iat in the future",
            format!(
                "Bearer {}",
                app.token()
                    .claim("iat", json!(a3_mcp_auth::testing::unix_now() + 600))
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "iat is a string",
            format!("Bearer {}", app.token().claim("iat", json!("now")).sign()),
            Expect::Invalid,
        ),
        case(
            "truncated: two segments",
            format!("Bearer {h}.{p}"),
            Expect::Invalid,
        ),
        case(
            "truncated signature",
            format!("Bearer {h}.{p}.{}", &s[..s.len() / 2]),
            Expect::Invalid,
        ),
        case("empty signature", format!("Bearer {h}.{p}."), Expect::Invalid),
        case(
            "five segments (JWE shape)",
            format!("Bearer {h}.{p}.{s}.{s}.{s}"),
            Expect::Invalid,
        ),
        case(
            "segments that are not base64url JSON",
            "Bearer abc.def.ghi",
            Expect::Invalid,
        ),
        case(
            "header is not JSON",
            format!("Bearer {}.{p}.{s}", URL_SAFE_NO_PAD.encode("not json")),
            Expect::Invalid,
        ),
        case(
            "claims are a JSON array",
            format!("Bearer {}", real_key.sign_raw(&header, &json!([1, 2, 3]))),
            Expect::Invalid,
        ),
        case(
            "tampered payload",
            format!("Bearer {tampered_payload}"),
            Expect::Invalid,
        ),
        case(
            "64 KiB token",
            format!("Bearer {}", "a".repeat(64 * 1024)),
            Expect::Invalid,
        ),
        case(
            "unknown kid",
            format!(
                "Bearer {}",
                app.token().header("kid", json!("no-such-key")).sign()
            ),
            Expect::Invalid,
        ),
        case(
            "kid with path characters",
            format!(
                "Bearer {}",
                app.token().header("kid", json!("../../../../etc/passwd")).sign()
            ),
            Expect::Invalid,
        ),
        case(
            "kid is a number",
            format!("Bearer {}", app.token().header("kid", json!(7)).sign()),
            Expect::Invalid,
        ),
        case(
            "jku pointing at another issuer",
            format!(
                "Bearer {}",
                attacker
                    .token(RESOURCE)
                    .claim("iss", json!(app.issuer.url()))
                    .header("jku", json!(attacker.jwks_uri()))
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "x5u pointing elsewhere",
            format!(
                "Bearer {}",
                attacker
                    .token(RESOURCE)
                    .claim("iss", json!(app.issuer.url()))
                    .header("x5u", json!(format!("{}/cert.pem", attacker.url())))
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "embedded jwk of a rogue key",
            format!(
                "Bearer {}",
                app.token()
                    .signed_by(&rogue)
                    .header("jwk", rogue.public_jwk())
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "our kid, rogue signature",
            format!("Bearer {}", app.token().signed_by(&rogue).sign()),
            Expect::Invalid,
        ),
        case(
            "crit header",
            format!(
                "Bearer {}",
                app.token()
                    .header("crit", json!(["exp"]))
                    .header("exp", json!(1))
                    .sign()
            ),
            Expect::Invalid,
        ),
        case(
            "RS512 in the header, RS256 key",
            format!("Bearer {}", app.token().header("alg", json!("RS512")).sign()),
            Expect::Invalid,
        ),
        case(
            "PS256 in the header",
            format!("Bearer {}", app.token().header("alg", json!("PS256")).sign()),
            Expect::Invalid,
        ),
        case(
            "token without mcp:call",
            format!("Bearer {}", app.token().scope("openid profile").sign()),
            Expect::Scope,
        ),
        case(
            "empty scope",
            format!("Bearer {}", app.token().scope("").sign()),
            Expect::Scope,
        ),
        case(
            "scope as a look-alike",
            format!("Bearer {}", app.token().scope("mcp:cal1 MCP:CALL").sign()),
            Expect::Scope,
        ),
    ];
    assert!(cases.len() >= 30);

    for c in &cases {
        let mut request = app.http.get(&app.url);
        for h in &c.headers {
            request = request.header("authorization", h);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let ch = challenge(&r);
        let body = r.text().await.unwrap();
        let (want_status, want_error) = match c.expect {
            Expect::NoCredentials => (401, None),
            Expect::Malformed => (400, Some("invalid_request")),
            Expect::Invalid => (401, Some("invalid_token")),
            Expect::Scope => (403, Some("insufficient_scope")),
        };
        assert_eq!(status, want_status, "{}: {ch} {body}", c.name);
        assert!(ch.starts_with("Bearer "), "{}: {ch}", c.name);
        assert!(
            ch.contains(&format!("resource_metadata=\"{}\"", app.metadata_url)),
            "{}: {ch}",
            c.name
        );
        assert!(ch.contains("scope=\"mcp:call\""), "{}: {ch}", c.name);
        match want_error {
            None => assert!(!ch.contains("error="), "{}: {ch}", c.name),
            Some(e) => assert!(ch.contains(&format!("error=\"{e}\"")), "{}: {ch}", c.name),
        }
        // Nothing of the presented token comes back.
        for h in &c.headers {
            if let Some(token) = h.split(' ').nth(1).filter(|t| t.len() > 16) {
                for part in token.split('.').filter(|p| p.len() > 16) {
                    assert!(
                        !ch.contains(part) && !body.contains(part),
                        "{}: token echoed",
                        c.name
                    );
                }
            }
        }
    }
    assert_eq!(
        attacker.jwks_fetch_count(),
        0,
        "keys are never fetched from token headers"
    );
}

#[tokio::test]
async fn tokens_elsewhere_than_the_header_are_ignored() {
    let app = start(JwksPolicy::default()).await;
    let token = app.token().sign();
    let r = app
        .http
        .get(format!("{}?access_token={token}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!challenge(&r).contains("error="));
    let r = app
        .http
        .post(&app.url)
        .form(&[("access_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!challenge(&r).contains("error="));
}

#[tokio::test]
async fn accepted_variants() {
    let app = start(JwksPolicy::default()).await;
    for (name, token) in [
        (
            "aud array containing us",
            app.token().claim("aud", json!(["other", RESOURCE])).sign(),
        ),
        (
            "scp array instead of scope",
            app.token()
                .without("scope")
                .claim("scp", json!(["mcp:call"]))
                .sign(),
        ),
        (
            "scope among others",
            app.token().scope("openid mcp:call profile").sign(),
        ),
        ("expired within the leeway", app.token().expires_in(-5).sign()),
        (
            "no kid with a single key",
            app.token().header("kid", Value::Null).sign(),
        ),
    ] {
        assert_eq!(app.bearer(&token).await.status(), 200, "{name}");
    }
}

#[tokio::test]
async fn a_rotated_key_is_accepted_on_first_use() {
    let app = start(JwksPolicy::default()).await;
    let fetches = app.issuer.jwks_fetch_count();
    let kid = app.issuer.rotate();
    let token = app.token().sign();
    assert!(token.len() > 10 && app.issuer.current_kid() == kid);
    assert_eq!(app.bearer(&token).await.status(), 200);
    assert_eq!(app.issuer.jwks_fetch_count(), fetches + 1);
}

#[tokio::test]
async fn a_retired_key_stops_working_even_for_cached_tokens() {
    let app = start(JwksPolicy::default().with_refetch_cooldown(Duration::ZERO)).await;
    let old_token = app.token().sign();
    assert_eq!(app.bearer(&old_token).await.status(), 200); // now cached
    let old_kid = app.issuer.current_kid();
    app.issuer.rotate();
    app.issuer.retire(&old_kid);
    // A token with the new kid makes the store refetch and notice that the old key is gone.
    assert_eq!(app.bearer(&app.token().sign()).await.status(), 200);
    let r = app.bearer(&old_token).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"));
}

#[tokio::test]
async fn unknown_kid_storm_costs_one_fetch_per_cooldown() {
    let app = start(JwksPolicy::default().with_refetch_cooldown(Duration::from_secs(60))).await;
    let before = app.issuer.jwks_fetch_count();
    let tokens: Vec<String> = (0..1000)
        .map(|i| app.token().header("kid", json!(format!("unknown-{i}"))).sign())
        .collect();
    let responses = futures_util::future::join_all(tokens.iter().map(|t| app.bearer(t))).await;
    assert!(responses.iter().all(|r| r.status() == 401));
    let after = app.issuer.jwks_fetch_count();
    assert_eq!(
        after - before,
        1,
        "1000 unknown kids caused {} fetches",
        after - before
    );
}

#[tokio::test]
async fn jwks_outage_keeps_known_keys_and_answers_503_for_unknown_ones() {
    let app = start(JwksPolicy::default().with_refetch_cooldown(Duration::ZERO)).await;
    app.issuer.set_failing(true);
    // Known key: still verifies (not cached before, so this is a real verification).
    let r = app.bearer(&app.token().subject("during-outage").sign()).await;
    assert_eq!(r.status(), 200);
    // A new key cannot be checked while the issuer is down: 503, not 401 and never 500.
    app.issuer.rotate();
    let r = app.bearer(&app.token().sign()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // When the issuer is back, the new key works.
    app.issuer.set_failing(false);
    assert_eq!(app.bearer(&app.token().sign()).await.status(), 200);
}

#[tokio::test]
async fn refresh_follows_cache_control_max_age() {
    let issuer = TestIssuer::start().await;
    issuer.set_jwks_max_age(Some(1));
    let policy = JwksPolicy::default().with_refresh_bounds(Duration::from_secs(1), Duration::from_secs(5));
    let verifier = issuer.verifier_with(RESOURCE, policy).await;
    let initial = issuer.jwks_fetch_count();
    let mut waited = Duration::ZERO;
    while issuer.jwks_fetch_count() < initial + 2 && waited < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(
        issuer.jwks_fetch_count() >= initial + 2,
        "no scheduled refresh happened"
    );
    assert!(verifier.verify(&issuer.token(RESOURCE).sign()).await.is_ok());
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let issuer = TestIssuer::start().await;
    issuer.set_advertised_issuer(Some("https://a3.mekarge.com/auth/someone-else"));
    let e = a3_mcp_auth::JwtVerifier::builder(issuer.url(), RESOURCE)
        .discover()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, a3_mcp_auth::jwt::JwtVerifierError::Discovery(a3_mcp_auth::discovery::DiscoveryError::IssuerMismatch { found, .. }) if found.contains("someone-else")),
        "{e}"
    );
    // A3's own validator strips one trailing slash; so do we, and only that.
    issuer.set_advertised_issuer(Some(&format!("{}/", issuer.url())));
    assert!(
        a3_mcp_auth::JwtVerifier::builder(issuer.url(), RESOURCE)
            .discover()
            .await
            .is_ok()
    );
    issuer.set_advertised_issuer(Some(&format!("{}//", issuer.url())));
    assert!(
        a3_mcp_auth::JwtVerifier::builder(issuer.url(), RESOURCE)
            .discover()
            .await
            .is_err()
    );
    issuer.set_advertised_issuer(None);
    let other = format!("{}/tenant", issuer.url());
    // The document at {other}/.well-known/... does not exist; a lookalike URL fails cleanly.
    let e = a3_mcp_auth::JwtVerifier::builder(other, RESOURCE)
        .discover()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 404"), "{e}");
    let e = a3_mcp_auth::JwtVerifier::builder("http://example.com", RESOURCE)
        .discover()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

/// Random bytes and strings thrown at the header parser and the verifier: errors, never panics.
#[tokio::test]
async fn garbage_never_panics() {
    let app = start(JwksPolicy::default()).await;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"abcXYZ019-_.~+/=!\"' \t{}[]:,\\%\x7f";
    let valid = app.token().sign();
    for i in 0..3000 {
        let len = (next() % 300) as usize;
        let mut token: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        if i % 3 == 0 {
            // Mutate a valid token instead.
            token = valid.clone().into_bytes();
            for _ in 0..=(next() % 4) {
                let at = (next() % token.len() as u64) as usize;
                token[at] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
        }
        let token = String::from_utf8_lossy(&token).into_owned();
        match app.verifier.verify(&token).await {
            Ok(_) => assert_eq!(token, valid),
            Err(VerifyError::Invalid(_) | VerifyError::Unrecognized) => {}
            Err(e) => panic!("unexpected error for garbage: {e:?}"),
        }
    }
    // And over HTTP: header values with bytes outside visible ASCII (obs-text, which HTTP
    // allows in field values) are malformed requests.
    for i in 0..100u8 {
        let mut value = b"Bearer ".to_vec();
        value.extend(std::iter::repeat_n(0x80 + (i % 0x7f), usize::from(i % 5) + 1));
        value.extend_from_slice(valid.as_bytes());
        let value = reqwest::header::HeaderValue::from_bytes(&value).unwrap();
        let r = app
            .http
            .get(&app.url)
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(challenge(&r).contains("error=\"invalid_request\""));
    }
}

#[tokio::test]
async fn the_key_must_allow_the_header_algorithm() {
    let issuer = TestIssuer::start().await;
    let verifier = a3_mcp_auth::JwtVerifier::builder(issuer.url(), RESOURCE)
        .algorithms([jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::RS512])
        .discover()
        .await
        .unwrap();
    // RS512 is allowed, but the published key says RS256.
    let token = issuer.token(RESOURCE).header("alg", json!("RS512")).sign();
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        VerifyError::invalid("signing algorithm does not match the key")
    );
    assert!(verifier.verify(&issuer.token(RESOURCE).sign()).await.is_ok());
    // HMAC can never be allowed.
    let e = a3_mcp_auth::JwtVerifier::builder(issuer.url(), RESOURCE)
        .algorithms([jsonwebtoken::Algorithm::HS256])
        .discover()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HS256"), "{e}");
}

#[tokio::test]
async fn a_request_dropped_mid_fetch_does_not_cancel_the_refetch() {
    let app = start(JwksPolicy::default().with_refetch_cooldown(Duration::from_secs(60))).await;
    app.issuer.rotate();
    app.issuer.set_jwks_delay(Duration::from_millis(400));
    let token = app.token().sign();
    // The caller gives up long before the JWKS answers.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), app.verifier.verify(&token))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.issuer.set_jwks_delay(Duration::ZERO);
    let fetches = app.issuer.jwks_fetch_count();
    // The detached fetch completed and installed the new key: no further fetch is needed, and
    // the cooldown (60 s) would forbid one anyway.
    assert!(app.verifier.verify(&token).await.is_ok());
    assert_eq!(app.issuer.jwks_fetch_count(), fetches);
}

#[tokio::test]
async fn a_key_replaced_under_its_kid_invalidates_cached_tokens() {
    let app = start(JwksPolicy::default().with_refetch_cooldown(Duration::ZERO)).await;
    let old = app.token().sign();
    assert_eq!(app.bearer(&old).await.status(), 200); // cached
    app.issuer.replace_current_key();
    // Any unknown kid makes the store refetch; it sees new material under the old kid.
    assert_eq!(
        app.bearer(&app.token().header("kid", json!("nope")).sign())
            .await
            .status(),
        401
    );
    assert_eq!(app.bearer(&old).await.status(), 401);
    assert_eq!(app.bearer(&app.token().sign()).await.status(), 200);
}
