//! The bridge's cookies: the consent form's CSRF value, and the binding of an upstream
//! transaction to the browser that approved it.
//!
//! On an https public URL they are `__Host-` prefixed and `Secure` (RFC 6265bis §4.1.3.2); on
//! plain-http loopback browsers refuse `Secure` cookies, so plain names are used. Cookies are not
//! isolated by port, so on `http://127.0.0.1` every local page can plant one, including a binding
//! it copied from its own browser: there the binding only tells browsers apart that are not
//! attacking each other, and the user confirms the account after the sign-in
//! ([`Cookies::can_be_planted`]).

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use super::crypto::Keys;

/// The consent form's double-submit CSRF value.
pub(crate) const CSRF_COOKIE: &str = "a3mcp_csrf";
/// The prefix of the transaction binding cookies.
const TRANSACTION_COOKIE: &str = "a3mcp_tx";

/// How the bridge names, sets and reads its cookies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cookies {
    /// `__Host-` + `Secure` cookies (https public URL) or plain names (http loopback).
    secure: bool,
}

impl Cookies {
    /// The cookies of a bridge whose issuer is `public_url`.
    pub(crate) fn for_public_url(public_url: &str) -> Self {
        Cookies {
            secure: public_url.starts_with("https://"),
        }
    }

    /// Whether a page of another origin can set these cookies in the user's browser: plain
    /// names on http can be set by any page of the host, whatever its port ([RFC 6265 §8.5]);
    /// `__Host-` cookies only by an https page of our own host.
    ///
    /// [RFC 6265 §8.5]: https://www.rfc-editor.org/rfc/rfc6265#section-8.5
    pub(crate) fn can_be_planted(&self) -> bool {
        !self.secure
    }

    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on https.
    pub(crate) fn set(&self, base: &str, value: &str, max_age: Duration) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            self.name(base),
            max_age.as_secs()
        ))
        .expect("cookie values are base64url")
    }

    /// The value of the cookie `base` in the request's `Cookie` headers.
    pub(crate) fn read(&self, headers: &HeaderMap, base: &str) -> Option<String> {
        let name = self.name(base);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// The cookie that binds the upstream transaction `tx_id` to this browser: its id, signed.
    pub(crate) fn bind_transaction(&self, keys: &Keys, tx_id: &str, max_age: Duration) -> HeaderValue {
        let binding = format!("{tx_id}.{}", keys.sign(&format!("tx|{tx_id}")));
        self.set(&transaction_cookie(tx_id), &binding, max_age)
    }

    /// Whether this browser holds our signed binding of the transaction `state`.
    pub(crate) fn is_bound(&self, keys: &Keys, headers: &HeaderMap, state: &str) -> bool {
        self.read(headers, &transaction_cookie(state))
            .and_then(|c| {
                let (tx_id, sig) = c.split_once('.')?;
                (crate::oauth::ct_eq(tx_id, state) && keys.verify(&format!("tx|{tx_id}"), sig)).then_some(())
            })
            .is_some()
    }

    /// Expires the binding of the transaction `state`: it is single use.
    pub(crate) fn unbind_transaction(&self, state: &str) -> HeaderValue {
        self.set(&transaction_cookie(state), "", Duration::ZERO)
    }
}

/// The binding cookie of one transaction: named after its id, so that two authorizations in
/// one browser (two VS Code windows) do not overwrite each other's binding.
fn transaction_cookie(tx_id: &str) -> String {
    let short: String = tx_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!("{TRANSACTION_COOKIE}_{short}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request a browser sends back after receiving `set_cookie`.
    fn echo(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        headers
    }

    #[test]
    fn host_prefix_and_secure_only_on_https() {
        let https = Cookies::for_public_url("https://mcp.example.com").set("c", "v", Duration::from_secs(5));
        assert_eq!(
            https,
            "__Host-c=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=5; Secure"
        );
        assert!(!Cookies::for_public_url("https://mcp.example.com").can_be_planted());
        assert!(Cookies::for_public_url("http://127.0.0.1:8000").can_be_planted());
        let http = Cookies::for_public_url("http://127.0.0.1:8000").set("c", "v", Duration::from_secs(5));
        assert_eq!(http, "c=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=5");
        assert_eq!(
            Cookies::for_public_url("https://mcp.example.com").read(&echo(&https), "c"),
            Some("v".into())
        );
        assert_eq!(
            Cookies::for_public_url("https://mcp.example.com").read(&echo(&http), "c"),
            None,
            "a cookie without the prefix is not ours on https"
        );
    }

    #[test]
    fn a_binding_holds_for_its_own_transaction_and_key_only() {
        let cookies = Cookies::for_public_url("http://127.0.0.1:8000");
        let keys = Keys::ephemeral();
        let tx = crate::oauth::random_token();
        let bound = echo(&cookies.bind_transaction(&keys, &tx, Duration::from_secs(600)));
        assert!(cookies.is_bound(&keys, &bound, &tx));
        assert!(!cookies.is_bound(&Keys::ephemeral(), &bound, &tx), "signed by us");
        assert!(!cookies.is_bound(&keys, &bound, &crate::oauth::random_token()));
        assert!(!cookies.is_bound(&keys, &HeaderMap::new(), &tx));
        assert!(
            cookies
                .unbind_transaction(&tx)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }
}
