//! An embedded development issuer that stands in for Mekarge A3 in the authorization code flow.
//!
//! Enabled by the `dev-issuer` feature. It behaves like A3 (and like `oidc-provider`, which the
//! crate's research uses as A3's stand-in) for the flow the DCR bridge drives:
//!
//! | route | what it does |
//! |---|---|
//! | `GET /.well-known/openid-configuration`, `GET /jwks` | discovery and keys, served by [`TestIssuer`] |
//! | `GET /authorize` | checks the request ([RFC 6749 §4.1.1]): client, exact redirect URI, PKCE S256 ([RFC 7636 §4.3]), `resource` ([RFC 8707 §2]), `scope`; then shows the sign-in form, or approves at once when the browser already has a session |
//! | `POST /login` | only from the issuer's own page (`Origin`, `Sec-Fetch-Site`: no login CSRF); checks the e-mail and password (5 wrong ones withdraw the form, 10 in 5 minutes lock the account until they age out), sets the session cookie, redirects with `code`, `state` and `iss` ([RFC 9207 §2]) |
//! | `POST /token` | `authorization_code` and `refresh_token` grants ([RFC 6749 §4.1.3], [§6]), `client_secret_post` only; RS256 access tokens with `aud` = resource, `scope` and the context claim; refresh tokens rotate, and a rotated or replayed one revokes its grant |
//! | `POST /revoke` | revocation of refresh tokens ([RFC 7009 §2]) |
//!
//! Users, clients, the resource and its scopes come from the [builder](DevIssuerBuilder); by
//! default they are the quickstart's: user [`DEFAULT_USER_EMAIL`] / [`DEFAULT_USER_PASSWORD`]
//! holding `operation=addition`, one confidential client [`DEFAULT_CLIENT_ID`] (random secret)
//! redirecting to [`DEFAULT_REDIRECT_URI`], resource `http://127.0.0.1:8000/mcp`, scope
//! [`DEFAULT_SCOPE`]. It only ever listens on a loopback address, and every page it shows says
//! in a banner that it is not Mekarge A3.
//!
//! It is a development tool: everything lives in memory and disappears with the [`DevIssuer`].
//!
//! ```
//! use a3_mcp_auth::TokenVerifier;
//! use a3_mcp_auth::dev_issuer::DevIssuer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dev = DevIssuer::builder()
//!     .user("janedoe@test.com", "secret", [("operation", "addition"), ("operation", "multiplication")])
//!     .start()
//!     .await
//!     .unwrap();
//!
//! // A browser (here: reqwest with a cookie jar) goes through the code flow.
//! let browser = reqwest::Client::builder()
//!     .cookie_store(true)
//!     .redirect(reqwest::redirect::Policy::none())
//!     .build()
//!     .unwrap();
//! let verifier = "a-code-verifier-of-at-least-43-characters-0123456789";
//! let page = browser
//!     .get(dev.authorization_url("xyz", &DevIssuer::pkce_challenge(verifier)))
//!     .send()
//!     .await
//!     .unwrap()
//!     .text()
//!     .await
//!     .unwrap();
//! let request_id = page.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap();
//! let redirect = browser
//!     .post(format!("{}/login", dev.url()))
//!     .form(&[("request", request_id), ("email", "janedoe@test.com"), ("password", "secret")])
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(redirect.status(), 303);
//! let location = url::Url::parse(redirect.headers()["location"].to_str().unwrap()).unwrap();
//! let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
//!
//! // The server behind the redirect URI redeems the code with client_secret_post.
//! let tokens: serde_json::Value = browser
//!     .post(format!("{}/token", dev.url()))
//!     .form(&[
//!         ("grant_type", "authorization_code"),
//!         ("code", code.as_str()),
//!         ("redirect_uri", dev.redirect_uri()),
//!         ("code_verifier", verifier),
//!         ("client_id", dev.client_id()),
//!         ("client_secret", dev.client_secret()),
//!     ])
//!     .send()
//!     .await
//!     .unwrap()
//!     .json()
//!     .await
//!     .unwrap();
//!
//! let claims = dev.issuer().verifier(dev.resource()).await
//!     .verify(tokens["access_token"].as_str().unwrap())
//!     .await
//!     .unwrap();
//! assert!(claims.has_scope("mcp:call"));
//! assert_eq!(claims.get("contexts").unwrap()["operation"], serde_json::json!(["addition", "multiplication"]));
//! # }
//! ```
//!
//! [RFC 6749 §4.1.1]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
//! [RFC 6749 §4.1.3]: https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3
//! [§6]: https://www.rfc-editor.org/rfc/rfc6749#section-6
//! [RFC 7636 §4.3]: https://www.rfc-editor.org/rfc/rfc7636#section-4.3
//! [RFC 8707 §2]: https://www.rfc-editor.org/rfc/rfc8707#section-2
//! [RFC 9207 §2]: https://www.rfc-editor.org/rfc/rfc9207#section-2
//! [RFC 7009 §2]: https://www.rfc-editor.org/rfc/rfc7009#section-2

