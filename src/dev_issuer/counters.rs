//! What a running [`DevIssuer`] counts, for tests that check how often a server went to A3:
//! authorization requests, logins, codes, token and refresh requests, revocations.

use std::sync::atomic::{AtomicU64, Ordering};

use super::DevIssuer;

/// What [`DevIssuer`]'s counters report.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) authorize: AtomicU64,
    pub(super) logins: AtomicU64,
    pub(super) codes: AtomicU64,
    pub(super) token: AtomicU64,
    pub(super) refresh: AtomicU64,
    pub(super) revoke: AtomicU64,
}

impl DevIssuer {
    /// `GET /authorize` requests received.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// reqwest::get(format!("{}/authorize", dev.url())).await.unwrap();
    /// assert_eq!(dev.authorize_requests(), 1);
    /// # }
    /// ```
    pub fn authorize_requests(&self) -> u64 {
        self.shared.counters.authorize.load(Ordering::SeqCst)
    }

    /// Successful password logins (an authorization approved through an existing session does
    /// not count).
    ///
    /// ```
    /// use a3_mcp_auth::dev_issuer::DevIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = DevIssuer::start().await.unwrap();
    /// let browser = reqwest::Client::builder()
    ///     .cookie_store(true)
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .build()
    ///     .unwrap();
    /// let url = dev.authorization_url("xyz", &DevIssuer::pkce_challenge(&"v".repeat(43)));
    /// let form = browser.get(&url).send().await.unwrap().text().await.unwrap();
    /// let request = form.split("name=\"request\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    /// browser
    ///     .post(format!("{}/login", dev.url()))
    ///     .form(&[("request", request), ("email", "johndoe@test.com"), ("password", "secret")])
    ///     .send()
    ///     .await
    ///     .unwrap();
    ///
    /// // The second authorization in the same browser goes through the session.
    /// assert_eq!(browser.get(&url).send().await.unwrap().status(), 303);
    /// assert_eq!((dev.logins(), dev.codes_issued()), (1, 2));
    /// # }
    /// ```
    pub fn logins(&self) -> u64 {
        self.shared.counters.logins.load(Ordering::SeqCst)
    }

    /// Authorization codes issued (after a login or through an existing session; see
    /// [`logins`](Self::logins)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.codes_issued(), 0);
    /// # }
    /// ```
    pub fn codes_issued(&self) -> u64 {
        self.shared.counters.codes.load(Ordering::SeqCst)
    }

    /// `POST /token` requests received, whatever the grant and outcome.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// reqwest::Client::new().post(format!("{}/token", dev.url())).send().await.unwrap();
    /// assert_eq!(dev.token_requests(), 1);
    /// # }
    /// ```
    pub fn token_requests(&self) -> u64 {
        self.shared.counters.token.load(Ordering::SeqCst)
    }

    /// `POST /token` requests with `grant_type=refresh_token`, whatever the outcome.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let response = reqwest::Client::new()
    ///     .post(format!("{}/token", dev.url()))
    ///     .form(&[("grant_type", "refresh_token"), ("refresh_token", "nope")])
    ///     .send()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(response.status(), 401); // no client authentication
    /// assert_eq!(dev.refresh_requests(), 1);
    /// # }
    /// ```
    pub fn refresh_requests(&self) -> u64 {
        self.shared.counters.refresh.load(Ordering::SeqCst)
    }

    /// `POST /revoke` requests received.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// let response = reqwest::Client::new()
    ///     .post(format!("{}/revoke", dev.url()))
    ///     .form(&[("token", "unknown"), ("client_id", dev.client_id()), ("client_secret", dev.client_secret())])
    ///     .send()
    ///     .await
    ///     .unwrap();
    /// assert_eq!(response.status(), 200); // unknown tokens too (RFC 7009 §2.2)
    /// assert_eq!(dev.revocation_requests(), 1);
    /// # }
    /// ```
    pub fn revocation_requests(&self) -> u64 {
        self.shared.counters.revoke.load(Ordering::SeqCst)
    }
}
