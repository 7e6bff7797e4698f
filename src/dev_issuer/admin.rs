//! What an A3 admin does to a running [`DevIssuer`], for tests of how a server copes: revoking
//! every refresh token, ending every browser session, granting a user other contexts.

use super::DevIssuer;
use super::builder::contexts_from;

impl DevIssuer {
    /// Revokes every refresh token issued so far; returns how many were live.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert_eq!(dev.revoke_all_refresh_tokens(), 0);
    /// # }
    /// ```
    pub fn revoke_all_refresh_tokens(&self) -> usize {
        let mut store = self.shared.store();
        let live = store.refresh.len();
        store.refresh.clear();
        live
    }

    /// Ends every browser session, so that the next authorization shows the login form again
    /// (as does a request with `prompt=login`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// dev.end_all_sessions();
    /// # }
    /// ```
    pub fn end_all_sessions(&self) {
        self.shared.store().sessions.clear();
    }

    /// Replaces the contexts of the user `email`, as an A3 admin granting a new Context would;
    /// tokens issued from then on (refreshes included) carry them. Returns whether the user exists.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dev = a3_mcp_auth::dev_issuer::DevIssuer::start().await.unwrap();
    /// assert!(dev.set_user_contexts("johndoe@test.com", [("operation", "addition"), ("operation", "multiplication")]));
    /// assert!(!dev.set_user_contexts("nobody@test.com", [("operation", "addition")]));
    /// # }
    /// ```
    pub fn set_user_contexts<K: Into<String>, V: Into<String>>(
        &self,
        email: &str,
        contexts: impl IntoIterator<Item = (K, V)>,
    ) -> bool {
        let mut users = self.shared.users.lock().unwrap_or_else(|e| e.into_inner());
        match users.iter_mut().find(|u| u.email.eq_ignore_ascii_case(email)) {
            Some(user) => {
                user.contexts = contexts_from(contexts);
                true
            }
            None => false,
        }
    }
}