// One module per endpoint, as in the table above. `builder` configures and starts the issuer,
// `state` is what the endpoints share, `pages` the HTML they show; `counters` and `admin` are
// the `DevIssuer` methods that tests use to watch and steer a running issuer. The OAuth helpers
// the endpoints have in common with the DCR bridge are in `crate::oauth`.
mod admin;
mod authorize;
mod builder;
mod counters;
mod login;
mod pages;
mod revoke;
mod state;
mod token;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use url::Url;

pub use builder::DevIssuerBuilder;

use crate::testing::TestIssuer;
use state::Shared;

/// The id of the client a default [`DevIssuer`] knows (its secret is random): what the server's
/// `CLIENT_ID` becomes.
///
/// ```
/// use a3_mcp_auth::config::A3Config;
/// use a3_mcp_auth::dev_issuer::{DEFAULT_CLIENT_ID, DevIssuer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The example server keeps the default id, with a secret and a callback of its own.
/// let dev = DevIssuer::builder()
///     .client(DEFAULT_CLIENT_ID, "a-secret-of-its-own", ["http://127.0.0.1:8000/auth/callback"])
///     .start()
///     .await
///     .unwrap();
/// let config = A3Config::builder()
///     .issuer_url(dev.url())
///     .client(DEFAULT_CLIENT_ID, dev.client_secret())
///     .build()
///     .unwrap();
/// assert_eq!(config.client_id(), Some(dev.client_id()));
/// # }
/// ```
pub const DEFAULT_CLIENT_ID: &str = "dev-proxy-client";

/// The redirect URI of the default client: the quickstart's loopback callback.
///
/// ```
/// use a3_mcp_auth::dev_issuer::{DEFAULT_REDIRECT_URI, DevIssuer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A client that accepts the IPv6 loopback callback too.
/// let dev = DevIssuer::builder()
///     .client("proxy", "s3cret", [DEFAULT_REDIRECT_URI, "http://[::1]:8000/auth/callback"])
///     .start()
///     .await
///     .unwrap();
/// assert_eq!(dev.redirect_uri(), DEFAULT_REDIRECT_URI);
/// # }
/// ```
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:8000/auth/callback";

/// The quickstart's user, known to a default [`DevIssuer`] (with the context `operation=addition`).
///
/// ```
/// use a3_mcp_auth::dev_issuer::{DEFAULT_USER_EMAIL, DevIssuer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dev = DevIssuer::start().await.unwrap();
/// // An A3 admin grants the quickstart user a second context ("Next Explorations").
/// assert!(dev.set_user_contexts(
///     DEFAULT_USER_EMAIL,
///     [("operation", "addition"), ("operation", "multiplication")],
/// ));
/// # }
/// ```
pub const DEFAULT_USER_EMAIL: &str = "johndoe@test.com";

/// The quickstart user's password.
///
/// ```
/// use a3_mcp_auth::dev_issuer::{DEFAULT_USER_EMAIL, DEFAULT_USER_PASSWORD, DevIssuer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dev = DevIssuer::start().await.unwrap();
/// let browser = reqwest::Client::builder()
///     .cookie_store(true)
///     .redirect(reqwest::redirect::Policy::none())
///     .build()
///     .unwrap();
/// let challenge = DevIssuer::pkce_challenge("a-code-verifier-of-at-least-43-characters-0123456789");
/// let form = browser.get(dev.authorization_url("xyz", &challenge)).send().await.unwrap();
/// let form = form.text().await.unwrap();
/// let request = form.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap();
///
/// // The quickstart user signs in on the form; the browser goes back to the client with a code.
/// let signed_in = browser
///     .post(format!("{}/login", dev.url()))
///     .form(&[("request", request), ("email", DEFAULT_USER_EMAIL), ("password", DEFAULT_USER_PASSWORD)])
///     .send()
///     .await
///     .unwrap();
/// assert_eq!(signed_in.status(), 303);
/// assert!(signed_in.headers()["location"].to_str().unwrap().contains("code="));
/// # }
/// ```
pub const DEFAULT_USER_PASSWORD: &str = "secret";

