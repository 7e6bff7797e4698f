//! A loopback issuer for tests: RSA keys, discovery, JWKS, and tokens with any claims.
//!
//! Enabled by the `testing` feature. It is what this crate's own tests run against, and it is
//! meant for yours: start it, point a [`JwtVerifier`] (or the whole server)
//! at [`TestIssuer::url`], mint tokens, rotate keys, take it down.
//!
//! ```
//! use a3_mcp_auth::testing::TestIssuer;
//! use a3_mcp_auth::{BearerAuthLayer, Claims, ProtectedResourceMetadata, RequireScopeLayer};
//! use axum::{Extension, Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let issuer = TestIssuer::start().await;
//! let resource = "http://127.0.0.1:8000/mcp";
//! let metadata = ProtectedResourceMetadata::new(resource).unwrap()
//!     .with_authorization_server(issuer.url())
//!     .with_scopes_supported(["mcp:call"]);
//! let app = Router::new()
//!     .route("/mcp", get(|Extension(c): Extension<Claims>| async move {
//!         c.subject().unwrap_or_default().to_owned()
//!     }))
//!     .layer(RequireScopeLayer::new(["mcp:call"], metadata.challenge()))
//!     .layer(BearerAuthLayer::new(issuer.verifier(resource).await, metadata.challenge()));
//!
//! let token = issuer.token(resource).subject("johndoe").scope("mcp:call").sign();
//! let request = http::Request::get("/mcp")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! assert_eq!(app.clone().oneshot(request).await.unwrap().status(), 200);
//!
//! let no_scope = issuer.token(resource).scope("other").sign();
//! let request = http::Request::get("/mcp")
//!     .header("authorization", format!("Bearer {no_scope}"))
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! assert_eq!(app.oneshot(request).await.unwrap().status(), 403);
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

mod network;
pub use network::TestNetwork;

use crate::jwks::JwksPolicy;
use crate::jwt::JwtVerifier;

/// An RSA signing key of the test issuer.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    pair: Arc<KeyPair>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub fn generate(kid: impl Into<String>) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        SigningKey {
            kid: kid.into(),
            pair: Arc::new(pair),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty`, `n`, `e`, `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// Signs `header.claims` with RS256, whatever `header` says (for hostile-token tests).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// Base64url (no padding) of the JSON text of `value`.
pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

struct State_ {
    url: String,
    keys: Mutex<Vec<SigningKey>>,
    failing: AtomicBool,
    jwks_max_age: Mutex<Option<u64>>,
    jwks_delay: Mutex<std::time::Duration>,
    advertised_issuer: Mutex<Option<String>>,
    jwks_fetches: AtomicU64,
    next_kid: AtomicU64,
}

/// An OpenID Connect issuer on a loopback port that serves discovery and a JWKS and mints
/// A3-shaped access tokens (RS256, `iss`, `aud`, `sub`, `client_id`, space-delimited `scope`).
///
/// The server stops when the `TestIssuer` is dropped. See the [module docs](self) for testing an
/// axum service with it.
pub struct TestIssuer {
    state: Arc<State_>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("url", &self.state.url)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    /// Starts an issuer on `127.0.0.1` with a random port and one signing key.
    ///
    /// # Panics
    /// If no loopback port can be bound: this is a test helper.
    pub async fn start() -> Self {
        Self::start_with(Router::new()).await
    }