/// The scope a default [`DevIssuer`] grants: the one the MCP server requires.
///
/// ```
/// use a3_mcp_auth::dev_issuer::{DEFAULT_SCOPE, DevIssuer};
/// use a3_mcp_auth::{ProtectedResourceMetadata, RequireScopeLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dev = DevIssuer::builder().scopes([DEFAULT_SCOPE, "mcp:admin"]).start().await.unwrap();
/// let metadata = ProtectedResourceMetadata::new(dev.resource())
///     .unwrap()
///     .with_authorization_server(dev.url())
///     .with_scopes_supported(dev.scopes().to_vec());
/// let require_call = RequireScopeLayer::new([DEFAULT_SCOPE], metadata.challenge());
/// # let _ = require_call;
/// # }
/// ```
pub const DEFAULT_SCOPE: &str = "mcp:call";

/// The development issuer could not start.
///
/// ```
/// use a3_mcp_auth::dev_issuer::{DevIssuer, DevIssuerError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = DevIssuer::builder().bind(([0, 0, 0, 0], 0)).start().await.unwrap_err();
/// assert!(matches!(err, DevIssuerError::NotLoopback(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevIssuerError {
    /// The address is not a loopback address; the development issuer never listens elsewhere.
    #[error("the development issuer only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listener's address could not be read.
    #[error("cannot read the listener's address: {0}")]
    Listener(std::io::Error),
    /// A configured value is unusable.
    #[error("{what} is invalid: {reason}")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// A running development issuer. See the [module docs](self) for the routes and a full code flow.
///
/// ```
/// use a3_mcp_auth::dev_issuer::DevIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dev = DevIssuer::start().await.unwrap();
/// eprintln!("{}", dev.banner());
/// let discovery: serde_json::Value =
///     reqwest::get(format!("{}/.well-known/openid-configuration", dev.url())).await.unwrap().json().await.unwrap();
/// assert_eq!(discovery["token_endpoint"], format!("{}/token", dev.url()));
/// # }
/// ```
pub struct DevIssuer {
    issuer: TestIssuer,
    shared: Arc<Shared>,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("url", &self.url())
            .field("client_id", &self.client_id())
            .field("resource", &self.resource())
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// A builder with the quickstart's defaults.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().start().await.unwrap();
    /// assert_eq!(dev.client_id(), "dev-proxy-client");
    /// # }
    /// ```
    pub fn builder() -> DevIssuerBuilder {
        DevIssuerBuilder::default()
    }

    /// Starts an issuer with every default (`DevIssuer::builder().start()`).
    ///
    /// # Errors
    /// See [`DevIssuerBuilder::start`].
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.resource(), "http://127.0.0.1:8000/mcp");
    /// # }
    /// ```
    pub async fn start() -> Result<DevIssuer, DevIssuerError> {
        DevIssuerBuilder::default().start().await
    }

    /// The issuer URL, `http://127.0.0.1:{port}`: what `ISSUER_URL` is set to.
    ///
    /// ```
    /// use a3_mcp_auth::config::A3Config;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// let config = A3Config::builder().issuer_url(dev.url()).build().unwrap();
    /// assert_eq!(config.issuer(), dev.url());
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        self.issuer.url()
    }

    /// The underlying [`TestIssuer`]: keys, rotation, a [`JwtVerifier`](crate::jwt::JwtVerifier) for
    /// its tokens, or hand-made tokens.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let token = dev.issuer().token(dev.resource()).subject("johndoe@test.com").sign();
    /// assert_eq!(token.split('.').count(), 3);
    /// # }
    /// ```
    pub fn issuer(&self) -> &TestIssuer {
        &self.issuer
    }

    /// The first configured client's id ([`DEFAULT_CLIENT_ID`] by default): `CLIENT_ID`.
    ///
    /// ```
    /// use a3_mcp_auth::config::A3Config;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// // The server signs in at the development issuer as its predefined client.
    /// let config = A3Config::builder()
    ///     .issuer_url(dev.url())
    ///     .client(dev.client_id(), dev.client_secret())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.client_id(), Some("dev-proxy-client"));
    /// # }
    /// ```
    pub fn client_id(&self) -> &str {
        &self.shared.config.clients[0].id
    }

    /// The first configured client's secret (random by default): `CLIENT_SECRET`.
    ///
    /// ```
    /// use a3_mcp_auth::config::A3Config;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// let config = A3Config::builder()
    ///     .issuer_url(dev.url())
    ///     .client(dev.client_id(), dev.client_secret())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.client_secret(), Some(dev.client_secret()));
    /// # }
    /// ```
    pub fn client_secret(&self) -> &str {
        &self.shared.config.clients[0].secret
    }

    /// The first configured client's first redirect URI: where [`authorization_url`](Self::authorization_url)
    /// sends the browser back, and what the token request repeats.
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder()
    ///     .client("proxy", "s3cret", ["http://127.0.0.1:9000/callback"])
    ///     .start()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(dev.redirect_uri(), "http://127.0.0.1:9000/callback");
    /// # }
    /// ```
    pub fn redirect_uri(&self) -> &str {
        &self.shared.config.clients[0].redirect_uris[0]
    }

    /// The resource URI: the `aud` of the access tokens (`RESOURCE_URI`).
    ///
    /// ```
    /// use a3_mcp_auth::TokenVerifier;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// // The MCP server verifies tokens for its own resource only.
    /// let verifier = dev.issuer().verifier(dev.resource()).await;
    /// let token = dev.issuer().token(dev.resource()).subject("johndoe@test.com").sign();
    /// assert!(verifier.verify(&token).await.is_ok());
    /// # }
    /// ```
    pub fn resource(&self) -> &str {
        &self.shared.config.resource
    }

    /// The resource's scopes.
    ///
    /// ```
    /// use a3_mcp_auth::ProtectedResourceMetadata;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// // The resource advertises what its authorization server grants.
    /// let metadata = ProtectedResourceMetadata::new(dev.resource())
    ///     .unwrap()
    ///     .with_authorization_server(dev.url())
    ///     .with_scopes_supported(dev.scopes().to_vec());
    /// assert_eq!(metadata.scopes_supported(), ["mcp:call"]);
    /// # }
    /// ```
    pub fn scopes(&self) -> &[String] {
        &self.shared.config.scopes
    }

    /// The name of the access-token claim holding the contexts: `CONTEXT_CLAIM`.
    ///
    /// ```
    /// use a3_mcp_auth::config::A3Config;
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::builder().context_claim("a3_contexts").start().await.unwrap();
    /// let config = A3Config::builder()
    ///     .issuer_url(dev.url())
    ///     .context_claim(dev.context_claim())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.context_claim(), "a3_contexts");
    /// # }
    /// ```
    pub fn context_claim(&self) -> &str {
        &self.shared.config.context_claim
    }

    /// An authorization request URL for the first client, its first redirect URI, the resource
    /// and every scope, with `state` and an S256 `code_challenge` (see
    /// [`pkce_challenge`](Self::pkce_challenge)).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// let url = dev.authorization_url("xyz", &DevIssuer::pkce_challenge("v".repeat(43).as_str()));
    /// assert!(url.starts_with(&format!("{}/authorize?response_type=code&client_id=dev-proxy-client", dev.url())));
    /// # }
    /// ```
    pub fn authorization_url(&self, state: &str, code_challenge: &str) -> String {
        let mut url = Url::parse(&format!("{}/authorize", self.url())).expect("the issuer URL is a URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", self.client_id())
            .append_pair("redirect_uri", self.redirect_uri())
            .append_pair("scope", &self.scopes().join(" "))
            .append_pair("resource", self.resource())
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// The PKCE S256 challenge of `verifier`: `BASE64URL(SHA256(verifier))`
    /// ([RFC 7636 §4.2](https://www.rfc-editor.org/rfc/rfc7636#section-4.2)).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// // RFC 7636, appendix B.
    /// assert_eq!(
    ///     DevIssuer::pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ///     "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    /// );
    /// ```
    pub fn pkce_challenge(verifier: &str) -> String {
        crate::oauth::pkce::s256(verifier)
    }

    /// A loud multi-line notice saying that this is a development issuer and how to use it
    /// (issuer URL, client id, redirect URIs, resource, scopes, users and their contexts; never
    /// secrets or passwords other than the quickstart's well-known default).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let banner = dev.banner();
    /// assert!(banner.contains("DEVELOPMENT ISSUER") && banner.contains(dev.url()));
    /// assert!(!banner.contains(dev.client_secret()));
    /// # }
    /// ```
    pub fn banner(&self) -> String {
        let config = &self.shared.config;
        let line = "=".repeat(78);
        let mut out = format!(
            "{line}\n  DEVELOPMENT ISSUER: NOT Mekarge A3. Tokens from it are for local development only.\n  \
             Set ISSUER_PATH (or ISSUER_URL) to use a real A3 environment.\n\n  issuer:   {}\n",
            self.url()
        );
        for client in &config.clients {
            out += &format!(
                "  client:   {} (client_secret_post), redirect {}\n",
                client.id,
                client.redirect_uris.join(" ")
            );
        }
        out += &format!(
            "  resource: {}  scopes: {}\n",
            config.resource,
            config.scopes.join(" ")
        );
        for user in self.shared.users.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let contexts: Vec<String> = user
                .contexts
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
                .collect();
            // The well-known development password is printed; a password the developer chose is not.
            let password = if user.password == DEFAULT_USER_PASSWORD {
                format!(" / {DEFAULT_USER_PASSWORD}")
            } else {
                String::new()
            };
            out += &format!(
                "  user:     {}{password}  contexts: {}\n",
                user.email,
                contexts.join(", ")
            );
        }
        out += &line;
        out
    }
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/authorize", get(authorize::authorize))
        .route("/login", post(login::login))
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        .with_state(shared)
}