    /// Like [`TestIssuer::start`], with extra routes served beside discovery and the JWKS
    /// (the development issuer adds its login and token endpoints this way).
    pub async fn start_with(extra: Router) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        Self::serve(listener, addr, extra)
    }

    /// Serves on an already bound listener (to pick the port yourself).
    pub fn serve(listener: tokio::net::TcpListener, addr: SocketAddr, extra: Router) -> Self {
        Self::serve_with(listener, addr, |_| extra)
    }

    /// Like [`TestIssuer::serve`], with extra routes built from a handle on the issuer's state,
    /// so that they can mint tokens with its keys (the development issuer's token endpoint).
    #[cfg_attr(not(feature = "dev-issuer"), allow(dead_code))]
    pub(crate) fn serve_with(
        listener: tokio::net::TcpListener,
        addr: SocketAddr,
        extra: impl FnOnce(IssuerHandle) -> Router,
    ) -> Self {
        let state = Arc::new(State_ {
            url: format!("http://{addr}"),
            keys: Mutex::new(vec![SigningKey::generate("key-1")]),
            failing: AtomicBool::new(false),
            jwks_max_age: Mutex::new(None),
            jwks_delay: Mutex::new(std::time::Duration::ZERO),
            advertised_issuer: Mutex::new(None),
            jwks_fetches: AtomicU64::new(0),
            next_kid: AtomicU64::new(2),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state.clone())
            .merge(extra(IssuerHandle { state: state.clone() }));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIssuer { state, addr, server }
    }

    /// The issuer URL, `http://127.0.0.1:{port}` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.url)
    }

    /// The `kid` new tokens are signed with.
    pub fn current_kid(&self) -> String {
        self.current_key().kid
    }

    /// The key new tokens are signed with.
    pub fn current_key(&self) -> SigningKey {
        self.state
            .keys
            .lock()
            .unwrap()
            .last()
            .expect("at least one key")
            .clone()
    }

    /// Publishes a new key and signs with it from now on; older keys stay published until
    /// [`TestIssuer::retire`]. Returns the new `kid`.
    pub fn rotate(&self) -> String {
        let kid = format!("key-{}", self.state.next_kid.fetch_add(1, Ordering::Relaxed));
        self.state
            .keys
            .lock()
            .unwrap()
            .push(SigningKey::generate(kid.clone()));
        kid
    }

    /// Replaces the current key with new key material under the same `kid` (a misbehaving or
    /// compromised issuer). Returns that `kid`.
    pub fn replace_current_key(&self) -> String {
        let mut keys = self.state.keys.lock().unwrap();
        let current = keys.last_mut().expect("at least one key");
        *current = SigningKey::generate(current.kid.clone());
        current.kid.clone()
    }

    /// Delays every JWKS response by `delay` (to test requests cancelled mid-fetch).
    pub fn set_jwks_delay(&self, delay: std::time::Duration) {
        *self.state.jwks_delay.lock().unwrap() = delay;
    }

    /// Makes the discovery document claim another `issuer` (`None`: the real one).
    pub fn set_advertised_issuer(&self, issuer: Option<&str>) {
        *self.state.advertised_issuer.lock().unwrap() = issuer.map(str::to_owned);
    }

    /// Stops publishing the key `kid` (the current key cannot be retired).
    pub fn retire(&self, kid: &str) {
        let mut keys = self.state.keys.lock().unwrap();
        let last = keys.len() - 1;
        let mut i = 0;
        keys.retain(|k| {
            i += 1;
            i - 1 == last || k.kid != kid
        });
    }

    /// While `true`, discovery and the JWKS answer 503.
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// The `Cache-Control: max-age` the JWKS is served with (`None`: no header).
    pub fn set_jwks_max_age(&self, seconds: Option<u64>) {
        *self.state.jwks_max_age.lock().unwrap() = seconds;
    }

    /// How many times the JWKS was requested.
    pub fn jwks_fetch_count(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// A verifier of this issuer's tokens for `resource`, with the default JWKS policy.
    pub async fn verifier(&self, resource: &str) -> JwtVerifier {
        self.verifier_with(resource, JwksPolicy::default()).await
    }

    /// A verifier of this issuer's tokens for `resource`, with `policy`.
    pub async fn verifier_with(&self, resource: &str, policy: JwksPolicy) -> JwtVerifier {
        JwtVerifier::builder(self.url(), resource)
            .jwks_policy(policy)
            .discover()
            .await
            .expect("the test issuer is reachable")
    }

    /// A token for `audience` with A3's claims: `iss`, `aud`, `sub` = `test-user`,
    /// `client_id` = `test-client`, `scope` = `mcp:call`, `iat`, `exp` in five minutes, `jti`.
    pub fn token(&self, audience: &str) -> TokenBuilder {
        IssuerHandle {
            state: self.state.clone(),
        }
        .token(audience)
    }
}