/// In-process requests to a started issuer's routes, for the unit tests of its endpoints.
#[cfg(test)]
mod test_support {
    use std::collections::HashMap;

    use axum::body::Body;
    use http::{HeaderMap, Request, StatusCode, header};
    use tower::ServiceExt;

    use super::DevIssuer;
    use super::state::AuthRequest;

    /// The verifier of RFC 7636 appendix B.
    pub(super) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    /// A response, read.
    pub(super) struct Reply {
        pub(super) status: StatusCode,
        pub(super) headers: HeaderMap,
        pub(super) body: String,
    }

    impl Reply {
        pub(super) fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).expect("a JSON body")
        }

        /// The query of the `Location` header.
        pub(super) fn location_query(&self) -> HashMap<String, String> {
            let location = self.headers[header::LOCATION].to_str().unwrap();
            url::Url::parse(location)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect()
        }
    }

    pub(super) async fn send(dev: &DevIssuer, request: Request<Body>) -> Reply {
        let response = super::routes(dev.shared.clone()).oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    pub(super) fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    /// A POST of `body` as `content_type`.
    pub(super) fn post(path: &str, content_type: &str, body: String) -> Request<Body> {
        Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap()
    }

    /// `pairs`, form-encoded.
    pub(super) fn encode(pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    /// An authorization code for the default client and user and [`VERIFIER`], as a sign-in
    /// issues it.
    pub(super) fn code(dev: &DevIssuer) -> String {
        let request = AuthRequest {
            client_id: dev.client_id().to_owned(),
            redirect_uri: dev.redirect_uri().to_owned(),
            redirect_explicit: true,
            state: None,
            code_challenge: DevIssuer::pkce_challenge(VERIFIER),
            resource: dev.resource().to_owned(),
            scope: dev.scopes().to_vec(),
        };
        let response = dev.shared.approve(request, super::DEFAULT_USER_EMAIL.to_owned());
        let location = response.headers()[header::LOCATION].to_str().unwrap();
        let url = url::Url::parse(location).unwrap();
        let code = url.query_pairs().find(|(k, _)| k == "code").unwrap().1;
        code.into_owned()
    }
}