/// What routes added by [`TestIssuer::serve_with`] may use: the issuer URL and its keys.
///
/// It holds no reference to the server task, so routes can keep it without keeping the server
/// alive after the [`TestIssuer`] is dropped.
#[derive(Clone)]
pub(crate) struct IssuerHandle {
    state: Arc<State_>,
}

impl IssuerHandle {
    /// The issuer URL (see [`TestIssuer::url`]).
    #[cfg_attr(not(feature = "dev-issuer"), allow(dead_code))]
    pub(crate) fn url(&self) -> &str {
        &self.state.url
    }

    /// See [`TestIssuer::token`].
    pub(crate) fn token(&self, audience: &str) -> TokenBuilder {
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.state.url));
        claims.insert("aud".into(), json!(audience));
        claims.insert("sub".into(), json!("test-user"));
        claims.insert("client_id".into(), json!("test-client"));
        claims.insert("scope".into(), json!("mcp:call"));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 300));
        claims.insert("jti".into(), json!(random_id()));
        let key = self
            .state
            .keys
            .lock()
            .unwrap()
            .last()
            .expect("at least one key")
            .clone();
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": key.kid});
        TokenBuilder { key, header, claims }
    }
}

/// A token being minted. See [`TestIssuer::token`].
#[derive(Debug, Clone)]
pub struct TokenBuilder {
    key: SigningKey,
    header: Value,
    claims: Map<String, Value>,
}

impl TokenBuilder {
    /// Sets `sub`.
    pub fn subject(self, sub: &str) -> Self {
        self.claim("sub", json!(sub))
    }

    /// Sets `client_id`.
    pub fn client_id(self, client_id: &str) -> Self {
        self.claim("client_id", json!(client_id))
    }

    /// Sets `scope` (space-delimited).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", json!(scope))
    }

    /// Sets `exp` to now + `seconds` (negative for an expired token).
    pub fn expires_in(self, seconds: i64) -> Self {
        self.claim("exp", json!(unix_now() as i64 + seconds))
    }

    /// Sets any claim.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets a header parameter (e.g. `jku`, `crit`, or a different `kid`).
    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header[name] = value;
        self
    }

    /// Signs with `key` instead of the issuer's current key (its `kid` goes into the header).
    pub fn signed_by(mut self, key: &SigningKey) -> Self {
        self.header["kid"] = json!(key.kid);
        self.key = key.clone();
        self
    }

    /// The claims as they stand.
    pub fn claims(&self) -> Value {
        Value::Object(self.claims.clone())
    }

    /// The header as it stands.
    pub fn header_value(&self) -> Value {
        self.header.clone()
    }

    /// The signed JWT.
    pub fn sign(&self) -> String {
        self.key
            .sign_raw(&self.header, &Value::Object(self.claims.clone()))
    }
}

async fn discovery(State(state): State<Arc<State_>>) -> Response {
    if state.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let url = &state.url;
    let advertised = state.advertised_issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": advertised.as_deref().unwrap_or(url),
        "jwks_uri": format!("{url}/jwks"),
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "revocation_endpoint": format!("{url}/revoke"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

async fn jwks(State(state): State<Arc<State_>>) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = *state.jwks_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if state.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys: Vec<Value> = state
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(SigningKey::public_jwk)
        .collect();
    let mut response = axum::Json(json!({ "keys": keys })).into_response();
    if let Some(age) = *state.jwks_max_age.lock().unwrap() {
        let value = HeaderValue::from_str(&format!("public, max-age={age}")).expect("ascii");
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Seconds since the Unix epoch, for time claims such as `nbf` and `iat`.
///
/// ```
/// use a3_mcp_auth::TokenVerifier;
/// use a3_mcp_auth::testing::{TestIssuer, unix_now};
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::start().await;
/// let resource = "http://127.0.0.1:8000/mcp";
/// let not_yet_valid = issuer.token(resource).claim("nbf", json!(unix_now() + 600)).sign();
/// assert!(issuer.verifier(resource).await.verify(&not_yet_valid).await.is_err());
/// # }
/// ```
pub use crate::oauth::unix_now;

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}
